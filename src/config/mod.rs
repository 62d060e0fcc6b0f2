//! Settings: every application variable, read once per invocation and validated.
//!
//! Owns the typed [`Settings`] and each of its parts, built from the variable table
//! ([`variables`]: the one place a variable is named, with its default, limits and meaning) by
//! the [`reader`], and the rules that hold between variables. It must not perform any I/O
//! besides reading variables, and no error or debug output of it may show a secret.

use std::fmt;

use crate::host::Variables;

mod http_url;
mod reader;
pub mod variables;

pub use http_url::{HttpUrl, UrlError};
use reader::Reader;
pub use reader::{Problem, normalize_code};
use variables::*;
pub use variables::{Kind, MEANINGS, VARIABLES, Variable};

/// A string that must never be shown: `Debug` and `Display` print a mask.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The real value, for the one place that sends it (a request header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxApi {
    V1,
    V2,
    V3,
}

/// Where points are written. `auto` is resolved when the settings are read, so the rest of the
/// code only ever sees one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Spin's embedded SQLite database (`sqlite_databases = ["default"]`).
    Sqlite,
    /// InfluxDB through its write API (`influx_*`).
    Influxdb,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Influxdb => "influxdb",
        }
    }
}

/// When a second copy of a slow LCW request goes out (`lcw_hedge_after_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeAfter {
    /// Never: one copy of each attempt.
    Off,
    /// After the p93 of recently observed latencies (`hedge::HedgePolicy`).
    Auto,
    /// After this many milliseconds.
    Fixed(u64),
}

/// The embedded SQLite store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteSettings {
    /// Rows older than this many days are deleted.
    pub retention_days: u32,
}

/// Everything an invocation needs to know, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub lcw_api_key: Secret,
    pub lcw_base_url: HttpUrl,
    pub currency: String,
    pub max_coins_per_fetch: u32,
    pub tracked_coins: Vec<String>,
    pub max_exchanges_per_fetch: u32,
    pub requests_per_minute: u32,
    pub cycle_deadline_ms: u64,
    pub cycle_interval_s: u64,
    pub lcw_connect_timeout_ms: u64,
    pub lcw_first_byte_timeout_ms: u64,
    pub lcw_response_timeout_ms: u64,
    pub lcw_hedge_after: HedgeAfter,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub retry_max: u32,
    pub breaker_failure_threshold: u32,
    pub breaker_cool_down_s: u64,
    pub credit_reserve_percent: u32,
    pub cache_ttls: Ttls,
    pub cache_max_entries: u32,
    pub max_concurrent_requests: u32,
    pub backfill: BackfillSettings,
    pub sink: SinkKind,
    pub sqlite: SqliteSettings,
    pub influx: InfluxSettings,
    pub enable_metrics: bool,
    pub alert_warning_s: u64,
    pub alert_critical_s: u64,
    pub alert_cooldown_s: u64,
    pub admin_token: Secret,
}

/// How gaps in the data are found and filled from LCW's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillSettings {
    /// A series silent for longer than this has a gap (already resolved: never 0).
    pub min_gap_s: u64,
    pub calls_per_tick: u32,
    pub top_coins: u32,
    pub initial_history_hours: u64,
}

/// Seconds an answer stays fresh, per kind of LCW answer (`cache::ttl_s` maps endpoints here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub status_s: u64,
    pub credits_s: u64,
    pub coins_single_s: u64,
    pub coins_list_s: u64,
    pub overview_s: u64,
    pub exchanges_list_s: u64,
}

/// Alert thresholds of the telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub warning: std::time::Duration,
    pub critical: std::time::Duration,
    pub cool_down: std::time::Duration,
}

/// Where and how points are written to InfluxDB; the batch size, timeout and spool limit apply
/// to every sink.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxSettings {
    /// With `sink = sqlite` and no `influx_url`, a placeholder that is never called: validation
    /// makes `influxdb` require a real URL.
    pub url: HttpUrl,
    /// `influx_url` was set.
    pub configured: bool,
    pub api: InfluxApi,
    pub token: Secret,
    pub org: String,
    pub bucket: String,
    pub database: String,
    pub retention_policy: String,
    pub username: String,
    pub password: Secret,
    pub batch_size: u32,
    pub gzip: bool,
    pub timeout_ms: u64,
    pub spool_max_points: u64,
    /// v1: create a missing database (once a tick) instead of spooling.
    pub create_database: bool,
}

