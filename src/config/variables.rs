//! The variable table: every application variable the code reads, once — its name, default,
//! whether it is secret, the values it takes (its kind, with its limits) and what it means.
//!
//! The reader validates each value through its row, `Settings::from_lookup` names rows (not
//! strings), and `spin.toml`, `spin.http.toml` and `docs/configuration.md` are generated from
//! the table (`tests/repository/generated.rs` fails until they are). This module only describes:
//! it must not read or validate a value.

use self::Kind::{Choice, Code, CodeList, Delay, Flag, Number, Text, Url, UrlOrEmpty};

/// One application variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// `None`: required, there is no sensible default.
    pub default: Option<&'static str>,
    /// Its value is never shown (errors print a mask) and Spin keeps it as a secret.
    pub secret: bool,
    pub kind: Kind,
}

/// The values a variable takes. The reader accepts exactly these; the docs show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text, trimmed.
    Text,
    /// A whole number from `min` to `max` (limits are `u32`, which keeps the table small in the
    /// components; a value read may be a `u64`).
    Number { min: u32, max: u32 },
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`), in any case.
    Flag,
    /// One of these words, in any case.
    Choice(&'static [&'static str]),
    /// An `http://` or `https://` URL with a host and no query or fragment.
    Url,
    /// Such a URL, or empty for none.
    UrlOrEmpty,
    /// A coin or currency code (`normalize_code`).
    Code,
    /// Codes separated by commas, deduplicated, at most `max`; `why` says where that limit is from.
    CodeList { max: u16, why: &'static str },
    /// `auto`, `0` or `off` (never), or milliseconds from `min` to `max`.
    Delay { min: u32, max: u32 },
}

impl Variable {
    /// The default of a [`Kind::Number`] row.
    pub fn default_number(&self) -> u64 {
        self.default
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("`{}` has no numeric default", self.name))
    }
}

impl Kind {
    /// The values it takes, as `docs/configuration.md` shows them.
    pub fn allowed(&self) -> String {
        let words = |words: &[&str]| {
            let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
            quoted.join(", ")
        };
        match self {
            Text => "text".to_owned(),
            Number { min, max } => format!("{min} to {max}"),
            Flag => words(&["true", "false"]),
            Choice(choices) => words(choices),
            Url => "an http(s) URL".to_owned(),
            UrlOrEmpty => "an http(s) URL, or empty".to_owned(),
            Code => "a code".to_owned(),
            CodeList { max, .. } => format!("up to {max} codes, comma-separated"),
            Delay { min, max } => format!("`auto`, `0` (off), or {min} to {max} ms"),
        }
    }
}

