//! Item 8: fuzz-style properties over what LCW may send, run by plain `cargo test` with a fixed
//! budget and seed (both printed): list bodies of the right shape with arbitrary values,
//! truncated JSON, wrong types, huge arrays, and hostile `Retry-After`/`Date` headers. Nothing
//! panics, every element is either a point or a counted skip, every line written parses.

use std::time::Duration;

use influxdb_line_protocol::parse_lines;
use lcw_fetcher::lcw::{Coin, Endpoint, Exchange, parse_list};
use lcw_fetcher::remote::{ErrorClass, RETRY_AFTER_MAX, retry_after};
use lcw_fetcher::resilience::RetryPolicy;
use lcw_fetcher::schema;
use lcw_fetcher::sink::line_protocol::encode_points;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Bodies tried per property (the whole fuzz budget of `cargo test` is 3 × this).
const CASES: u32 = 600;
const SEED: [u8; 32] = *b"lcw-fetcher fuzz seed, fixed!!!!";

fn runner() -> TestRunner {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED))
}

/// A JSON value as text, anything LCW could put where a number belongs.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| format!("{v:e}")),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| format!("\"{v}\"")),
        prop::sample::select(vec![
            "1e400",
            "-1e999",
            "1e-400",
            "123456789012345678901234567890",
            "null",
            "true",
            "[]",
            "{}",
            "\"\"",
            "\"1.5\"",
            "\" 2 \"",
            "\"NaN\"",
            "\"inf\"",
            "\"abc\"",
            "0",
            "-0.0",
        ])
        .prop_map(str::to_owned),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => value(),
    ]
}

/// One list element: an object with some of LCW's keys (and others), or something else.
fn element() -> impl Strategy<Value = String> {
    let keys = prop::sample::subsequence(
        vec![
            "rate",
            "volume",
            "cap",
            "liquidity",
            "rank",
            "circulatingSupply",
            "totalSupply",
            "maxSupply",
            "allTimeHighUSD",
            "markets",
            "bidTotal",
            "askTotal",
            "depth",
            "visitors",
            "volumePerVisitor",
            "other",
        ],
        0..8,
    );
    let object = (
        prop::option::of(text_value()),
        prop::option::of(text_value()),
        keys,
        prop::collection::vec(value(), 8),
        prop::option::of(prop::collection::vec(value(), 6)),
    )
        .prop_map(|(code, name, keys, values, delta)| {
            let mut parts = Vec::new();
            if let Some(code) = code {
                parts.push(format!("\"code\":{code}"));
            }
            if let Some(name) = name {
                parts.push(format!("\"name\":{name}"));
            }
            for (key, value) in keys.iter().zip(values.iter().cycle()) {
                parts.push(format!("\"{key}\":{value}"));
            }
            if let Some(delta) = delta {
                let names = ["hour", "day", "week", "month", "quarter", "year"];
                let inner: Vec<String> = names
                    .iter()
                    .zip(&delta)
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                parts.push(format!("\"delta\":{{{}}}", inner.join(",")));
            }
            format!("{{{}}}", parts.join(","))
        });
    prop_oneof![8 => object, 1 => value()]
}

/// A body: an array of elements (sometimes huge), cut short, or of the wrong shape.
fn body() -> impl Strategy<Value = (String, Option<usize>)> {
    let array = prop_oneof![
        10 => prop::collection::vec(element(), 0..20),
        1 => (element(), 500..3_000usize).prop_map(|(e, n)| vec![e; n]),
    ];
    prop_oneof![
        6 => array.clone().prop_map(|a| {
            let n = a.len();
            (format!("[{}]", a.join(",")), Some(n))
        }),
        2 => (array, any::<prop::sample::Index>()).prop_map(|(a, cut)| {
            let full = format!("[{}]", a.join(","));
            let mut at = cut.index(full.len().max(1));
            while !full.is_char_boundary(at) {
                at -= 1;
            }
            (full[..at].to_owned(), None)
        }),
        1 => element().prop_map(|e| (e, None)),
        1 => any::<Vec<u8>>().prop_map(|b| (String::from_utf8_lossy(&b).into_owned(), None)),
    ]
}