/// Why settings could not be built. Lists every bad variable at once, so one fix-and-retry suffices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The host could not read a variable at all.
    Unreadable {
        variable: &'static str,
        detail: String,
    },
    /// One or more values are missing or invalid.
    Invalid(Vec<Problem>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { variable, detail } => {
                write!(f, "cannot read variable `{variable}`: {detail}")
            }
            Self::Invalid(problems) => {
                f.write_str("invalid configuration: ")?;
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Every credential as it may travel, for `remote::protect`: the LCW key, the admin token,
    /// InfluxDB's token and password, and the `Basic` pair InfluxDB 1.x is sent.
    pub fn secrets(&self) -> Vec<String> {
        let influx = &self.influx;
        credentials(
            [
                &self.lcw_api_key,
                &self.admin_token,
                &influx.token,
                &influx.password,
            ]
            .map(|s| s.expose()),
            &influx.username,
        )
    }

    /// Reads every variable from the host and validates it.
    pub async fn load(variables: &impl Variables) -> Result<Self, ConfigError> {
        let mut values = Vec::with_capacity(VARIABLES.len());
        for spec in VARIABLES {
            let value =
                variables
                    .variable(spec.name)
                    .await
                    .map_err(|detail| ConfigError::Unreadable {
                        variable: spec.name,
                        detail,
                    })?;
            values.push((spec.name, value));
        }
        Self::from_lookup(|name| {
            values
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone())
        })
    }

    /// Builds settings from name–value pairs (later pairs win); the others take their default.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// Builds settings from a lookup; a name the lookup has no value for takes its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(&lookup);
        let r = &mut reader;
        let mut settings = Settings {
            lcw_api_key: r.secret(LCW_API_KEY),
            lcw_base_url: r.url(LCW_BASE_URL),
            currency: r.code(CURRENCY),
            max_coins_per_fetch: r.number(MAX_COINS_PER_FETCH),
            tracked_coins: r.codes(TRACKED_COINS),
            max_exchanges_per_fetch: r.number(MAX_EXCHANGES_PER_FETCH),
            requests_per_minute: r.number(REQUESTS_PER_MINUTE),
            cycle_deadline_ms: r.number(CYCLE_DEADLINE_MS),
            cycle_interval_s: r.number(CYCLE_INTERVAL_S),
            lcw_connect_timeout_ms: r.number(LCW_CONNECT_TIMEOUT_MS),
            lcw_first_byte_timeout_ms: r.number(LCW_FIRST_BYTE_TIMEOUT_MS),
            lcw_response_timeout_ms: r.number(LCW_RESPONSE_TIMEOUT_MS),
            lcw_hedge_after: r.delay(LCW_HEDGE_AFTER_MS),
            retry_base_ms: r.number(RETRY_BASE_MS),
            retry_cap_ms: r.number(RETRY_CAP_MS),
            retry_max: r.number(RETRY_MAX),
            breaker_failure_threshold: r.number(BREAKER_FAILURE_THRESHOLD),
            breaker_cool_down_s: r.number(BREAKER_COOL_DOWN_S),
            credit_reserve_percent: r.number(CREDIT_RESERVE_PERCENT),
            cache_ttls: Ttls::read(r),
            cache_max_entries: r.number(CACHE_MAX_ENTRIES),
            max_concurrent_requests: r.number(MAX_CONCURRENT_REQUESTS),
            backfill: BackfillSettings::read(r),
            sink: SinkKind::read(r),
            sqlite: SqliteSettings {
                retention_days: r.number(SQLITE_RETENTION_DAYS),
            },
            influx: InfluxSettings::read(r),
            enable_metrics: r.flag(ENABLE_METRICS),
            alert_warning_s: r.number(ALERT_WARNING_S),
            alert_critical_s: r.number(ALERT_CRITICAL_S),
            alert_cooldown_s: r.number(ALERT_COOLDOWN_S),
            admin_token: r.secret(ADMIN_TOKEN),
        };
        if settings.backfill.min_gap_s == 0 {
            settings.backfill.min_gap_s = 3 * settings.cycle_interval_s;
        }
        check_targets(&mut reader, &settings);
        if reader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(reader.problems))
        }
    }
}

