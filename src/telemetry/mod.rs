//! Telemetry: the tick history (`history`), every operation's timing and outcome, alerts,
//! counters and histograms — carried in the cycle's state document so they survive ticks — and
//! their rendering as Prometheus text (`prometheus`) and statistics (`report`).
//!
//! It renders a [`Snapshot`] the cycle fills in, and shows the sink through its own
//! [`SinkSnapshot`], never through the sink's state; it does not read the store.
//!
//! A tick collects [`Timing`]s in memory and folds them into its part of the collector's state
//! document once, at its end (no extra round trip). Percentiles come from fixed-bucket histograms (the same buckets the
//! metrics expose), interpolated linearly inside a bucket: bounded memory, exact counts,
//! approximate quantiles. It must not decide anything about fetching or writing.

pub mod history;
pub mod prometheus;
pub mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache;
use crate::config::Thresholds;
use crate::guard::{Attempt, DROPPED, ResilienceState};
use crate::host::{Level, Log};
use crate::sink::delivery::{DatabaseRequest, SinkCounters};
use history::{CycleHistory, bump};

/// Bucket upper bounds (seconds) of operation, API and database durations.
pub const OPERATION_BUCKETS: [f64; 11] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0];
/// Bucket upper bounds (seconds) of whole ticks.
pub const CYCLE_BUCKETS: [f64; 11] = [
    1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
];

/// Names of the timed operations.
pub mod op {
    use crate::source;

    // The LCW calls' names are their sources' (`Source::operation`).
    pub const STATUS: &str = source::status::OPERATION;
    pub const CREDITS: &str = source::credits::OPERATION;
    pub const COINS_LIST: &str = source::coin_pages::OPERATION;
    pub const COINS_MAP: &str = source::tracked::OPERATION;
    pub const OVERVIEW: &str = source::overview::OPERATION;
    pub const EXCHANGES: &str = source::exchanges::OPERATION;
    pub const INFLUX_WRITE: &str = "influx_write";
    pub const SPOOL_REPLAY: &str = "spool_replay";
    pub const CACHE_LOAD: &str = "cache_load";
    pub const CACHE_SAVE: &str = "cache_save";
    pub const FETCH_CYCLE: &str = "fetch_cycle";
}

/// A histogram with fixed bounds: per-bucket counts (not cumulative; the last one is +Inf).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[f64], seconds: f64) {
        if self.counts.len() != bounds.len() + 1 {
            self.counts = vec![0; bounds.len() + 1];
        }
        let slot = bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(bounds.len());
        // Stored counts may come from another release or a hostile store: a count at its
        // largest stays there (a counter never goes backwards).
        self.counts[slot] = self.counts[slot].saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.sum += seconds;
    }

    /// Cumulative counts per bound, then +Inf (= `count`).
    pub fn cumulative(&self, bounds: &[f64]) -> Vec<u64> {
        let mut running = 0;
        (0..=bounds.len())
            .map(|i| {
                running = self
                    .counts
                    .get(i)
                    .map_or(running, |&c| u64::saturating_add(running, c));
                running
            })
            .collect()
    }

    /// The `q` quantile (0–1) in seconds, interpolated inside its bucket; `None` when empty.
    /// Above the last bound the answer is the last bound (the histogram knows no more).
    pub fn quantile(&self, bounds: &[f64], q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let cumulative = self.cumulative(bounds);
        let slot = cumulative
            .iter()
            .position(|&c| c as f64 >= rank)
            .unwrap_or(bounds.len());
        if slot == bounds.len() {
            return bounds.last().copied();
        }
        let lower = if slot == 0 { 0.0 } else { bounds[slot - 1] };
        let below = if slot == 0 { 0 } else { cumulative[slot - 1] };
        // A stored document may hold fewer counts than bounds.
        let in_bucket = self.counts.get(slot).copied().unwrap_or(0).max(1) as f64;
        Some(lower + (bounds[slot] - lower) * ((rank - below as f64) / in_bucket).clamp(0.0, 1.0))
    }
}

/// Everything known about one operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationStats {
    pub count: u64,
    pub successes: u64,
    pub errors: u64,
    pub min_ms: Option<u64>,
    pub max_ms: u64,
    pub sum_ms: u64,
    /// Over the warning threshold.
    pub slow: u64,
    /// Over the critical threshold.
    pub critical: u64,
    /// Durations by outcome (`success`, `error`).
    pub by_status: BTreeMap<String, Histogram>,
}

