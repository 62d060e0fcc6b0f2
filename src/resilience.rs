//! Resilience policies as pure functions of (state, event, now): retry with capped exponential
//! backoff and full jitter, the circuit breaker, the token-bucket rate limiter, the credit budget.
//!
//! Owns the rules and their state types (serialisable, so the caller persists them in KV between
//! ticks). It must not perform I/O, read a clock or draw random numbers: time and randomness
//! come in as arguments, which makes every rule testable to the millisecond.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::remote::ErrorClass;

/// The least time an attempt must have left after its wait for the wait to be worth starting.
/// A retry or a rate-limit wait that would leave less is not started: the call fails fast.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_retries: u32,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// This class of error is not worth retrying.
    DoNotRetry,
    /// The retries are used up.
    Exhausted,
    /// The wait plus [`MIN_ATTEMPT`] does not fit in the time left: fail fast.
    NoTimeLeft,
}

impl RetryPolicy {
    /// The ceiling of the wait before retry number `retry` (0-based): min(cap, base × 2^retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Decides about retry number `retry` (0 for the first retry) after an error of `class`.
    /// `jitter` is a uniform draw in [0, 1); a `retry_after` from the server wins over backoff.
    pub fn decide(
        &self,
        retry: u32,
        class: ErrorClass,
        retry_after: Option<Duration>,
        jitter: f64,
        time_left: Duration,
    ) -> RetryDecision {
        if !matches!(class, ErrorClass::Transient | ErrorClass::RateLimited) {
            return RetryDecision::DoNotRetry;
        }
        if retry >= self.max_retries {
            return RetryDecision::Exhausted;
        }
        let wait =
            retry_after.unwrap_or_else(|| self.ceiling(retry).mul_f64(jitter.clamp(0.0, 1.0)));
        // `wait` may come from a remote header: the sum saturates instead of overflowing.
        if wait.saturating_add(MIN_ATTEMPT) > time_left {
            RetryDecision::NoTimeLeft
        } else {
            RetryDecision::RetryAfter(wait)
        }
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive transient failures that open the breaker.
    pub failure_threshold: u32,
    pub cool_down: Duration,
}

/// The breaker's state, persisted between ticks. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        since_ms: i64,
        until_ms: i64,
    },
    /// One probe call is in flight; its result closes or re-opens the breaker.
    HalfOpen {
        probe_started_ms: i64,
    },
}

impl Default for BreakerState {
    fn default() -> Self {
        Self::Closed {
            consecutive_failures: 0,
        }
    }
}

impl BreakerState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

/// Whether a call may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// This call is the half-open probe.
    Probe,
    Rejected,
}

/// A change of breaker state, for the log and the state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Transition {
    pub at_ms: i64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// How far ahead of a reader's clock a stored time may be and still be taken at its word: the
/// bound `clock::FUTURE_LIMIT_MS` sets (a module of this layer, so not imported).
pub const CLOCK_TOLERANCE_MS: i64 = 5 * 60 * 1000;

impl BreakerPolicy {
    /// Open and cooling down at `now_ms`. An end further ahead than a cool-down (plus
    /// [`CLOCK_TOLERANCE_MS`]) was stamped by a clock ahead or a corrupted
    /// document: it would keep every call out for as long as that clock was ahead, so its
    /// cool-down counts as over.
    pub fn turns_away(&self, state: BreakerState, now_ms: i64) -> bool {
        matches!(state, BreakerState::Open { until_ms, .. }
            if now_ms < until_ms && until_ms.saturating_sub(now_ms) <= self.credible_ahead_ms())
    }

    fn credible_ahead_ms(&self) -> i64 {
        self.cool_down_ms().saturating_add(CLOCK_TOLERANCE_MS)
    }

    /// Asks to make a call at `now_ms`.
    pub fn admit(
        &self,
        state: BreakerState,
        now_ms: i64,
    ) -> (BreakerState, Admission, Option<Transition>) {
        match state {
            BreakerState::Closed { .. } => (state, Admission::Allowed, None),
            BreakerState::Open { .. } if self.turns_away(state, now_ms) => {
                (state, Admission::Rejected, None)
            }
            BreakerState::Open { .. } => {
                let next = BreakerState::HalfOpen {
                    probe_started_ms: now_ms,
                };
                let transition = transition(now_ms, state, next, "cool-down over: probing");
                (next, Admission::Probe, Some(transition))
            }
            // A probe that never reported (its tick died) is given up after a cool-down.
            // So is a probe started further ahead of this clock than that.
            BreakerState::HalfOpen { probe_started_ms }
                if now_ms.saturating_sub(probe_started_ms) >= self.cool_down_ms()
                    || probe_started_ms.saturating_sub(now_ms) > self.credible_ahead_ms() =>
            {
                let next = BreakerState::HalfOpen {
                    probe_started_ms: now_ms,
                };
                (next, Admission::Probe, None)
            }
            BreakerState::HalfOpen { .. } => (state, Admission::Rejected, None),
        }
    }

