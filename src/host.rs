//! Ports: the only doors from the core to the world.
//!
//! Owns the small traits the core is written against — outbound HTTP with timeouts, key-value
//! storage, SQL statements on the embedded database, application variables, clocks and sleep,
//! randomness, and logging — plus the plain types they
//! exchange. It must not contain any implementation: the Spin adapter lives in `spin_host`
//! (feature `spin`), the test adapters live with the tests.
//!
//! Every method is `async` where the Spin SDK is, and no future is required to be `Send`:
//! a Spin instance is single-threaded and its host futures are not `Send`.
#![allow(async_fn_in_trait)] // deliberately no `Send` bound, see above.

use std::fmt;
use std::time::Duration;

/// A request as the core builds it: the whole body is in memory (LCW bodies are small, InfluxDB
/// batches are bounded by `influx_batch_size`).
pub type HttpRequest = http::Request<Vec<u8>>;
/// A response with its whole body read.
pub type HttpResponse = http::Response<Vec<u8>>;

/// Time limits for one HTTP exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit for establishing the connection.
    pub connect: Duration,
    /// Limit from sending the request to the first byte of the answer: a server that does not
    /// answer at all is given up on here, long before `total`.
    pub first_byte: Duration,
    /// Limit for the whole exchange, from the start of the call to the last byte of the body.
    pub total: Duration,
}

/// Why an HTTP exchange produced no response. Carries no URL or header: those may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// The connection was made but the response did not complete within the total timeout.
    Timeout,
    /// The connection could not be made (refused, DNS failure, TLS failure…).
    Connect(String),
    /// Anything else the transport reported (reset, protocol error, request rejected by the host).
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::Timeout => f.write_str("response timed out"),
            Self::Connect(detail) => write!(f, "connection failed: {detail}"),
            Self::Other(detail) => write!(f, "transport error: {detail}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// The most of a response body an adapter reads: beyond it the exchange fails (as
/// [`TransportError::Other`]), so no answer can grow a tick's memory without bound. LCW's largest
/// answer (a page of 100 coins with meta) is about 60 KB; InfluxDB's are smaller.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Outbound HTTP.
pub trait HttpClient {
    /// Sends one request and reads the whole response (at most [`MAX_RESPONSE_BYTES`] of body),
    /// within `timeouts`.
    async fn send(
        &self,
        request: HttpRequest,
        timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError>;
}

/// A key-value store failure, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

impl std::error::Error for KvError {}

/// The shared key-value store (Spin's `default` store). Last writer wins; no transactions.
///
/// The one atomic operation is [`kv_increment`](KeyValue::kv_increment): it is what both Spin
/// stores (SQLite and Redis) really make atomic for racing callers, where their compare-and-swap
/// is not (Redis reports failure after writing; SQLite upserts an absent key for both callers).
pub trait KeyValue {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    async fn kv_delete(&self, key: &str) -> Result<(), KvError>;
    /// Adds `delta` to the counter at `key` (absent counts as 0) in one atomic step and returns
    /// the new value. `Ok(None)`: this store has no atomic increment. A counter key is only ever
    /// changed through this method.
    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError>;
    /// The keys that start with `prefix`, in no particular order.
    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError>;
    /// The largest value this store takes, in bytes. Hosted stores take 1 MiB ([`VALUE_LIMIT`]);
    /// Spin's SQLite and Redis stores take more, but the app keeps every value under 1 MiB on
    /// them too, so that a store moved to a hosted platform still takes every document.
    fn kv_value_limit(&self) -> usize {
        VALUE_LIMIT
    }
}

/// The value limit of hosted key-value stores (Spin's documentation: values ≤ 1 MB).
pub const VALUE_LIMIT: usize = 1024 * 1024;

/// A value bound to, or read from, a SQL statement: SQLite's five storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a statement returned: its column names and every row (statements of the core return few
/// rows: they aggregate in SQL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// A SQL failure as the host reports it: the database could not be opened, was busy, or refused
/// the statement. Carries SQLite's message, never a bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError(pub String);

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SQLite: {}", self.0)
    }
}

impl std::error::Error for SqlError {}

/// The embedded SQL database (Spin's `default` SQLite database), one connection per invocation.
/// Statements run one at a time on that connection, so `BEGIN` … `COMMIT` spans calls.
pub trait Sql {
    /// Runs one statement with `?` parameters bound in order, and reads all its rows.
    async fn sql_execute(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError>;
}

/// Application variables. `Ok(None)` means the host has no value for the name.
pub trait Variables {
    async fn variable(&self, name: &str) -> Result<Option<String>, String>;
}

/// Wall clock, monotonic clock and sleep.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn unix_millis(&self) -> i64;
    /// Time since an arbitrary fixed origin; never goes backwards.
    fn monotonic(&self) -> Duration;
    /// Suspends the caller without blocking the instance.
    async fn sleep(&self, duration: Duration);
}

/// Randomness for retry jitter (not for secrets).
pub trait Random {
    fn random_u64(&self) -> u64;

    /// A uniform draw in [0, 1).
    fn random_unit(&self) -> f64 {
        (self.random_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        })
    }
}

/// Where log lines go. Callers never pass secrets: messages are built from masked values.
pub trait Log {
    fn log(&self, level: Level, message: &str);

    /// One structured event, a JSON object on one line (the tick summary, an alert).
    fn event(&self, json: &str) {
        self.log(Level::Info, json);
    }
}

/// Everything the core needs from its host.
pub trait Host: HttpClient + KeyValue + Sql + Variables + Clock + Random + Log {}

impl<T: HttpClient + KeyValue + Sql + Variables + Clock + Random + Log> Host for T {}
