//! `/coins/map`: the `tracked_coins`, all in one call, every tick they are set.
//!
//! Owns that call and its request; its answer reads as a coin page's
//! ([`super::coin_pages::read_coins`]). It must not take a coin a page of the tick already
//! brought (`fetch` keeps the first, in plan order) or decide field names (`schema`).

use super::{Ask, Context, Parsed, Planned, Source, coin_pages};
use crate::config::Settings;
use crate::lcw::{self, CoinsMapRequest, Endpoint, LcwError};

/// The telemetry name of its calls.
pub const OPERATION: &str = "fetch_coins_map";

pub struct Tracked;

pub static TRACKED: Tracked = Tracked;

impl Planned for Tracked {
    fn name(&self) -> &'static str {
        "tracked"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::CoinsMap
    }

    fn wants(&self, settings: &Settings, _: bool) -> Vec<Ask> {
        if settings.tracked_coins.is_empty() {
            Vec::new()
        } else {
            vec![Ask::Once]
        }
    }
}

impl Source for Tracked {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn coins_once(&self) -> bool {
        true
    }

    fn body(&self, _: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let request = CoinsMapRequest::codes(&settings.currency, &settings.tracked_coins);
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, _: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        coin_pages::read_coins(self.endpoint(), body, context)
    }
}
