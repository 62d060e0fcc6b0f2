//! One fetch cycle, start to finish: settings, lease, plan, cache, guarded LCW calls, points,
//! writes to the sink (and the SQLite store's retention), the record.
//!
//! Owns the order of a tick, its time budget, and the collector's state document
//! ([`CollectorState`]): it reads it once, hands each part (resilience, cache index, sink, history,
//! telemetry) its piece, collects them back and writes it once; it also reads it for the API
//! ([`load_snapshot`]). LCW calls end a write reserve before the
//! deadline, so the writes always have time; every call and write gets the smaller of its own
//! timeout and the time left. Independent calls run concurrently, at most
//! `max_concurrent_requests` at once. It must not format wire data (that is `lcw` and `sink`),
//! decide field names (`schema`), apply resilience rules (`guard`) or caching rules (`cache`);
//! it never sleeps on a fixed schedule.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backfill::{self, BackfillState};
use crate::cache::{self, TickCache};
use crate::clock::ClockRecord;
use crate::config::{self, ConfigError, Settings, SinkKind};
use crate::fetch::fetch;
use crate::guard::{Guard, ResilienceState};
use crate::host::{Host, KeyValue, KvError, Level, Log};
use crate::lease::{self, Taken};
use crate::plan;
use crate::point::Point;
use crate::schema;
use crate::sink::delivery::{Courier, DatabaseRequest, Delivery, Limits, SinkState};
use crate::sink::registry;
use crate::sink::spool;
use crate::sink::sqlite::Db;
use crate::state;
use crate::telemetry::history::{CycleHistory, CycleRecord, Outcome, Overlaps, bump};
use crate::telemetry::{
    self, BackfillSnapshot, SinkSnapshot, Snapshot, TelemetryState, Timing, op,
};

/// The state a tick carries over to the next: its history, the breaker, rate limit, credits and
/// status check, the cache index, the sink (counters and spool index) and the telemetry. Only the
/// lease holder writes it (a tick, or the admin cache clear), so one writer at a time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectorState {
    /// [`STATE_SCHEMA`] of the release that wrote it (absent: the first release).
    pub schema: u32,
    /// The exclusion the lease of the last tick that saved this document had.
    pub lease_guarantee: Option<lease::Guarantee>,
    /// Part of this document since schema [`BACKFILL_IN_STATE`] (earlier: only in
    /// [`state::BACKFILL_KEY`], which now holds a backup copy).
    pub backfill: BackfillState,
    /// [`backfill::durable_fingerprint`] of the copy last written to [`state::BACKFILL_KEY`].
    pub backfill_saved: u64,
    /// When a tick last read that backup for what another writer queued there.
    pub backup_checked_at_ms: i64,
    pub history: CycleHistory,
    pub resilience: ResilienceState,
    pub cache: cache::Index,
    pub sink: SinkState,
    pub telemetry: TelemetryState,
    /// Saves that had to drop parts of this document to fit the store's value limit.
    pub trimmed: u64,
    /// The host clock as the ticks read it, checked against LCW's.
    pub clock: ClockRecord,
}

impl CollectorState {
    /// Drops the least needed part still here, to fit the store's value limit; says which, or
    /// `None` when nothing is left to drop. What must survive is never dropped: the spool index
    /// (points waiting), the sink's counters, the breaker and the lease guarantee.
    fn shed_one(&mut self) -> Option<&'static str> {
        if !self.cache.entries.is_empty() {
            // Answers fetched again (orphaned segments go at the next key listing).
            self.cache.entries.clear();
            return Some("cache index");
        }
        if !self.history.recent.is_empty() || !self.history.summaries.is_empty() {
            self.history.recent.clear();
            self.history.summaries.clear();
            return Some("recent ticks");
        }
        if !self.backfill.names.is_empty() {
            // Learnt again from the next live points.
            self.backfill.names.clear();
            return Some("backfill names");
        }
        if self.telemetry != TelemetryState::default() {
            self.telemetry = TelemetryState::default();
            return Some("statistics");
        }
        if !self.resilience.transitions.is_empty() || !self.history.records_skipped.is_empty() {
            self.resilience.transitions.clear();
            self.history.records_skipped.clear();
            return Some("breaker transitions and skip counts");
        }
        if !self.backfill.queue.is_empty() {
            let dropped = self.backfill.queue.len() as u64;
            self.backfill.queue.clear();
            self.backfill.abandoned = self.backfill.abandoned.saturating_add(dropped);
            return Some("backfill queue");
        }
        None
    }
}