    /// Reports a call that got an answer the API meant (any 2xx, or a 4xx that is not auth).
    /// Only the probe's answer closes the breaker: a straggler admitted before it opened, and
    /// answering after, leaves an open breaker open.
    pub fn on_success(
        &self,
        state: BreakerState,
        now_ms: i64,
    ) -> (BreakerState, Option<Transition>) {
        match state {
            BreakerState::Closed { .. } => (BreakerState::default(), None),
            BreakerState::Open { .. } => (state, None),
            BreakerState::HalfOpen { .. } => {
                let next = BreakerState::default();
                (
                    next,
                    Some(transition(now_ms, state, next, "probe succeeded")),
                )
            }
        }
    }

    /// Reports a failed call (after its retries). Transient failures and rate limiting count
    /// towards opening; an auth failure opens at once (every further call would fail the same
    /// way); other classes count as successes for the breaker's purpose — the API answered.
    pub fn on_failure(
        &self,
        state: BreakerState,
        class: ErrorClass,
        now_ms: i64,
    ) -> (BreakerState, Option<Transition>) {
        let open = |reason: String| {
            let next = BreakerState::Open {
                since_ms: now_ms,
                until_ms: now_ms.saturating_add(self.cool_down_ms()),
            };
            (next, Some(transition(now_ms, state, next, &reason)))
        };
        match (class, state) {
            (ErrorClass::Auth, BreakerState::Open { .. }) => (state, None),
            (ErrorClass::Auth, _) => open("authentication failed".into()),
            (
                ErrorClass::Transient | ErrorClass::RateLimited,
                BreakerState::Closed {
                    consecutive_failures,
                },
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.failure_threshold {
                    open(format!("{failures} consecutive transient failures"))
                } else {
                    (
                        BreakerState::Closed {
                            consecutive_failures: failures,
                        },
                        None,
                    )
                }
            }
            (ErrorClass::Transient | ErrorClass::RateLimited, BreakerState::HalfOpen { .. }) => {
                open("probe failed".into())
            }
            (ErrorClass::Transient | ErrorClass::RateLimited, BreakerState::Open { .. }) => {
                (state, None)
            }
            (ErrorClass::Permanent | ErrorClass::Malformed, _) => self.on_success(state, now_ms),
            (ErrorClass::NotSent, _) => (state, None),
        }
    }

    fn cool_down_ms(&self) -> i64 {
        i64::try_from(self.cool_down.as_millis()).unwrap_or(i64::MAX)
    }
}

fn transition(at_ms: i64, from: BreakerState, to: BreakerState, reason: &str) -> Transition {
    Transition {
        at_ms,
        from: from.name().to_owned(),
        to: to.name().to_owned(),
        reason: reason.to_owned(),
    }
}

/// Token bucket: `per_minute` tokens a minute, holding at most `capacity`. Tokens may go below
/// zero: a negative balance is a queue of reservations, so concurrent callers wait their turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub capacity: f64,
}

/// The bucket's balance, persisted between ticks.
#[derive(Debug, Clone, Default, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: i64,
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reservation {
    /// A token is reserved: go after this wait (zero: at once).
    Granted { wait: Duration },
    /// The wait would not leave [`MIN_ATTEMPT`] before the deadline: no token taken.
    Refused { wait: Duration },
}

impl RateLimit {
    /// `requests_per_minute` with a burst of ten seconds' worth (at least one): a tick's handful
    /// of concurrent calls go out together, and no minute sees more than 7/6 of the budget.
    pub fn per_minute(requests_per_minute: u32) -> Self {
        Self {
            per_minute: requests_per_minute,
            capacity: (f64::from(requests_per_minute) / 6.0).max(1.0),
        }
    }

    fn refill(&self, bucket: Option<Bucket>, now_ms: i64) -> f64 {
        match bucket {
            None => self.capacity,
            Some(b) => {
                let elapsed_ms = now_ms.saturating_sub(b.updated_ms).max(0) as f64;
                (b.tokens + elapsed_ms * f64::from(self.per_minute) / 60_000.0).min(self.capacity)
            }
        }
    }

