//! `/exchanges/list`: the top `max_exchanges_per_fetch` exchanges by volume, one call; none when
//! that is 0 or the credits are at or below the reserve.
//!
//! Owns that call, its request and reading its answer (element by element) into `exchange_data`
//! points. It must not decide field names (`schema`).

use super::{Ask, Context, Parsed, Planned, Source, page};
use crate::config::Settings;
use crate::lcw::{self, Endpoint, Exchange, ExchangesListRequest, LcwError, Page};
use crate::schema;

/// The telemetry name of its calls.
pub const OPERATION: &str = "fetch_exchanges";

pub struct Exchanges;

pub static EXCHANGES: Exchanges = Exchanges;

impl Planned for Exchanges {
    fn name(&self) -> &'static str {
        "exchanges"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::ExchangesList
    }

    fn wants(&self, settings: &Settings, low_credits: bool) -> Vec<Ask> {
        let limit = settings.max_exchanges_per_fetch;
        if low_credits || limit == 0 {
            Vec::new()
        } else {
            vec![Ask::Page { offset: 0, limit }]
        }
    }
}

impl Source for Exchanges {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    fn body(&self, ask: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let (offset, limit) = page(self.endpoint(), ask)?;
        let request = ExchangesListRequest {
            offset,
            ..ExchangesListRequest::top_by_volume(&settings.currency, limit)
        };
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, _: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        let page: Page<Exchange> = lcw::parse_list(self.endpoint(), body)?;
        Ok(Parsed {
            points: page
                .items
                .iter()
                .map(|e| schema::exchange_point(e, context.currency, context.fetched_at_ms))
                .collect(),
            skipped: page.skipped,
            ..Parsed::default()
        })
    }
}
