//! The HTTP API over state a real cycle left in a shared store, as the collector and API
//! components share Spin's `default` store; `/metrics` is checked by promtool.

use crate::support;

use http::{Method, Request, StatusCode};
use lcw_fetcher::{cycle, routes};
use serde_json::Value;
use support::native_host::SharedKv;
use support::{
    Influx, LcwFake, NativeHost, Reply, block_on, promtool_check_metrics, variables_for,
};

fn get(host: &NativeHost, method: Method, path: &str) -> http::Response<Vec<u8>> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .unwrap();
    block_on(routes::handle(host, &request))
}

fn body_json(response: &http::Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

fn text(response: &http::Response<Vec<u8>>) -> &str {
    std::str::from_utf8(response.body()).unwrap()
}

/// Runs one good and one partial cycle through a collector host, returns the shared store.
fn store_after_two_cycles() -> SharedKv {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let collector = NativeHost::new(&variables_for(&fake, &influx));
    block_on(cycle::run(&collector));
    fake.respond("/overview", Reply::documented_error(503));
    // A minute later, when the cached answers have expired.
    let next_tick = NativeHost::with_kv(&variables_for(&fake, &influx), collector.kv.clone());
    next_tick.advance(std::time::Duration::from_secs(61));
    block_on(cycle::run(&next_tick));
    collector.kv
}

#[test]
fn metrics_show_real_cycle_counts_and_pass_promtool() {
    let api = NativeHost::with_kv(&[("lcw_api_key", "unused")], store_after_two_cycles());

    let response = get(&api, Method::GET, "/metrics");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = text(&response);
    promtool_check_metrics(body)
        .unwrap_or_else(|e| panic!("promtool rejected /metrics:\n{e}\n{body}"));
    for sample in [
        "lcw_fetch_cycles_total{status=\"success\"} 1\n",
        "lcw_fetch_cycles_total{status=\"partial\"} 1\n",
        "lcw_fetch_cycles_total{status=\"error\"} 0\n",
        // Per tick: 2 coins of the page + GRIN of the tracked coins (BTC, ETH taken once).
        "lcw_data_points_stored_total{data_type=\"coins\"} 6\n",
        "lcw_data_points_stored_total{data_type=\"overview\"} 1\n",
        // Fetched by the first tick, served from the cache (same timestamp) by the second.
        "lcw_data_points_stored_total{data_type=\"exchanges\"} 2\n",
        "# TYPE lcw_fetch_cycle_last_duration_seconds gauge\n",
        "# TYPE lcw_last_successful_cycle_timestamp_seconds gauge\n",
        "lcw_circuit_breaker_state 0\n",
        "lcw_api_credits_remaining 4321\n",
        "lcw_api_credits_daily_limit 10000\n",
        &format!(
            "lcw_fetcher_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(body.contains(sample), "missing {sample:?} in\n{body}");
    }
}

#[test]
fn metrics_of_an_empty_store_pass_promtool() {
    let api = NativeHost::new(&[("lcw_api_key", "unused")]);
    let response = get(&api, Method::GET, "/metrics");
    assert_eq!(response.status(), StatusCode::OK);
    promtool_check_metrics(text(&response)).unwrap();
    assert!(text(&response).contains("lcw_fetch_cycles_total{status=\"success\"} 0"));
}

#[test]
fn promtool_really_checks() {
    // Guards the guard: a counter without `_total` must be rejected, or the test above proves nothing.
    let bad = "# HELP lcw_bad A counter.\n# TYPE lcw_bad counter\nlcw_bad 1\n";
    assert!(promtool_check_metrics(bad).is_err());
}

#[test]
fn stats_list_the_recent_cycles() {
    let api = NativeHost::with_kv(&[("lcw_api_key", "unused")], store_after_two_cycles());

    let response = get(&api, Method::GET, "/stats");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let stats = body_json(&response);
    assert_eq!(stats["cycles_by_outcome"]["success"], 1);
    assert_eq!(stats["cycles_by_outcome"]["partial"], 1);
    let recent = stats["recent_cycles"].as_array().unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["outcome"], "success");
    assert_eq!(recent[0]["points_written"]["coins"], 3);
    assert_eq!(recent[1]["outcome"], "partial");
    assert!(
        recent[1]["errors"][0]
            .as_str()
            .unwrap()
            .contains("/overview: HTTP 503")
    );
    assert!(
        recent[1]["started_at_ms"].as_i64().unwrap()
            >= recent[0]["started_at_ms"].as_i64().unwrap()
    );
}

#[test]
fn unknown_routes_and_wrong_methods_get_json_errors() {
    let api = NativeHost::new(&[("lcw_api_key", "unused")]);

    let missing = get(&api, Method::GET, "/nope");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body_json(&missing)["error"]["message"],
        "no route for GET /nope"
    );

    let wrong = get(&api, Method::POST, "/metrics");
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers()["allow"], "GET");
    assert_eq!(body_json(&wrong)["error"]["status"], 405);
}

