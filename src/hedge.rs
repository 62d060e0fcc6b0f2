//! Hedged requests as pure rules: after how long an unanswered LCW attempt gets a second copy
//! (the p93 of recently observed first-attempt latencies, learnt across ticks), and whether that
//! copy may go out now.
//!
//! Owns the latency history (a bounded part of the persisted resilience state, read leniently:
//! whatever an older release or a hostile store left there is dropped, never a panic) and the
//! gates of a hedge. It must not perform I/O, read a clock or hold a request: the guard races the
//! copies and passes in everything a rule needs.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::HedgeAfter;

/// Latency samples kept (about 16 ticks of calls at the default settings).
pub const SAMPLES_KEPT: usize = 64;
/// Samples needed before the learnt quantile replaces [`DEFAULT_DELAY`].
pub const MIN_SAMPLES: usize = 20;
/// The quantile of observed latencies after which a hedge goes out: 1 − this is the share of
/// first attempts that get a second copy, the extra calls the plan counts. Chosen by
/// `cargo bench --bench simulate` (docs/PERFORMANCE.md): at the p90 the hedges of ordinary ticks
/// spent the budget below as fast as calls paid it back, and a tick in an LCW incident — the
/// tail hedging is for — found none left; the p93 leaves it a margin.
pub const QUANTILE: f64 = 0.93;
/// The delay until enough samples exist.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(2);
/// The least learnt delay: below it a hedge would double fast calls for nothing.
pub const MIN_DELAY: Duration = Duration::from_millis(100);
/// A sample above this (ten minutes, the largest timeout) is not a latency.
const MAX_SAMPLE_MS: u64 = 600_000;
/// Calls that pay for one hedge. Each call pays one back, a hedge goes only while what is owed
/// stays within [`HEDGE_BURST`] hedges: n calls in a row send at most n/11 + 10 hedges, at most a
/// tenth of them from 1 100 calls on (a day has 5 472 at the defaults). The learnt delay alone
/// does not bound the hedged share: latencies above the largest delay, hedges that always win (a
/// won hedge teaches only "delay + the hedge's time") or a short fixed delay hedge every call.
pub const CALLS_PER_HEDGE: u32 = 11;
/// Hedges that may go out before calls have paid for more: enough for the calls of two ticks in
/// an LCW incident, where every call is slower than the delay.
pub const HEDGE_BURST: u32 = 10;
/// The most that may be owed, in calls.
const MAX_DEBT: u32 = HEDGE_BURST * CALLS_PER_HEDGE;

/// What the hedge rules learnt, persisted between ticks with the rest of the resilience state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HedgeState {
    /// First-attempt latencies in milliseconds, newest last, at most [`SAMPLES_KEPT`].
    pub latencies_ms: VecDeque<u32>,
    /// Calls owed to the hedge budget: a hedge adds [`CALLS_PER_HEDGE`], a call pays one back; a
    /// hedge goes only while the debt stays within [`HEDGE_BURST`] hedges.
    pub hedge_debt: u32,
}

impl<'de> Deserialize<'de> for HedgeState {
    /// Keeps the plausible samples of whatever is stored: a wrong shape is an empty history, a
    /// sample that is not a whole number of milliseconds in range is dropped, at most
    /// [`SAMPLES_KEPT`] (the newest) are kept; the debt as below.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let mut latencies_ms: VecDeque<u32> = value
            .get("latencies_ms")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .filter(|ms| (1..=MAX_SAMPLE_MS).contains(ms))
            .map(|ms| ms as u32)
            .collect();
        latencies_ms.drain(..latencies_ms.len().saturating_sub(SAMPLES_KEPT));
        // Absent (an older release): no debt. Not a count in range: the whole budget spent
        // (a corrupt value must not free it).
        let hedge_debt = value.get("hedge_debt").map_or(0, |debt| {
            debt.as_u64()
                .filter(|&d| d <= u64::from(MAX_DEBT))
                .map_or(MAX_DEBT, |d| d as u32)
        });
        Ok(Self {
            latencies_ms,
            hedge_debt,
        })
    }
}