/// Reads the state the collector writes, and the count of skipped overlapping ticks, as the
/// telemetry shows them.
pub async fn load_snapshot<S: KeyValue + Log>(store: &S) -> Result<Snapshot, KvError> {
    let raw = store.kv_get(state::STATE_KEY).await?;
    let mut state_bytes = raw.as_ref().map_or(0, |r| r.len() as u64);
    let doc: CollectorState = raw
        .map(|r| state::parse_or_default(store, state::STATE_KEY, &r))
        .unwrap_or_default();
    let overlaps: Overlaps = state::load(store, state::OVERLAPS_KEY).await?;
    let CollectorState {
        schema,
        backfill,
        backfill_saved: _,
        backup_checked_at_ms: _,
        lease_guarantee,
        mut history,
        resilience,
        cache,
        sink,
        telemetry,
        trimmed,
        clock,
    } = doc;
    // Stored counts and sizes: saturating sums, whatever the documents hold.
    for (outcome, count) in [
        (Outcome::SkippedOverlap, overlaps.count),
        (Outcome::SkippedLease, overlaps.lease_failures),
    ] {
        if count > 0 {
            bump(&mut history.cycles_by_outcome, outcome, count);
        }
    }
    state_bytes = sink
        .spool
        .segments
        .iter()
        .fold(state_bytes, |total, s| total.saturating_add(s.bytes));
    Ok(Snapshot {
        history,
        resilience,
        telemetry,
        cache,
        sink: sink_snapshot(&sink),
        state_bytes,
        unreadable_documents: state::unreadable_count(store).await,
        backfill: backfill_snapshot(&if schema >= BACKFILL_IN_STATE {
            backfill
        } else {
            state::load(store, state::BACKFILL_KEY).await?
        }),
        lease_guarantee,
        linear_memory_bytes: telemetry::linear_memory_bytes(),
        state_trimmed: trimmed,
        clock,
    })
}

fn backfill_snapshot(backfill: &BackfillState) -> BackfillSnapshot {
    BackfillSnapshot {
        waiting: backfill.queue.len() as u64,
        queued: backfill.queued_total,
        filled: backfill.filled,
        abandoned: backfill.abandoned,
        points: backfill.points,
    }
}

fn sink_snapshot(sink: &SinkState) -> SinkSnapshot {
    SinkSnapshot {
        kind: sink.kind.clone(),
        counters: sink.counters,
        spool_points: sink.spool.points(),
        spool_segments: sink.spool.segments.len(),
        paused_until_ms: sink.not_before_ms,
        last_error: sink.last_error.clone(),
        last_error_at_ms: sink.last_error_at_ms,
        config_error: sink.config_error.clone(),
        last_write: sink.last_write.clone(),
    }
}

/// How long a lease outlives the deadline of the tick that took it: the work after the
/// deadline (spool, state, release) must end [`lease::GRACE`] before the lease expires, which
/// leaves it 5 s.
pub const LEASE_MARGIN: Duration = Duration::from_secs(15);
/// How often the spool index is checked against the store's keys.
pub const ADOPT_EVERY: Duration = Duration::from_secs(600);
/// The version of [`CollectorState`] this release writes. Every part tolerates missing and
/// unknown fields, so older and newer documents load; one that still does not parse is set aside.
pub const STATE_SCHEMA: u32 = 3;
/// The first [`STATE_SCHEMA`] whose documents carry the backfill document.
pub const BACKFILL_IN_STATE: u32 = 3;
/// Time kept back from LCW calls for the writes at the end of a tick: a fifth of the deadline,
/// at least 1.5 s and at most 5 s (never more than half the deadline).
pub const WRITE_RESERVE: Duration = Duration::from_secs(5);
pub const MIN_WRITE_RESERVE: Duration = Duration::from_millis(1_500);

/// Runs the cycle of a scheduled tick (the cron trigger's, `scheduled_s` its Unix time), unless
/// another host already ran that slot ([`lease::claim_slot`]).
pub async fn run_scheduled<H: Host>(host: &H, scheduled_s: u64) -> CycleRecord {
    let started = host.monotonic();
    let started_at_ms = host.unix_millis();
    let settings = Settings::load(host).await;
    let interval_s = settings.as_ref().map_or_else(
        |_| config::default_number("cycle_interval_s"),
        |s| s.cycle_interval_s,
    );
    match lease::claim_slot(host, scheduled_s, interval_s).await {
        Ok(false) => {
            let owner = format!("another host, for the tick scheduled at {scheduled_s}");
            skip_overlap(host, started, started_at_ms, &owner, started_at_ms).await
        }
        Ok(true) => run_with(host, settings, started, started_at_ms).await,
        // The lease still keeps ticks apart.
        Err(error) => {
            host.log(
                Level::Warn,
                &format!("slot not claimed ({error}): running under the lease alone"),
            );
            run_with(host, settings, started, started_at_ms).await
        }
    }
}

