//! `/metrics`: the stored state as Prometheus text exposition format 0.0.4.
//!
//! Families are built as the `prometheus` crate's plain data model straight from the stored
//! counters and histograms (the values are already aggregated across ticks, so its live metric
//! types do not apply) and printed by its `TextEncoder`, which promtool accepts: escaping and
//! layout are its job, not ours. It must not read the store.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram as ProtoHistogram, LabelPair, Metric, MetricFamily,
    MetricType,
};
use prometheus::{Encoder as _, TextEncoder};

use super::history::Outcome;
use super::{CYCLE_BUCKETS, Histogram, OPERATION_BUCKETS, Snapshot, TelemetryState};
use crate::resilience::BreakerState;

/// Content type of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

/// Collects the families of one scrape.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.0.push(family);
    }

    fn counters(&mut self, name: &str, help: &str, samples: Vec<(Vec<(&str, &str)>, f64)>) {
        self.scalars(name, help, MetricType::COUNTER, samples);
    }

    fn gauges(&mut self, name: &str, help: &str, samples: Vec<(Vec<(&str, &str)>, f64)>) {
        self.scalars(name, help, MetricType::GAUGE, samples);
    }

    /// A family of single-value samples (counters or gauges).
    fn scalars(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: Vec<(Vec<(&str, &str)>, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(pairs, value)| {
                let mut metric = Metric::from_label(labels(&pairs));
                if kind == MetricType::COUNTER {
                    let mut counter = Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                } else {
                    let mut gauge = Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                metric
            })
            .collect();
        self.family(name, help, kind, metrics);
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        samples: Vec<(Vec<(&str, &str)>, &Histogram)>,
    ) {
        let metrics = samples
            .into_iter()
            .filter(|(_, h)| h.count > 0)
            .map(|(pairs, h)| {
                let cumulative = h.cumulative(bounds);
                let buckets = bounds
                    .iter()
                    .zip(&cumulative)
                    .map(|(&bound, &count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(bound);
                        bucket.set_cumulative_count(count);
                        bucket
                    })
                    .collect();
                let mut histogram = ProtoHistogram::default();
                histogram.set_bucket(buckets);
                histogram.set_sample_count(h.count);
                histogram.set_sample_sum(h.sum);
                let mut metric = Metric::from_label(labels(&pairs));
                metric.set_histogram(histogram);
                metric
            })
            .collect();
        self.family(name, help, MetricType::HISTOGRAM, metrics);
    }
}