impl Ttls {
    fn read(r: &mut Reader<'_>) -> Self {
        Self {
            status_s: r.number(CACHE_TTL_STATUS_S),
            credits_s: r.number(CACHE_TTL_CREDITS_S),
            coins_single_s: r.number(CACHE_TTL_COIN_SINGLE_S),
            coins_list_s: r.number(CACHE_TTL_COINS_LIST_S),
            overview_s: r.number(CACHE_TTL_OVERVIEW_S),
            exchanges_list_s: r.number(CACHE_TTL_EXCHANGES_S),
        }
    }
}

impl BackfillSettings {
    fn read(r: &mut Reader<'_>) -> Self {
        Self {
            min_gap_s: r.number(BACKFILL_MIN_GAP_S),
            calls_per_tick: r.number(BACKFILL_CALLS_PER_TICK),
            top_coins: r.number(BACKFILL_TOP_COINS),
            initial_history_hours: r.number(INITIAL_HISTORY_HOURS),
        }
    }
}

impl SinkKind {
    /// `auto` becomes `influxdb` when `influx_url` is set, `sqlite` otherwise.
    fn read(r: &mut Reader<'_>) -> Self {
        match r.choice(SINK) {
            Some("auto") if !r.is_set(INFLUX_URL) => Self::Sqlite,
            Some("auto" | "influxdb") => Self::Influxdb,
            _ => Self::Sqlite,
        }
    }
}

impl InfluxSettings {
    fn read(r: &mut Reader<'_>) -> Self {
        Self {
            url: r.url(INFLUX_URL),
            configured: r.is_set(INFLUX_URL),
            api: match r.choice(INFLUX_API) {
                Some("v1") => InfluxApi::V1,
                Some("v3") => InfluxApi::V3,
                _ => InfluxApi::V2,
            },
            token: r.secret(INFLUX_TOKEN),
            org: r.text(INFLUX_ORG),
            bucket: r.text(INFLUX_BUCKET),
            database: r.text(INFLUX_DATABASE),
            retention_policy: r.text(INFLUX_RETENTION_POLICY),
            username: r.text(INFLUX_USERNAME),
            password: r.secret(INFLUX_PASSWORD),
            batch_size: r.number(INFLUX_BATCH_SIZE),
            gzip: r.flag(INFLUX_GZIP),
            timeout_ms: r.number(INFLUX_TIMEOUT_MS),
            spool_max_points: r.number(SPOOL_MAX_POINTS),
            create_database: r.flag(INFLUX_CREATE_DATABASE),
        }
    }
}

/// Checks that hold between variables: the tick ends before the next one starts, the backoff
/// cap is not below its base, the chosen API has a place to write to.
fn check_targets(r: &mut Reader<'_>, settings: &Settings) {
    if settings.cycle_deadline_ms >= settings.cycle_interval_s.saturating_mul(1000) {
        r.problem(
            CYCLE_DEADLINE_MS,
            &settings.cycle_deadline_ms.to_string(),
            format!(
                "must be below the cycle interval ({} s), or ticks overlap",
                settings.cycle_interval_s
            ),
        );
    }
    if settings.retry_cap_ms < settings.retry_base_ms {
        r.problem(
            RETRY_CAP_MS,
            &settings.retry_cap_ms.to_string(),
            "must not be below retry_base_ms",
        );
    }
    if settings.sink == SinkKind::Influxdb {
        check_influx(r, &settings.influx);
    }
}

/// What each InfluxDB API needs, checked only when InfluxDB is the sink.
fn check_influx(r: &mut Reader<'_>, influx: &InfluxSettings) {
    if !influx.configured {
        r.problem(INFLUX_URL, "", "is required with sink = influxdb");
    }
    match influx.api {
        // InfluxDB 2 answers a write without these 400/401, which would look like bad data.
        InfluxApi::V2 => {
            let v2 = "is required with influx_api = v2";
            if influx.org.is_empty() {
                let reason = "is required with influx_api = v2 (the organisation's name or ID)";
                r.problem(INFLUX_ORG, "", reason);
            }
            if influx.bucket.is_empty() {
                r.problem(INFLUX_BUCKET, "", v2);
            }
            if influx.token.is_empty() {
                r.problem(INFLUX_TOKEN, "", v2);
            }
        }
        InfluxApi::V1 | InfluxApi::V3 => {
            if influx.database.is_empty() {
                let reason = "is required with influx_api = v1 or v3";
                r.problem(INFLUX_DATABASE, "", reason);
            }
        }
    }
    if influx.password.is_empty() != influx.username.is_empty() {
        r.problem(
            INFLUX_USERNAME,
            &influx.username,
            "influx_username and influx_password go together",
        );
    }
}

