//! `GET /status`: the health check. Owns the live checks of LCW and InfluxDB (at most one of
//! each per `cache_ttl_status_s`, claimed through the store's atomic increment, whoever asks
//! and however often), the problems that make it 503, and what it shows of the sink, the lease,
//! the clock and the credits. It must not write anything but its own check documents.

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Response, error, json_response};
use crate::config::{Settings, SinkKind};
use crate::host::{Host, Level, Timeouts};
use crate::lease;
use crate::remote::mask_userinfo;
use crate::resilience::BreakerState;
use crate::sink::influxdb::{self, status::Ping, status::Writes};
use crate::sink::sqlite;
use crate::telemetry::Snapshot;
use crate::{cycle, lcw, plan, state};

/// A tick with no success for this long makes `/status` unhealthy.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
/// Limit of the live checks `/status` makes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
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
        let result = influxdb::status::ping(host, &s.influx, timeouts).await;
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
pub(super) async fn status<H: Host>(host: &H) -> Response {
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
    let (doc, lcw_live, influx_live) =
        live_checks(host, settings.as_ref(), &snapshot, now_ms).await;
    let lcw = lcw_status(settings.is_some(), &doc, lcw_live, now_ms, &mut problems);
    let influx = influx_status(
        settings.as_ref(),
        &snapshot,
        &doc,
        influx_live,
        now_ms,
        &mut problems,
    );
    let sink = sink_health(host, settings.as_ref(), &snapshot, &influx, &mut problems).await;
    let last_success_age_s = tick_problems(&snapshot, now_ms, &mut problems);
    let lease = lease_json(snapshot.lease_guarantee);
    // Problems quote settings and remote answers: no userinfo, one bounded line each.
    let problems: Vec<String> = problems.iter().map(|p| sanitized(p)).collect();
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
        "clock": clock_json(&snapshot.clock),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// The freshest checks: the stored ones (those stamped ahead of this clock dropped), LCW's
/// replaced by the collector's own `/status` call when that is newer, then the stale ones made
/// live when this request wins the claim. Whether each was made live.
async fn live_checks<H: Host>(
    host: &H,
    settings: Option<&Settings>,
    snapshot: &Snapshot,
    now_ms: i64,
) -> (StatusChecks, bool, bool) {
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
    let (lcw_live, influx_live) = match settings {
        Some(s) => refresh_checks(host, s, &mut doc, now_ms).await,
        None => (false, false),
    };
    (doc, lcw_live, influx_live)
}

/// What the last tick's lease gave: a public route makes no store write to ask.
fn lease_json(guarantee: Option<lease::Guarantee>) -> serde_json::Value {
    match guarantee {
        Some(guarantee) => json!({ "guarantee": guarantee, "detail": guarantee.describe() }),
        None => json!({ "guarantee": null, "detail": "no tick has taken the lease yet" }),
    }
}

/// A problem as `/status` shows it: no URL userinfo, one line of at most 1 000 characters.
fn sanitized(problem: &str) -> String {
    crate::remote::sanitize_to(&mask_userinfo(problem), 1_000)
}

/// LCW's part: its last live check (none with settings that could not be read).
fn lcw_status(
    configured: bool,
    doc: &StatusChecks,
    live: bool,
    now_ms: i64,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    let lcw = if configured {
        let mut shown = shown(doc.lcw.as_ref(), now_ms, live);
        shown["reachable"] = shown["ok"].clone();
        shown
    } else {
        json!({ "ok": null, "error": "configuration invalid" })
    };
    if let Some(check) = doc.lcw.as_ref().filter(|c| !c.ok) {
        problems.push(format!(
            "LCW not reachable: {}",
            check.error.as_deref().unwrap_or("unknown")
        ));
    }
    lcw
}

/// InfluxDB's part, from what the ticks' writes met and the last live ping.
fn influx_status(
    settings: Option<&Settings>,
    snapshot: &Snapshot,
    doc: &StatusChecks,
    live: bool,
    now_ms: i64,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    let writes = Writes {
        config_error: snapshot.sink.config_error.as_deref(),
        last_write: snapshot.sink.last_write.as_ref(),
    };
    let ping = Ping {
        failed: doc
            .influx
            .as_ref()
            .filter(|c| !c.ok)
            .map(|c| c.error.as_deref().unwrap_or("unknown")),
        shown: shown(doc.influx.as_ref(), now_ms, live),
    };
    influxdb::status::health(settings, writes, ping, now_ms, problems)
}

/// The sink's part: its kind and health (for SQLite the store itself), its spool and last error.
async fn sink_health<H: Host>(
    host: &H,
    settings: Option<&Settings>,
    snapshot: &Snapshot,
    influx: &serde_json::Value,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    let mut sink = match settings {
        Some(s) if s.sink == SinkKind::Sqlite => match sqlite::status::health(host).await {
            Ok(sqlite) => json!({ "kind": "sqlite", "healthy": true, "sqlite": sqlite }),
            Err(e) => {
                problems.push(format!("SQLite store not healthy: {e}"));
                json!({ "kind": "sqlite", "healthy": false, "error": e.to_string() })
            }
        },
        Some(_) => json!({ "kind": "influxdb", "healthy": influx["healthy"] }),
        None => json!({ "kind": null, "healthy": null }),
    };
    sink["spool_points"] = json!(snapshot.sink.spool_points);
    sink["last_error"] = json!(snapshot.sink.last_error);
    sink["last_error_at_ms"] = json!(snapshot.sink.last_error_at_ms);
    sink
}

/// The problems of the ticks themselves: the breaker, the last success (its age returned), the
/// clock.
fn tick_problems(snapshot: &Snapshot, now_ms: i64, problems: &mut Vec<String>) -> Option<i64> {
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
    last_success_age_s
}

fn clock_json(clock: &crate::clock::ClockRecord) -> serde_json::Value {
    json!({
        "disputed": clock.disputed(),
        "skew_ms": clock.skew_ms,
        "skew_at_ms": clock.skew_at_ms,
        "skew_limit_ms": crate::clock::SKEW_LIMIT_MS,
        "disputed_ticks": clock.disputed_ticks,
        "last_disputed_at_ms": clock.last_disputed_at_ms,
        "retention_held": clock.retention_held,
    })
}
