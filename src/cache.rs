//! The response cache in the key-value store: per-kind TTL, a bounded entry count with LRU
//! eviction, statistics, `clear`.
//!
//! Owns the cache's index and segments, and the caching rules. An entry is keyed by endpoint +
//! request body and keeps the time its data was fetched, so points built from a hit carry that
//! time, never a new one. Errors and empty answers are never stored. KV round trips do not grow
//! with the entries a tick touches: the index (every entry's metadata and the statistics) travels
//! in the collector's state document, small bodies with it ([`TickCache::inline_up_to`]), and
//! the other bodies a tick stores go together into one gzip-compressed segment. An answer whose
//! TTL is not longer than the tick interval (plus [`TTL_SLACK_MS`]) is not cached at all: the
//! next cron tick would find it expired, so storing it only cost CPU and store bytes. An answer
//! whose body no hit needs (`/status`, `/credits`: a tick takes them into account when they
//! arrive) is kept as an index entry without a body. It must not call LCW or decide what a tick
//! fetches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read as _, Write as _};

use serde::{Deserialize, Serialize};

use crate::config::Ttls;
use crate::host::{KeyValue, KvError, Level, Log};
use crate::lcw::Endpoint;

/// Prefix of segment documents (gzip-compressed JSON: entry key → body).
pub const SEGMENT_PREFIX: &str = "lcw/v1/cache/segment/";
/// Hosted key-value stores cap a value at 1 MB; a segment stays below with room to spare.
pub const SEGMENT_LIMIT: usize = 900 * 1024;
/// The largest body kept inline in the index (gzip, base64 bytes).
pub const INLINE_LIMIT: usize = 4 * 1024;
/// What a tick keeps inline at most, all bodies together (the state document's share).
pub const INLINE_BUDGET: usize = 8 * 1024;

/// The most a segment may inflate to when read: the bodies of one tick (each at most
/// [`crate::host::MAX_RESPONSE_BYTES`]) whose compressed copy fitted [`SEGMENT_LIMIT`]. A stored
/// segment that inflates further (a gzip bomb) is unreadable.
pub const SEGMENT_INFLATED_LIMIT: usize = 8 * crate::host::MAX_RESPONSE_BYTES;

/// A cron tick may fire a little before the previous one's TTL is over; an entry that would
/// expire within this slack already counts as expired, so a 60 s TTL under a one-minute cron
/// refreshes every tick.
pub const TTL_SLACK_MS: i64 = 2_000;

/// The TTL of `endpoint`'s answers, in seconds: the endpoint→setting map lives here, as the
/// settings cannot name LCW endpoints.
pub fn ttl_s(ttls: &Ttls, endpoint: Endpoint) -> u64 {
    match endpoint {
        Endpoint::Status => ttls.status_s,
        Endpoint::Credits => ttls.credits_s,
        Endpoint::CoinsSingle | Endpoint::CoinsSingleHistory => ttls.coins_single_s,
        Endpoint::CoinsList | Endpoint::CoinsMap => ttls.coins_list_s,
        Endpoint::Overview | Endpoint::OverviewHistory => ttls.overview_s,
        Endpoint::ExchangesList | Endpoint::ExchangesSingle => ttls.exchanges_list_s,
    }
}

/// One cached answer's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// When the request went out (freshness is measured from here, as ticks are scheduled).
    pub requested_at_ms: i64,
    /// When the answer arrived: the time of the points built from it.
    pub fetched_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_used_ms: i64,
    /// The segment document holding the body; empty when the body is inline or none is kept
    /// ([`TickCache::store_fetched_only`]).
    pub segment: String,
    /// A small body kept in the index itself (gzip, base64), see [`TickCache::inline_up_to`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inline: String,
}

/// Cache statistics, persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
}

impl CacheStats {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        // In floating point: the stored counts may be anywhere up to their largest.
        let lookups = self.hits as f64 + self.misses as f64;
        if lookups == 0.0 {
            0.0
        } else {
            self.hits as f64 / lookups
        }
    }
}

/// The index: every entry's metadata and the statistics (a part of the state document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Index {
    pub entries: BTreeMap<String, Entry>,
    pub stats: CacheStats,
}

