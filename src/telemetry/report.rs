//! `/stats` and `/stats/cache`: the stored state as JSON, or as a table a person reads (the
//! original's `perf-stats` and `cache-stats`). It must not read the store.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::history::CycleSummary;
use super::{OPERATION_BUCKETS, OperationStats, Snapshot};

/// The `q` quantile in milliseconds: interpolated in the histogram, then kept within the
/// observed minimum and maximum (a bucket knows only its bounds).
fn quantile_ms(stats: &OperationStats, q: f64) -> Option<u64> {
    let seconds = stats.histogram().quantile(&OPERATION_BUCKETS, q)?;
    let low = stats.min_ms.unwrap_or(0);
    Some(((seconds * 1000.0).round() as u64).clamp(low, stats.max_ms.max(low)))
}

fn operation_json(name: &str, stats: &OperationStats) -> Value {
    let quantile = |q: f64| quantile_ms(stats, q);
    json!({
        "operation": name,
        "count": stats.count,
        "successes": stats.successes,
        "errors": stats.errors,
        "success_rate": stats.success_rate(),
        "min_ms": stats.min_ms,
        "avg_ms": stats.avg_ms().round() as u64,
        "max_ms": stats.max_ms,
        "p50_ms": quantile(0.50),
        "p95_ms": quantile(0.95),
        "p99_ms": quantile(0.99),
        "slow": stats.slow,
        "critical": stats.critical,
    })
}

fn summary_json(summary: &CycleSummary) -> Value {
    json!({
        "started_at_ms": summary.started_at_ms,
        "duration_ms": summary.duration_ms,
        "outcome": summary.outcome,
        "points_written": summary.points_written,
        "points_spooled": summary.points_spooled,
        "errors": summary.errors,
        "lcw_attempts": summary.lcw_attempts,
    })
}

/// The `/stats` document; `operation` keeps only that operation's figures.
pub fn stats_json(
    snapshot: &Snapshot,
    operation: Option<&str>,
    planned_calls_per_day: Option<u64>,
) -> Value {
    let operations: Vec<Value> = snapshot
        .telemetry
        .operations
        .iter()
        .filter(|(name, _)| operation.is_none_or(|o| o == name.as_str()))
        .map(|(name, stats)| operation_json(name, stats))
        .collect();
    let history = &snapshot.history;
    let sink = &snapshot.sink;
    // The sink's counters, under `sink` and (for dashboards of earlier releases) `influx`.
    let sink_json = json!({
        "kind": sink.kind,
        "counters": sink.counters,
        "spool_points": sink.spool_points,
        "spool_segments": sink.spool_segments,
        "paused_until_ms": sink.paused_until_ms,
        "last_error": sink.last_error,
        "last_error_at_ms": sink.last_error_at_ms,
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "percentiles": "from fixed-bucket histograms (bounds 0.1 s to 60 s), interpolated inside a bucket",
        "operations": operations,
        "cycles_by_outcome": history.cycles_by_outcome,
        "points_written_by_type": history.points_written_by_type,
        "records_skipped": history.records_skipped,
        "last_success_at_ms": history.last_success_at_ms,
        "recent_cycles": history.recent,
        "cycle_summaries": history.summaries.iter().map(summary_json).collect::<Vec<_>>(),
        "api_calls": snapshot.telemetry.api_calls,
        "hedges": snapshot.telemetry.hedges,
        "hedges_won": snapshot.telemetry.hedges_won,
        "breaker": snapshot.resilience.breaker,
        "breaker_transitions": snapshot.resilience.transitions,
        "credits": snapshot.resilience.credits,
        "planned_calls_per_day": planned_calls_per_day,
        "lcw_status": snapshot.resilience.status,
        "cache": cache_json(snapshot),
        "sink": sink_json,
        "influx": sink_json,
        "state_bytes": snapshot.state_bytes,
        "unreadable_documents": snapshot.unreadable_documents,
        "state_trimmed": snapshot.state_trimmed,
        "backfill": snapshot.backfill,
    })
}

/// Hit rate 50 % and up is good, 20 % and up fair, else poor; under 20 lookups, too early to say.
pub fn cache_verdict(snapshot: &Snapshot) -> &'static str {
    let stats = snapshot.cache.stats;
    if stats.hits.saturating_add(stats.misses) < 20 {
        "not enough lookups yet"
    } else if stats.hit_rate() >= 0.5 {
        "good"
    } else if stats.hit_rate() >= 0.2 {
        "fair"
    } else {
        "poor: answers expire before they are asked for again (TTLs shorter than the tick interval?)"
    }
}

/// The `/stats/cache` document.
pub fn cache_json(snapshot: &Snapshot) -> Value {
    let stats = snapshot.cache.stats;
    json!({
        "entries": snapshot.cache.entries.len(),
        "hits": stats.hits,
        "misses": stats.misses,
        "evictions": stats.evictions,
        "expirations": stats.expirations,
        "hit_rate": stats.hit_rate(),
        "verdict": cache_verdict(snapshot),
    })
}

/// `/stats?format=text`: a table like the original's `perf-stats`.
pub fn stats_text(snapshot: &Snapshot, operation: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lcw-fetcher {} — operation statistics",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5}",
        "operation",
        "count",
        "success",
        "min ms",
        "avg ms",
        "max ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "slow",
        "crit"
    );
    for (name, stats) in &snapshot.telemetry.operations {
        if operation.is_some_and(|o| o != name) {
            continue;
        }
        let q = |q: f64| quantile_ms(stats, q).map_or("-".to_owned(), |ms| ms.to_string());
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>7.1}% {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5}",
            name,
            stats.count,
            stats.success_rate() * 100.0,
            stats.min_ms.map_or("-".to_owned(), |m| m.to_string()),
            stats.avg_ms(),
            stats.max_ms,
            q(0.50),
            q(0.95),
            q(0.99),
            stats.slow,
            stats.critical
        );
    }
    totals_text(&mut out, snapshot);
    out
}

/// The lines under the table: cycles by outcome, the cache, the sink.
fn totals_text(out: &mut String, snapshot: &Snapshot) {
    let history = &snapshot.history;
    let outcomes: Vec<String> = history
        .cycles_by_outcome
        .iter()
        .map(|(o, n)| format!("{} {n}", o.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "\ncycles: {}",
        if outcomes.is_empty() {
            "none yet".into()
        } else {
            outcomes.join(", ")
        }
    );
    let stats = snapshot.cache.stats;
    let _ = writeln!(
        out,
        "cache: {} entries, hit rate {:.1}% ({} hits, {} misses), {} evictions, {} expirations — {}",
        snapshot.cache.entries.len(),
        stats.hit_rate() * 100.0,
        stats.hits,
        stats.misses,
        stats.evictions,
        stats.expirations,
        cache_verdict(snapshot)
    );
    let c = &snapshot.sink.counters;
    let _ = writeln!(
        out,
        "sink ({}): {} points written in {} batches, {} spooled ({} waiting), {} replayed, {} quarantined, {} evicted",
        snapshot.sink.kind.as_deref().unwrap_or("none yet"),
        c.points_written,
        c.batches_written,
        c.spooled,
        snapshot.sink.spool_points,
        c.replayed,
        c.quarantined,
        c.evicted
    );
}
