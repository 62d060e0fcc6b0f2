//! The durable spool: line protocol that could not be written yet, kept in the key-value store
//! until it can be.
//!
//! Owns the spool's segments and their index. A segment is self-describing: its key is unique
//! without any document (the writing tick's time and a random id), and its value starts with a
//! header line (points, first and last timestamp, creation time) before the gzip-compressed
//! lines, so the index kept in the state document is only a cache that [`adopt`]
//! recovers by listing `lcw/v1/spool/`. Metadata is never dropped before the write that replaces
//! it has succeeded. New lines go into the newest segment while it has room (when this tick
//! writes alone), so an outage of days takes tens of keys, not thousands. The spool is bounded:
//! past `spool_max_points` the oldest segment is evicted — the only way a point can ever be lost —
//! and the loss is counted and logged loudly. It must not talk to InfluxDB.

use std::collections::VecDeque;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::host::{KeyValue, KvError, Level, Log, Random};
use crate::sink::line_protocol::gzip;

/// Prefix of spool segment keys.
pub const SEGMENT_PREFIX: &str = "lcw/v1/spool/";
/// A segment stops taking lines at this compressed size (hosted stores cap values at 1 MB).
pub const SEGMENT_BYTES: usize = 768 * 1024;
/// The first bytes of a segment value: the header line follows.
const MAGIC: &[u8] = b"LCWSPOOL1 ";

/// One segment's metadata: what its header says, plus its key and size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentMeta {
    /// The segment's key; empty in indexes of the first release, whose keys were numbered.
    pub key: String,
    /// The number of a first-release segment (`lcw/v1/spool/<seq>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub points: u64,
    /// Stored size.
    pub bytes: u64,
    pub created_at_ms: i64,
    /// Timestamps of the first and last line, as written (0 when unknown).
    pub first_time: i64,
    pub last_time: i64,
}

impl SegmentMeta {
    pub fn key(&self) -> String {
        match (self.key.is_empty(), self.seq) {
            (true, Some(seq)) => format!("{SEGMENT_PREFIX}{seq:012}"),
            _ => self.key.clone(),
        }
    }
}

/// The header line of a segment value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Header {
    points: u64,
    created_at_ms: i64,
    first_time: i64,
    last_time: i64,
}

/// The spool's index: segments oldest first. A cache of what the keys hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolIndex {
    pub segments: VecDeque<SegmentMeta>,
    /// When the index was last checked against the store's keys.
    pub adopted_at_ms: i64,
    /// Segments already written to InfluxDB whose delete failed: deleted again each tick, and
    /// never adopted again (their points would be written twice).
    pub doomed: Vec<String>,
    /// This tick writes alone (an exclusive lease), so it may rewrite the newest segment.
    #[serde(skip)]
    pub may_extend_tail: bool,
}

