//! Delivery to the sink that loses nothing: batching, status-aware retries, splitting, the
//! quarantine for lines the sink will never take, and the spool for lines it cannot take yet.
//!
//! Two sinks share this path ([`SinkKind`]): InfluxDB over HTTP (`write`), and Spin's embedded
//! SQLite (`sqlite`). Only the step that writes one batch differs; the SQLite store's answers
//! map onto the same outcomes (a line it cannot take is refused like a 400, a database that
//! fails is transient like a 5xx), so retries, the spool, the quarantine and the counters behave
//! alike.
//!
//! Owns what happens to every line after it is encoded, and the sink's persisted state
//! (counters, health, spool index) and quarantine. Per answer:
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | written |
//! | 413 | split in halves, each sent again (one line that is still too large: quarantined) |
//! | 400 `partial write: points beyond retention policy dropped=N` | the others are stored; N counted as dropped (`reason="retention"`), never quarantined or sent again |
//! | 400, 422, other 4xx naming a setting (no org, unknown bucket or database, authorisation) | kept (spooled), the sink is down for this tick, `/status` unhealthy with the reason until a write succeeds |
//! | 400, 422, other 4xx | split in halves until the bad lines stand alone; those are quarantined with the server's message, the others written (a partial write already stored them: sending them again overwrites the same points); past 10 refused lines in one batch the rest of that batch is spooled instead, as a setting is more likely wrong than every line |
//! | 401, 403, 404 | kept (spooled), the sink is down for this tick, `/status` unhealthy with the reason; on v1 a missing database is first created once (`influx_create_database`) |
//! | 429, 503 | kept, and nothing is sent before `Retry-After` (capped at 5 minutes; 10 s when absent) |
//! | other 5xx, no answer | up to 2 retries with jittered backoff inside the deadline, then kept |
//!
//! Fresh lines go first ([`Sink::deliver`]), the spool after ([`Sink::replay`]): a backlog InfluxDB
//! refuses never holds back what was just fetched. It must not know where the lines came from. Its state travels in the cycle's state document;
//! the quarantine document it appends to is named in `state`, below it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{InfluxSettings, SinkKind};
use crate::host::{Host, KvError, Level, Timeouts};
use crate::resilience::{RetryDecision, RetryPolicy};
use crate::sink::influxdb::write::{self, BatchOutcome};
use crate::sink::spool::{self, SpoolIndex};
use crate::sink::sqlite::{self, Db};
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

/// The outcome of the last write request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWrite {
    pub at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
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
}

impl Delivery {
    pub fn written_total(&self) -> u64 {
        self.written
            .values()
            .fold(0, |total, &n| u64::saturating_add(total, n))
    }
}

/// The sink for one tick: loaded once, saved once.
pub struct Sink<'a, H> {
    host: &'a H,
    kind: SinkKind,
    /// The SQLite connection of this invocation is set up and its schema current.
    sqlite_ready: bool,
    settings: &'a InfluxSettings,
    spool_max_points: u64,
    deadline: Duration,
    state: SinkState,
    quarantined: Vec<QuarantinedLine>,
    /// Why nothing more is sent this tick.
    down: Option<String>,
    /// A missing v1 database was already created (or tried) this tick.
    create_tried: bool,
    to_spool: String,
    delivery: Delivery,
}