impl OperationStats {
    pub fn success_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.successes as f64 / self.count as f64
        }
    }

    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms as f64 / self.count as f64
        }
    }

    /// All outcomes together.
    pub fn histogram(&self) -> Histogram {
        let mut all = Histogram::default();
        for h in self.by_status.values() {
            if all.counts.len() < h.counts.len() {
                all.counts.resize(h.counts.len(), 0);
            }
            for (a, c) in all.counts.iter_mut().zip(&h.counts) {
                *a = a.saturating_add(*c);
            }
            all.count = all.count.saturating_add(h.count);
            all.sum += h.sum;
        }
        all
    }
}

/// One timed operation of a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub operation: &'static str,
    pub duration: Duration,
    pub ok: bool,
}

/// The telemetry, carried in the collector's state document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryState {
    pub operations: BTreeMap<String, OperationStats>,
    /// LCW requests by `endpoint` then HTTP status (or `timeout`, `connect_error`…).
    pub api_calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub api_response: BTreeMap<String, Histogram>,
    /// Second copies of hedged LCW requests sent, and those whose answer was used.
    pub hedges: u64,
    pub hedges_won: u64,
    pub database_operations: BTreeMap<String, u64>,
    pub database_response: Histogram,
    pub cycle_duration: Histogram,
    /// Last alert per operation (Unix ms), for the cool-down.
    pub last_alert_ms: BTreeMap<String, i64>,
    pub last_tick_duration_ms: Option<u64>,
}

/// An alert raised by a slow operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub operation: String,
    pub level: &'static str,
    pub seconds: f64,
    pub threshold_seconds: f64,
}

impl TelemetryState {
    /// Folds one tick into the totals; returns the alerts to log (cool-down applied).
    pub fn record_tick(
        &mut self,
        timings: &[Timing],
        attempts: &[Attempt],
        database: &[DatabaseRequest],
        thresholds: Thresholds,
        now_ms: i64,
    ) -> Vec<Alert> {
        let alerts = timings
            .iter()
            .filter_map(|timing| self.record_timing(timing, thresholds, now_ms))
            .collect();
        for attempt in attempts {
            if attempt.hedge {
                self.hedges = self.hedges.saturating_add(1);
                // The first answer wins and the other copy is dropped: a hedge that answered
                // 200 is the one whose answer was used.
                if attempt.status == "200" {
                    self.hedges_won = self.hedges_won.saturating_add(1);
                }
            }
            bump(
                self.api_calls.entry(attempt.endpoint.clone()).or_default(),
                attempt.status.clone(),
                1,
            );
            // A dropped copy is a call (and a credit) but no response: its time is only how
            // long it waited until cancelled, and would pull the response times down.
            if attempt.status != DROPPED {
                self.api_response
                    .entry(attempt.endpoint.clone())
                    .or_default()
                    .observe(&OPERATION_BUCKETS, attempt.duration_ms as f64 / 1000.0);
            }
        }
        for request in database {
            bump(&mut self.database_operations, request.status.clone(), 1);
            self.database_response
                .observe(&OPERATION_BUCKETS, request.duration_ms as f64 / 1000.0);
        }
        alerts
    }

    /// One timed operation into its statistics; the alert it raises, if it was slow and its
    /// last alert is past the cool-down.
    fn record_timing(
        &mut self,
        timing: &Timing,
        thresholds: Thresholds,
        now_ms: i64,
    ) -> Option<Alert> {
        let ms = u64::try_from(timing.duration.as_millis()).unwrap_or(u64::MAX);
        let seconds = timing.duration.as_secs_f64();
        let stats = self
            .operations
            .entry(timing.operation.to_owned())
            .or_default();
        // Counters loaded from the stored document: saturating, never wrapping.
        stats.count = stats.count.saturating_add(1);
        if timing.ok {
            stats.successes = stats.successes.saturating_add(1);
        } else {
            stats.errors = stats.errors.saturating_add(1);
        }
        stats.min_ms = Some(stats.min_ms.map_or(ms, |m| m.min(ms)));
        stats.max_ms = stats.max_ms.max(ms);
        stats.sum_ms = stats.sum_ms.saturating_add(ms);
        let status = if timing.ok { "success" } else { "error" };
        stats
            .by_status
            .entry(status.to_owned())
            .or_default()
            .observe(&OPERATION_BUCKETS, seconds);
        if timing.operation == op::FETCH_CYCLE {
            self.cycle_duration.observe(&CYCLE_BUCKETS, seconds);
            self.last_tick_duration_ms = Some(ms);
        }
        let level = if timing.duration > thresholds.critical {
            stats.critical = stats.critical.saturating_add(1);
            stats.slow = stats.slow.saturating_add(1);
            Some(("critical", thresholds.critical))
        } else if timing.duration > thresholds.warning {
            stats.slow = stats.slow.saturating_add(1);
            Some(("warning", thresholds.warning))
        } else {
            None
        };
        let (level, threshold) = level?;
        let last = self.last_alert_ms.get(timing.operation).copied();
        let cool_ms = thresholds.cool_down.as_millis() as i64;
        // One stamped ahead of this clock (a clock that had jumped) holds nothing off.
        let due = |t: i64| {
            now_ms.saturating_sub(t) >= cool_ms || t > crate::clock::newest_credible(now_ms)
        };
        if !last.is_none_or(due) {
            return None;
        }
        self.last_alert_ms
            .insert(timing.operation.to_owned(), now_ms);
        Some(Alert {
            operation: timing.operation.to_owned(),
            level,
            seconds,
            threshold_seconds: threshold.as_secs_f64(),
        })
    }
}

