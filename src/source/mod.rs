//! The kinds of LCW data behind one trait, [`Source`]: one file each (coin pages, tracked coins,
//! overview, exchanges, status, credits, coin history, overview history), and the registry of
//! those a live tick asks for ([`LIVE`], in plan order).
//!
//! A source owns its endpoint, what a tick wants of it, its request body, how its answer is read
//! and the points it yields (through `schema`, which names measurements, tags and fields). This
//! module owns the trait, a wanted call ([`Want`]), and [`call`]: the one way a want is sent
//! through the guard and read, for the live tick and the backfill alike (one instantiation of the
//! guard's call in the component). A source must not cache, plan the credits, deliver points or
//! touch the store; `plan`, `fetch` and `backfill` ask it and do the rest.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::Settings;
use crate::guard::Guard;
use crate::host::Host;
use crate::lcw::{self, CreditsAnswer, Endpoint, LcwError, Skipped};
use crate::point::Point;

pub mod coin_history;
pub mod coin_pages;
pub mod credits;
pub mod exchanges;
pub mod overview;
pub mod overview_history;
pub mod status;
pub mod tracked;

/// What planning needs of a kind of LCW data: its endpoint and what a live tick wants of it.
/// A trait of its own, with its own registry ([`PLANNED`]), so that what only plans (the API
/// component's credit figures) does not link every source's reading code.
pub trait Planned: Sync {
    /// Its name, for debug output and tests.
    fn name(&self) -> &'static str;
    fn endpoint(&self) -> Endpoint;
    /// What a live tick wants of it (none, one or many calls), given the settings and whether
    /// the credits are at or below the reserve.
    fn wants(&self, settings: &Settings, low_credits: bool) -> Vec<Ask>;
}

/// One kind of LCW data. Used as `&'static dyn Source`: one copy of the code that drives them
/// all, whatever the number of sources.
pub trait Source: Planned {
    /// The telemetry name of its calls (`lcw_operations_total{operation}`).
    fn operation(&self) -> &'static str;
    /// The JSON body of the call `ask`.
    fn body(&self, ask: &Ask, settings: &Settings) -> Result<Vec<u8>, LcwError>;
    /// Reads a 2xx answer to `ask` (lists element by element: one bad element does not cost the
    /// answer) and builds its points.
    fn parse(&self, ask: &Ask, body: &[u8], context: &Context<'_>) -> Result<Parsed, LcwError>;
    /// Whether its failure makes a tick partial: status and credits only inform.
    fn carries_data(&self) -> bool {
        true
    }
    /// Whether a cache hit needs the answer's body. An answer that only informs is taken into
    /// account when it arrives, so a fresh entry is all a later tick needs (none is kept).
    fn needs_body(&self) -> bool {
        self.carries_data()
    }
    /// Whether a half-open breaker's probe should be this call: the cheapest that carries data.
    fn is_probe(&self) -> bool {
        false
    }
    /// Whether its points are coins that another call of the tick may bring too: a coin is then
    /// taken once, from the first want in plan order that has it.
    fn coins_once(&self) -> bool {
        false
    }
    /// Whether it checks that LCW is reachable: its failure is recorded as LCW unreachable.
    fn checks_reachability(&self) -> bool {
        false
    }
}

/// The parameters of one call of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The source's one call, whatever it needs coming from the settings.
    Once,
    /// A page of a list.
    Page { offset: u32, limit: u32 },
    /// A time range (Unix milliseconds, both ends included).
    Range { from_ms: i64, to_ms: i64 },
    /// A time range of one coin.
    CoinRange {
        code: String,
        from_ms: i64,
        to_ms: i64,
    },
}

/// What reading an answer needs besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub currency: &'a str,
    /// When the answer arrived: the time of live points.
    pub fetched_at_ms: i64,
    /// Coin names known this tick, for history answers that do not name their coin.
    pub names: &'a BTreeMap<String, String>,
}

