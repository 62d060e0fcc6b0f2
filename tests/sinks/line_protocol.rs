//! Item 3: every line the encoder writes parses — in InfluxDB 3's parser (the IOx
//! `influxdb-line-protocol` crate) and in the real InfluxDB 1.x — to the tags and fields that were
//! meant, whatever UTF-8 a name or code holds.
//!
//! The meaning of a name, written here as the specification rather than as the encoder's code:
//! control characters (tab, newline…) read as spaces; a backslash stays where an ordinary
//! character follows it, and is left out where it would escape something (before another
//! backslash, a comma, an equals sign, a space) or end the text; a tag whose value is then
//! empty is left out.

use crate::support;

use influxdb_line_protocol::{FieldValue as Parsed, parse_lines};
use lcw_fetcher::sink::line_protocol::{FieldValue, Point, encode_points};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::Influx;

/// Cases the property runs (fixed, so `cargo test` has a known cost).
const CASES: u32 = 2_000;
/// The seed of the deterministic runs (printed, so a failure can be replayed).
const SEED: [u8; 32] = *b"lcw-fetcher line protocol seed!!";

fn expected_tag(raw: &str) -> String {
    let chars: Vec<char> = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1);
        if c == '\\' && !next.is_some_and(|n| !matches!(n, '\\' | ',' | '=' | ' ')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Names as hostile as UTF-8 allows, weighted towards the characters line protocol treats
/// specially.
fn name() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "\\", ",", "=", " ", "\"", "\t", "\n", "\r", "\0", "#", "\\\\", "\\,", "é", "💎",
        "\u{2028}",
    ])
    .prop_map(str::to_owned);
    let piece = prop_oneof![3 => special, 2 => any::<String>(), 1 => "[a-zA-Z0-9]{1,4}"];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |v| v.is_finite())
}

fn point(code: &str, name: &str, rate: f64, volume: f64, text: &str, at: i64) -> Point {
    Point {
        measurement: "cryptocurrency_data".into(),
        tags: vec![
            ("code".into(), code.to_owned()),
            ("name".into(), name.to_owned()),
            ("currency".into(), "USD".to_owned()),
        ],
        fields: vec![
            ("rate".into(), FieldValue::Float(rate)),
            ("volume".into(), FieldValue::Float(volume)),
            ("note".into(), FieldValue::String(text.to_owned())),
            ("rank".into(), FieldValue::Integer(at)),
        ],
        timestamp_ms: at,
    }
}