/// The rows that hold credentials, in the order [`credentials`] takes them.
static SECRET_VARIABLES: [&Variable; 4] = [LCW_API_KEY, ADMIN_TOKEN, INFLUX_TOKEN, INFLUX_PASSWORD];

/// [`Settings::secrets`] read straight from the variables, valid or not: every request needs
/// them (its response is redacted), most need no other setting.
pub async fn load_secrets(variables: &impl Variables) -> Vec<String> {
    let mut values = [""; 4].map(String::from);
    for (value, row) in values.iter_mut().zip(SECRET_VARIABLES) {
        if let Ok(Some(raw)) = variables.variable(row.name).await {
            *value = raw.trim().to_owned();
        }
    }
    let username = match variables.variable(INFLUX_USERNAME.name).await {
        Ok(Some(raw)) => raw.trim().to_owned(),
        _ => String::new(),
    };
    credentials(values.each_ref().map(String::as_str), &username)
}

/// The non-empty ones of `[LCW key, admin token, InfluxDB token, InfluxDB password]`, and the
/// `Basic` pair of `username` and the password when there is one.
fn credentials(secrets: [&str; 4], username: &str) -> Vec<String> {
    let mut out: Vec<String> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| (*s).to_owned())
        .collect();
    if !secrets[3].is_empty() {
        use base64::Engine as _;
        let pair = format!("{username}:{}", secrets[3]);
        out.push(base64::engine::general_purpose::STANDARD.encode(pair));
    }
    out
}

/// Reads and validates one boolean variable, for routes that need no other setting (and so keep
/// working while an unrelated variable is invalid).
pub async fn load_flag(
    variables: &impl Variables,
    row: &'static Variable,
) -> Result<bool, ConfigError> {
    let value = variables
        .variable(row.name)
        .await
        .map_err(|detail| ConfigError::Unreadable {
            variable: row.name,
            detail,
        })?;
    let lookup = move |_: &str| value.clone();
    let mut reader = Reader::new(&lookup);
    let flag = reader.flag(row);
    if reader.problems.is_empty() {
        Ok(flag)
    } else {
        Err(ConfigError::Invalid(reader.problems))
    }
}

impl Settings {
    /// The alert thresholds of the telemetry.
    pub fn alert_thresholds(&self) -> Thresholds {
        Thresholds {
            warning: std::time::Duration::from_secs(self.alert_warning_s),
            critical: std::time::Duration::from_secs(self.alert_critical_s),
            cool_down: std::time::Duration::from_secs(self.alert_cooldown_s),
        }
    }

    /// The alert thresholds that apply when the settings themselves are invalid (the tick then
    /// only records itself): the table's defaults.
    pub fn default_thresholds() -> Thresholds {
        Thresholds {
            warning: std::time::Duration::from_secs(ALERT_WARNING_S.default_number()),
            critical: std::time::Duration::from_secs(ALERT_CRITICAL_S.default_number()),
            cool_down: std::time::Duration::from_secs(ALERT_COOLDOWN_S.default_number()),
        }
    }
}

