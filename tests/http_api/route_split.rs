//! The two wasm components' entry points split the route table: `routes::handle_collect` (the
//! collector, spin.toml's `/collect` route) answers `/collect` exactly as `routes::handle` does,
//! and `routes::handle_api` (the api, the catch-all route) everything else.

use crate::support;

use http::{Method, Request, StatusCode};
use lcw_fetcher::routes;
use support::{LcwFake, NativeHost, block_on};

const TOKEN: &str = "route-split-token";

fn all(host: &NativeHost, request: &Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    block_on(routes::handle(host, request))
}

fn api(host: &NativeHost, request: &Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    block_on(routes::handle_api(host, request))
}

fn collector(host: &NativeHost, request: &Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    block_on(routes::handle_collect(host, request))
}

fn request(method: Method, path: &str, token: Option<&str>) -> Request<Vec<u8>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    builder.body(Vec::new()).unwrap()
}

fn host(fake: &LcwFake) -> NativeHost {
    NativeHost::new(&[
        ("lcw_api_key", support::lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("admin_token", TOKEN.to_owned()),
        ("initial_history_hours", "0".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
    ])
}

/// Status, `Allow` and body: what a client sees.
fn seen(response: &http::Response<Vec<u8>>) -> (StatusCode, Option<String>, String) {
    (
        response.status(),
        response
            .headers()
            .get(http::header::ALLOW)
            .map(|v| v.to_str().unwrap().to_owned()),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

#[test]
fn the_collector_answers_collect_as_the_full_table_does() {
    let fake = LcwFake::start();
    let host = host(&fake);
    for (method, token) in [
        (Method::GET, Some(TOKEN)),
        (Method::PUT, None),
        (Method::POST, None),
        (Method::POST, Some("wrong")),
    ] {
        let r = request(method.clone(), "/collect", token);
        assert_eq!(
            seen(&collector(&host, &r)),
            seen(&all(&host, &r)),
            "{method} /collect with {token:?}"
        );
        assert_ne!(collector(&host, &r).status(), StatusCode::OK);
    }
    let tick = collector(&host, &request(Method::POST, "/collect", Some(TOKEN)));
    assert_eq!(tick.status(), StatusCode::OK, "{}", seen(&tick).2);
    let body: serde_json::Value = serde_json::from_slice(tick.body()).unwrap();
    assert!(body["cycle"]["outcome"].is_string(), "{body}");
    // The tick ran for real: the stats the api serves count it.
    let stats = api(&host, &request(Method::GET, "/stats", None));
    assert_eq!(stats.status(), StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_slice(stats.body()).unwrap();
    assert_eq!(
        stats["recent_cycles"].as_array().map(Vec::len),
        Some(1),
        "{stats}"
    );
}

#[test]
fn the_collector_serves_no_other_path_and_the_api_not_collect() {
    let fake = LcwFake::start();
    let host = host(&fake);
    for path in [
        "/metrics",
        "/",
        "/api/v1/coins",
        "/collect/",
        "/cache/clear",
    ] {
        let r = request(Method::GET, path, Some(TOKEN));
        assert_eq!(
            collector(&host, &r).status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let r = request(Method::POST, "/collect", Some(TOKEN));
    let refused = api(&host, &r);
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(
        seen(&refused).2.contains("collector"),
        "{}",
        seen(&refused).2
    );
    assert!(fake.seen().is_empty(), "the api ran no tick");
    // Every other route answers through the api as through the full table.
    for (method, path, token) in [
        (Method::GET, "/metrics", None),
        (Method::GET, "/status", None),
        (Method::GET, "/stats/cache", None),
        (Method::GET, "/api/v1/coins", None),
        (Method::POST, "/api/v1/coins", None),
        (Method::GET, "/quarantine", Some(TOKEN)),
        (Method::GET, "/cache/clear", Some(TOKEN)),
        (Method::GET, "/nowhere", None),
    ] {
        let r = request(method.clone(), path, token);
        assert_eq!(
            seen(&api(&host, &r)).0,
            seen(&all(&host, &r)).0,
            "{method} {path}"
        );
    }
}
