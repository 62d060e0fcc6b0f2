//! The Live Coin Watch API: endpoints, request bodies, typed responses and error classification.
//!
//! Owns what goes over the wire to LCW and what comes back, and turns every failure into an
//! [`LcwError`] with a class the resilience policies act on. It must not decide *whether* to call
//! (that is the cycle's job), retry, cache or sleep, and the API key must never reach an error,
//! a log line or debug output: it only ever goes into the `x-api-key` header.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{HttpUrl, Secret};
use crate::host::{HttpClient, Timeouts, TransportError};
use crate::remote::{self, ErrorClass, USER_AGENT, mask_userinfo, retry_after, sanitize};

/// The LCW API's page limit for list endpoints.
pub const PAGE_LIMIT: u32 = 100;

/// An LCW endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Status,
    Credits,
    Overview,
    OverviewHistory,
    CoinsList,
    CoinsMap,
    CoinsSingle,
    CoinsSingleHistory,
    ExchangesList,
    ExchangesSingle,
}

impl Endpoint {
    /// Every endpoint this release knows.
    pub const ALL: [Endpoint; 10] = [
        Self::Status,
        Self::Credits,
        Self::Overview,
        Self::OverviewHistory,
        Self::CoinsList,
        Self::CoinsMap,
        Self::CoinsSingle,
        Self::CoinsSingleHistory,
        Self::ExchangesList,
        Self::ExchangesSingle,
    ];

    /// The endpoint of `path` (`None`: not one this release knows).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Status => "/status",
            Self::Credits => "/credits",
            Self::Overview => "/overview",
            Self::OverviewHistory => "/overview/history",
            Self::CoinsList => "/coins/list",
            Self::CoinsMap => "/coins/map",
            Self::CoinsSingle => "/coins/single",
            Self::CoinsSingleHistory => "/coins/single/history",
            Self::ExchangesList => "/exchanges/list",
            Self::ExchangesSingle => "/exchanges/single",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A failed LCW call. Shows the endpoint and what went wrong, never the key.
#[derive(Debug, Clone, PartialEq)]
pub enum LcwError {
    /// No response: connection failure or timeout.
    Transport {
        endpoint: Endpoint,
        error: TransportError,
    },
    /// A non-2xx response; `message` comes from LCW's JSON error body when it has one.
    Status {
        endpoint: Endpoint,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx response whose body could not be read as the endpoint's documented shape.
    Malformed { endpoint: Endpoint, detail: String },
    /// The request could not be built (a bad base URL would be caught by config first).
    Request { endpoint: Endpoint, detail: String },
    /// The call was not sent, or not sent again, for a reason of ours.
    NotSent {
        endpoint: Endpoint,
        reason: NotSentReason,
        /// The failure before it, when an attempt was made.
        after: Option<Box<LcwError>>,
    },
}

/// Why a call was not (re)sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotSentReason {
    /// The circuit breaker is open (or a half-open probe is already out).
    BreakerOpen,
    /// The rate limit's wait would not fit before the cycle deadline.
    RateLimit,
    /// Not enough time left before the cycle deadline for an attempt (or a retry).
    Deadline,
}

impl NotSentReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BreakerOpen => "breaker_open",
            Self::RateLimit => "rate_limit",
            Self::Deadline => "deadline",
        }
    }
}

