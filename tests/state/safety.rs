//! State that cannot lose data: an unreadable or unsaveable state document, a failed spool
//! append, racing ticks on one store, stored shapes missing fields (documents written by earlier
//! releases are in `releases`). Every spooled point is either written later or counted as
//! evicted; nothing disappears silently.

use crate::support;

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lcw_fetcher::cycle::{self, CollectorState};
use lcw_fetcher::host::KeyValue as _;
use lcw_fetcher::sink::spool::{self, SEGMENT_PREFIX, SpoolIndex};
use lcw_fetcher::state::{self, STATE_KEY};
use lcw_fetcher::telemetry::history::{CycleRecord, Outcome};
use support::lcw_fake::API_KEY;
use support::native_host::SharedKv;
use support::sim::{Profile, SimHost, World};
use support::{LcwFake, NativeHost, Reply, block_on};

/// InfluxDB played by the fake: up (counting the lines it takes) or down (503).
struct FakeInflux {
    lines: Arc<AtomicU64>,
}

impl FakeInflux {
    fn up(fake: &LcwFake) -> Self {
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
        Self { lines }
    }

    fn down(fake: &LcwFake) {
        fake.respond_with("/api/v2/write", |_| {
            Reply::json(503, r#"{"code":"unavailable","message":"down"}"#)
        });
    }

    fn lines(&self) -> u64 {
        self.lines.load(Ordering::SeqCst)
    }
}

fn variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", fake.base_url.clone()),
        ("influx_org", "lcw".to_owned()),
        ("influx_token", "state-safety-token".to_owned()),
        // Every tick fetches afresh, so every tick makes new points.
        ("cache_ttl_coins_list_s", "1".to_owned()),
        ("cache_ttl_overview_s", "1".to_owned()),
        ("cache_ttl_exchanges_s", "1".to_owned()),
    ]
}

/// Tick `n` of a run, a minute after the previous one, on the shared store.
/// A tick on a store that refuses values over `value_limit` and does not say so (the app then
/// takes it for 1 MiB and cannot trim its state document to fit).
fn tick(fake: &LcwFake, kv: &SharedKv, n: u64, value_limit: usize) -> CycleRecord {
    let host = NativeHost::with_kv(&variables(fake), kv.clone())
        .with_value_limit(value_limit)
        .reporting_value_limit(support::native_host::VALUE_LIMIT);
    host.advance(Duration::from_secs(61 * n));
    block_on(cycle::run(&host))
}

/// Points made by the ticks: written at once, or spooled (to be written later or evicted).
/// A record's written points include the spooled ones it replayed.
fn produced(records: &[CycleRecord]) -> u64 {
    records
        .iter()
        .map(|r| r.total_written() - r.points_replayed + r.points_spooled)
        .sum()
}

fn drain(fake: &LcwFake, kv: &SharedKv, from: u64) -> Vec<CycleRecord> {
    let mut records = Vec::new();
    for n in from..from + 5 {
        let record = tick(fake, kv, n, support::native_host::VALUE_LIMIT);
        let empty = support::collector_state(kv).sink.spool.is_empty();
        records.push(record);
        if empty {
            break;
        }
    }
    records
}

fn spool_keys(kv: &SharedKv) -> usize {
    kv.lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(SEGMENT_PREFIX))
        .count()
}

#[test]
fn an_unreadable_state_document_is_set_aside_and_its_spool_survives() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    FakeInflux::down(&fake);
    let first = tick(&fake, &kv, 0, support::native_host::VALUE_LIMIT);
    assert!(first.points_spooled > 0, "{first:?}");
    let garbage = b"{\"history\": [this is not JSON".to_vec();
    kv.lock().unwrap().insert(STATE_KEY.into(), garbage.clone());

    let second = tick(&fake, &kv, 1, support::native_host::VALUE_LIMIT);
    let influx = FakeInflux::up(&fake);
    let mut records = vec![first, second];
    records.extend(drain(&fake, &kv, 2));

    assert_eq!(influx.lines(), produced(&records), "every point arrives");
    assert_eq!(records.iter().map(|r| r.points_evicted).sum::<u64>(), 0);
    assert_eq!(spool_keys(&kv), 0);
    let kept: Vec<Vec<u8>> = kv
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("lcw/v1/state.unreadable."))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(kept, [garbage], "the unreadable document is kept as it was");
    let host = NativeHost::with_kv(&variables(&fake), kv.clone());
    assert_eq!(block_on(state::unreadable_count(&host)), 1);
    let snapshot = block_on(cycle::load_snapshot(&host)).unwrap();
    assert_eq!(snapshot.unreadable_documents, 1);
}