/// Logs alerts: a readable line and a JSON event each.
pub fn log_alerts<L: Log>(log: &L, alerts: &[Alert]) {
    for alert in alerts {
        let level = if alert.level == "critical" {
            Level::Error
        } else {
            Level::Warn
        };
        log.log(
            level,
            &format!(
                "ALERT {}: {} took {:.1} s (threshold {:.0} s)",
                alert.level, alert.operation, alert.seconds, alert.threshold_seconds
            ),
        );
        if let Ok(json) =
            serde_json::to_string(&serde_json::json!({ "event": "alert", "alert": alert }))
        {
            log.event(&json);
        }
    }
}

/// Everything the API shows. The cycle, owner of the state document, reads and fills it in
/// (`cycle::load_snapshot`); telemetry only renders it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub history: CycleHistory,
    pub resilience: ResilienceState,
    pub telemetry: TelemetryState,
    pub cache: cache::Index,
    pub sink: SinkSnapshot,
    /// Bytes of the state document plus the spool's segments.
    pub state_bytes: u64,
    /// State documents found unreadable and set aside so far.
    pub unreadable_documents: u64,
    /// Saves of the state document that dropped parts of it to fit the store's value limit.
    pub state_trimmed: u64,
    pub backfill: BackfillSnapshot,
    /// The exclusion the last tick's lease had (`None` before the first tick).
    pub lease_guarantee: Option<crate::lease::Guarantee>,
    /// This instance's linear memory, when running as wasm.
    pub linear_memory_bytes: Option<u64>,
    /// The host clock as the ticks read it, checked against LCW's.
    pub clock: crate::clock::ClockRecord,
}

/// What the API shows of the backfill: ranges waiting, and what became of those queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSnapshot {
    pub waiting: u64,
    pub queued: u64,
    pub filled: u64,
    pub abandoned: u64,
    pub points: u64,
}

/// What the API shows of the sink: its counters and the spool's size, not its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// `sqlite` or `influxdb`: the sink the last tick wrote to.
    pub kind: Option<String>,
    pub counters: SinkCounters,
    pub spool_points: u64,
    pub spool_segments: usize,
    /// Nothing is sent before this time (a 429/503 asked for a pause).
    pub paused_until_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// InfluxDB said a setting is wrong (cleared by the next write it takes).
    pub config_error: Option<String>,
    /// How the last write request ended.
    pub last_write: Option<crate::sink::LastWrite>,
}

/// This instance's linear memory, when running as wasm.
pub fn linear_memory_bytes() -> Option<u64> {
    memory_pages().map(|pages| pages * 65_536)
}

#[cfg(target_arch = "wasm32")]
fn memory_pages() -> Option<u64> {
    Some(core::arch::wasm32::memory_size(0) as u64)
}

