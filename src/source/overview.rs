//! `/overview`: the whole market's totals, every tick.
//!
//! Owns that call, its request and reading its answer into one `market_overview` point. It must
//! not decide field names (`schema`).

use super::{Ask, Context, Parsed, Planned, Source};
use crate::config::Settings;
use crate::lcw::{self, CurrencyRequest, Endpoint, LcwError, Overview as Answer};
use crate::schema;

/// The telemetry name of its calls.
pub const OPERATION: &str = "fetch_overview";

pub struct Overview;

pub static OVERVIEW: Overview = Overview;

impl Planned for Overview {
    fn name(&self) -> &'static str {
        "overview"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Overview
    }

    fn wants(&self, _: &Settings, _: bool) -> Vec<Ask> {
        vec![Ask::Once]
    }
}

impl Source for Overview {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn body(&self, _: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let request = CurrencyRequest {
            currency: &settings.currency,
        };
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, _: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        let overview: Answer = lcw::parse_body(self.endpoint(), body)?;
        Ok(Parsed {
            points: vec![schema::overview_point(
                &overview,
                context.currency,
                context.fetched_at_ms,
            )],
            ..Parsed::default()
        })
    }
}