/// The `/metrics` body.
pub fn render(snapshot: &Snapshot) -> Result<String, String> {
    let mut f = Families::default();
    let t = &snapshot.telemetry;
    f.gauges(
        "lcw_fetcher_info",
        "Build information of lcw-fetcher.",
        vec![(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );

    operations(&mut f, t);
    lcw_calls(&mut f, t);
    cache(&mut f, snapshot);
    database(&mut f, t);
    cycles(&mut f, snapshot);
    resources(&mut f, snapshot);
    lcw_state(&mut f, snapshot);
    stored_state(&mut f, snapshot);
    last_tick(&mut f, snapshot);
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&f.0, &mut text)
        .map_err(|e| e.to_string())?;
    String::from_utf8(text).map_err(|e| e.to_string())
}

/// Timed operations: their durations and counts by outcome.
fn operations(f: &mut Families, t: &TelemetryState) {
    let mut durations = Vec::new();
    let mut totals = Vec::new();
    for (operation, stats) in &t.operations {
        for (status, histogram) in &stats.by_status {
            durations.push((
                vec![
                    ("operation", operation.as_str()),
                    ("status", status.as_str()),
                ],
                histogram,
            ));
            totals.push((
                vec![
                    ("operation", operation.as_str()),
                    ("status", status.as_str()),
                ],
                histogram.count as f64,
            ));
        }
    }
    f.histograms(
        "lcw_operation_duration_seconds",
        "Duration of timed operations (LCW calls, writes, replays, cache, whole ticks).",
        &OPERATION_BUCKETS,
        durations,
    );
    f.counters(
        "lcw_operations_total",
        "Timed operations, by outcome.",
        totals,
    );
}

/// LCW requests by endpoint and status, hedges, response durations.
fn lcw_calls(f: &mut Families, t: &TelemetryState) {
    let mut calls = Vec::new();
    for (endpoint, by_status) in &t.api_calls {
        for (status, count) in by_status {
            calls.push((
                vec![
                    ("endpoint", endpoint.as_str()),
                    ("status_code", status.as_str()),
                ],
                *count as f64,
            ));
        }
    }
    f.counters(
        "lcw_api_calls_total",
        "LCW requests, by endpoint and HTTP status (or timeout, connect_error, malformed…).",
        calls,
    );
    f.counters(
        "lcw_api_hedges_total",
        "Second copies of LCW requests still unanswered after the hedge delay (each a call).",
        vec![(vec![], t.hedges as f64)],
    );
    f.counters(
        "lcw_api_hedges_won_total",
        "Hedges whose answer came first and was used (the other copy dropped).",
        vec![(vec![], t.hedges_won as f64)],
    );
    f.histograms(
        "lcw_api_response_duration_seconds",
        "Duration of single LCW requests that got an answer (a dropped hedge copy is a call, not a response).",
        &OPERATION_BUCKETS,
        t.api_response
            .iter()
            .map(|(e, h)| (vec![("endpoint", e.as_str())], h))
            .collect(),
    );
}

/// The response cache.
fn cache(f: &mut Families, snapshot: &Snapshot) {
    let stats = snapshot.cache.stats;
    f.counters(
        "lcw_cache_operations_total",
        "Response cache lookups and removals.",
        vec![
            (vec![("operation", "hit")], stats.hits as f64),
            (vec![("operation", "miss")], stats.misses as f64),
            (vec![("operation", "eviction")], stats.evictions as f64),
            (vec![("operation", "expiration")], stats.expirations as f64),
        ],
    );
    f.gauges(
        "lcw_cache_size_entries",
        "Answers in the response cache.",
        vec![(vec![], snapshot.cache.entries.len() as f64)],
    );
}

/// InfluxDB write requests.
fn database(f: &mut Families, t: &TelemetryState) {
    f.counters(
        "lcw_database_operations_total",
        "InfluxDB write requests, by outcome.",
        t.database_operations
            .iter()
            .map(|(s, n)| (vec![("status", s.as_str())], *n as f64))
            .collect(),
    );
    f.histograms(
        "lcw_database_response_duration_seconds",
        "Duration of InfluxDB write requests.",
        &OPERATION_BUCKETS,
        vec![(vec![], &t.database_response)],
    );
}

/// Fetch cycles by outcome and duration, and the points they stored.
fn cycles(f: &mut Families, snapshot: &Snapshot) {
    f.counters(
        "lcw_fetch_cycles_total",
        "Fetch cycles, by outcome.",
        Outcome::ALL
            .iter()
            .map(|o| {
                let count = snapshot
                    .history
                    .cycles_by_outcome
                    .get(o)
                    .copied()
                    .unwrap_or(0);
                (vec![("status", o.as_str())], count as f64)
            })
            .collect(),
    );
    f.histograms(
        "lcw_fetch_cycle_duration_seconds",
        "Wall time of whole fetch cycles.",
        &CYCLE_BUCKETS,
        vec![(vec![], &snapshot.telemetry.cycle_duration)],
    );
    f.counters(
        "lcw_data_points_stored_total",
        "New points InfluxDB accepted, by data type.",
        crate::schema::DATA_TYPES
            .iter()
            .map(|d| {
                let count = snapshot
                    .history
                    .points_written_by_type
                    .get(*d)
                    .copied()
                    .unwrap_or(0);
                (vec![("data_type", *d)], count as f64)
            })
            .collect(),
    );
}

/// What a wasm guest can measure of itself.
fn resources(f: &mut Families, snapshot: &Snapshot) {
    let mut resources = vec![(
        vec![("resource", "kv_state_bytes")],
        snapshot.state_bytes as f64,
    )];
    if let Some(ms) = snapshot.telemetry.last_tick_duration_ms {
        resources.push((vec![("resource", "tick_wall_seconds")], ms as f64 / 1000.0));
    }
    if let Some(bytes) = snapshot.linear_memory_bytes {
        resources.push((vec![("resource", "linear_memory_bytes")], bytes as f64));
    }
    f.gauges(
        "lcw_system_resources",
        "What a wasm guest can measure: key-value state size, the last tick's wall time, this instance's linear memory.",
        resources,
    );
}

/// The breaker and the credits.
fn lcw_state(f: &mut Families, snapshot: &Snapshot) {
    let breaker = match snapshot.resilience.breaker {
        BreakerState::Closed { .. } => 0.0,
        BreakerState::HalfOpen { .. } => 1.0,
        BreakerState::Open { .. } => 2.0,
    };
    f.gauges(
        "lcw_circuit_breaker_state",
        "LCW circuit breaker: 0 closed, 1 half-open (probing), 2 open.",
        vec![(vec![], breaker)],
    );
    if let Some(credits) = &snapshot.resilience.credits {
        f.gauges(
            "lcw_api_credits_remaining",
            "LCW credits left today, as /credits last said.",
            vec![(vec![], credits.remaining)],
        );
        f.gauges(
            "lcw_api_credits_daily_limit",
            "LCW credits per day for this key.",
            vec![(vec![], credits.limit)],
        );
    }
}

/// The spool, backfill, the state document and the points kept out.
fn stored_state(f: &mut Families, snapshot: &Snapshot) {
    let sink = &snapshot.sink;
    f.gauges(
        "lcw_spool_points",
        "Points waiting in the spool for InfluxDB.",
        vec![(vec![], sink.spool_points as f64)],
    );
    f.counters(
        "lcw_spool_evicted_points_total",
        "Points lost: evicted from a full spool.",
        vec![(vec![], sink.counters.evicted as f64)],
    );
    let backfill = &snapshot.backfill;
    f.gauges(
        "lcw_backfill_ranges_waiting",
        "History ranges queued to fill gaps in the data, not filled yet.",
        vec![(vec![], backfill.waiting as f64)],
    );
    f.counters(
        "lcw_backfill_ranges_total",
        "History ranges queued, filled and abandoned since the store began.",
        vec![
            (vec![("outcome", "queued")], backfill.queued as f64),
            (vec![("outcome", "filled")], backfill.filled as f64),
            (vec![("outcome", "abandoned")], backfill.abandoned as f64),
        ],
    );
    f.counters(
        "lcw_backfill_points_total",
        "Points written from LCW's history to fill gaps.",
        vec![(vec![], backfill.points as f64)],
    );
    f.counters(
        "lcw_state_unreadable_documents_total",
        "State documents found unreadable, set aside and started afresh.",
        vec![(vec![], snapshot.unreadable_documents as f64)],
    );
    f.counters(
        "lcw_state_trimmed_total",
        "Saves of the state document that dropped its least needed parts to fit the store's value limit.",
        vec![(vec![], snapshot.state_trimmed as f64)],
    );
    f.counters(
        "lcw_quarantined_points_total",
        "Points InfluxDB refused for good (see GET /quarantine).",
        vec![(vec![], sink.counters.quarantined as f64)],
    );
    f.counters(
        "lcw_points_dropped_total",
        "Points InfluxDB accepted the request of but did not keep, by reason (retention: older than the retention policy).",
        vec![(
            vec![("reason", "retention")],
            sink.counters.dropped_retention as f64,
        )],
    );
}

/// Skipped list elements and the most recent cycles.
fn last_tick(f: &mut Families, snapshot: &Snapshot) {
    let skipped: Vec<(Vec<(&str, &str)>, f64)> = snapshot
        .history
        .records_skipped
        .iter()
        .flat_map(|(endpoint, reasons)| {
            reasons.iter().map(move |(reason, count)| {
                (
                    vec![("endpoint", endpoint.as_str()), ("reason", reason.as_str())],
                    *count as f64,
                )
            })
        })
        .collect();
    if !skipped.is_empty() {
        f.counters(
            "lcw_records_skipped_total",
            "LCW list elements skipped as unreadable (the rest of the answer was written).",
            skipped,
        );
    }
    if let Some(last) = snapshot.history.last() {
        f.gauges(
            "lcw_fetch_cycle_last_duration_seconds",
            "Wall time of the most recent fetch cycle.",
            vec![(vec![], last.duration_ms as f64 / 1000.0)],
        );
    }
    if let Some(at_ms) = snapshot.history.last_success_at_ms {
        f.gauges(
            "lcw_last_successful_cycle_timestamp_seconds",
            "Start of the most recent fully successful cycle, Unix seconds.",
            vec![(vec![], at_ms as f64 / 1000.0)],
        );
    }
}
