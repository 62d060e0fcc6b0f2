//! Documents in the key-value store: the key layout and the JSON codec.
//!
//! Owns the names of the shared documents (versioned under `lcw/v1/`) and how any document is
//! read and written: a value that fails to parse is treated as absent and logged — never a crash.
//! It sits below every module that keeps a document, so that they can share key names and the
//! codec without importing each other. It must not know what goes into a document (their owners
//! define the shapes: the cycle its state document, the sink its quarantine, the lease itself),
//! nor decide when one is written.

use serde::{Serialize, de::DeserializeOwned};

use crate::host::{KeyValue, KvError, Level, Log};

/// The collector's state document (`cycle::CollectorState`): everything a tick reads at its
/// start and writes at its end, in one round trip each.
pub const STATE_KEY: &str = "lcw/v1/state";
/// Ticks that found the lease taken (written only by them, so a running tick cannot lose it).
pub const OVERLAPS_KEY: &str = "lcw/v1/overlaps";
/// The lease a running tick holds (`lease::Lease`).
pub const LEASE_KEY: &str = "lcw/v1/lease";
/// Lines InfluxDB refused for good (`influx::sink::Quarantine`).
pub const QUARANTINE_KEY: &str = "lcw/v1/quarantine";
/// The API's last live checks of LCW and InfluxDB for `/status`, and when one was last tried
/// (`routes`): at most one live check per TTL across all callers.
pub const STATUS_CHECKS_KEY: &str = "lcw/v1/status-checks";

/// Reads a JSON document; absent or unreadable documents give `T::default()` (the latter logged).
pub async fn load<T, S>(store: &S, key: &str) -> Result<T, KvError>
where
    T: DeserializeOwned + Default,
    S: KeyValue + Log,
{
    let Some(bytes) = store.kv_get(key).await? else {
        return Ok(T::default());
    };
    Ok(parse_or_default(store, key, &bytes))
}

/// Parses a stored document; an unreadable one is logged and replaced by `T::default()`.
pub fn parse_or_default<T: DeserializeOwned + Default, L: Log>(
    log: &L,
    key: &str,
    bytes: &[u8],
) -> T {
    serde_json::from_slice(bytes).unwrap_or_else(|error| {
        log.log(
            Level::Warn,
            &format!("state `{key}` is unreadable ({error}); starting it afresh"),
        );
        T::default()
    })
}

/// Writes a JSON document.
pub async fn save<T: Serialize, S: KeyValue>(
    store: &S,
    key: &str,
    value: &T,
) -> Result<(), KvError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| KvError(format!("cannot encode `{key}`: {e}")))?;
    store.kv_set(key, &bytes).await
}
