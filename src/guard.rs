//! The path of one LCW call through the resilience policies: circuit breaker, rate limiter,
//! deadline, retries with jitter, hedged requests — and the record of every attempt.
//!
//! Owns the in-tick resilience state that concurrent calls share (loaded from KV by the cycle,
//! handed back to it for saving) and applies the pure rules of `resilience` to it. It must not
//! build requests or parse answers (that is `lcw`), and it never sleeps except for a wait a rule
//! asked for, through the host.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::future::{Either, select};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::hedge::{Gate, HedgePolicy, HedgeState};
use crate::host::{Host, Level, Timeouts};
use crate::lcw::{Endpoint, LcwError, NotSentReason};
use crate::remote::ErrorClass;
use crate::resilience::{
    Admission, BreakerPolicy, BreakerState, Bucket, Credits, MIN_ATTEMPT, RateLimit, Reservation,
    RetryDecision, RetryPolicy, Transition,
};

/// How many breaker transitions the state document keeps.
pub const TRANSITIONS_KEPT: usize = 20;

/// Resilience state that outlives a tick (a part of the collector's state document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResilienceState {
    pub breaker: BreakerState,
    pub bucket: Option<Bucket>,
    pub credits: Option<Credits>,
    pub status: Option<StatusCheck>,
    /// Newest last.
    pub transitions: VecDeque<Transition>,
    /// What hedged requests learnt: recent first-attempt latencies.
    pub hedge: HedgeState,
}

/// The last `/status` check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusCheck {
    pub checked_at_ms: i64,
    pub reachable: bool,
    pub error: Option<String>,
}

/// One HTTP attempt, for telemetry: which endpoint, how it ended, how long it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    pub endpoint: String,
    /// The HTTP status, or `timeout`, `connect_error`, `malformed`…
    pub status: String,
    pub duration_ms: u64,
    /// The second copy of an attempt (a hedge); its status is `200` when its answer won.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hedge: bool,
}

/// The status of a copy dropped because the other copy of its attempt answered first.
pub const DROPPED: &str = "hedge_dropped";

/// What the guard did during one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardReport {
    pub attempts: Vec<Attempt>,
    /// Calls not sent (or not retried), by reason (`breaker_open`, `rate_limit`, `deadline`).
    pub not_sent: BTreeMap<String, u64>,
    pub retries: u64,
    /// Total time spent waiting for the rate limiter and for backoff.
    pub waited_ms: u64,
    /// Second copies sent of attempts still unanswered after the hedge delay.
    pub hedges: u64,
    /// Of those, the ones whose answer was used.
    pub hedges_won: u64,
    /// Hedges due but not sent, by reason (`breaker`, `pushback`, `credit_reserve`, `budget`,
    /// `rate_limit`, `deadline`).
    pub hedges_skipped: BTreeMap<String, u64>,
}

/// Runs LCW calls for one tick under the policies of `settings`, until `deadline` (monotonic).
pub struct Guard<'a, H> {
    host: &'a H,
    retry: RetryPolicy,
    breaker: BreakerPolicy,
    limit: RateLimit,
    hedge: HedgePolicy,
    credit_reserve_percent: u32,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    response_timeout: Duration,
    deadline: Duration,
    state: RefCell<ResilienceState>,
    report: RefCell<GuardReport>,
}

