//! The cycle lease: one tick at a time, across processes and hosts sharing the store.
//!
//! Owns the lease document ([`LEASE_KEY`]: generation, holder, until when, the counters of past
//! generations), the holder counters beside it (`lcw/v1/lease/holders/<generation>`) and the
//! note of a counter that looks stuck ([`STUCK_KEY`]). It must not know what a tick does.
//!
//! Exclusion rests on the store's atomic increment, the one operation Spin's SQLite and Redis
//! stores both honour for racing callers (their compare-and-swap is not exclusive on Redis, nor
//! on an absent key on SQLite). Taking the lease of generation `g` is `increment(holders/g, +1)`:
//! whoever gets 1 holds it and writes the document; anyone else gives its unit back and skips,
//! and so does a winner whose document write fails.
//!
//! Releasing is one write: the document, free, naming generation `g + 1`, whose counter nobody
//! has touched. The counter of `g` stays at 1, so a taker that read the document before `g` was
//! taken and increments it late loses. A release that fails, or a holder that dies, leaves the
//! document naming its holder: once that lease has expired (plus [`GRACE`] for clock skew
//! between hosts), takers move to `g + 1` just the same, so of several takers exactly one takes
//! over. Nothing a holder leaves behind blocks anyone past its lease's expiry. Counters of past
//! generations are deleted once no late increment can reach them ([`Past`]).
//!
//! A counter at 1 under a free document (a taker failed or died between its increment and its
//! document write, and its unit could not be given back) looks like a winner that has not
//! written its document yet. The first taker to lose against it notes the document
//! ([`STUCK_KEY`]); a taker that loses against the same document at least [`PAUSE`] (plus
//! [`GRACE`] between clocks) after that note moves on to the next generation. No taker waits:
//! taking the lease never sleeps, so it never holds a tick past its deadline. Assumed: host
//! clocks within [`GRACE`] of each other, and no single store call slower than [`GRACE`].
//!
//! A store without atomic increment gets the old scheme, write then read back, which two ticks
//! racing within one round trip can both pass; [`Guarantee`] says which one a store gives.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::{Clock, KeyValue, KvError, Level, Log};
use crate::state::{self, LEASE_KEY};

/// Clock skew between hosts, and the longest store call, that the lease tolerates (each; the
/// rules below add them up where both can happen at once).
pub const GRACE: Duration = Duration::from_secs(10);
/// How long a free document must stay unchanged after a taker lost against its counter before
/// the counter counts as stuck: longer than a winner's increment answer and document write
/// together can take (2 × GRACE).
pub const PAUSE: Duration = Duration::from_secs(21);
/// Prefix of the holder counters.
pub const HOLDERS_PREFIX: &str = "lcw/v1/lease/holders/";
/// The note of a taker that lost against a free document's counter ([`Stuck`]).
pub const STUCK_KEY: &str = "lcw/v1/lease/stuck";
/// The lease an admin route takes: a minute of work, ending well within the lease's valid part.
pub const ROUTE_LEASE: Duration = Duration::from_secs(60 + GRACE.as_secs());
/// Past counters one take deletes at most (one on an ordinary tick).
const DELETES_PER_TAKE: u64 = 4;

/// The lease document. An empty `owner` means free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lease {
    pub generation: u64,
    pub owner: String,
    pub expires_at_ms: i64,
    /// When the document last changed hands (taken, released, taken over).
    pub changed_at_ms: i64,
    /// The counters of generations below this one that may still be stored (absent in the
    /// documents of earlier releases).
    pub past: Option<Past>,
}

/// Counters of past generations not deleted yet: those of `from..older_below` get no increment
/// after `older_quiet_at_ms`, those of `older_below..` up to the document's generation none
/// after `quiet_at_ms` (each by the clock of the host that wrote it). A counter stops getting
/// new takers when a document naming a later generation, or its own holder, lands; a taker
/// that read the document before may still increment it within two store calls (2 × GRACE).
/// It is deleted only once that is over by every clock (+ GRACE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Past {
    pub from: u64,
    pub older_below: u64,
    pub older_quiet_at_ms: i64,
    pub quiet_at_ms: i64,
}

impl Past {
    /// What a document at `generation` says, made consistent (a hand-edited or wrapped one
    /// loses the counters it cannot name). A document of an earlier release kept the counters
    /// of its last two generations.
    fn of(lease: &Lease) -> Self {
        let g = lease.generation;
        let mut past = lease.past.unwrap_or(Past {
            from: g.saturating_sub(2),
            older_below: g.saturating_sub(2),
            ..Past::default()
        });
        past.older_below = past.older_below.min(g);
        past.from = past.from.min(past.older_below);
        past
    }
}

