//! The latency simulation: our real `cycle::run` against a model of the original service, the
//! same latency profiles and seeds for both, in virtual time; then the cost of a tick, measured
//! natively. Prints tables, asserts nothing (see docs/PERFORMANCE.md).
//!
//! `cargo bench --bench simulate` (add `-- --ticks N` for another number of ticks per profile).

// The simulated host lives with the tests (its smoke test is `tests/simulation.rs`).
#[path = "../tests/support/lcw_fake.rs"]
#[allow(dead_code)]
mod lcw_fake;
#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/sql.rs"]
mod sql;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lcw_fetcher::telemetry::history::Outcome;
use sim::{Original, Profile, Rng, TickResult, World, our_tick, our_variables};

/// Counts allocations, for the cost-per-tick table.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The original ran every few minutes: its published 19.88 s average needs a cold 300 s cache in
/// every cycle, which a one-minute interval would not give (4 cycles in 5 would only re-write
/// cached prices). Its model therefore runs every 6 minutes.
const ORIGINAL_INTERVAL: Duration = Duration::from_secs(360);

struct Summary {
    ticks: usize,
    avg: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    over_25: f64,
    over_45: f64,
    over_60: f64,
    calls_per_tick: f64,
    credits_per_day: f64,
    freshness_avg: f64,
}