impl<'a, H: Host> Sink<'a, H> {
    /// The sink for one tick, with its state from the state document. `deadline` is on the
    /// monotonic clock.
    pub fn new(
        host: &'a H,
        kind: SinkKind,
        settings: &'a InfluxSettings,
        spool_max_points: u64,
        deadline: Duration,
        mut state: SinkState,
    ) -> Self {
        state.kind = Some(kind.as_str().to_owned());
        Self {
            host,
            kind,
            sqlite_ready: false,
            settings,
            spool_max_points,
            deadline,
            state,
            quarantined: Vec::new(),
            down: None,
            create_tried: false,
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
            let lines = match spool::read(self.host, &meta).await {
                Ok(Some(lines)) => lines,
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
            let (written, kept) = self.send_all(&lines).await;
            self.delivery.replayed = self.delivery.replayed.saturating_add(written);
            self.state.counters.replayed = self.state.counters.replayed.saturating_add(written);
            if kept.is_empty() {
                self.drop_front_segment(&meta).await;
            } else {
                // Keep what is left where it was, in order; stop until the next tick.
                match spool::rewrite(self.host, &meta, &kept).await {
                    Ok(rest) => {
                        self.state.spool.segments[0] = rest;
                    }
                    Err(error) => self.note_error(format!("spool segment not rewritten: {error}")),
                }
                return self.down.is_none();
            }
        }
        true
    }

    async fn drop_front_segment(&mut self, meta: &spool::SegmentMeta) {
        self.state.spool.segments.pop_front();
        spool::retire(self.host, &mut self.state.spool, meta.key()).await;
    }

    /// Sends quarantined lines again (the admin's retry): returns how many InfluxDB took and the
    /// entries that stay (refused again, with the new message, or not sent). Nothing is spooled
    /// or saved: the caller rewrites the quarantine.
    pub async fn retry_quarantined(
        &mut self,
        entries: &[QuarantinedLine],
    ) -> (u64, Vec<QuarantinedLine>) {
        let text: String = entries.iter().map(|e| format!("{}\n", e.line)).collect();
        let (written, kept) = self.send_all(&text).await;
        let mut remaining = std::mem::take(&mut self.quarantined);
        for line in kept.lines() {
            if let Some(entry) = entries.iter().find(|e| e.line == line) {
                remaining.push(entry.clone());
            }
        }
        (written, remaining)
    }

    /// Delivers new lines: written now, or quarantined, or kept for the spool. Returns false
    /// when some had to be kept.
    pub async fn deliver(&mut self, lines: &str) -> bool {
        let (_, kept) = self.send_all(lines).await;
        self.to_spool.push_str(&kept);
        kept.is_empty()
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

    /// Sends `lines` in batches; returns the lines written and the lines to keep.
    async fn send_all(&mut self, lines: &str) -> (u64, String) {
        let all: Vec<&str> = lines.split_inclusive('\n').collect();
        let mut kept = String::new();
        let mut written = 0;
        let batch = self.settings.batch_size.max(1) as usize;
        // Lines refused (quarantined) per batch, for the per-batch limit.
        let mut refused = vec![0u64; all.len().div_ceil(batch)];
        // Work items: ranges of `all`, first to send on top.
        let mut work: Vec<(usize, usize)> = (0..all.len())
            .step_by(batch)
            .map(|s| (s, (s + batch).min(all.len())))
            .rev()
            .collect();
        // Lines kept without a request while no failure of this tick says why: the sink's pause,
        // the deadline.
        let (mut kept_paused, mut kept_late) = (0, 0);
        while let Some((start, end)) = work.pop() {
            let paused = self.paused();
            if self.down.is_some() || paused || self.time_left() < MIN_WRITE_TIME {
                match (self.down.is_some(), paused) {
                    (true, _) => {}
                    (false, true) => kept_paused += end - start,
                    (false, false) => kept_late += end - start,
                }
                all[start..end].iter().for_each(|l| kept.push_str(l));
                continue;
            }
            let body: String = all[start..end].concat();
            let outcome = self.send_with_retries(&body).await;
            self.note_write(&outcome);
            let batch_index = start / batch;
            match outcome {
                BatchOutcome::Written => {
                    written += (end - start) as u64;
                    self.count_written(&all[start..end]);
                }
                // Accepted; the points older than the retention policy are gone by InfluxDB's
                // rule: counted, never quarantined or sent again.
                BatchOutcome::Dropped { dropped, message } => {
                    let dropped = dropped.min((end - start) as u64);
                    let stored = end - start - dropped as usize;
                    written += stored as u64;
                    self.count_written(&all[start..start + stored]);
                    self.state.counters.dropped_retention = self
                        .state
                        .counters
                        .dropped_retention
                        .saturating_add(dropped);
                    self.delivery.dropped_retention =
                        self.delivery.dropped_retention.saturating_add(dropped);
                    self.host.log(
                        Level::Warn,
                        &format!("InfluxDB dropped {dropped} points older than its retention policy: {message}"),
                    );
                }
                // So many refusals in one batch are a setting InfluxDB rejects, not bad lines:
                // keep the rest of this batch; other batches get their own chance.
                outcome @ (BatchOutcome::TooLarge | BatchOutcome::Rejected { .. })
                    if refused[batch_index] >= QUARANTINE_LIMIT_PER_BATCH =>
                {
                    all[start..end].iter().for_each(|l| kept.push_str(l));
                    let check = match self.kind {
                        SinkKind::Influxdb => "check the influx_* settings",
                        SinkKind::Sqlite => "check the SQLite store's schema",
                    };
                    self.note_error(format!(
                        "{}; over {QUARANTINE_LIMIT_PER_BATCH} lines of one batch refused, the rest are kept for a later tick ({check})",
                        self.said(&outcome),
                    ));
                }
                BatchOutcome::TooLarge | BatchOutcome::Rejected { .. } if end - start > 1 => {
                    let middle = start + (end - start) / 2;
                    work.push((middle, end));
                    work.push((start, middle));
                }
                outcome @ (BatchOutcome::TooLarge | BatchOutcome::Rejected { .. }) => {
                    refused[batch_index] += 1;
                    self.quarantine(all[start], outcome.describe());
                }
                // A missing v1 database is created once a tick (as Telegraf does), then the
                // batch goes again.
                BatchOutcome::NotFound { ref message }
                    if self.settings.api == crate::config::InfluxApi::V1
                        && self.settings.create_database
                        && !self.create_tried
                        && message.contains("database not found") =>
                {
                    self.create_tried = true;
                    let left = self.time_left();
                    let own = Duration::from_millis(self.settings.timeout_ms).min(left);
                    let timeouts = Timeouts {
                        connect: own,
                        first_byte: own,
                        total: own,
                    };
                    match write::create_database(self.host, self.settings, timeouts).await {
                        Ok(()) => {
                            self.host.log(
                                Level::Warn,
                                &format!(
                                    "InfluxDB database {:?} did not exist: created (influx_create_database = true)",
                                    crate::remote::sanitize(&self.settings.database)
                                ),
                            );
                            work.push((start, end));
                        }
                        Err(error) => {
                            self.note_error(error);
                            work.push((start, end));
                        }
                    }
                }
                outcome => {
                    all[start..end].iter().for_each(|l| kept.push_str(l));
                    let message = self.said(&outcome);
                    match &outcome {
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
                        // A setting is wrong: everything waits in the spool, and `/status`
                        // says why until a write succeeds.
                        BatchOutcome::Unauthorized { .. }
                        | BatchOutcome::NotFound { .. }
                        | BatchOutcome::Misconfigured { .. } => {
                            self.state.config_error = Some(format!(
                                "{message} (check influx_url, influx_api, influx_org, influx_bucket, influx_database and the credential)"
                            ));
                        }
                        _ => {}
                    }
                    self.note_error(message.clone());
                    self.down = Some(message);
                }
            }
        }
        self.say_kept_back(kept_paused, kept_late);
        (written, kept)
    }

    /// Says, in the tick's errors, why lines went to the spool without a request: the sink's
    /// pause (with its end) or the deadline. A failure of this tick says it itself.
    fn say_kept_back(&mut self, paused: usize, late: usize) {
        let store = self.store_name();
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

    fn store_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Influxdb => "InfluxDB",
            SinkKind::Sqlite => "SQLite",
        }
    }

    /// Keeps the last write's outcome for `/status`; a write InfluxDB took clears a setting
    /// error.
    fn note_write(&mut self, outcome: &BatchOutcome) {
        let ok = matches!(
            outcome,
            BatchOutcome::Written | BatchOutcome::Dropped { .. }
        );
        if ok {
            self.state.config_error = None;
        }
        self.state.last_write = Some(LastWrite {
            at_ms: self.host.unix_millis(),
            ok,
            error: (!ok).then(|| outcome.to_string()),
        });
    }

    /// One batch, retried on transient failures while the deadline allows.
    async fn send_with_retries(&mut self, body: &str) -> BatchOutcome {
        let mut retry = 0;
        loop {
            let left = self.time_left();
            let own = Duration::from_millis(self.settings.timeout_ms);
            let timeouts = Timeouts {
                connect: own.min(left),
                first_byte: own.min(left),
                total: own.min(left),
            };
            let started = self.host.monotonic();
            let (outcome, sent) = match self.kind {
                SinkKind::Influxdb => {
                    write::send_batch(self.host, self.settings, body, timeouts).await
                }
                SinkKind::Sqlite => self.write_sqlite(body).await,
            };
            let counters = &mut self.state.counters;
            counters.requests = counters.requests.saturating_add(1);
            counters.bytes_raw = counters.bytes_raw.saturating_add(sent.raw_bytes as u64);
            counters.bytes_wire = counters.bytes_wire.saturating_add(sent.wire_bytes as u64);
            let duration_ms = self.host.monotonic().saturating_sub(started).as_millis() as u64;
            let status = if matches!(
                outcome,
                BatchOutcome::Written | BatchOutcome::Dropped { .. }
            ) {
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
            match TRANSIENT_RETRIES.decide(
                retry,
                class,
                None,
                self.host.random_unit(),
                self.time_left(),
            ) {
                RetryDecision::RetryAfter(wait) => {
                    self.host.log(
                        Level::Info,
                        &format!(
                            "{}; retry {} in {} ms",
                            self.said(&outcome),
                            retry + 1,
                            wait.as_millis()
                        ),
                    );
                    self.host.sleep(wait).await;
                    self.state.counters.retries = self.state.counters.retries.saturating_add(1);
                    retry += 1;
                }
                _ => return outcome,
            }
        }
    }

    /// One batch into the embedded store, as the outcome an InfluxDB answer would have been.
    async fn write_sqlite(&mut self, body: &str) -> (BatchOutcome, write::Sent) {
        let sent = write::Sent {
            raw_bytes: body.len(),
            wire_bytes: body.len(),
        };
        // No wait for the other process's write lock outlasts the deadline.
        let (host, deadline) = (self.host, self.deadline);
        let time_left = move || deadline.saturating_sub(host.monotonic());
        if !self.sqlite_ready {
            if let Err(error) = Db::open_within(self.host, &time_left).await {
                let detail = error.to_string();
                return (BatchOutcome::Transient { detail }, sent);
            }
            self.sqlite_ready = true;
        }
        let outcome = match Db::opened_within(self.host, &time_left)
            .write_lines(body)
            .await
        {
            Ok(_) => BatchOutcome::Written,
            Err(sqlite::WriteError::Rejected(message)) => {
                BatchOutcome::Rejected { status: 0, message }
            }
            Err(sqlite::WriteError::Unavailable(detail)) => BatchOutcome::Transient {
                detail: format!("SQLite: {detail}"),
            },
        };
        (outcome, sent)
    }

    /// An outcome as one line naming the sink.
    fn said(&self, outcome: &BatchOutcome) -> String {
        match self.kind {
            SinkKind::Influxdb => outcome.to_string(),
            SinkKind::Sqlite => format!("SQLite write: {}", outcome.describe()),
        }
    }

    fn count_written(&mut self, lines: &[&str]) {
        self.state.counters.batches_written = self.state.counters.batches_written.saturating_add(1);
        self.state.counters.points_written = self
            .state
            .counters
            .points_written
            .saturating_add(lines.len() as u64);
        for line in lines {
            *self
                .delivery
                .written
                .entry(measurement_of(line))
                .or_default() += 1;
        }
    }

    fn quarantine(&mut self, line: &str, message: String) {
        let store = self.store_name();
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
                self.spool_max_points,
                now_ms,
            )
            .await;
            // Points neither stored nor counted by the spool: nowhere left to keep them.
            let lost = count.saturating_sub(appended.stored);
            self.delivery.spooled = self.delivery.spooled.saturating_add(appended.stored);
            self.state.counters.spooled =
                self.state.counters.spooled.saturating_add(appended.stored);
            self.delivery.evicted = self
                .delivery
                .evicted
                .saturating_add(appended.evicted.saturating_add(lost));
            self.state.counters.evicted = self
                .state
                .counters
                .evicted
                .saturating_add(appended.evicted.saturating_add(lost));
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

/// The measurement of a line (up to the first unescaped comma or space).
pub fn measurement_of(line: &str) -> String {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' | ' ' if !escaped => return line[..i].to_owned(),
            _ => escaped = false,
        }
    }
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_of_a_line() {
        assert_eq!(
            measurement_of("cryptocurrency_data,code=BTC rate=1 1\n"),
            "cryptocurrency_data"
        );
        assert_eq!(
            measurement_of("market_overview total=1 1\n"),
            "market_overview"
        );
        assert_eq!(measurement_of("my\\ m,t=1 f=1 1\n"), "my\\ m");
    }
}
