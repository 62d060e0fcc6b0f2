//! The query API over the embedded store, through `routes::handle`: latest values, a series
//! downsampled exactly (first, last, min, max, avg, count per step), JSON and CSV, the limits and
//! the errors, and the 404 that points to InfluxDB when the sink is InfluxDB.

use crate::support;

use lcw_fetcher::sink::sqlite::Db;
use serde_json::Value;
use support::{NativeHost, block_on};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// 2025-01-01T00:00:00Z.
const T0: i64 = 1_735_689_600_000;

fn rate(i: i64) -> f64 {
    100.0 + (i % 37) as f64 * 0.5 + i as f64 * 1e-3 + 0.1
}

/// BTC every minute for two days from T0 (one minute missing in each hour: gaps are normal),
/// three coins' latest rows, two exchanges and the overview.
fn seeded() -> NativeHost {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let mut lines = String::new();
    for i in 0..2 * 24 * 60 {
        if i % 60 == 17 {
            continue;
        }
        let t = T0 + i * MINUTE;
        lines.push_str(&format!(
            "cryptocurrency_data,code=BTC,currency=USD,name=Bitcoin rate={},rank=1i {t}\n",
            rate(i)
        ));
        lines.push_str(&format!(
            "market_overview,currency=USD total_market_cap={}.5 {t}\n",
            1_000_000 + i
        ));
    }
    let last = T0 + (2 * 24 * 60 - 1) * MINUTE;
    lines.push_str(&format!(
        "cryptocurrency_data,code=BTC,currency=USD,name=Bitcoin rate=64000.5,delta_24h=1.0125,market_cap=1.25e12,rank=1i {last}\n\
         cryptocurrency_data,code=ETH,currency=USD,name=Ether\\,\\ \"classic\" rate=3000.25,delta_24h=0.98,rank=2i {last}\n\
         cryptocurrency_data,code=EVIL,currency=USD,name==HYPERLINK(\"x\") rate=0.5,rank=3i {last}\n\
         cryptocurrency_data,code=OLD,currency=USD rate=1 {}\n\
         exchange_data,code=BINANCE,currency=USD,name=Binance volume=5e9,visitors=100i {last}\n\
         exchange_data,code=KRAKEN,currency=USD,name=Kraken volume=1e9 {last}\n",
        last - 2 * HOUR
    ));
    block_on(async {
        Db::open(&host)
            .await
            .unwrap()
            .write_points(&crate::support::points(&lines))
            .await
            .unwrap()
    });
    host
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap().to_owned()
    }
}

fn get(host: &NativeHost, uri: &str) -> Reply {
    get_with(host, uri, None)
}