impl LcwError {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Transport { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::Malformed { endpoint, .. }
            | Self::Request { endpoint, .. }
            | Self::NotSent { endpoint, .. } => *endpoint,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Transport { .. } => ErrorClass::Transient,
            Self::Status { status, .. } => match status {
                429 => ErrorClass::RateLimited,
                401 | 403 => ErrorClass::Auth,
                500..=599 => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            Self::Malformed { .. } => ErrorClass::Malformed,
            Self::Request { .. } => ErrorClass::Permanent,
            Self::NotSent { .. } => ErrorClass::NotSent,
        }
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label of the outcome for metrics: the HTTP status, or what prevented one.
    pub fn status_label(&self) -> String {
        match self {
            Self::Transport { error, .. } => match error {
                TransportError::ConnectTimeout | TransportError::Timeout => "timeout".into(),
                TransportError::Connect(_) => "connect_error".into(),
                TransportError::Other(_) => "transport_error".into(),
            },
            Self::Status { status, .. } => status.to_string(),
            Self::Malformed { .. } => "malformed".into(),
            Self::Request { .. } => "request_error".into(),
            Self::NotSent { reason, .. } => reason.as_str().into(),
        }
    }
}

impl fmt::Display for LcwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A transport error may quote the URL: no userinfo, one bounded line.
            Self::Transport { endpoint, error } => write!(
                f,
                "LCW {endpoint}: {}",
                sanitize(&mask_userinfo(&error.to_string()))
            ),
            Self::Status {
                endpoint,
                status,
                message,
                ..
            } => write!(f, "LCW {endpoint}: HTTP {status}: {message}"),
            Self::Malformed { endpoint, detail } => {
                write!(f, "LCW {endpoint}: unexpected response body: {detail}")
            }
            Self::Request { endpoint, detail } => {
                write!(f, "LCW {endpoint}: cannot build request: {detail}")
            }
            Self::NotSent {
                endpoint,
                reason,
                after,
            } => {
                let why = match reason {
                    NotSentReason::BreakerOpen => "circuit breaker open",
                    NotSentReason::RateLimit => "rate limit wait would pass the cycle deadline",
                    NotSentReason::Deadline => "no time left before the cycle deadline",
                };
                match after {
                    None => write!(f, "LCW {endpoint}: not sent: {why}"),
                    Some(last) => write!(f, "{last}; not retried: {why}"),
                }
            }
        }
    }
}

impl std::error::Error for LcwError {}

/// Relative price changes as LCW gives them: ratios, 1 means unchanged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Delta {
    #[serde(default, deserialize_with = "number")]
    pub hour: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub day: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub week: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub month: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub quarter: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub year: Option<f64>,
}

/// One coin of `/coins/list`, `/coins/map` or `/coins/single`. The meta fields are present with
/// `meta: true`. `/coins/single` answers without `code`: [`Client::coin_single`] fills it in.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coin {
    #[serde(default)]
    pub code: String,
    #[serde(default, deserialize_with = "bounded_name")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "number")]
    pub rank: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub rate: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub cap: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub liquidity: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub circulating_supply: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub total_supply: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub max_supply: Option<f64>,
    #[serde(default, rename = "allTimeHighUSD", deserialize_with = "number")]
    pub all_time_high_usd: Option<f64>,
    #[serde(default)]
    pub delta: Option<Delta>,
}

/// The whole market, `/overview`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    #[serde(default, deserialize_with = "number")]
    pub cap: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub liquidity: Option<f64>,
    /// A 0–1 fraction.
    #[serde(default, deserialize_with = "number")]
    pub btc_dominance: Option<f64>,
}

/// `/status`: an empty object when the API is up.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Status {}

/// `/credits`: the day's credits (reset at 00:00 UTC).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsAnswer {
    #[serde(default, deserialize_with = "number")]
    pub daily_credits_remaining: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub daily_credits_limit: Option<f64>,
}

/// One sample of `/overview/history`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverviewSample {
    #[serde(default, deserialize_with = "number")]
    pub date: Option<f64>,
    #[serde(flatten)]
    pub overview: Overview,
}

/// Body of `/overview/history`; `start` and `end` in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverviewHistoryRequest<'a> {
    pub currency: &'a str,
    pub start: i64,
    pub end: i64,
}

/// One sample of `/coins/single/history`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HistorySample {
    #[serde(default, deserialize_with = "number")]
    pub date: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub rate: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub cap: Option<f64>,
}

/// `/coins/single/history`: the coin's meta fields and its 5-minute samples.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CoinHistory {
    #[serde(flatten)]
    pub coin: Coin,
    /// Samples that do not read (a wrong type) are left out, not the whole answer.
    #[serde(default, deserialize_with = "readable_elements")]
    pub history: Vec<HistorySample>,
}

