//! Every body the app sends goes with `Content-Length`. Under Spin a request body without that
//! header goes out chunked, which some servers and proxies refuse (411) or mishandle; the native
//! host frames bodies the same way and the LCW fake refuses chunked bodies, so a missing header
//! fails here instead of only under Spin.

use crate::support;

use lcw_fetcher::cycle;
use lcw_fetcher::host::{HttpClient as _, Timeouts};
use lcw_fetcher::telemetry::history::Outcome;
use std::time::Duration;
use support::{LcwFake, NativeHost, Reply, block_on};

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    first_byte: Duration::from_secs(5),
    total: Duration::from_secs(10),
};

/// A host whose LCW and InfluxDB (v2) are both `fake`, with `extra` variables.
fn host_for(fake: &LcwFake, extra: &[(&str, &str)]) -> NativeHost {
    let mut variables = vec![
        ("lcw_api_key", support::lcw_fake::API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("influx_url", fake.base_url.as_str()),
        ("influx_org", "lcw"),
        ("influx_token", "influx-test-token"),
    ];
    variables.extend_from_slice(extra);
    NativeHost::new(&variables)
}

/// The test host really sends a body without `Content-Length` chunked, and the fake refuses it:
/// the check below cannot pass by accident.
#[test]
fn the_native_host_sends_an_unsized_body_chunked_and_the_fake_refuses_it() {
    let fake = LcwFake::start();
    let host = NativeHost::new::<&str, &str>(&[]);
    let request = http::Request::post(format!("{}/overview", fake.base_url))
        .body(br#"{"currency":"USD"}"#.to_vec())
        .unwrap();

    let response = block_on(host.send(request, TIMEOUTS)).unwrap();

    assert_eq!(response.status(), 411);
    let seen = fake.seen_on("/overview");
    assert!(seen[0].chunked, "{:?}", seen[0].headers);
    assert_eq!(seen[0].body, br#"{"currency":"USD"}"#);
}

#[test]
fn every_lcw_request_of_a_tick_carries_its_content_length() {
    let fake = LcwFake::start();
    // InfluxDB is the fake too, so its write request is checked the same way.
    fake.respond("/api/v2/write", Reply::json(204, ""));
    let host = host_for(&fake, &[("max_coins_per_fetch", "200")]);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    let seen = fake.seen();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert!(posts.iter().any(|s| s.path == "/api/v2/write"), "{seen:?}");
    assert_eq!(fake.seen_on("/coins/list").len(), 2, "two pages of 100");
    for post in posts {
        assert!(!post.chunked, "{} went chunked", post.path);
        let length = post.header("content-length").map(str::parse::<usize>);
        assert_eq!(length, Some(Ok(post.body.len())), "{}", post.path);
    }
}

/// The other framing of answers: a client must read chunked answers whole.
#[test]
fn chunked_answers_are_read_whole() {
    let fake = LcwFake::start();
    fake.chunked_replies();
    let host = host_for(&fake, &[]);
    fake.respond("/api/v2/write", Reply::json(204, ""));

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_written["coins"], 3);
}

/// An answer larger than the body cap fails that call only, without reading it whole.
#[test]
fn an_oversized_answer_fails_its_call_only() {
    let fake = LcwFake::start();
    fake.respond("/api/v2/write", Reply::json(204, ""));
    let huge = format!(
        r#"{{"cap":1,"pad":"{}"}}"#,
        "x".repeat(lcw_fetcher::host::MAX_RESPONSE_BYTES)
    );
    fake.respond("/overview", Reply::json(200, huge));
    let host = host_for(&fake, &[("retry_max", "0")]);

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Partial, "{:?}", record.errors);
    assert_eq!(record.points_written["coins"], 3);
    assert!(
        record.errors.iter().any(|e| e.contains("/overview")),
        "{:?}",
        record.errors
    );
}
