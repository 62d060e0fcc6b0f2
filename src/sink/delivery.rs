//! Delivery to a sink that loses nothing: batching, status-aware retries, splitting, the
//! quarantine for points the sink will never take, and the spool for points it cannot take yet.
//!
//! Written once over [`Sink`] (`dyn`: one copy of this code whatever the sink): a sink writes one
//! batch and maps its answer onto a [`BatchOutcome`]; everything else is here, so retries, the
//! spool, the quarantine and the counters behave alike for every sink. Points with a NaN or
//! infinite field lose that field (a point left with none is dropped), counted and said once.
//!
//! Owns what happens to every point after the sources made it, and the sink's persisted state
//! (counters, health, spool index) and quarantine. Per answer:
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | written |
//! | 413 | split in halves, each sent again (one line that is still too large: quarantined) |
//! | 400 `partial write: points beyond retention policy dropped=N` | the others are stored; N counted as dropped (`reason="retention"`), never quarantined or sent again |
//! | 400, 422, other 4xx naming a setting (no org, unknown bucket or database, authorisation) | kept (spooled), the sink is down for this tick, `/status` unhealthy with the reason until a write succeeds |
//! | 400, 422, other 4xx | split in halves until the bad lines stand alone; those are quarantined with the server's message, the others written (a partial write already stored them: sending them again overwrites the same points); past 10 refused lines in one batch the rest of that batch is spooled instead, as a setting is more likely wrong than every line |
//! | 401, 403, 404 | kept (spooled), the sink is down for this tick, `/status` unhealthy with the reason; first the sink's set-up step, once (InfluxDB v1 creates a missing database: `influx_create_database`), then the batch again |
//! | 429, 503 | kept, and nothing is sent before `Retry-After` (capped at 5 minutes; 10 s when absent) |
//! | other 5xx, no answer | up to 2 retries with jittered backoff inside the deadline, then kept |
//!
//! The spool and the quarantine keep line protocol (the spool's stored format is that of every
//! release); replay reads the lines back into points (a line that does not parse is quarantined,
//! within the per-batch refusal limit, the rest kept) and sends them through the same path, the stored line kept with each point. Fresh points go
//! first ([`Courier::deliver`]), the spool after ([`Courier::replay`]): a backlog the sink
//! refuses never holds back what was just fetched. It must not know where the points came from
//! nor any sink's wire format or settings. Its state travels in the cycle's state document; the
//! quarantine document it appends to is named in `state`, below it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::InfluxSettings;
use crate::host::{Host, KvError, Level};
use crate::point::{FieldValue, Point};
use crate::resilience::{RetryDecision, RetryPolicy};
use crate::sink::line_protocol;
use crate::sink::spool::{self, SpoolIndex};
use crate::sink::{Batch, BatchOutcome, LastWrite, Sink};
use crate::state;

/// Quarantined lines kept for inspection (the count goes on).
pub const QUARANTINE_KEPT: usize = 500;
/// The longest pause a `Retry-After` can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// The pause after a 429/503 without `Retry-After`.
pub const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(10);

/// Lines quarantined from one batch beyond which a refusal is taken for a setting InfluxDB
/// rejects (a wrong precision, a read-only token…) rather than for bad lines: the rest of that
/// batch is spooled. Per batch, not per tick, so bad old lines never cost fresh ones their write.
pub const QUARANTINE_LIMIT_PER_BATCH: u64 = 10;
/// About the length of a line (a coin's is 250 to 320 bytes), to size the tick's text once.
const LINE_BYTES: usize = 320;
/// The least time left for which a batch is still sent (else it is spooled for the next tick).
pub const MIN_WRITE_TIME: Duration = Duration::from_millis(250);

const TRANSIENT_RETRIES: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(4),
    max_retries: 2,
};

/// Counters since the store was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkCounters {
    pub points_written: u64,
    pub batches_written: u64,
    pub bytes_raw: u64,
    pub bytes_wire: u64,
    pub requests: u64,
    pub retries: u64,
    pub quarantined: u64,
    pub spooled: u64,
    pub replayed: u64,
    pub evicted: u64,
    /// Points InfluxDB took the request of but dropped as older than the retention policy
    /// (its `dropped=N`): a counted drop, never quarantined or retried.
    #[serde(default)]
    pub dropped_retention: u64,
}

