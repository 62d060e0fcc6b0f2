//! The latency simulation: our real `cycle::run` against the model of the original service
//! (`sim::Original`, rebuilt from its code), paired: both take the same keyed draw for the same
//! endpoint call in the same tick (common random numbers), over several seeds, in virtual time.
//! Prints tables, asserts nothing (see docs/PERFORMANCE.md); the CPU cost of a tick is
//! `benches/tick_cost.rs`.
//!
//! `cargo bench --bench simulate` (10 seeds x 3,000 ticks per profile); `-- --seeds N --ticks N`
//! for other sizes; `-- --calibrate` searches the seed profile's parameters against the
//! original's published figures (prints the best candidates, changes nothing).

// The simulated host lives with the tests (its smoke test is `tests/cycle/simulation.rs`).
#[path = "../tests/support/lcw_fake.rs"]
#[allow(dead_code)]
mod lcw_fake;
#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/sql.rs"]
mod sql;

use std::time::{Duration, Instant};

use lcw_fetcher::telemetry::history::Outcome;
use sim::{Network, Original, OriginalCycle, Profile, TickResult, World, our_tick, our_variables};

/// The original's published figures: 4,235 fetch cycles over 72 hours, before 2025-09-22
/// (jrbgit/lcw-fetch, `performance_optimization_plan.md` at 9c99c5d).
struct Published;

impl Published {
    const MINUTES: f64 = 72.0 * 60.0;
    const CYCLES: f64 = 4_235.0;
    const AVG: f64 = 19.88;
    const P50: f64 = 16.84;
    const P95: f64 = 34.2;
    const P99: f64 = 78.67;
    const MIN: f64 = 14.02;
    const MAX: f64 = 172.2;
    /// Shares of cycles: up to 20 s, 20 to 30 s, 30 to 60 s, over 60 s (per cent).
    const UP_TO_20: f64 = 76.3;
    const FROM_20_TO_30: f64 = 16.6;
    const FROM_30_TO_60: f64 = 5.2;
    const OVER_60: f64 = 1.8;
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

fn sorted_secs<'a>(durations: impl Iterator<Item = &'a Duration>) -> Vec<f64> {
    let mut secs: Vec<f64> = durations.map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    secs
}

/// Figures of one set of ticks (or cycles).
#[derive(Clone, Copy)]
struct Summary {
    ticks: usize,
    avg: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    min: f64,
    max: f64,
    up_to_20: f64,
    over_30: f64,
    over_45: f64,
    over_60: f64,
    calls_per_minute: f64,
    freshness_avg: f64,
}

/// `minutes`: the minutes of scheduler time the results cover (calls per minute of it).
fn summarise(results: &[TickResult], minutes: usize) -> Summary {
    let secs = sorted_secs(results.iter().map(|r| &r.duration));
    let n = secs.len();
    let share =
        |f: &dyn Fn(f64) -> bool| 100.0 * secs.iter().filter(|&&s| f(s)).count() as f64 / n as f64;
    let calls: u64 = results.iter().map(|r| r.lcw_calls).sum();
    let fresh: Vec<f64> = results
        .iter()
        .filter_map(|r| r.freshness)
        .map(|d| d.as_secs_f64())
        .collect();
    Summary {
        ticks: n,
        avg: secs.iter().sum::<f64>() / n as f64,
        p50: pct(&secs, 0.50),
        p95: pct(&secs, 0.95),
        p99: pct(&secs, 0.99),
        min: secs[0],
        max: secs[n - 1],
        up_to_20: share(&|s| s <= 20.0),
        over_30: share(&|s| s > 30.0),
        over_45: share(&|s| s > 45.0),
        over_60: share(&|s| s > 60.0),
        calls_per_minute: calls as f64 / minutes as f64,
        freshness_avg: if fresh.is_empty() {
            f64::NAN
        } else {
            fresh.iter().sum::<f64>() / fresh.len() as f64
        },
    }
}