#[test]
fn only_a_few_unreadable_documents_are_kept() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    FakeInflux::up(&fake);
    for n in 0..5 {
        kv.lock()
            .unwrap()
            .insert(STATE_KEY.into(), format!("broken {n}").into_bytes());
        tick(&fake, &kv, n, support::native_host::VALUE_LIMIT);
    }
    let kept = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("lcw/v1/state.unreadable."))
        .count();
    assert_eq!(kept, state::UNREADABLE_KEPT);
    let host = NativeHost::with_kv(&variables(&fake), kv.clone());
    assert_eq!(block_on(state::unreadable_count(&host)), 5);
}

/// A store that refuses the state document (over its value limit) but takes the segments:
/// every tick's spool goes to keys of its own, found again once a document can be saved.
#[test]
fn a_state_document_that_cannot_be_saved_loses_no_spooled_point() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    FakeInflux::down(&fake);
    let mut records: Vec<CycleRecord> = (0..3).map(|n| tick(&fake, &kv, n, 2_000)).collect();
    assert!(
        !kv.lock().unwrap().contains_key(STATE_KEY),
        "the document is over the limit"
    );
    assert!(records.iter().all(|r| r.points_spooled > 0));

    let influx = FakeInflux::up(&fake);
    records.extend(drain(&fake, &kv, 3));

    assert_eq!(influx.lines(), produced(&records));
    assert_eq!(spool_keys(&kv), 0);
}

#[test]
fn a_failed_tail_append_keeps_the_tail_and_its_points() {
    let kv = SharedKv::default();
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let mut index = SpoolIndex {
        may_extend_tail: true,
        ..SpoolIndex::default()
    };
    let first: String = (0..20).map(|i| format!("m,k=a f={i} {i}\n")).collect();
    block_on(spool::append(&host, &mut index, &first, 1_000, 1));
    let tail_bytes = index.segments[0].bytes as usize;

    // The tail plus the new lines no longer fits the store's value limit.
    let small = NativeHost::with_kv::<&str, &str>(&[], kv.clone()).with_value_limit(tail_bytes + 8);
    let second: String = (20..40).map(|i| format!("m,k=b f={i} {i}\n")).collect();
    let appended = block_on(spool::append(&small, &mut index, &second, 1_000, 2));

    assert_eq!((appended.stored, appended.evicted), (20, 0), "{appended:?}");
    assert_eq!(index.points(), 40, "{index:?}");
    let mut read = String::new();
    for meta in &index.segments {
        read.push_str(&block_on(spool::read(&host, meta)).unwrap().unwrap());
    }
    assert_eq!(read, first + &second);
}

/// A failing tail rewrite (any store error) leaves the index as it was.
#[test]
fn segment_metadata_is_kept_until_its_replacement_is_written() {
    let kv = SharedKv::default();
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let mut index = SpoolIndex {
        may_extend_tail: true,
        ..SpoolIndex::default()
    };
    block_on(spool::append(&host, &mut index, "m f=1 1\n", 1_000, 1));
    let before = index.clone();
    let refusing = NativeHost::with_kv::<&str, &str>(&[], kv.clone()).with_value_limit(0);
    let result = block_on(spool::append(&refusing, &mut index, "m f=2 2\n", 1_000, 2));
    assert!(result.error.is_some() && result.stored == 0, "{result:?}");
    assert_eq!(index.segments, before.segments);
    assert_eq!(
        block_on(spool::read(&host, &index.segments[0])).unwrap(),
        Some("m f=1 1\n".into())
    );
}

