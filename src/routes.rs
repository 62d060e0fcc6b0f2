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
//! | `GET /quarantine` | admin: the lines InfluxDB refused, with its reasons |
//! | `POST /quarantine/retry` | admin: sends the quarantined lines again; those InfluxDB takes leave it |
//! | `POST /quarantine/clear` | admin: empties the quarantine |
//! | `POST /backfill?from=&to=&codes=` | admin: queues a range (Unix ms) of history to fill |
//! | `GET /` | the page: collector health, latest prices, a price chart (HTML, no external resource) |
//! | `GET /api/v1/…` | the query API over the embedded store (`query`): no token, read-only |
//!
//! Under Spin, `POST /collect` is served by the collector component ([`handle_collect`], its
//! own route in spin.toml) and every other route by the api component ([`handle_api`]), so that
//! neither wasm component carries code only the other runs (the fetch cycle is most of the
//! collector: 303 KB of the api component, docs/PERFORMANCE.md). [`handle`] serves them all
//! alike; it is what the native tests call.
//!
//! Admin routes want `Authorization: Bearer <admin_token>` and do not exist while `admin_token`
//! is empty. Public routes do bounded work: `/status` makes at most one live check of each
//! remote per `cache_ttl_status_s`, whoever asks and however often. It must not hold state between requests (a Spin instance may be fresh for each) and
//! writes state only through the same core functions the collector uses.

use std::time::Duration;

use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backfill::{self, BackfillState, Target};
use crate::config::SinkKind;
use crate::config::{self, Settings};
use crate::host::{Host, KvError, Level, Timeouts};
use crate::influx::sink::{Quarantine, Sink};
use crate::influx::write;
use crate::lease::{self, Taken};
use crate::remote::mask_userinfo;
use crate::resilience::BreakerState;
use crate::sqlite::Db;
use crate::telemetry::{self, Snapshot};
use crate::{cache, cycle, lcw, page, plan, query, state};

type Response = http::Response<Vec<u8>>;

/// Every route: path, method, admin only.
const ROUTES: [(&str, Method, bool); 11] = [
    ("/", Method::GET, false),
    ("/metrics", Method::GET, false),
    ("/stats", Method::GET, false),
    ("/stats/cache", Method::GET, false),
    ("/status", Method::GET, false),
    ("/collect", Method::POST, true),
    ("/cache/clear", Method::POST, true),
    ("/quarantine", Method::GET, true),
    ("/quarantine/retry", Method::POST, true),
    ("/quarantine/clear", Method::POST, true),
    ("/backfill", Method::POST, true),
];

/// A tick with no success for this long makes `/status` unhealthy.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
/// Limit of the live checks `/status` makes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one request, on any route.
pub async fn handle<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    if request.uri().path() == "/collect" {
        handle_collect(host, request).await
    } else {
        handle_api(host, request).await
    }
}

/// The collector component's HTTP entry: `/collect` answered as [`handle`] answers it (the
/// method, the token, the tick); any other path is a 404. Separate async functions, not one with
/// a flag: a wasm build keeps the code of every state of an async function it calls.
pub async fn handle_collect<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    protect_secrets(host).await;
    let path = request.uri().path();
    if path != "/collect" {
        let method = request.method();
        return error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        );
    }
    if let Err(response) = admit(host, request).await {
        return response;
    }
    collect(host).await
}

/// The api component's entry: every route but `POST /collect`, which spin.toml routes to the
/// collector component. A `/collect` request that reaches it anyway is a 404 that says so.
pub async fn handle_api<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    protect_secrets(host).await;
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
    if let Err(response) = admit(host, request).await {
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
        "/collect" => error(
            StatusCode::NOT_FOUND,
            "POST /collect is the collector component's route (spin.toml), not the api's",
        ),
        "/cache/clear" => clear_cache(host).await,
        "/quarantine/retry" => retry_quarantine(host).await,
        "/quarantine/clear" => clear_quarantine(host).await,
        "/backfill" => queue_backfill(host, request).await,
        _ => quarantine(host).await,
    }
}

