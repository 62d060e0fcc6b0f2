//! The InfluxDB schema: how LCW answers become points.
//!
//! Owns measurement, tag and field names and their types (kept compatible with the original
//! service: `cryptocurrency_data`, `market_overview`, `exchange_data`). Every number LCW gives is
//! written as a float, always, so a field never changes type; counts the original wrote as
//! integers (`rank`) stay integers. Absent values are omitted, never written as 0. It must not
//! fetch, encode or write anything.

use crate::lcw::{Coin, Exchange, HistorySample, Overview, OverviewSample};
use crate::point::{FieldValue, Point};

pub const COINS_MEASUREMENT: &str = "cryptocurrency_data";
pub const OVERVIEW_MEASUREMENT: &str = "market_overview";
pub const EXCHANGES_MEASUREMENT: &str = "exchange_data";

/// Data type labels, as in `lcw_data_points_stored_total{data_type}` and `/stats`: here, beside
/// the measurements they name, so the cycle and the telemetry share them without importing
/// each other.
pub const COINS: &str = "coins";
pub const OVERVIEW: &str = "overview";
pub const EXCHANGES: &str = "exchanges";
pub const DATA_TYPES: [&str; 3] = [COINS, OVERVIEW, EXCHANGES];

/// The data type label of a measurement (an unknown measurement is its own label).
pub fn data_type(measurement: &str) -> &str {
    match measurement {
        COINS_MEASUREMENT => COINS,
        OVERVIEW_MEASUREMENT => OVERVIEW,
        EXCHANGES_MEASUREMENT => EXCHANGES,
        other => other,
    }
}

/// `cryptocurrency_data`: tags `code`, `name`, `currency`; prices, supplies and the six deltas
/// (LCW's ratios as given: 1 means unchanged).
pub fn coin_point(coin: &Coin, currency: &str, fetched_at_ms: i64) -> Point {
    let mut tags = vec![
        ("code".into(), coin.code.clone()),
        ("currency".into(), currency.to_owned()),
    ];
    if let Some(name) = &coin.name {
        tags.push(("name".into(), name.clone()));
    }
    let mut fields = Vec::with_capacity(16);
    let mut float = |key: &'static str, value: Option<f64>| {
        if let Some(v) = value {
            fields.push((key.into(), FieldValue::Float(v)));
        }
    };
    float("rate", coin.rate);
    float("volume", coin.volume);
    float("market_cap", coin.cap);
    float("liquidity", coin.liquidity);
    float("circulating_supply", coin.circulating_supply);
    float("total_supply", coin.total_supply);
    float("max_supply", coin.max_supply);
    float("all_time_high_usd", coin.all_time_high_usd);
    if let Some(delta) = &coin.delta {
        float("delta_1h", delta.hour);
        float("delta_24h", delta.day);
        float("delta_7d", delta.week);
        float("delta_30d", delta.month);
        float("delta_90d", delta.quarter);
        float("delta_1y", delta.year);
    }
    if let Some(rank) = coin.rank.and_then(whole_number) {
        fields.push(("rank".into(), FieldValue::Integer(rank)));
    }
    Point {
        measurement: COINS_MEASUREMENT.into(),
        tags,
        fields,
        timestamp_ms: fetched_at_ms,
    }
}

/// `market_overview`: tag `currency`; market totals and BTC dominance (a 0–1 fraction).
pub fn overview_point(overview: &Overview, currency: &str, fetched_at_ms: i64) -> Point {
    let fields = [
        ("total_market_cap", overview.cap),
        ("total_volume", overview.volume),
        ("total_liquidity", overview.liquidity),
        ("btc_dominance", overview.btc_dominance),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key.into(), FieldValue::Float(v))))
    .collect();
    Point {
        measurement: OVERVIEW_MEASUREMENT.into(),
        tags: vec![("currency".into(), currency.to_owned())],
        fields,
        timestamp_ms: fetched_at_ms,
    }
}

/// A `cryptocurrency_data` point from a `/coins/single/history` sample: the same series as the
/// live points (tags `code`, `currency` and, when known, `name`) and the fields history has
/// (`rate`, `volume`, `market_cap`), at the sample's own time. `None` without a time.
pub fn coin_history_point(
    code: &str,
    name: Option<&str>,
    currency: &str,
    sample: &HistorySample,
) -> Option<Point> {
    let mut tags = vec![
        ("code".into(), code.to_owned()),
        ("currency".into(), currency.to_owned()),
    ];
    if let Some(name) = name {
        tags.push(("name".into(), name.to_owned()));
    }
    let fields = [
        ("rate", sample.rate),
        ("volume", sample.volume),
        ("market_cap", sample.cap),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key.into(), FieldValue::Float(v))))
    .collect();
    Some(Point {
        measurement: COINS_MEASUREMENT.into(),
        tags,
        fields,
        timestamp_ms: sample_time(sample.date)?,
    })
}

