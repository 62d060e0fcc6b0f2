//! Telemetry rendering: Prometheus text exposition 0.0.4 and JSON statistics.
//!
//! Owns metric names, help texts and label sets, built from the persisted state on every scrape
//! (a Spin instance has no memory between requests). It must not read the store itself or change
//! any state: callers load the documents and pass them in.
//!
//! The text comes from the `prometheus` crate's 0.0.4 encoder, which promtool accepts, rather
//! than hand-written formatting: escaping and family layout are then its job, not ours.

use std::fmt;

use prometheus::{Encoder as _, Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::guard::ResilienceState;
use crate::resilience::BreakerState;
use crate::state::{CycleHistory, Outcome};

/// Content type of the 0.0.4 text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rendering failed; only a bug (a bad metric name or label) can cause it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryError(pub String);

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics rendering failed: {}", self.0)
    }
}

impl std::error::Error for TelemetryError {}

impl From<prometheus::Error> for TelemetryError {
    fn from(error: prometheus::Error) -> Self {
        Self(error.to_string())
    }
}

/// The `/metrics` body for the given state.
pub fn render_prometheus(
    history: &CycleHistory,
    resilience: &ResilienceState,
) -> Result<String, TelemetryError> {
    let registry = Registry::new();

    let info = GaugeVec::new(
        Opts::new("lcw_fetcher_info", "Build information of lcw-fetcher."),
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
    registry.register(Box::new(info))?;

    let cycles = IntCounterVec::new(
        Opts::new("lcw_fetch_cycles_total", "Fetch cycles run, by outcome."),
        &["status"],
    )?;
    for outcome in Outcome::ALL {
        let count = history
            .cycles_by_outcome
            .get(&outcome)
            .copied()
            .unwrap_or(0);
        cycles.with_label_values(&[outcome.as_str()]).inc_by(count);
    }
    registry.register(Box::new(cycles))?;

    let points = IntCounterVec::new(
        Opts::new(
            "lcw_data_points_stored_total",
            "Points InfluxDB accepted, by data type.",
        ),
        &["data_type"],
    )?;
    for data_type in crate::cycle::DATA_TYPES {
        let count = history
            .points_written_by_type
            .get(data_type)
            .copied()
            .unwrap_or(0);
        points.with_label_values(&[data_type]).inc_by(count);
    }
    registry.register(Box::new(points))?;

    if let Some(last) = history.last() {
        let duration = Gauge::new(
            "lcw_fetch_cycle_last_duration_seconds",
            "Wall time of the most recent fetch cycle.",
        )?;
        duration.set(last.duration_ms as f64 / 1000.0);
        registry.register(Box::new(duration))?;
    }
    if let Some(at_ms) = history.last_success_at_ms {
        let last_success = Gauge::new(
            "lcw_last_successful_cycle_timestamp_seconds",
            "Start time of the most recent fully successful cycle, Unix seconds.",
        )?;
        last_success.set(at_ms as f64 / 1000.0);
        registry.register(Box::new(last_success))?;
    }

    let breaker = Gauge::new(
        "lcw_circuit_breaker_state",
        "LCW circuit breaker: 0 closed, 1 half-open (probing), 2 open.",
    )?;
    breaker.set(match resilience.breaker {
        BreakerState::Closed { .. } => 0.0,
        BreakerState::HalfOpen { .. } => 1.0,
        BreakerState::Open { .. } => 2.0,
    });
    registry.register(Box::new(breaker))?;
    if let Some(credits) = &resilience.credits {
        let remaining = Gauge::new(
            "lcw_api_credits_remaining",
            "LCW credits left today, as /credits last said.",
        )?;
        remaining.set(credits.remaining);
        registry.register(Box::new(remaining))?;
        let limit = Gauge::new(
            "lcw_api_credits_daily_limit",
            "LCW credits per day for this key.",
        )?;
        limit.set(credits.limit);
        registry.register(Box::new(limit))?;
    }

    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    String::from_utf8(text).map_err(|e| TelemetryError(e.to_string()))
}

/// The `/stats` document. `planned_calls_per_day` is absent when the settings are invalid.
pub fn stats_json(
    history: &CycleHistory,
    resilience: &ResilienceState,
    planned_calls_per_day: Option<u64>,
) -> serde_json::Value {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "breaker": resilience.breaker,
        "breaker_transitions": resilience.transitions,
        "credits": resilience.credits,
        "planned_calls_per_day": planned_calls_per_day,
        "lcw_status": resilience.status,
        "cycles_by_outcome": history.cycles_by_outcome,
        "points_written_by_type": history.points_written_by_type,
        "last_success_at_ms": history.last_success_at_ms,
        "recent_cycles": history.recent,
    })
}