/// An answer read: its points, the list elements skipped, and what it tells the tick.
#[derive(Debug, Default)]
pub struct Parsed {
    pub points: Vec<Point>,
    pub skipped: Vec<Skipped>,
    pub effect: Effect,
}

/// What an answer tells the tick besides its points.
#[derive(Debug, Default)]
pub enum Effect {
    #[default]
    None,
    /// LCW answered its status check.
    Status,
    /// The day's credits.
    Credits(CreditsAnswer),
}

/// One call a tick wants: a source and its parameters.
#[derive(Clone)]
pub struct Want {
    pub source: &'static dyn Source,
    pub ask: Ask,
}

impl Want {
    pub fn new(source: &'static dyn Source, ask: Ask) -> Self {
        Self { source, ask }
    }
}

impl PartialEq for Want {
    fn eq(&self, other: &Self) -> bool {
        self.source.name() == other.source.name() && self.ask == other.ask
    }
}

impl Eq for Want {}

impl fmt::Debug for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", self.source.name(), self.ask)
    }
}

/// The registries of a live tick's sources, in the order its calls are planned and started:
/// one list, written once, made into both.
macro_rules! live {
    ($($source:path),* $(,)?) => {
        /// The sources of a live tick, in plan order.
        pub static LIVE: &[&dyn Source] = &[$(&$source),*];
        /// The same, as planning sees them ([`Planned`]).
        pub static PLANNED: &[&dyn Planned] = &[$(&$source),*];
    };
}

live![
    credits::CREDITS,
    status::STATUS,
    coin_pages::COIN_PAGES,
    tracked::TRACKED,
    overview::OVERVIEW,
    exchanges::EXCHANGES,
];

/// A 2xx answer, read, with its body as it came (for the cache).
pub struct Answer {
    pub parsed: Parsed,
    pub raw: Vec<u8>,
    /// When it arrived (also `parsed`'s `context.fetched_at_ms`).
    pub fetched_at_ms: i64,
}

/// Sends `want` (its `body` already built) through the guard and reads the answer inside the
/// attempt: an answer that does not read is a failed attempt, as the guard counts it. The
/// answer is read at the time it arrived, whatever `context.fetched_at_ms` said.
pub async fn call<H: Host>(
    host: &H,
    guard: &Guard<'_, H>,
    client: &lcw::Client<'_, H>,
    want: &Want,
    body: &[u8],
    context: Context<'_>,
) -> Result<Answer, LcwError> {
    let endpoint = want.source.endpoint();
    guard
        .call(endpoint, |timeouts| async move {
            let raw = client.send_raw(endpoint, body.to_vec(), timeouts).await?;
            let context = Context {
                fetched_at_ms: host.unix_millis(),
                ..context
            };
            let parsed = want.source.parse(&want.ask, &raw, &context)?;
            Ok(Answer {
                parsed,
                raw,
                fetched_at_ms: context.fetched_at_ms,
            })
        })
        .await
}

/// The parameters of `ask` when it is a page (a source asked with another kind is given a
/// request error rather than a wrong call).
fn page(endpoint: Endpoint, ask: &Ask) -> Result<(u32, u32), LcwError> {
    match ask {
        Ask::Page { offset, limit } => Ok((*offset, *limit)),
        _ => Err(wrong_ask(endpoint)),
    }
}