/// Runs one cycle and records it in the key-value store. Never fails: every problem ends up in
/// the returned record (and the store), so the caller only logs.
///
/// The state a tick carries over is one document, read after taking the lease and written once
/// at the end, only while the lease is still valid. A tick that cannot read or take the lease
/// (the store fails) does nothing (`skipped_lease`): it cannot know that no other tick holds it.
pub async fn run<H: Host>(host: &H) -> CycleRecord {
    let started = host.monotonic();
    let started_at_ms = host.unix_millis();
    run_with(host, Settings::load(host).await, started, started_at_ms).await
}

/// [`run`] with the settings already read (once a tick: they are dozens of variable reads).
async fn run_with<H: Host>(
    host: &H,
    settings: Result<Settings, ConfigError>,
    started: Duration,
    started_at_ms: i64,
) -> CycleRecord {
    if let Ok(settings) = &settings {
        // Before any remote text comes in: none of it may carry a credential further.
        crate::remote::protect(&settings.secrets());
    }
    let owner = format!("{:016x}", host.random_u64());
    let expires_at_ms = lease_expiry(&settings, started_at_ms);
    let held = match lease::take(host, &owner, expires_at_ms).await {
        Ok(Taken::Held(held)) => held,
        Ok(Taken::Busy {
            owner,
            expires_at_ms,
        }) => return skip_overlap(host, started, started_at_ms, &owner, expires_at_ms).await,
        Err(error) => return skip_lease(host, started, started_at_ms, &error).await,
    };
    let opened = open_state(host, started_at_ms).await;
    let save = opened.is_some();
    let mut doc = opened.unwrap_or_else(without_documents);
    doc.lease_guarantee = Some(held.guarantee);
    doc.sink.spool.may_extend_tail = doc.lease_guarantee == Some(lease::Guarantee::Exclusive);

    let mut tick = Tick::default();
    let mut record = match &settings {
        Ok(settings) => collect(host, settings, started, &mut doc, &mut tick).await,
        // No LCW or InfluxDB call with settings we cannot trust.
        Err(error) => CycleRecord::new(Outcome::Error, vec![error.to_string()]),
    };
    let times = (started, started_at_ms);
    close_record(host, &settings, times, &mut record, &mut tick, &mut doc);
    if save {
        save_state(host, &held, &mut doc).await;
    }
    if let Err(error) = lease::release(host, &held).await {
        host.log(
            Level::Warn,
            &format!("lease not released (it expires by itself): {error}"),
        );
    }
    record
}

/// The lease of a tick ends its deadline and a margin after it started (a default deadline when
/// the settings do not read).
fn lease_expiry(settings: &Result<Settings, ConfigError>, started_at_ms: i64) -> i64 {
    let deadline_ms = settings.as_ref().map_or_else(
        |_| config::default_number("cycle_deadline_ms"),
        |s| s.cycle_deadline_ms,
    );
    started_at_ms
        .saturating_add(i64::try_from(deadline_ms).unwrap_or(i64::MAX))
        .saturating_add(LEASE_MARGIN.as_millis() as i64)
}

/// The state of a tick whose documents could not be read (it will not save them).
fn without_documents() -> CollectorState {
    CollectorState {
        // Without its documents a tick cannot know whether this is the first run: no initial
        // history, which it would otherwise fetch again every such tick.
        backfill: BackfillState {
            initialized: true,
            ..BackfillState::default()
        },
        ..CollectorState::default()
    }
}

/// A tick's record completed (its start and duration, its errors bounded), logged and kept in
/// the history, and its timings taken into the statistics and alerts.
fn close_record<H: Host>(
    host: &H,
    settings: &Result<Settings, ConfigError>,
    (started, started_at_ms): (Duration, i64),
    record: &mut CycleRecord,
    tick: &mut Tick,
    doc: &mut CollectorState,
) {
    record.started_at_ms = started_at_ms;
    record.duration_ms = elapsed_ms(host, started);
    tick.time(
        op::FETCH_CYCLE,
        Duration::from_millis(record.duration_ms),
        record.outcome == Outcome::Success,
    );
    record.bound_errors();
    log_record(host, record);
    doc.history.record(record.clone());
    let thresholds = settings.as_ref().map_or_else(
        |_| Settings::default_thresholds(),
        Settings::alert_thresholds,
    );
    let alerts = doc.telemetry.record_tick(
        &tick.timings,
        &record.lcw.attempts,
        &tick.database,
        thresholds,
        host.unix_millis(),
    );
    telemetry::log_alerts(host, &alerts);
}