impl HedgeState {
    /// Adds one observed latency, dropping the oldest beyond [`SAMPLES_KEPT`].
    pub fn observe(&mut self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_SAMPLE_MS);
        self.latencies_ms.push_back(ms as u32);
        if self.latencies_ms.len() > SAMPLES_KEPT {
            self.latencies_ms.pop_front();
        }
    }

    /// A call begins: it pays back one call of the hedge debt.
    pub fn call_started(&mut self) {
        self.hedge_debt = self.hedge_debt.saturating_sub(1);
    }

    /// True when a hedge would keep the debt within [`HEDGE_BURST`] hedges.
    pub fn within_budget(&self) -> bool {
        self.hedge_debt + CALLS_PER_HEDGE <= MAX_DEBT
    }

    /// A hedge went out.
    pub fn hedge_sent(&mut self) {
        self.hedge_debt = (self.hedge_debt + CALLS_PER_HEDGE).min(MAX_DEBT);
    }

    /// The [`QUANTILE`] of the samples, once there are [`MIN_SAMPLES`]: the sample of rank
    /// ⌈q·(n + 1)⌉. A next latency exceeds the k-th smallest of n with probability
    /// (n + 1 − k)/(n + 1), so this rank keeps the hedged share at or below 1 − q (nearest rank,
    /// ⌈q·n⌉, would hedge 7 in 65 at n = 64: 10.8 %).
    pub fn quantile(&self) -> Option<Duration> {
        if self.latencies_ms.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<u32> = self.latencies_ms.iter().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = ((QUANTILE * (n + 1) as f64).ceil() as usize).clamp(1, n);
        Some(Duration::from_millis(u64::from(sorted[rank - 1])))
    }
}

/// When a hedge goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgePolicy {
    pub after: HedgeAfter,
    /// The largest learnt delay: a hedge later than this (half the first-byte timeout) would
    /// come too late to save the attempt.
    pub max_delay: Duration,
}

/// Why a due hedge did not go out (the key it is counted under).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The breaker is not closed: a probe goes alone, an open breaker sends nothing more.
    Breaker,
    /// The day's credits are at or below the reserve.
    CreditReserve,
    /// The rate limiter has no token without a wait.
    RateLimit,
    /// LCW answered 429 during this tick: a second copy would add load when it pushes back.
    Pushback,
    /// The hedge budget is spent: recent calls have not yet paid for another hedge.
    Budget,
    /// Too little time is left before the deadline for a copy to answer.
    Deadline,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Breaker => "breaker",
            Self::CreditReserve => "credit_reserve",
            Self::RateLimit => "rate_limit",
            Self::Pushback => "pushback",
            Self::Budget => "budget",
            Self::Deadline => "deadline",
        }
    }
}

/// What the guard knows when a hedge is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub breaker_closed: bool,
    /// LCW answered 429 during this tick.
    pub pushed_back: bool,
    /// The day's credits, less this tick's calls, are at or below the reserve.
    pub below_credit_reserve: bool,
    pub token_free: bool,
    /// The hedge budget of the last calls is not spent ([`HedgeState::within_budget`]).
    pub within_budget: bool,
    pub time_left: Duration,
    /// The least time an attempt needs (`resilience::MIN_ATTEMPT`).
    pub min_attempt: Duration,
}

impl HedgePolicy {
    pub fn new(after: HedgeAfter, first_byte_timeout: Duration) -> Self {
        Self {
            after,
            max_delay: (first_byte_timeout / 2).max(MIN_DELAY),
        }
    }

    /// How long an attempt waits for its answer before a second copy; `None`: never.
    pub fn delay(&self, state: &HedgeState) -> Option<Duration> {
        match self.after {
            HedgeAfter::Off => None,
            HedgeAfter::Fixed(ms) => Some(Duration::from_millis(ms)),
            HedgeAfter::Auto => Some(
                state
                    .quantile()
                    .unwrap_or(DEFAULT_DELAY)
                    .clamp(MIN_DELAY, self.max_delay),
            ),
        }
    }

