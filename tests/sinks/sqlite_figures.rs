//! Figures of the embedded store, printed, never asserted on time: the rows and bytes a day at
//! the default settings, and how long the query API takes for a 30-day series of one coin at
//! 1-hour steps. `cargo test --test sinks sqlite_figures:: -- --nocapture` prints them.
//!
//! A day at the defaults: 1 440 ticks of 100 coins (the top page; the tracked BTC and ETH are in
//! it) and the overview, and 20 exchanges every tenth tick — built with the real schema from
//! the LCW contract fixture (every field present, a name), written tick by tick as the collector
//! does. `LCW_FIGURES_COINS` (default 10) sets how many coins the 30-day database holds.

use crate::support;

use std::time::{Duration, Instant};

use lcw_fetcher::lcw::{Coin, Exchange, Overview};
use lcw_fetcher::schema;
use lcw_fetcher::sink::line_protocol::encode_points;
use lcw_fetcher::sink::sqlite::Db;
use support::lcw_fake::fixture_json;
use support::{NativeHost, block_on};

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lcw-figures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("data.db")
}

fn coins(n: usize) -> Vec<Coin> {
    let template: Coin = serde_json::from_value(fixture_json("coins_contract.json")).unwrap();
    (0..n)
        .map(|i| {
            let mut coin = template.clone();
            coin.code = format!("COIN{i:03}");
            coin.name = Some(format!("Coin number {i}"));
            coin.rank = Some(i as f64 + 1.0);
            coin
        })
        .collect()
}

/// The points of one tick at minute `m`: every coin's price moves a little.
fn tick_lines(
    coins: &mut [Coin],
    exchanges: &[Exchange],
    overview: &Overview,
    m: i64,
    t: i64,
) -> String {
    let mut points = Vec::with_capacity(coins.len() + 21);
    for (i, coin) in coins.iter_mut().enumerate() {
        coin.rate = coin
            .rate
            .map(|r| r * (1.0 + ((m + i as i64) % 7 - 3) as f64 * 1e-4));
        points.push(schema::coin_point(coin, "USD", t));
    }
    points.push(schema::overview_point(overview, "USD", t));
    if m % 10 == 0 {
        points.extend(
            exchanges
                .iter()
                .map(|e| schema::exchange_point(e, "USD", t)),
        );
    }
    let mut lines = String::new();
    encode_points(&points, &mut lines);
    lines
}

fn file_bytes(host: &NativeHost) -> i64 {
    let connection = host.sql.lock().unwrap();
    support::sql::execute(&connection, "PRAGMA wal_checkpoint(TRUNCATE)", &[]).unwrap();
    let count = |sql: &str| match support::sql::execute(&connection, sql, &[]).unwrap().rows[0][0] {
        lcw_fetcher::host::SqlValue::Integer(n) => n,
        ref other => panic!("{other:?}"),
    };
    count("PRAGMA page_count") * count("PRAGMA page_size")
}

fn rows(host: &NativeHost, table: &str) -> i64 {
    let connection = host.sql.lock().unwrap();
    match support::sql::execute(&connection, &format!("SELECT COUNT(*) FROM {table}"), &[])
        .unwrap()
        .rows[0][0]
    {
        lcw_fetcher::host::SqlValue::Integer(n) => n,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn rows_and_bytes_a_day_at_the_defaults() {
    let file = temp_file("day");
    let host = NativeHost::new(&[("lcw_api_key", "k")]).with_sqlite_file(&file);
    let mut coins = coins(100);
    let exchange: Exchange =
        serde_json::from_value(fixture_json("exchanges_list.json")[0].clone()).unwrap();
    let exchanges: Vec<Exchange> = (0..20)
        .map(|i| Exchange {
            code: format!("ex{i}"),
            ..exchange.clone()
        })
        .collect();
    let overview: Overview = serde_json::from_value(fixture_json("overview.json")).unwrap();
    let start = 1_735_689_600_000i64;
    let started = Instant::now();
    block_on(async {
        let db = Db::open(&host).await.unwrap();
        for m in 0..1_440 {
            let lines = tick_lines(&mut coins, &exchanges, &overview, m, start + m * MINUTE);
            db.write_points(&crate::support::points(&lines))
                .await
                .unwrap();
        }
    });
    let took = started.elapsed();
    let (c, o, e) = (
        rows(&host, "cryptocurrency_data"),
        rows(&host, "market_overview"),
        rows(&host, "exchange_data"),
    );
    assert_eq!((c, o, e), (144_000, 1_440, 2_880));
    let bytes = file_bytes(&host);
    println!(
        "a day at the defaults: {} rows ({c} coin, {o} overview, {e} exchange), {:.1} MB ({:.0} bytes a row); {:.0} MB at sqlite_retention_days = 30; 1 440 tick transactions took {} ms",
        c + o + e,
        bytes as f64 / 1e6,
        bytes as f64 / (c + o + e) as f64,
        bytes as f64 * 30.0 / 1e6,
        took.as_millis()
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn a_30_day_series_of_one_coin_at_1_hour_steps() {
    let n: usize = std::env::var("LCW_FIGURES_COINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let file = temp_file("month");
    let host = NativeHost::new(&[("lcw_api_key", "k")]).with_sqlite_file(&file);
    let mut coins = coins(n);
    let overview: Overview = serde_json::from_value(fixture_json("overview.json")).unwrap();
    use lcw_fetcher::host::Clock as _;
    let end = host.unix_millis() / MINUTE * MINUTE;
    let start = end - 30 * DAY;
    block_on(async {
        let db = Db::open(&host).await.unwrap();
        let mut batch = String::new();
        for m in 0..30 * 1_440 {
            batch.push_str(&tick_lines(
                &mut coins,
                &[],
                &overview,
                m,
                start + m * MINUTE,
            ));
            if m % 60 == 59 {
                db.write_points(&crate::support::points(&batch))
                    .await
                    .unwrap();
                batch.clear();
            }
        }
        db.write_points(&crate::support::points(&batch))
            .await
            .unwrap();
    });
    let total = rows(&host, "cryptocurrency_data");
    let bytes = file_bytes(&host);

    let request = http::Request::get("/api/v1/coins/COIN000?from=-30d&step=1h")
        .body(Vec::new())
        .unwrap();
    let mut times = Vec::new();
    let mut buckets = 0;
    for _ in 0..7 {
        let started = Instant::now();
        let response = block_on(lcw_fetcher::routes::handle(&host, &request));
        times.push(started.elapsed());
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        buckets = body["count"].as_u64().unwrap();
    }
    assert!(buckets >= 720, "{buckets}");
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "30-day series of one coin at 1-hour steps: {buckets} buckets over 43 200 rows of that coin, in a table of {total} rows ({n} coins, {:.0} MB): GET /api/v1/coins/COIN000?from=-30d&step=1h took {:.1} ms median, {:.1} ms fastest, {:.1} ms slowest of 7 (native, through routes::handle)",
        bytes as f64 / 1e6,
        ms(times[3]),
        ms(times[0]),
        ms(times[6])
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