/// A skipped tick: another holds the lease.
async fn skip_overlap<H: Host>(
    host: &H,
    started: Duration,
    started_at_ms: i64,
    owner: &str,
    expires_at_ms: i64,
) -> CycleRecord {
    let left_ms = expires_at_ms.saturating_sub(started_at_ms);
    host.log(
        Level::Info,
        &if left_ms > 0 {
            format!("another tick ({owner}) holds the lease for {left_ms} ms more: skipping")
        } else {
            format!("this tick was run by {owner}: skipping")
        },
    );
    let mut record = CycleRecord::new(Outcome::SkippedOverlap, Vec::new());
    record.started_at_ms = started_at_ms;
    record.duration_ms = elapsed_ms(host, started);
    count_skipped(host, started_at_ms, Outcome::SkippedOverlap).await;
    host.event(&tick_event(&record));
    record
}

/// A skipped tick: the lease could not be read or taken. Running without it could mean running
/// beside the tick that holds it, so this one does nothing, and says so.
async fn skip_lease<H: Host>(
    host: &H,
    started: Duration,
    started_at_ms: i64,
    error: &KvError,
) -> CycleRecord {
    let message = format!(
        "lease not read or taken ({error}): this tick does nothing rather than risk running beside another"
    );
    host.log(Level::Error, &message);
    let mut record = CycleRecord::new(Outcome::SkippedLease, vec![message]);
    record.started_at_ms = started_at_ms;
    record.duration_ms = elapsed_ms(host, started);
    record.bound_errors();
    count_skipped(host, started_at_ms, Outcome::SkippedLease).await;
    host.event(&tick_event(&record));
    record
}

fn log_record<H: Host>(host: &H, record: &CycleRecord) {
    for error in &record.errors {
        host.log(Level::Error, error);
    }
    host.log(
        if record.outcome == Outcome::Success {
            Level::Info
        } else {
            Level::Warn
        },
        &format!(
            "cycle {}: {} points written, {} spooled, {} LCW attempts, {} cache hits, {} ms",
            record.outcome.as_str(),
            record.total_written(),
            record.points_spooled,
            record.lcw.attempts.len(),
            record.cache_hits,
            record.duration_ms
        ),
    );
    host.event(&tick_event(record));
}

/// The state document for a tick holding the lease, or `None` when the store cannot give one
/// this tick may write over. An unreadable document is set aside first and the tick starts
/// afresh, with the spool rebuilt from its keys; the spool index is checked against the keys
/// every [`ADOPT_EVERY`] too, for segments of a tick whose state was never saved.
async fn open_state<H: Host>(host: &H, now_ms: i64) -> Option<CollectorState> {
    let mut doc = match state::load_checked::<CollectorState, _>(host, state::STATE_KEY).await {
        Ok(state::Loaded::Read(doc)) => doc,
        Ok(state::Loaded::Absent) => CollectorState::default(),
        Ok(state::Loaded::Unreadable { bytes, error }) => {
            match state::set_aside(host, state::STATE_KEY, &bytes, now_ms).await {
                Ok(kept) => host.log(
                    Level::Error,
                    &format!("state document unreadable ({error}): kept as {kept}; the spool is rebuilt from its keys, the rest starts afresh"),
                ),
                Err(kv) => {
                    host.log(
                        Level::Error,
                        &format!("state document unreadable ({error}) and not set aside ({kv}): this tick saves no state"),
                    );
                    return None;
                }
            }
            CollectorState::default()
        }
        Err(error) => {
            host.log(
                Level::Error,
                &format!("state not read ({error}): this tick collects but saves no state"),
            );
            return None;
        }
    };
    // Earlier releases, a fresh store, a document set aside: the backfill document (or its
    // backup) is read; it is written again at the end of the tick.
    if doc.schema < BACKFILL_IN_STATE {
        // The copy read from the key is not taken in again at the save, nor checked again
        // before ADOPT_EVERY.
        (doc.backfill, doc.backfill_saved) = open_backfill(host, now_ms).await?;
        doc.backup_checked_at_ms = now_ms;
    }
    doc.backfill.bound();
    sweep(host, &mut doc, now_ms).await;
    Some(doc)
}