/// One exchange of `/exchanges/list` or `/exchanges/single`; meta adds the name and flags.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    pub code: String,
    #[serde(default, deserialize_with = "bounded_name")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "number")]
    pub markets: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub bid_total: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub ask_total: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub depth: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub visitors: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub volume_per_visitor: Option<f64>,
    #[serde(default)]
    pub centralized: Option<bool>,
    #[serde(default)]
    pub us_compliant: Option<bool>,
}

/// The longest name kept, in bytes: LCW's longest are a few dozen; a name is a tag of every
/// point and is kept in the state document, so one of a megabyte must not get in.
pub const NAME_LIMIT: usize = 200;

/// The longest code an element may have, in bytes: a code is a series' identity, so it is never
/// cut; an element with a longer one is skipped (`invalid_value`).
pub const CODE_LIMIT: usize = 64;

/// A name as LCW sends it, made safe where it comes in: one line, secrets redacted, cut to
/// [`NAME_LIMIT`] bytes.
fn bounded_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?;
    Ok(name.map(|n| crate::remote::sanitize_to(&n, NAME_LIMIT)))
}

/// A list whose unreadable elements are left out.
fn readable_elements<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    // Raw text read as every list element is (`from_str`, see `parse_list`): one instantiation
    // of each element's reader in the wasm build, not a second one over `Value`.
    let raw: Vec<Box<serde_json::value::RawValue>> = Deserialize::deserialize(deserializer)?;
    Ok(raw
        .iter()
        .filter_map(|element| serde_json::from_str(element.get()).ok())
        .collect())
}

/// `/overview/history`'s samples; those that do not read are left out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct OverviewHistory(
    #[serde(deserialize_with = "readable_elements")] pub Vec<OverviewSample>,
);

/// `-0.0` as `0.0`: a signed zero says nothing a zero does not, and SQLite's REAL columns keep
/// a whole float as an integer, so the store would give back `0.0` where InfluxDB kept `-0`. A
/// zero enters as the one zero every sink stores bit for bit.
fn unsigned_zero(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// A number as LCW may send it: a JSON number, a number in a string (`"1.5"`, read exactly as
/// that number), or null. A string that is not a finite number is an error of its element.
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct Number;
    impl<'de> serde::de::Visitor<'de> for Number {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, a number in a string, or null")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(unsigned_zero(v)))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(unsigned_zero(n))),
                // Said as serde says any wrong type: `invalid type: string "big"`.
                _ => Err(E::invalid_type(serde::de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    deserializer.deserialize_any(Number)
}

/// A list element that could not be read, and why (`reason` is a metric label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `out_of_range`, `invalid_type`, `invalid_value`, `missing_code` or `malformed`.
    pub reason: &'static str,
    pub detail: String,
}

/// A list answer read element by element: the good elements, and the ones skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub skipped: Vec<Skipped>,
}

/// An element of a list answer, which must name what it is.
pub trait Listed {
    fn code(&self) -> &str;
}

impl Listed for Coin {
    fn code(&self) -> &str {
        &self.code
    }
}

impl Listed for Exchange {
    fn code(&self) -> &str {
        &self.code
    }
}

/// Parses a 2xx list answer element by element: a body that is not a JSON array is malformed
/// as a whole; an element that is not a readable `T` with a code is skipped and said why, and
/// the others are kept.
pub fn parse_list<T: for<'de> Deserialize<'de> + Listed>(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Page<T>, LcwError> {
    // Raw elements: only the JSON syntax is checked here, no number is converted yet.
    let elements: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| LcwError::Malformed {
            endpoint,
            detail: sanitize(&e.to_string()),
        })?;
    let mut page = Page {
        items: Vec::with_capacity(elements.len()),
        skipped: Vec::new(),
    };
    for (index, element) in elements.iter().enumerate() {
        // A raw element is text already checked as UTF-8: read as `&str`, serde does not check
        // every string of it again, as `from_slice` would (5 % of a 200-coin tick natively).
        match serde_json::from_str::<T>(element.get()) {
            Ok(item) if item.code().trim().is_empty() => page.skipped.push(Skipped {
                reason: "missing_code",
                detail: format!("element {index} has no code"),
            }),
            Ok(item) if item.code().len() > CODE_LIMIT => page.skipped.push(Skipped {
                reason: "invalid_value",
                detail: format!(
                    "element {index}: a code of {} bytes, over the {CODE_LIMIT} kept",
                    item.code().len()
                ),
            }),
            Ok(item) => page.items.push(item),
            Err(error) => {
                let text = error.to_string();
                let reason = if text.starts_with("missing field `code`") {
                    "missing_code"
                } else if text.contains("out of range") {
                    "out_of_range"
                } else if text.starts_with("invalid type") {
                    "invalid_type"
                } else if text.starts_with("invalid value") {
                    "invalid_value"
                } else {
                    "malformed"
                };
                page.skipped.push(Skipped {
                    reason,
                    detail: sanitize(&format!("element {index}: {text}")),
                });
            }
        }
    }
    Ok(page)
}

/// Body of `/coins/list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoinsListRequest<'a> {
    pub currency: &'a str,
    pub sort: &'a str,
    pub order: &'a str,
    pub offset: u32,
    pub limit: u32,
    pub meta: bool,
}

