//! The latency simulation, briefly, so that it cannot rot: a few ticks of every profile and of
//! an LCW outage. Asserts correctness only — no tick outlives its deadline, data lands, the
//! breaker stops calls in an outage — never speed (that is `cargo bench --bench simulate`).

mod support;

use std::time::Duration;

use lcw_fetcher::telemetry::history::Outcome;
use support::sim::{Original, Profile, Rng, World, our_tick, our_variables};

#[test]
fn no_simulated_tick_outlives_its_deadline() {
    for profile in [Profile::CALM, Profile::SEED, Profile::DEGRADED] {
        let world = World::new(profile, 3);
        let variables = our_variables();
        let mut wrote = 0;
        for n in 0..30 {
            let (result, record) = our_tick(&world, &variables, n);
            assert!(
                result.duration <= Duration::from_secs(45),
                "{}: tick {n} took {:?}",
                profile.name,
                result.duration
            );
            if record.points_written.contains_key("coins") {
                wrote += 1;
            }
        }
        assert!(
            wrote >= 20,
            "{}: prices written in only {wrote} of 30 ticks",
            profile.name
        );
    }
}

#[test]
fn an_lcw_outage_is_stopped_by_the_breaker_and_recovered_from() {
    let world = World::new(Profile::CALM, 5);
    let variables = our_variables();
    let mut outcomes = Vec::new();
    let mut calls = Vec::new();
    for n in 0..16 {
        world.lcw_outage.set((3..8).contains(&n));
        let (result, record) = our_tick(&world, &variables, n);
        outcomes.push(record.outcome);
        calls.push(result.lcw_calls);
    }
    // Once open, each tick of the outage sends only its probe.
    let opened = (3..8)
        .find(|&n| calls[n + 1] <= 1)
        .unwrap_or_else(|| panic!("the breaker never cut the calls: {calls:?}"));
    assert!(calls[opened + 1..8].iter().all(|&c| c <= 1), "{calls:?}");
    // The first tick after the outage probes, then runs its whole plan.
    assert_eq!(outcomes[8], Outcome::Success, "{outcomes:?}");
    assert_eq!(outcomes[15], Outcome::Success, "{outcomes:?}");
}

#[test]
fn the_model_of_the_original_is_sequential_and_slow_on_hangs() {
    let mut rng = Rng::new(1);
    let mut original = Original::new(60);
    let calm = original.tick(&mut rng, &Profile::CALM, false, Duration::ZERO);
    // Six LCW calls, each after the rate limiter's second.
    assert_eq!(calm.lcw_calls, 6);
    assert!(
        calm.duration >= Duration::from_secs(6),
        "{:?}",
        calm.duration
    );
    let hanging = Profile {
        p_hang: 1.0,
        ..Profile::CALM
    };
    let aborted = original.tick(&mut rng, &hanging, false, Duration::from_secs(3_600));
    // /status hangs 4 times (30 s each, 0 + 4 + 8 s of sleeps): the cycle is abandoned.
    assert_eq!(aborted.lcw_calls, 4);
    assert_eq!(aborted.duration, Duration::from_secs(4 + 4 * 30 + 12));
    assert!(!aborted.wrote_prices);
}

/// A single 30-second LCW outage, wherever it falls between ticks, costs at most one tick of
/// prices: the breaker counts failed calls (not attempts), its cool-down is shorter than the
/// interval, and the next tick's probe is followed by the rest of its plan.
#[test]
fn a_thirty_second_lcw_outage_costs_at_most_one_tick() {
    let variables = our_variables();
    let mut worst = 0;
    for (i, offset_s) in (0..60).step_by(7).enumerate() {
        let world = World::new(Profile::SEED, 40 + i as u64);
        let start = Duration::from_secs(60 * 5 + offset_s);
        world
            .lcw_outage_window
            .set(Some((start, start + Duration::from_secs(30))));
        let missed = (0..12)
            .filter(|&n| {
                let (result, _) = our_tick(&world, &variables, n);
                (4..8).contains(&n) && !result.wrote_prices
            })
            .count();
        worst = worst.max(missed);
    }
    println!("ticks without prices around a 30 s outage, worst of 9 offsets: {worst}");
    assert!(worst <= 1, "{worst} ticks lost");
}