/// The default of a numeric variable of [`VARIABLES`], by name.
pub fn default_number(name: &str) -> u64 {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .expect("a variable of VARIABLES")
        .default_number()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from `pairs` on top of a v2 target (which needs an organisation and a token).
    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_pairs(&[&[("influx_org", "o"), ("influx_token", "t")], pairs].concat())
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_set() {
        let s = with(&[("lcw_api_key", "k-123")]).unwrap();
        assert_eq!(s.lcw_api_key.expose(), "k-123");
        assert_eq!(s.lcw_base_url.as_str(), "https://api.livecoinwatch.com/");
        assert_eq!(s.currency, "USD");
        assert_eq!(s.max_coins_per_fetch, 100);
        assert_eq!(s.tracked_coins, vec!["BTC", "ETH"]);
        assert_eq!(s.cycle_deadline_ms, 45_000);
        assert_eq!(s.cycle_interval_s, 60);
        assert_eq!(
            (s.retry_base_ms, s.retry_cap_ms, s.retry_max),
            (2_000, 8_000, 3)
        );
        assert_eq!(
            (s.breaker_failure_threshold, s.breaker_cool_down_s),
            (5, 30)
        );
        assert_eq!(s.credit_reserve_percent, 5);
        // The fallback for invalid settings is the same table, not a second copy of it.
        assert_eq!(Settings::default_thresholds(), s.alert_thresholds());
        assert_eq!(default_number("cycle_deadline_ms"), s.cycle_deadline_ms);
        assert_eq!(
            s.sink,
            SinkKind::Sqlite,
            "no influx_url: the embedded store"
        );
        assert_eq!(s.sqlite.retention_days, 30);
        assert!(!s.influx.configured);
        assert_eq!(s.influx.api, InfluxApi::V2);
        assert_eq!(s.influx.bucket, "cryptocurrency_data");
        assert_eq!(s.influx.batch_size, 1000);
        assert!(s.influx.gzip);
        assert!(s.enable_metrics);
        assert!(s.admin_token.is_empty());
    }

    #[test]
    fn the_sink_follows_influx_url_unless_named() {
        let sink = |pairs: &[(&str, &str)]| {
            let mut all = vec![("lcw_api_key", "k")];
            all.extend_from_slice(pairs);
            with(&all).map(|s| s.sink)
        };
        assert_eq!(sink(&[]), Ok(SinkKind::Sqlite));
        assert_eq!(
            sink(&[("influx_url", "http://127.0.0.1:8086")]),
            Ok(SinkKind::Influxdb)
        );
        assert_eq!(
            sink(&[("influx_url", "http://127.0.0.1:8086"), ("sink", "sqlite")]),
            Ok(SinkKind::Sqlite)
        );
        let err = sink(&[("sink", "influxdb")]).unwrap_err().to_string();
        assert!(
            err.contains("`influx_url`") && err.contains("sink = influxdb"),
            "{err}"
        );
        let err = sink(&[("sink", "postgres")]).unwrap_err().to_string();
        assert!(err.contains("`sink` = \"postgres\""), "{err}");
        let err = sink(&[("influx_url", "not a url")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`influx_url`"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let err = with(&[]).unwrap_err().to_string();
        assert!(err.contains("`lcw_api_key`"), "{err}");
        assert!(err.contains("required"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_variable_and_value() {
        let err = with(&[
            ("lcw_api_key", "k"),
            ("lcw_base_url", "ftp://x"),
            ("currency", "US D"),
            ("max_coins_per_fetch", "0"),
            ("cycle_deadline_ms", "soon"),
            ("tracked_coins", "BTC,E/TH"),
            ("influx_api", "v4"),
            ("enable_metrics", "maybe"),
        ])
        .unwrap_err();
        let ConfigError::Invalid(problems) = &err else {
            panic!("{err}")
        };
        let named: Vec<_> = problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            named,
            [
                "lcw_base_url",
                "currency",
                "max_coins_per_fetch",
                "tracked_coins",
                "cycle_deadline_ms",
                "influx_api",
                "enable_metrics"
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("`max_coins_per_fetch` = \"0\": must be between 1 and 1000"),
            "{text}"
        );
        assert!(
            text.contains("`cycle_deadline_ms` = \"soon\": must be a whole number"),
            "{text}"
        );
        assert!(text.contains("`E/TH`"), "{text}");
    }

    #[test]
    fn secrets_are_masked_in_errors_and_debug() {
        let s = with(&[
            ("lcw_api_key", "super-secret-key"),
            ("influx_token", "tok-999"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("super-secret-key") && !debug.contains("tok-999"),
            "{debug}"
        );
        let err = with(&[
            ("lcw_api_key", "super-secret-key"),
            ("influx_url", "http://127.0.0.1:8086"),
            ("influx_username", "bob"),
            ("currency", "???"),
        ])
        .unwrap_err()
        .to_string();
        assert!(!err.contains("super-secret-key"), "{err}");
        assert!(err.contains("influx_password go together"), "{err}");
    }

    #[test]
    fn userinfo_of_a_url_is_never_shown() {
        let err = with(&[
            ("lcw_api_key", "k"),
            ("influx_url", "http://bob:hunter2@db:8086/?x=1"),
            ("lcw_base_url", "http://eve:pw2@ bad host/"),
        ])
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2") && !err.contains("pw2"), "{err}");
        assert!(err.contains("http://***@db:8086/?x=1"), "{err}");
    }

    #[test]
    fn codes_are_normalised_and_deduplicated() {
        let s = with(&[
            ("lcw_api_key", "k"),
            ("currency", "eur"),
            ("tracked_coins", " btc, ETH ,btc,,_PSG"),
        ])
        .unwrap();
        assert_eq!(s.currency, "EUR");
        assert_eq!(s.tracked_coins, vec!["BTC", "ETH", "_PSG"]);
    }

    #[test]
    fn variable_table_has_unique_lower_snake_names() {
        for (i, spec) in VARIABLES.iter().enumerate() {
            assert!(
                spec.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                spec.name
            );
            assert!(
                VARIABLES[i + 1..].iter().all(|o| o.name != spec.name),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn hedge_after_is_auto_off_or_milliseconds() {
        let key = ("lcw_api_key", "k");
        assert_eq!(with(&[key]).unwrap().lcw_hedge_after, HedgeAfter::Auto);
        for (value, expected) in [
            ("AUTO", HedgeAfter::Auto),
            ("0", HedgeAfter::Off),
            ("off", HedgeAfter::Off),
            (" 1500 ", HedgeAfter::Fixed(1500)),
            ("600000", HedgeAfter::Fixed(600_000)),
        ] {
            let s = with(&[key, ("lcw_hedge_after_ms", value)]).unwrap();
            assert_eq!(s.lcw_hedge_after, expected, "{value}");
        }
        for bad in ["soon", "-5", "1.5", "600001", "p90"] {
            let error = with(&[key, ("lcw_hedge_after_ms", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!(
                    "`lcw_hedge_after_ms` = \"{bad}\": must be auto, 0 (off)"
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn choices_and_limits_in_errors_are_the_rows() {
        let key = ("lcw_api_key", "k");
        let error = |pair: (&str, &str)| with(&[key, pair]).unwrap_err().to_string();
        assert!(
            error(("influx_api", "v4")).contains("`influx_api` = \"v4\": must be v1, v2 or v3"),
            "{}",
            error(("influx_api", "v4"))
        );
        let text = error(("sink", "pg"));
        assert!(
            text.contains("`sink` = \"pg\": must be auto, sqlite or influxdb"),
            "{text}"
        );
        let many: Vec<String> = (0..101).map(|i| format!("C{i}")).collect();
        let text = error(("tracked_coins", &many.join(",")));
        assert!(
            text.contains(": lists more than 100 codes (one /coins/map call)"),
            "{text}"
        );
        let text = error(("retry_cap_ms", "1000"));
        assert!(
            text.contains("`retry_cap_ms` = \"1000\": must not be below retry_base_ms"),
            "{text}"
        );
        let Kind::Number { min, max } = variables::RETRY_MAX.kind else {
            panic!("retry_max is a number")
        };
        let text = error(("retry_max", "11"));
        assert!(
            text.contains(&format!("must be between {min} and {max}")),
            "{text}"
        );
    }

    #[test]
    fn every_meaning_fits_one_cell_of_the_docs_table() {
        assert_eq!(MEANINGS.len(), VARIABLES.len());
        for (row, meaning) in VARIABLES.iter().zip(MEANINGS) {
            let one_cell = !meaning.is_empty() && !meaning.contains(['|', '\n']);
            assert!(one_cell, "{}: {meaning:?}", row.name);
        }
    }

    #[test]
    #[should_panic(expected = "`sink` is read as another kind than its row's")]
    fn a_row_read_as_another_kind_stops_a_debug_build() {
        let lookup = |_: &str| None;
        Reader::new(&lookup).number::<u32>(variables::SINK);
    }
}
