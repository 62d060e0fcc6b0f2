//! The HTTP API over the core, host-agnostic: a request in, a response out.
//!
//! Owns paths, methods, status codes, authentication and bodies of the API component:
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text 0.0.4 (404 when `enable_metrics = false`) |
//! | `GET /stats` | JSON statistics; `?operation=NAME` filters, `?format=text` or `Accept: text/plain` gives a table |
//! | `GET /stats/cache` | cache statistics and a verdict |
//! | `GET /status` | health: 200 when healthy, 503 when not |
//! | `POST /collect` | admin: runs one cycle now, under the lease |
//! | `POST /cache/clear` | admin: empties the response cache, under the lease |
//! | `GET /quarantine` | admin: the lines the sink refused, with its reasons |
//! | `GET /` | the page: collector health, latest prices, a price chart (HTML, no external resource) |
//! | `GET /api/v1/…` | the query API over the embedded store (`query`): no token, read-only |
//!
//! Admin routes want `Authorization: Bearer <admin_token>` and do not exist while `admin_token`
//! is empty. It must not hold state between requests (a Spin instance may be fresh for each) and
//! writes state only through the same core functions the collector uses.

use std::time::Duration;

use http::{Method, StatusCode, header};
use serde_json::json;

use crate::config::SinkKind;
use crate::config::{self, Settings};
use crate::host::{Host, Level, Timeouts};
use crate::influx::sink::Quarantine;
use crate::influx::write;
use crate::lease::{self, Taken};
use crate::resilience::BreakerState;
use crate::sqlite::Db;
use crate::telemetry::{self, Snapshot};
use crate::{cache, cycle, lcw, page, plan, query, state};

type Response = http::Response<Vec<u8>>;

/// Every route: path, method, admin only.
const ROUTES: [(&str, Method, bool); 8] = [
    ("/", Method::GET, false),
    ("/metrics", Method::GET, false),
    ("/stats", Method::GET, false),
    ("/stats/cache", Method::GET, false),
    ("/status", Method::GET, false),
    ("/collect", Method::POST, true),
    ("/cache/clear", Method::POST, true),
    ("/quarantine", Method::GET, true),
];

/// A tick with no success for this long makes `/status` unhealthy.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
/// Limit of the live checks `/status` makes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one request.
pub async fn handle<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    let path = request.uri().path();
    let method = request.method();
    if path.starts_with("/api/v1/") {
        if method != Method::GET {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on {path}; use GET"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return response;
        }
        return api_v1(host, request).await;
    }
    let Some((_, _, admin)) = ROUTES.iter().find(|(p, m, _)| *p == path && m == method) else {
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|(p, _, _)| *p == path)
            .map(|(_, m, _)| m.as_str())
            .collect();
        if allowed.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no route for {method} {path}"),
            );
        }
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{method} is not allowed on {path}; use {}",
                allowed.join(", ")
            ),
        );
        if let Ok(value) = header::HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        return response;
    };
    if *admin && let Err(response) = authorize(host, request).await {
        return response;
    }
    match path {
        "/" => home(host, request).await,
        "/metrics" => metrics(host).await,
        "/stats" => stats(host, request).await,
        "/stats/cache" => {
            with_snapshot(host, |s| {
                json_response(StatusCode::OK, &telemetry::report::cache_json(s))
            })
            .await
        }
        "/status" => status(host).await,
        "/collect" => collect(host).await,
        "/cache/clear" => clear_cache(host).await,
        _ => quarantine(host).await,
    }
}

/// Admin routes: present only with an `admin_token`, and only for its bearer.
async fn authorize<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Result<(), Response> {
    let token = match host.variable("admin_token").await {
        Ok(Some(token)) if !token.trim().is_empty() => token.trim().to_owned(),
        Ok(_) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "admin routes are disabled: set the admin_token variable",
            ));
        }
        Err(detail) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read admin_token: {detail}"),
            ));
        }
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "admin route: send Authorization: Bearer <admin_token>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Err(response)
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

async fn with_snapshot<H: Host>(host: &H, render: impl FnOnce(&Snapshot) -> Response) -> Response {
    match cycle::load_snapshot(host).await {
        Ok(snapshot) => render(&snapshot),
        Err(e) => {
            host.log(Level::Error, &e.to_string());
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

/// The query API: read-only market data from the embedded store.
async fn api_v1<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    let settings = match Settings::load(host).await {
        Ok(settings) => settings,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let answer = query::answer(
        host,
        &settings,
        request.uri().path(),
        request.uri().query(),
        accept,
    )
    .await;
    respond(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        answer.content_type,
        answer.body,
    )
}

/// The page. It renders even when the state or the settings cannot be read: it says so.
async fn home<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    let snapshot = match cycle::load_snapshot(host).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            host.log(Level::Error, &e.to_string());
            Snapshot::default()
        }
    };
    let settings = Settings::load(host).await.ok();
    let html = page::render(host, settings.as_ref(), &snapshot, request.uri().query()).await;
    let mut response = respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        html.into_bytes(),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(page::CSP),
    );
    response
}