/// Every stored shape reads from an empty object: a document missing fields added later loads.
#[test]
fn every_stored_shape_tolerates_missing_and_unknown_fields() {
    let doc: CollectorState =
        serde_json::from_str(r#"{"history":{},"resilience":{"bucket":{}},"cache":{"entries":{"k":{}}},"sink":{"spool":{"segments":[{}]}},"telemetry":{},"from_the_future":1}"#)
            .unwrap();
    assert_eq!(doc.sink.spool.segments.len(), 1);
    let _: lcw_fetcher::lease::Lease = serde_json::from_str(r#"{"x":1}"#).unwrap();
    let _: lcw_fetcher::sink::delivery::Quarantine =
        serde_json::from_str(r#"{"recent":[{}]}"#).unwrap();
}

// --- racing ticks on one store -----------------------------------------------------------------

/// Outcomes of `pairs` pairs of ticks started together on one simulated store whose calls take
/// up to 40 ms each, interleaving the two ticks' store calls; InfluxDB is down for about a third
/// of them. Returns (pairs where both ran, pairs where exactly one ran, all records).
fn race(world: &World, pairs: u64) -> (u64, u64, Vec<CycleRecord>) {
    let variables = support::sim::our_variables();
    let mut rng = support::sim::Rng::new(7);
    let mut at = Duration::ZERO;
    let (mut both, mut one) = (0, 0);
    let mut records = Vec::new();
    world.kv_latency_max.set(Duration::from_millis(40));
    for _ in 0..pairs {
        // 30 to 120 s apart: sometimes the free lease is older than STUCK.
        at += Duration::from_secs(30 + rng.next_u64() % 91);
        world.clock.advance_to(at);
        world.influx_down.set(rng.unit() < 0.3);
        let (a, b) = (
            SimHost::new(world, &variables),
            SimHost::new(world, &variables),
        );
        let (ra, rb) = world
            .clock
            .run(futures::future::join(cycle::run(&a), cycle::run(&b)));
        let ran = [&ra, &rb]
            .iter()
            .filter(|r| r.outcome != Outcome::SkippedOverlap)
            .count();
        match ran {
            2 => both += 1,
            1 => one += 1,
            _ => {}
        }
        at = at.max(world.clock.now());
        records.extend([ra, rb]);
    }
    // InfluxDB back: solo ticks until the spool is empty.
    world.influx_down.set(false);
    world.kv_latency_max.set(Duration::ZERO);
    for _ in 0..50 {
        at += Duration::from_secs(60);
        world.clock.advance_to(at);
        let host = SimHost::new(world, &variables);
        records.push(world.clock.run(cycle::run(&host)));
        at = at.max(world.clock.now());
        if spool_points(world) == 0 {
            break;
        }
    }
    (both, one, records)
}

fn spool_points(world: &World) -> u64 {
    world
        .kv
        .borrow()
        .get(STATE_KEY)
        .map(|raw| serde_json::from_slice::<CollectorState>(raw).unwrap())
        .map_or(0, |doc| doc.sink.spool.points())
}

/// Points in = points written + spooled; spooled = replayed + evicted (the spool is empty).
fn assert_accounted(world: &World, records: &[CycleRecord]) {
    let sum = |f: fn(&CycleRecord) -> u64| records.iter().map(f).sum::<u64>();
    let written = sum(CycleRecord::total_written);
    let (replayed, spooled, evicted) = (
        sum(|r| r.points_replayed),
        sum(|r| r.points_spooled),
        sum(|r| r.points_evicted),
    );
    assert_eq!(spool_points(world), 0, "the spool drained");
    assert!(spooled > 0, "the race spooled something");
    assert_eq!(
        world.influx_lines.get(),
        written,
        "InfluxDB took exactly what the records say (replays included)"
    );
    assert_eq!(
        spooled,
        replayed + evicted,
        "no spooled point lost or replayed twice"
    );
}

#[test]
fn of_a_thousand_racing_tick_pairs_never_both_run_on_a_store_with_atomics() {
    let world = World::new(Profile::CALM, 11);
    let (both, one, records) = race(&world, 1_000);
    println!("with atomics: 1000 pairs, one ran in {one}, both in {both}");
    assert_eq!(both, 0);
    assert_eq!(one, 1_000, "a tick starting alone always runs");
    assert_accounted(&world, &records);
}

/// Without atomics two ticks started together may both run (write then read back cannot
/// exclude them). Then both may replay one segment: a second write of the same points (InfluxDB
/// overwrites them) and, for the tick that finds it gone, a count of points "lost" that the other
/// tick wrote. So the counts may exceed what was spooled, never fall short of it.
#[test]
fn without_atomics_racing_ticks_may_both_run_but_no_point_goes_uncounted() {
    let world = World::new(Profile::CALM, 13);
    world.atomics.set(false);
    let (both, one, records) = race(&world, 1_000);
    let sum = |f: fn(&CycleRecord) -> u64| records.iter().map(f).sum::<u64>();
    let (spooled, replayed, evicted) = (
        sum(|r| r.points_spooled),
        sum(|r| r.points_replayed),
        sum(|r| r.points_evicted),
    );
    println!(
        "without atomics: 1000 pairs, one ran in {one}, both in {both}; {spooled} points spooled, {replayed} replayed, {evicted} counted lost"
    );
    assert!(both > 0, "the race is real");
    assert_eq!(spool_points(&world), 0);
    assert!(spooled > 0 && replayed + evicted >= spooled);
    assert_eq!(world.influx_lines.get(), sum(CycleRecord::total_written));
}

/// The lease's own promise, on the native host with real threads and jittered store calls.
#[test]
fn two_hosts_never_hold_the_lease_together() {
    use lcw_fetcher::lease::{Taken, release, take};
    let kv = SharedKv::default();
    let inside = Arc::new(AtomicU64::new(0));
    let overlaps = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (kv, inside, overlaps) = (kv.clone(), inside.clone(), overlaps.clone());
            std::thread::spawn(move || {
                let host = NativeHost::with_kv::<&str, &str>(&[], kv)
                    .with_kv_jitter(Duration::from_micros(200))
                    .real_sleep();
                let mut held_count = 0;
                for _ in 0..300 {
                    let owner = format!("{:x}", rand_id(&host));
                    let now = lcw_fetcher::host::Clock::unix_millis(&host);
                    if let Taken::Held(held) = block_on(take(&host, &owner, now + 60_000)).unwrap()
                    {
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_micros(300));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        block_on(release(&host, &held)).unwrap();
                        held_count += 1;
                    }
                }
                held_count
            })
        })
        .collect();
    let held: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    println!("held {held:?} times");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert!(
        held.iter().all(|&n| n > 0),
        "both hosts got turns: {held:?}"
    );
}