impl Lease {
    fn held(&self) -> bool {
        !self.owner.is_empty()
    }

    /// Held by a tick that may still be running.
    fn live(&self, now_ms: i64) -> bool {
        self.held() && now_ms <= self.expires_at_ms.saturating_add(millis(GRACE))
    }
}

/// What mutual exclusion the store allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Atomic increment: two ticks never hold the lease at once.
    Exclusive,
    /// No atomic increment: write then read back; two ticks racing within one store round trip
    /// may both run.
    BestEffort,
}

impl Guarantee {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exclusive => {
                "exclusive: the store's atomic increment lets one tick run at a time"
            }
            Self::BestEffort => {
                "best effort: the store has no atomic increment, so two ticks starting within one store round trip may both run"
            }
        }
    }
}

/// A lease this tick holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub owner: String,
    pub generation: u64,
    pub expires_at_ms: i64,
    pub guarantee: Guarantee,
    /// The past counters the release hands on to the next generation.
    past: Past,
}

impl Held {
    /// Whether writes that assume the lease may still be made: until [`GRACE`] before its
    /// expiry. Takers wait until [`GRACE`] after it, so a holder's clock running slow and its
    /// last store call landing late (each within [`GRACE`]) still end before any takeover.
    pub fn valid_at(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms.saturating_sub(millis(GRACE))
    }
}

/// The result of trying to take the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Held(Held),
    /// Another tick holds it, until `expires_at_ms`.
    Busy {
        owner: String,
        expires_at_ms: i64,
    },
}

enum Attempt {
    Won(Held),
    Lost,
    NoAtomics,
}

/// One taker: who, until when, and the document it read at `now_ms`.
struct Taker<'a> {
    owner: &'a str,
    expires_at_ms: i64,
    now_ms: i64,
    current: &'a Lease,
}

/// Takes the lease for `owner` until `expires_at_ms`, unless another tick holds it. Never
/// sleeps. An error means the lease is not held (a unit this call took has been given back, or
/// could not be: then it is left to look stuck).
pub async fn take<S: KeyValue + Clock + Log>(
    store: &S,
    owner: &str,
    expires_at_ms: i64,
) -> Result<Taken, KvError> {
    let now_ms = store.unix_millis();
    let current: Lease = state::load(store, LEASE_KEY).await?;
    if current.live(now_ms) && !abandoned(store, &current, now_ms, expires_at_ms).await {
        return Ok(busy(&current));
    }
    // An expired holder's unit stays behind: its successor starts a fresh generation. A
    // generation that cannot grow (a hand-edited document) starts over.
    let generation = if current.held() {
        next_generation(store, current.generation)
    } else {
        current.generation
    };
    let taker = Taker {
        owner,
        expires_at_ms,
        now_ms,
        current: &current,
    };
    match attempt(store, &taker, generation).await? {
        Attempt::Won(held) => return Ok(Taken::Held(held)),
        Attempt::NoAtomics => {
            return read_back(store, &current, owner, now_ms, expires_at_ms).await;
        }
        Attempt::Lost => {}
    }
    // Lost: a taker that just won has not written the document yet, or one that failed or
    // died between its increment and its document left its unit behind.
    if !looks_stuck(store, &current, now_ms).await {
        return Ok(busy(&current));
    }
    store.log(
        Level::Warn,
        &format!("lease generation {generation} is stuck: moving to the next"),
    );
    let next = next_generation(store, generation);
    match attempt(store, &taker, next).await? {
        Attempt::Won(held) => Ok(Taken::Held(held)),
        _ => Ok(busy(&current)),
    }
}

/// Whether a live-looking lease is one no running tick holds: it expires further ahead than any
/// taker writes one (a holder's clock was ahead, or the document is corrupted), and it has stood
/// unchanged for that longest lease (+ [`GRACE`]) by this taker's clock since a taker first saw
/// it. Its holder, had it lived, has ended by then: no tick outlives its deadline.
async fn abandoned<S: KeyValue + Clock + Log>(
    store: &S,
    current: &Lease,
    now_ms: i64,
    own_expiry_ms: i64,
) -> bool {
    let longest = own_expiry_ms
        .saturating_sub(now_ms)
        .max(millis(ROUTE_LEASE));
    if current.expires_at_ms <= now_ms.saturating_add(longest).saturating_add(millis(GRACE)) {
        return false;
    }
    if !looks_stuck_for(
        store,
        current,
        now_ms,
        longest.saturating_add(millis(GRACE)),
    )
    .await
    {
        return false;
    }
    store.log(
        Level::Warn,
        &format!(
            "the lease of `{}` expires {} s ahead, further than any tick takes it: taken over",
            current.owner,
            current.expires_at_ms.saturating_sub(now_ms) / 1000
        ),
    );
    true
}

