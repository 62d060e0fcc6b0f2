//! The native host: real loopback HTTP (each call on its own thread, so concurrent calls of a
//! cycle really overlap), an in-memory key-value store that several hosts can share (like two
//! Spin processes sharing one store file), a real SQLite database (in memory and shared like the
//! store, or a file each host opens its own connection to; it fails on demand), variables from a map, captured logs, a seeded random
//! generator, and clocks that run in real time but jump forward on `sleep` instead of sleeping
//! (so retry and rate-limit waits are asserted, not waited for; [`NativeHost::real_sleep`]
//! makes sleeps real).
//!
//! Its HTTP frames bodies like Spin's outbound HTTP: a request body without an explicit
//! `Content-Length` header goes out with `Transfer-Encoding: chunked`, so a missing header shows
//! in native tests (the LCW fake refuses chunked bodies).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;
use lcw_fetcher::host::{
    Clock, HttpClient, HttpRequest, HttpResponse, KeyValue, KvError, Level, Log, Random, Sql,
    SqlError, SqlRows, SqlValue, Timeouts, TransportError, Variables,
};

/// Hosts made so far in this process, to seed each one's generator differently.
static HOSTS: AtomicU64 = AtomicU64::new(0);

/// A key-value store shared between hosts.
pub type SharedKv = Arc<Mutex<HashMap<String, Vec<u8>>>>;
/// A SQLite connection shared between hosts (an in-memory database, or one file connection).
pub type SharedSql = Arc<Mutex<rusqlite::Connection>>;

/// A fresh in-memory database to share between hosts.
pub fn memory_sql() -> SharedSql {
    Arc::new(Mutex::new(super::sql::open(None)))
}

/// Counts of what a host was asked to do.
#[derive(Debug, Default)]
pub struct Calls {
    pub http: AtomicUsize,
    pub kv_reads: AtomicUsize,
    pub kv_writes: AtomicUsize,
}

/// The largest value a store takes by default: the ceiling of Fermyon Cloud and many Redis
/// setups. Every native test runs under it.
pub const VALUE_LIMIT: usize = 1024 * 1024;

pub struct NativeHost {
    pub kv: SharedKv,
    pub sql: SharedSql,
    /// Every SQL statement fails (the database is unavailable) while set.
    pub sql_down: AtomicBool,
    /// Values larger than this are refused, like a hosted store.
    pub value_limit: usize,
    /// The limit the store says it has, when it says another than it enforces (a store that
    /// does not tell its limit: the app assumes 1 MiB).
    pub reported_value_limit: Option<usize>,
    /// A store without atomic increment (the lease falls back to write-then-read-back).
    pub no_atomics: bool,
    /// Each KV call waits a random time up to this, before and after its effect, so that the
    /// calls of ticks on other threads interleave with it.
    pub kv_jitter: Option<Duration>,
    pub variables: HashMap<String, String>,
    pub logs: Mutex<Vec<String>>,
    pub calls: Calls,
    /// Every sleep the core asked for, in order.
    pub sleeps: Mutex<Vec<Duration>>,
    origin: Instant,
    virtual_sleep: AtomicBool,
    /// Virtual time added to both clocks, in nanoseconds.
    offset_ns: AtomicU64,
    rng: AtomicU64,
}

impl NativeHost {
    pub fn new<K: AsRef<str>, V: AsRef<str>>(variables: &[(K, V)]) -> Self {
        Self::with_kv(variables, SharedKv::default())
    }

    pub fn with_kv<K: AsRef<str>, V: AsRef<str>>(variables: &[(K, V)], kv: SharedKv) -> Self {
        Self {
            kv,
            sql: memory_sql(),
            sql_down: AtomicBool::new(false),
            value_limit: VALUE_LIMIT,
            reported_value_limit: None,
            no_atomics: false,
            kv_jitter: None,
            variables: variables
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
            logs: Mutex::new(Vec::new()),
            calls: Calls::default(),
            sleeps: Mutex::new(Vec::new()),
            origin: Instant::now(),
            virtual_sleep: AtomicBool::new(true),
            offset_ns: AtomicU64::new(0),
            // Distinct per host (two ticks must not share a lease owner id), fixed per process.
            rng: AtomicU64::new(
                0x5eed_1c3f_0000_0001
                    ^ HOSTS
                        .fetch_add(1, Ordering::SeqCst)
                        .wrapping_mul(0x2545_f491_4f6c_dd1d),
            ),
        }
    }

