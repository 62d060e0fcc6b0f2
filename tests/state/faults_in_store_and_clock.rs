//! The parts that must never lose data (the lease, the spool, the state document) under a slow,
//! flaky store and a wrong clock. Each test failed on the code it was written against.
//!
//! Most run in the virtual-time simulation (`support::sim`) through [`Faulty`], a host wrapper
//! that delays or fails chosen store calls and skews the wall clock, as a slow, flaky store and
//! a host with a wrong clock would.

use crate::support;

use std::cell::{Cell, RefCell};
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lcw_fetcher::cycle::{self, CollectorState};
use lcw_fetcher::host::{
    Clock, HttpClient, HttpRequest, HttpResponse, KeyValue, KvError, Level, Log, Random, Sql,
    SqlError, SqlRows, SqlValue, Timeouts, TransportError, Variables,
};
use lcw_fetcher::lease::{self, Lease, Taken, holders_key};
use lcw_fetcher::sink::spool::{self, SEGMENT_PREFIX, SpoolIndex};
use lcw_fetcher::state::{self, LEASE_KEY, STATE_KEY, UNREADABLE_COUNT_KEY};
use lcw_fetcher::telemetry::history::CycleRecord;
use support::lcw_fake::API_KEY;
use support::native_host::SharedKv;
use support::sim::{Profile, SimHost, World};
use support::{LcwFake, NativeHost, Reply, block_on};

// --- a host whose store misbehaves on purpose ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    Delete,
    Increment,
    Keys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The call fails without effect.
    Fail,
    /// The call takes effect only after this long (a slow store answer / request).
    Delay(Duration),
}

type Rule = Box<dyn FnMut(Op, &str) -> Fault>;

/// Wraps a host: its store calls go through `rule`, its wall clock is off by `skew_ms`.
struct Faulty<H> {
    inner: H,
    rule: RefCell<Rule>,
    skew_ms: i64,
}

impl<H> Faulty<H> {
    fn new(inner: H, rule: impl FnMut(Op, &str) -> Fault + 'static) -> Self {
        Self {
            inner,
            rule: RefCell::new(Box::new(rule)),
            skew_ms: 0,
        }
    }

    fn skewed(mut self, skew_ms: i64) -> Self {
        self.skew_ms = skew_ms;
        self
    }
}

impl<H: KeyValue + Clock> Faulty<H> {
    async fn gate(&self, op: Op, key: &str) -> Result<(), KvError> {
        let fault = (self.rule.borrow_mut())(op, key);
        match fault {
            Fault::None => Ok(()),
            Fault::Fail => Err(KvError(format!("injected failure of {op:?} `{key}`"))),
            Fault::Delay(by) => {
                self.inner.sleep(by).await;
                Ok(())
            }
        }
    }
}

impl<H: KeyValue + Clock> KeyValue for Faulty<H> {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.gate(Op::Get, key).await?;
        self.inner.kv_get(key).await
    }
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.gate(Op::Set, key).await?;
        self.inner.kv_set(key, value).await
    }
    async fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.gate(Op::Delete, key).await?;
        self.inner.kv_delete(key).await
    }
    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError> {
        self.gate(Op::Increment, key).await?;
        self.inner.kv_increment(key, delta).await
    }
    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.gate(Op::Keys, prefix).await?;
        self.inner.kv_keys(prefix).await
    }

    fn kv_value_limit(&self) -> usize {
        self.inner.kv_value_limit()
    }
}

impl<H: Clock> Clock for Faulty<H> {
    fn unix_millis(&self) -> i64 {
        self.inner.unix_millis() + self.skew_ms
    }
    fn monotonic(&self) -> Duration {
        self.inner.monotonic()
    }
    async fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration).await
    }
}

