//! Settings: every application variable, read once per invocation and validated.
//!
//! Owns the variable table (names, defaults, which are secret) — the contract that `spin.toml`,
//! `docs/configuration.md` and deploy recipes follow, checked against both by the tests — and
//! the typed [`Settings`] built from it. It must not perform any I/O besides reading variables,
//! and no error or debug output of it may show a secret.

use std::fmt;

use url::Url;

use crate::host::Variables;

/// One application variable as the code reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableSpec {
    pub name: &'static str,
    /// `None`: required, there is no sensible default.
    pub default: Option<&'static str>,
    pub secret: bool,
}

const fn var(name: &'static str, default: &'static str) -> VariableSpec {
    VariableSpec {
        name,
        default: Some(default),
        secret: false,
    }
}

const fn secret(name: &'static str, default: Option<&'static str>) -> VariableSpec {
    VariableSpec {
        name,
        default,
        secret: true,
    }
}

/// Every variable the code reads. `spin.toml` declares exactly these, with the same defaults;
/// `docs/configuration.md` says what each means, row for row (`tests/repository/manifest.rs`).
/// No text here: the table is in both wasm components, the meanings are for people.
#[rustfmt::skip] // one variable a line: this table is read as a table.
pub const VARIABLES: &[VariableSpec] = &[
    secret("lcw_api_key", None),
    var("lcw_base_url", "https://api.livecoinwatch.com"),
    var("currency", "USD"),
    var("max_coins_per_fetch", "100"),
    var("tracked_coins", "BTC,ETH"),
    var("max_exchanges_per_fetch", "20"),
    var("requests_per_minute", "60"),
    var("cycle_deadline_ms", "45000"),
    var("cycle_interval_s", "60"),
    var("lcw_connect_timeout_ms", "10000"),
    var("lcw_first_byte_timeout_ms", "10000"),
    var("lcw_response_timeout_ms", "30000"),
    var("lcw_hedge_after_ms", "auto"),
    var("retry_base_ms", "2000"),
    var("retry_cap_ms", "8000"),
    var("retry_max", "3"),
    var("breaker_failure_threshold", "5"),
    var("breaker_cool_down_s", "30"),
    var("credit_reserve_percent", "5"),
    var("cache_ttl_status_s", "120"),
    var("cache_ttl_credits_s", "300"),
    var("cache_ttl_coin_single_s", "60"),
    var("cache_ttl_coins_list_s", "60"),
    var("cache_ttl_overview_s", "60"),
    var("cache_ttl_exchanges_s", "600"),
    var("cache_max_entries", "256"),
    var("max_concurrent_requests", "4"),
    var("backfill_min_gap_s", "0"),
    var("backfill_calls_per_tick", "5"),
    var("backfill_top_coins", "0"),
    var("initial_history_hours", "24"),
    var("sink", "auto"),
    var("sqlite_retention_days", "30"),
    var("influx_url", ""),
    var("influx_api", "v2"),
    secret("influx_token", Some("")),
    var("influx_org", ""),
    var("influx_bucket", "cryptocurrency_data"),
    var("influx_database", "cryptocurrency_data"),
    var("influx_retention_policy", ""),
    var("influx_username", ""),
    secret("influx_password", Some("")),
    var("influx_batch_size", "1000"),
    var("influx_gzip", "true"),
    var("influx_timeout_ms", "30000"),
    var("influx_create_database", "true"),
    var("spool_max_points", "500000"),
    var("enable_metrics", "true"),
    var("alert_warning_s", "30"),
    var("alert_critical_s", "60"),
    var("alert_cooldown_s", "300"),
    secret("admin_token", Some("")),
];

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
    pub lcw_base_url: Url,
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
    pub url: Url,
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

