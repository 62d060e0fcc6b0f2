//! One fetch cycle against the LCW fake on loopback and a real InfluxDB: the exact fixture values
//! must come back out of InfluxDB's query API.

use crate::support;

use std::io::Read as _;

use lcw_fetcher::cycle;
use lcw_fetcher::telemetry::history::{CycleHistory, Outcome};
use serde_json::{Value, json};
use support::lcw_fake::{API_KEY, fixture_json};
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

fn as_f64(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Asserts that `row[column]` is exactly the fixture number `expected`.
fn assert_field(row: &serde_json::Map<String, Value>, column: &str, expected: &Value) {
    match expected {
        Value::Null => assert!(
            !row.contains_key(column),
            "{column} should be absent: {row:?}"
        ),
        _ => assert_eq!(
            as_f64(&row[column]).to_bits(),
            as_f64(expected).to_bits(),
            "{column}: {} != {expected}",
            row[column]
        ),
    }
}

fn assert_coin_row(row: &serde_json::Map<String, Value>, coin: &Value) {
    assert_field(row, "rate", &coin["rate"]);
    assert_field(row, "volume", &coin["volume"]);
    assert_field(row, "market_cap", &coin["cap"]);
    let delta = &coin["delta"];
    for (field, key) in [
        ("delta_1h", "hour"),
        ("delta_24h", "day"),
        ("delta_7d", "week"),
        ("delta_30d", "month"),
        ("delta_90d", "quarter"),
        ("delta_1y", "year"),
    ] {
        assert_field(row, field, &delta[key]);
    }
}

fn history(host: &NativeHost) -> CycleHistory {
    support::collector_state(&host.kv).history
}

#[test]
fn a_tick_lands_the_fixture_values_in_influxdb() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let before = host_now();
    let record = block_on(cycle::run(&host));
    let after = host_now();

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    // The page's BTC and ETH, and GRIN of the tracked coins (whose BTC and ETH are taken once).
    assert_eq!(record.points_written["coins"], 3);
    assert_eq!(record.points_written["overview"], 1);
    assert_eq!(record.points_written["exchanges"], 1);

    let mut coins = fixture_json("coins_list.json").as_array().unwrap().clone();
    coins.push(fixture_json("coins_map.json")[2].clone());
    assert_eq!(coins[2]["code"], "GRIN");
    let rows = influx.rows("cryptocurrency_data");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for coin in &coins {
        let row = rows
            .iter()
            .find(|r| r["code"] == coin["code"])
            .unwrap_or_else(|| panic!("no row for {}", coin["code"]));
        assert_coin_row(row, coin);
        assert_eq!(row["currency"], "USD");
        assert!(
            !row.contains_key("name"),
            "the fixture has no meta, so no name tag"
        );
        let time = row["time"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&time),
            "{time} not in {before}..={after}"
        );
    }

    let overview = fixture_json("overview.json");
    let rows = influx.rows("market_overview");
    assert_eq!(rows.len(), 1);
    assert_field(&rows[0], "total_market_cap", &overview["cap"]);
    assert_field(&rows[0], "total_volume", &overview["volume"]);
    assert_field(&rows[0], "total_liquidity", &overview["liquidity"]);
    assert_field(&rows[0], "btc_dominance", &overview["btcDominance"]);
    assert_eq!(rows[0]["currency"], "USD");

    let exchange = &fixture_json("exchanges_list.json")[0];
    let rows = influx.rows("exchange_data");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["code"].as_str(), rows[0]["name"].as_str()),
        (Some("BINANCE"), Some("Binance"))
    );
    for (field, key) in [
        ("volume", "volume"),
        ("bid_total", "bidTotal"),
        ("ask_total", "askTotal"),
        ("depth", "depth"),
        ("visitors", "visitors"),
        ("markets", "markets"),
        ("volume_per_visitor", "volumePerVisitor"),
    ] {
        assert_field(&rows[0], field, &exchange[key]);
    }

    // What went over the wire to LCW.
    let list = fake.seen_on("/coins/list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].method, "POST");
    assert_eq!(
        list[0].json(),
        json!({"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":100,"meta":true})
    );
    assert_eq!(list[0].header("x-api-key"), Some(API_KEY));
    assert_eq!(list[0].header("content-type"), Some("application/json"));
    assert!(
        list[0]
            .header("user-agent")
            .unwrap()
            .starts_with("lcw-fetcher/")
    );
    assert_eq!(
        fake.seen_on("/overview")[0].json(),
        json!({"currency":"USD"})
    );

    // The record of the cycle is in the store.
    let history = history(&host);
    assert_eq!(history.recent.len(), 1);
    assert_eq!(history.recent[0], record);
    assert_eq!(history.cycles_by_outcome[&Outcome::Success], 1);
    assert_eq!(history.points_written_by_type["coins"], 3);
}

