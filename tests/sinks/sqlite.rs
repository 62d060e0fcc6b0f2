//! The embedded SQLite sink: a real tick lands the fixture values bit for bit, writing a tick
//! again overwrites its rows, the spool and replay work as with InfluxDB when the database is
//! unavailable, a line the tables cannot take is quarantined, retention deletes old rows in
//! batches, and two connections on one file (the two Spin processes) never fail with "database
//! is locked".

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lcw_fetcher::config::{Settings, SinkKind};
use lcw_fetcher::cycle;
use lcw_fetcher::host::Clock as _;
use lcw_fetcher::sink::sqlite::{self, Db};
use lcw_fetcher::telemetry::history::Outcome;
use serde_json::{Map, Value, json};
use support::lcw_fake::{API_KEY, fixture_json};
use support::native_host::{SharedKv, SharedSql, memory_sql};
use support::{LcwFake, NativeHost, Reply, block_on};

const S: Duration = Duration::from_secs(1);

/// Variables for a tick against `fake` with no InfluxDB: the embedded store by default.
fn variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("cycle_deadline_ms", "20000".to_owned()),
    ]
}

/// Every row of `table`, NULL columns left out (as InfluxDB leaves out absent fields).
fn rows(sql: &SharedSql, table: &str) -> Vec<Map<String, Value>> {
    let connection = sql.lock().unwrap();
    let answer =
        support::sql::execute(&connection, &format!("SELECT * FROM {table}"), &[]).expect("query");
    answer
        .rows
        .iter()
        .map(|row| {
            answer
                .columns
                .iter()
                .zip(row)
                .filter_map(|(c, v)| {
                    let value = match v {
                        lcw_fetcher::host::SqlValue::Null => return None,
                        lcw_fetcher::host::SqlValue::Integer(i) => json!(i),
                        lcw_fetcher::host::SqlValue::Real(f) => json!(f),
                        lcw_fetcher::host::SqlValue::Text(t) => json!(t),
                        lcw_fetcher::host::SqlValue::Blob(_) => panic!("no blob column"),
                    };
                    Some((c.clone(), value))
                })
                .collect()
        })
        .collect()
}

fn as_f64(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// `row[column]` is exactly the JSON number `expected`, bit for bit (or absent for null).
fn assert_field(row: &Map<String, Value>, column: &str, expected: &Value) {
    match expected {
        Value::Null => assert!(!row.contains_key(column), "{column} absent: {row:?}"),
        _ => assert_eq!(
            as_f64(&row[column]).to_bits(),
            as_f64(expected).to_bits(),
            "{column}: {} != {expected}",
            row[column]
        ),
    }
}

fn assert_coin_row(row: &Map<String, Value>, coin: &Value) {
    for (column, key) in [
        ("rate", "rate"),
        ("volume", "volume"),
        ("market_cap", "cap"),
        ("liquidity", "liquidity"),
        ("circulating_supply", "circulatingSupply"),
        ("total_supply", "totalSupply"),
        ("max_supply", "maxSupply"),
        ("all_time_high_usd", "allTimeHighUSD"),
    ] {
        assert_field(row, column, &coin[key]);
    }
    for (column, key) in [
        ("delta_1h", "hour"),
        ("delta_24h", "day"),
        ("delta_7d", "week"),
        ("delta_30d", "month"),
        ("delta_90d", "quarter"),
        ("delta_1y", "year"),
    ] {
        assert_field(row, column, &coin["delta"][key]);
    }
}

#[test]
fn a_tick_lands_the_fixture_values_in_sqlite_bit_for_bit_and_once() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let sql = memory_sql();
    let host = NativeHost::with_kv(&variables(&fake), kv.clone()).with_sql(sql.clone());

    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_written["coins"], 3);
    assert_eq!(record.points_written["overview"], 1);
    assert_eq!(record.points_written["exchanges"], 1);

    let mut coins = fixture_json("coins_list.json").as_array().unwrap().clone();
    coins.push(fixture_json("coins_map.json")[2].clone());
    let coin_rows = rows(&sql, "cryptocurrency_data");
    assert_eq!(coin_rows.len(), 3, "{coin_rows:?}");
    for coin in &coins {
        let row = coin_rows
            .iter()
            .find(|r| r["code"] == coin["code"])
            .unwrap_or_else(|| panic!("no row for {}", coin["code"]));
        assert_coin_row(row, coin);
        assert_eq!(row["currency"], "USD");
        assert!(!row.contains_key("name"), "no meta in the fixture: no name");
    }
    let overview = fixture_json("overview.json");
    let overview_rows = rows(&sql, "market_overview");
    assert_eq!(overview_rows.len(), 1);
    for (column, key) in [
        ("total_market_cap", "cap"),
        ("total_volume", "volume"),
        ("total_liquidity", "liquidity"),
        ("btc_dominance", "btcDominance"),
    ] {
        assert_field(&overview_rows[0], column, &overview[key]);
    }
    let exchange = &fixture_json("exchanges_list.json")[0];
    let exchange_rows = rows(&sql, "exchange_data");
    assert_eq!(exchange_rows.len(), 1);
    assert_eq!(exchange_rows[0]["code"], "BINANCE");
    assert_eq!(exchange_rows[0]["name"], "Binance");
    for (column, key) in [
        ("volume", "volume"),
        ("bid_total", "bidTotal"),
        ("ask_total", "askTotal"),
        ("depth", "depth"),
        ("visitors", "visitors"),
        ("markets", "markets"),
        ("volume_per_visitor", "volumePerVisitor"),
    ] {
        assert_field(&exchange_rows[0], column, &exchange[key]);
    }
    assert_eq!(
        support::collector_state(&kv).sink.kind.as_deref(),
        Some("sqlite")
    );

    // The next tick (10 s later, off schedule) serves the exchanges from the cache: their
    // points carry the same fetch time, and writing them again overwrites the same row. Coins
    // and overview (a TTL no longer than the interval) are not cached: fetched afresh.
    let again = NativeHost::with_kv(&variables(&fake), kv.clone()).with_sql(sql.clone());
    again.advance(10 * S);
    let record = block_on(cycle::run(&again));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.total_written(), 5, "written again");
    assert_eq!(
        record.cache_hits, 3,
        "status, credits and exchanges from the cache: {record:?}"
    );
    assert_eq!(
        rows(&sql, "cryptocurrency_data").len(),
        2 * coin_rows.len(),
        "coins fetched again, at a new time"
    );
    assert_eq!(rows(&sql, "market_overview").len(), 2);
    assert_eq!(rows(&sql, "exchange_data").len(), 1, "no duplicate");
}