impl<'a, H: Host> Guard<'a, H> {
    pub fn new(
        host: &'a H,
        settings: &Settings,
        deadline: Duration,
        state: ResilienceState,
    ) -> Self {
        Self {
            host,
            retry: RetryPolicy {
                base: Duration::from_millis(settings.retry_base_ms),
                cap: Duration::from_millis(settings.retry_cap_ms),
                max_retries: settings.retry_max,
            },
            breaker: BreakerPolicy {
                failure_threshold: settings.breaker_failure_threshold,
                cool_down: Duration::from_secs(settings.breaker_cool_down_s),
            },
            limit: RateLimit::per_minute(settings.requests_per_minute),
            hedge: HedgePolicy::new(
                settings.lcw_hedge_after,
                Duration::from_millis(settings.lcw_first_byte_timeout_ms),
            ),
            credit_reserve_percent: settings.credit_reserve_percent,
            connect_timeout: Duration::from_millis(settings.lcw_connect_timeout_ms),
            first_byte_timeout: Duration::from_millis(settings.lcw_first_byte_timeout_ms),
            response_timeout: Duration::from_millis(settings.lcw_response_timeout_ms),
            deadline,
            state: RefCell::new(state),
            report: RefCell::new(GuardReport::default()),
        }
    }

    /// The state to persist and what happened, once the tick's calls are done.
    pub fn finish(self) -> (ResilienceState, GuardReport) {
        (self.state.into_inner(), self.report.into_inner())
    }

