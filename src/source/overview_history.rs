//! `/overview/history`: the market's 5-minute samples over a range, for the backfill (a live
//! tick wants none).
//!
//! Owns that call, its request and reading its answer into `market_overview` points at the
//! samples' own times. It must not choose the ranges or trim the points to them (`backfill`), or
//! decide field names (`schema`).

use super::{Ask, Context, Parsed, Planned, Source, wrong_ask};
use crate::config::Settings;
use crate::lcw::{self, Endpoint, LcwError, OverviewHistory, OverviewHistoryRequest};
use crate::schema;

/// The telemetry name its calls would have: the backfill does not time its calls (the guard
/// counts them by endpoint).
pub const OPERATION: &str = "fetch_overview_history";

pub struct OverviewHistorySource;

pub static OVERVIEW_HISTORY: OverviewHistorySource = OverviewHistorySource;

impl Planned for OverviewHistorySource {
    fn name(&self) -> &'static str {
        "overview_history"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::OverviewHistory
    }

    fn wants(&self, _: &Settings, _: bool) -> Vec<Ask> {
        Vec::new()
    }
}

impl Source for OverviewHistorySource {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn body(&self, ask: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let Ask::Range { from_ms, to_ms } = ask else {
            return Err(wrong_ask(self.endpoint()));
        };
        let request = OverviewHistoryRequest {
            currency: &settings.currency,
            start: *from_ms,
            end: *to_ms,
        };
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, _: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        let OverviewHistory(samples) = lcw::parse_body::<OverviewHistory>(self.endpoint(), body)?;
        Ok(Parsed {
            points: samples
                .iter()
                .filter_map(|s| schema::overview_history_point(s, context.currency))
                .collect(),
            ..Parsed::default()
        })
    }
}