fn summarise(results: &[TickResult], interval: Duration) -> Summary {
    let mut secs: Vec<f64> = results.iter().map(|r| r.duration.as_secs_f64()).collect();
    secs.sort_by(f64::total_cmp);
    let n = secs.len();
    let pct = |q: f64| secs[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let over = |limit: f64| 100.0 * secs.iter().filter(|&&s| s > limit).count() as f64 / n as f64;
    let calls: u64 = results.iter().map(|r| r.lcw_calls).sum();
    let fresh: Vec<f64> = results
        .iter()
        .filter_map(|r| r.freshness)
        .map(|d| d.as_secs_f64())
        .collect();
    Summary {
        ticks: n,
        avg: secs.iter().sum::<f64>() / n as f64,
        p50: pct(0.50),
        p95: pct(0.95),
        p99: pct(0.99),
        max: secs[n - 1],
        over_25: over(25.0),
        over_45: over(45.0),
        over_60: over(60.0),
        calls_per_tick: calls as f64 / n as f64,
        credits_per_day: calls as f64 / n as f64 * 86_400.0 / interval.as_secs_f64(),
        freshness_avg: if fresh.is_empty() {
            f64::NAN
        } else {
            fresh.iter().sum::<f64>() / fresh.len() as f64
        },
    }
}

fn run_original(profile: Profile, seed: u64, ticks: usize) -> Vec<TickResult> {
    let mut rng = Rng::new(seed);
    let mut original = Original::new(60);
    (0..ticks)
        .map(|i| original.tick(&mut rng, &profile, false, ORIGINAL_INTERVAL * i as u32))
        .collect()
}

fn run_ours(profile: Profile, seed: u64, ticks: usize) -> (Vec<TickResult>, usize) {
    let world = World::new(profile, seed);
    let variables = our_variables();
    let mut past_deadline = 0;
    let results = (0..ticks as u64)
        .map(|n| {
            let (result, _) = our_tick(&world, &variables, n);
            if result.duration > Duration::from_secs(45) {
                past_deadline += 1;
            }
            result
        })
        .collect();
    (results, past_deadline)
}

/// The p99 of a single LCW request in a profile (every endpoint draws from the same
/// distribution, so it is also the slowest endpoint's), as our timeouts bound it: an answer that
/// has not started after 10 s (our first-byte timeout) counts as 10 s.
fn slowest_call_p99(profile: Profile, seed: u64) -> f64 {
    let mut rng = Rng::new(seed ^ 0xabcdef);
    let mut draws: Vec<f64> = (0..100_000)
        .map(|_| match rng.lcw(&profile, false) {
            sim::Draw::Answer(d) | sim::Draw::ServerError(d) | sim::Draw::TooMany(d) => {
                d.as_secs_f64().min(10.0)
            }
            sim::Draw::Hang => 10.0,
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    draws[(0.99 * draws.len() as f64) as usize]
}

fn row(name: &str, s: &Summary) {
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} % | {:.2} % | {:.2} % | {:.2} | {:.0} | {:.1} |",
        s.ticks,
        s.avg,
        s.p50,
        s.p95,
        s.p99,
        s.max,
        s.over_25,
        s.over_45,
        s.over_60,
        s.calls_per_tick,
        s.credits_per_day,
        s.freshness_avg
    );
}

fn latency_tables(ticks: usize) {
    println!(
        "## Tick duration in virtual time (seconds), {ticks} ticks per model and profile, seed 42\n"
    );
    println!(
        "| model | ticks | avg | p50 | p95 | p99 | max | > 25 s | > 45 s | > 60 s | LCW calls/tick | credits/day | price age at write (s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for profile in [Profile::CALM, Profile::SEED, Profile::DEGRADED] {
        let original = summarise(&run_original(profile, 42, ticks), ORIGINAL_INTERVAL);
        let (ours_results, past_deadline) = run_ours(profile, 42, ticks);
        let ours = summarise(&ours_results, Duration::from_secs(60));
        row(&format!("{}: original", profile.name), &original);
        row(&format!("{}: ours", profile.name), &ours);
        let slowest = slowest_call_p99(profile, 42);
        println!(
            "| {}: ratio ours/original | | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | | | | | | |",
            profile.name,
            ours.avg / original.avg,
            ours.p50 / original.p50,
            ours.p95 / original.p95,
            ours.p99 / original.p99,
            ours.max / original.max
        );
        println!(
            "| {}: our p99 / slowest call's p99 ({slowest:.2} s) = {:.2}; ticks past our 45 s deadline: {past_deadline} | | | | | | | | | | | | |",
            profile.name,
            ours.p99 / slowest
        );
    }
    println!();
}

/// Ten minutes of LCW answering 503 to everything, starting at tick 10.
fn outage_table() {
    println!("## LCW outage: every call answers 503 from minute 10 to minute 20 (seed profile)\n");
    let profile = Profile::SEED;
    let world = World::new(profile, 7);
    let variables = our_variables();
    let (start, end) = (10u64, 20u64);
    let mut stopped_at = None;
    let mut wasted = 0;
    let mut recovered_at = None;
    for n in 0..40u64 {
        world.lcw_outage.set((start..end).contains(&n));
        let (result, record) = our_tick(&world, &variables, n);
        if (start..end).contains(&n) {
            wasted += result.lcw_calls;
            // Open, a tick sends at most its probe (none while the cool-down runs).
            let cut = record.outcome == Outcome::SkippedBreaker || result.lcw_calls <= 1;
            if stopped_at.is_none() && cut {
                stopped_at = Some(n);
            }
        } else if n >= end && recovered_at.is_none() && record.points_written.contains_key("coins")
        {
            recovered_at = Some(n);
        }
    }
    let mut rng = Rng::new(7);
    let mut original = Original::new(60);
    let mut original_wasted = 0;
    for n in 0..40u64 {
        let outage = (start..end).contains(&n);
        let result = original.tick(&mut rng, &profile, outage, Duration::from_secs(60 * n));
        if outage {
            original_wasted += result.lcw_calls;
        }
    }
    println!(
        "| model | first tick the breaker cut to its probe | LCW calls during the 10-minute outage | first tick writing prices after it |"
    );
    println!("|---|---|---:|---|");
    println!(
        "| ours | {} | {wasted} | {} |",
        stopped_at.map_or("never".into(), |n| format!(
            "minute {n} (+{} min)",
            n - start
        )),
        recovered_at.map_or("never".into(), |n| format!("minute {n} (+{} min)", n - end))
    );
    println!(
        "| original (a cycle a minute; its breaker never carried over) | never | {original_wasted} | minute {end} (+0 min) |\n"
    );
}

fn cost_table() {
    use lcw_fetcher::influx::line_protocol::encode_points;
    use lcw_fetcher::lcw::{Coin, Endpoint, parse_body};
    use lcw_fetcher::schema::coin_point;

    println!("## Cost of a tick, native (release build, this machine)\n");
    let template: serde_json::Value = lcw_fake::fixture_json("coins_contract.json");
    let page = |n: usize| -> Vec<u8> {
        let coins: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let mut c = template.clone();
                c["code"] = serde_json::json!(format!("C{i:03}"));
                c["rate"] = serde_json::json!(1.0 / (i as f64 + 3.0));
                c
            })
            .collect();
        serde_json::to_vec(&coins).unwrap()
    };
    let hundred = page(100);
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..20 {
            f();
        }
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_secs(1) {
            f();
            n += 1;
        }
        started.elapsed() / n
    };
    let parse = time(&mut || {
        std::hint::black_box(parse_body::<Vec<Coin>>(Endpoint::CoinsList, &hundred).unwrap());
    });
    let two_pages = [page(100), page(100)];
    let doc = lcw_fetcher::cycle::CollectorState::default();
    let mut process = || {
        let mut points = Vec::with_capacity(200);
        for body in &two_pages {
            let coins: Vec<Coin> = parse_body(Endpoint::CoinsList, body).unwrap();
            points.extend(
                coins
                    .iter()
                    .map(|c| coin_point(c, "USD", 1_800_000_000_000)),
            );
        }
        let mut lines = String::with_capacity(200 * 400);
        encode_points(&points, &mut lines);
        let packed = lcw_fetcher::influx::line_protocol::gzip(lines.as_bytes()).unwrap();
        let state = serde_json::to_vec(&doc).unwrap();
        std::hint::black_box((packed, state));
    };
    let full = time(&mut process);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    process();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;

    // KV round trips and bytes of a steady-state simulated tick.
    let world = World::new(Profile::CALM, 1);
    let variables = our_variables();
    for n in 0..5 {
        our_tick(&world, &variables, n);
    }
    let (trips, bytes) = (world.kv_round_trips.get(), world.kv_bytes_written.get());
    our_tick(&world, &variables, 5);
    let trips = world.kv_round_trips.get() - trips;
    let bytes = world.kv_bytes_written.get() - bytes;

    let wasm = |name: &str| {
        std::fs::metadata(format!(
            "{}/target/wasm32-wasip2/release/{name}.wasm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .map_or("not built (scripts/test-all builds it)".to_owned(), |m| {
            format!("{} bytes", m.len())
        })
    };
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| parse a 100-coin `meta: true` /coins/list answer ({} bytes) | {:.1} µs |",
        hundred.len(),
        parse.as_secs_f64() * 1e6
    );
    println!(
        "| 200-coin tick processing: parse + points + encode + gzip + state serialisation | {:.2} ms |",
        full.as_secs_f64() * 1e3
    );
    println!("| allocations in that processing | {allocations} |");
    println!("| KV round trips of a steady-state tick (calm profile) | {trips} |");
    println!("| bytes written to KV by that tick | {bytes} |");
    println!(
        "| collector component (release wasm) | {} |",
        wasm("lcw_collector")
    );
    println!("| api component (release wasm) | {} |", wasm("lcw_api"));
}

fn main() {
    let ticks = std::env::args()
        .skip_while(|a| a != "--ticks")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let started = Instant::now();
    latency_tables(ticks);
    outage_table();
    cost_table();
    println!(
        "\n(simulation and measurements took {:.1} s of wall time)",
        started.elapsed().as_secs_f64()
    );
}