async fn metrics<H: Host>(host: &H) -> Response {
    match config::load_flag(host, "enable_metrics").await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                "metrics are disabled (enable_metrics = false)",
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    with_snapshot(host, |snapshot| {
        match telemetry::prometheus::render(snapshot) {
            Ok(text) => respond(
                StatusCode::OK,
                telemetry::prometheus::CONTENT_TYPE,
                text.into_bytes(),
            ),
            Err(e) => {
                host.log(Level::Error, &format!("metrics rendering failed: {e}"));
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("metrics rendering failed: {e}"),
                )
            }
        }
    })
    .await
}

fn query_param<'a>(request: &'a http::Request<Vec<u8>>, name: &str) -> Option<&'a str> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn stats<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    let operation = query_param(request, "operation");
    let text = query_param(request, "format") == Some("text")
        || request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"));
    let planned = Settings::load(host)
        .await
        .ok()
        .map(|s| plan::calls_per_day(&s));
    with_snapshot(host, |snapshot| {
        if let Some(name) = operation
            && !snapshot.telemetry.operations.contains_key(name)
        {
            let known: Vec<&str> = snapshot
                .telemetry
                .operations
                .keys()
                .map(String::as_str)
                .collect();
            return error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no statistics for operation `{name}`; known: {}",
                    known.join(", ")
                ),
            );
        }
        if text {
            let table = telemetry::report::stats_text(snapshot, operation);
            respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                table.into_bytes(),
            )
        } else {
            json_response(
                StatusCode::OK,
                &telemetry::report::stats_json(snapshot, operation, planned),
            )
        }
    })
    .await
}

