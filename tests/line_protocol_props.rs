//! Item 3: every line the encoder writes parses — in InfluxDB 3's parser (the IOx
//! `influxdb-line-protocol` crate) and in the real InfluxDB 1.x — to the tags and fields that were
//! meant, whatever UTF-8 a name or code holds.
//!
//! The meaning of a name, written here as the specification rather than as the encoder's code:
//! control characters (tab, newline…) read as spaces; a backslash stays where an ordinary
//! character follows it, and is left out where it would escape something (before another
//! backslash, a comma, an equals sign, a space) or end the text; a tag whose value is then
//! empty is left out.

mod support;

use influxdb_line_protocol::{FieldValue as Parsed, parse_lines};
use lcw_fetcher::influx::line_protocol::{FieldValue, Point, encode_points};
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
        measurement: "cryptocurrency_data",
        tags: vec![
            ("code", code.to_owned()),
            ("name", name.to_owned()),
            ("currency", "USD".to_owned()),
        ],
        fields: vec![
            ("rate", FieldValue::Float(rate)),
            ("volume", FieldValue::Float(volume)),
            ("note", FieldValue::String(text.to_owned())),
            ("rank", FieldValue::Integer(at)),
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
            let got = row.get(*key).and_then(|v| v.as_str()).unwrap_or("");
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
