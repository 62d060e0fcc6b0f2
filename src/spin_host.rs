//! The Spin adapter: the [`host`](crate::host) ports implemented with the Spin SDK.
//!
//! Owns every call into `spin_sdk` — outbound HTTP with WASI request options, the `default`
//! key-value store, the `default` SQLite database, application variables, clocks and sleep — and
//! nothing else: no decision is
//! made here. Only the components compile it (feature `spin`).

use std::cell::OnceCell;
use std::pin::pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use futures::future::{Either, select};
use spin_sdk::experimental::wasi::keyvalue::{atomics, store as wasi_store};
use spin_sdk::http::body::IncomingBodyExt as _;
use spin_sdk::http::{FullBody, send};
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, Value};
use spin_sdk::wasip3::http::types::{ErrorCode, RequestOptions};
use spin_sdk::wasip3::http_compat::RequestOptionsExtension;

use crate::host::{
    Clock, HttpClient, HttpRequest, HttpResponse, KeyValue, KvError, Level, Log,
    MAX_RESPONSE_BYTES, Random, Sql, SqlError, SqlRows, SqlValue, Timeouts, TransportError,
    Variables,
};

/// The host of one component invocation.
pub struct SpinHost {
    store: Result<Store, String>,
    /// Opened on the first statement: most API requests never need it.
    database: OnceCell<Result<Connection, String>>,
    origin: Instant,
    component: &'static str,
}

impl SpinHost {
    /// Opens the `default` store (listed in both components' `key_value_stores`). A store that
    /// cannot be opened makes every KV call fail with the reason, instead of failing the tick.
    pub async fn open(component: &'static str) -> Self {
        Self {
            store: Store::open_default().await.map_err(|e| e.to_string()),
            database: OnceCell::new(),
            origin: Instant::now(),
            component,
        }
    }

    fn store(&self) -> Result<&Store, KvError> {
        self.store
            .as_ref()
            .map_err(|e| KvError(format!("cannot open store `default`: {e}")))
    }
}

impl HttpClient for SpinHost {
    async fn send(
        &self,
        request: HttpRequest,
        timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError> {
        let options = RequestOptions::new();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // A host that does not support a timeout still gets the overall race below.
        let _ = options.set_connect_timeout(Some(nanos(timeouts.connect)));
        let _ = options.set_first_byte_timeout(Some(nanos(timeouts.first_byte)));
        let _ = options.set_between_bytes_timeout(Some(nanos(timeouts.total)));
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(RequestOptionsExtension(options));
        let request = http::Request::from_parts(parts, FullBody::new(bytes::Bytes::from(body)));

        let exchange = async {
            let response = send(request).await.map_err(transport_error)?;
            let (parts, body) = response.into_parts();
            let mut chunks = body.stream();
            let mut body = Vec::new();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(transport_error)?;
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(http::Response::from_parts(parts, body))
        };
        // Dropping the losing future cancels the host call.
        match select(pin!(exchange), pin!(spin_sdk::time::sleep(timeouts.total))).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(TransportError::Timeout),
        }
    }
}

fn too_large() -> TransportError {
    TransportError::Other(format!(
        "response body over the {MAX_RESPONSE_BYTES} byte limit"
    ))
}

fn transport_error(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::ConnectionTimeout => TransportError::ConnectTimeout,
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            TransportError::Timeout
        }
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => TransportError::Connect(format!("{code:?}")),
        ErrorCode::HttpRequestDenied => TransportError::Other(
            "request denied by the host: is the URL in allowed_outbound_hosts?".into(),
        ),
        other => TransportError::Other(format!("{other:?}")),
    }
}