async fn status<H: Host>(host: &H) -> Response {
    let snapshot = match cycle::load_snapshot(host).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let now_ms = host.unix_millis();
    let checks = Timeouts {
        connect: CHECK_TIMEOUT,
        first_byte: CHECK_TIMEOUT,
        total: CHECK_TIMEOUT,
    };
    let mut problems = Vec::new();
    let settings = match Settings::load(host).await {
        Ok(settings) => Some(settings),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };

    let lcw = match (&settings, &snapshot.resilience.status) {
        (Some(s), Some(check))
            if now_ms - check.checked_at_ms < (s.cache_ttls.status_s as i64) * 1000 =>
        {
            json!({ "reachable": check.reachable, "checked_at_ms": check.checked_at_ms, "error": check.error, "live": false })
        }
        (Some(s), _) => {
            let client = lcw::Client::new(host, &s.lcw_base_url, &s.lcw_api_key);
            let result = client.status(checks).await;
            json!({ "reachable": result.is_ok(), "checked_at_ms": now_ms, "error": result.err().map(|e| e.to_string()), "live": true })
        }
        (None, _) => json!({ "reachable": null, "error": "configuration invalid" }),
    };
    if lcw["reachable"] != json!(true) {
        problems.push(format!(
            "LCW not reachable: {}",
            lcw["error"].as_str().unwrap_or("unknown")
        ));
    }
    let influx = match &settings {
        Some(s) if s.sink == SinkKind::Influxdb => {
            match write::health(host, &s.influx, checks).await {
                Ok(()) => json!({ "healthy": true }),
                Err(e) => {
                    problems.push(format!("InfluxDB not healthy: {e}"));
                    json!({ "healthy": false, "error": e })
                }
            }
        }
        Some(_) => json!({ "healthy": null, "error": "not used: sink = sqlite" }),
        None => json!({ "healthy": null, "error": "configuration invalid" }),
    };
    let sink = match &settings {
        Some(s) if s.sink == SinkKind::Sqlite => match sqlite_health(host).await {
            Ok(sqlite) => json!({ "kind": "sqlite", "healthy": true, "sqlite": sqlite }),
            Err(e) => {
                problems.push(format!("SQLite store not healthy: {e}"));
                json!({ "kind": "sqlite", "healthy": false, "error": e.to_string() })
            }
        },
        Some(_) => json!({ "kind": "influxdb", "healthy": influx["healthy"] }),
        None => json!({ "kind": null, "healthy": null }),
    };
    let sink = {
        let mut sink = sink;
        sink["spool_points"] = json!(snapshot.sink.spool_points);
        sink["last_error"] = json!(snapshot.sink.last_error);
        sink["last_error_at_ms"] = json!(snapshot.sink.last_error_at_ms);
        sink
    };
    if matches!(snapshot.resilience.breaker, BreakerState::Open { .. }) {
        problems.push("LCW circuit breaker open".into());
    }
    let last_success_age_s = snapshot
        .history
        .last_success_at_ms
        .map(|t| (now_ms - t) / 1000);
    match last_success_age_s {
        None => problems.push("no successful tick yet".into()),
        Some(age) if age > STALE_AFTER.as_secs() as i64 => {
            problems.push(format!("last successful tick {age} s ago"))
        }
        Some(_) => {}
    }
    let lease = match lease::guarantee(host).await {
        Ok(guarantee) => json!({ "guarantee": guarantee, "detail": guarantee.describe() }),
        Err(e) => json!({ "guarantee": null, "detail": e.to_string() }),
    };
    let healthy = problems.is_empty();
    let body = json!({
        "healthy": healthy,
        "lease": lease,
        "problems": problems,
        "lcw": lcw,
        "sink": sink,
        "influx": influx,
        "breaker": snapshot.resilience.breaker,
        "credits": snapshot.resilience.credits,
        "planned_calls_per_day": settings.as_ref().map(plan::calls_per_day),
        "spool_points": snapshot.sink.spool_points,
        "quarantined_points": snapshot.sink.counters.quarantined,
        "last_success_at_ms": snapshot.history.last_success_at_ms,
        "last_success_age_s": last_success_age_s,
        "version": env!("CARGO_PKG_VERSION"),
    });
    json_response(
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

/// The embedded store answers, with the newest row's time per table and its size.
async fn sqlite_health<H: Host>(host: &H) -> Result<serde_json::Value, crate::host::SqlError> {
    let db = Db::open(host).await?;
    let (tables, bytes) = db.summary().await?;
    let newest: serde_json::Map<String, serde_json::Value> = tables
        .into_iter()
        .map(|(table, time)| (table.to_owned(), json!(time)))
        .collect();
    Ok(
        json!({ "schema_version": crate::sqlite::latest_version(), "newest_ms": newest, "bytes": bytes }),
    )
}

async fn collect<H: Host>(host: &H) -> Response {
    let record = cycle::run(host).await;
    json_response(StatusCode::OK, &json!({ "cycle": record }))
}

/// Empties the cache under the lease, so a running tick cannot save over the clear.
async fn clear_cache<H: Host>(host: &H) -> Response {
    let owner = format!("cache-clear-{:016x}", host.random_u64());
    let held = match lease::take(host, &owner, host.unix_millis() + 10_000).await {
        Ok(Taken::Held(held)) => held,
        Ok(Taken::Busy { .. }) => {
            return error(
                StatusCode::CONFLICT,
                "a tick is running; clear the cache again when it ends",
            );
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let result = async {
        // An unreadable document is left for the next tick to set aside, never overwritten.
        let mut doc =
            match state::load_checked::<cycle::CollectorState, _>(host, state::STATE_KEY).await? {
                state::Loaded::Read(doc) => doc,
                state::Loaded::Absent => cycle::CollectorState::default(),
                state::Loaded::Unreadable { .. } => return Ok(None),
            };
        let cleared = cache::clear(host, &mut doc.cache).await?;
        if held.valid_at(host.unix_millis()) {
            state::save(host, state::STATE_KEY, &doc).await?;
        }
        Ok::<_, cache::CacheError>(Some(cleared))
    }
    .await;
    if let Err(e) = lease::release(host, &held).await {
        host.log(
            Level::Warn,
            &format!("lease not released (it expires by itself): {e}"),
        );
    }
    let result = match result {
        Ok(None) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the state document is unreadable: the next tick sets it aside, then clear again",
            );
        }
        Ok(Some(cleared)) => Ok(cleared),
        Err(e) => Err(e),
    };
    match result {
        Ok(cleared) => {
            host.log(
                Level::Info,
                &format!("cache cleared by the admin route: {cleared} entries"),
            );
            json_response(StatusCode::OK, &json!({ "cleared_entries": cleared }))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn quarantine<H: Host>(host: &H) -> Response {
    match state::load::<Quarantine, _>(host, state::QUARANTINE_KEY).await {
        Ok(q) => json_response(
            StatusCode::OK,
            &json!({ "total": q.total, "recent": q.recent }),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    respond(status, "application/json", body.to_string().into_bytes())
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({ "error": { "status": status.as_u16(), "message": message } }),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