/// One variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    /// The value as given, or a mask for secrets.
    pub shown_value: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "variable `{}` = {:?}: {}",
            self.variable, self.shown_value, self.reason
        )
    }
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
        let mut reader = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let r = &mut reader;
        let mut settings = Settings {
            lcw_api_key: r.secret_required("lcw_api_key"),
            lcw_base_url: r.url("lcw_base_url"),
            currency: r.code("currency"),
            max_coins_per_fetch: r.number("max_coins_per_fetch", 1, 1_000),
            tracked_coins: r.code_list("tracked_coins"),
            max_exchanges_per_fetch: r.number("max_exchanges_per_fetch", 0, 100),
            requests_per_minute: r.number("requests_per_minute", 1, 6_000),
            cycle_deadline_ms: r.number("cycle_deadline_ms", 1_000, 3_600_000),
            cycle_interval_s: r.number("cycle_interval_s", 1, 86_400),
            lcw_connect_timeout_ms: r.number("lcw_connect_timeout_ms", 100, 600_000),
            lcw_first_byte_timeout_ms: r.number("lcw_first_byte_timeout_ms", 100, 600_000),
            lcw_response_timeout_ms: r.number("lcw_response_timeout_ms", 100, 600_000),
            lcw_hedge_after: r.hedge_after("lcw_hedge_after_ms"),
            retry_base_ms: r.number("retry_base_ms", 1, 600_000),
            retry_cap_ms: r.number("retry_cap_ms", 1, 600_000),
            retry_max: r.number("retry_max", 0, 10),
            breaker_failure_threshold: r.number("breaker_failure_threshold", 1, 1_000),
            breaker_cool_down_s: r.number("breaker_cool_down_s", 1, 86_400),
            credit_reserve_percent: r.number("credit_reserve_percent", 0, 100),
            cache_ttls: Ttls {
                status_s: r.number("cache_ttl_status_s", 1, 86_400),
                credits_s: r.number("cache_ttl_credits_s", 1, 86_400),
                coins_single_s: r.number("cache_ttl_coin_single_s", 1, 86_400),
                coins_list_s: r.number("cache_ttl_coins_list_s", 1, 86_400),
                overview_s: r.number("cache_ttl_overview_s", 1, 86_400),
                exchanges_list_s: r.number("cache_ttl_exchanges_s", 1, 86_400),
            },
            cache_max_entries: r.number("cache_max_entries", 1, 10_000),
            max_concurrent_requests: r.number("max_concurrent_requests", 1, 32),
            backfill: BackfillSettings {
                min_gap_s: r.number("backfill_min_gap_s", 0, 30 * 86_400),
                calls_per_tick: r.number("backfill_calls_per_tick", 0, 100),
                top_coins: r.number("backfill_top_coins", 0, 1_000),
                initial_history_hours: r.number("initial_history_hours", 0, 24 * 30),
            },
            sink: r.sink("sink"),
            sqlite: SqliteSettings {
                retention_days: r.number("sqlite_retention_days", 1, 3_650),
            },
            influx: InfluxSettings {
                url: r.optional_url("influx_url"),
                configured: !r.text("influx_url").is_empty(),
                api: r.influx_api("influx_api"),
                token: r.secret_optional("influx_token"),
                org: r.text("influx_org"),
                bucket: r.text("influx_bucket"),
                database: r.text("influx_database"),
                retention_policy: r.text("influx_retention_policy"),
                username: r.text("influx_username"),
                password: r.secret_optional("influx_password"),
                batch_size: r.number("influx_batch_size", 1, 100_000),
                gzip: r.flag("influx_gzip"),
                timeout_ms: r.number("influx_timeout_ms", 100, 600_000),
                spool_max_points: r.number("spool_max_points", 1_000, 50_000_000),
                create_database: r.flag("influx_create_database"),
            },
            enable_metrics: r.flag("enable_metrics"),
            alert_warning_s: r.number("alert_warning_s", 1, 86_400),
            alert_critical_s: r.number("alert_critical_s", 1, 86_400),
            alert_cooldown_s: r.number("alert_cooldown_s", 0, 86_400),
            admin_token: r.secret_optional("admin_token"),
        };
        if settings.backfill.min_gap_s == 0 {
            settings.backfill.min_gap_s = 3 * settings.cycle_interval_s;
        }
        reader.check_targets(&settings);
        if reader.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(reader.problems))
        }
    }
}

/// The variables that hold credentials, as [`credentials`] takes them.
const SECRET_VARIABLES: [&str; 4] = [
    "lcw_api_key",
    "admin_token",
    "influx_token",
    "influx_password",
];