impl<H: HttpClient> HttpClient for Faulty<H> {
    async fn send(
        &self,
        request: HttpRequest,
        timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError> {
        self.inner.send(request, timeouts).await
    }
}

impl<H: Sql> Sql for Faulty<H> {
    async fn sql_execute(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        self.inner.sql_execute(statement, params).await
    }
}

impl<H: Variables> Variables for Faulty<H> {
    async fn variable(&self, name: &str) -> Result<Option<String>, String> {
        self.inner.variable(name).await
    }
}

impl<H: Random> Random for Faulty<H> {
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
}

impl<H: Log> Log for Faulty<H> {
    fn log(&self, level: Level, message: &str) {
        self.inner.log(level, message)
    }
}

// --- helpers ------------------------------------------------------------------------------------

const SIM_EPOCH_MS: i64 = 1_800_000_000_000;

fn put_lease(world: &World, lease: &Lease) {
    world
        .kv
        .borrow_mut()
        .insert(LEASE_KEY.into(), serde_json::to_vec(lease).unwrap());
}

fn sim_state(world: &World) -> CollectorState {
    world
        .kv
        .borrow()
        .get(STATE_KEY)
        .map(|raw| serde_json::from_slice(raw).unwrap())
        .unwrap_or_default()
}

fn sim_keys(world: &World, prefix: &str) -> Vec<String> {
    world
        .kv
        .borrow()
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

fn is_held(taken: &Taken) -> bool {
    matches!(taken, Taken::Held(_))
}

fn sum(records: &[CycleRecord], f: fn(&CycleRecord) -> u64) -> u64 {
    records.iter().map(f).sum()
}

// --- the lease ----------------------------------------------------------------------------------

/// A lease document from another release or edited by hand, at the top generation: the next
/// taker computes `generation + 1` and the tick panics (overflow) instead of taking the lease.
#[test]
fn a_lease_document_at_generation_u64_max_does_not_panic_a_tick() {
    let world = World::new(Profile::CALM, 1);
    world.clock.advance_to(Duration::from_secs(100));
    put_lease(
        &world,
        &Lease {
            generation: u64::MAX,
            owner: "an old holder".into(),
            expires_at_ms: 0,
            changed_at_ms: 0,
            ..Lease::default()
        },
    );
    let host = SimHost::new(&world, &support::sim::our_variables());
    let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world
            .clock
            .run(lease::take(&host, "next", SIM_EPOCH_MS + 200_000))
    }));
    let taken = taken.expect("taking the lease must not panic");
    assert!(is_held(&taken.unwrap()), "an expired lease is taken over");
}

/// Stuck-counter escalation, with a store call slower than PAUSE (1 s) but far below GRACE
/// (10 s), which the lease claims to tolerate. The lease was released long ago (> STUCK). A wins
/// generation g (counter 1) but its document write is slow; B loses g, sees a document unchanged
/// for STUCK and still unchanged after PAUSE, and moves to g + 1, which it wins. Both hold.
#[test]
fn a_winner_slower_than_pause_to_write_its_document_is_not_joined_by_a_second_holder() {
    let world = World::new(Profile::CALM, 2);
    world.clock.advance_to(Duration::from_secs(300));
    let now_ms = SIM_EPOCH_MS + 300_000;
    put_lease(
        &world,
        &Lease {
            generation: 5,
            owner: String::new(),
            expires_at_ms: 0,
            changed_at_ms: now_ms - 120_000,
            ..Lease::default()
        },
    );
    let variables = support::sim::our_variables();
    // A's write of the lease document takes 3 s to land.
    let a = Faulty::new(SimHost::new(&world, &variables), |op, key| {
        if op == Op::Set && key == LEASE_KEY {
            Fault::Delay(Duration::from_secs(3))
        } else {
            Fault::None
        }
    });
    let b = SimHost::new(&world, &variables);
    let expires = now_ms + 50_000;
    let (ta, tb) = world.clock.run(futures::future::join(
        lease::take(&a, "a", expires),
        lease::take(&b, "b", expires),
    ));
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert!(
        !(is_held(&ta) && is_held(&tb)),
        "two ticks hold the lease at once on a store with atomics: {ta:?} / {tb:?}"
    );
}