    /// Whether the hedge due after `delay` may go out. A copy needs the time a slow answer takes
    /// (the delay itself), and never less than an attempt's minimum.
    pub fn admit(&self, gate: Gate, delay: Duration) -> Result<(), Skip> {
        if !gate.breaker_closed {
            Err(Skip::Breaker)
        } else if gate.pushed_back {
            Err(Skip::Pushback)
        } else if gate.below_credit_reserve {
            Err(Skip::CreditReserve)
        } else if !gate.within_budget {
            Err(Skip::Budget)
        } else if gate.time_left < delay.max(gate.min_attempt) {
            Err(Skip::Deadline)
        } else if !gate.token_free {
            Err(Skip::RateLimit)
        } else {
            Ok(())
        }
    }

    /// The share of calls expected to get a second copy, for the daily plan: 1 − [`QUANTILE`]
    /// when learnt; with a fixed delay, whose share depends on latencies unknown in advance, the
    /// most the hedge budget lets through (one in [`CALLS_PER_HEDGE`]); none when off.
    pub fn expected_share(after: HedgeAfter) -> f64 {
        match after {
            HedgeAfter::Off => 0.0,
            HedgeAfter::Auto => 1.0 - QUANTILE,
            HedgeAfter::Fixed(_) => 1.0 / f64::from(CALLS_PER_HEDGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn auto() -> HedgePolicy {
        HedgePolicy::new(HedgeAfter::Auto, 10_000 * MS)
    }

    fn learnt(samples: impl IntoIterator<Item = u64>) -> HedgeState {
        let mut state = HedgeState::default();
        for ms in samples {
            state.observe(Duration::from_millis(ms));
        }
        state
    }

    #[test]
    fn the_default_delay_holds_until_enough_samples() {
        let few = learnt((1..MIN_SAMPLES as u64).map(|i| i * 10));
        assert_eq!(auto().delay(&few), Some(DEFAULT_DELAY));
        let enough = learnt((1..=MIN_SAMPLES as u64).map(|i| i * 10));
        // 20 samples 10..=200: the ⌈0.93 × 21⌉ = 20th is the p93.
        assert_eq!(auto().delay(&enough), Some(200 * MS));
    }

    #[test]
    fn the_delay_is_the_p93_of_the_newest_samples() {
        // 1..=100 ms, then 64 more: only the newest 64 count.
        let state = learnt((1..=100).chain((1..=64).map(|i| i * 50)));
        assert_eq!(state.latencies_ms.len(), SAMPLES_KEPT);
        // ⌈0.93 × 65⌉ = 61st of 50..=3200.
        assert_eq!(auto().delay(&state), Some(3_050 * MS));
    }

    #[test]
    fn the_learnt_delay_is_clamped() {
        let fast = learnt(std::iter::repeat_n(5, 30));
        assert_eq!(auto().delay(&fast), Some(MIN_DELAY));
        let slow = learnt(std::iter::repeat_n(9_000, 30));
        assert_eq!(auto().delay(&slow), Some(5_000 * MS));
        let huge = learnt([u64::MAX / 1000; 30]);
        assert_eq!(huge.latencies_ms[0], MAX_SAMPLE_MS as u32);
    }

    #[test]
    fn off_never_hedges_and_a_fixed_delay_ignores_the_samples() {
        let state = learnt(std::iter::repeat_n(300, 30));
        let off = HedgePolicy::new(HedgeAfter::Off, 10_000 * MS);
        assert_eq!(off.delay(&state), None);
        let fixed = HedgePolicy::new(HedgeAfter::Fixed(1_234), 10_000 * MS);
        assert_eq!(fixed.delay(&state), Some(1_234 * MS));
        assert_eq!(HedgePolicy::expected_share(HedgeAfter::Off), 0.0);
        assert!(HedgePolicy::expected_share(HedgeAfter::Auto) <= 0.1 + 1e-9);
    }

    #[test]
    fn every_gate_can_refuse() {
        let open = Gate {
            breaker_closed: true,
            pushed_back: false,
            below_credit_reserve: false,
            token_free: true,
            within_budget: true,
            time_left: 10_000 * MS,
            min_attempt: 1_000 * MS,
        };
        let p = auto();
        let delay = 2_000 * MS;
        assert_eq!(p.admit(open, delay), Ok(()));
        let refused = |gate: Gate| p.admit(gate, delay).unwrap_err();
        assert_eq!(
            refused(Gate {
                breaker_closed: false,
                ..open
            }),
            Skip::Breaker
        );
        assert_eq!(
            refused(Gate {
                pushed_back: true,
                ..open
            }),
            Skip::Pushback
        );
        assert_eq!(
            refused(Gate {
                below_credit_reserve: true,
                ..open
            }),
            Skip::CreditReserve
        );
        assert_eq!(
            refused(Gate {
                token_free: false,
                ..open
            }),
            Skip::RateLimit
        );
        assert_eq!(
            refused(Gate {
                within_budget: false,
                ..open
            }),
            Skip::Budget
        );
        assert_eq!(
            refused(Gate {
                time_left: delay - MS,
                ..open
            }),
            Skip::Deadline
        );
        // A short delay still needs an attempt's minimum.
        assert_eq!(
            p.admit(
                Gate {
                    time_left: 999 * MS,
                    ..open
                },
                100 * MS
            ),
            Err(Skip::Deadline)
        );
    }

    #[test]
    fn a_corrupt_history_is_read_as_what_is_plausible_in_it() {
        let read = |json: &str| serde_json::from_str::<HedgeState>(json).unwrap();
        assert_eq!(read("null"), HedgeState::default());
        assert_eq!(read(r#""abc""#), HedgeState::default());
        assert_eq!(read(r#"{"latencies_ms": {"a": 1}}"#), HedgeState::default());
        assert_eq!(
            read(r#"{"latencies_ms": [5, -1, 0, 1e308, "7", null, 2.5, 600001, 600000, [1]]}"#)
                .latencies_ms,
            [5, 600_000]
        );
        let many: Vec<u64> = (1..=10_000).collect();
        let json = serde_json::json!({ "latencies_ms": many }).to_string();
        let state = read(&json);
        assert_eq!(state.latencies_ms.len(), SAMPLES_KEPT);
        assert_eq!(state.latencies_ms.back(), Some(&10_000));
        // What it writes it reads back.
        let again = read(&serde_json::to_string(&state).unwrap());
        assert_eq!(again, state);
    }

    #[test]
    fn any_run_of_calls_sends_at_most_its_budget_of_hedges() {
        let mut state = HedgeState::default();
        let mut sent = Vec::new();
        for _ in 0..6_000 {
            state.call_started();
            // Every call would hedge, some twice (a retry's hedge).
            let mut n = 0;
            while n < 2 && state.within_budget() {
                state.hedge_sent();
                n += 1;
            }
            sent.push(n);
        }
        for run in [1, 10, 100, 550, 1_100, 2_000, 5_472] {
            for window in sent.windows(run) {
                let hedges = window.iter().sum::<u32>();
                assert!(
                    hedges <= run as u32 / CALLS_PER_HEDGE + HEDGE_BURST,
                    "{run}"
                );
                if run >= 1_100 {
                    assert!(hedges * 10 <= run as u32, "{hedges} in {run}");
                }
            }
        }
        // A corrupt debt never frees the budget; an absent one (an older release) is none.
        let read = |json: &str| serde_json::from_str::<HedgeState>(json).unwrap();
        for corrupt in [
            "-1",
            "\"x\"",
            "1e9",
            "null",
            "[]",
            "111",
            "18446744073709551615",
        ] {
            let state = read(&format!(r#"{{"hedge_debt": {corrupt}}}"#));
            assert_eq!(state.hedge_debt, MAX_DEBT, "{corrupt}");
            assert!(!state.within_budget());
        }
        // MAX_DEBT is 110: a debt of 99 leaves room for one more hedge, 100 does not.
        assert_eq!(read(r#"{"hedge_debt": 99}"#).hedge_debt, 99);
        assert!(read(r#"{"hedge_debt": 99}"#).within_budget());
        assert!(!read(r#"{"hedge_debt": 100}"#).within_budget());
        assert_eq!(read("{}").hedge_debt, 0);
        assert_eq!(read(&serde_json::to_string(&state).unwrap()), state);
    }
}
