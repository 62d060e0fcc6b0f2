//! InfluxDB's part of `/status`: its health as the writes saw it (a setting refused, the last
//! write) and as the live ping saw it, and the ping itself.
//!
//! Owns what `/status` says of InfluxDB and which of it is a problem; it must not decide when
//! to ping (the route claims the checks) nor store anything.

use serde_json::json;

use crate::config::{InfluxSettings, Settings, SinkKind};
use crate::host::{HttpClient, Timeouts};
use crate::sink::LastWrite;
use crate::sink::influxdb::write;

/// The last live ping, as the route keeps it.
pub struct Ping<'a> {
    /// `Some(error)` when it failed.
    pub failed: Option<&'a str>,
    /// As `/status` shows it.
    pub shown: serde_json::Value,
}

/// What the writes of the ticks met.
pub struct Writes<'a> {
    pub config_error: Option<&'a str>,
    pub last_write: Option<&'a LastWrite>,
}

/// Asks InfluxDB whether it is up (`/health` on v2, `/ping` on v1 and v3).
pub fn ping<'a, H: HttpClient>(
    http: &'a H,
    settings: &'a InfluxSettings,
    timeouts: Timeouts,
) -> impl Future<Output = Result<(), String>> + 'a {
    write::health(http, settings, timeouts)
}

/// InfluxDB's health, when it is the sink: what the writes met, and the ping; its problems are
/// added to `problems`.
pub fn health(
    settings: Option<&Settings>,
    writes: Writes<'_>,
    ping: Ping<'_>,
    now_ms: i64,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    match settings {
        Some(s) if s.sink == SinkKind::Influxdb => {}
        Some(_) => return json!({ "healthy": null, "error": "not used: sink = sqlite" }),
        None => return json!({ "healthy": null, "error": "configuration invalid" }),
    }
    if let Some(error) = ping.failed {
        problems.push(format!("InfluxDB not healthy: {error}"));
    }
    if let Some(reason) = writes.config_error {
        problems.push(format!("InfluxDB refuses a setting: {reason}"));
    } else if let Some(last) = writes.last_write.filter(|w| !w.ok) {
        problems.push(format!(
            "last InfluxDB write failed: {}",
            last.error.as_deref().unwrap_or("unknown")
        ));
    }
    let healthy = ping.failed.is_none()
        && writes.config_error.is_none()
        && writes.last_write.is_none_or(|w| w.ok);
    json!({
        "healthy": healthy,
        "ping": ping.shown,
        "last_write": writes.last_write.map(|w| json!({
            "ok": w.ok,
            "error": w.error,
            "at_ms": w.at_ms,
            "age_s": now_ms.saturating_sub(w.at_ms).max(0) / 1000,
        })),
        "config_error": writes.config_error,
    })
}