/// The backfill document and the fingerprint of the copy under its key (0: none that reads);
/// an unreadable one is set aside like the state document.
async fn open_backfill<H: Host>(host: &H, now_ms: i64) -> Option<(BackfillState, u64)> {
    match state::load_checked::<BackfillState, _>(host, state::BACKFILL_KEY).await {
        Ok(state::Loaded::Read(backfill)) => {
            let fingerprint = backfill::durable_fingerprint(&backfill);
            Some((backfill, fingerprint))
        }
        Ok(state::Loaded::Absent) => Some((BackfillState::default(), 0)),
        Ok(state::Loaded::Unreadable { bytes, error }) => {
            let kept = state::set_aside(host, state::BACKFILL_KEY, &bytes, now_ms).await;
            host.log(
                Level::Error,
                &format!(
                    "backfill document unreadable ({error}): kept as {kept:?}; starting it afresh"
                ),
            );
            kept.ok().map(|_| {
                let fresh = BackfillState {
                    initialized: true,
                    ..BackfillState::default()
                };
                (fresh, 0)
            })
        }
        Err(error) => {
            host.log(
                Level::Error,
                &format!("backfill not read ({error}): this tick saves no state"),
            );
            None
        }
    }
}

/// Deletes again what could not be deleted; every [`ADOPT_EVERY`], lists the store's keys once
/// and checks the spool index and the cache index against them: segments of ticks whose state
/// was never saved are adopted (spool) or deleted (cache), and slot tickets no claim deleted
/// go, so nothing is lost and nothing piles up. One listing for the three: a store lists all
/// its keys whatever the prefix (Spin's does), and the tick stays within ten round trips.
async fn sweep<H: Host>(host: &H, doc: &mut CollectorState, now_ms: i64) {
    let spool = &mut doc.sink.spool;
    if !spool.doomed.is_empty() {
        spool::delete_doomed(host, spool).await;
    }
    if !due(spool.adopted_at_ms, now_ms) {
        check_backup(host, doc, now_ms).await;
        return;
    }
    let keys = match host.kv_keys(KEYS_PREFIX).await {
        Ok(keys) => keys,
        Err(error) => {
            host.log(Level::Warn, &format!("store keys not listed: {error}"));
            return;
        }
    };
    match spool::adopt(host, spool, &keys, now_ms).await {
        Ok(adopted) => {
            if adopted.segments > 0 {
                host.log(
                    Level::Warn,
                    &format!(
                        "{} spool segments no index listed were found and will be replayed",
                        adopted.segments
                    ),
                );
            }
            doc.sink.counters.evicted = doc
                .sink
                .counters
                .evicted
                .saturating_add(adopted.lost_points);
        }
        Err(error) => host.log(Level::Warn, &format!("spool segments not adopted: {error}")),
    }
    if let Err(error) = cache::sweep(host, &doc.cache, &keys, now_ms).await {
        host.log(Level::Warn, &format!("cache segments not swept: {error}"));
    }
    let now_s = u64::try_from(now_ms / 1000).unwrap_or(0);
    if let Err(error) = lease::forget_old_slots(host, &keys, now_s).await {
        host.log(
            Level::Warn,
            &format!("old slot tickets not deleted: {error}"),
        );
    }
}

/// Every [`ADOPT_EVERY`], on a tick that does not list the keys (which keeps every tick within
/// ten store round trips), reads the backfill backup: a range an earlier release queued there
/// alone reaches the queue even while this release's queue does not change.
async fn check_backup<H: Host>(host: &H, doc: &mut CollectorState, now_ms: i64) {
    if doc.schema < BACKFILL_IN_STATE || !due(doc.backup_checked_at_ms, now_ms) {
        return;
    }
    if take_in_backup(host, &mut doc.backfill, &mut doc.backfill_saved).await {
        doc.backup_checked_at_ms = now_ms;
    }
}

/// Whether a check last made at `last_ms` is due again: [`ADOPT_EVERY`] later, or at once when
/// the stored time is in the future (a clock that jumped ahead, a corrupted document), which
/// would otherwise keep it from ever being due.
fn due(last_ms: i64, now_ms: i64) -> bool {
    let since = now_ms.saturating_sub(last_ms);
    since < 0 || since >= ADOPT_EVERY.as_millis() as i64
}

/// The prefix of every key this application writes.
const KEYS_PREFIX: &str = "lcw/v1/";