fn expected_string(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[test]
fn every_encoded_line_parses_in_the_iox_parser_to_what_was_meant() {
    println!("line protocol property: {CASES} cases, seed {SEED:?}");
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let strategy = (name(), name(), finite(), finite(), name(), any::<i64>());
    runner
        .run(&strategy, |(code, name, rate, volume, text, at)| {
            let mut out = String::new();
            let encoded = encode_points([&point(&code, &name, rate, volume, &text, at)], &mut out);
            prop_assert_eq!(encoded.lines, 1);
            prop_assert_eq!(out.matches('\n').count(), 1, "one line: {:?}", out);
            let lines: Vec<_> = parse_lines(&out).collect();
            prop_assert_eq!(lines.len(), 1, "{:?}", out);
            let line = match &lines[0] {
                Ok(line) => line,
                Err(e) => return Err(TestCaseError::fail(format!("{e}: {out:?}"))),
            };
            prop_assert_eq!(line.series.measurement.as_str(), "cryptocurrency_data");
            let tags: Vec<(String, String)> = line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut want: Vec<(String, String)> = [("code", &code), ("currency", &"USD".to_owned()), ("name", &name)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), expected_tag(v)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            want.sort();
            prop_assert_eq!(&tags, &want, "{:?}", out);
            let fields = &line.field_set;
            prop_assert_eq!(fields.len(), 4);
            prop_assert!(matches!(fields[0].1, Parsed::F64(v) if v.to_bits() == rate.to_bits() || (v == 0.0 && rate == 0.0)));
            prop_assert!(matches!(fields[1].1, Parsed::F64(v) if v.to_bits() == volume.to_bits() || (v == 0.0 && volume == 0.0)));
            match &fields[2].1 {
                Parsed::String(s) => prop_assert_eq!(s.to_string(), expected_string(&text)),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            prop_assert!(matches!(fields[3].1, Parsed::I64(v) if v == at));
            prop_assert_eq!(line.timestamp, Some(at));
            Ok(())
        })
        .unwrap();
}

/// The names InfluxDB refused with the old encoder, one by one.
#[test]
fn names_that_were_refused() {
    for (name, tag) in [
        ("\\", None),
        ("\\\\\\", None),
        ("a\tb", Some("name=a\\ b")),
        ("a\\,b", Some("name=a\\,b")),
        ("a\\\nb", Some("name=a\\ b")),
        ("a\\\\b", Some("name=a\\b")),
    ] {
        let mut out = String::new();
        encode_points([&point("X", name, 1.0, 2.0, "", 1)], &mut out);
        match tag {
            None => assert!(!out.contains("name="), "{name:?} gives {out:?}"),
            Some(tag) => assert!(out.contains(&format!(",{tag} ")), "{name:?} gives {out:?}"),
        }
        for parsed in parse_lines(&out) {
            parsed.unwrap_or_else(|e| panic!("{name:?} gives {out:?}: {e}"));
        }
    }
}

/// A sample of the same property through the real InfluxDB 1.x: written, read back, equal.
#[test]
fn a_sample_round_trips_through_the_real_influxd() {
    let influx = Influx::start();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let strategy = (name(), name(), finite(), name());
    let mut points = Vec::new();
    for i in 0..200i64 {
        let (code, name, rate, text) = strategy.new_tree(&mut runner).unwrap().current();
        points.push(point(&code, &name, rate, 1.0, &text, 1_700_000_000_000 + i));
    }
    let mut body = String::new();
    encode_points(&points, &mut body);
    let response = ureq::post(&format!("{}/write", influx.url))
        .query("db", &influx.database)
        .query("precision", "ms")
        .send(&body)
        .unwrap();
    assert_eq!(response.status(), 204);
    let rows = influx.rows("cryptocurrency_data");
    assert_eq!(rows.len(), points.len());
    for row in rows {
        let at = row["rank"].as_i64().unwrap();
        let point = &points[(at - 1_700_000_000_000) as usize];
        for (key, raw) in &point.tags {
            let want = expected_tag(raw);
            let got = row.get(key.as_ref()).and_then(|v| v.as_str()).unwrap_or("");
            assert_eq!(got, want, "tag {key} of {raw:?}");
        }
        let FieldValue::Float(rate) = point.fields[0].1 else {
            unreachable!()
        };
        assert_eq!(row["rate"].as_f64().unwrap(), rate);
        let FieldValue::String(text) = &point.fields[2].1 else {
            unreachable!()
        };
        assert_eq!(row["note"].as_str().unwrap_or(""), expected_string(text));
    }
}

/// Floats at every edge of the formatter's paths: zero and -0, subnormals, the extremes, both
/// sides of 10^-5 and 10^16 (where `zmij` switches to an exponent, rewritten), of 2^53 (the whole
/// numbers `itoa` writes) and of 10^9 (the four-decimal path), LCW-like prices and deltas, then
/// random bit patterns (every exponent).
fn edge_floats() -> Vec<f64> {
    let two_53 = 2f64.powi(53);
    let mut values = vec![
        0.0,
        -0.0,
        5e-324,
        -5e-324,
        f64::from_bits(0x000f_ffff_ffff_ffff), // the largest subnormal
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1e-7,
        -1.5e-7,
        9.999_999_999_999_999e-6,
        1e-5,
        1.000_000_000_000_001e-5,
        1e15,
        9_999_999_999_999_998.0,
        1e16,
        1.234_5e16,
        1e21,
        1e22,
        1e300,
        -1e-300,
        0.1,
        1.0 / 3.0,
        two_53 - 1.0,
        two_53,
        two_53 + 2.0,
        -(two_53 + 2.0),
        two_53 * 1024.0,
        999_999_999.999_9,
        1_000_000_000.000_1,
        0.000_1,
        -0.000_1,
        1.080_8,
        59_075.581_959_226_44,
        6.192_458_437_566_809e-10,
        23_100_393_182.0,
    ];
    let mut state = 0x5eed_f10a_7000_0001_u64;
    while values.len() < 2_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let v = f64::from_bits(state);
        if v.is_finite() {
            values.push(v);
        }
    }
    values
}

/// Names and texts with every character line protocol treats specially.
const HOSTILE: [&str; 13] = [
    "a b",
    "a,b",
    "a=b",
    "say \"hi\"",
    "back\\slash",
    "trailing\\",
    "two\nlines",
    "tab\there",
    "Ξther 💎",
    "日本",
    "=,\\ \"",
    "\\\\",
    "",
];

fn edge_points() -> Vec<Point> {
    edge_floats()
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let hostile = HOSTILE[i % HOSTILE.len()];
            Point {
                measurement: "edge".into(),
                tags: vec![
                    ("code".into(), format!("C{i}")),
                    ("name".into(), hostile.to_owned()),
                ],
                fields: vec![
                    ("v".into(), FieldValue::Float(v)),
                    ("note".into(), FieldValue::String(hostile.to_owned())),
                    ("i".into(), FieldValue::Integer(i as i64)),
                ],
                timestamp_ms: 1_700_000_000_000 + i as i64,
            }
        })
        .collect()
}