/// Clock skew and a slow store call, each within the assumed 10 s, together exceed GRACE. A's
/// clock is 6 s slow: at its release it still thinks its lease valid, though B (right clock) has
/// taken generation g + 1. A's "free" document for g takes 6 s to land, over B's; A then gives
/// its unit of g back, and C takes g while B holds g + 1.
#[test]
fn a_late_release_from_a_skewed_holder_does_not_let_a_third_tick_in() {
    let world = World::new(Profile::CALM, 3);
    let variables = support::sim::our_variables();
    world.clock.advance_to(Duration::from_secs(100));
    let slow = Arc::new(AtomicU64::new(0));
    let slow_in_rule = Arc::clone(&slow);
    let a = Faulty::new(SimHost::new(&world, &variables), move |op, key| {
        if op == Op::Set && key == LEASE_KEY && slow_in_rule.load(Ordering::SeqCst) == 1 {
            Fault::Delay(Duration::from_secs(6))
        } else {
            Fault::None
        }
    })
    .skewed(-6_000);
    // A takes the lease for 10 s by its own clock.
    let expires_a = a.unix_millis() + 10_000; // = epoch + 104 s, true time
    let Taken::Held(held_a) = world.clock.run(lease::take(&a, "a", expires_a)).unwrap() else {
        panic!("a fresh store gives the lease");
    };
    slow.store(1, Ordering::SeqCst);
    // True time 109.9 s: A (clock at 103.9 s) releases, its lease still valid by its clock.
    world.clock.advance_to(Duration::from_millis(109_900));
    let b = SimHost::new(&world, &variables);
    let c = SimHost::new(&world, &variables);
    let (released, tb, tc) = world.clock.run(futures::future::join3(
        lease::release(&a, &held_a),
        async {
            // True time 114.1 s: A's lease expired plus GRACE by B's right clock.
            b.sleep(Duration::from_millis(4_200)).await;
            lease::take(&b, "b", SIM_EPOCH_MS + 114_100 + 50_000).await
        },
        async {
            c.sleep(Duration::from_millis(7_000)).await;
            lease::take(&c, "c", SIM_EPOCH_MS + 116_900 + 50_000).await
        },
    ));
    released.unwrap();
    let (tb, tc) = (tb.unwrap(), tc.unwrap());
    assert!(is_held(&tb), "B takes over the expired lease: {tb:?}");
    assert!(
        !is_held(&tc),
        "C holds the lease while B still does (B's lease runs to +50 s): {tc:?}"
    );
}

// --- counters holding what is not a counter ------------------------------------------------------

/// InfluxDB played by the LCW fake: up (counting lines) or down.
fn influx_up(fake: &LcwFake) -> Arc<AtomicU64> {
    let lines = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&lines);
    fake.respond_with("/api/v2/write", move |seen| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(seen.body.as_slice())
            .read_to_string(&mut text)
            .expect("gzip body");
        counter.fetch_add(text.lines().count() as u64, Ordering::SeqCst);
        Reply::json(204, "")
    });
    lines
}

fn influx_down(fake: &LcwFake) {
    fake.respond_with("/api/v2/write", |_| {
        Reply::json(503, r#"{"code":"unavailable","message":"down"}"#)
    });
}

fn native_variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", fake.base_url.clone()),
        ("influx_org", "lcw".to_owned()),
        ("influx_token", "adversary-token".to_owned()),
        ("cache_ttl_coins_list_s", "1".to_owned()),
        ("cache_ttl_overview_s", "1".to_owned()),
        ("cache_ttl_exchanges_s", "1".to_owned()),
    ]
}

fn native_tick(fake: &LcwFake, kv: &SharedKv, n: u64) -> CycleRecord {
    let host = NativeHost::with_kv(&native_variables(fake), kv.clone());
    host.advance(Duration::from_secs(61 * n));
    block_on(cycle::run(&host))
}

fn native_spool_keys(kv: &SharedKv) -> usize {
    kv.lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(SEGMENT_PREFIX))
        .count()
}

/// A holders counter holding bytes that are not a counter (hand-edited, or written by another
/// tool): every increment on it fails, so no tick ever takes the lease again. Ticks then run
/// without lease and without state, forever: the spool they write is never replayed, and grows
/// without bound (nothing evicts what no index lists).
#[test]
fn a_holders_key_holding_non_counter_bytes_does_not_stall_the_collector_for_good() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    kv.lock()
        .unwrap()
        .insert(holders_key(0), b"not a counter".to_vec());
    influx_down(&fake);
    for n in 0..3 {
        native_tick(&fake, &kv, n);
    }
    assert!(native_spool_keys(&kv) > 0, "InfluxDB down: points spooled");
    let lines = influx_up(&fake);
    let mut records = Vec::new();
    for n in 3..10 {
        records.push(native_tick(&fake, &kv, n));
    }
    assert!(lines.load(Ordering::SeqCst) > 0);
    assert!(
        kv.lock().unwrap().contains_key(STATE_KEY),
        "no tick ever saved a state document"
    );
    assert_eq!(
        native_spool_keys(&kv),
        0,
        "the spool of the outage is never replayed: {} points written, {} replayed",
        lines.load(Ordering::SeqCst),
        sum(&records, |r| r.points_replayed)
    );
}