/// The sink's state, carried in the collector's state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkState {
    pub counters: SinkCounters,
    pub spool: SpoolIndex,
    /// Nothing is sent before this time (a 429/503 asked for a pause).
    pub not_before_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// The sink the last tick wrote to (`sqlite` or `influxdb`; absent before this release).
    pub kind: Option<String>,
    /// Set while InfluxDB's last answer said a setting is wrong (no organisation, unknown bucket
    /// or database, a refused credential); cleared by the next write it takes. `/status` is
    /// unhealthy meanwhile.
    #[serde(default)]
    pub config_error: Option<String>,
    /// How the last write request ended: InfluxDB's health as the writes see it.
    #[serde(default)]
    pub last_write: Option<LastWrite>,
}

/// One quarantined line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantinedLine {
    pub at_ms: i64,
    pub line: String,
    pub message: String,
}

/// The document `lcw/v1/quarantine`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quarantine {
    pub total: u64,
    /// Newest last.
    pub recent: VecDeque<QuarantinedLine>,
}

/// One InfluxDB request of a tick, for the telemetry's database metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseRequest {
    /// `success` or `error`.
    pub status: String,
    pub duration_ms: u64,
}

/// What one tick's deliveries did, by measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    pub written: BTreeMap<String, u64>,
    /// Points InfluxDB dropped as older than its retention policy.
    pub dropped_retention: u64,
    pub replayed: u64,
    pub spooled: u64,
    pub quarantined: u64,
    pub evicted: u64,
    /// One entry per distinct failure.
    pub errors: Vec<String>,
    /// Every request, for the database metrics.
    pub requests: Vec<DatabaseRequest>,
    /// Points left with no finite field, hence not delivered.
    pub dropped_points: u64,
}

impl Delivery {
    pub fn written_total(&self) -> u64 {
        self.written
            .values()
            .fold(0, |total, &n| u64::saturating_add(total, n))
    }
}

/// What bounds delivery: points a request carries, points the spool keeps (`influx_batch_size`
/// and `spool_max_points`, kept in `InfluxSettings`), whatever the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub batch_size: u32,
    pub spool_max_points: u64,
}

impl Limits {
    pub fn of(settings: &InfluxSettings) -> Self {
        Self {
            batch_size: settings.batch_size,
            spool_max_points: settings.spool_max_points,
        }
    }
}

/// Delivery to one sink for one tick (or one admin request): loaded once, saved once.
pub struct Courier<'a, H> {
    host: &'a H,
    sink: Box<dyn Sink + 'a>,
    limits: Limits,
    deadline: Duration,
    state: SinkState,
    quarantined: Vec<QuarantinedLine>,
    /// Why nothing more is sent this tick.
    down: Option<String>,
    to_spool: String,
    delivery: Delivery,
}

/// Points to send, with the line of each: what the spool and the quarantine keep of it (a fresh
/// point encoded once, a stored one as it was read) and what a sink that speaks line protocol
/// sends.
struct Items<'p> {
    points: &'p [Point],
    lines: &'p [&'p str],
    /// The points were read back from their lines ([`Batch::read_back`]).
    read_back: bool,
}

impl Items<'_> {
    fn batch(&self, start: usize, end: usize) -> Batch<'_> {
        Batch {
            points: &self.points[start..end],
            lines: &self.lines[start..end],
            read_back: self.read_back,
        }
    }

    /// Appends the lines of `start..end` to `out`.
    fn keep(&self, start: usize, end: usize, out: &mut String) {
        self.lines[start..end]
            .iter()
            .for_each(|line| out.push_str(line));
    }
}

/// Stored lines read back: the points and their lines, and the lines kept unread (past the
/// refusal limit).
#[derive(Default)]
struct ReadBack<'l> {
    points: Vec<Point>,
    lines: Vec<&'l str>,
    kept: String,
}

