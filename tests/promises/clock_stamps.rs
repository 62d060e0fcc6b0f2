//! A time stamped by a clock that had jumped ahead (or written into a corrupted document) holds
//! nothing for as long as the jump: a lease, a breaker, an InfluxDB pause, a live check, a last
//! success, an alert or a lease counter's quiet time stamped a day ahead is taken as what it is,
//! a clock's word alone. Each test failed on the code before its fix.

use std::time::Duration;

use http::{Request, StatusCode};
use lcw_fetcher::cycle;
use lcw_fetcher::host::Clock;
use lcw_fetcher::lease::{self, Taken};
use lcw_fetcher::routes;
use lcw_fetcher::telemetry::history::Outcome;
use serde_json::Value;

use crate::support::lcw_fake::API_KEY;
use crate::support::native_host::{SharedKv, SharedSql, memory_sql};
use crate::support::{LcwFake, NativeHost, Reply, block_on};

const DAY: Duration = Duration::from_secs(86_400);
const MINUTE: Duration = Duration::from_secs(60);

/// A host on the shared store and database, its LCW at `base_url`, its clock `ahead` of the
/// real one.
fn host_at(base_url: &str, kv: &SharedKv, sql: &SharedSql, ahead: Duration) -> NativeHost {
    let host = NativeHost::with_kv(
        &[("lcw_api_key", API_KEY), ("lcw_base_url", base_url)],
        kv.clone(),
    )
    .with_sql(sql.clone());
    host.advance(ahead);
    host
}

fn get(host: &NativeHost, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Vec::new()).unwrap();
    let response = block_on(routes::handle(host, &request));
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), body)
}

/// A host whose clock was a day ahead took the lease and died holding it (or its document is
/// corrupted with a far expiry). By every other clock the lease was live for a day: every tick
/// was `skipped_overlap` for a day. A lease expiring further ahead than any taker writes one is
/// a clock's word alone: once the same document has stood for a lease's length by the taker's
/// own clock, it is taken over.
#[test]
fn a_lease_stamped_by_a_clock_a_day_ahead_blocks_no_tick_for_a_day() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    let ahead = host_at(fake.base_url.as_str(), &kv, &sql, DAY);
    let expires_at_ms = ahead.unix_millis() + 60_000;
    let taken = block_on(lease::take(&ahead, "dead-holder", expires_at_ms)).unwrap();
    assert!(matches!(taken, Taken::Held(_)), "{taken:?}");
    drop(ahead);

    let right = host_at(fake.base_url.as_str(), &kv, &sql, Duration::ZERO);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let record = block_on(cycle::run(&right));
        outcomes.push(record.outcome);
        right.advance(MINUTE);
    }
    assert_eq!(
        outcomes[0],
        Outcome::SkippedOverlap,
        "a lease just taken is not taken over at once"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Success | Outcome::Partial)),
        "no tick ran within 3 minutes of a dead holder's lease: {outcomes:?}"
    );
}

/// A successful tick under a clock a day ahead stamped `last_success_at_ms` a day ahead. With the
/// clock right again and no tick succeeding since, `/status` stayed 200 for a day (the age of the
/// last success was negative, never over the limit): the health check lied.
#[test]
fn a_last_success_stamped_ahead_of_the_clock_does_not_keep_status_healthy() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    let record = block_on(cycle::run(&host_at(fake.base_url.as_str(), &kv, &sql, DAY)));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);

    let right = host_at(fake.base_url.as_str(), &kv, &sql, Duration::ZERO);
    right.advance(routes::STALE_AFTER + MINUTE);
    let (status, health) = get(&right, "/status");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert!(
        health["problems"]
            .to_string()
            .contains("last successful tick"),
        "{health}"
    );
}

/// An API instance whose clock was a day ahead found LCW unreachable and recorded its check a
/// day ahead. Every `/status` after that, by a right clock, took the check as fresh (no live
/// check for a day) and newer than the collector's own checks: 503 "LCW not reachable" for a
/// day while the collector reached LCW every minute.
#[test]
fn a_status_check_stamped_ahead_of_the_clock_is_not_served_for_a_day() {
    let fake = LcwFake::start();
    let (kv, sql) = (SharedKv::default(), memory_sql());
    let right = host_at(fake.base_url.as_str(), &kv, &sql, Duration::ZERO);
    let record = block_on(cycle::run(&right));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);

    fake.respond("/status", Reply::json(503, r#"{"error":"down"}"#));
    let ahead = host_at(fake.base_url.as_str(), &kv, &sql, DAY);
    let (status, health) = get(&ahead, "/status");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    fake.restore("/status");

    right.advance(3 * MINUTE);
    let record = block_on(cycle::run(&right));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    let (status, health) = get(&right, "/status");
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["lcw"]["reachable"], true, "{health}");
}

/// A host on the shared store with its own variables on top of LCW's, its clock `ahead`.
fn host_with(fake: &LcwFake, kv: &SharedKv, extra: &[(&str, &str)], ahead: Duration) -> NativeHost {
    let mut variables = vec![
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
    ];
    variables.extend_from_slice(extra);
    let host = NativeHost::with_kv(&variables, kv.clone());
    host.advance(ahead);
    host
}

