//! The record of ticks: how each ended, what it wrote, and the totals since the store began.
//!
//! Owns the shapes `/stats` and the metrics read the tick history from; the cycle fills them in
//! and carries them in its state document. It must not read or write the store.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::guard::GuardReport;

/// How many cycles `/stats` lists in brief.
pub const RECENT_CYCLES: usize = 60;
/// How many of those it keeps in full (errors, LCW attempts): full records are most of the
/// state document, and the last few are what an operator reads.
pub const DETAILED_CYCLES: usize = 5;

/// How a cycle ended.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything planned was fetched and written.
    Success,
    /// Some points were written, something failed.
    Partial,
    /// Nothing was written (also what a stored record without an outcome reads as).
    #[default]
    Error,
    /// The circuit breaker was open: no LCW call was made.
    SkippedBreaker,
    /// Another tick held the lease: this one did nothing.
    SkippedOverlap,
    /// The lease could not be read or taken (the store failed): this tick did nothing rather
    /// than risk running beside a tick that holds it.
    SkippedLease,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Partial,
        Outcome::Error,
        Outcome::SkippedBreaker,
        Outcome::SkippedOverlap,
        Outcome::SkippedLease,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::Error => "error",
            Self::SkippedBreaker => "skipped_breaker",
            Self::SkippedOverlap => "skipped_overlap",
            Self::SkippedLease => "skipped_lease",
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CycleRecord {
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// Points that InfluxDB accepted, by data type (`coins`, `overview`).
    pub points_written: BTreeMap<String, u64>,
    /// Spooled points that InfluxDB accepted this tick.
    pub points_replayed: u64,
    /// Points InfluxDB could not take now, kept in the spool.
    pub points_spooled: u64,
    /// Points InfluxDB refused for good, kept in the quarantine.
    pub points_quarantined: u64,
    /// Points lost: evicted from a full spool, or not spoolable.
    pub points_evicted: u64,
    /// One line per failure, secrets never included.
    pub errors: Vec<String>,
    /// Points left out for having no finite field.
    pub points_dropped: u64,
    /// Wanted answers served from the cache.
    pub cache_hits: u64,
    /// LCW attempts, calls not sent, retries and waits.
    pub lcw: GuardReport,
    /// The circuit breaker's state at the end of the tick.
    pub breaker: String,
    /// Errors beyond the [`ERRORS_KEPT`] kept in `errors`.
    #[serde(default)]
    pub errors_omitted: u64,
    /// LCW list elements skipped as unreadable, by endpoint then reason.
    #[serde(default)]
    pub records_skipped: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Errors a cycle record keeps: enough to say what went wrong, never enough to bloat the state
/// document that holds 60 records.
pub const ERRORS_KEPT: usize = 5;

impl CycleRecord {
    /// A record with nothing written yet; the cycle fills in times and counts.
    pub fn new(outcome: Outcome, errors: Vec<String>) -> Self {
        Self {
            started_at_ms: 0,
            duration_ms: 0,
            outcome,
            points_written: BTreeMap::new(),
            points_replayed: 0,
            points_spooled: 0,
            points_quarantined: 0,
            points_evicted: 0,
            errors,
            points_dropped: 0,
            cache_hits: 0,
            lcw: GuardReport::default(),
            breaker: String::new(),
            errors_omitted: 0,
            records_skipped: BTreeMap::new(),
        }
    }

    /// Keeps the first [`ERRORS_KEPT`] errors, each one bounded line of text, and counts the
    /// rest. Errors quote remote text: this is the last gate before a log or the store.
    pub fn bound_errors(&mut self) {
        let kept = self.errors.len().min(ERRORS_KEPT);
        self.errors_omitted = self
            .errors_omitted
            .saturating_add((self.errors.len() - kept) as u64);
        self.errors.truncate(kept);
        for error in &mut self.errors {
            *error = crate::remote::sanitize_to(error, 2 * crate::remote::TEXT_LIMIT);
        }
    }

    /// Saturating: a stored record (of another release, or a hostile store) may hold any count.
    pub fn total_written(&self) -> u64 {
        self.points_written
            .values()
            .fold(0, |total, &n| u64::saturating_add(total, n))
    }
}

/// One cycle in brief. Stored with one-letter keys: sixty of these are a third of the state
/// document; `/stats` shows them with full names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CycleSummary {
    #[serde(rename = "t")]
    pub started_at_ms: i64,
    #[serde(rename = "d")]
    pub duration_ms: u64,
    #[serde(rename = "o")]
    pub outcome: Outcome,
    #[serde(rename = "w")]
    pub points_written: u64,
    #[serde(rename = "s")]
    pub points_spooled: u64,
    #[serde(rename = "e")]
    pub errors: u64,
    #[serde(rename = "a")]
    pub lcw_attempts: u64,
}