/// Before anything else: whatever a route reads or answers, no configured secret leaves in its
/// body (`remote::protect`; a request is a fresh instance, with nothing protected yet).
async fn protect_secrets<H: Host>(host: &H) {
    crate::remote::protect(&config::load_secrets(host).await);
}

/// A request for a route of [`ROUTES`] with its method, and the token when the route is an
/// admin one; else the answer that refuses it (404, 405 with `Allow`, 401).
async fn admit<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Result<(), Response> {
    let path = request.uri().path();
    let method = request.method();
    let Some((_, _, admin)) = ROUTES.iter().find(|(p, m, _)| *p == path && m == method) else {
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|(p, _, _)| *p == path)
            .map(|(_, m, _)| m.as_str())
            .collect();
        if allowed.is_empty() {
            return Err(error(
                StatusCode::NOT_FOUND,
                &format!("no route for {method} {path}"),
            ));
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
        return Err(response);
    };
    if *admin {
        authorize(host, request).await?;
    }
    Ok(())
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
        .and_then(bearer_token)
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

/// The credentials of an `Authorization` value of the `Bearer` scheme, in any case (RFC 9110
/// §11.1: the scheme is case-insensitive; one or more spaces before the credentials).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim_start_matches(' '))
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

/// One live check of a remote by `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCheck {
    pub checked_at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
}

/// The document `lcw/v1/status-checks`: the API's last live checks, and when one was last
/// started. On a store without atomic increment that note, written before the calls, is the
/// only claim; otherwise the claim is a counter ([`claim_checks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChecks {
    pub attempted_at_ms: Option<i64>,
    pub lcw: Option<LiveCheck>,
    pub influx: Option<LiveCheck>,
}

/// A check as `/status` shows it: its result, when, how old, and whether this request made it.
fn shown(check: Option<&LiveCheck>, now_ms: i64, live: bool) -> serde_json::Value {
    match check {
        Some(c) => json!({
            "ok": c.ok,
            "error": c.error,
            "checked_at_ms": c.checked_at_ms,
            "age_s": now_ms.saturating_sub(c.checked_at_ms).max(0) / 1000,
            "live": live,
        }),
        None => json!({ "ok": null, "error": "not checked yet", "live": false }),
    }
}

