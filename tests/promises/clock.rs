//! A clock that jumps decides nothing alone: rows a clock ahead stamped never hide the fresh
//! ones, retention never deletes a row inside its window on one clock's word, and a tick whose
//! clock and LCW's disagree is counted and said in `/status`.

use std::time::Duration;

use http::{Request, StatusCode};
use lcw_fetcher::cycle;
use lcw_fetcher::host::SqlValue;
use lcw_fetcher::routes;
use lcw_fetcher::telemetry::history::Outcome;
use serde_json::Value;

use crate::support::lcw_fake::API_KEY;
use crate::support::native_host::{SharedKv, SharedSql, memory_sql};
use crate::support::{LcwFake, NativeHost, block_on, collector_state};

const DAY: Duration = Duration::from_secs(86_400);

/// A host on the shared store and database whose clock is `ahead` of the real one.
fn host_at(fake: &LcwFake, kv: &SharedKv, sql: &SharedSql, ahead: Duration) -> NativeHost {
    let host = NativeHost::with_kv(
        &[
            ("lcw_api_key", API_KEY),
            ("lcw_base_url", fake.base_url.as_str()),
        ],
        kv.clone(),
    )
    .with_sql(sql.clone());
    host.advance(ahead);
    host
}

fn tick(host: &NativeHost) {
    let record = block_on(cycle::run(host));
    assert!(
        matches!(record.outcome, Outcome::Success | Outcome::Partial),
        "{:?}",
        record.errors
    );
}

fn get(host: &NativeHost, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Vec::new()).unwrap();
    let response = block_on(routes::handle(host, &request));
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), body)
}

fn coin_rows_before(sql: &SharedSql, before_ms: i64) -> i64 {
    let answer = crate::support::sql::execute(
        &sql.lock().unwrap(),
        "SELECT COUNT(*) FROM cryptocurrency_data WHERE time_ms < ?",
        &[SqlValue::Integer(before_ms)],
    )
    .unwrap();
    match answer.rows[0][0] {
        SqlValue::Integer(n) => n,
        ref other => panic!("{other:?}"),
    }
}

/// `sqlite::latest` took its one-hour window from the newest row of the whole table: after one
/// tick under a clock a day ahead, `/api/v1/coins` (and the page) showed only those rows for a
/// day, whatever the ticks with a right clock wrote.
#[test]
fn rows_a_clock_a_day_ahead_stamped_do_not_hide_the_fresh_ones() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    tick(&host_at(&fake, &kv, &sql, DAY));
    let right = host_at(&fake, &kv, &sql, Duration::ZERO);
    tick(&right);
    let now_ms = lcw_fetcher::host::Clock::unix_millis(&right);
    let (status, coins) = get(&right, "/api/v1/coins");
    assert_eq!(status, StatusCode::OK, "{coins}");
    let rows = coins["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{coins}");
    for row in rows {
        let time_ms = row["time_ms"].as_i64().expect("time_ms");
        assert!(
            (now_ms - 60_000..=now_ms + 60_000).contains(&time_ms),
            "a row of the clock a day ahead is shown as the latest: {row}"
        );
    }
    let (_, health) = get(&right, "/status");
    let ahead = &health["sink"]["sqlite"]["rows_ahead_of_clock"]["cryptocurrency_data"];
    assert!(
        ahead.as_u64() > Some(0),
        "the rows ahead are counted: {health}"
    );
}

/// One tick under a clock a month ahead deleted the last day of rows inside the retention
/// window, uncounted. Retention cuts at the earliest of the tick's clock, the previous tick's
/// and LCW's: here there is no `Date` from LCW, and the previous tick's clock holds it.
#[test]
fn one_tick_a_month_ahead_deletes_no_row_inside_the_retention_window() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    tick(&host_at(&fake, &kv, &sql, Duration::ZERO));
    let written = coin_rows_before(&sql, i64::MAX);
    assert!(written > 0);
    tick(&host_at(&fake, &kv, &sql, 31 * DAY));
    assert_eq!(
        coin_rows_before(&sql, i64::MAX),
        2 * written,
        "the rows of the tick a month before are kept"
    );
    let clock = collector_state(&kv).clock;
    assert_eq!(clock.retention_held, 1, "{clock:?}");
}

/// With LCW dating its answers, a host clock a month ahead is disputed on every tick, so even
/// two ticks agreeing with each other delete nothing LCW's clock keeps; `/status` says so, and
/// stops saying it once the clocks agree again.
#[test]
fn a_host_clock_lcw_disputes_is_counted_said_and_deletes_nothing() {
    let fake = LcwFake::start();
    fake.send_dates();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    tick(&host_at(&fake, &kv, &sql, Duration::ZERO));
    let written = coin_rows_before(&sql, i64::MAX);
    let ahead = host_at(&fake, &kv, &sql, 31 * DAY);
    tick(&ahead);
    ahead.advance(Duration::from_secs(60));
    tick(&ahead);
    assert_eq!(coin_rows_before(&sql, i64::MAX), 3 * written);
    let (status, health) = get(&ahead, "/status");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["clock"]["disputed"], true, "{health}");
    assert_eq!(health["clock"]["disputed_ticks"], 2, "{health}");
    let skew_ms = health["clock"]["skew_ms"].as_i64().expect("skew_ms");
    assert!(
        (31 * 86_400_000 - 120_000..=31 * 86_400_000 + 120_000).contains(&skew_ms),
        "{health}"
    );
    let problems = health["problems"].to_string();
    assert!(problems.contains("host clock"), "{problems}");
    assert!(
        ahead.log_text().contains("ahead of LCW's"),
        "{}",
        ahead.log_text()
    );

    let right = host_at(&fake, &kv, &sql, Duration::from_secs(120));
    tick(&right);
    let (_, health) = get(&right, "/status");
    assert_eq!(health["clock"]["disputed"], false, "{health}");
    assert!(
        !health["problems"].to_string().contains("host clock"),
        "{health}"
    );
}

/// A live check stamped by a clock a day ahead counted as fresh until that time: `/status` made
/// no live check for a day and showed the stale one.
#[test]
fn a_status_check_a_clock_ahead_stamped_does_not_hold_off_live_checks() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    get(&host_at(&fake, &kv, &sql, DAY), "/status");
    assert_eq!(fake.seen_on("/status").len(), 1, "the first check is live");
    get(&host_at(&fake, &kv, &sql, Duration::ZERO), "/status");
    assert_eq!(
        fake.seen_on("/status").len(),
        2,
        "a check from a day ahead is not fresh now"
    );
}