/// `default!(required)` is no default; `default!("x")` is `x`.
macro_rules! default {
    (required) => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

/// `secret!(secret)` or `secret!(plain)`.
macro_rules! secret {
    (secret) => {
        true
    };
    (plain) => {
        false
    };
}

/// Defines [`VARIABLES`] in the rows' order, one constant per row that refers into it (one copy
/// of a row, however many places name it), and [`MEANINGS`] beside it.
macro_rules! variables {
    ($($row:ident: $name:literal, $default:tt, $secret:tt, $kind:expr, $meaning:literal;)*) => {
        /// The rows' places in [`VARIABLES`].
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Row {
            $($row),*
        }
        /// Every variable the code reads, in the order the docs and `spin.toml` list them.
        pub static VARIABLES: &[Variable] = &[$(
            Variable {
                name: $name,
                default: default!($default),
                secret: secret!($secret),
                kind: $kind,
            }
        ),*];
        $(
            #[doc = $meaning]
            pub const $row: &Variable = &VARIABLES[Row::$row as usize];
            const _: () = assert!(names_match(stringify!($row), $name), "row and name differ");
        )*
        /// What each of [`VARIABLES`] means, in its order: text for people, which only the docs'
        /// generator reads, so it stays out of the wasm components.
        pub const MEANINGS: &[&str] = &[$($meaning),*];
    };
}

/// `LCW_API_KEY` names `lcw_api_key`: a row's constant is its name in capitals.
const fn names_match(row: &str, name: &str) -> bool {
    let (row, name) = (row.as_bytes(), name.as_bytes());
    if row.len() != name.len() {
        return false;
    }
    let mut i = 0;
    while i < row.len() {
        if row[i] != name[i].to_ascii_uppercase() {
            return false;
        }
        i += 1;
    }
    true
}

const TTL: Kind = Number {
    min: 1,
    max: 86_400,
};
const TIMEOUT_MS: Kind = Number {
    min: 100,
    max: 600_000,
};
const BACKOFF_MS: Kind = Number {
    min: 1,
    max: 600_000,
};

// One variable a row: name, default (or `required`), secret or plain, kind, meaning.
variables! {
    LCW_API_KEY: "lcw_api_key", required, secret, Text,
        "Live Coin Watch API key";
    LCW_BASE_URL: "lcw_base_url", "https://api.livecoinwatch.com", plain, Url,
        "LCW endpoint (a fake or proxy in tests)";
    CURRENCY: "currency", "USD", plain, Code,
        "quote currency for every call";
    MAX_COINS_PER_FETCH: "max_coins_per_fetch", "100", plain, Number { min: 1, max: 1_000 },
        "top coins by rank per tick (paged by 100)";
    TRACKED_COINS: "tracked_coins", "BTC,ETH", plain,
        CodeList { max: 100, why: "one /coins/map call" },
        "coins always fetched via /coins/map";
    MAX_EXCHANGES_PER_FETCH: "max_exchanges_per_fetch", "20", plain, Number { min: 0, max: 100 },
        "top exchanges per exchanges refresh";
    REQUESTS_PER_MINUTE: "requests_per_minute", "60", plain, Number { min: 1, max: 6_000 },
        "shared LCW request budget";
    CYCLE_DEADLINE_MS: "cycle_deadline_ms", "45000", plain,
        Number { min: 1_000, max: 3_600_000 },
        "hard end of a tick, below the cron interval";
    CYCLE_INTERVAL_S: "cycle_interval_s", "60", plain, Number { min: 1, max: 86_400 },
        "seconds between ticks (the cron schedule), for the daily credit plan";
    LCW_CONNECT_TIMEOUT_MS: "lcw_connect_timeout_ms", "10000", plain, TIMEOUT_MS,
        "connect timeout of one LCW call";
    LCW_FIRST_BYTE_TIMEOUT_MS: "lcw_first_byte_timeout_ms", "10000", plain, TIMEOUT_MS,
        "an LCW call with no answer started by then is given up (and retried)";
    LCW_RESPONSE_TIMEOUT_MS: "lcw_response_timeout_ms", "30000", plain, TIMEOUT_MS,
        "whole-response timeout of one LCW call";
    LCW_HEDGE_AFTER_MS: "lcw_hedge_after_ms", "auto", plain, Delay { min: 1, max: 600_000 },
        "a second copy of an LCW request still unanswered after this: `auto` (the p93 of recent latencies), `0` (never) or milliseconds";
    RETRY_BASE_MS: "retry_base_ms", "2000", plain, BACKOFF_MS,
        "first retry's backoff ceiling (full jitter below it)";
    RETRY_CAP_MS: "retry_cap_ms", "8000", plain, BACKOFF_MS,
        "largest backoff ceiling";
    RETRY_MAX: "retry_max", "3", plain, Number { min: 0, max: 10 },
        "retries after the first attempt (transient and 429 only)";
    BREAKER_FAILURE_THRESHOLD: "breaker_failure_threshold", "5", plain,
        Number { min: 1, max: 1_000 },
        "consecutive transient failures that open the breaker";
    BREAKER_COOL_DOWN_S: "breaker_cool_down_s", "30", plain, Number { min: 1, max: 86_400 },
        "seconds the breaker stays open before one probe (below the tick interval, so the next tick probes)";
    CREDIT_RESERVE_PERCENT: "credit_reserve_percent", "5", plain, Number { min: 0, max: 100 },
        "below this share of the daily credits, optional calls stop";
    CACHE_TTL_STATUS_S: "cache_ttl_status_s", "120", plain, TTL,
        "seconds between /status checks";
    CACHE_TTL_CREDITS_S: "cache_ttl_credits_s", "300", plain, TTL,
        "seconds between /credits reads";
    CACHE_TTL_COIN_SINGLE_S: "cache_ttl_coin_single_s", "60", plain, TTL,
        "cache TTL of /coins/single answers";
    CACHE_TTL_COINS_LIST_S: "cache_ttl_coins_list_s", "60", plain, TTL,
        "cache TTL of /coins/list and /coins/map answers";
    CACHE_TTL_OVERVIEW_S: "cache_ttl_overview_s", "60", plain, TTL,
        "cache TTL of /overview answers";
    CACHE_TTL_EXCHANGES_S: "cache_ttl_exchanges_s", "600", plain, TTL,
        "cache TTL of /exchanges/list answers: exchanges refresh every 10 minutes";
    CACHE_MAX_ENTRIES: "cache_max_entries", "256", plain, Number { min: 1, max: 10_000 },
        "cached answers kept at most (least recently used evicted)";
    MAX_CONCURRENT_REQUESTS: "max_concurrent_requests", "4", plain, Number { min: 1, max: 32 },
        "LCW calls of a tick in flight at once";
    BACKFILL_MIN_GAP_S: "backfill_min_gap_s", "0", plain, Number { min: 0, max: 30 * 86_400 },
        "a series without points for longer than this is backfilled from LCW's history (0: three intervals)";
    BACKFILL_CALLS_PER_TICK: "backfill_calls_per_tick", "5", plain, Number { min: 0, max: 100 },
        "history calls a tick may make for backfill, after its live calls (0: no backfill)";
    BACKFILL_TOP_COINS: "backfill_top_coins", "0", plain, Number { min: 0, max: 1_000 },
        "top coins whose gaps are backfilled too (one call per coin per range), besides `tracked_coins`";
    INITIAL_HISTORY_HOURS: "initial_history_hours", "24", plain, Number { min: 0, max: 24 * 30 },
        "hours of history fetched for `tracked_coins` on the very first tick";
    SINK: "sink", "auto", plain, Choice(&["auto", "sqlite", "influxdb"]),
        "where points go: `auto` (`influxdb` when `influx_url` is set, else `sqlite`), `sqlite` (Spin's embedded database) or `influxdb`";
    SQLITE_RETENTION_DAYS: "sqlite_retention_days", "30", plain, Number { min: 1, max: 3_650 },
        "days of data the SQLite store keeps (older rows are deleted by the collector)";
    INFLUX_URL: "influx_url", "", plain, UrlOrEmpty,
        "InfluxDB base URL (empty: no InfluxDB)";
    INFLUX_API: "influx_api", "v2", plain, Choice(&["v1", "v2", "v3"]),
        "InfluxDB write API: v1, v2 or v3";
    INFLUX_TOKEN: "influx_token", "", secret, Text,
        "InfluxDB token (required with v2; v3 and v1 when set)";
    INFLUX_ORG: "influx_org", "", plain, Text,
        "InfluxDB v2 organisation, by name or ID (required with v2)";
    INFLUX_BUCKET: "influx_bucket", "cryptocurrency_data", plain, Text,
        "InfluxDB v2 bucket";
    INFLUX_DATABASE: "influx_database", "cryptocurrency_data", plain, Text,
        "InfluxDB v1/v3 database";
    INFLUX_RETENTION_POLICY: "influx_retention_policy", "", plain, Text,
        "InfluxDB v1 retention policy (empty: the default)";
    INFLUX_USERNAME: "influx_username", "", plain, Text,
        "InfluxDB v1 user (with influx_password, when no token)";
    INFLUX_PASSWORD: "influx_password", "", secret, Text,
        "InfluxDB v1 password";
    INFLUX_BATCH_SIZE: "influx_batch_size", "1000", plain, Number { min: 1, max: 100_000 },
        "lines per write request";
    INFLUX_GZIP: "influx_gzip", "true", plain, Flag,
        "gzip-compress write bodies";
    INFLUX_TIMEOUT_MS: "influx_timeout_ms", "30000", plain, TIMEOUT_MS,
        "timeout of one InfluxDB write";
    INFLUX_CREATE_DATABASE: "influx_create_database", "true", plain, Flag,
        "InfluxDB v1: create a missing database (as Telegraf does)";
    SPOOL_MAX_POINTS: "spool_max_points", "500000", plain,
        Number { min: 1_000, max: 50_000_000 },
        "points kept in the key-value store while the sink cannot take them (oldest evicted beyond)";
    ENABLE_METRICS: "enable_metrics", "true", plain, Flag,
        "serve /metrics";
    ALERT_WARNING_S: "alert_warning_s", "30", plain, Number { min: 1, max: 86_400 },
        "an operation slower than this logs a warning alert";
    ALERT_CRITICAL_S: "alert_critical_s", "60", plain, Number { min: 1, max: 86_400 },
        "an operation slower than this logs a critical alert";
    ALERT_COOLDOWN_S: "alert_cooldown_s", "300", plain, Number { min: 0, max: 86_400 },
        "at most one alert per operation in this many seconds";
    ADMIN_TOKEN: "admin_token", "", secret, Text,
        "enables admin routes; empty disables them";
}