/// A cache failure that is worth a log line; the tick goes on without the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    Kv(KvError),
    Segment { key: String, detail: String },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kv(e) => write!(f, "cache: {e}"),
            Self::Segment { key, detail } => write!(f, "cache segment `{key}`: {detail}"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<KvError> for CacheError {
    fn from(e: KvError) -> Self {
        Self::Kv(e)
    }
}

/// A hit: the body as LCW sent it and when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub body: Vec<u8>,
    pub fetched_at_ms: i64,
}

/// The cache as one tick sees it: loaded once, used in memory, saved once.
pub struct TickCache {
    index: Index,
    ttls: Ttls,
    max_entries: usize,
    /// Bodies stored during this tick, written as one segment at the end.
    new_bodies: BTreeMap<String, Vec<u8>>,
    segment_for_tick: String,
    loaded_segments: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Segments no entry refers to any more, deleted on save.
    orphaned: BTreeSet<String>,
    /// Answers whose TTL is at most this long are not stored (0: every answer is).
    uncached_up_to_ms: i64,
    /// Inline bodies the index may hold together, in bytes (0: none).
    inline_budget: usize,
}

/// The cache key of a request: endpoint and exact body.
pub fn key(endpoint: Endpoint, body: &[u8]) -> String {
    format!("{}|{}", endpoint.path(), String::from_utf8_lossy(body))
}

/// The TTL of the answer a cache key holds; for an endpoint this release does not know, the
/// longest TTL of those it does.
fn key_ttl_s(ttls: &Ttls, key: &str) -> u64 {
    let path = key.split('|').next().unwrap_or_default();
    match Endpoint::from_path(path) {
        Some(endpoint) => ttl_s(ttls, endpoint),
        None => Endpoint::ALL
            .into_iter()
            .map(|endpoint| ttl_s(ttls, endpoint))
            .max()
            .unwrap_or(0),
    }
}

/// True for answers with no data: `[]`, `null`, and `{}` from anything but `/status`
/// (whose documented answer is `{}`).
pub fn is_empty_answer(endpoint: Endpoint, body: &[u8]) -> bool {
    // Without a copy: a data answer is 100 KB, and an empty one has at most 4 other bytes.
    let mut trimmed = [0u8; 4];
    let mut len = 0;
    for &b in body.iter().filter(|b| !b.is_ascii_whitespace()) {
        if len == trimmed.len() {
            return false;
        }
        trimmed[len] = b;
        len += 1;
    }
    match &trimmed[..len] {
        b"" | b"[]" | b"null" => true,
        b"{}" => endpoint != Endpoint::Status,
        _ => false,
    }
}