/// A `market_overview` point from an `/overview/history` sample, at the sample's own time.
pub fn overview_history_point(sample: &OverviewSample, currency: &str) -> Option<Point> {
    let time = sample_time(sample.date)?;
    Some(overview_point(&sample.overview, currency, time))
}

/// A sample's `date` as Unix milliseconds, if it is one.
fn sample_time(date: Option<f64>) -> Option<i64> {
    date.filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e15)
        .map(|d| d as i64)
}

/// `exchange_data`: tags `code` (upper-case), `name`, `currency`; volume, depth and the order
/// book totals as floats, `visitors` and `markets` as integers (counts, as the original wrote).
pub fn exchange_point(exchange: &Exchange, currency: &str, fetched_at_ms: i64) -> Point {
    let mut tags = vec![
        ("code".into(), exchange.code.to_uppercase()),
        ("currency".into(), currency.to_owned()),
    ];
    if let Some(name) = &exchange.name {
        tags.push(("name".into(), name.clone()));
    }
    let mut fields = Vec::with_capacity(7);
    for (key, value) in [
        ("volume", exchange.volume),
        ("volume_per_visitor", exchange.volume_per_visitor),
        ("bid_total", exchange.bid_total),
        ("ask_total", exchange.ask_total),
        ("depth", exchange.depth),
    ] {
        if let Some(v) = value {
            fields.push((key.into(), FieldValue::Float(v)));
        }
    }
    for (key, value) in [
        ("visitors", exchange.visitors),
        ("markets", exchange.markets),
    ] {
        if let Some(n) = value.and_then(whole_number) {
            fields.push((key.into(), FieldValue::Integer(n)));
        }
    }
    Point {
        measurement: EXCHANGES_MEASUREMENT.into(),
        tags,
        fields,
        timestamp_ms: fetched_at_ms,
    }
}

/// A float that is exactly a whole number in `i64` range, else `None`.
fn whole_number(value: f64) -> Option<i64> {
    (value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15).then_some(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lcw::Delta;

    #[test]
    fn coin_fields_and_tags() {
        let coin = Coin {
            code: "BTC".into(),
            name: Some("Bitcoin".into()),
            rank: Some(1.0),
            rate: Some(59075.5),
            volume: Some(23100393182.0),
            cap: None,
            liquidity: None,
            circulating_supply: Some(18669593.0),
            total_supply: None,
            max_supply: Some(21e6),
            all_time_high_usd: None,
            delta: Some(Delta {
                hour: Some(1.008),
                year: Some(0.7455),
                ..Delta::default()
            }),
        };
        let point = coin_point(&coin, "USD", 42);
        assert_eq!(
            point.tags,
            vec![
                ("code".into(), "BTC".into()),
                ("currency".into(), "USD".into()),
                ("name".into(), "Bitcoin".into())
            ]
        );
        let keys: Vec<_> = point.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            keys,
            [
                "rate",
                "volume",
                "circulating_supply",
                "max_supply",
                "delta_1h",
                "delta_1y",
                "rank"
            ]
        );
        assert_eq!(point.fields[6].1, FieldValue::Integer(1));
        assert_eq!(point.fields[1].1, FieldValue::Float(23100393182.0));
        assert_eq!(point.timestamp_ms, 42);
    }

    #[test]
    fn fractional_rank_is_not_written_as_integer() {
        assert_eq!(whole_number(3.0), Some(3));
        assert_eq!(whole_number(3.5), None);
        assert_eq!(whole_number(f64::NAN), None);
    }

    #[test]
    fn exchange_code_is_upper_case_and_counts_are_integers() {
        let exchange: Exchange = serde_json::from_str(
            r#"{"code":"binance","name":"Binance","markets":935,"volume":27523372418,"visitors":779440,"depth":null}"#,
        )
        .unwrap();
        let point = exchange_point(&exchange, "USD", 3);
        assert_eq!(point.tags[0], ("code".into(), "BINANCE".to_owned()));
        let keys: Vec<_> = point.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["volume", "visitors", "markets"]);
        assert_eq!(point.fields[1].1, FieldValue::Integer(779440));
    }

    #[test]
    fn overview_omits_absent_values() {
        let overview = Overview {
            cap: Some(1.0),
            volume: None,
            liquidity: Some(3.0),
            btc_dominance: Some(0.59),
        };
        let point = overview_point(&overview, "EUR", 7);
        let keys: Vec<_> = point.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            keys,
            ["total_market_cap", "total_liquidity", "btc_dominance"]
        );
        assert_eq!(point.tags, vec![("currency".into(), "EUR".into())]);
    }
}