/// The original's cycles that ran in `ticks` minutes (skipped ones are absent).
fn run_original(profile: Profile, seed: u64, ticks: usize) -> Vec<OriginalCycle> {
    let net = Network {
        profile,
        seed,
        outage: None,
    };
    let mut original = Original::new(60);
    (0..ticks as u64)
        .filter_map(|n| original.tick(&net, n))
        .collect()
}

/// Our ticks, and every LCW first attempt of the run (capped by its timeout); `hedging: false`
/// runs the same ticks with `lcw_hedge_after_ms = 0`, on the same draws.
fn run_ours(
    profile: Profile,
    seed: u64,
    ticks: usize,
    hedging: bool,
) -> (Vec<TickResult>, Vec<Duration>) {
    let world = World::new(profile, seed);
    let mut variables = our_variables();
    if !hedging {
        variables.push(("lcw_hedge_after_ms", "0"));
    }
    let results = (0..ticks as u64)
        .map(|n| our_tick(&world, &variables, n).0)
        .collect();
    (results, world.first_attempts.take())
}

/// min / median / max of per-seed figures.
fn spread(mut values: Vec<f64>, digits: usize) -> String {
    values.sort_by(f64::total_cmp);
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    format!(
        "{:.digits$} / {:.digits$} / {:.digits$}",
        values[0],
        median,
        values[values.len() - 1]
    )
}

fn fit_table(seeds: u64, ticks: usize) {
    println!(
        "## Fit: the original's model (seed profile) against its published figures, {seeds} seeds x {ticks} minutes\n"
    );
    let profile = Profile::SEED;
    let mut completed = Vec::new();
    let mut ran = 0;
    for seed in 1..=seeds {
        let cycles = run_original(profile, seed, ticks);
        ran += cycles.len();
        completed.extend(cycles.iter().filter(|c| !c.abandoned).map(|c| c.result));
    }
    let minutes = seeds as usize * ticks;
    let m = summarise(&completed, minutes);
    let secs = sorted_secs(completed.iter().map(|r| &r.duration));
    let share = |lo: f64, hi: f64| {
        100.0 * secs.iter().filter(|&&s| s > lo && s <= hi).count() as f64 / secs.len() as f64
    };
    println!("| figure | published | model | model - published |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, published: f64, model: f64, unit: &str| {
        println!(
            "| {name} | {published:.2}{unit} | {model:.2}{unit} | {:+.2}{unit} |",
            model - published
        );
    };
    row(
        "completed cycles per 72 h (4,320 minutes)",
        Published::CYCLES,
        completed.len() as f64 * Published::MINUTES / minutes as f64,
        "",
    );
    row("average (s)", Published::AVG, m.avg, "");
    row("median (s)", Published::P50, m.p50, "");
    row("p95 (s)", Published::P95, m.p95, "");
    row("p99 (s)", Published::P99, m.p99, "");
    row("cycles up to 20 s", Published::UP_TO_20, m.up_to_20, " %");
    row(
        "cycles 20 to 30 s",
        Published::FROM_20_TO_30,
        share(20.0, 30.0),
        " %",
    );
    row(
        "cycles 30 to 60 s",
        Published::FROM_30_TO_60,
        share(30.0, 60.0),
        " %",
    );
    row(
        "cycles over 30 s",
        Published::FROM_30_TO_60 + Published::OVER_60,
        m.over_30,
        " %",
    );
    row("cycles over 60 s", Published::OVER_60, m.over_60, " %");
    row(
        "cycles over 34.2 s (the published p95)",
        5.0,
        share(Published::P95, f64::INFINITY),
        " %",
    );
    row(
        "cycles over 78.67 s (the published p99)",
        1.0,
        share(Published::P99, f64::INFINITY),
        " %",
    );
    row("fastest (s)", Published::MIN, m.min, "");
    row("slowest (s)", Published::MAX, m.max, "");
    println!(
        "\nModel: {} completed cycles of {ran} that ran in {minutes} minutes ({} abandoned at /status, {} minutes skipped); published: 4,235 cycles in 72 h. The fastest and slowest come from {} times as many cycles as the published ones.\n",
        completed.len(),
        ran - completed.len(),
        minutes - ran,
        (completed.len() as f64 / Published::CYCLES).round()
    );
}