impl TickCache {
    /// Takes the stored index and drops the entries that have expired at `now_ms`.
    /// An entry is fresh for the TTL configured now from when it was asked, whatever expiry
    /// it was stored with (a TTL since lowered, a corrupted document), and never when it was
    /// asked in the future (by a clock that had jumped ahead); entries of endpoints this
    /// release does not know live for the longest TTL at most.
    pub fn new(index: Index, ttls: Ttls, max_entries: usize, tick_id: &str, now_ms: i64) -> Self {
        let expired: Vec<String> = index
            .entries
            .iter()
            .filter(|(key, e)| {
                let ttl_ms = i64::try_from(key_ttl_s(&ttls, key))
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000);
                let expires_at_ms = e
                    .expires_at_ms
                    .min(e.requested_at_ms.saturating_add(ttl_ms));
                // Asked or answered in the future: points from it would be too.
                e.requested_at_ms.max(e.fetched_at_ms) > now_ms.saturating_add(TTL_SLACK_MS)
                    || expires_at_ms.saturating_sub(TTL_SLACK_MS) <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut cache = Self {
            index,
            ttls,
            max_entries: max_entries.max(1),
            new_bodies: BTreeMap::new(),
            segment_for_tick: format!("{SEGMENT_PREFIX}{tick_id}"),
            loaded_segments: BTreeMap::new(),
            orphaned: BTreeSet::new(),
            uncached_up_to_ms: 0,
            inline_budget: 0,
        };
        for key in expired {
            cache.remove(&key);
            cache.index.stats.expirations = cache.index.stats.expirations.saturating_add(1);
        }
        cache
    }

    /// Stores no answer that the next tick, `interval` later, would find expired: TTLs up to
    /// `interval` + [`TTL_SLACK_MS`]. Those answers are never read back by a cron tick; an
    /// off-schedule tick (`POST /collect`) fetches them afresh too.
    pub fn uncached_up_to(mut self, interval: std::time::Duration) -> Self {
        self.uncached_up_to_ms = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(TTL_SLACK_MS);
        self
    }

    /// Keeps bodies of at most [`INLINE_LIMIT`] bytes compressed in the index itself, up to
    /// `budget` bytes for all of them: a hit on them reads no segment and a tick that stores
    /// them writes none (the index travels in the state document, read and written anyway).
    pub fn inline_up_to(mut self, budget: usize) -> Self {
        self.inline_budget = budget;
        self
    }

    /// The TTL of `endpoint` in ms, or `None` when its answers are not cached.
    fn kept_ttl_ms(&self, endpoint: Endpoint) -> Option<i64> {
        let ttl_ms = i64::try_from(ttl_s(&self.ttls, endpoint)).unwrap_or(i64::MAX / 2000) * 1000;
        (ttl_ms > self.uncached_up_to_ms).then_some(ttl_ms)
    }

    /// Whether `endpoint`'s answers are cached at all.
    pub fn caches(&self, endpoint: Endpoint) -> bool {
        self.kept_ttl_ms(endpoint).is_some()
    }

    /// When the fresh answer under `key` was fetched, counting a hit or a miss, without reading
    /// its body: for answers a tick takes into account only when they arrive.
    pub fn fresh(&mut self, key: &str, now_ms: i64) -> Option<i64> {
        let Some(entry) = self.index.entries.get_mut(key) else {
            self.index.stats.misses = self.index.stats.misses.saturating_add(1);
            return None;
        };
        entry.last_used_ms = now_ms;
        self.index.stats.hits = self.index.stats.hits.saturating_add(1);
        Some(entry.fetched_at_ms)
    }

    /// The cached answer, counting a hit or a miss. Reads the entry's segment unless an earlier
    /// lookup of this tick already did (so a tick reads each segment at most once). An entry
    /// whose body cannot be had is dropped.
    pub async fn lookup<S: KeyValue + Log>(
        &mut self,
        store: &S,
        key: &str,
        now_ms: i64,
    ) -> Option<Hit> {
        let entry = self.index.entries.get(key).cloned();
        let body = match &entry {
            Some(entry) => self.body(store, key, entry).await,
            None => None,
        };
        let (Some(entry), Some(body)) = (entry, body) else {
            self.remove(key);
            self.index.stats.misses = self.index.stats.misses.saturating_add(1);
            return None;
        };
        self.index.stats.hits = self.index.stats.hits.saturating_add(1);
        if let Some(e) = self.index.entries.get_mut(key) {
            e.last_used_ms = now_ms;
        }
        Some(Hit {
            body,
            fetched_at_ms: entry.fetched_at_ms,
        })
    }

    /// The body of `entry`: inline, stored earlier in this tick, or from its segment.
    async fn body<S: KeyValue + Log>(
        &mut self,
        store: &S,
        key: &str,
        entry: &Entry,
    ) -> Option<Vec<u8>> {
        if !entry.inline.is_empty() {
            let body = unpack_inline(&entry.inline);
            if body.is_none() {
                store.log(
                    Level::Warn,
                    &format!(
                        "cache entry `{key}`: its inline body does not read; treated as absent"
                    ),
                );
            }
            return body;
        }
        if entry.segment.is_empty() {
            // Kept without its body: nothing to serve.
            return None;
        }
        if entry.segment == self.segment_for_tick {
            // Stored earlier in this same tick: not written yet.
            return self.new_bodies.get(key).cloned();
        }
        if !self.loaded_segments.contains_key(&entry.segment) {
            let bodies = read_segment(store, &entry.segment)
                .await
                .unwrap_or_else(|error| {
                    store.log(
                        Level::Warn,
                        &format!("{error}; treating its entries as absent"),
                    );
                    BTreeMap::new()
                });
            self.loaded_segments.insert(entry.segment.clone(), bodies);
        }
        self.loaded_segments
            .get(&entry.segment)
            .and_then(|bodies| bodies.get(key))
            .cloned()
    }

    /// Stores a successful, non-empty answer; evicts the least recently used entries beyond the
    /// bound. Returns false (and stores nothing) for an empty answer.
    pub fn store(
        &mut self,
        endpoint: Endpoint,
        key: String,
        body: Vec<u8>,
        requested_at_ms: i64,
        fetched_at_ms: i64,
    ) -> bool {
        if !self.caches(endpoint) || is_empty_answer(endpoint, &body) {
            return false;
        }
        let segment = self.segment_for_tick.clone();
        if !self.insert(
            endpoint,
            key.clone(),
            segment,
            requested_at_ms,
            fetched_at_ms,
        ) {
            return false;
        }
        // (Unless the bound evicted it at once.)
        if self.index.entries.contains_key(&key) {
            self.new_bodies.insert(key, body);
        }
        true
    }

    /// Notes that the answer under `key` was fetched, without keeping its body (see
    /// [`fresh`](Self::fresh)). Returns false when `endpoint`'s answers are not cached.
    /// Like [`store`](Self::store), empty answers are refused.
    pub fn store_fetched_only(
        &mut self,
        endpoint: Endpoint,
        key: String,
        body: &[u8],
        requested_at_ms: i64,
        fetched_at_ms: i64,
    ) -> bool {
        if is_empty_answer(endpoint, body) {
            return false;
        }
        self.insert(endpoint, key, String::new(), requested_at_ms, fetched_at_ms)
    }

    fn insert(
        &mut self,
        endpoint: Endpoint,
        key: String,
        segment: String,
        requested_at_ms: i64,
        fetched_at_ms: i64,
    ) -> bool {
        let Some(ttl_ms) = self.kept_ttl_ms(endpoint) else {
            return false;
        };
        self.remove(&key);
        self.index.entries.insert(
            key,
            Entry {
                requested_at_ms,
                fetched_at_ms,
                expires_at_ms: requested_at_ms.saturating_add(ttl_ms),
                last_used_ms: fetched_at_ms,
                segment,
                inline: String::new(),
            },
        );
        while self.index.entries.len() > self.max_entries {
            let Some(oldest) = self
                .index
                .entries
                .iter()
                .min_by_key(|(k, e)| (e.last_used_ms, (*k).clone()))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
            self.index.stats.evictions = self.index.stats.evictions.saturating_add(1);
        }
        true
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.index.entries.remove(key) {
            self.new_bodies.remove(key);
            if !entry.segment.is_empty()
                && !self
                    .index
                    .entries
                    .values()
                    .any(|e| e.segment == entry.segment)
            {
                self.orphaned.insert(entry.segment);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.index.stats
    }

    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// Writes this tick's segment, deletes segments nothing refers to, and gives the index back
    /// for the state document. If the segment cannot be written, its entries leave the index.
    pub async fn finish<S: KeyValue>(mut self, store: &S) -> (Index, Result<(), CacheError>) {
        let mut result = Ok(());
        self.inline_small_bodies();
        if self.new_bodies.is_empty() {
            // Nothing written under this tick's segment key: nothing to delete there either.
            self.orphaned.remove(&self.segment_for_tick);
        } else {
            let written = match pack(&self.new_bodies) {
                Ok(packed) if packed.len() <= SEGMENT_LIMIT => store
                    .kv_set(&self.segment_for_tick, &packed)
                    .await
                    .map_err(CacheError::from),
                // Too big for one value: cache nothing from this tick.
                Ok(_) => Err(CacheError::Segment {
                    key: self.segment_for_tick.clone(),
                    detail: format!("larger than {SEGMENT_LIMIT} bytes compressed"),
                }),
                Err(detail) => Err(CacheError::Segment {
                    key: self.segment_for_tick.clone(),
                    detail,
                }),
            };
            match written {
                Ok(()) => {
                    self.orphaned.remove(&self.segment_for_tick);
                }
                Err(error) => {
                    let keys: Vec<String> = self.new_bodies.keys().cloned().collect();
                    for key in keys {
                        self.remove(&key);
                    }
                    self.orphaned.remove(&self.segment_for_tick);
                    result = Err(error);
                }
            }
        }
        for segment in &self.orphaned {
            if let Err(error) = store.kv_delete(segment).await {
                result = result.and(Err(CacheError::from(error)));
            }
        }
        (self.index, result)
    }
}

impl TickCache {
    /// Moves this tick's small bodies into their index entries, within the inline budget.
    fn inline_small_bodies(&mut self) {
        if self.inline_budget == 0 {
            return;
        }
        let mut used: usize = self.index.entries.values().map(|e| e.inline.len()).sum();
        let keys: Vec<String> = self.new_bodies.keys().cloned().collect();
        for key in keys {
            let Some(text) = self.new_bodies.get(&key).and_then(|body| pack_inline(body)) else {
                continue;
            };
            if text.len() > INLINE_LIMIT || used + text.len() > self.inline_budget {
                continue;
            }
            if let Some(entry) = self.index.entries.get_mut(&key) {
                used += text.len();
                entry.inline = text;
                entry.segment = String::new();
                self.new_bodies.remove(&key);
            }
        }
    }
}

fn pack_inline(body: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    encoder.write_all(body).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(encoder.finish().ok()?))
}

fn unpack_inline(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let packed = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    // No answer is longer than the host lets through: a stored body that inflates further (a
    // gzip bomb in a hostile or corrupted store) is no body.
    let limit = crate::host::MAX_RESPONSE_BYTES;
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .ok()?;
    (body.len() <= limit).then_some(body)
}

/// Deletes cache segments no entry of `index` refers to that are older than `OLD_SEGMENT`
/// (written by ticks whose state was never saved; a younger one may belong to a tick running
/// now). Returns how many went.
pub async fn sweep<S: KeyValue>(
    store: &S,
    index: &Index,
    keys: &[String],
    now_ms: i64,
) -> Result<usize, KvError> {
    let referenced: BTreeSet<&str> = index.entries.values().map(|e| e.segment.as_str()).collect();
    let mut deleted = 0;
    for key in keys.iter().filter(|k| k.starts_with(SEGMENT_PREFIX)) {
        let written_ms = key[SEGMENT_PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .unwrap_or(0);
        if !referenced.contains(key.as_str()) && now_ms.saturating_sub(written_ms) > OLD_SEGMENT_MS
        {
            store.kv_delete(key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A cache segment no index refers to is garbage once it is older than the longest tick.
const OLD_SEGMENT_MS: i64 = 10 * 60 * 1000;

/// Forgets every entry of `index` (keeping the statistics) and deletes their segments.
pub async fn clear<S: KeyValue>(store: &S, index: &mut Index) -> Result<usize, CacheError> {
    let segments: BTreeSet<String> = index
        .entries
        .values()
        .filter(|e| !e.segment.is_empty())
        .map(|e| e.segment.clone())
        .collect();
    let cleared = index.entries.len();
    index.entries.clear();
    for segment in segments {
        store.kv_delete(&segment).await?;
    }
    Ok(cleared)
}

fn pack(bodies: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, String> {
    let as_text: BTreeMap<&str, &str> = bodies
        .iter()
        .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap_or("")))
        .collect();
    let json = serde_json::to_vec(&as_text).map_err(|e| e.to_string())?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    encoder.write_all(&json).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

async fn read_segment<S: KeyValue>(
    store: &S,
    key: &str,
) -> Result<BTreeMap<String, Vec<u8>>, CacheError> {
    let segment_error = |detail: String| CacheError::Segment {
        key: key.to_owned(),
        detail,
    };
    let Some(packed) = store.kv_get(key).await? else {
        return Err(segment_error("missing".into()));
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .take(SEGMENT_INFLATED_LIMIT as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| segment_error(e.to_string()))?;
    if json.len() > SEGMENT_INFLATED_LIMIT {
        return Err(segment_error(format!(
            "inflates past {SEGMENT_INFLATED_LIMIT} bytes"
        )));
    }
    let bodies: BTreeMap<String, String> =
        serde_json::from_slice(&json).map_err(|e| segment_error(e.to_string()))?;
    Ok(bodies
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_answers_are_recognised() {
        assert!(is_empty_answer(Endpoint::CoinsList, b" [ ] "));
        assert!(is_empty_answer(Endpoint::Overview, b"{}"));
        assert!(is_empty_answer(Endpoint::Overview, b"null"));
        assert!(
            !is_empty_answer(Endpoint::Status, b"{}"),
            "/status answers {{}} when up"
        );
        assert!(!is_empty_answer(
            Endpoint::CoinsList,
            b"[{\"code\":\"BTC\"}]"
        ));
        assert!(is_empty_answer(Endpoint::CoinsList, b"\n[\t\r\n]\n"));
        assert!(!is_empty_answer(Endpoint::CoinsList, b"[1]"));
        assert!(!is_empty_answer(Endpoint::CoinsList, b"[ 1, 2 ]"));
        assert!(!is_empty_answer(Endpoint::Overview, b"{ } x"));
    }

    #[test]
    fn keys_separate_endpoints_and_bodies() {
        assert_ne!(
            key(Endpoint::CoinsList, b"{\"offset\":0}"),
            key(Endpoint::CoinsList, b"{\"offset\":100}")
        );
        assert_ne!(
            key(Endpoint::CoinsList, b"{}"),
            key(Endpoint::CoinsMap, b"{}")
        );
    }

    fn ttls() -> Ttls {
        Ttls {
            status_s: 120,
            credits_s: 300,
            coins_single_s: 60,
            coins_list_s: 60,
            overview_s: 60,
            exchanges_list_s: 600,
        }
    }

    #[test]
    fn answers_the_next_tick_would_find_expired_are_not_stored() {
        let mut tick = TickCache::new(Index::default(), ttls(), 10, "t", 0)
            .uncached_up_to(std::time::Duration::from_secs(60));
        assert!(!tick.caches(Endpoint::CoinsList));
        assert!(tick.caches(Endpoint::Status));
        assert!(!tick.store(Endpoint::CoinsList, "c".into(), b"[1]".to_vec(), 0, 5));
        assert!(!tick.store(
            Endpoint::Overview,
            "o".into(),
            b"{\"cap\":1}".to_vec(),
            0,
            5
        ));
        assert!(tick.store(Endpoint::ExchangesList, "e".into(), b"[1]".to_vec(), 0, 5));
        assert!(!tick.store_fetched_only(Endpoint::Credits, "k".into(), b"{}", 0, 5));
        assert!(tick.store_fetched_only(Endpoint::Status, "s".into(), b"{}", 0, 5));
        assert_eq!(tick.len(), 2);
        assert_eq!(tick.new_bodies.len(), 1, "the status answer keeps no body");
        assert_eq!(tick.fresh("s", 10), Some(5));
        assert_eq!(tick.fresh("k", 10), None);
        // 62 s (interval + slack) is still not longer; 63 s is.
        let mut ttl = ttls();
        ttl.coins_list_s = 62;
        let tick = TickCache::new(Index::default(), ttl, 10, "t", 0)
            .uncached_up_to(std::time::Duration::from_secs(60));
        assert!(!tick.caches(Endpoint::CoinsList));
        ttl.coins_list_s = 63;
        let tick = TickCache::new(Index::default(), ttl, 10, "t", 0)
            .uncached_up_to(std::time::Duration::from_secs(60));
        assert!(tick.caches(Endpoint::CoinsList));
    }

    #[test]
    fn hit_rate() {
        assert_eq!(CacheStats::default().hit_rate(), 0.0);
        assert_eq!(
            CacheStats {
                hits: 3,
                misses: 1,
                ..CacheStats::default()
            }
            .hit_rate(),
            0.75
        );
    }

    /// Statistics of a stored index (another release, a hostile store) at their largest stay
    /// there: no overflow, no counter going backwards.
    #[test]
    fn statistics_at_their_largest_stay_there() {
        let max = CacheStats {
            hits: u64::MAX,
            misses: u64::MAX,
            evictions: u64::MAX,
            expirations: u64::MAX,
        };
        let index = Index {
            entries: BTreeMap::from([(
                "old".to_owned(),
                Entry {
                    expires_at_ms: i64::MIN,
                    ..Entry::default()
                },
            )]),
            stats: max,
        };
        let mut tick = TickCache::new(index, ttls(), 1, "t", 1_000);
        assert!(tick.store_fetched_only(Endpoint::Status, "a".into(), b"{}", 1_000, 1_000));
        assert!(tick.store_fetched_only(Endpoint::Status, "b".into(), b"{}", 2_000, 2_000));
        assert_eq!(tick.len(), 1, "one evicted");
        assert_eq!(tick.stats(), max);
        assert_eq!(max.hit_rate(), 0.5);
    }

    #[test]
    fn segments_round_trip_through_gzip() {
        let bodies = BTreeMap::from([
            ("a".to_owned(), b"[1,2]".to_vec()),
            ("b".to_owned(), "{\"n\":\"Ξ\"}".as_bytes().to_vec()),
        ]);
        let packed = pack(&bodies).unwrap();
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut json)
            .unwrap();
        let back: BTreeMap<String, String> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back["b"], "{\"n\":\"Ξ\"}");
    }
}
