//! Input that must never break a tick: hostile `Retry-After` values, one bad coin in a page,
//! huge error bodies with embedded newlines. Each test here failed on the code before its fix.

use crate::support;

use std::time::Duration;

use lcw_fetcher::cycle;
use lcw_fetcher::telemetry::history::Outcome;
use support::lcw_fake::fixture_json;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

/// Item 5: a `Retry-After` of u64::MAX seconds used to overflow `wait + MIN_ATTEMPT` in
/// `resilience.rs` and panic the tick.
#[test]
fn a_huge_retry_after_does_not_panic_the_tick() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    for value in [
        "18446744073709551615",
        "99999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let mut reply = Reply::documented_error(429);
        reply.headers.push(("Retry-After".into(), value.to_owned()));
        fake.respond("/coins/list", reply);
        let host = NativeHost::new(&variables_for(&fake, &influx));
        let record = block_on(cycle::run(&host));
        assert_eq!(record.outcome, Outcome::Partial, "{value}: {record:?}");
        assert!(
            record.errors.iter().any(|e| e.contains("/coins/list")),
            "{value}: {record:?}"
        );
    }
}

/// Item 6: one element with `1e400`, a null code or a rate as a string made the whole page
/// malformed; now the bad element is skipped and counted and the rest are written.
#[test]
fn one_bad_coin_does_not_fail_the_page() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut coins = fixture_json("coins_list.json");
    let list = coins.as_array_mut().unwrap();
    let good = list.len();
    let mut base = list[0].clone();
    base["code"] = "STR".into();
    base["rate"] = "1.5".into();
    list.push(base.clone());
    // Numbers outside f64 and a null code cannot be a point.
    let mut text = serde_json::to_string(&coins).unwrap();
    text.pop();
    text.push_str(r#",{"code":"HUGE","rate":1e400},{"code":null,"rate":2.0}]"#);
    fake.respond("/coins/list", Reply::json(200, text));
    let host = NativeHost::new(&variables_for(&fake, &influx));
    let record = block_on(cycle::run(&host));
    assert_ne!(record.outcome, Outcome::Error, "{record:?}");
    let rows = influx.rows("cryptocurrency_data");
    let codes: Vec<&str> = rows.iter().filter_map(|r| r["code"].as_str()).collect();
    assert!(
        codes.contains(&"STR"),
        "a number as a string is read: {codes:?}"
    );
    let str_row = rows.iter().find(|r| r["code"] == "STR").unwrap();
    assert_eq!(str_row["rate"], serde_json::json!(1.5));
    assert!(!codes.contains(&"HUGE"), "{codes:?}");
    // Every good coin of the page (the fixture's, plus the string one) is written.
    assert!(codes.len() > good, "{codes:?}");
    let snapshot = block_on(cycle::load_snapshot(&host)).unwrap();
    let metrics = lcw_fetcher::telemetry::prometheus::render(&snapshot).unwrap();
    let skipped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("lcw_records_skipped_total{") && l.contains("/coins/list"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(skipped, 2.0, "{metrics}");
    let stats = lcw_fetcher::telemetry::report::stats_json(&snapshot, None, None);
    assert!(
        stats.to_string().contains("records_skipped"),
        "the skips are in /stats too"
    );
}

/// Issue 13: an LCW error with a 200 KB description full of newlines leaves a small record and
/// single-line logs; at most a handful of errors are kept per record.
#[test]
fn a_huge_error_body_leaves_a_small_record_and_single_line_logs() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let description = "forged\n{\"event\":\"tick\",\"outcome\":\"success\"}\r\n".repeat(5_000);
    assert!(description.len() > 200_000);
    let body = serde_json::json!({"error": {"code": 400, "status": "Bad Request", "description": description}});
    for path in [
        "/coins/list",
        "/coins/map",
        "/overview",
        "/exchanges/list",
        "/credits",
    ] {
        fake.respond(path, Reply::json(400, body.to_string()));
    }
    // Retries fail too, with 5xx that carry the same body.
    fake.respond("/status", Reply::json(500, body.to_string()));
    let host = NativeHost::new(&variables_for(&fake, &influx));
    let record = block_on(cycle::run(&host));
    for error in &record.errors {
        assert!(
            error.len() <= 600,
            "an error is bounded: {} bytes",
            error.len()
        );
        assert!(!error.contains('\n') && !error.contains('\r'), "{error:?}");
    }
    for line in host.logs.lock().unwrap().iter() {
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        assert!(
            line.len() <= 2_000,
            "a log line is bounded: {} bytes",
            line.len()
        );
    }
    let doc = host
        .kv
        .lock()
        .unwrap()
        .get(lcw_fetcher::state::STATE_KEY)
        .cloned()
        .unwrap();
    assert!(doc.len() < 20_000, "state document {} bytes", doc.len());
    let stored: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    let last = &stored["history"]["recent"][0];
    assert!(last["errors"].as_array().unwrap().len() <= 5, "{last}");
}

/// Item 5, the other half: a remote delay of any size meets a duration without overflow.
#[test]
fn retry_after_is_capped_and_read_in_both_forms() {
    use lcw_fetcher::remote::{RETRY_AFTER_MAX, retry_after};
    let mut headers = http::HeaderMap::new();
    headers.insert("retry-after", "18446744073709551615".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(RETRY_AFTER_MAX));
    headers.insert("date", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    headers.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:30 GMT".parse().unwrap(),
    );
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
    headers.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:27:00 GMT".parse().unwrap(),
    );
    assert_eq!(
        retry_after(&headers),
        Some(Duration::ZERO),
        "a past date: now"
    );
    headers.insert("retry-after", "-5".parse().unwrap());
    assert_eq!(retry_after(&headers), None);
}