/// Names that need escaping, nulls and integer ranks land exactly, as with InfluxDB.
#[test]
fn awkward_names_nulls_and_ranks_round_trip() {
    let fake = LcwFake::start();
    let template = fixture_json("coins_contract.json");
    let names = [
        "Wrapped, \"Bitcoin\" = W\\",
        "Ξther 💎 with spaces",
        "<script>alert(1)</script>",
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
    let sql = memory_sql();
    let host = NativeHost::new(&variables(&fake)).with_sql(sql.clone());
    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);

    let all = rows(&sql, "cryptocurrency_data");
    for coin in &coins {
        let row = all.iter().find(|r| r["code"] == coin["code"]).unwrap();
        let name = coin["name"].as_str().unwrap().trim_end_matches('\\');
        assert_eq!(row["name"], name);
        assert_coin_row(row, coin);
        assert_eq!(row["rank"], coin["rank"]);
        assert!(row["rank"].is_i64(), "rank is an INTEGER column");
    }
}

/// The database unavailable for five ticks: every point waits in the spool; back: everything
/// replayed, read back, counted, with no duplicate — the same test as InfluxDB's outage.
#[test]
fn an_unavailable_database_loses_nothing_and_duplicates_nothing() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let sql = memory_sql();
    let tick = |at: Duration, down: bool| {
        let host = NativeHost::with_kv(&variables(&fake), kv.clone()).with_sql(sql.clone());
        host.set_sql_down(down);
        host.advance(at);
        block_on(cycle::run(&host))
    };

    let mut spooled = 0;
    for i in 0..5u32 {
        let record = tick(61 * S * i, true);
        assert_eq!(record.outcome, Outcome::Error, "{:?}", record.errors);
        assert!(
            record
                .errors
                .iter()
                .any(|e| e.contains("SQLite write: ") && e.contains("unable to open database")),
            "{:?}",
            record.errors
        );
        spooled += record.points_spooled;
    }
    assert_eq!(spooled, 25);
    let state = support::collector_state(&kv).sink;
    assert_eq!(state.spool.points(), 25);
    assert!(state.counters.retries > 0, "retried before spooling");

    let record = tick(61 * S * 5, false);
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_replayed, 25);
    assert!(support::collector_state(&kv).sink.spool.is_empty());
    assert!(
        !kv.lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("lcw/v1/spool/")),
        "no segment left behind"
    );
    assert_eq!(rows(&sql, "cryptocurrency_data").len(), 3 * 6);
    assert_eq!(rows(&sql, "market_overview").len(), 6);
    assert_eq!(rows(&sql, "exchange_data").len(), 1);
}

