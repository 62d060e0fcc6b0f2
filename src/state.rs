//! Documents in the key-value store: the key layout and the JSON codec.
//!
//! Owns the names of the shared documents (versioned under `lcw/v1/`) and how any document is
//! read and written: a value that fails to parse is never a crash — [`load`] treats it as absent
//! and logs it; [`load_checked`] reports it, so that its owner can [`set_aside`] what it cannot
//! read before it writes afresh.
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
/// The backfill queue and the last point of each watched series (`backfill::BackfillState`):
/// since state schema 3 the document lives in the state document, and this key holds a backup
/// copy, written only when the queue, names or counters change (not every tick), so that an
/// unreadable state document does not lose the queue. Documents of earlier releases are read
/// from here.
pub const BACKFILL_KEY: &str = "lcw/v1/backfill";
/// Lines InfluxDB refused for good (`sink::delivery::Quarantine`).
pub const QUARANTINE_KEY: &str = "lcw/v1/quarantine";
/// A counter of documents found unreadable and set aside (kept apart from the documents, so
/// that starting one afresh does not reset it).
pub const UNREADABLE_COUNT_KEY: &str = "lcw/v1/unreadable-documents";
/// Unreadable documents kept for a look, per key; older ones are deleted.
pub const UNREADABLE_KEPT: usize = 3;

/// A document as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded<T> {
    Absent,
    Read(T),
    /// The value does not parse: its bytes, and why.
    Unreadable {
        bytes: Vec<u8>,
        error: String,
    },
}

/// Reads a JSON document and says whether it was absent, read or unreadable.
pub async fn load_checked<T, S>(store: &S, key: &str) -> Result<Loaded<T>, KvError>
where
    T: DeserializeOwned,
    S: KeyValue,
{
    let Some(bytes) = store.kv_get(key).await? else {
        return Ok(Loaded::Absent);
    };
    Ok(match serde_json::from_slice(&bytes) {
        Ok(doc) => Loaded::Read(doc),
        Err(error) => Loaded::Unreadable {
            bytes,
            error: error.to_string(),
        },
    })
}

/// Reads a document its caller is about to write over. An unreadable one is set aside first
/// (so a write never destroys what could not be read) and read as `T::default()`; when it
/// cannot be set aside the error says so, and the caller must not write.
pub async fn load_for_update<T, S>(store: &S, key: &str, now_ms: i64) -> Result<T, KvError>
where
    T: DeserializeOwned + Default,
    S: KeyValue + Log,
{
    match load_checked(store, key).await? {
        Loaded::Read(doc) => Ok(doc),
        Loaded::Absent => Ok(T::default()),
        Loaded::Unreadable { bytes, error } => {
            let kept = set_aside(store, key, &bytes, now_ms).await.map_err(|kv| {
                KvError(format!(
                    "`{key}` is unreadable ({error}) and could not be set aside ({kv}): not written"
                ))
            })?;
            store.log(
                Level::Error,
                &format!("`{key}` unreadable ({error}): kept as {kept}; starting it afresh"),
            );
            Ok(T::default())
        }
    }
}

/// Keeps an unreadable document under `<key>.unreadable.<now_ms>` (at most
/// [`UNREADABLE_KEPT`] of them) and counts it; returns the key it went to. Only once it is kept
/// may the document be overwritten; pruning and counting are best effort (logged).
pub async fn set_aside<S: KeyValue + Log>(
    store: &S,
    key: &str,
    bytes: &[u8],
    now_ms: i64,
) -> Result<String, KvError> {
    let prefix = format!("{key}.unreadable.");
    let aside = format!("{prefix}{:013}", now_ms.max(0));
    store.kv_set(&aside, bytes).await?;
    if let Err(error) = prune(store, &prefix).await {
        store.log(
            Level::Warn,
            &format!("old unreadable documents not pruned: {error}"),
        );
    }
    if let Err(error) = count_unreadable(store).await {
        store.log(
            Level::Warn,
            &format!("unreadable document not counted: {error}"),
        );
    }
    Ok(aside)
}

async fn prune<S: KeyValue>(store: &S, prefix: &str) -> Result<(), KvError> {
    let mut kept = store.kv_keys(prefix).await?;
    kept.sort();
    let excess = kept.len().saturating_sub(UNREADABLE_KEPT);
    for old in &kept[..excess] {
        store.kv_delete(old).await?;
    }
    Ok(())
}

async fn count_unreadable<S: KeyValue>(store: &S) -> Result<(), KvError> {
    if store.kv_increment(UNREADABLE_COUNT_KEY, 1).await?.is_none() {
        // No atomics: a read and a write; only the tick holding the lease gets here.
        let count = store
            .kv_get(UNREADABLE_COUNT_KEY)
            .await?
            .and_then(|v| String::from_utf8_lossy(&v).trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        store
            .kv_set(UNREADABLE_COUNT_KEY, count.to_string().as_bytes())
            .await?;
    }
    Ok(())
}

/// Documents found unreadable and set aside so far (0, logged, when the count cannot be read:
/// it must never take `/stats` down). A counter is read by adding zero: the stores encode
/// counters differently (SQLite as 8 little-endian bytes, Redis as text).
pub async fn unreadable_count<S: KeyValue + Log>(store: &S) -> u64 {
    let count = match store.kv_increment(UNREADABLE_COUNT_KEY, 0).await {
        Ok(Some(count)) => Ok(count.max(0) as u64),
        Ok(None) => store.kv_get(UNREADABLE_COUNT_KEY).await.map(|v| {
            v.and_then(|v| String::from_utf8_lossy(&v).trim().parse().ok())
                .unwrap_or(0)
        }),
        Err(error) => Err(error),
    };
    count.unwrap_or_else(|error| {
        store.log(
            Level::Warn,
            &format!("unreadable documents not counted: {error}"),
        );
        0
    })
}

/// The API's last live checks of LCW and InfluxDB for `/status`, and when one was last tried
/// (`routes`): at most one live check per TTL across all callers.
pub const STATUS_CHECKS_KEY: &str = "lcw/v1/status-checks";
/// Prefix of the counters that let one request of a TTL period make `/status`'s live checks
/// (`routes`), one per period; deleted once no request can reach them.
pub const STATUS_CLAIMS_PREFIX: &str = "lcw/v1/status-checks/claims/";

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
    store.kv_set(key, encode(key, value)?.as_bytes()).await
}

/// A document as [`save`] writes it, to measure before writing.
pub fn encode<T: Serialize>(key: &str, value: &T) -> Result<String, KvError> {
    let text =
        serde_json::to_string(value).map_err(|e| KvError(format!("cannot encode `{key}`: {e}")))?;
    // On the way out too: a document of an earlier release may hold a secret it took in.
    Ok(crate::remote::redact_json(&text).into_owned())
}
