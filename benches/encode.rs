//! Encoding cost, printed (no assertion: these machines are shared and noisy).
//!
//! `cargo bench --bench encode` — lines/s and ns/line for 200 varied coins (see [`coins`]), our encoder
//! next to the `influxdb-line-protocol` crate's builder on the same points in the same run, and
//! gzip time and ratio for a 1000-line batch. `-- --print-lines` also prints the lines encoded,
//! `-- --ours-only` times our encoder alone (to profile it).

use std::hint::black_box;
use std::time::{Duration, Instant};

use influxdb_line_protocol::LineProtocolBuilder;
use lcw_fetcher::lcw::{Coin, Delta};
use lcw_fetcher::point::{FieldValue, Name, Point};
use lcw_fetcher::schema::coin_point;
use lcw_fetcher::sink::line_protocol::{encode_points, gzip};

/// A fixed xorshift64*, so every run encodes the same points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Full-precision value, log-uniform between 10^lo and 10^hi (what LCW's prices look like).
    fn magnitude(&mut self, lo: f64, hi: f64) -> f64 {
        10f64.powf(lo + (hi - lo) * self.unit())
    }
}

/// Codes and names as LCW lists them: mostly plain ASCII, some with spaces, dots, digits,
/// LCW's `_` prefixes for duplicate codes, a few non-ASCII or with characters to escape.
const NAMES: [(&str, &str); 16] = [
    ("BTC", "Bitcoin"),
    ("ETH", "Ethereum"),
    ("USDT", "Tether"),
    ("BNB", "BNB"),
    ("SOL", "Solana"),
    ("____USDC", "USD Coin"),
    ("WBTC", "Wrapped Bitcoin"),
    ("SHIB", "Shiba Inu"),
    ("STETH", "Lido Staked ETH"),
    ("1INCH", "1inch"),
    ("CRO", "Cronos"),
    ("_XRP", "XRP (IOU)"),
    ("ΞTH2", "Ξther 2.0 💎"),
    ("AAVE", "Aave"),
    ("MKR", "Maker"),
    ("PEPE", "Pepe, the \"frog\""),
];

/// `n` coins as LCW's `/coins/list` gives them: prices from 10^-9 to 10^5 at full precision,
/// volumes and caps in whole dollars, whole or fractional supplies up to 10^18, four-decimal
/// deltas, and some fields missing (no max supply, no liquidity, no delta).
fn coins(n: usize) -> Vec<Point> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let (code, name) = NAMES[i % NAMES.len()];
            let rate = rng.magnitude(-9.0, 5.0);
            let supply = if rng.chance(0.6) {
                rng.magnitude(6.0, 18.0).round()
            } else {
                rng.magnitude(6.0, 12.0)
            };
            let mut delta = || (rng.magnitude(-0.3, 0.3) * 1e4).round() / 1e4;
            let delta = Delta {
                hour: Some(delta()),
                day: Some(delta()),
                week: Some(delta()),
                month: Some(delta()),
                quarter: Some(delta()),
                year: Some(delta()),
            };
            let coin = Coin {
                code: if i < NAMES.len() {
                    code.to_owned()
                } else {
                    format!("{code}{i}")
                },
                name: Some(name.to_owned()).filter(|_| !rng.chance(0.05)),
                rank: Some(i as f64 + 1.0),
                rate: Some(rate),
                volume: Some(rng.magnitude(2.0, 11.0).round()),
                cap: Some((rate * supply).min(rng.magnitude(9.0, 12.3)).round())
                    .filter(|_| !rng.chance(0.1)),
                liquidity: Some(rng.magnitude(2.0, 10.0).round()).filter(|_| !rng.chance(0.1)),
                circulating_supply: Some(supply),
                total_supply: Some(supply * (1.0 + rng.unit())).filter(|_| !rng.chance(0.2)),
                max_supply: Some(21e6 * (1 + i % 7) as f64).filter(|_| rng.chance(0.4)),
                all_time_high_usd: Some(rate * (1.0 + 50.0 * rng.unit())),
                delta: Some(delta).filter(|_| !rng.chance(0.05)),
            };
            coin_point(&coin, "USD", 1_700_000_000_000 + i as i64)
        })
        .collect()
}

fn theirs(points: &[Point], buffer: Vec<u8>) -> Vec<u8> {
    let mut builder = LineProtocolBuilder::new_with(buffer);
    for point in points {
        let mut tags: Vec<&(Name, String)> = point.tags.iter().collect();
        tags.sort_by_key(|(k, _)| k);
        let mut line = builder.measurement(&point.measurement);
        for (k, v) in tags {
            line = line.tag(k, v);
        }
        let mut fields = point.fields.iter();
        let (k, v) = fields.next().expect("a field");
        let mut line = match v {
            FieldValue::Float(f) => line.field(k, *f),
            FieldValue::Integer(n) => line.field(k, *n),
            _ => unreachable!("coins have numbers only"),
        };
        for (k, v) in fields {
            line = match v {
                FieldValue::Float(f) => line.field(k, *f),
                FieldValue::Integer(n) => line.field(k, *n),
                _ => unreachable!(),
            };
        }
        builder = line.timestamp(point.timestamp_ms).close_line();
    }
    builder.build()
}