fn rand_id(host: &NativeHost) -> u64 {
    lcw_fetcher::host::Random::random_u64(host)
}

#[test]
fn a_dead_holder_blocks_only_until_its_lease_expires() {
    use lcw_fetcher::lease::{GRACE, Taken, take};
    let kv = SharedKv::default();
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let now = lcw_fetcher::host::Clock::unix_millis(&host);
    let Taken::Held(_dead) = block_on(take(&host, "dies", now + 50_000)).unwrap() else {
        panic!("a fresh store gives the lease");
    };
    let later = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    later.advance(Duration::from_secs(30));
    assert!(matches!(
        block_on(take(&later, "next", now + 90_000)).unwrap(),
        Taken::Busy { .. }
    ));
    let after = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    after.advance(Duration::from_secs(50) + GRACE + Duration::from_secs(1));
    assert!(matches!(
        block_on(take(&after, "next", now + 200_000)).unwrap(),
        Taken::Held(_)
    ));
}

/// The first taker to lose against the stuck counter notes it and skips (it never waits); one
/// that loses against the same document a pause later moves on to the next generation.
#[test]
fn a_counter_left_stuck_by_a_dying_taker_is_recovered() {
    use lcw_fetcher::lease::{GRACE, PAUSE, Taken, holders_key, take};
    let kv = SharedKv::default();
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    // A taker that incremented and died before giving its unit back: the counter says taken,
    // the document says free (released just now).
    let now = lcw_fetcher::host::Clock::unix_millis(&host);
    let free = lcw_fetcher::lease::Lease {
        changed_at_ms: now,
        ..Default::default()
    };
    block_on(state::save(&host, state::LEASE_KEY, &free)).unwrap();
    block_on(host.kv_increment(&holders_key(0), 1)).unwrap();
    let soon = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    assert!(matches!(
        block_on(take(&soon, "a", now + 50_000)).unwrap(),
        Taken::Busy { .. }
    ));
    let later = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    later.advance(PAUSE + GRACE + Duration::from_secs(1));
    let taken = block_on(take(&later, "b", now + 500_000)).unwrap();
    assert!(later.slept().is_empty(), "taking the lease never sleeps");
    assert!(
        matches!(taken, Taken::Held(ref h) if h.generation == 1),
        "{taken:?}"
    );
}

#[test]
fn the_native_store_refuses_values_over_its_limit() {
    let host = NativeHost::new::<&str, &str>(&[]);
    let big = vec![0u8; support::native_host::VALUE_LIMIT + 1];
    assert!(block_on(host.kv_set("k", &big)).is_err());
}

// --- bounded documents -------------------------------------------------------------------------

fn state_bytes(world: &World) -> usize {
    world.kv.borrow().get(STATE_KEY).map_or(0, Vec::len)
}