fn next_generation<S: Log>(store: &S, generation: u64) -> u64 {
    generation.checked_add(1).unwrap_or_else(|| {
        store.log(
            Level::Warn,
            "lease generation at its largest: starting over at 0",
        );
        0
    })
}

/// A taker's note: it lost against the counter of `lease` (the document it had read) at
/// `lost_at_ms`, by its clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Stuck {
    lease: Lease,
    lost_at_ms: i64,
}

/// Whether the counter `current` names, against which this taker just lost, is stuck: another
/// taker lost against the same document at least [`PAUSE`] (+ [`GRACE`] between clocks)
/// before this one read it. A winner's document lands within [`PAUSE`] of any loss against it,
/// so an unchanged document that long after means no winner is coming. Otherwise this loss is
/// noted (unless the note is already about this document) and the answer is no.
async fn looks_stuck<S: KeyValue + Clock + Log>(
    store: &S,
    current: &Lease,
    read_at_ms: i64,
) -> bool {
    looks_stuck_for(store, current, read_at_ms, millis(PAUSE + GRACE)).await
}

/// [`looks_stuck`] with another wait. A note stamped ahead of this clock (by more than
/// [`GRACE`]) is noted afresh: it would hold the wait off for as long as that clock was ahead.
async fn looks_stuck_for<S: KeyValue + Clock + Log>(
    store: &S,
    current: &Lease,
    read_at_ms: i64,
    wait_ms: i64,
) -> bool {
    let lost_at_ms = store.unix_millis();
    match state::load::<Option<Stuck>, _>(store, STUCK_KEY).await {
        Ok(Some(note))
            if note.lease == *current
                && note.lost_at_ms <= read_at_ms.saturating_add(millis(GRACE)) =>
        {
            read_at_ms.saturating_sub(note.lost_at_ms) >= wait_ms
        }
        Ok(_) => {
            let note = Stuck {
                lease: current.clone(),
                lost_at_ms,
            };
            if let Err(error) = state::save(store, STUCK_KEY, &note).await {
                store.log(
                    Level::Warn,
                    &format!("lost lease attempt not noted: {error}"),
                );
            }
            false
        }
        Err(error) => {
            store.log(Level::Warn, &format!("lease stuck note not read: {error}"));
            false
        }
    }
}

/// One increment on the generation's counter; the winner writes the document, then deletes
/// the past counters that are quiet.
async fn attempt<S: KeyValue + Clock + Log>(
    store: &S,
    taker: &Taker<'_>,
    generation: u64,
) -> Result<Attempt, KvError> {
    let counter = holders_key(generation);
    match increment_counter(store, &counter, 1).await? {
        None => Ok(Attempt::NoAtomics),
        Some(1) => {
            let past = past_at_take(taker, generation);
            let lease = Lease {
                generation,
                owner: taker.owner.to_owned(),
                expires_at_ms: taker.expires_at_ms,
                changed_at_ms: taker.now_ms,
                past: Some(past),
            };
            if let Err(error) = state::save(store, LEASE_KEY, &lease).await {
                give_back(store, &counter).await;
                return Err(error);
            }
            let written_at_ms = store.unix_millis();
            let past = delete_quiet(store, past, generation, written_at_ms).await;
            Ok(Attempt::Won(Held {
                owner: taker.owner.to_owned(),
                generation,
                expires_at_ms: taker.expires_at_ms,
                guarantee: Guarantee::Exclusive,
                past: handed_on(past, generation, written_at_ms),
            }))
        }
        Some(_) => {
            give_back(store, &counter).await;
            Ok(Attempt::Lost)
        }
    }
}

/// Takes back this taker's unit of `counter`. When that fails too the unit stays behind, and
/// takers find the counter stuck ([`looks_stuck`]).
async fn give_back<S: KeyValue + Log>(store: &S, counter: &str) {
    if let Err(error) = store.kv_increment(counter, -1).await {
        store.log(
            Level::Error,
            &format!(
                "lease unit of `{counter}` not given back ({error}): the next takers find it stuck"
            ),
        );
    }
}