#[test]
fn metrics_can_be_switched_off() {
    let api = NativeHost::new(&[("enable_metrics", "false")]);
    let response = get(&api, Method::GET, "/metrics");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        body_json(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("enable_metrics = false")
    );

    let api = NativeHost::new(&[("enable_metrics", "sometimes")]);
    let response = get(&api, Method::GET, "/metrics");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text(&response).contains("`enable_metrics` = \\\"sometimes\\\": must be true or false"),
        "{}",
        text(&response)
    );
}

#[test]
fn a_corrupt_state_document_is_treated_as_empty_and_logged() {
    let api = NativeHost::new(&[("lcw_api_key", "unused")]);
    api.kv
        .lock()
        .unwrap()
        .insert("lcw/v1/state".into(), b"{not json".to_vec());

    let response = get(&api, Method::GET, "/stats");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(&response)["recent_cycles"], serde_json::json!([]));
    assert!(
        api.log_text()
            .contains("state `lcw/v1/state` is unreadable")
    );
}

/// The route table decides, and nothing else: a path that no line of it has is a 404 whatever
/// the method and the token (no fall-through to a handler), and a path it has with other
/// methods is a 405 whose `Allow` names exactly the table's methods for it.
#[test]
fn every_path_not_in_the_route_table_is_a_404_whatever_the_method_and_token() {
    const TOKEN: &str = "admin-token-for-the-table";
    let host = NativeHost::new(&[("lcw_api_key", "unused"), ("admin_token", TOKEN)]);
    let table = routes::api_routes::<NativeHost>();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let mut unknown = vec![
        "/nope".to_owned(),
        "/api/v1".to_owned(),
        "/api/v1/".to_owned(),
        "/api/v1/coins/".to_owned(),
        "/api/v1/coins/BTC/x".to_owned(),
        "/api/v1/nothing".to_owned(),
        "/collect/x".to_owned(),
        "//quarantine".to_owned(),
        "/%71uarantine".to_owned(),
    ];
    for line in &table {
        let shown = line.path.shown().replace("{code}", "BTC");
        unknown.extend([
            format!("{shown}/"),
            shown.to_uppercase(),
            format!("{shown}x"),
            format!("/x{shown}"),
        ]);
    }
    unknown.retain(|path| !table.iter().any(|line| line.path.matches(path)));
    for path in &unknown {
        for method in &methods {
            for token in [None, Some(TOKEN), Some("wrong")] {
                let mut request = Request::builder().method(method.clone()).uri(path.as_str());
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let response = block_on(routes::handle(&host, &request.body(Vec::new()).unwrap()));
                assert_eq!(
                    response.status(),
                    StatusCode::NOT_FOUND,
                    "{method} {path} with {token:?}: {}",
                    text(&response)
                );
            }
        }
    }
    for line in &table {
        let path = line.path.shown().replace("{code}", "BTC");
        let allowed: Vec<&str> = table
            .iter()
            .filter(|l| l.path.matches(&path))
            .map(|l| l.method.as_str())
            .collect();
        for method in methods.iter().filter(|m| !allowed.contains(&m.as_str())) {
            let response = get(&host, method.clone(), &path);
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                response.headers()["allow"],
                allowed.join(", "),
                "{method} {path}"
            );
        }
    }
}

/// docs/api.md's route table is the route table: the same methods and paths, and "admin" on
/// exactly the admin routes.
#[test]
fn the_documented_route_table_is_the_route_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let section = readme
        .split("\n## Routes")
        .nth(1)
        .expect("a Routes section")
        .split("\n#")
        .next()
        .unwrap();
    let mut documented: Vec<(String, bool)> = section
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (route, rest) = rest.split_once("` |")?;
            let route = route.split('?').next().unwrap().to_owned();
            Some((route, rest.trim_start().starts_with("admin")))
        })
        .collect();
    let mut table: Vec<(String, bool)> = routes::api_routes::<NativeHost>()
        .iter()
        .map(|line| {
            (
                format!("{} {}", line.method, line.path.shown()),
                line.access == routes::Access::Admin,
            )
        })
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table);
}

/// Every route of the collector component is in the api's table too, as served elsewhere with
/// the same access, so the api answers it as the table says (401 without the token, then a 404
/// naming the collector) and docs/api.md's table, read from the api's, lists it.
#[test]
fn the_collectors_routes_are_in_the_api_table_as_served_elsewhere() {
    let api = routes::api_routes::<NativeHost>();
    for line in routes::collector_routes::<NativeHost>() {
        let listed = api
            .iter()
            .find(|l| l.method == line.method && l.path == line.path)
            .unwrap_or_else(|| {
                panic!(
                    "{} {} is not in the api table",
                    line.method,
                    line.path.shown()
                )
            });
        assert_eq!(listed.access, line.access);
        assert!(matches!(
            listed.serve,
            routes::Serve::Elsewhere("collector")
        ));
    }
}