/// Saves the state document while the lease is still this tick's.
async fn save_state<H: Host>(host: &H, held: &lease::Held, doc: &mut CollectorState) {
    if !held.valid_at(host.unix_millis()) {
        host.log(
            Level::Error,
            "the lease expired before the state was saved: not saved (spooled segments stay under their keys and are adopted later)",
        );
        return;
    }
    // The backup first: the state document then says which copy it holds (a failure is
    // retried by the next tick).
    // Before the backup is written over, what another writer queued there is taken in.
    if backfill::durable_fingerprint(&doc.backfill) != doc.backfill_saved
        && take_in_backup(host, &mut doc.backfill, &mut doc.backfill_saved).await
    {
        let fingerprint = backfill::durable_fingerprint(&doc.backfill);
        match state::save(host, state::BACKFILL_KEY, &doc.backfill).await {
            Ok(()) => doc.backfill_saved = fingerprint,
            Err(error) => host.log(Level::Error, &format!("backfill backup not saved: {error}")),
        }
    }
    doc.schema = STATE_SCHEMA;
    let saved = match fit(host, doc) {
        Ok(text) => host.kv_set(state::STATE_KEY, text.as_bytes()).await,
        Err(error) => Err(error),
    };
    if let Err(error) = saved {
        host.log(Level::Error, &format!("state not saved: {error}"));
    }
}

/// The state document encoded within the store's value limit: over it, the least needed parts
/// are dropped one by one ([`CollectorState::shed_one`]), counted and logged, rather than the
/// whole document left unsaved tick after tick.
fn fit<H: Host>(host: &H, doc: &mut CollectorState) -> Result<String, KvError> {
    let limit = host.kv_value_limit();
    let mut text = state::encode(state::STATE_KEY, doc)?;
    let mut dropped = Vec::new();
    while text.len() > limit {
        let Some(part) = doc.shed_one() else { break };
        dropped.push(part);
        if dropped.len() == 1 {
            doc.trimmed = doc.trimmed.saturating_add(1);
        }
        text = state::encode(state::STATE_KEY, doc)?;
    }
    if !dropped.is_empty() {
        host.log(
            Level::Warn,
            &format!(
                "the state document was over the store's limit of {limit} bytes: dropped {} to save it in {} bytes",
                dropped.join(", "),
                text.len()
            ),
        );
    }
    Ok(text)
}

/// Takes into `backfill` what the backup under [`state::BACKFILL_KEY`] holds when another writer
/// wrote it since this release last did (`saved`, its fingerprint then): an earlier release's
/// tick or `POST /backfill` (they know no other place), or a tick of this release whose state
/// document was not saved after the backup. Returns false when the backup could not be read
/// (it must not be written over then: the next tick tries again).
pub async fn take_in_backup<S: KeyValue + Log>(
    store: &S,
    backfill: &mut BackfillState,
    saved: &mut u64,
) -> bool {
    match state::load_checked::<BackfillState, _>(store, state::BACKFILL_KEY).await {
        Ok(state::Loaded::Read(backup)) => {
            if backfill::durable_fingerprint(&backup) != *saved {
                backfill.merge(backup);
                *saved = 0;
            }
            true
        }
        // Nothing to keep (an unreadable backup was set aside when it was the only copy).
        Ok(state::Loaded::Absent | state::Loaded::Unreadable { .. }) => true,
        Err(error) => {
            store.log(
                Level::Warn,
                &format!("backfill backup not read ({error}): not written this tick"),
            );
            false
        }
    }
}

/// Replays the spool until `deadline`, timed.
async fn replay<H: Host>(host: &H, sink: &mut Courier<'_, H>, deadline: Duration, tick: &mut Tick) {
    let started = host.monotonic();
    let replayed = sink.replay(deadline).await;
    tick.time(op::SPOOL_REPLAY, host.monotonic() - started, replayed);
}

/// Counts a skipped tick in its own document: the running tick owns the state document.
async fn count_skipped<H: Host>(host: &H, now_ms: i64, outcome: Outcome) {
    let result = async {
        let mut overlaps: Overlaps = state::load(host, state::OVERLAPS_KEY).await?;
        if outcome == Outcome::SkippedLease {
            overlaps.lease_failures = overlaps.lease_failures.saturating_add(1);
            overlaps.last_lease_failure_at_ms = Some(now_ms);
        } else {
            overlaps.count = overlaps.count.saturating_add(1);
            overlaps.last_at_ms = Some(now_ms);
        }
        state::save(host, state::OVERLAPS_KEY, &overlaps).await
    }
    .await;
    if let Err(error) = result {
        host.log(Level::Warn, &format!("skipped tick not counted: {error}"));
    }
}

