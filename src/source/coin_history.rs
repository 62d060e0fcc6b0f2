//! `/coins/single/history`: one coin's 5-minute samples over a range, for the backfill (a live
//! tick wants none).
//!
//! Owns that call, its request and reading its answer into `cryptocurrency_data` points at the
//! samples' own times, named as the live series are (the answer's name, else the one known this
//! tick). It must not choose the ranges or trim the points to them (`backfill`), or decide field
//! names (`schema`).

use super::{Ask, Context, Parsed, Planned, Source, wrong_ask};
use crate::config::Settings;
use crate::lcw::{self, CoinHistory, CoinHistoryRequest, Endpoint, LcwError};
use crate::schema;

/// The telemetry name its calls would have: the backfill does not time its calls (the guard
/// counts them by endpoint).
pub const OPERATION: &str = "fetch_coin_history";

pub struct CoinHistorySource;

pub static COIN_HISTORY: CoinHistorySource = CoinHistorySource;

impl Planned for CoinHistorySource {
    fn name(&self) -> &'static str {
        "coin_history"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::CoinsSingleHistory
    }

    fn wants(&self, _: &Settings, _: bool) -> Vec<Ask> {
        Vec::new()
    }
}

impl Source for CoinHistorySource {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn body(&self, ask: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let Ask::CoinRange {
            code,
            from_ms,
            to_ms,
        } = ask
        else {
            return Err(wrong_ask(self.endpoint()));
        };
        let request = CoinHistoryRequest {
            currency: &settings.currency,
            code,
            start: *from_ms,
            end: *to_ms,
            // The name comes with it, so the points join the live series (tag `name`) even
            // for a coin this collector does not watch.
            meta: true,
        };
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, ask: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        let Ask::CoinRange { code, .. } = ask else {
            return Err(wrong_ask(self.endpoint()));
        };
        let answer: CoinHistory = lcw::parse_body(self.endpoint(), body)?;
        let name = answer
            .coin
            .name
            .as_deref()
            .or(context.names.get(code).map(String::as_str));
        Ok(Parsed {
            points: answer
                .history
                .iter()
                .filter_map(|s| schema::coin_history_point(code, name, context.currency, s))
                .collect(),
            ..Parsed::default()
        })
    }
}
