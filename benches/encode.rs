//! Encoding cost, printed (no assertion: these machines are shared and noisy).
//!
//! `cargo bench --bench encode` — lines/s and ns/line for 200 coins with every field, our encoder
//! next to the `influxdb-line-protocol` crate's builder on the same points in the same run, and
//! gzip time and ratio for a 1000-line batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use influxdb_line_protocol::LineProtocolBuilder;
use lcw_fetcher::influx::line_protocol::{FieldValue, Point, encode_points, gzip};
use lcw_fetcher::lcw::{Coin, Delta};
use lcw_fetcher::schema::coin_point;

fn coins(n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| {
            let x = i as f64;
            let coin = Coin {
                code: format!("C{i:03}"),
                name: Some(format!("Coin number {i}, the \"{i}th\"")),
                rank: Some(x + 1.0),
                rate: Some(59_075.581_959_226_44 / (x + 1.0)),
                volume: Some(23_100_393_182.0 + x),
                cap: Some(1_102_979_514_307.0 / (x + 1.0)),
                liquidity: Some(1_322_914_752.0 + x),
                circulating_supply: Some(18_669_593.0 * (x + 1.0)),
                total_supply: Some(21_000_000.0 + x),
                max_supply: Some(21_000_000.0 + x),
                all_time_high_usd: Some(61_518.797_756_895_845 / (x + 1.0)),
                delta: Some(Delta {
                    hour: Some(1.008 + x / 1e4),
                    day: Some(1.0808),
                    week: Some(1.2793),
                    month: Some(1.4754),
                    quarter: Some(0.4804),
                    year: Some(0.7455),
                }),
            };
            coin_point(&coin, "USD", 1_700_000_000_000 + i as i64)
        })
        .collect()
}

fn theirs(points: &[Point], buffer: Vec<u8>) -> Vec<u8> {
    let mut builder = LineProtocolBuilder::new_with(buffer);
    for point in points {
        let mut tags: Vec<&(&str, String)> = point.tags.iter().collect();
        tags.sort_by_key(|(k, _)| *k);
        let mut line = builder.measurement(point.measurement);
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

fn main() {
    let points = coins(200);
    let fields: usize = points.iter().map(|p| p.fields.len()).sum::<usize>() / points.len();
    let budget = Duration::from_secs(2);

    let mut ours_buffer = String::with_capacity(200 * 400);
    let ours = time_per_call(budget, || {
        ours_buffer.clear();
        black_box(encode_points(black_box(&points), &mut ours_buffer));
    });
    let mut their_buffer = Vec::with_capacity(200 * 400);
    let theirs_time = time_per_call(budget, || {
        their_buffer.clear();
        their_buffer = theirs(black_box(&points), std::mem::take(&mut their_buffer));
    });
    let per_line = |d: Duration| d.as_nanos() as f64 / points.len() as f64;

    println!(
        "encoding 200 coins (3 tags, {fields} fields each), {} bytes of line protocol",
        ours_buffer.len()
    );
    println!("| encoder | ns/line | lines/s |");
    println!("|---|---:|---:|");
    for (name, d) in [
        ("lcw_fetcher::influx", ours),
        ("influxdb-line-protocol 2 builder", theirs_time),
    ] {
        println!("| {name} | {:.0} | {:.0} |", per_line(d), 1e9 / per_line(d));
    }
    println!(
        "ours / theirs time ratio: {:.2}",
        ours.as_secs_f64() / theirs_time.as_secs_f64()
    );

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