/// A tick under a clock a day ahead met an authentication failure (the key was being rotated)
/// and opened the breaker until a day and 30 s ahead. With the clock right again and the key
/// good, every tick was `skipped_breaker` for a day: no LCW call, no data. An open breaker's
/// end further ahead than a cool-down was stamped by a clock ahead: its cool-down is over.
#[test]
fn a_breaker_opened_by_a_clock_a_day_ahead_does_not_stop_the_ticks_for_a_day() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let wrong_key = host_with(&fake, &kv, &[("lcw_api_key", "rotated-key-0000")], DAY);
    let record = block_on(cycle::run(&wrong_key));
    assert_eq!(record.breaker, "open", "{record:?}");

    let right = host_with(&fake, &kv, &[], Duration::ZERO);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        right.advance(MINUTE);
        outcomes.push(block_on(cycle::run(&right)).outcome);
    }
    assert!(
        outcomes.contains(&Outcome::Success),
        "the ticks after a clock a day ahead opened the breaker: {outcomes:?}"
    );
}

/// InfluxDB answered 429 to a tick under a clock a day ahead: nothing was to be sent before a
/// day and 10 s ahead. With the clock right again and InfluxDB taking writes, every tick spooled
/// its fresh points for a day (the spool fills, then evicts). A pause further ahead than the
/// longest `Retry-After` honoured was stamped by a clock ahead: it is over.
#[test]
fn an_influxdb_pause_stamped_by_a_clock_a_day_ahead_holds_no_fresh_point_back() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let influx = [
        ("sink", "influxdb"),
        ("influx_url", fake.base_url.as_str()),
        ("influx_api", "v1"),
        ("influx_database", "lcw"),
        ("initial_history_hours", "0"),
    ];
    fake.respond("/write", Reply::json(429, r#"{"error":"slow down"}"#));
    let record = block_on(cycle::run(&host_with(&fake, &kv, &influx, DAY)));
    assert!(record.points_spooled > 0, "{record:?}");

    fake.respond("/write", Reply::json(204, ""));
    let right = host_with(&fake, &kv, &influx, Duration::ZERO);
    right.advance(MINUTE);
    let record = block_on(cycle::run(&right));
    assert_eq!(record.outcome, Outcome::Success, "{record:?}");
    assert_eq!(record.points_spooled, 0, "{record:?}");
}

/// The lease document names the counters of past generations still stored and when they are
/// quiet. Times there stamped far ahead (a clock ahead, a corrupted document) kept every
/// counter forever: each tick left one more `lcw/v1/lease/holders/<generation>` key behind, a
/// store growing without bound. A quiet time is held to the furthest any taker sets one.
#[test]
fn past_lease_counters_stamped_far_ahead_do_not_pile_up() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let host = host_with(&fake, &kv, &[], Duration::ZERO);
    let corrupted = lease::Lease {
        generation: 3,
        past: Some(lease::Past {
            from: 0,
            older_below: 3,
            older_quiet_at_ms: i64::MAX,
            quiet_at_ms: i64::MAX,
        }),
        ..lease::Lease::default()
    };
    kv.lock().unwrap().insert(
        lcw_fetcher::state::LEASE_KEY.to_owned(),
        serde_json::to_vec(&corrupted).unwrap(),
    );
    for _ in 0..30 {
        block_on(cycle::run(&host));
        host.advance(MINUTE);
    }
    let counters = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(lease::HOLDERS_PREFIX))
        .count();
    assert!(counters <= 3, "{counters} past lease counters kept");
}

/// One tick under a clock a day ahead raised a slow-call alert and stamped it a day ahead: with
/// the clock right again, no alert for that operation was logged for a day, however slow it
/// was (the cool-down's age was negative). An alert stamped further ahead than the clocks'
/// tolerance does not hold the next one off.
#[test]
fn an_alert_stamped_by_a_clock_a_day_ahead_does_not_silence_alerts_for_a_day() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let slow = [("alert_warning_s", "1"), ("initial_history_hours", "0")];
    let reply = || Reply::json(200, crate::support::lcw_fake::fixture("coins_list.json"));
    fake.respond("/coins/list", reply().delayed(Duration::from_millis(1_300)));
    let ahead = host_with(&fake, &kv, &slow, DAY);
    block_on(cycle::run(&ahead));
    let alerted = |host: &NativeHost| {
        host.log_text()
            .lines()
            .any(|l| l.contains("\"event\":\"alert\"") && l.contains("\"fetch_coins_list\""))
    };
    assert!(alerted(&ahead), "{}", ahead.log_text());

    let right = host_with(&fake, &kv, &slow, Duration::ZERO);
    right.advance(10 * MINUTE);
    block_on(cycle::run(&right));
    assert!(
        alerted(&right),
        "no alert for a call as slow: {}",
        right.log_text()
    );
}

/// The breaker's own copy of the clocks' tolerance (its layer may not import `clock`) is the
/// same bound.
#[test]
fn the_breaker_tolerates_a_clock_ahead_as_far_as_the_readers_do() {
    assert_eq!(
        lcw_fetcher::resilience::CLOCK_TOLERANCE_MS,
        lcw_fetcher::clock::FUTURE_LIMIT_MS
    );
}