fn field_f64(point: &Point) -> f64 {
    let FieldValue::Float(v) = point.fields[0].1 else {
        unreachable!()
    };
    v
}

/// Every edge float reads back bit for bit (-0 included) in the IOx parser and in our own reader.
#[test]
fn edge_floats_read_back_bit_for_bit_in_the_iox_parser_and_ours() {
    let points = edge_points();
    let mut body = String::new();
    let encoded = encode_points(&points, &mut body);
    assert_eq!(encoded.lines, points.len());
    for ((line, parsed), point) in body.lines().zip(parse_lines(&body)).zip(&points) {
        let v = field_f64(point);
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}: {line:?}"));
        match parsed.field_set[0].1 {
            Parsed::F64(got) => assert_eq!(got.to_bits(), v.to_bits(), "{v:e}: {line}"),
            ref other => panic!("{other:?}: {line}"),
        }
        let ours = lcw_fetcher::sink::line_protocol::parse_line(line).unwrap();
        assert_eq!(ours.fields[0].1, FieldValue::Float(v), "{line}");
        let written = line.split(" v=").nth(1).unwrap().split(',').next().unwrap();
        assert!(!written.contains(['e', 'E']), "plain decimal: {written}");
    }
}

/// The same points through the real InfluxDB 1.x: every float, tag and string comes back as
/// meant (floats exactly; InfluxDB's JSON does not keep the sign of -0).
#[test]
fn edge_floats_and_hostile_names_round_trip_through_the_real_influxd() {
    let influx = Influx::start();
    let points = edge_points();
    let mut body = String::new();
    encode_points(&points, &mut body);
    let response = ureq::post(&format!("{}/write", influx.url))
        .query("db", &influx.database)
        .query("precision", "ms")
        .send(&body)
        .unwrap();
    assert_eq!(response.status(), 204);
    let rows = influx.rows("edge");
    assert_eq!(rows.len(), points.len());
    for row in rows {
        let point = &points[row["i"].as_u64().unwrap() as usize];
        let v = field_f64(point);
        let got = row["v"].as_f64().unwrap();
        assert!(
            got.to_bits() == v.to_bits() || (got == 0.0 && v == 0.0),
            "{v:e} came back as {got:e}"
        );
        let (_, name) = &point.tags[1];
        let want = expected_tag(name);
        assert_eq!(row.get("name").and_then(|n| n.as_str()).unwrap_or(""), want);
        let FieldValue::String(note) = &point.fields[1].1 else {
            unreachable!()
        };
        assert_eq!(row["note"].as_str().unwrap(), expected_string(note));
    }
}

/// Exponent notation (`1e-7`, `1.5e+300`, `2.5E-10`) is valid line protocol in both parsers —
/// checked here, so either form would be safe; the encoder keeps the plain decimal form anyway,
/// which every release wrote.
#[test]
fn both_parsers_accept_exponent_notation() {
    let values = [
        ("1e-7", 1e-7),
        ("1.5e+300", 1.5e300),
        ("-2.5E-10", -2.5e-10),
        ("5e-324", 5e-324),
        ("1e16", 1e16),
        ("1.7976931348623157e308", f64::MAX),
    ];
    let body: String = values
        .iter()
        .enumerate()
        .map(|(i, (text, _))| format!("exp i={i}i,v={text} {}\n", 1_700_000_000_000 + i))
        .collect();
    for (parsed, (text, v)) in parse_lines(&body).zip(values) {
        let parsed = parsed.unwrap_or_else(|e| panic!("IOx refuses {text}: {e}"));
        assert!(matches!(parsed.field_set[1].1, Parsed::F64(got) if got.to_bits() == v.to_bits()));
    }
    let influx = Influx::start();
    let response = ureq::post(&format!("{}/write", influx.url))
        .query("db", &influx.database)
        .query("precision", "ms")
        .send(&body)
        .unwrap();
    assert_eq!(response.status(), 204);
    let rows = influx.rows("exp");
    assert_eq!(rows.len(), values.len());
    for row in rows {
        let (text, v) = values[row["i"].as_u64().unwrap() as usize];
        assert_eq!(row["v"].as_f64().unwrap().to_bits(), v.to_bits(), "{text}");
    }
}