/// What a tick measured besides its record, for telemetry.
#[derive(Default)]
struct Tick {
    timings: Vec<Timing>,
    database: Vec<DatabaseRequest>,
}

impl Tick {
    fn time(&mut self, operation: &'static str, duration: Duration, ok: bool) {
        self.timings.push(Timing {
            operation,
            duration,
            ok,
        });
    }
}

/// The one-line JSON summary of a tick (no secrets: only counts, names and durations).
fn tick_event(record: &CycleRecord) -> String {
    serde_json::json!({
        "event": "tick",
        "outcome": record.outcome.as_str(),
        "duration_ms": record.duration_ms,
        "points_written": record.total_written(),
        "points_replayed": record.points_replayed,
        "points_spooled": record.points_spooled,
        "points_quarantined": record.points_quarantined,
        "lcw_calls": record.lcw.attempts.len(),
        "retries": record.lcw.retries,
        "not_sent": record.lcw.not_sent,
        "cache_hits": record.cache_hits,
        "breaker": record.breaker,
        "errors": record.errors.len(),
    })
    .to_string()
}

async fn collect<H: Host>(
    host: &H,
    settings: &Settings,
    started: Duration,
    doc: &mut CollectorState,
    tick: &mut Tick,
) -> CycleRecord {
    let deadline = started + Duration::from_millis(settings.cycle_deadline_ms);
    let budget = deadline.saturating_sub(started);
    let reserve = (budget / 5)
        .clamp(MIN_WRITE_RESERVE, WRITE_RESERVE)
        .min(budget / 2);
    let lcw_deadline = deadline.saturating_sub(reserve);
    let plan = plan::plan(settings, &doc.resilience);
    let guard = Guard::new(
        host,
        settings,
        lcw_deadline,
        std::mem::take(&mut doc.resilience),
    );
    let mut sink = Courier::new(
        host,
        registry::open(settings.sink, host, settings),
        Limits::of(&settings.influx),
        deadline,
        std::mem::take(&mut doc.sink),
    );

    // LCW's clock, when an answer of this tick said it.
    let mut lcw_clock_ms = None;
    // With the breaker open there is nothing fresh: the spool has the time to itself.
    let mut record = if guard.breaker_open() {
        host.log(Level::Warn, "circuit breaker open: no LCW call this tick");
        replay(host, &mut sink, deadline, tick).await;
        CycleRecord::new(Outcome::SkippedBreaker, Vec::new())
    } else {
        let fresh = fetch_stage(host, settings, &plan, &guard, doc, tick).await;
        lcw_clock_ms = fresh.lcw_clock_ms;
        let write_started = host.monotonic();
        let written = sink.deliver(&fresh.points).await;
        tick.time(op::INFLUX_WRITE, host.monotonic() - write_started, written);
        replay(host, &mut sink, deadline, tick).await;
        fresh.record
    };

    let (delivery, sink_state) = sink.finish().await;
    doc.sink = sink_state;
    let retention_now = observe_clock(host, &mut doc.clock, lcw_clock_ms);
    if settings.sink == SinkKind::Sqlite {
        prune(host, settings, retention_now, deadline).await;
    }
    account(delivery, &mut record, tick);

    let (resilience, report) = guard.finish();
    record.lcw = report;
    record.breaker = resilience.breaker.name().to_owned();
    doc.resilience = resilience;
    record
}

/// What the fetch stage brought: the tick's points (live and backfilled), its record so far and
/// LCW's clock, when an answer said it.
struct Fresh {
    points: Vec<Point>,
    record: CycleRecord,
    lcw_clock_ms: Option<i64>,
}

