//! The bounds of hedged requests (`src/hedge.rs`, `Guard::send`), in virtual time: the
//! guard driven by scripted copies (as in `tests/lcw/hedging.rs`) and the real cycle in the
//! simulated world (`support::sim`). Each test names the promise it holds the change to.

use crate::support;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use lcw_fetcher::config::Settings;
use lcw_fetcher::guard::{Guard, ResilienceState};
use lcw_fetcher::hedge::HedgeState;
use lcw_fetcher::host::Clock;
use lcw_fetcher::lcw::{Endpoint, LcwError};
use lcw_fetcher::resilience::{BreakerState, Credits};
use support::scripted_guard::{Copy, call, fails, ok, settings};
use support::sim::{Profile, SimHost, World, our_tick, our_variables};

const MS: Duration = Duration::from_millis(1);
/// Calls in a row that the promise is about: a day's at the default settings (the plan's 5 472
/// calls, rounded to whole windows of 64).
const DAY: u64 = 5_504;

/// `calls` calls one after the other, the state carried from each to the next; returns the
/// hedges sent.
fn hedges_over(settings: &Settings, calls: u64, copies: &[Copy]) -> u64 {
    let mut state = ResilienceState::default();
    let mut hedges = 0;
    for _ in 0..calls {
        let out = call(settings, state, 40_000 * MS, copies);
        assert!(out.result.is_ok());
        hedges += out.report.hedges;
        // Each call runs in a world of its own from time zero: its tokens are not the subject.
        state = ResilienceState {
            bucket: None,
            ..out.state
        };
    }
    hedges
}

// --- Credits: hedging costs at most 10 % more calls ------------------------------------------

/// An LCW slower than the largest learnt delay (half the first-byte timeout, 5 s) for every
/// request: the p90 is clamped to 5 s and every call is hedged — twice the calls, not 10 %.
#[test]
fn an_lcw_slower_than_the_largest_delay_cannot_make_every_call_hedge() {
    let hedges = hedges_over(&settings(&[]), DAY, &[ok(7_000)]);
    assert!(hedges * 10 <= DAY, "{hedges} hedges of {DAY} calls");
}

/// First copies that hang while second copies answer fast (a load balancer with one slow
/// backend, or an LCW that wants it so): a won hedge teaches the delay only "delay + the
/// hedge's time", so the learnt p90 never rises past the hedged calls and every call is
/// hedged.
#[test]
fn hedges_that_always_win_cannot_make_every_call_hedge() {
    let hedges = hedges_over(&settings(&[]), DAY, &[ok(9_000), ok(300)]);
    assert!(hedges * 10 <= DAY, "{hedges} hedges of {DAY} calls");
}

/// `lcw_hedge_after_ms` below the usual latency: the plan counts 10 % more calls whatever the
/// fixed delay, so the guard must keep to that figure.
#[test]
fn a_short_fixed_delay_keeps_to_the_planned_tenth() {
    let fixed = settings(&[("lcw_hedge_after_ms", "100")]);
    let hedges = hedges_over(&fixed, DAY, &[ok(400)]);
    assert!(hedges * 10 <= DAY, "{hedges} hedges of {DAY} calls");
}

/// The real cycle in a slow world (every LCW request about 6.5 s): the hedges of a day are
/// what the plan says (a tenth of the planned calls), not one per call.
#[test]
fn in_a_slow_world_the_ticks_send_no_more_hedges_than_planned() {
    let slow = Profile {
        name: "slow",
        lcw_median_ms: 6_500.0,
        lcw_sigma: 0.05,
        p_5xx: 0.0,
        p_429: 0.0,
        p_hang: 0.0,
        ..Profile::CALM
    };
    let world = World::new(slow, 3);
    let variables = our_variables();
    let (mut firsts, mut hedges) = (0u64, 0u64);
    for n in 0..300 {
        let (result, record) = our_tick(&world, &variables, n);
        // Every copy (dropped ones too) is an LCW request and costs a credit.
        assert_eq!(result.lcw_calls, record.lcw.attempts.len() as u64);
        hedges += record.lcw.hedges;
        firsts += record.lcw.attempts.len() as u64 - record.lcw.hedges;
    }
    assert!(firsts > 1_000, "{firsts} calls");
    assert!(
        hedges * 10 <= firsts,
        "{hedges} hedges for {firsts} other calls"
    );
}