/// Makes the live checks that are stale, when this request wins the claim to make them, and
/// saves them in `doc`. Whether each remote was checked live.
async fn refresh_checks<H: Host>(
    host: &H,
    s: &Settings,
    doc: &mut StatusChecks,
    now_ms: i64,
) -> (bool, bool) {
    let ttl_ms = (s.cache_ttls.status_s as i64).saturating_mul(1000).max(1);
    // Checks stamped by a clock ahead were dropped by the caller: an age here is never negative.
    let stale = |c: &Option<LiveCheck>| {
        c.as_ref()
            .is_none_or(|c| now_ms.saturating_sub(c.checked_at_ms) >= ttl_ms)
    };
    let uses_influx = s.sink == SinkKind::Influxdb;
    let (check_lcw, check_influx) = (stale(&doc.lcw), uses_influx && stale(&doc.influx));
    if !(check_lcw || check_influx) || !claim_checks(host, doc, uses_influx, ttl_ms, now_ms).await {
        return (false, false);
    }
    let timeouts = Timeouts {
        connect: CHECK_TIMEOUT,
        first_byte: CHECK_TIMEOUT,
        total: CHECK_TIMEOUT,
    };
    if check_lcw {
        let client = lcw::Client::new(host, &s.lcw_base_url, &s.lcw_api_key);
        let result = client.status(timeouts).await;
        doc.lcw = Some(LiveCheck {
            checked_at_ms: now_ms,
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        });
    }
    if check_influx {
        let result = write::health(host, &s.influx, timeouts).await;
        doc.influx = Some(LiveCheck {
            checked_at_ms: now_ms,
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    if let Err(e) = state::save(host, state::STATUS_CHECKS_KEY, doc).await {
        host.log(Level::Warn, &format!("status check not saved: {e}"));
    }
    (check_lcw, check_influx)
}

/// Whether this request makes the stale checks of `doc`: the first to increment the claim
/// counter of this TTL period, of all requests that read the same checks. The period is counted
/// from the oldest check `doc` holds, so requests that find the checks stale at once share one
/// counter; a claim whose maker died or never saved its checks stands for one period only.
/// A store without atomic increment falls back to a note written before the calls (two
/// requests within one store round trip may both check); a store that fails refuses.
async fn claim_checks<H: Host>(
    host: &H,
    doc: &mut StatusChecks,
    uses_influx: bool,
    ttl_ms: i64,
    now_ms: i64,
) -> bool {
    let oldest = [doc.lcw.as_ref()]
        .into_iter()
        .chain(uses_influx.then_some(doc.influx.as_ref()))
        .map(|c| c.map_or(0, |c| c.checked_at_ms.max(0)))
        .min()
        .unwrap_or(0);
    let period_start = now_ms
        .saturating_sub(oldest)
        .div_euclid(ttl_ms)
        .saturating_mul(ttl_ms)
        .saturating_add(oldest);
    let key = format!("{}{period_start:020}", state::STATUS_CLAIMS_PREFIX);
    match lease::increment_counter(host, &key, 1).await {
        Ok(Some(1)) => {
            forget_old_claims(host, now_ms, ttl_ms).await;
            true
        }
        Ok(Some(_)) => false,
        Ok(None) => {
            let attempted_recently = doc
                .attempted_at_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < ttl_ms && now_ms >= t);
            if attempted_recently {
                return false;
            }
            // Recorded before the calls: whoever comes meanwhile is served what there is.
            doc.attempted_at_ms = Some(now_ms);
            if let Err(e) = state::save(host, state::STATUS_CHECKS_KEY, &*doc).await {
                host.log(Level::Warn, &format!("status check not recorded: {e}"));
            }
            true
        }
        Err(e) => {
            host.log(Level::Warn, &format!("status check not claimed: {e}"));
            false
        }
    }
}

/// Deletes the claim counters no request can still increment: a request computes only the
/// period it is in, and increments within a store call ([`lease::GRACE`]) of reading its clock,
/// which may be [`lease::GRACE`] off ours.
async fn forget_old_claims<H: Host>(host: &H, now_ms: i64, ttl_ms: i64) {
    let grace_ms = lease::GRACE.as_millis() as i64;
    let oldest_live = now_ms.saturating_sub(ttl_ms.saturating_add(2 * grace_ms));
    let keys = match host.kv_keys(state::STATUS_CLAIMS_PREFIX).await {
        Ok(keys) => keys,
        Err(e) => {
            host.log(Level::Warn, &format!("status claims not listed: {e}"));
            return;
        }
    };
    for key in keys {
        let old = key
            .strip_prefix(state::STATUS_CLAIMS_PREFIX)
            .and_then(|start| start.parse::<i64>().ok())
            .is_some_and(|start| start < oldest_live);
        if old && let Err(e) = host.kv_delete(&key).await {
            host.log(Level::Warn, &format!("old status claim not deleted: {e}"));
        }
    }
}

async fn status<H: Host>(host: &H) -> Response {
    let snapshot = match cycle::load_snapshot(host).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let now_ms = host.unix_millis();
    let mut problems = Vec::new();
    let settings = match Settings::load(host).await {
        Ok(settings) => Some(settings),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };

    // The freshest LCW check: the collector's own `/status` call, or ours.
    let mut doc: StatusChecks = state::load(host, state::STATUS_CHECKS_KEY)
        .await
        .unwrap_or_default();
    // A check stamped ahead of this clock (an instance whose clock had jumped) is neither fresh
    // nor newer than the collector's: it would be served, unchecked, until this clock caught up.
    let credible_ms = crate::clock::newest_credible(now_ms);
    for check in [&mut doc.lcw, &mut doc.influx] {
        if check
            .as_ref()
            .is_some_and(|c| c.checked_at_ms > credible_ms)
        {
            *check = None;
        }
    }
    let collector_check = snapshot.resilience.status.as_ref().map(|c| LiveCheck {
        checked_at_ms: c.checked_at_ms,
        ok: c.reachable,
        error: c.error.clone(),
    });
    if let Some(c) = collector_check
        && doc
            .lcw
            .as_ref()
            .is_none_or(|o| o.checked_at_ms < c.checked_at_ms)
    {
        doc.lcw = Some(c);
    }
    let (lcw_live, influx_live) = match &settings {
        Some(s) => refresh_checks(host, s, &mut doc, now_ms).await,
        None => (false, false),
    };

    let lcw = if settings.is_some() {
        let mut shown = shown(doc.lcw.as_ref(), now_ms, lcw_live);
        shown["reachable"] = shown["ok"].clone();
        shown
    } else {
        json!({ "ok": null, "error": "configuration invalid" })
    };
    if let Some(check) = &doc.lcw
        && !check.ok
    {
        problems.push(format!(
            "LCW not reachable: {}",
            check.error.as_deref().unwrap_or("unknown")
        ));
    }
    // InfluxDB's health (when it is the sink) is what the writes met, and the ping.
    let influx = if settings
        .as_ref()
        .is_some_and(|s| s.sink == SinkKind::Influxdb)
    {
        // InfluxDB's health is what the writes met, and the ping.
        let delivery = &snapshot.sink;
        let ping = shown(doc.influx.as_ref(), now_ms, influx_live);
        if let Some(check) = &doc.influx
            && !check.ok
        {
            problems.push(format!(
                "InfluxDB not healthy: {}",
                check.error.as_deref().unwrap_or("unknown")
            ));
        }
        if let Some(reason) = &delivery.config_error {
            problems.push(format!("InfluxDB refuses a setting: {reason}"));
        } else if let Some(last) = delivery.last_write.as_ref().filter(|w| !w.ok) {
            problems.push(format!(
                "last InfluxDB write failed: {}",
                last.error.as_deref().unwrap_or("unknown")
            ));
        }
        let influx_healthy = settings.is_some()
            && doc.influx.as_ref().is_none_or(|c| c.ok)
            && delivery.config_error.is_none()
            && delivery.last_write.as_ref().is_none_or(|w| w.ok);
        json!({
            "healthy": influx_healthy,
            "ping": ping,
            "last_write": delivery.last_write.as_ref().map(|w| json!({
                "ok": w.ok,
                "error": w.error,
                "at_ms": w.at_ms,
                "age_s": now_ms.saturating_sub(w.at_ms).max(0) / 1000,
            })),
            "config_error": delivery.config_error,
        })
    } else if settings.is_some() {
        json!({ "healthy": null, "error": "not used: sink = sqlite" })
    } else {
        json!({ "healthy": null, "error": "configuration invalid" })
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
        .map(|t| now_ms.saturating_sub(t) / 1000);
    match last_success_age_s {
        None => problems.push("no successful tick yet".into()),
        // Stamped by a clock ahead: it says nothing of whether a tick succeeds now.
        Some(age) if age < -(crate::clock::FUTURE_LIMIT_MS / 1000) => problems.push(format!(
            "last successful tick stamped {} s ahead of this clock",
            -age
        )),
        Some(age) if age > STALE_AFTER.as_secs() as i64 => {
            problems.push(format!("last successful tick {age} s ago"))
        }
        Some(_) => {}
    }
    let clock = &snapshot.clock;
    if clock.disputed() {
        // Rows it stamped are kept, retention waits for the earlier clock: said, not hidden.
        let skew_s = clock.skew_ms.unwrap_or(0) / 1000;
        problems.push(format!(
            "the host clock is {skew_s} s off LCW's (host minus LCW) at the last tick that heard it"
        ));
    }
    // What the last tick's lease gave: a public route makes no store write to ask.
    let lease = match snapshot.lease_guarantee {
        Some(guarantee) => json!({ "guarantee": guarantee, "detail": guarantee.describe() }),
        None => json!({ "guarantee": null, "detail": "no tick has taken the lease yet" }),
    };
    // Problems quote settings and remote answers: no userinfo, one bounded line each.
    let problems: Vec<String> = problems
        .iter()
        .map(|p| crate::remote::sanitize_to(&mask_userinfo(p), 1_000))
        .collect();
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
        "planned_hedges_per_day": settings.as_ref().map(plan::hedges_per_day),
        "spool_points": snapshot.sink.spool_points,
        "quarantined_points": snapshot.sink.counters.quarantined,
        "last_success_at_ms": snapshot.history.last_success_at_ms,
        "last_success_age_s": last_success_age_s,
        "clock": {
            "disputed": clock.disputed(),
            "skew_ms": clock.skew_ms,
            "skew_at_ms": clock.skew_at_ms,
            "skew_limit_ms": crate::clock::SKEW_LIMIT_MS,
            "disputed_ticks": clock.disputed_ticks,
            "last_disputed_at_ms": clock.last_disputed_at_ms,
            "retention_held": clock.retention_held,
        },
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
    let summary = db
        .summary(crate::clock::newest_credible(host.unix_millis()))
        .await?;
    let newest: serde_json::Map<String, serde_json::Value> = summary
        .tables
        .iter()
        .map(|t| (t.name.to_owned(), json!(t.newest_ms)))
        .collect();
    let ahead: serde_json::Map<String, serde_json::Value> = summary
        .tables
        .iter()
        .map(|t| (t.name.to_owned(), json!(t.rows_ahead)))
        .collect();
    Ok(json!({
        "schema_version": db.version().await?,
        "release_schema_version": crate::sqlite::latest_version(),
        "newest_ms": newest,
        "rows_ahead_of_clock": ahead,
        "bytes": summary.bytes,
    }))
}

async fn collect<H: Host>(host: &H) -> Response {
    let record = cycle::run(host).await;
    json_response(StatusCode::OK, &json!({ "cycle": record }))
}

/// Empties the cache under the lease, so a running tick cannot save over the clear.
async fn clear_cache<H: Host>(host: &H) -> Response {
    let outcome = under_lease(host, "cache-clear", async |held| {
        let Some(mut doc) = readable_state(host).await? else {
            return Ok(None);
        };
        let cleared = cache::clear(host, &mut doc.cache).await?;
        save_if_held(host, held, state::STATE_KEY, &doc).await?;
        Ok::<_, cache::CacheError>(Some(cleared))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Ok(None)) => unreadable_state(),
        Ok(Ok(Some(cleared))) => {
            host.log(
                Level::Info,
                &format!("cache cleared by the admin route: {cleared} entries"),
            );
            json_response(StatusCode::OK, &json!({ "cleared_entries": cleared }))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// The collector's state document, or `None` when it is unreadable: that one is left for the
/// next tick to set aside, never overwritten by a route.
async fn readable_state<H: Host>(host: &H) -> Result<Option<cycle::CollectorState>, KvError> {
    Ok(
        match state::load_checked::<cycle::CollectorState, _>(host, state::STATE_KEY).await? {
            state::Loaded::Read(doc) => Some(doc),
            state::Loaded::Absent => Some(cycle::CollectorState::default()),
            state::Loaded::Unreadable { .. } => None,
        },
    )
}

fn unreadable_state() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the state document is unreadable: the next tick sets it aside; try again after it",
    )
}

/// Saves a document while the lease is still valid (a write after that could land over a
/// newer holder's).
async fn save_if_held<H: Host, T: serde::Serialize>(
    host: &H,
    held: &lease::Held,
    key: &str,
    doc: &T,
) -> Result<(), KvError> {
    if !held.valid_at(host.unix_millis()) {
        return Err(KvError(format!(
            "the lease ran out before `{key}` was saved"
        )));
    }
    state::save(host, key, doc).await
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

/// Runs `work` under the lease (409 while a tick runs), as every writer of a shared document.
async fn under_lease<H: Host, T>(
    host: &H,
    what: &str,
    work: impl AsyncFnOnce(&lease::Held) -> T,
) -> Result<T, Response> {
    let owner = format!("{what}-{:016x}", host.random_u64());
    let expires_at_ms = host.unix_millis() + lease::ROUTE_LEASE.as_millis() as i64;
    let held = match lease::take(host, &owner, expires_at_ms).await {
        Ok(Taken::Held(held)) => held,
        Ok(Taken::Busy { .. }) => {
            return Err(error(
                StatusCode::CONFLICT,
                "a tick is running; try again when it ends",
            ));
        }
        Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    };
    let result = work(&held).await;
    if let Err(e) = lease::release(host, &held).await {
        host.log(
            Level::Warn,
            &format!("lease not released (it expires by itself): {e}"),
        );
    }
    Ok(result)
}

/// The settings, or the 503 that names what is wrong with them (userinfo masked).
async fn usable_settings<H: Host>(host: &H) -> Result<Settings, Response> {
    Settings::load(host).await.map_err(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            &mask_userinfo(&e.to_string()),
        )
    })
}

/// Queues `from..=to` (Unix milliseconds) of history for `codes` (comma-separated; default the
/// tracked coins and the overview), for a gap the collector could not see (one from before it
/// ran). The collector fills it with its spare calls.
async fn queue_backfill<H: Host>(host: &H, request: &http::Request<Vec<u8>>) -> Response {
    let settings = match usable_settings(host).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let (from_ms, to_ms, targets) = match backfill_request(request, &settings, host.unix_millis()) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let outcome = under_lease(host, "backfill", async |held| {
        // The queue lives in the state document (and its backup); before the first tick of this
        // release, or while the state is unreadable, in the backfill document alone, which the
        // next tick reads.
        if let Some(mut doc) = readable_state(host)
            .await?
            .filter(|doc| doc.schema >= cycle::BACKFILL_IN_STATE)
        {
            // What an earlier release queued in the backup alone is kept.
            if !cycle::take_in_backup(host, &mut doc.backfill, &mut doc.backfill_saved).await {
                return Err(KvError(format!("`{}` not read", state::BACKFILL_KEY)));
            }
            let before = doc.backfill.queued_total;
            for target in &targets {
                doc.backfill.enqueue(target, from_ms, to_ms);
            }
            save_if_held(host, held, state::BACKFILL_KEY, &doc.backfill).await?;
            doc.backfill_saved = crate::backfill::durable_fingerprint(&doc.backfill);
            save_if_held(host, held, state::STATE_KEY, &doc).await?;
            return Ok(Some((
                doc.backfill.queued_total - before,
                doc.backfill.queue.len(),
            )));
        }
        let mut doc =
            match state::load_checked::<BackfillState, _>(host, state::BACKFILL_KEY).await? {
                state::Loaded::Read(doc) => doc,
                state::Loaded::Absent => BackfillState::default(),
                state::Loaded::Unreadable { .. } => return Ok(None),
            };
        let before = doc.queued_total;
        for target in &targets {
            doc.enqueue(target, from_ms, to_ms);
        }
        save_if_held(host, held, state::BACKFILL_KEY, &doc).await?;
        Ok::<_, KvError>(Some((doc.queued_total - before, doc.queue.len())))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(None)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the backfill document is unreadable: the next tick sets it aside; try again after it",
        ),
        Ok(Ok(Some((queued, waiting)))) => {
            host.log(
                Level::Info,
                &format!(
                    "backfill of {from_ms}..={to_ms} queued by the admin route: {queued} ranges"
                ),
            );
            json_response(
                StatusCode::OK,
                &json!({ "queued": queued, "waiting": waiting }),
            )
        }
    }
}

/// `from`, `to` and the targets of a backfill request, or what is wrong with it.
fn backfill_request(
    request: &http::Request<Vec<u8>>,
    settings: &Settings,
    now_ms: i64,
) -> Result<(i64, i64, Vec<Target>), String> {
    let time = |name: &str| -> Result<i64, String> {
        let value = query_param(request, name)
            .ok_or_else(|| format!("`{name}` is required (Unix milliseconds)"))?;
        value
            .parse::<i64>()
            .ok()
            .filter(|t| (0..=now_ms).contains(t))
            .ok_or_else(|| {
                format!(
                    "`{name}` must be Unix milliseconds, not in the future: {:.40}",
                    value
                )
            })
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if to_ms <= from_ms {
        return Err("`to` must be after `from`".into());
    }
    if to_ms - from_ms > backfill::MAX_REQUEST_MS {
        return Err(format!(
            "the range is longer than {} days: queue it in parts",
            backfill::MAX_REQUEST_MS / 86_400_000
        ));
    }
    let targets: Vec<Target> = match query_param(request, "codes").filter(|c| !c.is_empty()) {
        None => settings
            .tracked_coins
            .iter()
            .map(|code| Target::Coin { code: code.clone() })
            .chain([Target::Overview])
            .collect(),
        Some(codes) => codes
            .split(',')
            .map(|code| {
                let valid = !code.is_empty()
                    && code.len() <= 20
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                valid
                    .then(|| Target::Coin {
                        code: code.to_ascii_uppercase(),
                    })
                    .ok_or_else(|| format!("`codes`: {:.40} is not a coin code", code))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut unique: Vec<Target> = Vec::new();
    for target in targets {
        if !unique.contains(&target) {
            unique.push(target);
        }
    }
    Ok((from_ms, to_ms, unique))
}

/// Sends the quarantined lines again; those InfluxDB takes leave the quarantine (and count as
/// written), the others stay with InfluxDB's new message.
async fn retry_quarantine<H: Host>(host: &H) -> Response {
    let settings = match usable_settings(host).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let outcome = under_lease(host, "quarantine-retry", async |held| {
        let mut quarantine: Quarantine =
            state::load_for_update(host, state::QUARANTINE_KEY, host.unix_millis()).await?;
        let Some(mut doc) = readable_state(host).await? else {
            return Ok(None);
        };
        let entries: Vec<_> = quarantine.recent.iter().cloned().collect();
        let deadline = host.monotonic() + Duration::from_millis(settings.influx.timeout_ms);
        let mut sink = Sink::new(
            host,
            settings.sink,
            &settings.influx,
            settings.influx.spool_max_points,
            deadline,
            doc.sink.clone(),
        );
        let (written, remaining) = sink.retry_quarantined(&entries).await;
        quarantine.recent = remaining.into();
        save_if_held(host, held, state::QUARANTINE_KEY, &quarantine).await?;
        // The lines written are points written: the sink's counters say so.
        doc.sink.counters.points_written = doc.sink.counters.points_written.saturating_add(written);
        save_if_held(host, held, state::STATE_KEY, &doc).await?;
        Ok::<_, KvError>(Some((written, quarantine.recent.len())))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(None)) => unreadable_state(),
        Ok(Ok(Some((written, remaining)))) => {
            host.log(
                Level::Info,
                &format!("quarantine retried by the admin route: {written} lines written, {remaining} remain"),
            );
            json_response(
                StatusCode::OK,
                &json!({ "written": written, "remaining": remaining }),
            )
        }
    }
}

/// Empties the quarantine (its running total stays, as a counter does).
async fn clear_quarantine<H: Host>(host: &H) -> Response {
    let outcome = under_lease(host, "quarantine-clear", async |held| {
        let mut quarantine: Quarantine =
            state::load_for_update(host, state::QUARANTINE_KEY, host.unix_millis()).await?;
        let cleared = quarantine.recent.len();
        quarantine.recent.clear();
        save_if_held(host, held, state::QUARANTINE_KEY, &quarantine).await?;
        Ok::<_, KvError>(cleared)
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(cleared)) => {
            host.log(
                Level::Info,
                &format!("quarantine cleared by the admin route: {cleared} lines"),
            );
            json_response(StatusCode::OK, &json!({ "cleared": cleared }))
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    respond(status, "application/json", body.to_string().into_bytes())
}

fn error(status: StatusCode, message: &str) -> Response {
    let message = crate::remote::sanitize_to(&mask_userinfo(message), 1_000);
    let message = message.as_str();
    json_response(
        status,
        &json!({ "error": { "status": status.as_u16(), "message": message } }),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    // No secret leaves in a body, whatever a stored document or an answer held.
    let body = match String::from_utf8(body) {
        Ok(text) => {
            let redacted = if content_type == "application/json" {
                crate::remote::redact_json(&text)
            } else {
                crate::remote::redact(&text)
            };
            match redacted {
                std::borrow::Cow::Borrowed(_) => text.into_bytes(),
                std::borrow::Cow::Owned(clean) => clean.into_bytes(),
            }
        }
        Err(error) => error.into_bytes(),
    };
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