fn check_lines(points: &[lcw_fetcher::sink::line_protocol::Point]) -> Result<(), TestCaseError> {
    let mut out = String::new();
    let encoded = encode_points(points, &mut out);
    prop_assert_eq!(encoded.lines + encoded.dropped_points, points.len());
    prop_assert_eq!(out.matches('\n').count(), encoded.lines);
    for parsed in parse_lines(&out) {
        if let Err(e) = parsed {
            return Err(TestCaseError::fail(format!("{e}: {out:?}")));
        }
    }
    Ok(())
}

#[test]
fn coin_lists_never_panic_and_every_element_is_written_or_counted() {
    println!("fuzz: coin list bodies, {CASES} cases, seed {SEED:?}");
    runner()
        .run(&body(), |(body, elements)| {
            match parse_list::<Coin>(Endpoint::CoinsList, body.as_bytes()) {
                Ok(page) => {
                    if let Some(n) = elements {
                        prop_assert_eq!(page.items.len() + page.skipped.len(), n);
                    }
                    for skip in &page.skipped {
                        prop_assert!(!skip.detail.contains('\n') && skip.detail.len() <= 400);
                    }
                    let points: Vec<_> = page
                        .items
                        .iter()
                        .map(|c| schema::coin_point(c, "USD", 1_700_000_000_000))
                        .collect();
                    check_lines(&points)?;
                }
                // Only a body that is not a JSON array as a whole fails as a whole.
                Err(error) => {
                    prop_assert!(elements.is_none(), "{error}");
                    prop_assert_eq!(error.class(), ErrorClass::Malformed);
                    prop_assert!(!error.to_string().contains('\n'));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn exchange_lists_never_panic_and_every_element_is_written_or_counted() {
    println!("fuzz: exchange list bodies, {CASES} cases, seed {SEED:?}");
    runner()
        .run(&body(), |(body, elements)| {
            match parse_list::<Exchange>(Endpoint::ExchangesList, body.as_bytes()) {
                Ok(page) => {
                    if let Some(n) = elements {
                        prop_assert_eq!(page.items.len() + page.skipped.len(), n);
                    }
                    let points: Vec<_> = page
                        .items
                        .iter()
                        .map(|e| schema::exchange_point(e, "USD", 1_700_000_000_000))
                        .collect();
                    check_lines(&points)?;
                }
                Err(_) => prop_assert!(elements.is_none()),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn hostile_headers_never_panic_and_stay_capped() {
    println!("fuzz: Retry-After and Date headers, {CASES} cases, seed {SEED:?}");
    let header = prop_oneof![
        any::<u64>().prop_map(|v| v.to_string()),
        "[0-9]{20,40}",
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u32>().prop_map(|s| {
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(u64::from(s) * 3))
        }),
        "[ -~]{0,40}",
    ];
    let policy = RetryPolicy {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(8),
        max_retries: 3,
    };
    runner()
        .run(
            &(
                header.clone(),
                prop::option::of(header),
                any::<u64>(),
                0.0..1.0f64,
            ),
            |(retry, date, left_ms, jitter)| {
                let mut headers = http::HeaderMap::new();
                if let Ok(v) = retry.parse() {
                    headers.insert("retry-after", v);
                }
                if let Some(Ok(v)) = date.map(|d| d.parse()) {
                    headers.insert("date", v);
                }
                let wait = retry_after(&headers);
                prop_assert!(wait.is_none_or(|w| w <= RETRY_AFTER_MAX));
                // The wait meets the time left without overflow, whatever both are.
                let _ = policy.decide(
                    0,
                    ErrorClass::RateLimited,
                    wait.or(Some(Duration::MAX)),
                    jitter,
                    Duration::from_millis(left_ms),
                );
                Ok(())
            },
        )
        .unwrap();
}
