//! `/coins/list`: the top `max_coins_per_fetch` coins by rank, one call a page of
//! [`PAGE_LIMIT`]; below the credit reserve, the first page only.
//!
//! Owns the pages a tick wants, their request and reading a list of coins (element by element,
//! shared with [`super::tracked`]) into `cryptocurrency_data` points. It must not decide field
//! names (`schema`) or take a coin twice in a tick (`fetch` keeps the first, in plan order).

use super::{Ask, Context, Parsed, Planned, Source, page};
use crate::config::Settings;
use crate::lcw::{self, Coin, CoinsListRequest, Endpoint, LcwError, PAGE_LIMIT, Page};
use crate::schema;

/// The telemetry name of its calls.
pub const OPERATION: &str = "fetch_coins_list";

pub struct CoinPages;

pub static COIN_PAGES: CoinPages = CoinPages;

impl Planned for CoinPages {
    fn name(&self) -> &'static str {
        "coin_pages"
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::CoinsList
    }

    fn wants(&self, settings: &Settings, low_credits: bool) -> Vec<Ask> {
        let coins = settings.max_coins_per_fetch;
        let pages = if low_credits {
            1
        } else {
            coins.div_ceil(PAGE_LIMIT)
        };
        (0..pages)
            .map(|page| {
                let offset = page * PAGE_LIMIT;
                Ask::Page {
                    offset,
                    limit: (coins - offset).min(PAGE_LIMIT),
                }
            })
            .collect()
    }
}

impl Source for CoinPages {
    fn operation(&self) -> &'static str {
        OPERATION
    }

    /// A page is the cheapest call that carries data.
    fn is_probe(&self) -> bool {
        true
    }

    fn coins_once(&self) -> bool {
        true
    }

    fn body(&self, ask: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError> {
        let (offset, limit) = page(self.endpoint(), ask)?;
        let request = CoinsListRequest::top_by_rank(&settings.currency, offset, limit);
        lcw::request_body(self.endpoint(), &request)
    }

    fn parse(&self, _: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError> {
        read_coins(self.endpoint(), body, context)
    }
}

/// A list of coins, element by element, and its points at the answer's time.
pub(super) fn read_coins(
    endpoint: Endpoint,
    body: &[u8],
    context: &Context<'_>,
) -> Result<Parsed, LcwError> {
    let page: Page<Coin> = lcw::parse_list(endpoint, body)?;
    Ok(Parsed {
        points: page
            .items
            .iter()
            .map(|coin| schema::coin_point(coin, context.currency, context.fetched_at_ms))
            .collect(),
        skipped: page.skipped,
        ..Parsed::default()
    })
}
