//! The durable spool: line protocol that could not be written yet, kept in the key-value store
//! until it can be.
//!
//! Owns the spool's segments (gzip-compressed line protocol, each well under the 1 MB value limit
//! of hosted stores) and their index. New lines are appended to the newest segment while it has
//! room, so an outage of days takes tens of keys, not thousands. The spool is bounded: past
//! `spool_max_points` the oldest segment is evicted — the only way a point can ever be lost — and
//! the loss is counted and logged loudly. It must not talk to InfluxDB.

use std::collections::VecDeque;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::host::{KeyValue, KvError, Level, Log};
use crate::influx::line_protocol::gzip;

/// Prefix of spool segment keys; the sequence number follows, zero-padded.
pub const SEGMENT_PREFIX: &str = "lcw/v1/spool/";
/// A segment stops taking lines at this compressed size (hosted stores cap values at 1 MB).
pub const SEGMENT_BYTES: usize = 768 * 1024;

/// One segment's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub seq: u64,
    pub points: u64,
    /// Compressed size.
    pub bytes: u64,
    pub created_at_ms: i64,
}

impl SegmentMeta {
    pub fn key(&self) -> String {
        segment_key(self.seq)
    }
}

pub fn segment_key(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:012}")
}

/// The spool's index: segments oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolIndex {
    pub next_seq: u64,
    pub segments: VecDeque<SegmentMeta>,
}

impl SpoolIndex {
    pub fn points(&self) -> u64 {
        self.segments.iter().map(|s| s.points).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// Reads a segment's lines. A missing or unreadable segment yields `None` (and a log line): its
/// points are gone, which the caller counts.
pub async fn read<S: KeyValue + Log>(
    store: &S,
    meta: &SegmentMeta,
) -> Result<Option<String>, KvError> {
    let Some(packed) = store.kv_get(&meta.key()).await? else {
        store.log(
            Level::Error,
            &format!(
                "spool segment {} is missing: {} points lost",
                meta.seq, meta.points
            ),
        );
        return Ok(None);
    };
    let mut lines = String::new();
    if let Err(e) = flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut lines) {
        store.log(
            Level::Error,
            &format!(
                "spool segment {} is unreadable ({e}): {} points lost",
                meta.seq, meta.points
            ),
        );
        return Ok(None);
    }
    Ok(Some(lines))
}

/// Writes `lines` (newline-terminated) as the content of segment `seq`; returns its meta.
pub async fn write<S: KeyValue>(
    store: &S,
    seq: u64,
    lines: &str,
    created_at_ms: i64,
) -> Result<SegmentMeta, KvError> {
    let packed = gzip(lines.as_bytes()).map_err(|e| KvError(format!("spool gzip: {e}")))?;
    store.kv_set(&segment_key(seq), &packed).await?;
    Ok(SegmentMeta {
        seq,
        points: count_lines(lines),
        bytes: packed.len() as u64,
        created_at_ms,
    })
}

pub fn count_lines(lines: &str) -> u64 {
    lines.bytes().filter(|&b| b == b'\n').count() as u64
}

/// Appends `lines` to the spool: into the newest segment while it stays under
/// [`SEGMENT_BYTES`], else into new segments. Then evicts the oldest segments beyond
/// `max_points`; returns the points evicted.
pub async fn append<S: KeyValue + Log>(
    store: &S,
    index: &mut SpoolIndex,
    lines: &str,
    max_points: u64,
    now_ms: i64,
) -> Result<u64, KvError> {
    if lines.is_empty() {
        return Ok(0);
    }
    let new_points = count_lines(lines);
    let cap = segment_points(max_points);
    // Compressed line protocol is a fifth to a tenth of its text: estimate on the safe side.
    let fits_tail = index.segments.back().is_some_and(|tail| {
        tail.bytes as usize + lines.len() / 4 < SEGMENT_BYTES && tail.points + new_points <= cap
    });
    let mut pending = String::new();
    if fits_tail && let Some(tail) = index.segments.back().cloned() {
        if let Some(existing) = read(store, &tail).await? {
            pending = existing;
        }
        index.segments.pop_back();
        pending.push_str(lines);
        let meta = write(store, tail.seq, &pending, tail.created_at_ms).await?;
        index.segments.push_back(meta);
    } else {
        // Chunks of whole lines small enough that each compresses well under the limit.
        let mut rest = lines;
        while !rest.is_empty() {
            let cut = chunk_end(rest, SEGMENT_BYTES * 4, cap as usize);
            let (chunk, tail) = rest.split_at(cut);
            let seq = index.next_seq;
            index.next_seq += 1;
            let meta = write(store, seq, chunk, now_ms).await?;
            index.segments.push_back(meta);
            rest = tail;
        }
    }
    let mut evicted = 0;
    while index.points() > max_points && index.segments.len() > 1 {
        let oldest = index.segments.pop_front().expect("more than one segment");
        store.kv_delete(&oldest.key()).await?;
        evicted += oldest.points;
    }
    if evicted > 0 {
        store.log(
            Level::Error,
            &format!("spool full (spool_max_points = {max_points}): the oldest {evicted} points were evicted and are lost"),
        );
    }
    Ok(evicted)
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
    fn keys_sort_in_sequence_order() {
        assert!(segment_key(9) < segment_key(10));
        assert_eq!(segment_key(7), "lcw/v1/spool/000000000007");
    }
}