    /// Reads or changes the shared state (never across an await).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut ResilienceState) -> T) -> T {
        f(&mut self.state.borrow_mut())
    }

    /// True when the breaker's cool-down is over and the next call is its probe: the cycle sends
    /// that one alone, and the rest of its plan once the probe has closed the breaker.
    pub fn probe_due(&self) -> bool {
        let now_ms = self.host.unix_millis();
        let breaker = self.state.borrow().breaker;
        let (_, admission, _) = self.breaker.admit(breaker, now_ms);
        admission == Admission::Probe
    }

    /// LCW attempts made so far this tick (each costs a credit).
    pub fn attempts(&self) -> usize {
        self.report.borrow().attempts.len()
    }

    /// Attempts recorded after the last one to `endpoint` ended: the calls an answer of that
    /// endpoint cannot have counted (all of them when it had none).
    pub fn attempts_after(&self, endpoint: Endpoint) -> u64 {
        let report = self.report.borrow();
        let path = endpoint.path();
        let after = report
            .attempts
            .iter()
            .rev()
            .take_while(|a| a.endpoint != path);
        after.count() as u64
    }

    /// True while the breaker turns calls away.
    pub fn breaker_open(&self) -> bool {
        self.breaker
            .turns_away(self.state.borrow().breaker, self.host.unix_millis())
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_sub(self.host.monotonic())
    }

    /// Makes the call `attempt` (given the timeouts for one attempt) as the policies allow.
    pub async fn call<T, F, Fut>(&self, endpoint: Endpoint, attempt: F) -> Result<T, LcwError>
    where
        F: Fn(Timeouts) -> Fut,
        Fut: Future<Output = Result<T, LcwError>>,
    {
        let mut retry = 0;
        loop {
            self.admit(endpoint).await?;
            let result = self
                .send(endpoint, &attempt, self.timeouts(), retry == 0)
                .await;
            let error = match result {
                Ok(value) => {
                    self.update_breaker(|b, s, now| b.on_success(s, now));
                    return Ok(value);
                }
                Err(error) => error,
            };
            let class = error.class();
            let jitter = self.host.random_unit();
            let decision =
                self.retry
                    .decide(retry, class, error.retry_after(), jitter, self.time_left());
            // The breaker counts failed calls, not attempts: a call that will be retried has not
            // failed yet. A failed probe re-opens it at once.
            let probing = matches!(self.state.borrow().breaker, BreakerState::HalfOpen { .. });
            if probing || !matches!(decision, RetryDecision::RetryAfter(_)) {
                self.update_breaker(|b, s, now| b.on_failure(s, class, now));
            }
            match decision {
                // This failure (or a concurrent one) opened the breaker: stop here.
                RetryDecision::RetryAfter(_) if self.breaker_open() => {
                    return Err(self.not_sent(endpoint, NotSentReason::BreakerOpen, Some(error)));
                }
                RetryDecision::RetryAfter(wait) => {
                    self.host.log(
                        Level::Info,
                        &format!("{error}; retry {} in {} ms", retry + 1, wait.as_millis()),
                    );
                    self.wait(wait).await;
                    self.report.borrow_mut().retries += 1;
                    retry += 1;
                }
                RetryDecision::NoTimeLeft => {
                    return Err(self.not_sent(endpoint, NotSentReason::Deadline, Some(error)));
                }
                RetryDecision::DoNotRetry | RetryDecision::Exhausted => return Err(error),
            }
        }
    }

    /// One attempt, hedged: still unanswered after the hedge delay, it gets a second copy when
    /// the gates allow. The first answer wins and the other copy is dropped (its future, and so
    /// its request, cancelled); a copy that fails while the other is in flight leaves the
    /// attempt to the other, and the attempt fails only when both have failed (with the graver
    /// of the two errors, [`graver`]). The latency of a call's first attempt (or, when its hedge
    /// won, the time it had waited: a lower bound above the delay) is what the delay is learnt
    /// from; each call's first attempt pays back the hedge budget.
    ///
    /// One async function on purpose: each one more is a state machine more in the component.
    async fn send<T, F, Fut>(
        &self,
        endpoint: Endpoint,
        attempt: &F,
        timeouts: Timeouts,
        first: bool,
    ) -> Result<T, LcwError>
    where
        F: Fn(Timeouts) -> Fut,
        Fut: Future<Output = Result<T, LcwError>>,
    {
        let started = self.host.monotonic();
        let delay = self.hedge_delay(first);
        let mut primary = pin!(attempt(timeouts));
        let ended =
            |result: &Result<T, LcwError>| self.primary_ended(endpoint, result, started, first);
        let hedged = match delay {
            Some(delay) => match select(primary.as_mut(), pin!(self.host.sleep(delay))).await {
                Either::Left((result, _)) => {
                    ended(&result);
                    return result;
                }
                Either::Right(((), _)) => self.admit_hedge(delay).then_some(delay),
            },
            None => None,
        };
        let Some(delay) = hedged else {
            let result = primary.await;
            ended(&result);
            return result;
        };
        let hedge_started = self.hedge_sent(endpoint, delay);
        let hedge = pin!(attempt(self.timeouts()));
        // The hedge is polled first: once recorded (a call, a credit, a token), its request has
        // been started, even when the first copy's answer came in meanwhile.
        match select(hedge, primary).await {
            Either::Right((result, hedge)) => {
                ended(&result);
                let Err(error) = result else {
                    self.record_dropped(endpoint, hedge_started, true);
                    return result;
                };
                let result = hedge.await;
                self.record_attempt(endpoint, &result, hedge_started, true);
                self.hedge_won(&result);
                result.map_err(|later| graver(error, later))
            }
            Either::Left((result, primary)) => {
                self.record_attempt(endpoint, &result, hedge_started, true);
                let Err(error) = result else {
                    self.hedge_won_first(endpoint, &result, started, first);
                    return result;
                };
                let result = primary.await;
                ended(&result);
                result.map_err(|later| graver(error, later))
            }
        }
    }

    /// The hedge delay of an attempt starting now (none while the breaker probes); a call's
    /// first attempt starts the call for the hedge budget.
    fn hedge_delay(&self, first: bool) -> Option<Duration> {
        if first {
            self.state.borrow_mut().hedge.call_started();
        }
        if self.probing() {
            None
        } else {
            self.hedge.delay(&self.state.borrow().hedge)
        }
    }

    /// A second copy goes out now: said and counted; when it started.
    fn hedge_sent(&self, endpoint: Endpoint, delay: Duration) -> Duration {
        self.host.log(
            Level::Info,
            &format!(
                "LCW {endpoint}: no answer after {} ms, hedging with a second request",
                delay.as_millis()
            ),
        );
        self.report.borrow_mut().hedges += 1;
        self.host.monotonic()
    }

    /// The hedge answered before the first copy: that copy is dropped, and the time it had
    /// waited is the latency learnt from.
    fn hedge_won_first<T>(
        &self,
        endpoint: Endpoint,
        result: &Result<T, LcwError>,
        started: Duration,
        first: bool,
    ) {
        self.hedge_won(result);
        self.record_dropped(endpoint, started, false);
        if first {
            self.observe_latency(started);
        }
    }

    /// The first copy of an attempt has answered: its record, and (for a call's first attempt
    /// that went out) its latency for the hedge delay.
    fn primary_ended<T>(
        &self,
        endpoint: Endpoint,
        result: &Result<T, LcwError>,
        started: Duration,
        first: bool,
    ) {
        self.record_attempt(endpoint, result, started, false);
        if first && !matches!(result, Err(LcwError::NotSent { .. })) {
            self.observe_latency(started);
        }
    }

    /// The timeouts of an attempt starting now: none outlives the deadline.
    fn timeouts(&self) -> Timeouts {
        let left = self.time_left();
        Timeouts {
            connect: self.connect_timeout.min(left),
            first_byte: self.first_byte_timeout.min(left),
            total: self.response_timeout.min(left),
        }
    }

    fn probing(&self) -> bool {
        !matches!(self.state.borrow().breaker, BreakerState::Closed { .. })
    }

    /// The gates of a hedge; when they open, its rate-limiter token is taken.
    fn admit_hedge(&self, delay: Duration) -> bool {
        let now_ms = self.host.unix_millis();
        let pushed_back = self
            .report
            .borrow()
            .attempts
            .iter()
            .any(|a| a.status == "429");
        let mut state = self.state.borrow_mut();
        // A zero time left grants a token only when no wait is needed.
        let (bucket, reservation) = self.limit.reserve(state.bucket, now_ms, Duration::ZERO);
        let gate = Gate {
            breaker_closed: matches!(state.breaker, BreakerState::Closed { .. }),
            pushed_back,
            // The count may be minutes old: the calls made since are in `spent_since`.
            below_credit_reserve: state
                .credits
                .is_some_and(|c| c.below_reserve(self.credit_reserve_percent)),
            token_free: matches!(reservation, Reservation::Granted { wait } if wait.is_zero()),
            within_budget: state.hedge.within_budget(),
            time_left: self.time_left(),
            min_attempt: MIN_ATTEMPT,
        };
        match self.hedge.admit(gate, delay) {
            Ok(()) => {
                state.bucket = bucket;
                state.hedge.hedge_sent();
                true
            }
            Err(skip) => {
                *self
                    .report
                    .borrow_mut()
                    .hedges_skipped
                    .entry(skip.as_str().to_owned())
                    .or_default() += 1;
                false
            }
        }
    }

    fn hedge_won<T>(&self, result: &Result<T, LcwError>) {
        if result.is_ok() {
            self.report.borrow_mut().hedges_won += 1;
        }
    }

    fn observe_latency(&self, started: Duration) {
        let latency = self.host.monotonic().saturating_sub(started);
        self.state.borrow_mut().hedge.observe(latency);
    }

    /// Breaker, then rate limiter, then the deadline: each may turn the call away.
    async fn admit(&self, endpoint: Endpoint) -> Result<(), LcwError> {
        if self.time_left() < MIN_ATTEMPT {
            return Err(self.not_sent(endpoint, NotSentReason::Deadline, None));
        }
        let now_ms = self.host.unix_millis();
        let reservation = {
            let mut state = self.state.borrow_mut();
            let before = state.breaker;
            let (breaker, admission, transition) = self.breaker.admit(before, now_ms);
            if admission == Admission::Rejected {
                None
            } else {
                let (bucket, reservation) =
                    self.limit.reserve(state.bucket, now_ms, self.time_left());
                match reservation {
                    Reservation::Granted { .. } => {
                        state.breaker = breaker;
                        state.bucket = bucket;
                        if let Some(t) = transition {
                            self.log_transition(&mut state, t);
                        }
                    }
                    // The probe (if this was one) did not go out: leave the breaker as it was.
                    Reservation::Refused { .. } => {}
                }
                Some(reservation)
            }
        };
        match reservation {
            None => Err(self.not_sent(endpoint, NotSentReason::BreakerOpen, None)),
            Some(Reservation::Refused { wait }) => {
                self.host.log(
                    Level::Warn,
                    &format!("LCW {endpoint}: skipped, the rate limit asks for a {} ms wait that the deadline does not allow", wait.as_millis()),
                );
                Err(self.not_sent(endpoint, NotSentReason::RateLimit, None))
            }
            Some(Reservation::Granted { wait }) => {
                self.wait(wait).await;
                Ok(())
            }
        }
    }

    async fn wait(&self, wait: Duration) {
        if !wait.is_zero() {
            self.report.borrow_mut().waited_ms +=
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            self.host.sleep(wait).await;
        }
    }

    fn update_breaker(
        &self,
        rule: impl FnOnce(&BreakerPolicy, BreakerState, i64) -> (BreakerState, Option<Transition>),
    ) {
        let now_ms = self.host.unix_millis();
        let mut state = self.state.borrow_mut();
        let (next, transition) = rule(&self.breaker, state.breaker, now_ms);
        state.breaker = next;
        if let Some(t) = transition {
            self.log_transition(&mut state, t);
        }
    }

    fn log_transition(&self, state: &mut ResilienceState, transition: Transition) {
        let level = if transition.to == "open" {
            Level::Warn
        } else {
            Level::Info
        };
        self.host.log(
            level,
            &format!(
                "circuit breaker {} -> {}: {}",
                transition.from, transition.to, transition.reason
            ),
        );
        state.transitions.push_back(transition);
        while state.transitions.len() > TRANSITIONS_KEPT {
            state.transitions.pop_front();
        }
    }

    fn record_attempt<T>(
        &self,
        endpoint: Endpoint,
        result: &Result<T, LcwError>,
        started: Duration,
        hedge: bool,
    ) {
        let status = match result {
            Ok(_) => "200".to_owned(),
            Err(error) => error.status_label(),
        };
        self.push_attempt(endpoint, status, started, hedge);
    }

    /// A copy that was sent (and cost a credit) but dropped when the other answered first.
    fn record_dropped(&self, endpoint: Endpoint, started: Duration, hedge: bool) {
        self.push_attempt(endpoint, DROPPED.to_owned(), started, hedge);
    }

    fn push_attempt(&self, endpoint: Endpoint, status: String, started: Duration, hedge: bool) {
        let duration_ms = u64::try_from(self.host.monotonic().saturating_sub(started).as_millis())
            .unwrap_or(u64::MAX);
        // Every copy sent costs a credit, answered or dropped.
        if let Some(credits) = self.state.borrow_mut().credits.as_mut() {
            credits.spend();
        }
        self.report.borrow_mut().attempts.push(Attempt {
            endpoint: endpoint.path().to_owned(),
            status,
            duration_ms,
            hedge,
        });
    }

    fn not_sent(
        &self,
        endpoint: Endpoint,
        reason: NotSentReason,
        after: Option<LcwError>,
    ) -> LcwError {
        *self
            .report
            .borrow_mut()
            .not_sent
            .entry(reason.as_str().to_owned())
            .or_default() += 1;
        LcwError::NotSent {
            endpoint,
            reason,
            after: after.map(Box::new),
        }
    }
}

/// Of the errors of an attempt's two copies, the one the breaker and the retry act on: an
/// authentication failure (it opens the breaker at once and is not retried), else the longer
/// `Retry-After` (a retry must not come sooner than LCW asked), else the later one.
fn graver(earlier: LcwError, later: LcwError) -> LcwError {
    let auth = |error: &LcwError| error.class() == ErrorClass::Auth;
    if auth(&later) {
        later
    } else if auth(&earlier) || earlier.retry_after() > later.retry_after() {
        earlier
    } else {
        later
    }
}