/// The credits' remaining count is minutes old: this tick's own calls have already spent
/// some. 505 of 10 000 with a reserve of 5 % (500), and five calls made: the day is at its
/// reserve and a hedge must not go out (backfill already subtracts the tick's calls).
#[test]
fn a_hedge_counts_the_calls_already_made_against_the_credit_reserve() {
    let s = settings(&[]);
    let world = World::new(Profile::CALM, 1);
    let host = SimHost::new(&world, &[]);
    let state = ResilienceState {
        credits: Some(Credits {
            remaining: 505.0,
            limit: 10_000.0,
            fetched_at_ms: 0,
            spent_since: 0,
        }),
        ..learnt_1s()
    };
    let guard = Guard::new(&host, &s, host.monotonic() + 40_000 * MS, state);
    let host = &host;
    let one = |after: Duration| {
        guard.call(Endpoint::CoinsList, move |_| async move {
            host.sleep(after).await;
            Ok::<_, LcwError>(())
        })
    };
    world.clock.run(async {
        for _ in 0..5 {
            one(10 * MS).await.unwrap();
        }
        one(3_000 * MS).await.unwrap();
    });
    let (_, report) = guard.finish();
    assert_eq!(report.hedges, 0, "{report:?}");
    assert_eq!(report.hedges_skipped.get("credit_reserve"), Some(&1));
}

/// A simulated day at the default settings in the calibrated world (median 1.25 s, a heavy
/// tail, errors and hangs): the hedges sent stay within the plan's figure, and every copy sent
/// is one LCW request counted once.
#[test]
fn a_simulated_day_sends_no_more_hedges_than_the_plan_counts() {
    let world = World::new(Profile::SEED, 11);
    let variables = our_variables();
    let planned = lcw_fetcher::plan::hedges_per_day(&settings(&[]));
    let (mut calls, mut hedges) = (0u64, 0u64);
    for n in 0..1_440 {
        let (result, record) = our_tick(&world, &variables, n);
        assert_eq!(result.lcw_calls, record.lcw.attempts.len() as u64);
        calls += result.lcw_calls;
        hedges += record.lcw.hedges;
    }
    assert!(hedges > 0);
    assert!(
        hedges <= planned && hedges * 10 <= calls - hedges,
        "{hedges} hedges (planned {planned}) of {calls} calls"
    );
}

// --- The error of an attempt whose two copies failed -----------------------------------------

/// One copy is told "429, Retry-After: 20 s", the other then fails with a 503: the retry must
/// still wait what LCW asked for, not the 503's short backoff.
#[test]
fn a_retry_after_of_one_copy_is_honoured_when_the_other_fails_later() {
    let too_many = Copy {
        retry_after: Some(20_000 * MS),
        ..fails(1_500, 429)
    };
    let out = call(
        &settings(&[("retry_max", "1")]),
        learnt_1s(),
        40_000 * MS,
        &[too_many, fails(1_000, 503), ok(10)],
    );
    assert_eq!(out.result.unwrap(), 2);
    assert_eq!(out.sent_at.len(), 3);
    // The 429 came at 1.5 s.
    assert!(
        out.sent_at[2] >= 21_500 * MS,
        "retried at {:?}, before the Retry-After of 20 s",
        out.sent_at[2]
    );
    assert_eq!(out.took, out.sent_at[2] + 10 * MS);
}

/// One copy is refused with a 401 (the key is revoked), the other times out as a 503: the
/// breaker must open at once on the authentication failure, and no retry hammers LCW with a
/// bad key.
#[test]
fn an_auth_failure_of_one_copy_is_not_hidden_by_the_other() {
    let out = call(
        &settings(&[("retry_max", "3")]),
        learnt_1s(),
        40_000 * MS,
        &[fails(1_200, 401), fails(1_000, 503), ok(10)],
    );
    assert!(
        matches!(out.result, Err(LcwError::Status { status: 401, .. })),
        "{:?}",
        out.result
    );
    assert_eq!(out.report.retries, 0);
    assert!(
        matches!(out.state.breaker, BreakerState::Open { .. }),
        "{:?}",
        out.state.breaker
    );
    // And the same with the copies the other way round.
    let out = call(
        &settings(&[("retry_max", "3")]),
        learnt_1s(),
        40_000 * MS,
        &[fails(2_500, 503), fails(200, 401), ok(10)],
    );
    assert!(matches!(
        out.result,
        Err(LcwError::Status { status: 401, .. })
    ));
    assert!(matches!(out.state.breaker, BreakerState::Open { .. }));
}