/// The past counters below `generation` once this taker's document has landed. Taking a free
/// document's own generation changes nothing; a takeover or a move past a stuck counter adds
/// the counters it leaves behind, which stop getting increments within 2 × GRACE of this
/// taker's document write (three store calls after `now_ms`).
fn past_at_take(taker: &Taker<'_>, generation: u64) -> Past {
    let mut past = Past::of(taker.current);
    // No taker sets a quiet time further ahead than this (a move, below, plus a clock GRACE
    // ahead): a later one was stamped by a clock far ahead or a corrupted document, and would
    // keep every counter from here on for as long, one more each tick.
    let furthest = taker.now_ms.saturating_add(millis(6 * GRACE));
    past.quiet_at_ms = past.quiet_at_ms.min(furthest);
    past.older_quiet_at_ms = past.older_quiet_at_ms.min(furthest);
    let moved = taker.current.held() || generation != taker.current.generation;
    if moved {
        let quiet = taker.now_ms.saturating_add(millis(5 * GRACE));
        past.quiet_at_ms = past.quiet_at_ms.max(quiet);
    }
    // A wrapped generation names none of the old counters.
    past.older_below = past.older_below.min(generation);
    past.from = past.from.min(past.older_below);
    past
}

/// Deletes, oldest first and at most [`DELETES_PER_TAKE`], the counters of `past` (below
/// `generation`) that are quiet at `now_ms`; returns what is left. A failed delete stops there
/// (the counter is tried again by the next taker).
async fn delete_quiet<S: KeyValue + Log>(
    store: &S,
    past: Past,
    generation: u64,
    now_ms: i64,
) -> Past {
    let grace = millis(GRACE);
    let older_quiet =
        past.from >= past.older_below || past.older_quiet_at_ms.saturating_add(grace) <= now_ms;
    let end = if older_quiet && past.quiet_at_ms.saturating_add(grace) <= now_ms {
        generation
    } else if older_quiet {
        past.older_below
    } else {
        past.from
    };
    let end = end.min(past.from.saturating_add(DELETES_PER_TAKE));
    let mut from = past.from;
    while from < end {
        if let Err(error) = store.kv_delete(&holders_key(from)).await {
            store.log(
                Level::Warn,
                &format!("old lease counter not deleted: {error}"),
            );
            break;
        }
        from += 1;
    }
    Past { from, ..past }
}

/// The past counters the free document after `generation` names: what is left, plus this
/// holder's own counter, which gets no increment after 2 × GRACE past its document's landing
/// (before `written_at_ms`).
fn handed_on(past: Past, generation: u64, written_at_ms: i64) -> Past {
    let own_quiet = written_at_ms.saturating_add(millis(2 * GRACE));
    if past.from < past.older_below {
        Past {
            quiet_at_ms: past.quiet_at_ms.max(own_quiet),
            ..past
        }
    } else {
        Past {
            from: past.from,
            older_below: generation,
            older_quiet_at_ms: past.quiet_at_ms,
            quiet_at_ms: own_quiet,
        }
    }
}

/// An increment; a key that holds no counter (written some other way, by hand or by a bug)
/// is deleted and the increment made again. No taker can have counted on such a key: every
/// increment of it failed.
pub async fn increment_counter<S: KeyValue + Log>(
    store: &S,
    key: &str,
    delta: i64,
) -> Result<Option<i64>, KvError> {
    match store.kv_increment(key, delta).await {
        Ok(value) => Ok(value),
        Err(error) => {
            let Some(raw) = store.kv_get(key).await? else {
                return Err(error);
            };
            if is_counter(&raw) {
                return Err(error);
            }
            store.log(
                Level::Error,
                &format!(
                    "`{key}` holds {} bytes that are no counter ({error}): reset",
                    raw.len()
                ),
            );
            store.kv_delete(key).await?;
            store.kv_increment(key, delta).await
        }
    }
}

/// The two encodings of Spin's stores: SQLite's 8 little-endian bytes, Redis's decimal text.
fn is_counter(raw: &[u8]) -> bool {
    raw.len() == 8 || std::str::from_utf8(raw).is_ok_and(|text| text.trim().parse::<i64>().is_ok())
}