impl KeyValue for SpinHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.store()?
            .get(key)
            .await
            .map_err(|e| KvError(e.to_string()))
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.store()?
            .set(key, value)
            .await
            .map_err(|e| KvError(e.to_string()))
    }

    async fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.store()?
            .delete(key)
            .await
            .map_err(|e| KvError(e.to_string()))
    }

    /// `wasi:keyvalue/atomics` on the same `default` store: the one operation Spin's SQLite and
    /// Redis stores both make atomic.
    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError> {
        let bucket = wasi_store::open("default").map_err(wasi_error)?;
        match atomics::increment(&bucket, key, delta) {
            Ok(value) => Ok(Some(value)),
            Err(wasi_store::Error::Other(detail)) if unsupported(&detail) => Ok(None),
            Err(error) => Err(wasi_error(error)),
        }
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let keys = self
            .store()?
            .get_keys()
            .await
            .collect()
            .await
            .map_err(|e| KvError(e.to_string()))?;
        Ok(keys.into_iter().filter(|k| k.starts_with(prefix)).collect())
    }
}

fn wasi_error(error: wasi_store::Error) -> KvError {
    KvError(match error {
        wasi_store::Error::NoSuchStore => "no such store".into(),
        wasi_store::Error::AccessDenied => "access denied".into(),
        wasi_store::Error::Other(detail) => detail,
    })
}

/// A backend without atomics says so in words; there is no error code for it.
fn unsupported(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    ["unsupported", "not supported", "not implemented"]
        .iter()
        .any(|phrase| detail.contains(phrase))
}

impl Sql for SpinHost {
    async fn sql_execute(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        if self.database.get().is_none() {
            let opened = Connection::open_default().await.map_err(|e| e.to_string());
            // Two statements racing to open: the first connection is kept, the other dropped.
            let _ = self.database.set(opened);
        }
        let connection = match self.database.get() {
            Some(Ok(connection)) => connection,
            Some(Err(error)) => {
                return Err(SqlError(format!("cannot open database `default`: {error}")));
            }
            None => return Err(SqlError("database `default` not opened".into())),
        };
        let bound = params.iter().map(|p| match p {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::Integer(*i),
            SqlValue::Real(f) => Value::Real(*f),
            SqlValue::Text(t) => Value::Text(t.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        });
        let result = connection
            .execute(statement, bound)
            .await
            .map_err(sql_error)?;
        let columns = result.columns().to_vec();
        let rows = result.collect().await.map_err(sql_error)?;
        Ok(SqlRows {
            columns,
            rows: rows
                .into_iter()
                .map(|row| {
                    row.values
                        .into_iter()
                        .map(|v| match v {
                            Value::Null => SqlValue::Null,
                            Value::Integer(i) => SqlValue::Integer(i),
                            Value::Real(f) => SqlValue::Real(f),
                            Value::Text(t) => SqlValue::Text(t),
                            Value::Blob(b) => SqlValue::Blob(b),
                        })
                        .collect()
                })
                .collect(),
        })
    }
}

fn sql_error(error: spin_sdk::sqlite::Error) -> SqlError {
    SqlError(match error {
        spin_sdk::sqlite::Error::Io(detail) => detail,
        other => format!("{other:?}"),
    })
}

impl Variables for SpinHost {
    async fn variable(&self, name: &str) -> Result<Option<String>, String> {
        match spin_sdk::variables::get(name).await {
            Ok(value) => Ok(Some(value)),
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            // The error text names the variable, never its value.
            Err(error) => Err(error.to_string()),
        }
    }
}

impl Clock for SpinHost {
    fn unix_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn sleep(&self, duration: Duration) {
        spin_sdk::time::sleep(duration).await;
    }
}

impl Random for SpinHost {
    fn random_u64(&self) -> u64 {
        spin_sdk::wasip3::random::random::get_random_u64()
    }
}

impl Log for SpinHost {
    fn log(&self, level: Level, message: &str) {
        // Spin captures guest stderr into its log directory and the terminal.
        // The last line of defence for a message the core built from a secret's text.
        let message = crate::remote::redact(message);
        eprintln!("lcw-fetcher {} {level}: {message}", self.component);
    }

    fn event(&self, json: &str) {
        // Structured events go to stdout, one JSON object a line, for log shippers.
        println!("{}", crate::remote::redact_json(json));
    }
}