/// A line the tables cannot take is quarantined with the store's reason; the rest is written.
#[test]
fn a_line_the_tables_cannot_take_is_quarantined() {
    let host = NativeHost::new(&[("x", "y")]);
    let settings = Settings::from_pairs(&[("lcw_api_key", "k")]).unwrap();
    let lines = "market_overview,currency=USD total_market_cap=1 1000\n\
                 market_overview,currency=USD total_market_cap=2i 2000\n\
                 market_overview,currency=USD total_market_cap=3 3000\n";
    let (delivery, state) = block_on(async {
        let mut sink = crate::support::courier(
            &host,
            SinkKind::Sqlite,
            &settings.influx,
            host.monotonic() + 20 * S,
            Default::default(),
        );
        sink.deliver(&crate::support::points(lines)).await;
        sink.finish().await
    });
    assert_eq!(delivery.written["market_overview"], 2);
    assert_eq!(delivery.quarantined, 1);
    assert_eq!(state.counters.quarantined, 1);
    let quarantine: lcw_fetcher::sink::delivery::Quarantine =
        serde_json::from_slice(&host.kv.lock().unwrap()[lcw_fetcher::state::QUARANTINE_KEY])
            .unwrap();
    assert!(quarantine.recent[0].line.contains("total_market_cap=2i"));
    assert!(
        quarantine.recent[0].message.contains("`total_market_cap`"),
        "{}",
        quarantine.recent[0].message
    );
    assert!(host.log_text().contains("SQLite refused a line for good"));
    assert_eq!(rows(&host.sql, "market_overview").len(), 2);
}

/// Rows older than `sqlite_retention_days` go, in batches, at the end of a tick; newer stay.
#[test]
fn retention_deletes_old_rows_in_small_batches() {
    let fake = LcwFake::start();
    let sql = memory_sql();
    let host = NativeHost::new(&variables(&fake)).with_sql(sql.clone());
    let now = host.unix_millis();
    let day = 86_400_000i64;
    let mut lines = String::new();
    // 2 500 coin rows and 2 500 overview rows from 40 to 31 days ago, 10 of each from 29.
    for i in 0..2_500i64 {
        let t = now - 40 * day + i * 300_000;
        lines.push_str(&format!(
            "cryptocurrency_data,code=OLD,currency=USD rate={i}.5 {t}\nmarket_overview,currency=USD total_market_cap={i} {t}\n"
        ));
    }
    for i in 0..10i64 {
        let t = now - 29 * day + i * 60_000;
        lines.push_str(&format!(
            "cryptocurrency_data,code=NEW,currency=USD rate={i} {t}\nmarket_overview,currency=USD total_market_cap={i} {t}\n"
        ));
    }
    block_on(async {
        Db::open(&host)
            .await
            .unwrap()
            .write_points(&crate::support::points(&lines))
            .await
            .unwrap();
    });
    assert_eq!(rows(&sql, "cryptocurrency_data").len(), 2_510);

    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    let coins = rows(&sql, "cryptocurrency_data");
    assert!(coins.iter().all(|r| r["code"] != "OLD"), "old rows deleted");
    assert_eq!(coins.iter().filter(|r| r["code"] == "NEW").count(), 10);
    assert_eq!(rows(&sql, "market_overview").len(), 10 + 1);
    assert!(
        host.log_text()
            .contains("5000 rows older than 30 days deleted"),
        "{}",
        host.log_text()
    );

    // With no time left, nothing is deleted (and nothing fails).
    block_on(async {
        Db::open(&host)
            .await
            .unwrap()
            .write_points(&crate::support::points(&lines))
            .await
            .unwrap();
        let deleted = Db::open(&host)
            .await
            .unwrap()
            .prune(now - 30 * day, || false)
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        let deleted = Db::open(&host)
            .await
            .unwrap()
            .prune(now - 30 * day, || true)
            .await
            .unwrap();
        assert_eq!(deleted, 5_000);
    });
}