impl<'a> CoinsListRequest<'a> {
    /// The top coins by rank, one page.
    pub fn top_by_rank(currency: &'a str, offset: u32, limit: u32) -> Self {
        Self {
            currency,
            sort: "rank",
            order: "ascending",
            offset,
            limit: limit.min(PAGE_LIMIT),
            meta: true,
        }
    }
}

/// Body of `/coins/map`: chosen coins in one call (`limit` 0 = all of `codes`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoinsMapRequest<'a> {
    pub codes: &'a [String],
    pub currency: &'a str,
    pub sort: &'a str,
    pub order: &'a str,
    pub offset: u32,
    pub limit: u32,
    pub meta: bool,
}

impl<'a> CoinsMapRequest<'a> {
    pub fn codes(currency: &'a str, codes: &'a [String]) -> Self {
        Self {
            codes,
            currency,
            sort: "rank",
            order: "ascending",
            offset: 0,
            limit: 0,
            meta: true,
        }
    }
}

/// Body of `/coins/single` and `/exchanges/single`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SingleRequest<'a> {
    pub currency: &'a str,
    pub code: &'a str,
    pub meta: bool,
}

/// Body of `/coins/single/history`; `start` and `end` in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoinHistoryRequest<'a> {
    pub currency: &'a str,
    pub code: &'a str,
    pub start: i64,
    pub end: i64,
    pub meta: bool,
}

/// Body of `/exchanges/list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExchangesListRequest<'a> {
    pub currency: &'a str,
    pub sort: &'a str,
    pub order: &'a str,
    pub offset: u32,
    pub limit: u32,
    pub meta: bool,
}

impl<'a> ExchangesListRequest<'a> {
    /// The top exchanges by volume, one page.
    pub fn top_by_volume(currency: &'a str, limit: u32) -> Self {
        Self {
            currency,
            sort: "volume",
            order: "descending",
            offset: 0,
            limit: limit.min(PAGE_LIMIT),
            meta: true,
        }
    }
}

/// Body of endpoints that take only a currency (`/overview`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrencyRequest<'a> {
    pub currency: &'a str,
}

/// Body of endpoints that take nothing (`/status`, `/credits`): an empty JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NoParameters {}

/// Sends LCW requests through the host's HTTP port.
pub struct Client<'a, H> {
    http: &'a H,
    base_url: &'a HttpUrl,
    api_key: &'a Secret,
    /// LCW's clock, from the `Date` header of the last answer that had one.
    date_ms: Cell<Option<i64>>,
}

impl<'a, H: HttpClient> Client<'a, H> {
    pub fn new(http: &'a H, base_url: &'a HttpUrl, api_key: &'a Secret) -> Self {
        Self {
            http,
            base_url,
            api_key,
            date_ms: Cell::new(None),
        }
    }

    /// LCW's clock as its last answer with a `Date` header gave it (Unix milliseconds).
    pub fn remote_clock_ms(&self) -> Option<i64> {
        self.date_ms.get()
    }

    pub async fn status(&self, timeouts: Timeouts) -> Result<Status, LcwError> {
        self.call(Endpoint::Status, &NoParameters {}, timeouts)
            .await
    }

