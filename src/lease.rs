//! The cycle lease: one tick at a time, across processes and hosts sharing the store.
//!
//! Owns the lease document ([`LEASE_KEY`]: generation, holder, until when) and the holder
//! counters beside it (`lcw/v1/lease/holders/<generation>`). It must not know what a tick does.
//!
//! Exclusion rests on the store's atomic increment, the one operation Spin's SQLite and Redis
//! stores both honour for racing callers (their compare-and-swap is not exclusive on Redis, nor
//! on an absent key on SQLite). Taking the lease of generation `g` is `increment(holders/g, +1)`:
//! whoever gets 1 holds it and writes the document; anyone else gives the unit back and skips.
//! Releasing marks the document free, then gives the unit back, so the next taker of `g` gets 1.
//!
//! A tick that died leaves its unit behind. Once its lease has expired (plus [`GRACE`] for clock
//! skew between hosts), takers move to generation `g + 1`, whose counter starts at 0 — so of
//! several takers exactly one takes over. A counter left stuck by a taker that died between its
//! two increments is treated the same way once the document has not changed for [`STUCK`] and
//! does not change during a short pause. Assumed: host clocks within [`GRACE`] of each other,
//! and no single store call slower than [`GRACE`].
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
/// A lease document unchanged this long while its counter refuses everyone is stuck.
pub const STUCK: Duration = Duration::from_secs(60);
/// How long a taker watches a stuck-looking document before it moves to the next generation:
/// longer than a winner's increment answer and document write together can take (2 × GRACE).
pub const PAUSE: Duration = Duration::from_secs(21);
/// Prefix of the holder counters.
pub const HOLDERS_PREFIX: &str = "lcw/v1/lease/holders/";

/// The lease document. An empty `owner` means free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lease {
    pub generation: u64,
    pub owner: String,
    pub expires_at_ms: i64,
    /// When the document last changed hands (taken, released, taken over).
    pub changed_at_ms: i64,
}

impl Lease {
    fn held(&self) -> bool {
        !self.owner.is_empty()
    }

    /// Held by a tick that may still be running.
    fn live(&self, now_ms: i64) -> bool {
        self.held() && now_ms <= self.expires_at_ms.saturating_add(millis(GRACE))
    }

    /// Since when a taker may claim the next holder: release time, or expiry plus grace.
    fn takeable_since_ms(&self) -> i64 {
        if self.held() {
            self.expires_at_ms.saturating_add(millis(GRACE))
        } else {
            self.changed_at_ms
        }
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
    Won,
    Lost,
    NoAtomics,
}

/// Takes the lease for `owner` until `expires_at_ms`, unless another tick holds it.
pub async fn take<S: KeyValue + Clock + Log>(
    store: &S,
    owner: &str,
    expires_at_ms: i64,
) -> Result<Taken, KvError> {
    let now_ms = store.unix_millis();
    let current: Lease = state::load(store, LEASE_KEY).await?;
    if current.live(now_ms) {
        return Ok(busy(&current));
    }
    // An expired holder's unit stays behind: its successor starts a fresh generation. A
    // generation that cannot grow (a hand-edited document) starts over.
    let generation = if current.held() {
        next_generation(store, current.generation)
    } else {
        current.generation
    };
    let held = |generation| Held {
        owner: owner.to_owned(),
        generation,
        expires_at_ms,
        guarantee: Guarantee::Exclusive,
    };
    match attempt(store, &held(generation), &current, now_ms).await? {
        Attempt::Won => return Ok(Taken::Held(held(generation))),
        Attempt::NoAtomics => {
            return read_back(store, &current, owner, now_ms, expires_at_ms).await;
        }
        Attempt::Lost => {}
    }
    // Lost: a taker that just won has not written the document yet, or a taker died between
    // its increments and left the counter stuck. Only the second leaves the document unchanged.
    if now_ms.saturating_sub(current.takeable_since_ms()) < millis(STUCK) {
        return Ok(busy(&current));
    }
    store.sleep(PAUSE).await;
    if state::load::<Lease, _>(store, LEASE_KEY).await? != current {
        return Ok(busy(&current));
    }
    store.log(
        Level::Warn,
        &format!("lease generation {generation} is stuck: moving to the next"),
    );
    let next = next_generation(store, generation);
    match attempt(store, &held(next), &current, now_ms).await? {
        Attempt::Won => Ok(Taken::Held(held(next))),
        _ => Ok(busy(&current)),
    }
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

/// One increment on the generation's counter; the winner writes the document.
async fn attempt<S: KeyValue + Log>(
    store: &S,
    held: &Held,
    current: &Lease,
    now_ms: i64,
) -> Result<Attempt, KvError> {
    let counter = holders_key(held.generation);
    match increment_counter(store, &counter, 1).await? {
        None => Ok(Attempt::NoAtomics),
        Some(1) => {
            let lease = Lease {
                generation: held.generation,
                owner: held.owner.clone(),
                expires_at_ms: held.expires_at_ms,
                changed_at_ms: now_ms,
            };
            state::save(store, LEASE_KEY, &lease).await?;
            // Only a new generation leaves an old counter behind (a store round trip saved on
            // every ordinary tick).
            if held.generation != current.generation {
                forget_old_generation(store, held.generation).await;
            }
            Ok(Attempt::Won)
        }
        Some(_) => {
            store.kv_increment(&counter, -1).await?;
            Ok(Attempt::Lost)
        }
    }
}

/// An increment; a key that holds no counter (written some other way, by hand or by a bug)
/// is deleted and the increment made again. No taker can have counted on such a key: every
/// increment of it failed.
async fn increment_counter<S: KeyValue + Log>(
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

/// Counters two generations back are stuck for good and no taker reads them any more.
async fn forget_old_generation<S: KeyValue + Log>(store: &S, generation: u64) {
    if let Some(old) = generation.checked_sub(2)
        && let Err(error) = store.kv_delete(&holders_key(old)).await
    {
        store.log(
            Level::Warn,
            &format!("old lease counter not deleted: {error}"),
        );
    }
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

/// Gives the lease back. One that has outlived its expiry is left alone: a taker may already
/// have taken it over, and its unit is theirs to leave behind.
pub async fn release<S: KeyValue + Clock + Log>(store: &S, held: &Held) -> Result<(), KvError> {
    let now_ms = store.unix_millis();
    if !held.valid_at(now_ms) {
        store.log(
            Level::Warn,
            "the tick outlived its lease: leaving it to expire",
        );
        return Ok(());
    }
    if held.guarantee == Guarantee::BestEffort {
        let current: Lease = state::load(store, LEASE_KEY).await?;
        if current.owner != held.owner {
            return Ok(());
        }
    }
    let free = Lease {
        generation: held.generation,
        owner: String::new(),
        expires_at_ms: 0,
        changed_at_ms: now_ms,
    };
    // Free first, then the unit: until the unit is back no one can win, so no one can have
    // written a newer document that this one would hide.
    state::save(store, LEASE_KEY, &free).await?;
    if held.guarantee == Guarantee::Exclusive {
        store
            .kv_increment(&holders_key(held.generation), -1)
            .await?;
    }
    Ok(())
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
