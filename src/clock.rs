//! How far the app trusts the host clock where one tick's word must not decide: what retention
//! may delete and which rows count as the newest.
//!
//! A host clock can jump (a VM restored from a snapshot, NTP stepping a drifted clock, a
//! container started with a wrong clock). A tick's own reading is checked against two other
//! clocks: LCW's (the `Date` header of its answers) and the previous tick's reading, kept in the
//! state document. Retention cuts at the earliest of the three, so no single clock can delete
//! rows inside the retention window; a reader takes rows later than its own clock allows as from
//! a clock ahead, never as the newest. Ticks whose clock and LCW's disagree by more than
//! [`SKEW_LIMIT_MS`] are counted and said in `/status`.
//!
//! It owns the bounds and the [`ClockRecord`]. It must not read a clock, call a remote or touch a
//! store: callers pass their readings in. Points keep the host's stamp: the data is never
//! rewritten on a clock's word either.

use serde::{Deserialize, Serialize};

/// How far the host clock and LCW's may disagree before the tick's clock is disputed: well over
/// the whole seconds of a `Date` header plus an answer's travel, well under a jump that matters.
pub const SKEW_LIMIT_MS: i64 = 5 * 60 * 1000;

/// How far ahead of a reader's clock a row may be stamped and still count as the newest (the
/// collector's and the API's clocks are one machine's, or close).
pub const FUTURE_LIMIT_MS: i64 = 5 * 60 * 1000;

/// What the state document keeps of the clocks, for the next tick and for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClockRecord {
    /// The host clock at the last tick that recorded one.
    pub last_tick_ms: Option<i64>,
    /// Host clock minus LCW's, at the last tick that had an answer with a `Date`.
    pub skew_ms: Option<i64>,
    /// When that was (host clock).
    pub skew_at_ms: Option<i64>,
    /// Ticks whose clock and LCW's disagreed by more than [`SKEW_LIMIT_MS`].
    pub disputed_ticks: u64,
    pub last_disputed_at_ms: Option<i64>,
    /// Ticks whose retention cut more than [`SKEW_LIMIT_MS`] earlier than their own clock said,
    /// because another clock was behind it.
    pub retention_held: u64,
}

impl ClockRecord {
    /// Records a tick's reading of the host clock and, when an answer carried one, LCW's clock
    /// (`remote_ms`, read at about `host_ms`). Returns the time retention may cut at: the
    /// earliest of this reading, LCW's and the previous tick's.
    pub fn observe(&mut self, host_ms: i64, remote_ms: Option<i64>) -> i64 {
        let previous = self.last_tick_ms;
        self.last_tick_ms = Some(host_ms);
        if let Some(remote_ms) = remote_ms {
            let skew = host_ms.saturating_sub(remote_ms);
            self.skew_ms = Some(skew);
            self.skew_at_ms = Some(host_ms);
            if skew.saturating_abs() > SKEW_LIMIT_MS {
                self.disputed_ticks = self.disputed_ticks.saturating_add(1);
                self.last_disputed_at_ms = Some(host_ms);
            }
        }
        let earliest = [Some(host_ms), remote_ms, previous]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(host_ms);
        if host_ms.saturating_sub(earliest) > SKEW_LIMIT_MS {
            self.retention_held = self.retention_held.saturating_add(1);
        }
        earliest
    }

    /// The last tick with a witness found its clock and LCW's apart by more than the limit.
    pub fn disputed(&self) -> bool {
        self.skew_ms
            .is_some_and(|skew| skew.saturating_abs() > SKEW_LIMIT_MS)
    }
}

/// The latest time a reader whose clock says `now_ms` takes a row's stamp as credible; a later
/// row was stamped by a clock ahead and must not hide the fresh ones.
pub fn newest_credible(now_ms: i64) -> i64 {
    now_ms.saturating_add(FUTURE_LIMIT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    #[test]
    fn retention_cuts_at_the_earliest_of_the_three_clocks() {
        let mut record = ClockRecord::default();
        let t = 1_800_000_000_000;
        assert_eq!(record.observe(t, Some(t - 1_000)), t - 1_000);
        // The host jumps a month ahead; LCW's clock holds retention where it was.
        // The previous tick's reading is the earliest of the three here.
        assert_eq!(record.observe(t + 30 * DAY, Some(t + MIN)), t);
        assert!(record.disputed());
        assert_eq!((record.disputed_ticks, record.retention_held), (1, 1));
        // No witness: the previous tick's reading (a month ahead) and this one agree.
        assert_eq!(record.observe(t + 30 * DAY + MIN, None), t + 30 * DAY);
        assert!(record.disputed(), "the last witness still says so");
    }

    #[test]
    fn a_first_tick_without_a_witness_trusts_its_clock() {
        let mut record = ClockRecord::default();
        assert_eq!(record.observe(5 * DAY, None), 5 * DAY);
        assert!(!record.disputed());
        assert_eq!(record.retention_held, 0);
    }

    #[test]
    fn extreme_readings_saturate() {
        let mut record = ClockRecord::default();
        assert_eq!(record.observe(i64::MAX, Some(i64::MIN)), i64::MIN);
        assert_eq!(record.skew_ms, Some(i64::MAX));
        assert!(record.disputed());
        assert_eq!(newest_credible(i64::MAX), i64::MAX);
    }
}
