//! Observability across ticks: every metric family populated and promtool-clean, statistics that
//! survive instances, `/status` as a health check, admin routes and their authentication,
//! structured logs and alerts — and no secret anywhere.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::{cycle, lease, routes, state};
use serde_json::Value;
use support::lcw_fake::API_KEY;
use support::native_host::SharedKv;
use support::{
    Influx, LcwFake, NativeHost, Reply, block_on, promtool_check_metrics, variables_for,
};

const S: Duration = Duration::from_secs(1);
const ADMIN: &str = "admin-secret-7d1e";
const INFLUX_TOKEN: &str = "influx-secret-3c9a";

fn call(
    host: &NativeHost,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> http::Response<Vec<u8>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    block_on(routes::handle(host, &builder.body(Vec::new()).unwrap()))
}

fn body(response: &http::Response<Vec<u8>>) -> String {
    String::from_utf8(response.body().clone()).unwrap()
}

fn json(response: &http::Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// Variables with every secret set, so that every test can look for them.
fn secret_variables(fake: &LcwFake, influx: &Influx) -> Vec<(&'static str, String)> {
    let mut variables = variables_for(fake, influx);
    variables.push(("admin_token", ADMIN.into()));
    variables.push(("influx_token", INFLUX_TOKEN.into()));
    variables
}

/// Three ticks on separate hosts sharing one store: a good one, one with a failing endpoint,
/// one a minute later. Returns the store.
fn three_ticks(fake: &LcwFake, variables: &[(&'static str, String)]) -> SharedKv {
    let kv = SharedKv::default();
    for (i, at) in [0u64, 61, 122].into_iter().enumerate() {
        if i == 1 {
            fake.respond("/overview", Reply::documented_error(503));
        } else {
            fake.restore("/overview");
        }
        let host = NativeHost::with_kv(variables, kv.clone());
        host.advance(Duration::from_secs(at));
        block_on(cycle::run(&host));
    }
    kv
}

/// Parses exposition text into family → samples (name with labels → value).
fn samples(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut families: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap().to_owned();
            families.entry(current.clone()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, value) = line.rsplit_once(' ').unwrap();
            families
                .get_mut(&current)
                .unwrap()
                .push((name.to_owned(), value.parse().unwrap()));
        }
    }
    families
}

#[test]
fn every_family_has_samples_after_a_few_ticks_and_promtool_is_clean() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = secret_variables(&fake, &influx);
    let kv = three_ticks(&fake, &variables);
    let api = NativeHost::with_kv(&variables, kv);

    let response = call(&api, Method::GET, "/metrics", &[]);
    assert_eq!(response.status(), StatusCode::OK);
    let text = body(&response);
    promtool_check_metrics(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let families = samples(&text);
    for family in [
        "lcw_fetcher_info",
        "lcw_operation_duration_seconds",
        "lcw_operations_total",
        "lcw_api_calls_total",
        "lcw_api_hedges_total",
        "lcw_api_hedges_won_total",
        "lcw_api_response_duration_seconds",
        "lcw_cache_operations_total",
        "lcw_cache_size_entries",
        "lcw_database_operations_total",
        "lcw_database_response_duration_seconds",
        "lcw_system_resources",
        "lcw_fetch_cycles_total",
        "lcw_fetch_cycle_duration_seconds",
        "lcw_data_points_stored_total",
        "lcw_circuit_breaker_state",
        "lcw_api_credits_remaining",
        "lcw_spool_points",
        "lcw_quarantined_points_total",
        "lcw_last_successful_cycle_timestamp_seconds",
    ] {
        assert!(
            !families.get(family).is_none_or(Vec::is_empty),
            "{family} has no sample\n{text}"
        );
    }
    let value = |sample: &str| {
        families
            .values()
            .flatten()
            .find(|(name, _)| name == sample)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no sample {sample}\n{text}"))
    };
    assert_eq!(value("lcw_fetch_cycles_total{status=\"success\"}"), 2.0);
    assert_eq!(value("lcw_fetch_cycles_total{status=\"partial\"}"), 1.0);
    assert_eq!(value("lcw_fetch_cycle_duration_seconds_count"), 3.0);
    assert!(
        value("lcw_api_calls_total{endpoint=\"/overview\",status_code=\"503\"}") >= 4.0,
        "retried 503s"
    );
    assert!(value("lcw_operations_total{operation=\"fetch_overview\",status=\"error\"}") == 1.0);
    assert!(value("lcw_cache_operations_total{operation=\"hit\"}") > 0.0);
    assert!(value("lcw_database_operations_total{status=\"success\"}") >= 3.0);
    assert!(value("lcw_system_resources{resource=\"kv_state_bytes\"}") > 1000.0);

    // Histograms: buckets ascend, counts are cumulative, +Inf equals _count.
    for (family, rows) in &families {
        let buckets: Vec<&(String, f64)> = rows
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{family}_bucket")))
            .collect();
        if buckets.is_empty() {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (name, count) in buckets {
            let le = name
                .split("le=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let series = name.replace(&format!("le=\"{le}\""), "");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            by_series.entry(series).or_default().push((bound, *count));
        }
        for (series, points) in by_series {
            assert!(
                points
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{series}: {points:?}"
            );
            assert_eq!(points.last().unwrap().0, f64::INFINITY);
            let count_name = series
                .replace("_bucket", "_count")
                .replace(",}", "}")
                .replace("{}", "");
            assert_eq!(points.last().unwrap().1, value(&count_name), "{series}");
        }
    }
}

#[test]
fn statistics_survive_instances_and_read_as_a_table() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = secret_variables(&fake, &influx);
    let kv = three_ticks(&fake, &variables);
    let api = NativeHost::with_kv(&variables, kv);

    let stats = json(&call(&api, Method::GET, "/stats", &[]));
    let cycle = stats["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "fetch_cycle")
        .unwrap();
    assert_eq!(
        cycle["count"], 3,
        "three ticks on three instances, one history"
    );
    let overview = json(&call(
        &api,
        Method::GET,
        "/stats?operation=fetch_overview",
        &[],
    ));
    let ops = overview["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(
        (ops[0]["count"].as_u64(), ops[0]["errors"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(ops[0]["success_rate"].as_f64().unwrap(), 2.0 / 3.0);
    assert!(ops[0]["p95_ms"].is_u64());

    let table = call(&api, Method::GET, "/stats?format=text", &[]);
    assert_eq!(table.headers()["content-type"], "text/plain; charset=utf-8");
    let text = body(&table);
    assert!(
        text.contains("operation") && text.contains("p95 ms") && text.contains("fetch_overview"),
        "{text}"
    );
    eprintln!("{text}");
    let accepted = body(&call(
        &api,
        Method::GET,
        "/stats?operation=fetch_cycle",
        &[("accept", "text/plain")],
    ));
    assert!(
        accepted.contains("fetch_cycle") && !accepted.contains("fetch_overview"),
        "{accepted}"
    );

    let unknown = call(&api, Method::GET, "/stats?operation=nope", &[]);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(body(&unknown).contains("known: api_credits_check"));

    let cache = json(&call(&api, Method::GET, "/stats/cache", &[]));
    assert!(cache["hits"].as_u64().unwrap() > 0);
    assert!(cache["verdict"].is_string());
}

#[test]
fn status_is_a_health_check() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = secret_variables(&fake, &influx);
    let kv = SharedKv::default();
    let api = NativeHost::with_kv(&variables, kv.clone());

    let before = call(&api, Method::GET, "/status", &[]);
    assert_eq!(before.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body(&before).contains("no successful tick yet"));

    block_on(cycle::run(&NativeHost::with_kv(&variables, kv.clone())));
    let healthy = call(&api, Method::GET, "/status", &[]);
    assert_eq!(healthy.status(), StatusCode::OK, "{}", body(&healthy));
    let status = json(&healthy);
    assert_eq!(status["lcw"]["reachable"], true);
    assert_eq!(status["influx"]["healthy"], true);
    assert_eq!(status["credits"]["remaining"], 4321.0);
    // The native host turns hedging off (`plan` tests the 547 hedges a day of the default).
    assert_eq!(status["planned_calls_per_day"], 5472);
    assert_eq!(status["planned_hedges_per_day"], 0);
    assert_eq!(status["lease"]["guarantee"], "exclusive");
    let without_atomics = NativeHost::with_kv(&variables, kv.clone()).without_atomics();
    without_atomics.advance(std::time::Duration::from_secs(61));
    block_on(cycle::run(&without_atomics));
    let best_effort = json(&call(&without_atomics, Method::GET, "/status", &[]));
    assert_eq!(best_effort["lease"]["guarantee"], "best_effort");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = variables.clone();
    down.push(("influx_url", format!("http://127.0.0.1:{closed}")));
    // A live check at most once per TTL (cache_ttl_status_s): the next one, two minutes on.
    let api_down = NativeHost::with_kv(&down, kv);
    api_down.advance(std::time::Duration::from_secs(121));
    let unhealthy = call(&api_down, Method::GET, "/status", &[]);
    assert_eq!(unhealthy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body(&unhealthy).contains("InfluxDB not healthy"),
        "{}",
        body(&unhealthy)
    );
}

#[test]
fn admin_routes_need_the_token_and_vanish_without_one() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = secret_variables(&fake, &influx);
    let kv = SharedKv::default();
    let api = NativeHost::with_kv(&variables, kv.clone());
    let bearer = format!("Bearer {ADMIN}");

    for (method, path) in [
        (Method::POST, "/collect"),
        (Method::POST, "/cache/clear"),
        (Method::GET, "/quarantine"),
    ] {
        assert_eq!(
            call(&api, method.clone(), path, &[]).status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        let wrong = call(
            &api,
            method.clone(),
            path,
            &[("authorization", "Bearer admin-secret-7d1f")],
        );
        assert_eq!(
            wrong.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    }

    let collected = call(
        &api,
        Method::POST,
        "/collect",
        &[("authorization", &bearer)],
    );
    assert_eq!(collected.status(), StatusCode::OK);
    assert_eq!(json(&collected)["cycle"]["outcome"], "success");
    assert_eq!(
        fake.seen_on("/coins/list").len(),
        1,
        "the route ran a real tick"
    );

    let cleared = call(
        &api,
        Method::POST,
        "/cache/clear",
        &[("authorization", &bearer)],
    );
    // Status, credits and exchanges: coins and overview (TTL not longer than the interval)
    // are never cached.
    assert_eq!(json(&cleared)["cleared_entries"], 3);
    let quarantine = call(
        &api,
        Method::GET,
        "/quarantine",
        &[("authorization", &bearer)],
    );
    assert_eq!(json(&quarantine)["total"], 0);

    // /collect obeys the lease like any tick.
    let live = lease::Lease {
        owner: "a-running-tick".into(),
        expires_at_ms: i64::MAX,
        ..lease::Lease::default()
    };
    kv.lock()
        .unwrap()
        .insert(state::LEASE_KEY.into(), serde_json::to_vec(&live).unwrap());
    let skipped = call(
        &api,
        Method::POST,
        "/collect",
        &[("authorization", &bearer)],
    );
    assert_eq!(json(&skipped)["cycle"]["outcome"], "skipped_overlap");
    let busy = call(
        &api,
        Method::POST,
        "/cache/clear",
        &[("authorization", &bearer)],
    );
    assert_eq!(busy.status(), StatusCode::CONFLICT);

    let mut without = variables.clone();
    without.push(("admin_token", String::new()));
    let disabled = call(
        &NativeHost::with_kv(&without, kv),
        Method::POST,
        "/collect",
        &[("authorization", "Bearer ")],
    );
    assert_eq!(disabled.status(), StatusCode::NOT_FOUND);
    assert!(body(&disabled).contains("admin routes are disabled"));
}

#[test]
fn a_tick_logs_one_structured_line_and_slow_operations_alert() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/overview",
        Reply::json(200, support::lcw_fake::fixture("overview.json"))
            .delayed(Duration::from_millis(1_200)),
    );
    let mut variables = secret_variables(&fake, &influx);
    variables.push(("alert_warning_s", "1".into()));
    variables.push(("alert_critical_s", "2".into()));
    let host = NativeHost::new(&variables);

    block_on(cycle::run(&host));

    let logs = host.log_text();
    let tick: Vec<Value> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("INFO: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "tick")
        .collect();
    assert_eq!(tick.len(), 1, "{logs}");
    assert_eq!(tick[0]["outcome"], "success");
    assert_eq!(tick[0]["points_written"], 5);
    assert_eq!(tick[0]["breaker"], "closed");
    assert!(tick[0]["lcw_calls"].as_u64().unwrap() >= 6);
    assert!(
        logs.contains("ALERT warning: fetch_overview took 1."),
        "{logs}"
    );
    assert!(logs.contains("\"event\":\"alert\""), "{logs}");

    // The cool-down holds the next alert back for five minutes.
    let again = NativeHost::with_kv(&variables, host.kv.clone());
    again.advance(61 * S);
    block_on(cycle::run(&again));
    assert!(
        !again.log_text().contains("ALERT warning: fetch_overview"),
        "{}",
        again.log_text()
    );
}

#[test]
fn no_route_log_line_or_stored_document_holds_a_secret() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = secret_variables(&fake, &influx);
    // Failures make the most talkative errors.
    fake.respond("/overview", Reply::documented_error(401));
    let kv = three_ticks(&fake, &variables);
    variables.push(("lcw_base_url", "ftp://not-a-valid-url".into()));
    let api = NativeHost::with_kv(&variables, kv.clone());
    let bearer = format!("Bearer {ADMIN}");

    let mut seen = String::new();
    for (method, path, auth) in [
        (Method::GET, "/metrics", false),
        (Method::GET, "/stats", false),
        (Method::GET, "/stats?format=text", false),
        (Method::GET, "/stats/cache", false),
        (Method::GET, "/status", false),
        (Method::POST, "/collect", true),
        (Method::GET, "/quarantine", true),
        (Method::POST, "/cache/clear", true),
        (Method::GET, "/nope", false),
        (Method::GET, "/", false),
        (Method::GET, "/api/v1/coins", false),
        (Method::GET, "/api/v1/coins/BTC?from=-1d", false),
    ] {
        let headers: Vec<(&str, &str)> = if auth {
            vec![("authorization", bearer.as_str())]
        } else {
            vec![]
        };
        seen.push_str(&body(&call(&api, method, path, &headers)));
    }
    assert!(
        seen.contains("lcw_base_url"),
        "the invalid variable is named: {seen}"
    );
    seen.push_str(&api.log_text());
    for value in kv.lock().unwrap().values() {
        seen.push_str(&String::from_utf8_lossy(value));
    }
    for secret in [API_KEY, ADMIN, INFLUX_TOKEN] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
}