/// Runs `f` for about `budget`, returns the time per call.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f();
    }
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < budget {
        f();
        calls += 1;
    }
    started.elapsed() / calls
}

/// Times `a` and `b` in alternating rounds of about `round` each; returns, for each, the median
/// and the fastest round's time per call. Alternate rounds share whatever load the machine has
/// (other builds, other benches), so the ratio holds where absolute times do not.
fn time_alternating(
    rounds: usize,
    round: Duration,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> [(Duration, Duration); 2] {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        times[0].push(time_per_call(round, &mut a));
        times[1].push(time_per_call(round, &mut b));
    }
    times.map(|mut t| {
        t.sort();
        (t[t.len() / 2], t[0])
    })
}

fn main() {
    let points = coins(200);
    let fields = points.iter().map(|p| p.fields.len()).sum::<usize>() as f64 / points.len() as f64;
    let per_line = |d: Duration| d.as_nanos() as f64 / points.len() as f64;
    let mut ours_buffer = String::with_capacity(200 * 400);
    let mut ours = || {
        ours_buffer.clear();
        black_box(encode_points(black_box(&points), &mut ours_buffer));
    };
    if std::env::args().any(|a| a == "--ours-only") {
        // For a profiler or `perf stat`: our encoder alone, a fixed number of calls.
        let calls = 5_000;
        let started = Instant::now();
        for _ in 0..calls {
            ours();
        }
        println!(
            "lcw_fetcher::influx: {:.0} ns/line, {calls} calls of 200 lines",
            per_line(started.elapsed() / calls)
        );
        return;
    }
    let mut their_buffer = Vec::with_capacity(200 * 400);
    let theirs = || {
        their_buffer.clear();
        their_buffer = theirs(black_box(&points), std::mem::take(&mut their_buffer));
    };
    let rounds = 20;
    let [(ours_median, ours_best), (theirs_median, theirs_best)] =
        time_alternating(rounds, Duration::from_millis(100), ours, theirs);

    println!(
        "encoding 200 coins (3 tags, {fields:.1} fields each on average), {} bytes of line protocol",
        ours_buffer.len()
    );
    if std::env::args().any(|a| a == "--print-lines") {
        print!("{ours_buffer}");
    }
    println!("{rounds} alternate rounds of 100 ms each:");
    println!("| encoder | ns/line, median round | ns/line, fastest round | lines/s, median |");
    println!("|---|---:|---:|---:|");
    for (name, median, best) in [
        ("lcw_fetcher::influx", ours_median, ours_best),
        (
            "influxdb-line-protocol 2 builder",
            theirs_median,
            theirs_best,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            per_line(median),
            per_line(best),
            1e9 / per_line(median)
        );
    }
    println!(
        "theirs / ours: {:.2}x (medians), {:.2}x (fastest rounds)",
        theirs_median.as_secs_f64() / ours_median.as_secs_f64(),
        theirs_best.as_secs_f64() / ours_best.as_secs_f64(),
    );

    let budget = Duration::from_secs(2);
    let batch: String = coins(1000).iter().fold(String::new(), |mut text, p| {
        encode_points([p], &mut text);
        text
    });
    let mut packed = Vec::new();
    let gzip_time = time_per_call(budget, || {
        packed = gzip(black_box(batch.as_bytes())).unwrap()
    });
    println!(
        "gzip (the code's level), 1000-line batch: {} -> {} bytes (ratio {:.1}), {:.2} ms",
        batch.len(),
        packed.len(),
        batch.len() as f64 / packed.len() as f64,
        gzip_time.as_secs_f64() * 1e3
    );
    // The level the code uses is chosen from these lines: time and size side by side.
    println!("| gzip level (1000-line batch) | bytes | ratio | ms |");
    println!("|---:|---:|---:|---:|");
    for level in [1, 6] {
        let mut packed = Vec::new();
        let time = time_per_call(budget, || {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(batch.len() / 4),
                flate2::Compression::new(level),
            );
            std::io::Write::write_all(&mut encoder, black_box(batch.as_bytes())).unwrap();
            packed = encoder.finish().unwrap();
        });
        println!(
            "| {level} | {} | {:.1} | {:.2} |",
            packed.len(),
            batch.len() as f64 / packed.len() as f64,
            time.as_secs_f64() * 1e3
        );
    }
}