/// LCW answered 429 (it asks us to slow down): the retry that follows its Retry-After must not
/// go out twice — a hedge would add load exactly when the server pushes back.
#[test]
fn no_hedge_once_lcw_has_answered_429_this_tick() {
    let too_many = Copy {
        retry_after: Some(1_000 * MS),
        ..fails(100, 429)
    };
    let out = call(
        &settings(&[("retry_max", "1")]),
        learnt_1s(),
        40_000 * MS,
        &[too_many, ok(3_000), ok(10)],
    );
    assert_eq!(out.result.unwrap(), 1);
    assert_eq!(out.sent_at.len(), 2, "{:?}", out.report);
    assert_eq!(out.report.hedges, 0);
    assert_eq!(out.report.hedges_skipped.get("pushback"), Some(&1));
}

// --- What held --------------------------------------------------------------------------------

/// Both copies hang: the tick still ends before its deadline, and each hung copy is a call
/// counted once.
#[test]
fn both_copies_hanging_do_not_outlive_the_deadline() {
    let hanging = Profile {
        name: "hanging",
        p_hang: 1.0,
        p_5xx: 0.0,
        p_429: 0.0,
        ..Profile::CALM
    };
    let world = World::new(hanging, 5);
    let variables = our_variables();
    for n in 0..5 {
        let (result, record) = our_tick(&world, &variables, n);
        assert!(
            result.duration <= Duration::from_millis(45_000),
            "tick {n} took {:?}",
            result.duration
        );
        assert_eq!(result.lcw_calls, record.lcw.attempts.len() as u64);
    }
}

/// A latency history written by a hostile store: huge, negative, fractional, wrong types,
/// u64::MAX, a million entries, nested — read without a panic and kept bounded; a tick then
/// runs on it.
#[test]
fn a_hostile_latency_history_is_bounded_and_harmless() {
    let many: Vec<u64> = vec![1; 1_000_000];
    for hostile in [
        serde_json::json!({ "latencies_ms": many, "hedge_debt": many }),
        serde_json::json!({ "latencies_ms": [u64::MAX, -1, 1e6, 1e300, "5", null, [], {}] }),
        serde_json::json!({ "latencies_ms": "100,100,100" }),
        serde_json::json!([1, 2, 3]),
        serde_json::json!(u64::MAX),
        serde_json::json!({ "latencies_ms": [[[[1]]]], "hedge_debt": u64::MAX }),
    ] {
        let state: HedgeState = serde_json::from_value(hostile.clone()).unwrap();
        assert!(state.latencies_ms.len() <= lcw_fetcher::hedge::SAMPLES_KEPT);
        let doc = serde_json::json!({ "resilience": { "hedge": hostile } });
        let world = World::new(Profile::CALM, 9);
        world.kv.borrow_mut().insert(
            lcw_fetcher::state::STATE_KEY.to_owned(),
            serde_json::to_vec(&doc).unwrap(),
        );
        let (result, _) = our_tick(&world, &our_variables(), 0);
        assert!(result.wrote_prices);
        let stored = world.kv.borrow()[lcw_fetcher::state::STATE_KEY].len();
        assert!(stored < 64 * 1024, "{stored} bytes of state");
    }
}