/// The migrations create what `sqlite::TABLES` describes, and record their version once, also
/// when a second connection opens the database after the first.
#[test]
fn migrations_create_the_described_tables_once() {
    let dir = temp_dir("migrations");
    let file = dir.join("data.db");
    let a = NativeHost::new(&[("x", "y")]).with_sqlite_file(&file);
    let b = NativeHost::new(&[("x", "y")]).with_sqlite_file(&file);
    block_on(async {
        Db::open(&a).await.unwrap();
        Db::open(&b).await.unwrap();
    });
    let connection = a.sql.lock().unwrap();
    let versions = support::sql::execute(&connection, "SELECT version FROM schema_version", &[])
        .unwrap()
        .rows;
    assert_eq!(versions.len(), sqlite::MIGRATIONS.len());
    let mode = support::sql::execute(&connection, "PRAGMA journal_mode", &[]).unwrap();
    assert_eq!(
        mode.rows[0][0],
        lcw_fetcher::host::SqlValue::Text("wal".into())
    );
    for table in sqlite::TABLES {
        let info = support::sql::execute(
            &connection,
            &format!("SELECT name, type FROM pragma_table_info('{}')", table.name),
            &[],
        )
        .unwrap();
        let columns: HashMap<String, String> = info
            .rows
            .iter()
            .map(|r| match (&r[0], &r[1]) {
                (lcw_fetcher::host::SqlValue::Text(n), lcw_fetcher::host::SqlValue::Text(t)) => {
                    (n.clone(), t.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let mut expected: HashMap<String, String> = table
            .fields
            .iter()
            .map(|(f, k)| {
                let kind = match k {
                    sqlite::Kind::Real => "REAL",
                    sqlite::Kind::Integer => "INTEGER",
                };
                ((*f).to_owned(), kind.to_owned())
            })
            .collect();
        for tag in table.key_tags.iter().chain(table.other_tags) {
            expected.insert((*tag).to_owned(), "TEXT".to_owned());
        }
        expected.insert("time_ms".into(), "INTEGER".into());
        assert_eq!(columns, expected, "{}", table.name);
    }
    drop(connection);
    let _ = std::fs::remove_dir_all(dir);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    support::temp_dir(&format!("sqlite-{name}"))
}

/// The collector's process writes ticks (and large batches) while the API's process is queried
/// in a loop, each with its own connection to one file: no statement fails, none with "database
/// is locked".
#[test]
fn a_writer_and_a_reader_on_one_file_never_see_a_locked_database() {
    let fake = LcwFake::start();
    let dir = temp_dir("two-connections");
    let file = dir.join("data.db");
    let vars = variables(&fake);
    let writer = NativeHost::new(&vars).with_sqlite_file(&file);
    let reader = Arc::new(NativeHost::new(&vars).with_sqlite_file(&file));
    block_on(async { Db::open(&writer).await.unwrap() });
    let done = Arc::new(AtomicBool::new(false));

    let reading = {
        let reader = reader.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut answers = 0;
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                for path in [
                    "/api/v1/coins",
                    "/api/v1/coins/BTC?from=-1d",
                    "/api/v1/exchanges",
                    "/",
                ] {
                    let request = http::Request::get(path).body(Vec::new()).unwrap();
                    let response = block_on(lcw_fetcher::routes::handle(&*reader, &request));
                    answers += 1;
                    let body = String::from_utf8_lossy(response.body()).into_owned();
                    if response.status() != 200 || body.contains("locked") {
                        failures.push(format!("{path}: {} {body}", response.status()));
                    }
                }
            }
            (answers, failures)
        })
    };

    let mut ticks = 0;
    let mut lines = String::new();
    let now = writer.unix_millis();
    for i in 0..1_000i64 {
        lines.push_str(&format!(
            "cryptocurrency_data,code=C{},currency=USD rate={i}.25,rank={}i {}\n",
            i % 100,
            i % 100 + 1,
            now - 3_600_000 + (i / 100) * 60_000
        ));
    }
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        writer.advance(61 * S);
        let record = block_on(cycle::run(&writer));
        assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
        block_on(async {
            Db::opened(&writer)
                .write_points(&crate::support::points(&lines))
                .await
                .unwrap()
        });
        ticks += 1;
    }
    done.store(true, Ordering::SeqCst);
    let (answers, failures) = reading.join().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        !writer.log_text().contains("locked"),
        "{}",
        writer.log_text()
    );
    println!(
        "{ticks} ticks with 1 000-row batches while the API answered {answers} requests: none failed"
    );
    assert!(
        ticks > 3 && answers > 10,
        "{ticks} ticks, {answers} answers"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Secrets reach neither the rows, nor the page, nor the query API, nor the logs.
#[test]
fn no_secret_lands_in_the_database_or_its_answers() {
    let fake = LcwFake::start();
    let mut vars = variables(&fake);
    vars.push(("admin_token", "admin-secret-91ab".to_owned()));
    vars.push(("influx_token", "influx-secret-4f2e".to_owned()));
    let sql = memory_sql();
    let host = NativeHost::new(&vars).with_sql(sql.clone());
    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    let mut seen = String::new();
    for table in [
        "cryptocurrency_data",
        "exchange_data",
        "market_overview",
        "schema_version",
    ] {
        seen.push_str(&format!("{:?}", rows(&sql, table)));
    }
    for path in [
        "/",
        "/api/v1/coins",
        "/api/v1/coins/BTC",
        "/api/v1/overview",
        "/api/v1/exchanges",
        "/status",
        "/stats",
    ] {
        let request = http::Request::get(path).body(Vec::new()).unwrap();
        let response = block_on(lcw_fetcher::routes::handle(&host, &request));
        seen.push_str(&String::from_utf8_lossy(response.body()));
    }
    seen.push_str(&host.log_text());
    assert!(seen.contains("BTC"), "the data is there");
    for secret in [API_KEY, "admin-secret-91ab", "influx-secret-4f2e"] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
}