impl ReadBack<'_> {
    /// Adds the lines kept unread to `kept`, on a line of their own (a segment's last line may
    /// lack its newline).
    fn keep_unread(&self, kept: &mut String) {
        if self.kept.is_empty() {
            return;
        }
        if !kept.is_empty() && !kept.ends_with('\n') {
            kept.push('\n');
        }
        kept.push_str(&self.kept);
    }
}

/// One [`Courier::send_all`]: the ranges still to send (first on top) and what became of the
/// others.
struct Run {
    batch: usize,
    work: Vec<(usize, usize)>,
    written: u64,
    kept: String,
    /// Lines refused (quarantined) per batch, for the per-batch limit.
    refused: Vec<u64>,
    /// Lines kept without a request while no failure of this tick says why: the sink's pause,
    /// the deadline.
    kept_paused: usize,
    kept_late: usize,
}

impl<'a, H: Host> Courier<'a, H> {
    /// Delivery to `sink` for one tick, with its state from the state document. `deadline` is on
    /// the monotonic clock.
    pub fn new(
        host: &'a H,
        sink: Box<dyn Sink + 'a>,
        limits: Limits,
        deadline: Duration,
        mut state: SinkState,
    ) -> Self {
        state.kind = Some(sink.kind().as_str().to_owned());
        Self {
            host,
            sink,
            limits,
            deadline,
            state,
            quarantined: Vec::new(),
            down: None,
            to_spool: String::new(),
            delivery: Delivery::default(),
        }
    }

    /// Writes spooled lines, oldest segment first, until the spool is empty, the sink fails or
    /// `until` (monotonic) comes. Returns false when a failure stopped it.
    pub async fn replay(&mut self, until: Duration) -> bool {
        while let Some(meta) = self.state.spool.segments.front().cloned() {
            if self.down.is_some()
                || self.paused()
                || self.host.monotonic() + MIN_WRITE_TIME > until
            {
                return self.down.is_none();
            }
            let text = match spool::read(self.host, &meta).await {
                Ok(Some(text)) => text,
                Ok(None) => {
                    self.state.counters.evicted =
                        self.state.counters.evicted.saturating_add(meta.points);
                    self.delivery.evicted = self.delivery.evicted.saturating_add(meta.points);
                    self.drop_front_segment(&meta).await;
                    continue;
                }
                Err(error) => {
                    self.note_error(format!("spool not readable: {error}"));
                    return false;
                }
            };
            let (written, kept) = self.send_stored(&text).await;
            self.delivery.replayed = self.delivery.replayed.saturating_add(written);
            self.state.counters.replayed = self.state.counters.replayed.saturating_add(written);
            if kept.is_empty() {
                self.drop_front_segment(&meta).await;
                continue;
            }
            // Keep what is left where it was, in order; stop until the next tick.
            match spool::rewrite(self.host, &meta, &kept).await {
                Ok(rest) => self.state.spool.segments[0] = rest,
                Err(error) => self.note_error(format!("spool segment not rewritten: {error}")),
            }
            return self.down.is_none();
        }
        true
    }

    /// Stored lines (a spool segment, quarantined lines) read back into points and sent: the
    /// points written, and the lines kept (those refused past the limit of unreadable lines
    /// among them).
    async fn send_stored(&mut self, text: &str) -> (u64, String) {
        let back = self.read_back(text);
        let items = Items {
            points: &back.points,
            lines: &back.lines,
            read_back: true,
        };
        let (written, mut kept) = self.send_all(&items).await;
        back.keep_unread(&mut kept);
        (written, kept)
    }