fn host_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Meta answers with names that need escaping, nulls and integer ranks land exactly, with the
/// field types the schema promises.
#[test]
fn meta_fields_awkward_names_and_types_round_trip() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let template = fixture_json("coins_contract.json");
    let names = [
        "Wrapped, \"Bitcoin\" = W\\",
        "Ξther 💎 with spaces",
        "Plain",
    ];
    let coins: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut coin = template.clone();
            coin["code"] = json!(format!("C{i}_X"));
            coin["name"] = json!(name);
            coin["rank"] = json!(i + 1);
            coin["rate"] = json!(as_f64(&template["rate"]) / (i as f64 + 3.0));
            if i == 2 {
                coin["maxSupply"] = json!(21000000);
                coin["delta"]["year"] = Value::Null;
            }
            coin
        })
        .collect();
    fake.respond(
        "/coins/list",
        Reply::json(200, serde_json::to_vec(&coins).unwrap()),
    );
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);

    let rows = influx.rows("cryptocurrency_data");
    let listed = rows
        .iter()
        .filter(|r| r["code"].as_str().unwrap().starts_with('C'))
        .count();
    assert_eq!(
        listed,
        coins.len(),
        "and the tracked BTC, ETH, GRIN besides"
    );
    for coin in &coins {
        let row = rows.iter().find(|r| r["code"] == coin["code"]).unwrap();
        // Line protocol cannot end a tag value with a backslash: the encoder trims it.
        let name = coin["name"].as_str().unwrap().trim_end_matches('\\');
        assert_eq!(row["name"], name, "tag values come back unchanged");
        assert_coin_row(row, coin);
        assert_field(row, "liquidity", &coin["liquidity"]);
        assert_field(row, "circulating_supply", &coin["circulatingSupply"]);
        assert_field(row, "total_supply", &coin["totalSupply"]);
        assert_field(row, "max_supply", &coin["maxSupply"]);
        assert_field(row, "all_time_high_usd", &coin["allTimeHighUSD"]);
        assert_eq!(row["rank"], coin["rank"]);
    }

    let answer = influx.query("SHOW FIELD KEYS FROM cryptocurrency_data");
    let types: std::collections::HashMap<String, String> =
        answer["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v[0].as_str().unwrap().to_owned(),
                    v[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(types["rank"], "integer");
    for float in [
        "rate",
        "volume",
        "market_cap",
        "liquidity",
        "circulating_supply",
        "max_supply",
        "delta_1h",
    ] {
        assert_eq!(types[float], "float", "{float}");
    }
}

#[test]
fn coins_beyond_one_page_are_fetched_page_by_page() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_coins_per_fetch", "250".into()));
    let host = NativeHost::new(&variables);

    block_on(cycle::run(&host));

    let mut pages: Vec<(i64, i64)> = fake
        .seen_on("/coins/list")
        .iter()
        .map(|s| {
            (
                s.json()["offset"].as_i64().unwrap(),
                s.json()["limit"].as_i64().unwrap(),
            )
        })
        .collect();
    pages.sort();
    assert_eq!(pages, [(0, 100), (100, 100), (200, 50)]);
}

#[test]
fn invalid_settings_are_recorded_and_no_call_is_made() {
    let fake = LcwFake::start();
    let host = NativeHost::new(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("cycle_deadline_ms", "90000"),
        ("influx_api", "v9"),
    ]);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Error);
    let error = &record.errors[0];
    assert!(
        error.contains("`cycle_deadline_ms` = \"90000\": must be below the cycle interval (60 s), or ticks overlap"),
        "{error}"
    );
    assert!(error.contains("`influx_api` = \"v9\""), "{error}");
    assert_eq!(host.http_calls(), 0);
    assert!(fake.seen().is_empty());
    assert_eq!(history(&host).recent[0], record);
    assert!(!host.log_text().contains(API_KEY));
}

#[test]
fn a_wrong_key_fails_clearly_without_leaking_it() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    variables[0].1 = "wrong-key-0000".into();
    variables.push(("influx_token", "influx-secret-token".into()));
    let host = NativeHost::new(&variables);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Error);
    assert!(
        record
            .errors
            .iter()
            .any(|e| e.contains("LCW /coins/list: HTTP 401: Unauthorized")),
        "{:?}",
        record.errors
    );
    assert!(influx.rows("cryptocurrency_data").is_empty());
    let everything = format!(
        "{record:?} {} {:?}",
        host.log_text(),
        host.kv.lock().unwrap()
    );
    for secret in ["wrong-key-0000", "influx-secret-token"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_failing_endpoint_makes_a_partial_cycle_that_keeps_the_rest() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond("/overview", Reply::documented_error(503));
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Partial);
    assert_eq!(record.points_written["coins"], 3);
    assert!(!record.points_written.contains_key("overview"));
    assert!(
        record.errors[0].contains("HTTP 503: Service Unavailable: We're temporarily offline"),
        "{:?}",
        record.errors
    );
    assert_eq!(influx.rows("cryptocurrency_data").len(), 3);
}