    /// From now on `sleep` really sleeps.
    pub fn real_sleep(self) -> Self {
        self.virtual_sleep.store(false, Ordering::SeqCst);
        self
    }

    /// Moves both clocks forward, as if `by` had passed (for a host that plays a later tick).
    pub fn advance(&self, by: Duration) {
        self.offset_ns
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn slept(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn http_calls(&self) -> usize {
        self.calls.http.load(Ordering::SeqCst)
    }
}

impl HttpClient for NativeHost {
    async fn send(
        &self,
        request: HttpRequest,
        timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError> {
        self.calls.http.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(blocking_send(request, timeouts));
        });
        rx.await
            .unwrap_or_else(|_| Err(TransportError::Other("HTTP thread died".into())))
    }
}

fn blocking_send(request: HttpRequest, timeouts: Timeouts) -> Result<HttpResponse, TransportError> {
    if timeouts.total.is_zero() {
        return Err(TransportError::Timeout);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeouts.connect.max(Duration::from_millis(1))))
        .timeout_global(Some(timeouts.total))
        .timeout_recv_response(Some(timeouts.first_byte.max(Duration::from_millis(1))))
        .http_status_as_error(false)
        .build()
        .into();
    let (parts, body) = request.into_parts();
    let sized = parts.headers.contains_key(http::header::CONTENT_LENGTH)
        || (body.is_empty() && matches!(parts.method, http::Method::GET | http::Method::HEAD));
    let result = if sized {
        agent.run(http::Request::from_parts(parts, body))
    } else {
        let mut reader = std::io::Cursor::new(body);
        let chunked = ureq::SendBody::from_reader(&mut reader);
        agent.run(http::Request::from_parts(parts, chunked))
    };
    let response = result.map_err(|error| match error {
        ureq::Error::Timeout(ureq::Timeout::Connect) => TransportError::ConnectTimeout,
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Connect(error.to_string())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportError::Connect(io.to_string())
        }
        other => TransportError::Other(other.to_string()),
    })?;
    let (parts, mut body) = response.into_parts();
    let bytes = body
        .with_config()
        .limit(lcw_fetcher::host::MAX_RESPONSE_BYTES as u64)
        .read_to_vec()
        .map_err(|error| match error {
            ureq::Error::Timeout(_) => TransportError::Timeout,
            other => TransportError::Other(other.to_string()),
        })?;
    Ok(http::Response::from_parts(parts, bytes))
}

impl NativeHost {
    /// Shares `sql` (another host's database).
    pub fn with_sql(mut self, sql: SharedSql) -> Self {
        self.sql = sql;
        self
    }

    /// Its own connection to the SQLite file at `path`, as each Spin process has.
    pub fn with_sqlite_file(mut self, path: &std::path::Path) -> Self {
        self.sql = Arc::new(Mutex::new(super::sql::open(Some(path))));
        self
    }

    /// Makes every SQL statement fail (true) or work again (false).
    pub fn set_sql_down(&self, down: bool) {
        self.sql_down.store(down, Ordering::SeqCst);
    }

    /// A store that says its values may be up to `limit` bytes, whatever it enforces.
    pub fn reporting_value_limit(mut self, limit: usize) -> Self {
        self.reported_value_limit = Some(limit);
        self
    }

    /// A store that refuses values over `limit` bytes.
    pub fn with_value_limit(mut self, limit: usize) -> Self {
        self.value_limit = limit;
        self
    }

    /// A store without atomic increment.
    pub fn without_atomics(mut self) -> Self {
        self.no_atomics = true;
        self
    }