    /// Stored lines read back into points, each with its line. A line that does not parse is
    /// refused as a sink refuses one: quarantined (no sink would take it, and sent again it would
    /// fail again), at most [`QUARANTINE_LIMIT_PER_BATCH`] in a batch's worth of lines; past
    /// that the rest of those are kept for a later tick, as a segment this release cannot read
    /// (a newer release's) is more likely than so many damaged lines.
    fn read_back<'l>(&mut self, text: &'l str) -> ReadBack<'l> {
        let batch = self.limits.batch_size.max(1) as usize;
        let mut back = ReadBack::default();
        let mut refused = 0;
        let stored = text.split_inclusive('\n').filter(|l| !l.trim().is_empty());
        for (at, line) in stored.enumerate() {
            if at % batch == 0 {
                refused = 0;
            }
            match line_protocol::parse_line(line) {
                Ok(point) => {
                    back.points.push(point);
                    back.lines.push(line);
                }
                Err(_) if refused >= QUARANTINE_LIMIT_PER_BATCH => {
                    back.kept.push_str(line);
                    if !line.ends_with('\n') {
                        back.kept.push('\n');
                    }
                }
                Err(error) => {
                    refused += 1;
                    self.quarantine(line, error.to_string());
                }
            }
        }
        if !back.kept.is_empty() {
            self.note_error(format!(
                "spool: over {QUARANTINE_LIMIT_PER_BATCH} stored lines of one batch do not parse, the rest are kept for a later tick (a segment of another release?)"
            ));
        }
        back
    }

    async fn drop_front_segment(&mut self, meta: &spool::SegmentMeta) {
        self.state.spool.segments.pop_front();
        spool::retire(self.host, &mut self.state.spool, meta.key()).await;
    }

    /// Sends quarantined lines again (the admin's retry): returns how many the sink took and the
    /// entries that stay (refused again, with the new message, or not sent). Nothing is spooled
    /// or saved: the caller rewrites the quarantine.
    pub async fn retry_quarantined(
        &mut self,
        entries: &[QuarantinedLine],
    ) -> (u64, Vec<QuarantinedLine>) {
        let text: String = entries.iter().map(|e| format!("{}\n", e.line)).collect();
        let (written, kept) = self.send_stored(&text).await;
        let mut remaining = std::mem::take(&mut self.quarantined);
        for line in kept.lines() {
            if let Some(entry) = entries.iter().find(|e| e.line == line) {
                remaining.push(entry.clone());
            }
        }
        (written, remaining)
    }

    /// Delivers new points: written now, or quarantined, or kept for the spool. Returns false
    /// when some had to be kept.
    pub async fn deliver(&mut self, points: &[Point]) -> bool {
        let finite = self.finite(points);
        let points = finite.as_deref().unwrap_or(points);
        // Encoded once: InfluxDB's wire format, and what the spool and the quarantine keep.
        let mut text = String::with_capacity(points.len() * LINE_BYTES);
        line_protocol::encode_points(points.iter(), &mut text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        debug_assert_eq!(
            lines.len(),
            points.len(),
            "every point left has a finite field"
        );
        let items = Items {
            points,
            lines: &lines,
            read_back: false,
        };
        let (_, kept) = self.send_all(&items).await;
        self.to_spool.push_str(&kept);
        kept.is_empty()
    }

    /// `points` without their NaN and infinite fields, nor the points left with no field (no sink
    /// can store them, and line protocol has no syntax for them), counted and said; `None` when
    /// every field is finite.
    fn finite(&mut self, points: &[Point]) -> Option<Vec<Point>> {
        let finite =
            |(_, v): &(_, FieldValue)| !matches!(v, FieldValue::Float(f) if !f.is_finite());
        if points
            .iter()
            .all(|p| p.fields.iter().all(finite) && !p.fields.is_empty())
        {
            return None;
        }
        let (mut dropped_fields, mut dropped_points) = (0, 0);
        let mut kept = Vec::with_capacity(points.len());
        for point in points {
            let mut point = point.clone();
            let before = point.fields.len();
            point.fields.retain(finite);
            dropped_fields += before - point.fields.len();
            if point.fields.is_empty() {
                dropped_points += 1;
            } else {
                kept.push(point);
            }
        }
        self.host.log(
            Level::Warn,
            &format!(
                "{dropped_fields} non-finite fields and {dropped_points} points without any field left out"
            ),
        );
        self.delivery.dropped_points = self.delivery.dropped_points.saturating_add(dropped_points);
        Some(kept)
    }

    fn paused(&self) -> bool {
        // A pause ending further ahead than the longest one honoured (plus the clocks'
        // tolerance) was stamped by a clock ahead or a corrupted document: it would hold every
        // fresh point back that long.
        let now_ms = self.host.unix_millis();
        let credible_ms = (RETRY_AFTER_CAP.as_millis() as i64) + crate::clock::FUTURE_LIMIT_MS;
        self.state
            .not_before_ms
            .is_some_and(|t| now_ms < t && t.saturating_sub(now_ms) <= credible_ms)
    }

    /// Sends `items` in batches; returns the points written and the lines to keep.
    async fn send_all(&mut self, items: &Items<'_>) -> (u64, String) {
        let all = items.points.len();
        let batch = self.limits.batch_size.max(1) as usize;
        let mut run = Run {
            batch,
            work: (0..all)
                .step_by(batch)
                .map(|s| (s, (s + batch).min(all)))
                .rev()
                .collect(),
            written: 0,
            kept: String::new(),
            refused: vec![0; all.div_ceil(batch)],
            kept_paused: 0,
            kept_late: 0,
        };
        while let Some((start, end)) = run.work.pop() {
            if self.held_back(&mut run, end - start) {
                items.keep(start, end, &mut run.kept);
                continue;
            }
            let outcome = self.send_with_retries(items.batch(start, end)).await;
            self.note_write(&outcome);
            // The sink's set-up step for this answer, if it has one, then the batch again.
            let set_up = match self.sink.set_up(&outcome, self.deadline) {
                Some(step) => Some(step.await),
                None => None,
            };
            if let Some(result) = set_up {
                if let Err(error) = result {
                    self.note_error(error);
                }
                run.work.push((start, end));
                continue;
            }
            self.settle(outcome, items, (start, end), &mut run);
        }
        self.say_kept_back(run.kept_paused, run.kept_late);
        (run.written, run.kept)
    }

    /// Whether a batch of `len` points is kept without a request (the sink is down or paused,
    /// or no time is left), counting why.
    fn held_back(&self, run: &mut Run, len: usize) -> bool {
        let paused = self.paused();
        if self.down.is_none() && !paused && self.time_left() >= MIN_WRITE_TIME {
            return false;
        }
        match (self.down.is_some(), paused) {
            (true, _) => {}
            (false, true) => run.kept_paused += len,
            (false, false) => run.kept_late += len,
        }
        true
    }

    /// What the sink's answer to the batch `start..end` makes of it.
    fn settle(
        &mut self,
        outcome: BatchOutcome,
        items: &Items<'_>,
        (start, end): (usize, usize),
        run: &mut Run,
    ) {
        let batch_index = start / run.batch;
        match outcome {
            BatchOutcome::Written => {
                run.written += (end - start) as u64;
                self.count_written(&items.points[start..end]);
            }
            BatchOutcome::Dropped { dropped, message } => {
                run.written += self.count_dropped(&items.points[start..end], dropped, &message);
            }
            // So many refusals in one batch are a setting the sink rejects, not bad lines:
            // keep the rest of this batch; other batches get their own chance.
            outcome @ (BatchOutcome::TooLarge | BatchOutcome::Rejected { .. })
                if run.refused[batch_index] >= QUARANTINE_LIMIT_PER_BATCH =>
            {
                items.keep(start, end, &mut run.kept);
                self.note_error(format!(
                    "{}; over {QUARANTINE_LIMIT_PER_BATCH} lines of one batch refused, the rest are kept for a later tick ({})",
                    self.sink.said(&outcome),
                    self.sink.refusals_hint(),
                ));
            }
            BatchOutcome::TooLarge | BatchOutcome::Rejected { .. } if end - start > 1 => {
                let middle = start + (end - start) / 2;
                run.work.push((middle, end));
                run.work.push((start, middle));
            }
            outcome @ (BatchOutcome::TooLarge | BatchOutcome::Rejected { .. }) => {
                run.refused[batch_index] += 1;
                self.quarantine(items.lines[start], outcome.describe());
            }
            outcome => {
                items.keep(start, end, &mut run.kept);
                self.go_down(&outcome);
            }
        }
    }

    /// A batch the sink took but for `dropped` points older than its retention policy, gone by
    /// its rule: counted, never quarantined or sent again. Returns the points stored.
    fn count_dropped(&mut self, points: &[Point], dropped: u64, message: &str) -> u64 {
        let dropped = dropped.min(points.len() as u64);
        let stored = points.len() - dropped as usize;
        self.count_written(&points[..stored]);
        let counters = &mut self.state.counters;
        counters.dropped_retention = counters.dropped_retention.saturating_add(dropped);
        self.delivery.dropped_retention = self.delivery.dropped_retention.saturating_add(dropped);
        self.host.log(
            Level::Warn,
            &format!(
                "{} dropped {dropped} points older than its retention policy: {message}",
                self.sink.name()
            ),
        );
        stored as u64
    }

    /// Nothing more is sent this tick: a pause asked for, or a setting refused (everything waits
    /// in the spool, and `/status` says why until a write succeeds), or a failure.
    fn go_down(&mut self, outcome: &BatchOutcome) {
        let message = self.sink.said(outcome);
        match outcome {
            BatchOutcome::Throttled { retry_after, .. } => {
                let pause = retry_after
                    .unwrap_or(RETRY_AFTER_DEFAULT)
                    .min(RETRY_AFTER_CAP);
                self.state.not_before_ms = Some(
                    self.host
                        .unix_millis()
                        .saturating_add(pause.as_millis() as i64),
                );
            }
            BatchOutcome::Unauthorized { .. }
            | BatchOutcome::NotFound { .. }
            | BatchOutcome::Misconfigured { .. } => {
                self.state.config_error =
                    Some(format!("{message} ({})", self.sink.settings_hint()));
            }
            _ => {}
        }
        self.note_error(message.clone());
        self.down = Some(message);
    }

    /// Says, in the tick's errors, why lines went to the spool without a request: the sink's
    /// pause (with its end) or the deadline. A failure of this tick says it itself.
    fn say_kept_back(&mut self, paused: usize, late: usize) {
        let store = self.sink.name();
        let mut reasons = Vec::new();
        if paused > 0 {
            let until = self.state.not_before_ms.unwrap_or_default();
            reasons.push(format!(
                "{store} asked for a pause until {until} (Unix ms): {paused} lines kept for the spool, sent after it"
            ));
        }
        if late > 0 {
            reasons.push(format!(
                "no time left before the tick's deadline to write to {store}: {late} lines kept for the spool"
            ));
        }
        for reason in reasons {
            if !self.delivery.errors.contains(&reason) {
                self.delivery.errors.push(reason);
            }
        }
    }

    /// Keeps the last write's outcome for `/status`; a write the sink took clears a setting
    /// error.
    fn note_write(&mut self, outcome: &BatchOutcome) {
        let ok = outcome.is_written();
        if ok {
            self.state.config_error = None;
        }
        self.state.last_write = Some(LastWrite {
            at_ms: self.host.unix_millis(),
            ok,
            error: (!ok).then(|| outcome.to_string()),
        });
    }

    /// One batch, retried on transient failures while the deadline allows; each request counted
    /// and timed.
    async fn send_with_retries(&mut self, batch: Batch<'_>) -> BatchOutcome {
        let mut retry = 0;
        loop {
            let started = self.host.monotonic();
            let (outcome, sent) = self.sink.write(batch, self.deadline).await;
            let counters = &mut self.state.counters;
            counters.requests = counters.requests.saturating_add(1);
            counters.bytes_raw = counters.bytes_raw.saturating_add(sent.raw_bytes as u64);
            counters.bytes_wire = counters.bytes_wire.saturating_add(sent.wire_bytes as u64);
            let duration_ms = self.host.monotonic().saturating_sub(started).as_millis() as u64;
            let status = if outcome.is_written() {
                "success"
            } else {
                "error"
            };
            self.delivery.requests.push(DatabaseRequest {
                status: status.to_owned(),
                duration_ms,
            });
            if !matches!(outcome, BatchOutcome::Transient { .. }) {
                return outcome;
            }
            let class = crate::remote::ErrorClass::Transient;
            let decision = TRANSIENT_RETRIES.decide(
                retry,
                class,
                None,
                self.host.random_unit(),
                self.time_left(),
            );
            let RetryDecision::RetryAfter(wait) = decision else {
                return outcome;
            };
            let said = self.sink.said(&outcome);
            self.host.log(
                Level::Info,
                &format!("{said}; retry {} in {} ms", retry + 1, wait.as_millis()),
            );
            self.host.sleep(wait).await;
            self.state.counters.retries = self.state.counters.retries.saturating_add(1);
            retry += 1;
        }
    }

    fn count_written(&mut self, points: &[Point]) {
        self.state.counters.batches_written = self.state.counters.batches_written.saturating_add(1);
        self.state.counters.points_written = self
            .state
            .counters
            .points_written
            .saturating_add(points.len() as u64);
        for point in points {
            *self
                .delivery
                .written
                .entry(point.measurement.to_string())
                .or_default() += 1;
        }
    }

    fn quarantine(&mut self, line: &str, message: String) {
        let store = self.sink.name();
        self.host.log(
            Level::Error,
            &format!("{store} refused a line for good, quarantined: {message}"),
        );
        self.quarantined.push(QuarantinedLine {
            at_ms: self.host.unix_millis(),
            line: line.trim_end().to_owned(),
            message,
        });
        self.delivery.quarantined = self.delivery.quarantined.saturating_add(1);
        self.state.counters.quarantined = self.state.counters.quarantined.saturating_add(1);
    }

    fn note_error(&mut self, message: String) {
        if !self.delivery.errors.contains(&message) {
            self.delivery.errors.push(message.clone());
        }
        self.state.last_error = Some(message);
        self.state.last_error_at_ms = Some(self.host.unix_millis());
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_sub(self.host.monotonic())
    }

    /// Spools what was kept and saves the quarantine; returns what happened and the state for
    /// the state document.
    pub async fn finish(mut self) -> (Delivery, SinkState) {
        if !self.to_spool.is_empty() {
            let count = spool::count_lines(&self.to_spool);
            let now_ms = self.host.unix_millis();
            let appended = spool::append(
                self.host,
                &mut self.state.spool,
                &self.to_spool,
                self.limits.spool_max_points,
                now_ms,
            )
            .await;
            // Points neither stored nor counted by the spool: nowhere left to keep them.
            let lost = count.saturating_sub(appended.stored);
            let evicted = appended.evicted.saturating_add(lost);
            self.delivery.spooled = self.delivery.spooled.saturating_add(appended.stored);
            self.state.counters.spooled =
                self.state.counters.spooled.saturating_add(appended.stored);
            self.delivery.evicted = self.delivery.evicted.saturating_add(evicted);
            self.state.counters.evicted = self.state.counters.evicted.saturating_add(evicted);
            self.host.log(
                Level::Warn,
                &format!(
                    "{} points spooled for a later tick ({} in the spool)",
                    appended.stored,
                    self.state.spool.points()
                ),
            );
            if let Some(error) = appended.error {
                self.host.log(
                    Level::Error,
                    &format!("{lost} points could not be spooled and are lost: {error}"),
                );
            }
        }
        if !self.quarantined.is_empty()
            && let Err(error) = self.save_quarantine().await
        {
            self.host
                .log(Level::Error, &format!("quarantine not saved: {error}"));
        }
        (self.delivery, self.state)
    }

    async fn save_quarantine(&self) -> Result<(), KvError> {
        let now_ms = self.host.unix_millis();
        let mut quarantine: Quarantine =
            state::load_for_update(self.host, state::QUARANTINE_KEY, now_ms).await?;
        quarantine.total = quarantine
            .total
            .saturating_add(self.quarantined.len() as u64);
        quarantine.recent.extend(self.quarantined.iter().cloned());
        while quarantine.recent.len() > QUARANTINE_KEPT {
            quarantine.recent.pop_front();
        }
        state::save(self.host, state::QUARANTINE_KEY, &quarantine).await
    }
}