/// Concurrent calls share one rate limiter: hedges never take a token that a planned call then
/// has to wait for past its turn, and no more copies go out than tokens were granted.
#[test]
fn hedges_take_tokens_only_when_free() {
    let s = settings(&[("requests_per_minute", "6"), ("lcw_hedge_after_ms", "100")]);
    let world = World::new(Profile::CALM, 1);
    let host = SimHost::new(&world, &[]);
    let guard = Guard::new(
        &host,
        &s,
        host.monotonic() + 40_000 * MS,
        ResilienceState::default(),
    );
    let copies = Cell::new(0u32);
    let calls = (0..3).map(|_| {
        guard.call(Endpoint::CoinsList, |_| {
            copies.set(copies.get() + 1);
            let host = &host;
            async move {
                host.sleep(2_000 * MS).await;
                Ok::<_, LcwError>(())
            }
        })
    });
    let results = world.clock.run(futures::future::join_all(calls));
    let (_, report) = guard.finish();
    // A burst of one token, then one every 10 s: three calls, no hedge can get a free token.
    assert_eq!(report.hedges, 0, "{report:?}");
    assert_eq!(copies.get() as usize, report.attempts.len());
    assert!(results.iter().filter(|r| r.is_ok()).count() >= 1);
}

/// A learnt delay of 1 s.
fn learnt_1s() -> ResilienceState {
    let mut hedge = HedgeState::default();
    for _ in 0..30 {
        hedge.observe(Duration::from_secs(1));
    }
    ResilienceState {
        hedge,
        ..ResilienceState::default()
    }
}

/// The first copy's answer arrives in the instant between the hedge timer and the hedge's first
/// poll (here: it needs one more poll after its timer): the hedge is recorded as a request, a
/// dropped one (a credit, a token, a hedge in the budget), so it must have been sent.
#[test]
fn a_hedge_recorded_as_sent_was_sent() {
    let s = settings(&[("lcw_hedge_after_ms", "1000")]);
    let world = World::new(Profile::CALM, 1);
    let host = SimHost::new(&world, &[]);
    let guard = Guard::new(
        &host,
        &s,
        host.monotonic() + 40_000 * MS,
        ResilienceState::default(),
    );
    let (made, polled) = (Cell::new(0u32), Cell::new(0u32));
    let (host, made, polled) = (&host, &made, &polled);
    let result = world.clock.run(guard.call(Endpoint::CoinsList, |_| {
        let index = made.get();
        made.set(index + 1);
        async move {
            polled.set(polled.get() + 1);
            if index == 0 {
                host.sleep(1_000 * MS).await;
                yield_once().await;
                Ok::<_, LcwError>(0)
            } else {
                host.sleep(5_000 * MS).await;
                Ok(1)
            }
        }
    }));
    assert_eq!(result.unwrap(), 0);
    let (_, report) = guard.finish();
    assert_eq!(
        polled.get() as usize,
        report.attempts.len(),
        "requests started vs recorded: {report:?}"
    );
}

/// Pending once, then ready (its waker woken at once).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// A hedge sent late in the tick: its timeouts end by the deadline, as the first copy's do, and
/// none goes when less than an attempt's minimum is left.
#[test]
fn a_hedge_never_runs_past_the_deadline() {
    for (deadline_ms, hedged) in [(2_500, true), (1_999, false)] {
        let s = settings(&[("lcw_hedge_after_ms", "1000")]);
        let world = World::new(Profile::CALM, 1);
        let host = SimHost::new(&world, &[]);
        let started = host.monotonic();
        let deadline = started + Duration::from_millis(deadline_ms);
        let guard = Guard::new(&host, &s, deadline, ResilienceState::default());
        let ends = RefCell::new(Vec::new());
        let (host, ends) = (&host, &ends);
        let result = world.clock.run(guard.call(Endpoint::CoinsList, |timeouts| {
            let end = host.monotonic() + timeouts.total.max(timeouts.first_byte);
            ends.borrow_mut().push(end);
            async move {
                // Hangs until its own timeout, as the hosts enforce it.
                host.sleep(end - host.monotonic()).await;
                Err::<(), _>(LcwError::Status {
                    endpoint: Endpoint::CoinsList,
                    status: 503,
                    message: "timed out".into(),
                    retry_after: None,
                })
            }
        }));
        assert!(result.is_err());
        let ends = ends.borrow().clone();
        assert_eq!(ends.len(), if hedged { 2 } else { 1 }, "{deadline_ms}");
        assert!(ends.iter().all(|&end| end <= deadline), "{ends:?}");
        assert!(host.monotonic() <= deadline);
    }
}
