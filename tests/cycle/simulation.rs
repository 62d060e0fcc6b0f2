//! The latency simulation, briefly, so that it cannot rot: a few ticks of every profile and of
//! an LCW outage. Asserts correctness only — no tick outlives its deadline, data lands, the
//! breaker stops calls in an outage — never speed (that is `cargo bench --bench simulate`).

use crate::support;

use std::time::Duration;

use lcw_fetcher::telemetry::history::Outcome;
use support::sim::{
    Draw, Network, Original, Profile, SimHost, World, endpoint_identity, lcw_draw, original_call,
    our_tick, our_variables, urllib3_backoff,
};

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
    let net = Network {
        profile: Profile::CALM,
        seed: 1,
        outage: None,
    };
    let mut original = Original::new(60);
    let calm = original.tick(&net, 0).expect("the first cycle runs");
    // Eight LCW calls (status, credits, three coins, the list, exchanges, overview), each
    // after the rate limiter's second.
    assert_eq!(calm.result.lcw_calls, 8);
    assert!(!calm.abandoned);
    assert!(
        calm.result.duration >= Duration::from_secs(7),
        "{:?}",
        calm.result.duration
    );
    let hanging = Network {
        profile: Profile {
            p_hang: 1.0,
            ..Profile::CALM
        },
        ..net
    };
    let abandoned = original.tick(&hanging, 60).expect("runs");
    // /status hangs 4 times (30 s each, 0 + 0 + 2 + 4 s of sleeps): the cycle is abandoned.
    assert_eq!(abandoned.result.lcw_calls, 4);
    assert_eq!(abandoned.result.duration, Duration::from_secs(4 * 30 + 6));
    assert!(abandoned.abandoned && !abandoned.result.wrote_prices);
    // It ran past the next minute: the scheduler (max_instances=1) skips the next two cycles.
    assert!(original.tick(&hanging, 61).is_none());
    assert!(original.tick(&hanging, 62).is_none());
    assert!(original.tick(&net, 63).is_some());
}

/// urllib3 `Retry(total=3, backoff_factor=1)` as the original configured it: 503s are retried
/// after 0, 2 and 4 s, and the call's time is its attempts plus exactly those sleeps.
#[test]
fn the_original_waits_exactly_urllib3s_backoff_after_503s() {
    assert_eq!(
        (1..=3).map(urllib3_backoff).collect::<Vec<_>>(),
        [0, 2, 4].map(Duration::from_secs)
    );
    let net = Network {
        profile: Profile {
            p_5xx: 0.5,
            ..Profile::CALM
        },
        seed: 9,
        outage: None,
    };
    let draw = |n: u64, k: u32| lcw_draw(&net.profile, net.seed, n, "/status", k, false);
    for failures in 1..=3u32 {
        // A tick whose first `failures` /status attempts answer 503 and the next one 200.
        let n = (0..10_000u64)
            .find(|&n| {
                (0..failures).all(|k| matches!(draw(n, k), Draw::ServerError(_)))
                    && matches!(draw(n, failures), Draw::Answer(_))
            })
            .expect("such a tick");
        let attempts: Duration = (0..=failures).map(|k| draw(n, k).latency().unwrap()).sum();
        let sleeps: Duration = (1..=failures).map(urllib3_backoff).sum();
        let (ok, took, sent) = original_call(&net, n, "/status", "{}");
        assert!(ok);
        assert_eq!(sent, u64::from(failures) + 1);
        assert_eq!(took, attempts + sleeps, "{failures} 503s then 200");
    }
    // Four 503s: the call fails after 0 + 2 + 4 s of sleeps.
    let n = (0..10_000u64)
        .find(|&n| (0..4).all(|k| matches!(draw(n, k), Draw::ServerError(_))))
        .expect("such a tick");
    let attempts: Duration = (0..4).map(|k| draw(n, k).latency().unwrap()).sum();
    let (ok, took, sent) = original_call(&net, n, "/status", "{}");
    assert!(!ok);
    assert_eq!(sent, 4);
    assert_eq!(took, attempts + Duration::from_secs(6));
}

/// Common random numbers: the k-th request to an endpoint in a tick draws the same latency
/// whoever sends it and whatever else was sent before it, in our host and in the original's
/// model alike.
#[test]
fn a_request_draws_the_same_whatever_else_was_sent() {
    use lcw_fetcher::host::{HttpClient, Timeouts};

    let profile = Profile::SEED;
    let timeouts = Timeouts {
        connect: Duration::from_secs(30),
        first_byte: Duration::from_secs(300),
        total: Duration::from_secs(300),
    };
    let list = r#"{"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":100,"meta":true}"#;
    let request = |path: &str, body: &str| {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://lcw.sim{path}"))
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    // Sends `sequence` in tick 7 of a world seeded 11; the time each request took.
    let send_all = |sequence: &[(&str, &str)]| -> Vec<(String, Duration)> {
        let world = World::new(profile, 11);
        world.tick.set(7);
        let host = SimHost::new(&world, &[]);
        sequence
            .iter()
            .map(|(path, body)| {
                let started = world.clock.now();
                let _ = world.clock.run(host.send(request(path, body), timeouts));
                (
                    endpoint_identity(path, body.as_bytes()),
                    world.clock.now() - started,
                )
            })
            .collect()
    };
    let a = send_all(&[("/coins/list", list), ("/coins/list", list)]);
    let b = send_all(&[
        ("/overview", "{}"),
        ("/coins/single", r#"{"code":"BTC"}"#),
        ("/coins/list", list),
        ("/status", "{}"),
        ("/coins/list", list),
    ]);
    assert_eq!(a[0].0, "/coins/list@0");
    // The first and the second request to /coins/list@0 take the same time in both orders...
    assert_eq!(a[0].1, b[2].1);
    assert_eq!(a[1].1, b[4].1);
    // ... which is the keyed draw's (k = 0, then k = 1), and the two differ.
    for (k, (_, took)) in a.iter().enumerate() {
        let expected = lcw_draw(&profile, 11, 7, "/coins/list@0", k as u32, false)
            .latency()
            .map_or(Duration::from_secs(300), |l| {
                l.min(Duration::from_secs(300))
            });
        assert_eq!(*took, expected);
    }
    assert_ne!(a[0].1, a[1].1);
    // The original's model asks the same draw for its /coins/list (limit 20): in a tick where
    // that first attempt answers within its 30 s timeout, its call takes exactly that long.
    let net = Network {
        profile,
        seed: 11,
        outage: None,
    };
    let original_list =
        r#"{"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":20,"meta":true}"#;
    let (n, latency) = (0..100u64)
        .find_map(
            |n| match lcw_draw(&profile, 11, n, "/coins/list@0", 0, false) {
                Draw::Answer(l) if l <= Duration::from_secs(30) => Some((n, l)),
                _ => None,
            },
        )
        .expect("an answering tick");
    let (ok, took, sent) = original_call(&net, n, "/coins/list", original_list);
    assert!(ok && sent == 1);
    assert_eq!(took, latency);
    // Another tick, seed or endpoint draws differently.
    let base = lcw_draw(&profile, 11, 7, "/coins/list@0", 0, false);
    assert_ne!(base, lcw_draw(&profile, 11, 8, "/coins/list@0", 0, false));
    assert_ne!(base, lcw_draw(&profile, 12, 7, "/coins/list@0", 0, false));
    assert_ne!(base, lcw_draw(&profile, 11, 7, "/coins/list@100", 0, false));
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