/// The planned LCW calls through the cache, then the backfill's: the tick's points.
async fn fetch_stage<H: Host>(
    host: &H,
    settings: &Settings,
    plan: &plan::Plan,
    guard: &Guard<'_, H>,
    doc: &mut CollectorState,
    tick: &mut Tick,
) -> Fresh {
    if let Some(reason) = &plan.dropped {
        host.log(Level::Warn, reason);
    }
    let tick_id = format!("{}-{:08x}", host.unix_millis(), host.random_u64() as u32);
    let max_entries = settings.cache_max_entries as usize;
    let index = std::mem::take(&mut doc.cache);
    let mut cache = TickCache::new(
        index,
        settings.cache_ttls,
        max_entries,
        &tick_id,
        host.unix_millis(),
    )
    .uncached_up_to(Duration::from_secs(settings.cycle_interval_s))
    .inline_up_to(cache::INLINE_BUDGET);
    let fetched = fetch(host, settings, &plan.wants, guard, Some(&mut cache)).await;
    tick.timings.extend(fetched.timings.iter().cloned());
    let cache_started = host.monotonic();
    let (index, saved) = cache.finish(host).await;
    doc.cache = index;
    tick.time(
        op::CACHE_SAVE,
        host.monotonic() - cache_started,
        saved.is_ok(),
    );
    if let Err(error) = saved {
        host.log(
            Level::Error,
            &format!("{error}; cached answers of this tick are lost"),
        );
    }
    let mut points = fetched.points;
    backfill::observe(&mut doc.backfill, settings, &points, host.unix_millis());
    let backfilled = backfill::fill(host, settings, guard, &mut doc.backfill, &points).await;
    points.extend(backfilled.points);
    let mut errors = fetched.errors;
    errors.extend(backfilled.errors);
    let mut record = CycleRecord::new(Outcome::Success, errors);
    record.cache_hits = fetched.cache_hits;
    record.records_skipped = fetched.records_skipped;
    record.outcome = if fetched.data_failed {
        Outcome::Partial
    } else {
        Outcome::Success
    };
    Fresh {
        points,
        record,
        lcw_clock_ms: fetched.lcw_clock_ms,
    }
}

/// What the deliveries did, into the record and the tick's database metrics; the outcome follows
/// from what was kept back and what was written.
fn account(delivery: Delivery, record: &mut CycleRecord, tick: &mut Tick) {
    tick.database.extend(delivery.requests.iter().cloned());
    for (measurement, count) in &delivery.written {
        *record
            .points_written
            .entry(schema::data_type(measurement).to_owned())
            .or_default() += count;
    }
    record.points_dropped = delivery.dropped_points;
    record.points_replayed = delivery.replayed;
    record.points_spooled = delivery.spooled;
    record.points_quarantined = delivery.quarantined;
    record.points_evicted = delivery.evicted;
    record.errors.extend(delivery.errors);
    if record.outcome != Outcome::SkippedBreaker {
        // Not a sum: evicted counts come from stored segment headers and may be any size.
        let kept_back = delivery.spooled > 0 || delivery.quarantined > 0 || delivery.evicted > 0;
        record.outcome = match (
            record.outcome == Outcome::Partial || kept_back,
            record.total_written() > 0,
        ) {
            (false, _) => Outcome::Success,
            (true, true) => Outcome::Partial,
            (true, false) => Outcome::Error,
        };
    }
}

/// The least time left before the deadline for which another retention batch is started.
pub const MIN_PRUNE_TIME: Duration = Duration::from_millis(500);

/// Records this tick's clock against LCW's and the last tick's; returns the time retention may
/// cut at (the earliest of them: one clock's word never deletes a row).
fn observe_clock<H: Host>(host: &H, record: &mut ClockRecord, lcw_clock_ms: Option<i64>) -> i64 {
    let now_ms = host.unix_millis();
    let retention_now = record.observe(now_ms, lcw_clock_ms);
    // Said on the ticks LCW contradicts, not on those that heard no `Date` since.
    if let (Some(_), Some(skew_ms), true) = (lcw_clock_ms, record.skew_ms, record.disputed()) {
        host.log(
            Level::Warn,
            &format!(
                "the host clock is {} s {} LCW's: retention cuts at the earlier clock",
                skew_ms.saturating_abs() / 1000,
                if skew_ms > 0 { "ahead of" } else { "behind" }
            ),
        );
    }
    retention_now
}

/// Deletes rows older than `sqlite_retention_days` before `now_ms`, in small batches, while the
/// tick has time: what is left is deleted by the next ticks. A failure is logged, never a failed
/// tick (the data is safe).
async fn prune<H: Host>(host: &H, settings: &Settings, now_ms: i64, deadline: Duration) {
    let cutoff_ms = now_ms.saturating_sub(i64::from(settings.sqlite.retention_days) * 86_400_000);
    let time_left = || deadline.saturating_sub(host.monotonic());
    let result = async {
        Db::open_within(host, &time_left)
            .await?
            .prune(cutoff_ms, || host.monotonic() + MIN_PRUNE_TIME < deadline)
            .await
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(n) => host.log(
            Level::Info,
            &format!(
                "{n} rows older than {} days deleted from the SQLite store",
                settings.sqlite.retention_days
            ),
        ),
        Err(error) => host.log(Level::Warn, &format!("retention not applied: {error}")),
    }
}

fn elapsed_ms<H: Host>(host: &H, started: Duration) -> u64 {
    u64::try_from(host.monotonic().saturating_sub(started).as_millis()).unwrap_or(u64::MAX)
}