    /// Reserves one token at `now_ms` if the wait for it fits in `time_left`.
    pub fn reserve(
        &self,
        bucket: Option<Bucket>,
        now_ms: i64,
        time_left: Duration,
    ) -> (Option<Bucket>, Reservation) {
        let tokens = self.refill(bucket, now_ms);
        let wait = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            // A stored balance is data: a corrupt one (NaN, -1e300) must not panic the tick.
            Duration::try_from_secs_f64((1.0 - tokens) * 60.0 / f64::from(self.per_minute))
                .unwrap_or(Duration::MAX)
        };
        if !wait.is_zero() && wait.saturating_add(MIN_ATTEMPT) > time_left {
            return (bucket, Reservation::Refused { wait });
        }
        let next = Bucket {
            tokens: tokens - 1.0,
            updated_ms: now_ms,
        };
        (Some(next), Reservation::Granted { wait })
    }
}

/// What LCW last said about the day's credits.
#[derive(Debug, Clone, Default, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credits {
    pub remaining: f64,
    pub limit: f64,
    pub fetched_at_ms: i64,
    /// LCW calls made since `remaining` was read (each costs a credit): `/credits` is read every
    /// few minutes, and the calls of the ticks between must count against the reserve.
    pub spent_since: u64,
}

impl Credits {
    /// The credits left now, as far as we know: the last count less the calls made since.
    pub fn estimated_remaining(&self) -> f64 {
        self.remaining - self.spent_since as f64
    }

    /// True when the credits left now are at or below `reserve_percent` of the daily limit.
    pub fn below_reserve(&self, reserve_percent: u32) -> bool {
        self.estimated_remaining() <= self.reserve(reserve_percent)
    }

    /// The credits kept back: `reserve_percent` of the daily limit.
    pub fn reserve(&self, reserve_percent: u32) -> f64 {
        self.limit * f64::from(reserve_percent) / 100.0
    }

