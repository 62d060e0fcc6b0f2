//! The promises of state schema 3 (the backfill document inside the state document, its
//! backup under `lcw/v1/backfill`) and of the inline cache bodies. Each test states a promise
//! the README gives and FAILED on the code it was written against (commit 7e8c678); see the doc
//! comment of each for the root cause.

use crate::support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::time::Duration;

use lcw_fetcher::backfill::{BackfillState, Target};
use lcw_fetcher::cache::{self, Entry, Index, TickCache};
use lcw_fetcher::config::Ttls;
use lcw_fetcher::cycle;
use lcw_fetcher::state;
use lcw_fetcher::telemetry::history::CycleRecord;
use support::lcw_fake::API_KEY;
use support::native_host::SharedKv;
use support::{LcwFake, NativeHost, block_on};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR_MS: i64 = 3_600_000;

/// Counts the bytes this thread holds at its peak, for the bomb test (tests run in parallel).
struct Peak;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Peak = Peak;

/// A tick on the embedded store, no backfill calls (the queue stays as queued).
fn variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("cycle_deadline_ms", "20000".to_owned()),
        ("initial_history_hours", "0".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
    ]
}

fn tick(variables: &[(&'static str, String)], kv: &SharedKv, at: Duration) -> CycleRecord {
    let host = NativeHost::with_kv(variables, kv.clone());
    host.advance(at);
    block_on(cycle::run(&host))
}

fn backup(kv: &SharedKv) -> BackfillState {
    serde_json::from_slice(&kv.lock().unwrap()[state::BACKFILL_KEY]).unwrap()
}

fn put_backup(kv: &SharedKv, doc: &BackfillState) {
    kv.lock()
        .unwrap()
        .insert(state::BACKFILL_KEY.into(), serde_json::to_vec(doc).unwrap());
}

fn sol() -> Target {
    Target::Coin { code: "SOL".into() }
}

/// During a rollback (or a rolling deploy) the previous release's `POST /backfill` queues into
/// `lcw/v1/backfill` alone (release 2 knows no other place). When this release runs again, its
/// state document still says schema 3, so the tick took the queue from the state document and
/// never looked at the backup; the next change of the queue then wrote the backup over, and the
/// admin's range was gone without a trace (not filled, not counted abandoned).
#[test]
fn a_range_the_previous_release_queued_in_the_backup_alone_is_not_lost() {
    for gap in [false, true] {
        let fake = LcwFake::start();
        let variables = variables(&fake);
        let kv = SharedKv::default();
        tick(&variables, &kv, Duration::ZERO);
        assert_eq!(support::collector_state(&kv).schema, cycle::STATE_SCHEMA);

        // Release 2's route: the backup document alone.
        let now = NativeHost::new(&variables);
        let now = lcw_fetcher::host::Clock::unix_millis(&now);
        let mut old = backup(&kv);
        old.enqueue(&sol(), now - 2 * HOUR_MS, now - HOUR_MS);
        put_backup(&kv, &old);

        // Release 3 again: steady ticks, or a gap that changes the queue (and the backup).
        let minutes: Vec<u32> = if gap {
            vec![30, 31]
        } else {
            (1..=12).collect()
        };
        for m in minutes {
            tick(&variables, &kv, MINUTE * m);
        }
        let doc = support::collector_state(&kv).backfill;
        let queued = doc.queue.iter().any(|r| r.target == sol());
        assert!(
            queued,
            "gap {gap}: the admin's range is neither queued nor counted: {doc:?}"
        );
        assert!(
            backup(&kv).queue.iter().any(|r| r.target == sol()),
            "gap {gap}: and the backup keeps it"
        );
    }
}

fn gzip_base64(body: &[u8]) -> String {
    use base64::Engine as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).unwrap();
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
}

/// An inline body is decompressed with no bound: a stored index (a corrupted or hostile store,
/// or another release's) whose inline body is a gzip bomb — 64 KB that inflate to 64 MB here,
/// a 700 KB one to 700 MB under the store's 1 MB value cap — makes a tick allocate all of it (a
/// trap in the WebAssembly instance's linear memory). No LCW answer is longer than
/// `host::MAX_RESPONSE_BYTES`, so no cached body can be either.
#[test]
fn an_inline_gzip_bomb_inflates_no_further_than_the_longest_answer() {
    let bomb = gzip_base64(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 200 * 1024, "{}", bomb.len());
    let key = "/coins/list|{}".to_owned();
    let mut index = Index::default();
    index.entries.insert(
        key.clone(),
        Entry {
            requested_at_ms: 0,
            fetched_at_ms: 1,
            expires_at_ms: i64::MAX,
            last_used_ms: 0,
            segment: String::new(),
            inline: bomb,
        },
    );
    let ttls = Ttls {
        status_s: 3600,
        credits_s: 3600,
        coins_single_s: 3600,
        coins_list_s: 3600,
        overview_s: 3600,
        exchanges_list_s: 3600,
    };
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let mut cache = TickCache::new(index, ttls, 100, "1-a", 1_000);
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let hit = block_on(cache.lookup(&host, &key, 1_000));
    let grew = (PEAK.with(Cell::get) - before) as usize;
    assert!(
        hit.as_ref()
            .is_none_or(|h| h.body.len() <= lcw_fetcher::host::MAX_RESPONSE_BYTES),
        "a body longer than any answer"
    );
    assert!(
        grew <= 3 * lcw_fetcher::host::MAX_RESPONSE_BYTES,
        "one lookup allocated {} MB",
        grew >> 20
    );
    let _ = cache::INLINE_LIMIT;
}

fn ttls_of(seconds: u64) -> Ttls {
    Ttls {
        status_s: seconds,
        credits_s: seconds,
        coins_single_s: seconds,
        coins_list_s: seconds,
        overview_s: seconds,
        exchanges_list_s: seconds,
    }
}

/// A stored entry's expiry was trusted as written: an answer asked by a clock that had jumped a
/// day ahead (and came back), or one stored under a TTL since lowered from a day to a minute,
/// or a corrupted expiry, was served as fresh for a day (one answered in the future gave points
/// from the future) — fresh data held back by old data, the
/// points of every tick carrying the old `fetched_at`. An entry is fresh for the TTL configured
/// now from when it was asked, never from the future; entries no endpoint of this release
/// answers live for the longest TTL at most (they held the inline budget until their expiry).
#[test]
fn a_cached_answer_is_fresh_for_the_ttl_configured_now_from_when_it_was_asked() {
    let now = 1_800_000_000_000;
    let body = gzip_base64(br#"[{"code":"BTC","rate":1.0}]"#);
    let entry = |requested_at_ms: i64, expires_at_ms: i64| Entry {
        requested_at_ms,
        fetched_at_ms: requested_at_ms,
        expires_at_ms,
        last_used_ms: requested_at_ms,
        segment: String::new(),
        inline: body.clone(),
    };
    let cases = [
        (
            "a clock a day ahead",
            entry(now + 86_400_000, now + 86_460_000),
        ),
        (
            "a TTL since lowered",
            entry(now - 120_000, now + 86_280_000),
        ),
        ("within its TTL", entry(now - 10_000, now + 50_000)),
        ("answered in a year", {
            let mut e = entry(now - 10_000, now + 50_000);
            e.fetched_at_ms = now + 365 * 86_400_000;
            e
        }),
    ];
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    for (case, stored) in cases {
        let key = "/coins/list|{}".to_owned();
        let mut index = Index::default();
        index.entries.insert(key.clone(), stored);
        index.entries.insert(
            "/no/such/endpoint|{}".into(),
            entry(now - 120_000, now + 86_280_000),
        );
        let mut cache = TickCache::new(index, ttls_of(60), 100, "1-a", now);
        let fresh = case == "within its TTL";
        assert_eq!(cache.len(), usize::from(fresh), "{case}: entries kept");
        let hit = block_on(cache.lookup(&host, &key, now));
        assert_eq!(hit.is_some(), fresh, "{case}");
    }
}

/// Held: an off-schedule `POST /collect` five seconds after a cron tick fetches the data again
/// (its TTL is not longer than the interval: not cached) but neither `/status` nor `/credits`,
/// which are kept as index entries without a body; a 30 s interval caches the 60 s answers.
#[test]
fn an_off_schedule_collect_refetches_data_but_not_status_or_credits() {
    for interval in ["60", "30"] {
        let fake = LcwFake::start();
        let mut variables = variables(&fake);
        variables.push(("admin_token", "admin-3".into()));
        variables.push(("cycle_interval_s", interval.into()));
        let kv = SharedKv::default();
        tick(&variables, &kv, Duration::ZERO);
        let counts =
            |fake: &LcwFake| ["/status", "/credits", "/coins/list"].map(|p| fake.seen_on(p).len());
        let before = counts(&fake);
        assert!(before.iter().all(|&n| n >= 1), "{interval}: {before:?}");
        let api = NativeHost::with_kv(&variables, kv.clone());
        api.advance(Duration::from_secs(5));
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri("/collect")
            .header("authorization", "Bearer admin-3")
            .body(Vec::new())
            .unwrap();
        let answer = block_on(lcw_fetcher::routes::handle(&api, &request));
        assert_eq!(
            answer.status(),
            200,
            "{}",
            String::from_utf8_lossy(answer.body())
        );
        let after = counts(&fake);
        assert_eq!(
            after[..2],
            before[..2],
            "{interval}: status and credits cached"
        );
        let refetched = after[2] > before[2];
        assert_eq!(
            refetched,
            interval == "60",
            "{interval}: {before:?} {after:?}"
        );
    }
}

/// The queue holds `backfill::QUEUE_KEPT` ranges at most, but that bound was applied only when
/// a tick queued something: a state document (or backup) holding thousands of ranges — another
/// release's, a corrupted one — kept them all, tick after tick, in the one document every tick
/// must save under the store's value cap. The bound applies to what is read too (the oldest
/// beyond it abandoned, and counted).
#[test]
fn a_stored_queue_longer_than_the_bound_is_cut_to_it_and_counted() {
    let fake = LcwFake::start();
    let variables = variables(&fake);
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    let mut doc = support::collector_state(&kv);
    let long = 4 * lcw_fetcher::backfill::QUEUE_KEPT;
    let start = doc.backfill.queue.len();
    for n in 0..long as i64 {
        doc.backfill.queue.push_back(lcw_fetcher::backfill::Range {
            target: sol(),
            from_ms: n * 1_000,
            to_ms: n * 1_000 + 999,
            attempts: 0,
        });
    }
    let abandoned = doc.backfill.abandoned;
    support::put_collector_state(&kv, &doc);
    tick(&variables, &kv, MINUTE);
    let doc = support::collector_state(&kv).backfill;
    assert!(
        doc.queue.len() <= lcw_fetcher::backfill::QUEUE_KEPT,
        "{} ranges kept",
        doc.queue.len()
    );
    assert_eq!(
        doc.abandoned - abandoned,
        (start + long - doc.queue.len()) as u64,
        "the ranges cut are counted"
    );
}

/// A cache segment was inflated with no bound either: a stored segment (900 KB at most when this
/// release writes one, up to the store's 1 MB cap when a hostile store does) inflating to
/// 900 MB. A segment holds bodies of one tick, each no longer than any answer: it is read only
/// while it inflates to at most `cache::SEGMENT_INFLATED_LIMIT`.
#[test]
fn a_segment_gzip_bomb_inflates_no_further_than_its_bound() {
    use base64::Engine as _;
    let key = "/coins/list|{}".to_owned();
    let segment = format!("{}1-a", cache::SEGMENT_PREFIX);
    let mut json = br#"{"/coins/list|{}":""#.to_vec();
    json.resize(2 * cache::SEGMENT_INFLATED_LIMIT, b' ');
    json.extend_from_slice(br#""}"#);
    let packed = base64::engine::general_purpose::STANDARD
        .decode(gzip_base64(&json))
        .unwrap();
    drop(json);
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    host.kv.lock().unwrap().insert(segment.clone(), packed);
    let mut index = Index::default();
    index.entries.insert(
        key.clone(),
        Entry {
            requested_at_ms: 1_000,
            fetched_at_ms: 1_000,
            expires_at_ms: 60_000,
            last_used_ms: 0,
            segment,
            inline: String::new(),
        },
    );
    let mut cache = TickCache::new(index, ttls_of(60), 100, "2-b", 2_000);
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let hit = block_on(cache.lookup(&host, &key, 2_000));
    let grew = (PEAK.with(Cell::get) - before) as usize;
    assert!(hit.is_none());
    assert!(
        grew <= 2 * cache::SEGMENT_INFLATED_LIMIT + (1 << 20),
        "one lookup allocated {} MB",
        grew >> 20
    );
}

/// Not fixed: the backup under `lcw/v1/backfill` is written only when the queue, names or
/// counters change, so its last point of each series is as old as the last such change (hours,
/// days). When the state document turns unreadable (or a rollback to release 2 reads the
/// backup), the tick takes those stale last points for the truth and queues the whole time since
/// as a gap of every watched series — up to 30 days each, which no gap ever was — spending
/// history calls and credits on points that exist, and on a long stale time pushing real ranges
/// (an admin's) out of the 500-range queue (counted abandoned). Fixing it means writing the
/// backup at least every `backfill_min_gap_s` or so, the writes schema 3 saves; a choice for the
/// maintainers.
#[test]
#[ignore = "design trade-off of schema 3 (backup written only on queue changes); see doc comment"]
fn an_unreadable_state_document_queues_no_gap_that_never_was() {
    let fake = LcwFake::start();
    let variables = variables(&fake);
    let kv = SharedKv::default();
    for m in (0..=60).step_by(2) {
        tick(&variables, &kv, MINUTE * m);
    }
    assert!(support::collector_state(&kv).backfill.queue.is_empty());
    kv.lock()
        .unwrap()
        .insert(state::STATE_KEY.into(), b"{ not json".to_vec());
    tick(&variables, &kv, MINUTE * 62);
    let doc = support::collector_state(&kv).backfill;
    assert!(
        doc.queue.is_empty(),
        "gaps that never were: {:?}",
        doc.queue
    );
}

/// Held since e92a0f3 (the backup is taken in before it is written over; before, the range was
/// lost): a newer release's state document
/// (schema 4) that keeps the backfill document elsewhere again — no `backfill` field — gives
/// this release an empty queue, but the tick does not write the backup over with it: the
/// admin's range queued there survives.
#[test]
fn a_newer_state_document_without_the_backfill_part_loses_no_range() {
    let fake = LcwFake::start();
    let variables = variables(&fake);
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    let now = lcw_fetcher::host::Clock::unix_millis(&NativeHost::new(&variables));
    let mut kept = backup(&kv);
    kept.enqueue(&sol(), now - 2 * HOUR_MS, now - HOUR_MS);
    put_backup(&kv, &kept);
    let mut newer = serde_json::to_value(support::collector_state(&kv)).unwrap();
    let fields = newer.as_object_mut().unwrap();
    fields.remove("backfill");
    fields.remove("backfill_saved");
    fields.insert("schema".into(), 4.into());
    fields.insert("backfill_elsewhere".into(), true.into());
    kv.lock()
        .unwrap()
        .insert(state::STATE_KEY.into(), serde_json::to_vec(&newer).unwrap());
    tick(&variables, &kv, MINUTE);
    assert!(backup(&kv).queue.iter().any(|r| r.target == sol()));
    assert!(
        support::collector_state(&kv)
            .backfill
            .queue
            .iter()
            .any(|r| r.target == sol())
    );
}

/// Held: an index entry without a body (as `/status` and `/credits` are kept) under the key of
/// an answer whose body a hit needs — another release's, a corrupted one — is a miss and leaves
/// the index, so the answer is fetched; an inline body that is not base64 or not gzip likewise.
#[test]
fn an_entry_without_a_usable_body_for_an_answer_that_needs_one_is_a_miss() {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let key = "/coins/list|{}".to_owned();
    for inline in [String::new(), "not base64!".into(), "AAAA".into()] {
        let mut index = Index::default();
        index.entries.insert(
            key.clone(),
            Entry {
                requested_at_ms: 1_000,
                fetched_at_ms: 1_000,
                expires_at_ms: 60_000,
                last_used_ms: 1_000,
                segment: String::new(),
                inline: inline.clone(),
            },
        );
        let mut cache = TickCache::new(index, ttls_of(60), 100, "2-b", 2_000);
        assert!(
            block_on(cache.lookup(&host, &key, 2_000)).is_none(),
            "{inline:?}"
        );
        assert!(cache.is_empty(), "{inline:?}: the entry left the index");
        assert_eq!(cache.stats().misses, 1);
    }
}

/// The periodic checks (the store listing, the backup read) were due when `now` minus the
/// stored time of the last one reached `ADOPT_EVERY`: a stored time in the future (a clock that
/// had jumped ahead, a corrupted document) made them never due again, and a range queued in the
/// backup alone was never taken in. A time in the future now counts as due.
#[test]
fn stored_check_times_in_the_future_do_not_stop_the_periodic_checks() {
    let fake = LcwFake::start();
    let variables = variables(&fake);
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    let mut raw: serde_json::Value =
        serde_json::from_slice(&kv.lock().unwrap()[state::STATE_KEY]).unwrap();
    raw["backup_checked_at_ms"] = serde_json::json!(i64::MAX);
    raw["sink"]["spool"]["adopted_at_ms"] = serde_json::json!(i64::MAX);
    kv.lock().unwrap().insert(
        state::STATE_KEY.to_owned(),
        serde_json::to_vec(&raw).unwrap(),
    );

    let now = lcw_fetcher::host::Clock::unix_millis(&NativeHost::new(&variables));
    let mut old = backup(&kv);
    old.enqueue(&sol(), now - 2 * HOUR_MS, now - HOUR_MS);
    put_backup(&kv, &old);
    for m in 1..=3 {
        tick(&variables, &kv, MINUTE * m);
    }
    let doc = support::collector_state(&kv);
    assert!(
        doc.backfill.queue.iter().any(|r| r.target == sol()),
        "the range queued in the backup was never taken in: {:?}",
        doc.backfill
    );
    assert!(
        doc.sink.spool.adopted_at_ms <= now + 4 * 60_000,
        "the listing ran again"
    );
}