struct SeedRun {
    original: Summary,
    ours: Summary,
    unhedged: Summary,
    our_p99: f64,
    slowest_first_p99: f64,
    request_p99: f64,
    past_deadline: usize,
}

fn paired_tables(seeds: u64, ticks: usize) {
    let profiles = [Profile::CALM, Profile::SEED, Profile::DEGRADED];
    let mut runs: Vec<(Profile, Vec<SeedRun>, [Summary; 3])> = Vec::new();
    for profile in profiles {
        let mut per_seed = Vec::new();
        let (mut all_original, mut all_ours, mut all_unhedged) =
            (Vec::new(), Vec::new(), Vec::new());
        for seed in 1..=seeds {
            let original: Vec<TickResult> = run_original(profile, seed, ticks)
                .into_iter()
                .map(|c| c.result)
                .collect();
            let (ours, firsts) = run_ours(profile, seed, ticks, true);
            let (unhedged, _) = run_ours(profile, seed, ticks, false);
            let slowest = sorted_secs(ours.iter().filter_map(|r| r.slowest_first_attempt.as_ref()));
            let requests = sorted_secs(firsts.iter());
            let ours_summary = summarise(&ours, ticks);
            per_seed.push(SeedRun {
                original: summarise(&original, ticks),
                ours: ours_summary,
                unhedged: summarise(&unhedged, ticks),
                our_p99: ours_summary.p99,
                slowest_first_p99: pct(&slowest, 0.99),
                request_p99: pct(&requests, 0.99),
                past_deadline: ours
                    .iter()
                    .filter(|r| r.duration > Duration::from_secs(45))
                    .count(),
            });
            all_original.extend(original);
            all_ours.extend(ours);
            all_unhedged.extend(unhedged);
        }
        let minutes = seeds as usize * ticks;
        let pooled = [
            summarise(&all_original, minutes),
            summarise(&all_ours, minutes),
            summarise(&all_unhedged, minutes),
        ];
        runs.push((profile, per_seed, pooled));
    }

    println!(
        "## Tick duration in virtual time (seconds), {seeds} seeds x {ticks} minutes per profile, pooled\n"
    );
    println!(
        "| profile: model | ticks | avg | p50 | p95 | p99 | max | > 30 s | > 45 s | > 60 s | LCW requests/minute | credits/day | price age at write (s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (profile, _, [original, ours, unhedged]) in &runs {
        for (name, s) in [
            ("original", original),
            ("ours", ours),
            ("ours without hedging", unhedged),
        ] {
            println!(
                "| {}: {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} % | {:.2} % | {:.2} % | {:.2} | {:.0} | {:.1} |",
                profile.name,
                s.ticks,
                s.avg,
                s.p50,
                s.p95,
                s.p99,
                s.max,
                s.over_30,
                s.over_45,
                s.over_60,
                s.calls_per_minute,
                s.calls_per_minute * 1_440.0,
                s.freshness_avg
            );
        }
    }
    println!(
        "\nThe original's ticks are its cycles that ran (a cycle still running at the next minute skips it), abandoned ones included; LCW requests count every attempt.\n"
    );

    println!(
        "## Paired ratios ours / original, min / median / max over {seeds} seeds ({ticks} minutes each)\n"
    );
    println!("| profile | avg | p50 | p95 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (profile, per_seed, _) in &runs {
        let ratio = |f: &dyn Fn(&Summary) -> f64| {
            spread(
                per_seed
                    .iter()
                    .map(|r| f(&r.ours) / f(&r.original))
                    .collect(),
                3,
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            profile.name,
            ratio(&|s| s.avg),
            ratio(&|s| s.p50),
            ratio(&|s| s.p95),
            ratio(&|s| s.p99),
            ratio(&|s| s.max)
        );
    }
    println!();

    println!(
        "## Tick tail against its first attempts, min / median / max over {seeds} seeds ({ticks} ticks each)\n"
    );
    println!(
        "| profile | our tick p99 (s) | p99 of the tick's slowest first attempt (s) | one request's p99 (s) | tick p99 / slowest first attempt p99 (target <= 1.15) | tick p99 / one request's p99 (target <= 1.3) | the same without hedging | LCW requests a day, hedging / without (target <= 1.10) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (profile, per_seed, _) in &runs {
        let figure =
            |f: &dyn Fn(&SeedRun) -> f64, digits| spread(per_seed.iter().map(f).collect(), digits);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            profile.name,
            figure(&|r| r.our_p99, 2),
            figure(&|r| r.slowest_first_p99, 2),
            figure(&|r| r.request_p99, 2),
            figure(&|r| r.our_p99 / r.slowest_first_p99, 2),
            figure(&|r| r.our_p99 / r.request_p99, 2),
            figure(&|r| r.unhedged.p99 / r.request_p99, 2),
            figure(
                &|r| r.ours.calls_per_minute / r.unhedged.calls_per_minute,
                3
            )
        );
    }
    println!(
        "\nA first attempt is the first request to an endpoint identity in a tick (k = 0); retries and hedges are later requests to it. Its latency is capped as its timeout caps it: a hang counts as the first-byte timeout (10 s). Ticks past our 45 s deadline, all profiles and seeds: {}.\n",
        runs.iter()
            .flat_map(|(_, per_seed, _)| per_seed)
            .map(|r| r.past_deadline)
            .sum::<usize>()
    );
}