fn wrong_ask(endpoint: Endpoint) -> LcwError {
    LcwError::Request {
        endpoint,
        detail: "parameters of another kind of call".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;

    fn settings() -> Settings {
        Settings::from_pairs(&[
            ("lcw_api_key", "k"),
            ("influx_org", "o"),
            ("influx_token", "t"),
            ("tracked_coins", "BTC,ETH"),
            ("max_exchanges_per_fetch", "20"),
        ])
        .unwrap()
    }

    fn key(source: &dyn Source, ask: &Ask) -> String {
        cache::key(source.endpoint(), &source.body(ask, &settings()).unwrap())
    }

    #[test]
    fn requests_are_those_of_earlier_releases() {
        // The cache keys of earlier releases' state documents (tests/fixtures/release-1): a
        // request that changed by a byte would miss every cached answer.
        let keys: Vec<String> = LIVE
            .iter()
            .flat_map(|s| {
                s.wants(&settings(), false)
                    .into_iter()
                    .map(move |a| key(*s, &a))
            })
            .collect();
        assert_eq!(
            keys,
            [
                "/credits|{}",
                "/status|{}",
                r#"/coins/list|{"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":100,"meta":true}"#,
                r#"/coins/map|{"codes":["BTC","ETH"],"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":0,"meta":true}"#,
                r#"/overview|{"currency":"USD"}"#,
                r#"/exchanges/list|{"currency":"USD","sort":"volume","order":"descending","offset":0,"limit":20,"meta":true}"#,
            ]
        );
        let coin = Ask::CoinRange {
            code: "BTC".into(),
            from_ms: 1,
            to_ms: 2,
        };
        assert_eq!(
            key(&coin_history::COIN_HISTORY, &coin),
            r#"/coins/single/history|{"currency":"USD","code":"BTC","start":1,"end":2,"meta":true}"#
        );
        let range = Ask::Range {
            from_ms: 1,
            to_ms: 2,
        };
        assert_eq!(
            key(&overview_history::OVERVIEW_HISTORY, &range),
            r#"/overview/history|{"currency":"USD","start":1,"end":2}"#
        );
    }

    #[test]
    fn a_call_of_another_kind_is_a_request_error() {
        let error = exchanges::EXCHANGES
            .body(&Ask::Once, &settings())
            .unwrap_err();
        assert!(matches!(error, LcwError::Request { .. }), "{error}");
        let error = coin_history::COIN_HISTORY
            .body(
                &Ask::Range {
                    from_ms: 1,
                    to_ms: 2,
                },
                &settings(),
            )
            .unwrap_err();
        assert!(matches!(error, LcwError::Request { .. }), "{error}");
    }

    #[test]
    fn an_answer_becomes_points_at_its_time_and_unreadable_elements_are_skipped() {
        let names = BTreeMap::from([("ETH".to_owned(), "Ethereum".to_owned())]);
        let context = Context {
            currency: "USD",
            fetched_at_ms: 42,
            names: &names,
        };
        let body = br#"[{"code":"BTC","rate":1.5},{"code":"ETH","rate":"high"}]"#;
        let parsed = coin_pages::COIN_PAGES
            .parse(&Ask::Once, body, &context)
            .unwrap();
        assert_eq!(parsed.points.len(), 1);
        assert_eq!(parsed.points[0].tag("code"), Some("BTC"));
        assert_eq!(parsed.points[0].timestamp_ms, 42);
        assert_eq!(parsed.skipped.len(), 1);
        // History: the samples' own times, and the name known this tick when LCW sends none.
        let ask = Ask::CoinRange {
            code: "ETH".into(),
            from_ms: 0,
            to_ms: 10,
        };
        let body = br#"{"history":[{"date":5,"rate":2.0},{"rate":3.0}]}"#;
        let parsed = coin_history::COIN_HISTORY
            .parse(&ask, body, &context)
            .unwrap();
        assert_eq!(parsed.points.len(), 1);
        assert_eq!(parsed.points[0].timestamp_ms, 5);
        assert_eq!(parsed.points[0].tag("name"), Some("Ethereum"));
        assert!(matches!(
            status::STATUS
                .parse(&Ask::Once, b"{}", &context)
                .unwrap()
                .effect,
            Effect::Status
        ));
    }

    #[test]
    fn both_registries_list_the_same_sources() {
        let live: Vec<&str> = LIVE.iter().map(|s| s.name()).collect();
        let planned: Vec<&str> = PLANNED.iter().map(|s| s.name()).collect();
        assert_eq!(live, planned);
    }

    #[test]
    fn sources_have_distinct_names() {
        let mut names: Vec<&str> = LIVE.iter().map(|s| s.name()).collect();
        names.extend([
            coin_history::COIN_HISTORY.name(),
            overview_history::OVERVIEW_HISTORY.name(),
        ]);
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