#[cfg(not(target_arch = "wasm32"))]
fn memory_pages() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_give_quantiles() {
        let mut h = Histogram::default();
        for s in [0.05, 0.2, 0.2, 0.7, 3.0, 100.0] {
            h.observe(&OPERATION_BUCKETS, s);
        }
        let cumulative = h.cumulative(&OPERATION_BUCKETS);
        assert_eq!(cumulative, [1, 3, 3, 4, 4, 5, 5, 5, 5, 5, 5, 6]);
        assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*cumulative.last().unwrap(), h.count);
        assert_eq!(h.quantile(&OPERATION_BUCKETS, 0.5), Some(0.25));
        assert_eq!(h.quantile(&OPERATION_BUCKETS, 1.0), Some(60.0));
        assert_eq!(Histogram::default().quantile(&OPERATION_BUCKETS, 0.5), None);
    }

    #[test]
    fn hedges_sent_and_won_are_counted_from_the_attempts() {
        let attempt = |status: &str, hedge: bool| Attempt {
            endpoint: "/coins/list".into(),
            status: status.into(),
            duration_ms: 100,
            hedge,
        };
        let mut doc = TelemetryState::default();
        doc.record_tick(
            &[],
            &[
                // A hedge that won, its first copy dropped.
                attempt("200", true),
                attempt(crate::guard::DROPPED, false),
                // A hedge dropped when the first copy answered.
                attempt("200", false),
                attempt(crate::guard::DROPPED, true),
                // A hedge that failed too.
                attempt("503", false),
                attempt("timeout", true),
            ],
            &[],
            thresholds(),
            0,
        );
        assert_eq!((doc.hedges, doc.hedges_won), (3, 1));
        // Every copy is a call.
        assert_eq!(doc.api_calls["/coins/list"].values().sum::<u64>(), 6);
        assert_eq!(doc.api_calls["/coins/list"][crate::guard::DROPPED], 2);
    }

    /// A stored last alert in the far past (another release, a hostile store): the cool-down
    /// is over, and measuring it must not overflow.
    #[test]
    fn a_last_alert_in_the_far_past_does_not_overflow_the_cool_down() {
        let mut doc = TelemetryState::default();
        doc.last_alert_ms.insert(op::OVERVIEW.to_owned(), i64::MIN);
        let alerts = doc.record_tick(
            &[timing(op::OVERVIEW, 61, false)],
            &[],
            &[],
            thresholds(),
            1_800_000_000_000,
        );
        assert_eq!(alerts.len(), 1);
    }

    #[test]
    fn a_dropped_copy_is_a_call_but_not_a_response() {
        let attempt = |status: &str, duration_ms: u64, hedge: bool| Attempt {
            endpoint: "/coins/list".into(),
            status: status.into(),
            duration_ms,
            hedge,
        };
        let mut doc = TelemetryState::default();
        doc.record_tick(
            &[],
            &[
                // The first copy answered after 2 s; the hedge, sent at 1.6 s, was dropped.
                attempt("200", 2_000, false),
                attempt(DROPPED, 400, true),
                // The hedge won after 0.3 s; the first copy, waited for 1.3 s, was dropped.
                attempt("200", 300, true),
                attempt(DROPPED, 1_300, false),
            ],
            &[],
            thresholds(),
            0,
        );
        // Every copy is a request (and a credit)…
        assert_eq!(doc.api_calls["/coins/list"].values().sum::<u64>(), 4);
        // …but only answers are response times.
        let response = &doc.api_response["/coins/list"];
        assert_eq!(response.count, 2);
        assert!((response.sum - 2.3).abs() < 1e-9, "{}", response.sum);
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            warning: Duration::from_secs(30),
            critical: Duration::from_secs(60),
            cool_down: Duration::from_secs(300),
        }
    }

    fn timing(operation: &'static str, secs: u64, ok: bool) -> Timing {
        Timing {
            operation,
            duration: Duration::from_secs(secs),
            ok,
        }
    }

    #[test]
    fn operations_count_and_alerts_cool_down() {
        let mut doc = TelemetryState::default();
        let alerts = doc.record_tick(
            &[
                timing(op::OVERVIEW, 1, true),
                timing(op::OVERVIEW, 31, false),
            ],
            &[],
            &[],
            thresholds(),
            0,
        );
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].level, "warning");
        let alerts = doc.record_tick(
            &[timing(op::OVERVIEW, 61, false)],
            &[],
            &[],
            thresholds(),
            60_000,
        );
        assert!(alerts.is_empty(), "within the 5-minute cool-down");
        let alerts = doc.record_tick(
            &[timing(op::OVERVIEW, 61, false)],
            &[],
            &[],
            thresholds(),
            300_000,
        );
        assert_eq!(alerts[0].level, "critical");
        let stats = &doc.operations[op::OVERVIEW];
        assert_eq!(
            (
                stats.count,
                stats.successes,
                stats.errors,
                stats.slow,
                stats.critical
            ),
            (4, 1, 3, 3, 2)
        );
        assert_eq!((stats.min_ms, stats.max_ms), (Some(1_000), 61_000));
        assert_eq!(stats.success_rate(), 0.25);
        assert_eq!(stats.histogram().count, 4);
    }
}