/// [`Settings::secrets`] read straight from the variables, valid or not: every request needs
/// them (its response is redacted), most need no other setting.
pub async fn load_secrets(variables: &impl Variables) -> Vec<String> {
    let mut values = [""; 4].map(String::from);
    for (value, name) in values.iter_mut().zip(SECRET_VARIABLES) {
        if let Ok(Some(raw)) = variables.variable(name).await {
            *value = raw.trim().to_owned();
        }
    }
    let username = match variables.variable("influx_username").await {
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
    name: &'static str,
) -> Result<bool, ConfigError> {
    let value = variables
        .variable(name)
        .await
        .map_err(|detail| ConfigError::Unreadable {
            variable: name,
            detail,
        })?;
    let lookup = move |n: &str| if n == name { value.clone() } else { None };
    let mut reader = Reader {
        lookup: &lookup,
        problems: Vec::new(),
    };
    let flag = reader.flag(name);
    if reader.problems.is_empty() {
        Ok(flag)
    } else {
        Err(ConfigError::Invalid(reader.problems))
    }
}

/// Reads one variable at a time, collecting problems instead of stopping at the first.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn spec(name: &str) -> &'static VariableSpec {
        VARIABLES
            .iter()
            .find(|spec| spec.name == name)
            .unwrap_or_else(|| panic!("variable `{name}` is read but missing from VARIABLES"))
    }

    fn raw(&self, name: &str) -> String {
        let spec = Self::spec(name);
        (self.lookup)(name)
            .or_else(|| spec.default.map(str::to_owned))
            .unwrap_or_default()
    }

    fn problem(&mut self, name: &str, value: &str, reason: impl Into<String>) {
        let spec = Self::spec(name);
        // A URL's `user:password@` is a secret too, wherever it appears in a value.
        let shown_value = if spec.secret && !value.is_empty() {
            "***".to_owned()
        } else {
            without_userinfo(value)
        };
        self.problems.push(Problem {
            variable: spec.name,
            shown_value,
            reason: reason.into(),
        });
    }

    fn text(&mut self, name: &str) -> String {
        self.raw(name).trim().to_owned()
    }

    fn secret_required(&mut self, name: &str) -> Secret {
        let value = self.raw(name).trim().to_owned();
        if value.is_empty() {
            self.problem(name, "", "is required and was not set");
        }
        Secret(value)
    }

    fn secret_optional(&mut self, name: &str) -> Secret {
        Secret(self.raw(name).trim().to_owned())
    }

    fn url(&mut self, name: &str) -> Url {
        let value = self.text(name);
        match Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.query().is_some() || url.fragment().is_some() {
                    self.problem(name, &value, "must not have a query or fragment");
                }
                url
            }
            Ok(_) => {
                self.problem(
                    name,
                    &value,
                    "must be an http:// or https:// URL with a host",
                );
                placeholder_url()
            }
            Err(error) => {
                self.problem(name, &value, format!("is not a URL ({error})"));
                placeholder_url()
            }
        }
    }

    /// An empty value is allowed (a placeholder stands for it); a set one must be a URL.
    fn optional_url(&mut self, name: &str) -> Url {
        if self.text(name).is_empty() {
            placeholder_url()
        } else {
            self.url(name)
        }
    }

    /// `auto` becomes `influxdb` when `influx_url` is set, `sqlite` otherwise.
    fn sink(&mut self, name: &str) -> SinkKind {
        let value = self.text(name);
        match value.to_ascii_lowercase().as_str() {
            "auto" if self.text("influx_url").is_empty() => SinkKind::Sqlite,
            "auto" | "influxdb" => SinkKind::Influxdb,
            "sqlite" => SinkKind::Sqlite,
            _ => {
                self.problem(name, &value, "must be auto, sqlite or influxdb");
                SinkKind::Sqlite
            }
        }
    }

    fn number<T>(&mut self, name: &str, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let value = self.text(name);
        match value.parse::<T>() {
            Ok(n) if n >= min && n <= max => n,
            Ok(_) => {
                self.problem(name, &value, format!("must be between {min} and {max}"));
                min
            }
            Err(_) => {
                self.problem(name, &value, "must be a whole number");
                min
            }
        }
    }

    fn flag(&mut self, name: &str) -> bool {
        let value = self.text(name);
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problem(name, &value, "must be true or false");
                false
            }
        }
    }

    fn code(&mut self, name: &str) -> String {
        let value = self.text(name);
        match normalize_code(&value) {
            Ok(code) => code,
            Err(reason) => {
                self.problem(name, &value, reason);
                value
            }
        }
    }

    fn code_list(&mut self, name: &str) -> Vec<String> {
        let value = self.text(name);
        let mut codes: Vec<String> = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match normalize_code(item) {
                Ok(code) if !codes.contains(&code) => codes.push(code),
                Ok(_) => {}
                Err(reason) => self.problem(name, &value, format!("`{item}` {reason}")),
            }
        }
        if codes.len() > 100 {
            self.problem(
                name,
                &value,
                "lists more than 100 codes (one /coins/map call)",
            );
        }
        codes
    }

    /// `auto`, `off` or `0` (never), or a whole number of milliseconds.
    fn hedge_after(&mut self, name: &str) -> HedgeAfter {
        let value = self.text(name);
        match value.to_ascii_lowercase().as_str() {
            "auto" => HedgeAfter::Auto,
            "off" | "0" => HedgeAfter::Off,
            number => match number.parse::<u64>() {
                Ok(ms) if (1..=600_000).contains(&ms) => HedgeAfter::Fixed(ms),
                _ => {
                    self.problem(
                        name,
                        &value,
                        "must be auto, 0 (off) or a number of milliseconds between 1 and 600000",
                    );
                    HedgeAfter::Auto
                }
            },
        }
    }

    fn influx_api(&mut self, name: &str) -> InfluxApi {
        let value = self.text(name);
        match value.to_ascii_lowercase().as_str() {
            "v1" => InfluxApi::V1,
            "v2" => InfluxApi::V2,
            "v3" => InfluxApi::V3,
            _ => {
                self.problem(name, &value, "must be v1, v2 or v3");
                InfluxApi::V2
            }
        }
    }

    /// Checks that hold between variables: the tick ends before the next one starts, the backoff
    /// cap is not below its base, the chosen API has a place to write to.
    fn check_targets(&mut self, settings: &Settings) {
        if settings.cycle_deadline_ms >= settings.cycle_interval_s.saturating_mul(1000) {
            self.problem(
                "cycle_deadline_ms",
                &settings.cycle_deadline_ms.to_string(),
                format!(
                    "must be below the cycle interval ({} s), or ticks overlap",
                    settings.cycle_interval_s
                ),
            );
        }
        if settings.retry_cap_ms < settings.retry_base_ms {
            self.problem(
                "retry_cap_ms",
                &settings.retry_cap_ms.to_string(),
                "must not be below retry_base_ms",
            );
        }
        if settings.sink == SinkKind::Influxdb {
            self.check_influx(&settings.influx);
        }
    }

    /// What each InfluxDB API needs, checked only when InfluxDB is the sink.
    fn check_influx(&mut self, influx: &InfluxSettings) {
        if !influx.configured {
            self.problem("influx_url", "", "is required with sink = influxdb");
        }
        match influx.api {
            // InfluxDB 2 answers a write without these 400/401, which would look like bad data.
            InfluxApi::V2 => {
                if influx.org.is_empty() {
                    self.problem(
                        "influx_org",
                        "",
                        "is required with influx_api = v2 (the organisation's name or ID)",
                    );
                }
                if influx.bucket.is_empty() {
                    self.problem("influx_bucket", "", "is required with influx_api = v2");
                }
                if influx.token.is_empty() {
                    self.problem("influx_token", "", "is required with influx_api = v2");
                }
            }
            InfluxApi::V1 | InfluxApi::V3 => {
                if influx.database.is_empty() {
                    self.problem(
                        "influx_database",
                        "",
                        "is required with influx_api = v1 or v3",
                    );
                }
            }
        }
        if influx.password.is_empty() != influx.username.is_empty() {
            self.problem(
                "influx_username",
                &influx.username,
                "influx_username and influx_password go together",
            );
        }
    }
}