/// The state document at steady state with the defaults: at most 16 KB.
#[test]
fn the_state_document_stays_small_at_steady_state() {
    let world = World::new(Profile::SEED, 17);
    let variables = support::sim::our_variables();
    let mut largest = 0;
    for n in 0..300 {
        support::sim::our_tick(&world, &variables, n);
        largest = largest.max(state_bytes(&world));
    }
    println!(
        "state document after 300 seed-profile ticks: {} bytes, at most {largest}",
        state_bytes(&world)
    );
    assert!(largest <= 16 * 1024, "{largest} bytes");
}

/// 300 ticks of the most hostile answers LCW and InfluxDB can give: the state document stays
/// under 64 KB and no value written comes near the store's 1 MB limit.
#[test]
fn the_state_document_stays_bounded_under_hostile_answers() {
    let world = World::new(Profile::CALM, 19);
    world.hostile.set(true);
    let variables = support::sim::our_variables();
    let mut largest = 0;
    for n in 0..300 {
        support::sim::our_tick(&world, &variables, n);
        largest = largest.max(state_bytes(&world));
    }
    println!(
        "hostile answers: state document at most {largest} bytes over 300 ticks; largest value written {} bytes",
        world.largest_value.get()
    );
    assert!(largest <= 64 * 1024, "{largest} bytes");
    assert!(world.largest_value.get() < support::sim::VALUE_LIMIT);
}

/// Two hosts whose crons fire for the same minute: one runs, even when the first tick is over
/// before the second starts (the lease alone would let both run, one after the other).
#[test]
fn of_two_hosts_firing_for_one_slot_one_runs() {
    let fake = LcwFake::start();
    FakeInflux::up(&fake);
    let kv = SharedKv::default();
    let variables = variables(&fake);
    let slot = 1_800_000_000;
    let first = block_on(cycle::run_scheduled(
        &NativeHost::with_kv(&variables, kv.clone()),
        slot,
    ));
    let second = block_on(cycle::run_scheduled(
        &NativeHost::with_kv(&variables, kv.clone()),
        slot,
    ));
    let next = block_on(cycle::run_scheduled(
        &NativeHost::with_kv(&variables, kv.clone()),
        slot + 60,
    ));
    assert_eq!(first.outcome, Outcome::Success, "{:?}", first.errors);
    assert_eq!(second.outcome, Outcome::SkippedOverlap);
    assert_eq!(next.outcome, Outcome::Success, "the next slot runs");
    // Only the last few slots' tickets are kept.
    for n in 2..30 {
        block_on(cycle::run_scheduled(
            &NativeHost::with_kv(&variables, kv.clone()),
            slot + 60 * n,
        ));
    }
    let tickets = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(lcw_fetcher::lease::SLOTS_PREFIX))
        .count();
    // Swept every 10 slots: at most the last 20.
    assert!(tickets <= 20, "{tickets} slot tickets kept");
}

/// Tickets no claim deletes — slots whose tick never ran, another interval's grid — go with the
/// store listing a tick makes every `ADOPT_EVERY`: they do not pile up, and the current ones stay.
#[test]
fn orphaned_slot_tickets_are_listed_away() {
    let fake = LcwFake::start();
    FakeInflux::up(&fake);
    let kv = SharedKv::default();
    let variables = variables(&fake);
    let start = NativeHost::with_kv(&variables, kv.clone());
    let now_s = u64::try_from(lcw_fetcher::host::Clock::unix_millis(&start) / 60_000 * 60).unwrap();
    let ticket = |slot: u64| format!("{}{slot:020}", lcw_fetcher::lease::SLOTS_PREFIX);
    // A day of a 300 s interval's tickets, off the minute grid the ticks below claim on.
    for n in 1..=288u64 {
        kv.lock()
            .unwrap()
            .insert(ticket(now_s - 300 * n + 7), 1i64.to_le_bytes().to_vec());
    }
    for n in 0..12u64 {
        let host = NativeHost::with_kv(&variables, kv.clone());
        host.advance(Duration::from_secs(60 * n));
        let record = block_on(cycle::run_scheduled(&host, now_s + 60 * n));
        assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    }
    let kept: Vec<String> = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(lcw_fetcher::lease::SLOTS_PREFIX))
        .cloned()
        .collect();
    assert!(
        kept.len() <= 12,
        "{} slot tickets kept: {kept:?}",
        kept.len()
    );
    assert!(
        kept.contains(&ticket(now_s + 60 * 11)),
        "the newest ticket stays"
    );
}