impl SpoolIndex {
    pub fn points(&self) -> u64 {
        // Saturating: the index is a stored document, its counts may be anything.
        self.segments
            .iter()
            .fold(0, |total, s| total.saturating_add(s.points))
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    fn insert_sorted(&mut self, meta: SegmentMeta) {
        let at = self
            .segments
            .iter()
            .position(|s| s.key() > meta.key())
            .unwrap_or(self.segments.len());
        self.segments.insert(at, meta);
    }
}

/// Reads a segment's lines. A missing or unreadable segment yields `None` (and a log line): its
/// points are gone, which the caller counts.
pub async fn read<S: KeyValue + Log>(
    store: &S,
    meta: &SegmentMeta,
) -> Result<Option<String>, KvError> {
    let key = meta.key();
    let Some(value) = store.kv_get(&key).await? else {
        store.log(
            Level::Error,
            &format!(
                "spool segment {key} is missing: {} points lost",
                meta.points
            ),
        );
        return Ok(None);
    };
    match unpack(&value) {
        Ok((_, lines)) => Ok(Some(lines)),
        Err(e) => {
            store.log(
                Level::Error,
                &format!(
                    "spool segment {key} is unreadable ({e}): {} points lost",
                    meta.points
                ),
            );
            Ok(None)
        }
    }
}

/// A segment value's header (when it has one) and lines.
fn unpack(value: &[u8]) -> Result<(Option<Header>, String), String> {
    let (header, packed) = match value.strip_prefix(MAGIC) {
        Some(rest) => {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("no end of header")?;
            let header: Header =
                serde_json::from_slice(&rest[..end]).map_err(|e| format!("header: {e}"))?;
            (Some(header), &rest[end + 1..])
        }
        // A first-release segment: gzip only.
        None => (None, value),
    };
    let mut lines = String::new();
    flate2::read::GzDecoder::new(packed)
        .read_to_string(&mut lines)
        .map_err(|e| e.to_string())?;
    Ok((header, lines))
}

/// Writes `lines` (newline-terminated) under `key`; returns the segment's meta.
pub async fn write<S: KeyValue>(
    store: &S,
    key: &str,
    lines: &str,
    created_at_ms: i64,
) -> Result<SegmentMeta, KvError> {
    let (first_time, last_time) = time_range(lines);
    let header = Header {
        points: count_lines(lines),
        created_at_ms,
        first_time,
        last_time,
    };
    let mut value = MAGIC.to_vec();
    value.extend(serde_json::to_vec(&header).map_err(|e| KvError(format!("spool header: {e}")))?);
    value.push(b'\n');
    value.extend(gzip(lines.as_bytes()).map_err(|e| KvError(format!("spool gzip: {e}")))?);
    store.kv_set(key, &value).await?;
    Ok(SegmentMeta {
        key: key.to_owned(),
        seq: None,
        points: header.points,
        bytes: value.len() as u64,
        created_at_ms,
        first_time,
        last_time,
    })
}

/// The timestamps (last field) of the first and last line; 0 where a line has none.
fn time_range(lines: &str) -> (i64, i64) {
    let time = |line: Option<&str>| {
        line.and_then(|l| l.rsplit(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let mut it = lines.lines();
    (time(it.next()), time(lines.lines().next_back()))
}

pub fn count_lines(lines: &str) -> u64 {
    lines.bytes().filter(|&b| b == b'\n').count() as u64
}

/// A key no other segment has or will have: the time, a random id, and a chunk number.
fn new_key<S: Random>(store: &S, now_ms: i64, chunk: usize) -> String {
    format!(
        "{SEGMENT_PREFIX}{:013}-{:016x}-{chunk:03}",
        now_ms.max(0),
        store.random_u64()
    )
}

/// What an append did. Every point handed to it is either `stored` (in the index), `evicted`
/// (counted lost: older points that made room), or, after an `error`, neither: the caller
/// counts those `new_points - stored` as lost.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: u64,
    pub evicted: u64,
    pub error: Option<KvError>,
}

/// Appends `lines` to the spool: into the newest segment while it stays under
/// [`SEGMENT_BYTES`] (only when [`SpoolIndex::may_extend_tail`]), else into new segments. Then
/// evicts the oldest segments beyond `max_points`. On an error the index still describes every
/// segment that holds points, and [`Appended`] says what was stored.
pub async fn append<S: KeyValue + Log + Random>(
    store: &S,
    index: &mut SpoolIndex,
    lines: &str,
    max_points: u64,
    now_ms: i64,
) -> Appended {
    let mut done = Appended::default();
    if lines.is_empty() {
        return done;
    }
    let new_points = count_lines(lines);
    let cap = segment_points(max_points);
    // Compressed line protocol is a fifth to a tenth of its text: estimate on the safe side.
    let tail = index.segments.back().filter(|tail| {
        index.may_extend_tail
            && usize::try_from(tail.bytes)
                .is_ok_and(|bytes| bytes.saturating_add(lines.len() / 4) < SEGMENT_BYTES)
            && tail.points.saturating_add(new_points) <= cap
    });
    let extended = match tail.cloned() {
        Some(tail) => extend(store, &tail, lines).await.unwrap_or_else(|error| {
            store.log(
                Level::Warn,
                &format!(
                    "spool segment {} not extended ({error}): the lines go into a new one",
                    tail.key()
                ),
            );
            None
        }),
        None => None,
    };
    if let Some(meta) = extended {
        // Replaced only now that the write under the same key has succeeded.
        *index.segments.back_mut().expect("the tail exists") = meta;
        done.stored = new_points;
    } else {
        // Chunks of whole lines small enough that each compresses well under the limit.
        let mut rest = lines;
        let mut chunk = 0;
        while !rest.is_empty() {
            let cut = chunk_end(rest, SEGMENT_BYTES * 4, cap as usize);
            let (lines, tail) = rest.split_at(cut);
            match write(store, &new_key(store, now_ms, chunk), lines, now_ms).await {
                Ok(meta) => {
                    done.stored = done.stored.saturating_add(meta.points);
                    index.segments.push_back(meta);
                }
                Err(error) => {
                    done.error = Some(error);
                    return done;
                }
            }
            rest = tail;
            chunk += 1;
        }
    }
    done.evicted = evict(store, index, max_points).await;
    done
}

/// The tail with `lines` added, written under its own key; `None` when the tail is gone or
/// unreadable (then the lines go into a new segment instead).
async fn extend<S: KeyValue + Log>(
    store: &S,
    tail: &SegmentMeta,
    lines: &str,
) -> Result<Option<SegmentMeta>, KvError> {
    let Some(mut existing) = read(store, tail).await? else {
        return Ok(None);
    };
    existing.push_str(lines);
    rewrite(store, tail, &existing).await.map(Some)
}

/// Replaces a segment's lines under its own key; its new meta.
pub async fn rewrite<S: KeyValue>(
    store: &S,
    meta: &SegmentMeta,
    lines: &str,
) -> Result<SegmentMeta, KvError> {
    let mut new = write(store, &meta.key(), lines, meta.created_at_ms).await?;
    if meta.seq.is_some() {
        // A first-release segment keeps being named by its number.
        new.key.clear();
        new.seq = meta.seq;
    }
    Ok(new)
}

/// Drops the oldest segments beyond `max_points` (never the last one); returns the points lost.
/// A segment whose delete fails stays (and stays listed): the spool is over its bound until a
/// later tick, but nothing is lost uncounted.
async fn evict<S: KeyValue + Log>(store: &S, index: &mut SpoolIndex, max_points: u64) -> u64 {
    let mut evicted = 0;
    while index.points() > max_points && index.segments.len() > 1 {
        let oldest = index.segments.front().expect("more than one segment");
        if let Err(error) = store.kv_delete(&oldest.key()).await {
            store.log(
                Level::Warn,
                &format!("spool segment {} not evicted ({error}): the spool stays over its bound for now", oldest.key()),
            );
            break;
        }
        evicted = u64::saturating_add(evicted, oldest.points);
        index.segments.pop_front();
    }
    if evicted > 0 {
        store.log(
            Level::Error,
            &format!("spool full (spool_max_points = {max_points}): the oldest {evicted} points were evicted and are lost"),
        );
    }
    evicted
}

/// Forgets a segment whose points InfluxDB has: deleted now, or (when the delete fails) listed
/// in [`SpoolIndex::doomed`] to be deleted later and never adopted again.
pub async fn retire<S: KeyValue + Log>(store: &S, index: &mut SpoolIndex, key: String) {
    if let Err(error) = store.kv_delete(&key).await {
        store.log(
            Level::Warn,
            &format!("spool segment {key} not deleted ({error}): deleted again next tick"),
        );
        index.doomed.push(key);
        if index.doomed.len() > DOOMED_KEPT {
            // Forgotten keys may be adopted and written again: the same points, overwritten.
            let excess = index.doomed.len() - DOOMED_KEPT;
            index.doomed.drain(..excess);
        }
    }
}

/// Segments waiting for their delete that the index remembers at most.
pub const DOOMED_KEPT: usize = 1_000;

/// Deletes again the segments whose delete failed before.
pub async fn delete_doomed<S: KeyValue>(store: &S, index: &mut SpoolIndex) {
    let mut left = Vec::new();
    for key in std::mem::take(&mut index.doomed) {
        if store.kv_delete(&key).await.is_err() {
            left.push(key);
        }
    }
    index.doomed = left;
}

/// What [`adopt`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    pub segments: usize,
    /// Points of unreadable segments found (and deleted): lost, to be counted.
    pub lost_points: u64,
}

/// Adds to `index` every segment among `keys` (a listing of the store, whatever else it holds)
/// that it does not list (written by a tick whose state was never saved, or listed by a document
/// that was lost). An unreadable one is deleted and its points (as far as its header tells)
/// reported lost, so it is counted once.
pub async fn adopt<S: KeyValue + Log>(
    store: &S,
    index: &mut SpoolIndex,
    keys: &[String],
    now_ms: i64,
) -> Result<Adopted, KvError> {
    let mut keys: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with(SEGMENT_PREFIX))
        .cloned()
        .collect();
    keys.sort();
    let mut adopted = Adopted::default();
    for key in keys {
        if index.segments.iter().any(|s| s.key() == key) || index.doomed.contains(&key) {
            continue;
        }
        let Some(value) = store.kv_get(&key).await? else {
            continue;
        };
        match unpack(&value) {
            Ok((header, lines)) => {
                let header = header.unwrap_or_default();
                let (first_time, last_time) = time_range(&lines);
                index.insert_sorted(SegmentMeta {
                    key,
                    seq: None,
                    points: count_lines(&lines),
                    bytes: value.len() as u64,
                    created_at_ms: header.created_at_ms,
                    first_time,
                    last_time,
                });
                adopted.segments += 1;
            }
            Err(e) => {
                let points = header_points(&value);
                store.log(
                    Level::Error,
                    &format!(
                        "spool segment {key} is unreadable ({e}): its {points} points are lost"
                    ),
                );
                store.kv_delete(&key).await?;
                adopted.lost_points = adopted.lost_points.saturating_add(points);
            }
        }
    }
    index.adopted_at_ms = now_ms;
    Ok(adopted)
}

/// The points a segment's header claims, 0 when even the header does not read.
fn header_points(value: &[u8]) -> u64 {
    value
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.split(|&b| b == b'\n').next())
        .and_then(|header| serde_json::from_slice::<Header>(header).ok())
        .map_or(0, |h| h.points)
}