fn get_with(host: &NativeHost, uri: &str, accept: Option<&str>) -> Reply {
    let mut request = http::Request::get(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = block_on(lcw_fetcher::routes::handle(
        host,
        &request.body(Vec::new()).unwrap(),
    ));
    Reply {
        status: response.status().as_u16(),
        content_type: response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned(),
        body: String::from_utf8(response.body().clone()).unwrap(),
    }
}

#[test]
fn the_latest_value_of_every_coin_by_rank() {
    let host = seeded();
    let reply = get(&host, "/api/v1/coins");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    let body = reply.json();
    assert_eq!(body["currency"], "USD");
    let rows = body["rows"].as_array().unwrap();
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        ["BTC", "ETH", "EVIL"],
        "OLD is 2 h behind the newest row"
    );
    assert_eq!(rows[0]["rate"], 64000.5);
    assert_eq!(rows[0]["name"], "Bitcoin");
    assert_eq!(rows[0]["time"], "2025-01-02T23:59:00Z");
    assert!((rows[0]["change_24h"].as_f64().unwrap() - 1.25).abs() < 1e-9);
    assert!((rows[1]["change_24h"].as_f64().unwrap() + 2.0).abs() < 1e-9);
    assert_eq!(rows[1]["name"], "Ether, \"classic\"");
    assert_eq!(rows[2]["change_24h"], Value::Null);
    assert_eq!(body["count"], 3);

    let exchanges = get(&host, "/api/v1/exchanges").json();
    let codes: Vec<&str> = exchanges["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["BINANCE", "KRAKEN"], "by volume");

    assert_eq!(get(&host, "/api/v1/coins?currency=EUR").json()["count"], 0);
}

#[test]
fn a_series_is_downsampled_exactly() {
    let host = seeded();
    let from = T0 + 24 * HOUR;
    let to = T0 + 30 * HOUR;
    let reply = get(
        &host,
        &format!("/api/v1/coins/btc?from={from}&to={to}&step=1h"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["code"], "BTC");
    assert_eq!(body["field"], "rate");
    assert_eq!(body["step_s"], 3600);
    assert_eq!(body["from"], "2025-01-02T00:00:00Z");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for (h, row) in rows.iter().enumerate() {
        let minutes: Vec<i64> = (0..60)
            .map(|m| (24 + h as i64) * 60 + m)
            .filter(|i| i % 60 != 17)
            .collect();
        let values: Vec<f64> = minutes.iter().map(|&i| rate(i)).collect();
        let bucket = from + h as i64 * HOUR;
        assert_eq!(row["time_ms"], bucket);
        assert_eq!(
            row["first"].as_f64().unwrap().to_bits(),
            values[0].to_bits()
        );
        assert_eq!(
            row["last"].as_f64().unwrap().to_bits(),
            values[58].to_bits()
        );
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(row["min"].as_f64().unwrap().to_bits(), min.to_bits());
        assert_eq!(row["max"].as_f64().unwrap().to_bits(), max.to_bits());
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        assert!((row["avg"].as_f64().unwrap() - avg).abs() < 1e-9, "{row}");
        assert_eq!(row["count"], 59);
    }

    // The overview, another field, a UTC time range.
    let reply = get(
        &host,
        "/api/v1/overview?from=2025-01-01T00:00:00Z&to=2025-01-01T01:00:00Z&step=15m",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rows = reply.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["first"], 1_000_000.5);
    assert_eq!(rows[0]["last"], 1_000_014.5);
    assert_eq!(rows[1]["count"], 14, "minute 17 is missing");
}

#[test]
fn csv_by_parameter_or_accept_header() {
    let host = seeded();
    for reply in [
        get(&host, "/api/v1/coins?format=csv"),
        get_with(&host, "/api/v1/coins", Some("text/csv")),
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "text/csv; charset=utf-8");
        let lines: Vec<&str> = reply.body.split("\r\n").collect();
        assert!(
            lines[0].starts_with("currency,code,time_ms,name,rate,"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(",time,change_24h"), "{}", lines[0]);
        assert!(lines[1].starts_with("USD,BTC,1735862340000,Bitcoin,64000.5,"));
        assert!(
            lines[2].contains(",\"Ether, \"\"classic\"\"\",3000.25,"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains(",\"'=HYPERLINK(\"\"x\"\")\","),
            "formula guarded: {}",
            lines[3]
        );
        assert_eq!(lines.len(), 5, "header, 3 rows, and the final CRLF");
    }
    let reply = get(
        &host,
        &format!(
            "/api/v1/coins/BTC?from={}&to={}&step=1h&format=csv",
            T0,
            T0 + 2 * HOUR
        ),
    );
    let lines: Vec<&str> = reply.body.lines().collect();
    assert_eq!(lines[0], "time_ms,first,last,min,max,avg,count,time");
    assert!(
        lines[1].starts_with(&format!("{T0},{},", rate(0))),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(",59,2025-01-01T00:00:00Z"),
        "{}",
        lines[1]
    );
}

#[test]
fn bad_requests_say_what_was_wrong() {
    let host = seeded();
    for (uri, says) in [
        ("/api/v1/coins/B$C", "coin code \"B$C\""),
        (
            "/api/v1/coins/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "coin code",
        ),
        ("/api/v1/coins/BTC?from=tomorrow", "`from` = \"tomorrow\""),
        (
            "/api/v1/coins/BTC?from=1735689600000&to=1735689600000",
            "`from` (2025-01-01T00:00:00Z) must be before `to`",
        ),
        ("/api/v1/coins/BTC?from=-200d", "at most 92 days"),
        (
            "/api/v1/coins/BTC?from=-7d&step=1m",
            "too many rows: 10080 steps",
        ),
        (
            "/api/v1/coins/BTC?step=10s",
            "`step` = \"10s\": at least 60 s",
        ),
        ("/api/v1/coins/BTC?step=soon", "`step` = \"soon\""),
        (
            "/api/v1/coins/BTC?field=rate;DROP",
            "`field` = \"rate;DROP\": one of rate,",
        ),
        ("/api/v1/coins?format=xml", "`format` = \"xml\""),
        ("/api/v1/coins?currency=U$D", "`currency`"),
    ] {
        let reply = get(&host, uri);
        assert_eq!(reply.status, 400, "{uri}: {}", reply.body);
        assert_eq!(reply.content_type, "application/json");
        assert!(reply.message().contains(says), "{uri}: {}", reply.message());
    }
    let reply = get(&host, "/api/v1/nothing");
    assert_eq!(reply.status, 404);
    let response = block_on(lcw_fetcher::routes::handle(
        &host,
        &http::Request::post("/api/v1/coins")
            .body(Vec::new())
            .unwrap(),
    ));
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    // The table is intact after the attempted injection.
    assert_eq!(get(&host, "/api/v1/coins").json()["count"], 3);
}

#[test]
fn with_the_influxdb_sink_the_api_points_to_influxdb() {
    let host = NativeHost::new(&[
        ("lcw_api_key", "k"),
        ("influx_url", "http://127.0.0.1:9"),
        ("influx_org", "lcw"),
        ("influx_token", "t"),
    ]);
    for uri in [
        "/api/v1/coins",
        "/api/v1/coins/BTC",
        "/api/v1/overview",
        "/api/v1/exchanges",
    ] {
        let reply = get(&host, uri);
        assert_eq!(reply.status, 404, "{uri}");
        assert!(reply.message().contains("InfluxDB"), "{}", reply.message());
    }
    let page = get(&host, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("sink = influxdb: the data is in InfluxDB")
    );
}

#[test]
fn the_store_unavailable_is_a_503_and_the_page_still_renders() {
    let host = seeded();
    host.set_sql_down(true);
    let reply = get(&host, "/api/v1/coins");
    assert_eq!(reply.status, 503);
    assert!(
        reply.message().contains("embedded store cannot answer"),
        "{}",
        reply.message()
    );
    let page = get(&host, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"prices-error\""), "{}", page.body);
    assert!(page.body.contains("id=\"breaker\">closed<"));
}
