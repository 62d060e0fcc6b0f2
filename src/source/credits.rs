//! `/credits`: the day's credits, asked every tick (the cache keeps the answer for its TTL).
//!
//! Owns the credits call and reading its answer into [`Effect::Credits`]. It carries no data: it
//! must not yield points, keep the credits or warn about the plan (`fetch` takes the effect into
//! the resilience state).

use super::{Ask, Context, Effect, Parsed, Planned, Source};
use crate::config::Settings;
use crate::lcw::{self, CreditsAnswer, Endpoint, LcwError, NoParameters};

/// The telemetry name of its calls.
pub const OPERATION: &str = "api_credits_check";

pub struct Credits;

pub static CREDITS: Credits = Credits;

impl Planned for Credits {
    fn name(&self) -> &'static str {
        "credits"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Credits
    }

    fn wants(&self, _: &Settings, _: bool) -> Vec<Ask> {
        vec![Ask::Once]
    }
}

impl Source for Credits {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn carries_data(&self) -> bool {
        false
    }

    fn body(&self, _: &Ask, _: &Settings) -> Result<Vec<u8>, LcwError> {
        lcw::request_body(self.endpoint(), &NoParameters {})
    }

    fn parse(&self, _: &Ask, body: &[u8], _: &Context<'_>) -> Result<Parsed, LcwError> {
        let answer: CreditsAnswer = lcw::parse_body(self.endpoint(), body)?;
        Ok(Parsed {
            effect: Effect::Credits(answer),
            ..Parsed::default()
        })
    }
}