/// The scheme for stores without atomics: write, then read back who won.
async fn read_back<S: KeyValue + Log>(
    store: &S,
    current: &Lease,
    owner: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<Taken, KvError> {
    let mine = Lease {
        generation: current.generation,
        owner: owner.to_owned(),
        expires_at_ms,
        changed_at_ms: now_ms,
        past: current.past,
    };
    state::save(store, LEASE_KEY, &mine).await?;
    let read: Lease = state::load(store, LEASE_KEY).await?;
    if read.owner != owner {
        return Ok(busy(&read));
    }
    Ok(Taken::Held(Held {
        owner: owner.to_owned(),
        generation: current.generation,
        expires_at_ms,
        guarantee: Guarantee::BestEffort,
        past: Past::of(current),
    }))
}

fn busy(lease: &Lease) -> Taken {
    Taken::Busy {
        owner: if lease.owner.is_empty() {
            "a tick that is just starting".into()
        } else {
            lease.owner.clone()
        },
        expires_at_ms: lease.expires_at_ms,
    }
}

/// Gives the lease back: one write of the document, free, naming the next generation. One that
/// has outlived its validity is left alone: a taker may already have taken it over. A release
/// that fails leaves the document naming this holder until its lease expires.
pub async fn release<S: KeyValue + Clock + Log>(store: &S, held: &Held) -> Result<(), KvError> {
    let now_ms = store.unix_millis();
    if !held.valid_at(now_ms) {
        store.log(
            Level::Warn,
            "the tick outlived its lease: leaving it to expire",
        );
        return Ok(());
    }
    let generation = match held.guarantee {
        Guarantee::Exclusive => next_generation(store, held.generation),
        Guarantee::BestEffort => {
            let current: Lease = state::load(store, LEASE_KEY).await?;
            if current.owner != held.owner {
                return Ok(());
            }
            held.generation
        }
    };
    let free = Lease {
        generation,
        owner: String::new(),
        expires_at_ms: 0,
        changed_at_ms: now_ms,
        past: Some(held.past),
    };
    state::save(store, LEASE_KEY, &free).await
}

/// Prefix of the per-slot tickets of scheduled ticks.
pub const SLOTS_PREFIX: &str = "lcw/v1/lease/slots/";
/// Slot tickets kept: a tick claiming its slot deletes the ticket this many slots back.
const SLOTS_KEPT: u64 = 10;
/// A ticket older than this is an orphan (its deleting tick never ran, or the interval changed):
/// [`forget_old_slots`] deletes it. Far longer than any cron drift between hosts.
const ORPHAN_AFTER_S: u64 = 600;

/// Claims the scheduled slot of `scheduled_s` (the cron trigger's firing time, Unix seconds)
/// for this host: of several hosts whose crons fire for the same slot, exactly one gets it, even
/// when their ticks are too short to overlap (the lease alone would let them run one after the
/// other). The trigger stamps the time it fired, which drifts by a second or two between hosts,
/// so the slot is that time rounded to the nearest multiple of the interval. True when claimed,
/// or when the store has no atomics (then the lease decides alone).
pub async fn claim_slot<S: KeyValue + Log>(
    store: &S,
    scheduled_s: u64,
    interval_s: u64,
) -> Result<bool, KvError> {
    let interval_s = interval_s.max(1);
    let slot = scheduled_s.saturating_add(interval_s / 2) / interval_s * interval_s;
    let claimed = match increment_counter(store, &slot_key(slot), 1).await? {
        None => return Ok(true),
        Some(n) => n == 1,
    };
    // One delete by key a tick, rather than a listing and ten deletes every tenth tick: no
    // tick makes more than ten round trips. Slots are on the interval's grid, so the key is
    // exact; what it misses, the periodic key listing finds (`forget_old_slots`).
    let old = slot.checked_sub(interval_s.saturating_mul(SLOTS_KEPT));
    if claimed
        && let Some(old) = old
        && let Err(error) = store.kv_delete(&slot_key(old)).await
    {
        store.log(
            Level::Warn,
            &format!("old slot ticket not deleted: {error}"),
        );
    }
    Ok(claimed)
}

fn slot_key(slot: u64) -> String {
    format!("{SLOTS_PREFIX}{slot:020}")
}

/// Deletes the slot tickets among `keys` (a listing of the store) older than
/// [`ORPHAN_AFTER_S`] at `now_s`: those no claim deleted. Returns how many.
pub async fn forget_old_slots<S: KeyValue>(
    store: &S,
    keys: &[String],
    now_s: u64,
) -> Result<usize, KvError> {
    let oldest_kept = now_s.saturating_sub(ORPHAN_AFTER_S);
    let mut deleted = 0;
    for key in keys {
        let old = key
            .strip_prefix(SLOTS_PREFIX)
            .and_then(|slot| slot.parse::<u64>().ok())
            .is_some_and(|slot| slot < oldest_kept);
        if old {
            store.kv_delete(key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

pub fn holders_key(generation: u64) -> String {
    format!("{HOLDERS_PREFIX}{generation}")
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