/// Ten minutes of LCW answering 503 to everything, from minute 10 to minute 20.
fn outage_table() {
    println!(
        "## LCW outage: every call answers 503 from minute 10 to minute 20 (seed profile, seed 7)\n"
    );
    let profile = Profile::SEED;
    let window = (Duration::from_secs(600), Duration::from_secs(1_200));
    let in_window = |n: u64| (10..20).contains(&n);
    let world = World::new(profile, 7);
    world.lcw_outage_window.set(Some(window));
    let variables = our_variables();
    let mut stopped_at = None;
    let mut wasted = 0;
    let mut recovered_at = None;
    for n in 0..40u64 {
        let (result, record) = our_tick(&world, &variables, n);
        if in_window(n) {
            wasted += result.lcw_calls;
            // Open, a tick sends at most its probe (none while the cool-down runs).
            let cut = record.outcome == Outcome::SkippedBreaker || result.lcw_calls <= 1;
            if stopped_at.is_none() && cut {
                stopped_at = Some(n);
            }
        } else if n >= 20 && recovered_at.is_none() && result.wrote_prices {
            recovered_at = Some(n);
        }
    }
    let net = Network {
        profile,
        seed: 7,
        outage: Some(window),
    };
    let mut original = Original::new(60);
    let (mut original_wasted, mut original_recovered, mut original_ran) = (0, None, 0);
    for n in 0..40u64 {
        let Some(cycle) = original.tick(&net, n) else {
            continue;
        };
        if in_window(n) {
            original_wasted += cycle.result.lcw_calls;
            original_ran += 1;
        } else if n >= 20 && original_recovered.is_none() && cycle.result.wrote_prices {
            original_recovered = Some(n);
        }
    }
    let minute = |at: Option<u64>, from: u64| {
        at.map_or("never".into(), |n| {
            format!("minute {n} (+{} min)", n - from)
        })
    };
    println!(
        "| model | first tick cut to its probe | LCW requests in ticks of the outage | first tick writing prices after it |"
    );
    println!("|---|---|---:|---|");
    println!(
        "| ours | {} | {wasted} | {} |",
        minute(stopped_at, 10),
        minute(recovered_at, 20)
    );
    println!(
        "| original ({original_ran} cycles ran; it has no breaker) | never | {original_wasted} | {} |\n",
        minute(original_recovered, 20)
    );
}