/// The unreadable-documents counter holding non-counter bytes: `/stats` cannot be built, and
/// an unreadable state document can never be set aside, so no tick saves state again.
#[test]
fn a_non_counter_unreadable_count_does_not_break_stats() {
    let kv = SharedKv::default();
    kv.lock()
        .unwrap()
        .insert(UNREADABLE_COUNT_KEY.into(), b"seven".to_vec());
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let snapshot = block_on(cycle::load_snapshot(&host));
    assert!(snapshot.is_ok(), "{snapshot:?}");
}

#[test]
fn a_non_counter_unreadable_count_does_not_keep_an_unreadable_state_document_forever() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    influx_up(&fake);
    {
        let mut kv = kv.lock().unwrap();
        kv.insert(UNREADABLE_COUNT_KEY.into(), b"seven".to_vec());
        kv.insert(STATE_KEY.into(), b"{ broken".to_vec());
    }
    for n in 0..3 {
        native_tick(&fake, &kv, n);
    }
    let raw = kv.lock().unwrap()[STATE_KEY].clone();
    assert!(
        serde_json::from_slice::<CollectorState>(&raw).is_ok(),
        "after 3 ticks the state document is still the unreadable one: {}",
        String::from_utf8_lossy(&raw)
    );
    let aside = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("lcw/v1/state.unreadable."))
        .count();
    assert!(aside <= state::UNREADABLE_KEPT);
}

// --- the spool ----------------------------------------------------------------------------------

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("m,k=a f={i} {i}\n")).collect()
}

/// Eviction that fails halfway: the first oldest segment is deleted and popped, the second
/// delete fails, and `append` returns the error, dropping the count of what it already evicted.
/// The sink then counts the whole new batch as lost (it is in fact in the index). Either way the
/// caller's books no longer balance: a point is lost uncounted.
#[test]
fn an_eviction_that_fails_halfway_loses_no_point_uncounted() {
    let kv = SharedKv::default();
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let mut index = SpoolIndex::default();
    for n in 0..3 {
        block_on(spool::append(
            &host,
            &mut index,
            &lines(n * 10..n * 10 + 10),
            1_000,
            n as i64,
        ));
    }
    assert_eq!(index.segments.len(), 3);
    let before = index.points();
    let deletes = Cell::new(0);
    let faulty = Faulty::new(
        NativeHost::with_kv::<&str, &str>(&[], kv.clone()),
        move |op, _| {
            if op == Op::Delete {
                deletes.set(deletes.get() + 1);
                if deletes.get() == 2 {
                    return Fault::Fail;
                }
            }
            Fault::None
        },
    );
    let new = lines(100..105);
    let result = block_on(spool::append(&faulty, &mut index, &new, 20, 10));
    // What `Sink::finish` books as lost: the evicted points, and the new ones not stored.
    let booked_lost = result.evicted + (5 - result.stored);
    assert_eq!(
        before + 5,
        index.points() + booked_lost,
        "{result:?}: spool before {before}, after {}, {booked_lost} booked as lost",
        index.points()
    );
}

fn sim_variables(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = support::sim::our_variables();
    v.extend_from_slice(extra);
    v
}

/// A replayed segment whose delete failed is dropped from the index but stays in the store; the
/// next adoption (every 10 minutes) lists it again and it is replayed a second time: InfluxDB
/// gets its points twice and `replayed` exceeds `spooled`, on a store with atomics and one tick
/// at a time.
#[test]
fn a_replayed_segment_whose_delete_failed_is_not_replayed_again() {
    let world = World::new(Profile::CALM, 21);
    let variables = sim_variables(&[]);
    let mut records = Vec::new();
    let mut at = Duration::from_secs(1_000);
    let tick = |world: &World, fail_spool_deletes: bool, at: Duration| {
        world.clock.advance_to(at);
        let host = Faulty::new(SimHost::new(world, &variables), move |op, key| {
            if fail_spool_deletes && op == Op::Delete && key.starts_with(SEGMENT_PREFIX) {
                Fault::Fail
            } else {
                Fault::None
            }
        });
        world.clock.run(cycle::run(&host))
    };
    world.influx_down.set(true);
    records.push(tick(&world, false, at));
    assert!(records[0].points_spooled > 0);
    world.influx_down.set(false);
    at += Duration::from_secs(60);
    records.push(tick(&world, true, at));
    assert!(records[1].points_replayed > 0, "{:?}", records[1]);
    for _ in 0..15 {
        at += Duration::from_secs(60);
        records.push(tick(&world, false, at));
    }
    let (spooled, replayed, evicted) = (
        sum(&records, |r| r.points_spooled),
        sum(&records, |r| r.points_replayed),
        sum(&records, |r| r.points_evicted),
    );
    assert_eq!(
        spooled,
        replayed + evicted,
        "spooled {spooled}, replayed {replayed}, evicted {evicted}"
    );
}