    /// Counts one call made since the count was read.
    pub fn spend(&mut self) {
        self.spent_since = self.spent_since.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: 2 * S,
            cap: 8 * S,
            max_retries: 3,
        }
    }

    #[test]
    fn backoff_ceilings_are_2_4_8_capped() {
        let p = policy();
        assert_eq!(
            [
                p.ceiling(0),
                p.ceiling(1),
                p.ceiling(2),
                p.ceiling(3),
                p.ceiling(40)
            ],
            [2 * S, 4 * S, 8 * S, 8 * S, 8 * S]
        );
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        let p = policy();
        let left = 60 * S;
        assert_eq!(
            p.decide(0, ErrorClass::Transient, None, 0.5, left),
            RetryDecision::RetryAfter(S)
        );
        assert_eq!(
            p.decide(1, ErrorClass::Transient, None, 0.25, left),
            RetryDecision::RetryAfter(S)
        );
        assert_eq!(
            p.decide(2, ErrorClass::RateLimited, None, 0.0, left),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            p.decide(3, ErrorClass::Transient, None, 0.5, left),
            RetryDecision::Exhausted
        );
    }

    #[test]
    fn only_transient_and_rate_limited_are_retried() {
        let p = policy();
        for class in [
            ErrorClass::Auth,
            ErrorClass::Permanent,
            ErrorClass::Malformed,
        ] {
            assert_eq!(
                p.decide(0, class, None, 0.5, 60 * S),
                RetryDecision::DoNotRetry
            );
        }
    }

    #[test]
    fn retry_after_wins_and_the_deadline_is_respected() {
        let p = policy();
        assert_eq!(
            p.decide(0, ErrorClass::RateLimited, Some(20 * S), 0.1, 60 * S),
            RetryDecision::RetryAfter(20 * S)
        );
        assert_eq!(
            p.decide(0, ErrorClass::RateLimited, Some(20 * S), 0.1, 20 * S),
            RetryDecision::NoTimeLeft
        );
        assert_eq!(
            p.decide(2, ErrorClass::Transient, None, 0.99, 8 * S),
            RetryDecision::NoTimeLeft
        );
    }

    fn breaker() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 5,
            cool_down: 60 * S,
        }
    }

    #[test]
    fn breaker_opens_after_exactly_the_threshold() {
        let b = breaker();
        let mut state = BreakerState::default();
        for i in 1..=4 {
            let (next, t) = b.on_failure(state, ErrorClass::Transient, i);
            assert_eq!(
                next,
                BreakerState::Closed {
                    consecutive_failures: i as u32
                }
            );
            assert!(t.is_none());
            state = next;
        }
        let (state, t) = b.on_failure(state, ErrorClass::Transient, 5);
        assert_eq!(
            state,
            BreakerState::Open {
                since_ms: 5,
                until_ms: 60_005
            }
        );
        assert_eq!(t.unwrap().reason, "5 consecutive transient failures");
    }

    #[test]
    fn a_success_or_an_answered_error_resets_the_count() {
        let b = breaker();
        let state = BreakerState::Closed {
            consecutive_failures: 4,
        };
        for class in [ErrorClass::Permanent, ErrorClass::Malformed] {
            assert_eq!(b.on_failure(state, class, 1).0, BreakerState::default());
        }
        assert_eq!(b.on_success(state, 1).0, BreakerState::default());
    }

    #[test]
    fn a_call_still_rate_limited_after_its_retries_counts_as_failed() {
        let b = breaker();
        let state = BreakerState::Closed {
            consecutive_failures: 4,
        };
        let (next, _) = b.on_failure(state, ErrorClass::RateLimited, 1);
        assert!(matches!(next, BreakerState::Open { .. }), "{next:?}");
    }

    #[test]
    fn a_straggler_success_does_not_close_an_open_breaker() {
        let open = BreakerState::Open {
            since_ms: 0,
            until_ms: 60_000,
        };
        assert_eq!(breaker().on_success(open, 10), (open, None));
        assert_eq!(
            breaker().on_failure(open, ErrorClass::Permanent, 10),
            (open, None)
        );
    }

    #[test]
    fn auth_failure_opens_at_once() {
        let (state, t) = breaker().on_failure(BreakerState::default(), ErrorClass::Auth, 10);
        assert_eq!(
            state,
            BreakerState::Open {
                since_ms: 10,
                until_ms: 60_010
            }
        );
        assert_eq!(t.unwrap().reason, "authentication failed");
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker();
        let open = BreakerState::Open {
            since_ms: 0,
            until_ms: 60_000,
        };
        assert_eq!(b.admit(open, 59_999).1, Admission::Rejected);
        let (probing, admission, t) = b.admit(open, 60_000);
        assert_eq!(admission, Admission::Probe);
        assert_eq!(t.unwrap().to, "half_open");
        assert_eq!(
            b.admit(probing, 60_001).1,
            Admission::Rejected,
            "only one probe"
        );
        assert_eq!(
            b.admit(probing, 120_000).1,
            Admission::Probe,
            "a lost probe is replaced after a cool-down"
        );

        let (closed, t) = b.on_success(probing, 60_500);
        assert_eq!(closed, BreakerState::default());
        assert_eq!(t.unwrap().reason, "probe succeeded");
        let (reopened, t) = b.on_failure(probing, ErrorClass::Transient, 60_500);
        assert_eq!(
            reopened,
            BreakerState::Open {
                since_ms: 60_500,
                until_ms: 120_500
            }
        );
        assert_eq!(t.unwrap().reason, "probe failed");
    }

    #[test]
    fn the_bucket_spaces_calls_and_refuses_waits_past_the_deadline() {
        let limit = RateLimit::per_minute(6); // one token every 10 s, capacity 1
        let left = 60 * S;
        let (bucket, r) = limit.reserve(None, 0, left);
        assert_eq!(
            r,
            Reservation::Granted {
                wait: Duration::ZERO
            }
        );
        let (bucket, r) = limit.reserve(bucket, 0, left);
        assert_eq!(r, Reservation::Granted { wait: 10 * S });
        let (bucket, r) = limit.reserve(bucket, 0, left);
        assert_eq!(r, Reservation::Granted { wait: 20 * S });
        let (unchanged, r) = limit.reserve(bucket, 0, 25 * S);
        assert_eq!(r, Reservation::Refused { wait: 30 * S });
        assert_eq!(unchanged, bucket);
        // After a long pause the bucket is full again, but never above capacity.
        let (_, r) = limit.reserve(bucket, 600_000, left);
        assert_eq!(
            r,
            Reservation::Granted {
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn the_default_bucket_lets_a_tick_burst() {
        let limit = RateLimit::per_minute(60);
        assert_eq!(limit.capacity, 10.0);
        let mut bucket = None;
        for _ in 0..10 {
            let (next, r) = limit.reserve(bucket, 0, 45 * S);
            assert_eq!(
                r,
                Reservation::Granted {
                    wait: Duration::ZERO
                }
            );
            bucket = next;
        }
        assert_eq!(
            limit.reserve(bucket, 0, 45 * S).1,
            Reservation::Granted { wait: S }
        );
    }

    #[test]
    fn credit_reserve() {
        let credits = Credits {
            remaining: 500.0,
            limit: 10_000.0,
            fetched_at_ms: 0,
            spent_since: 0,
        };
        assert!(credits.below_reserve(5));
        assert!(!credits.below_reserve(4));
    }
}