/// A random local search of the seed profile's LCW parameters against the published figures,
/// on the original's model alone. Prints the best candidates; the chosen one is copied into
/// `Profile::SEED` by hand.
fn calibrate(seeds: u64, ticks: usize, rounds: usize) {
    let loss = |p: &Profile| -> (f64, Summary, f64) {
        let mut completed = Vec::new();
        for seed in 1..=seeds {
            completed.extend(
                run_original(*p, 1_000 + seed, ticks)
                    .into_iter()
                    .filter(|c| !c.abandoned)
                    .map(|c| c.result),
            );
        }
        let m = summarise(&completed, seeds as usize * ticks);
        let secs = sorted_secs(completed.iter().map(|r| &r.duration));
        let mid = 100.0 * secs.iter().filter(|&&s| s > 20.0 && s <= 30.0).count() as f64
            / secs.len() as f64;
        let rel = |model: f64, published: f64| ((model - published) / published).powi(2);
        // Percentiles as the shares above the published ones (smooth where a percentile jumps
        // across a gap, as p95 does between slow answers and a 30 s timeout).
        let above = |limit: f64| {
            100.0 * secs.iter().filter(|&&s| s > limit).count() as f64 / secs.len() as f64
        };
        let l = rel(m.avg, Published::AVG)
            + rel(above(Published::P50), 50.0)
            + rel(above(Published::P95), 5.0)
            + rel(above(Published::P99), 1.0)
            + rel(m.min, Published::MIN)
            + rel(m.up_to_20, Published::UP_TO_20)
            + rel(mid, Published::FROM_20_TO_30)
            + rel(m.over_30, Published::FROM_30_TO_60 + Published::OVER_60)
            + rel(m.over_60, Published::OVER_60);
        (l, m, mid)
    };
    let mut best = Profile::SEED;
    let (mut best_loss, _, _) = loss(&best);
    let mut rng = sim::Rng::new(2025);
    for round in 0..rounds {
        let mut c = best;
        let step = |rng: &mut sim::Rng, v: f64, lo: f64, hi: f64| {
            (v * (0.3 * (rng.unit() - 0.5)).exp()).clamp(lo, hi)
        };
        match round % 8 {
            0 => c.lcw_floor_ms = step(&mut rng, c.lcw_floor_ms, 500.0, 2_500.0),
            1 => c.lcw_median_ms = step(&mut rng, c.lcw_median_ms, 20.0, 3_000.0),
            2 => c.lcw_sigma = step(&mut rng, c.lcw_sigma, 0.2, 2.5),
            3 => c.p_5xx = step(&mut rng, c.p_5xx, 0.001, 0.1),
            4 => c.p_hang = step(&mut rng, c.p_hang, 0.0005, 0.05),
            5 => c.p_incident = step(&mut rng, c.p_incident, 0.001, 0.2),
            6 => c.incident_slowdown = step(&mut rng, c.incident_slowdown, 1.0, 100.0),
            _ => c.incident_p_hang = step(&mut rng, c.incident_p_hang, 0.05, 0.95),
        }
        let (l, m, mid) = loss(&c);
        if l < best_loss {
            best = c;
            best_loss = l;
            println!(
                "round {round}: loss {l:.4} floor {:.0} median {:.0} sigma {:.3} 5xx {:.4} hang {:.4} incident {:.4} x {:.3} slowdown {:.2} | avg {:.2} p50 {:.2} p95 {:.2} p99 {:.2} min {:.2} <=20 {:.1} 20-30 {mid:.1} >30 {:.1} >60 {:.2}",
                c.lcw_floor_ms,
                c.lcw_median_ms,
                c.lcw_sigma,
                c.p_5xx,
                c.p_hang,
                c.p_incident,
                c.incident_p_hang,
                c.incident_slowdown,
                m.avg,
                m.p50,
                m.p95,
                m.p99,
                m.min,
                m.up_to_20,
                m.over_30,
                m.over_60
            );
        }
    }
    println!("best: {best:?}");
}

fn main() {
    let arg = |name: &str| {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
    };
    let seeds = arg("--seeds").unwrap_or(10);
    let ticks = arg("--ticks").unwrap_or(3_000) as usize;
    let started = Instant::now();
    if std::env::args().any(|a| a == "--calibrate") {
        calibrate(seeds, ticks, arg("--rounds").unwrap_or(300) as usize);
        return;
    }
    fit_table(seeds, ticks);
    paired_tables(seeds, ticks);
    outage_table();
    println!(
        "\n(the simulation took {:.1} s of wall time)",
        started.elapsed().as_secs_f64()
    );
}