    pub async fn credits(&self, timeouts: Timeouts) -> Result<CreditsAnswer, LcwError> {
        self.call(Endpoint::Credits, &NoParameters {}, timeouts)
            .await
    }

    pub async fn overview(
        &self,
        request: &CurrencyRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Overview, LcwError> {
        self.call(Endpoint::Overview, request, timeouts).await
    }

    pub async fn coins_list(
        &self,
        request: &CoinsListRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Vec<Coin>, LcwError> {
        self.call(Endpoint::CoinsList, request, timeouts).await
    }

    pub async fn coins_map(
        &self,
        request: &CoinsMapRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Vec<Coin>, LcwError> {
        self.call(Endpoint::CoinsMap, request, timeouts).await
    }

    /// `/coins/single`, with `code` filled in from the request (the answer has none).
    pub async fn coin_single(
        &self,
        request: &SingleRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Coin, LcwError> {
        let mut coin: Coin = self.call(Endpoint::CoinsSingle, request, timeouts).await?;
        if coin.code.is_empty() {
            request.code.clone_into(&mut coin.code);
        }
        Ok(coin)
    }

    pub async fn coin_history(
        &self,
        request: &CoinHistoryRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<CoinHistory, LcwError> {
        let mut history: CoinHistory = self
            .call(Endpoint::CoinsSingleHistory, request, timeouts)
            .await?;
        if history.coin.code.is_empty() {
            request.code.clone_into(&mut history.coin.code);
        }
        Ok(history)
    }

    pub async fn overview_history(
        &self,
        request: &OverviewHistoryRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Vec<OverviewSample>, LcwError> {
        let history: OverviewHistory = self
            .call(Endpoint::OverviewHistory, request, timeouts)
            .await?;
        Ok(history.0)
    }

    pub async fn exchanges_list(
        &self,
        request: &ExchangesListRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Vec<Exchange>, LcwError> {
        self.call(Endpoint::ExchangesList, request, timeouts).await
    }

    pub async fn exchange_single(
        &self,
        request: &SingleRequest<'_>,
        timeouts: Timeouts,
    ) -> Result<Exchange, LcwError> {
        self.call(Endpoint::ExchangesSingle, request, timeouts)
            .await
    }

    /// One POST with a JSON body, answered by JSON of type `T`.
    pub async fn call<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: Endpoint,
        body: &B,
        timeouts: Timeouts,
    ) -> Result<T, LcwError> {
        let body = request_body(endpoint, body)?;
        let answer = self.send_raw(endpoint, body, timeouts).await?;
        parse_body(endpoint, &answer)
    }

    /// One POST of an already serialised JSON body; the 2xx answer's body as it came (for the
    /// cache), or the classified failure.
    pub async fn send_raw(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        timeouts: Timeouts,
    ) -> Result<Vec<u8>, LcwError> {
        let mut builder = http::Request::post(endpoint_url(self.base_url, endpoint).as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, USER_AGENT)
            // Sized, never chunked: Spin sends a body without this header chunked, which some
            // servers and proxies refuse (411).
            .header(http::header::CONTENT_LENGTH, body.len());
        if endpoint != Endpoint::Status {
            builder = builder.header("x-api-key", self.api_key.expose());
        }
        // The http error would only ever say which part is invalid; never echo the header value.
        let request = builder.body(body).map_err(|_| LcwError::Request {
            endpoint,
            detail: "invalid URL or header (check lcw_base_url and lcw_api_key characters)".into(),
        })?;
        let response = self
            .http
            .send(request, timeouts)
            .await
            .map_err(|error| LcwError::Transport { endpoint, error })?;
        if let Some(date_ms) = remote::date_ms(response.headers()) {
            self.date_ms.set(Some(date_ms));
        }
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(LcwError::Status {
                endpoint,
                status,
                message: error_message(response.body(), status),
                retry_after: retry_after(response.headers()),
            });
        }
        Ok(response.into_body())
    }
}

/// Serialises a request body.
pub fn request_body<B: Serialize>(endpoint: Endpoint, body: &B) -> Result<Vec<u8>, LcwError> {
    serde_json::to_vec(body).map_err(|e| LcwError::Request {
        endpoint,
        detail: e.to_string(),
    })
}

/// `base` + endpoint path, keeping any path prefix of the base (proxies mount LCW under one).
pub fn endpoint_url(base: &HttpUrl, endpoint: Endpoint) -> String {
    base.join(endpoint.path())
}

/// Parses a 2xx body, naming the endpoint and the position of the first mismatch.
pub fn parse_body<T: for<'de> Deserialize<'de>>(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<T, LcwError> {
    serde_json::from_slice(body).map_err(|e| LcwError::Malformed {
        endpoint,
        // serde quotes the offending value, which may be anything LCW sent.
        detail: sanitize(&e.to_string()),
    })
}

/// Bytes of a non-JSON error body looked at (the text kept is shorter still).
const TEXT_BYTES: usize = crate::remote::TEXT_LIMIT;

/// The `description` of LCW's `{"error":{…}}` body, else a short, printable excerpt of the body.
fn error_message(body: &[u8], status: u16) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        description: Option<String>,
    }
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) {
        // Untrusted: bounded, one line, before it reaches a log, a record or a route.
        match (error.status, error.description) {
            (Some(s), Some(d)) => return sanitize(&format!("{s}: {d}")),
            (None, Some(d)) | (Some(d), None) => return sanitize(&d),
            (None, None) => {}
        }
    }
    let text = sanitize(&String::from_utf8_lossy(
        &body[..body.len().min(4 * TEXT_BYTES)],
    ));
    if text.is_empty() {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no body")
            .to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_classified() {
        let err = |status| LcwError::Status {
            endpoint: Endpoint::Overview,
            status,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(err(503).class(), ErrorClass::Transient);
        assert_eq!(err(500).class(), ErrorClass::Transient);
        assert_eq!(err(429).class(), ErrorClass::RateLimited);
        assert_eq!(err(401).class(), ErrorClass::Auth);
        assert_eq!(err(403).class(), ErrorClass::Auth);
        assert_eq!(err(400).class(), ErrorClass::Permanent);
        assert_eq!(err(404).class(), ErrorClass::Permanent);
    }

    #[test]
    fn lcw_error_body_becomes_the_message() {
        let body =
            br#"{"error":{"code":429,"status":"Too Many Requests","description":"Slow down!"}}"#;
        assert_eq!(error_message(body, 429), "Too Many Requests: Slow down!");
        assert_eq!(error_message(b"", 502), "Bad Gateway");
        assert_eq!(
            error_message(b"<html>\nboom</html>", 500),
            "<html> boom</html>"
        );
    }

    #[test]
    fn endpoint_url_keeps_a_proxy_prefix() {
        let base = HttpUrl::parse("http://127.0.0.1:9000/lcw/").unwrap();
        assert_eq!(
            endpoint_url(&base, Endpoint::CoinsList).as_str(),
            "http://127.0.0.1:9000/lcw/coins/list"
        );
        let base = HttpUrl::parse("https://api.livecoinwatch.com").unwrap();
        assert_eq!(
            endpoint_url(&base, Endpoint::Overview).as_str(),
            "https://api.livecoinwatch.com/overview"
        );
    }

    #[test]
    fn malformed_body_names_endpoint_and_position() {
        let err =
            parse_body::<Vec<Coin>>(Endpoint::CoinsList, br#"[{"code":"BTC","rate":"high"}]"#)
                .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("LCW /coins/list: unexpected response body"),
            "{text}"
        );
        assert!(text.contains("column"), "{text}");
        assert_eq!(err.class(), ErrorClass::Malformed);
    }

    #[test]
    fn nulls_and_unknown_fields_are_accepted() {
        let coins: Vec<Coin> = parse_body(
            Endpoint::CoinsList,
            br#"[{"code":"X","rate":1.5,"totalSupply":null,"newField":{"a":1},"allTimeHighUSD":2}]"#,
        )
        .unwrap();
        assert_eq!(coins[0].total_supply, None);
        assert_eq!(coins[0].all_time_high_usd, Some(2.0));
        assert_eq!(coins[0].delta, None);
    }
}