/// Points one segment holds at most: a tenth of the spool (so eviction gives back a tenth at a
/// time), never more than 20 000 (about 600 KB compressed).
pub fn segment_points(max_points: u64) -> u64 {
    (max_points / 10).clamp(1, 20_000)
}

/// The end of the longest run of whole lines of `text` of at most `limit` bytes and `max_lines`
/// lines (at least one line).
fn chunk_end(text: &str, limit: usize, max_lines: usize) -> usize {
    let by_lines = text
        .match_indices('\n')
        .nth(max_lines.max(1) - 1)
        .map_or(text.len(), |(i, _)| i + 1);
    let text = &text[..by_lines];
    if text.len() <= limit {
        return text.len();
    }
    // Bytewise: `limit` may fall inside a character, where a `str` slice would panic.
    match text.as_bytes()[..limit].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => text.find('\n').map_or(text.len(), |i| i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_on_line_boundaries() {
        assert_eq!(chunk_end("a\nb\nc\n", 100, 10), 6);
        assert_eq!(chunk_end("aa\nbb\ncc\n", 7, 10), 6);
        assert_eq!(chunk_end("a\nb\nc\n", 100, 2), 4);
        assert_eq!(
            chunk_end("aaaa\nb\n", 2, 10),
            5,
            "a long line still goes alone"
        );
        assert_eq!(chunk_end("é\néé\n", 4, 10), 3, "a limit inside a character");
    }

    #[test]
    fn first_release_keys_come_from_their_number() {
        let old = SegmentMeta {
            seq: Some(7),
            ..SegmentMeta::default()
        };
        assert_eq!(old.key(), "lcw/v1/spool/000000000007");
    }

    #[test]
    fn a_value_carries_its_own_header() {
        let lines = "m f=1 1000\nm f=2 2000\n";
        let mut value = MAGIC.to_vec();
        value.extend(br#"{"points":2,"created_at_ms":5,"first_time":1000,"last_time":2000}"#);
        value.push(b'\n');
        value.extend(gzip(lines.as_bytes()).unwrap());
        let (header, read) = unpack(&value).unwrap();
        assert_eq!(read, lines);
        assert_eq!(header.unwrap().points, 2);
        assert_eq!(time_range(lines), (1000, 2000));
        assert_eq!(unpack(&gzip(lines.as_bytes()).unwrap()).unwrap().1, lines);
    }
}
