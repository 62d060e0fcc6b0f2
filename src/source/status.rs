//! `/status`: whether LCW is up, asked every tick (the cache keeps the answer for its TTL).
//!
//! Owns the status call and reading its answer into [`Effect::Status`]; its failure is LCW found
//! unreachable. It carries no data: it must not yield points or write the status check itself
//! (`fetch` takes the effect into the resilience state).

use super::{Ask, Context, Effect, Parsed, Planned, Source};
use crate::config::Settings;
use crate::lcw::{self, Endpoint, LcwError, NoParameters};

/// The telemetry name of its calls.
pub const OPERATION: &str = "api_status_check";

pub struct Status;

pub static STATUS: Status = Status;

impl Planned for Status {
    fn name(&self) -> &'static str {
        "status"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Status
    }

    fn wants(&self, _: &Settings, _: bool) -> Vec<Ask> {
        vec![Ask::Once]
    }
}

impl Source for Status {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn carries_data(&self) -> bool {
        false
    }

    fn checks_reachability(&self) -> bool {
        true
    }

    fn body(&self, _: &Ask, _: &Settings) -> Result<Vec<u8>, LcwError> {
        lcw::request_body(self.endpoint(), &NoParameters {})
    }

    fn parse(&self, _: &Ask, body: &[u8], _: &Context<'_>) -> Result<Parsed, LcwError> {
        lcw::parse_body::<lcw::Status>(self.endpoint(), body)?;
        Ok(Parsed {
            effect: Effect::Status,
            ..Parsed::default()
        })
    }
}
