//! Item 7: public routes do bounded work. `/status` needs no token, so however often it is
//! called it makes at most one live LCW check and one InfluxDB ping per `cache_ttl_status_s`,
//! says how old what it shows is, and never echoes a URL's `user:password@`.

use crate::support;

use std::time::Duration;

use http::{Method, Request};
use lcw_fetcher::routes;
use serde_json::Value;
use support::{LcwFake, NativeHost, block_on};

fn status(host: &NativeHost) -> (u16, Value) {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/status")
        .body(Vec::new())
        .unwrap();
    let response = block_on(routes::handle(host, &request));
    (
        response.status().as_u16(),
        serde_json::from_slice(response.body()).unwrap(),
    )
}

#[test]
fn status_makes_at_most_one_live_check_per_ttl() {
    // One fake plays both LCW (`/status`) and InfluxDB 2 (`/health`), counting the calls.
    let fake = LcwFake::start();
    fake.respond("/health", support::Reply::json(200, r#"{"status":"pass"}"#));
    let variables = vec![
        ("lcw_api_key", support::lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", fake.base_url.clone()),
        ("influx_org", "o".to_owned()),
        ("influx_token", "t".to_owned()),
        ("cache_ttl_status_s", "120".to_owned()),
    ];
    let first = NativeHost::new(&variables);
    for _ in 0..20 {
        // Every caller is a fresh instance on the shared store, as under Spin.
        let host = NativeHost::with_kv(&variables, first.kv.clone());
        let (_, body) = status(&host);
        assert!(body["lcw"]["age_s"].is_number(), "{body}");
        assert!(body["influx"]["ping"]["age_s"].is_number(), "{body}");
    }
    assert_eq!(fake.seen_on("/status").len(), 1, "one LCW check per TTL");
    assert_eq!(fake.seen_on("/health").len(), 1, "one ping per TTL");

    let later = NativeHost::with_kv(&variables, first.kv.clone());
    later.advance(Duration::from_secs(121));
    let (_, body) = status(&later);
    assert_eq!(body["lcw"]["live"], true, "{body}");
    assert_eq!(fake.seen_on("/status").len(), 2);
    let again = NativeHost::with_kv(&variables, first.kv.clone());
    again.advance(Duration::from_secs(150));
    let (_, body) = status(&again);
    assert_eq!(body["lcw"]["live"], false, "{body}");
    assert_eq!(body["lcw"]["age_s"], 29, "{body}");
    assert_eq!(fake.seen_on("/status").len(), 2);
}

#[test]
fn a_url_with_userinfo_is_never_echoed() {
    let host = NativeHost::new(&[
        ("lcw_api_key", "k"),
        ("lcw_base_url", "ftp://bob:hunter2@lcw.example/"),
        ("influx_url", "http://alice:s3cret@127.0.0.1:9/"),
        ("influx_api", "v1"),
    ]);
    let (code, body) = status(&host);
    assert_eq!(code, 503);
    let text = body.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(
        text.contains("lcw_base_url"),
        "the problem is still named: {text}"
    );
}