impl From<&CycleRecord> for CycleSummary {
    fn from(cycle: &CycleRecord) -> Self {
        Self {
            started_at_ms: cycle.started_at_ms,
            duration_ms: cycle.duration_ms,
            outcome: cycle.outcome,
            points_written: cycle.total_written(),
            points_spooled: cycle.points_spooled,
            errors: cycle.errors.len() as u64,
            lcw_attempts: cycle.lcw.attempts.len() as u64,
        }
    }
}

/// Totals since the store was created, and the most recent cycles (newest last): the last
/// [`RECENT_CYCLES`] in brief, the last [`DETAILED_CYCLES`] in full.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CycleHistory {
    pub cycles_by_outcome: BTreeMap<Outcome, u64>,
    pub points_written_by_type: BTreeMap<String, u64>,
    pub last_success_at_ms: Option<i64>,
    pub recent: VecDeque<CycleRecord>,
    pub summaries: VecDeque<CycleSummary>,
    /// LCW list elements skipped since the store began, by endpoint then reason.
    pub records_skipped: BTreeMap<String, BTreeMap<String, u64>>,
}

impl CycleHistory {
    /// Adds a finished cycle to the totals and the recent windows.
    pub fn record(&mut self, mut cycle: CycleRecord) {
        cycle.bound_errors();
        for (endpoint, reasons) in &cycle.records_skipped {
            for (reason, count) in reasons {
                bump(
                    self.records_skipped.entry(endpoint.clone()).or_default(),
                    reason.clone(),
                    *count,
                );
            }
        }
        bump(&mut self.cycles_by_outcome, cycle.outcome, 1);
        for (data_type, count) in &cycle.points_written {
            bump(&mut self.points_written_by_type, data_type.clone(), *count);
        }
        if cycle.outcome == Outcome::Success {
            self.last_success_at_ms = Some(cycle.started_at_ms);
        }
        if self.summaries.is_empty() {
            // A document of the first release kept 60 full records and no summaries.
            self.summaries = self.recent.iter().map(CycleSummary::from).collect();
        }
        self.summaries.push_back(CycleSummary::from(&cycle));
        self.recent.push_back(cycle);
        trim(&mut self.summaries, RECENT_CYCLES);
        trim(&mut self.recent, DETAILED_CYCLES);
    }

    pub fn last(&self) -> Option<&CycleRecord> {
        self.recent.back()
    }
}

/// Adds `n` to a total loaded from the stored document: saturating, so that a total at its
/// largest stays there (a counter never goes backwards) instead of overflowing.
pub fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) {
    let total = map.entry(key).or_default();
    *total = total.saturating_add(n);
}

fn trim<T>(window: &mut VecDeque<T>, keep: usize) {
    while window.len() > keep {
        window.pop_front();
    }
}

/// Ticks skipped without the lease: because another held it (`count`), or because it could
/// not be read or taken (`lease_failures`). Written by those ticks, which hold no state document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overlaps {
    pub count: u64,
    pub last_at_ms: Option<i64>,
    pub lease_failures: u64,
    pub last_lease_failure_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, started_at_ms: i64, coins: u64) -> CycleRecord {
        CycleRecord {
            started_at_ms,
            duration_ms: 5,
            outcome,
            points_written: BTreeMap::from([("coins".to_owned(), coins)]),
            points_replayed: 0,
            points_spooled: 0,
            points_quarantined: 0,
            points_evicted: 0,
            errors: vec![],
            points_dropped: 0,
            cache_hits: 0,
            lcw: GuardReport::default(),
            breaker: String::new(),
            errors_omitted: 0,
            records_skipped: BTreeMap::new(),
        }
    }

    #[test]
    fn history_totals_and_window() {
        let mut history = CycleHistory::default();
        for i in 0..(RECENT_CYCLES as i64 + 5) {
            history.record(record(
                if i % 2 == 0 {
                    Outcome::Success
                } else {
                    Outcome::Error
                },
                i,
                2,
            ));
        }
        assert_eq!(history.summaries.len(), RECENT_CYCLES);
        assert_eq!(history.summaries.front().unwrap().started_at_ms, 5);
        assert_eq!(history.recent.len(), DETAILED_CYCLES);
        assert_eq!(history.recent.front().unwrap().started_at_ms, 60);
        assert_eq!(history.cycles_by_outcome[&Outcome::Success], 33);
        assert_eq!(history.cycles_by_outcome[&Outcome::Error], 32);
        assert_eq!(history.points_written_by_type["coins"], 130);
        assert_eq!(history.last_success_at_ms, Some(64));
    }

    #[test]
    fn history_serialises_with_readable_keys() {
        let mut history = CycleHistory::default();
        history.record(record(Outcome::Partial, 1, 1));
        let json = serde_json::to_string(&history).unwrap();
        assert!(
            json.contains(r#""cycles_by_outcome":{"partial":1}"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<CycleHistory>(&json).unwrap(),
            history
        );
    }
}