/// Cache segments of ticks whose state document was not saved (save failed, lease expired, no
/// lease) are referenced by no index and listed by nobody: they are never deleted.
#[test]
fn cache_segments_of_unsaved_ticks_do_not_pile_up() {
    let world = World::new(Profile::CALM, 23);
    let variables = sim_variables(&[]);
    for n in 0..120u64 {
        world.clock.advance_to(Duration::from_secs(1_000 + 61 * n));
        let unsaved = n < 100;
        let host = Faulty::new(SimHost::new(&world, &variables), move |op, key| {
            if unsaved && op == Op::Set && key == STATE_KEY {
                Fault::Fail
            } else {
                Fault::None
            }
        });
        world.clock.run(cycle::run(&host));
    }
    let referenced: std::collections::BTreeSet<String> = sim_state(&world)
        .cache
        .entries
        .values()
        .map(|e| e.segment.clone())
        .collect();
    let stored = sim_keys(&world, lcw_fetcher::cache::SEGMENT_PREFIX);
    // Swept every 10 minutes, once 10 minutes old: at most 20 minutes of ticks' segments
    // beyond the referenced ones, however long the saves fail.
    assert!(
        stored.len() <= referenced.len() + 20,
        "{} cache segments stored, {} referenced by the index",
        stored.len(),
        referenced.len()
    );
}

/// A segment whose header reads but whose body is truncated, found by listing (its index was
/// lost): `adopt` logs it and leaves it in place, uncounted, for good. Its header says how many
/// points it held; they are lost, and no counter says so (a listed segment in the same state
/// would have been counted as evicted). Every adoption reads it again.
#[test]
fn a_truncated_segment_found_by_listing_is_counted_as_lost() {
    let world = World::new(Profile::CALM, 31);
    let variables = sim_variables(&[]);
    world.clock.advance_to(Duration::from_secs(1_000));
    let host = SimHost::new(&world, &variables);
    let key = "lcw/v1/spool/0000000000001-00000000000000aa-000";
    let body: String = lines(0..50);
    world.clock.run(spool::write(&host, key, &body, 1)).unwrap();
    let mut value = world.kv.borrow()[key].clone();
    value.truncate(value.len() - 8);
    world.kv.borrow_mut().insert(key.into(), value);

    let mut records = Vec::new();
    for n in 0..12u64 {
        world.clock.advance_to(Duration::from_secs(1_000 + 61 * n));
        let host = SimHost::new(&world, &variables);
        records.push(world.clock.run(cycle::run(&host)));
    }
    let evicted = sum(&records, |r| r.points_evicted);
    let still_there = world.kv.borrow().contains_key(key);
    assert!(
        evicted >= 50 || !still_there,
        "50 points of an unreadable segment: {evicted} counted lost, segment still stored: {still_there}"
    );
    assert_eq!(
        sim_state(&world).sink.counters.evicted,
        50,
        "the loss shows in the lifetime counters"
    );
}

/// A tick whose state cannot be read does not know it is not the first: it must not fetch the
/// initial history again (24 h of calls a tick while the store fails reads).
#[test]
fn a_tick_without_its_state_fetches_no_initial_history() {
    let fake = LcwFake::start();
    influx_up(&fake);
    let kv = SharedKv::default();
    for n in 0..3u64 {
        let host = Faulty::new(
            NativeHost::with_kv(&native_variables(&fake), kv.clone()),
            |op, key| {
                if op == Op::Get && key == lcw_fetcher::state::STATE_KEY {
                    Fault::Fail
                } else {
                    Fault::None
                }
            },
        );
        host.inner.advance(Duration::from_secs(61 * n));
        block_on(cycle::run(&host));
    }
    assert_eq!(fake.seen_on("/coins/single/history").len(), 0);
}