#[test]
fn malformed_lcw_json_names_the_endpoint() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/coins/list",
        // Not a list at all (one bad element is only skipped: tests/lcw/hostile_input.rs).
        Reply::json(200, r#"{"code":"BTC","rate":"a lot"}"#),
    );
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Partial);
    assert!(
        record.errors[0].starts_with("LCW /coins/list: unexpected response body: invalid type"),
        "{:?}",
        record.errors
    );
}

#[test]
fn an_unreachable_influxdb_is_an_error_with_every_point_counted() {
    let fake = LcwFake::start();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = NativeHost::new(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("influx_url", &format!("http://127.0.0.1:{closed_port}")),
        ("influx_org", "o"),
        ("influx_token", "t"),
    ]);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Error);
    assert_eq!(
        record.points_spooled, 5,
        "3 coins, the overview, 1 exchange: kept for later"
    );
    assert!(
        record
            .errors
            .iter()
            .all(|e| e.starts_with("InfluxDB write: connection failed")),
        "{:?}",
        record.errors
    );
}

#[test]
fn a_slow_lcw_cannot_stretch_the_tick_past_its_deadline() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/coins/list",
        Reply::json(200, "[]").delayed(std::time::Duration::from_secs(5)),
    );
    let mut variables = variables_for(&fake, &influx);
    variables.retain(|(k, _)| *k != "cycle_deadline_ms");
    variables.push(("cycle_deadline_ms", "3000".into()));
    variables.push(("lcw_response_timeout_ms", "1000".into()));
    let host = NativeHost::new(&variables);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Partial);
    assert!(
        record.errors[0].contains("LCW /coins/list: response timed out"),
        "{:?}",
        record.errors
    );
    // Bounded by the call's own timeout, not the fake's 5 s; generous slack for a loaded machine.
    assert!(record.duration_ms < 4_000, "{} ms", record.duration_ms);
    assert_eq!(influx.rows("market_overview").len(), 1);
}

/// The default API, v2: path, query, token and gzip, checked on a capturing server (Debian's
/// InfluxDB 1.x has no v2 endpoint).
#[test]
fn v2_writes_are_gzipped_and_token_authenticated() {
    let fake = LcwFake::start();
    let sink = LcwFake::start();
    sink.respond("/api/v2/write", Reply::json(204, ""));
    let host = NativeHost::new(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("influx_url", sink.base_url.as_str()),
        ("influx_org", "my org"),
        ("influx_bucket", "prices"),
        ("influx_token", "tok-v2-secret"),
    ]);

    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);

    let writes = sink.seen_on("/api/v2/write");
    assert_eq!(writes.len(), 1, "one batch for the whole tick");
    let mut lines = String::new();
    for write in &writes {
        assert_eq!(write.method, "POST");
        assert_eq!(
            write.url,
            "/api/v2/write?org=my+org&bucket=prices&precision=ms"
        );
        assert_eq!(write.header("authorization"), Some("Token tok-v2-secret"));
        assert_eq!(write.header("content-encoding"), Some("gzip"));
        flate2::read::GzDecoder::new(&write.body[..])
            .read_to_string(&mut lines)
            .unwrap();
    }
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 5);
    assert!(
        lines[0].starts_with(
            "cryptocurrency_data,code=BTC,currency=USD rate=59075.58195922644,volume=23100393182,\
             market_cap=1102979514307,delta_1h=1.008,delta_24h=1.0808,delta_7d=1.2793,\
             delta_30d=1.4754,delta_90d=0.4804,delta_1y=0.7455 "
        ),
        "{}",
        lines[0]
    );
    assert!(lines[4].starts_with("market_overview,currency=USD total_market_cap=1810888785486,total_volume=70194520152,total_liquidity=3934498354,btc_dominance=0.5932948858748709 "), "{}", lines[4]);
    assert!(
        lines[3].starts_with(
            "exchange_data,code=BINANCE,currency=USD,name=Binance volume=27523372418,"
        ),
        "{}",
        lines[3]
    );
    assert!(!host.log_text().contains("tok-v2-secret"));
}