/// A value as a problem may show it: a URL's `user:password@` is masked, and a value that
/// looks like a URL with userinfo but does not parse is not shown at all.
fn without_userinfo(value: &str) -> String {
    match Url::parse(value) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        Err(_) if value.contains("://") && value.contains('@') => "***".to_owned(),
        _ => value.to_owned(),
    }
}

fn placeholder_url() -> Url {
    Url::parse("http://invalid.invalid/").expect("static URL parses")
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
            warning: std::time::Duration::from_secs(default_number("alert_warning_s")),
            critical: std::time::Duration::from_secs(default_number("alert_critical_s")),
            cool_down: std::time::Duration::from_secs(default_number("alert_cooldown_s")),
        }
    }
}

/// The default of a numeric variable of [`VARIABLES`].
pub fn default_number(name: &str) -> u64 {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.default)
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("`{name}` has no numeric default in VARIABLES"))
}

/// Upper-cases a coin or currency code and checks its shape: 1–32 characters of letters, digits,
/// `_`, `-`, `.` (LCW codes include forms like `_BTC` and `USDC.E`).
pub fn normalize_code(value: &str) -> Result<String, &'static str> {
    let code = value.trim();
    if code.is_empty() || code.len() > 32 {
        return Err("must be a code of 1 to 32 characters");
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("may contain only letters, digits, `_`, `-` and `.`");
    }
    Ok(code.to_ascii_uppercase())
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
}