    /// KV calls that take a random time up to `max` (really, on this thread).
    pub fn with_kv_jitter(mut self, max: Duration) -> Self {
        self.kv_jitter = Some(max);
        self
    }

    fn jitter(&self) {
        if let Some(max) = self.kv_jitter {
            let nanos = self.random_u64() % (max.as_nanos() as u64 + 1);
            std::thread::sleep(Duration::from_nanos(nanos));
        }
    }
}

impl KeyValue for NativeHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.calls.kv_reads.fetch_add(1, Ordering::SeqCst);
        self.jitter();
        let value = self.kv.lock().unwrap().get(key).cloned();
        self.jitter();
        Ok(value)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.calls.kv_writes.fetch_add(1, Ordering::SeqCst);
        if value.len() > self.value_limit {
            return Err(KvError(format!(
                "value of {} bytes for `{key}` is over the store's limit of {} bytes",
                value.len(),
                self.value_limit
            )));
        }
        self.jitter();
        self.kv
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_vec());
        self.jitter();
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.calls.kv_writes.fetch_add(1, Ordering::SeqCst);
        self.jitter();
        self.kv.lock().unwrap().remove(key);
        self.jitter();
        Ok(())
    }

    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError> {
        if self.no_atomics {
            return Ok(None);
        }
        self.calls.kv_writes.fetch_add(1, Ordering::SeqCst);
        self.jitter();
        let value = {
            let mut kv = self.kv.lock().unwrap();
            // Encoded as Spin's SQLite store does; a value `kv_set` wrote is refused there
            // too (it panics the host), so a counter must never be written any other way.
            let current = match kv.get(key) {
                None => 0,
                Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                    KvError(format!("`{key}` holds {} bytes, not a counter", v.len()))
                })?),
            };
            let value = current + delta;
            kv.insert(key.to_owned(), value.to_le_bytes().to_vec());
            value
        };
        self.jitter();
        Ok(Some(value))
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.calls.kv_reads.fetch_add(1, Ordering::SeqCst);
        self.jitter();
        let keys = self
            .kv
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        self.jitter();
        Ok(keys)
    }

    fn kv_value_limit(&self) -> usize {
        self.reported_value_limit.unwrap_or(self.value_limit)
    }
}

impl Sql for NativeHost {
    async fn sql_execute(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        if self.sql_down.load(Ordering::SeqCst) {
            return Err(SqlError(
                "unable to open database file (made to fail by the test)".into(),
            ));
        }
        let connection = self.sql.lock().unwrap();
        super::sql::execute(&connection, statement, params)
    }
}

impl Variables for NativeHost {
    async fn variable(&self, name: &str) -> Result<Option<String>, String> {
        let value = self.variables.get(name).cloned();
        // A virtual sleep ends at once while a request to the fake takes real time: a hedge's
        // timer would always win that race. Hedging is off here unless a test sets it (its tests
        // run in `support::sim`, where every wait is virtual).
        if value.is_none() && name == "lcw_hedge_after_ms" {
            return Ok(Some("0".to_owned()));
        }
        Ok(value)
    }
}

impl Clock for NativeHost {
    fn unix_millis(&self) -> i64 {
        (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + self.offset()).as_millis() as i64
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed() + self.offset()
    }

    async fn sleep(&self, duration: Duration) {
        self.sleeps.lock().unwrap().push(duration);
        if self.virtual_sleep.load(Ordering::SeqCst) {
            // Wake at (now + duration): concurrent sleepers end at the latest of their targets.
            let target = (self.monotonic() + duration).saturating_sub(self.origin.elapsed());
            self.offset_ns
                .fetch_max(target.as_nanos() as u64, Ordering::SeqCst);
            return;
        }
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = tx.send(());
        });
        let _ = rx.await;
    }
}

impl Random for NativeHost {
    /// splitmix64: deterministic for a host, so a failing run can be replayed.
    fn random_u64(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Log for NativeHost {
    fn log(&self, level: Level, message: &str) {
        let line = format!("{level}: {message}");
        eprintln!("{line}");
        self.logs.lock().unwrap().push(line);
    }
}
