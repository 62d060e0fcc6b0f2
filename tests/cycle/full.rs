//! The full tick: the response cache (TTL per kind, LRU, no errors or empty answers, fetch times
//! kept end to end), concurrency, the deadline, the lease, a 200-coin tick landing exactly, and
//! the tick's key-value round trips.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lcw_fetcher::cache::{self, TickCache};
use lcw_fetcher::config::Ttls;
use lcw_fetcher::lcw::Endpoint;
use lcw_fetcher::telemetry::history::{CycleRecord, Outcome};
use lcw_fetcher::{cycle, lease, state};
use serde_json::{Value, json};
use support::lcw_fake::{Seen, TICK_PATHS, fixture, fixture_for, fixture_json};
use support::native_host::SharedKv;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

const S: Duration = Duration::from_secs(1);

/// Runs a tick on a fresh host sharing `kv`, `at` after now.
fn tick_at(
    variables: &[(&'static str, String)],
    kv: &SharedKv,
    at: Duration,
) -> (CycleRecord, NativeHost) {
    let host = NativeHost::with_kv(variables, kv.clone());
    host.advance(at);
    (block_on(cycle::run(&host)), host)
}

fn calls_per_path(fake: &LcwFake) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for seen in fake.seen() {
        *counts.entry(seen.path).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

fn counts(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
}

#[test]
fn each_kind_is_fetched_again_only_when_its_ttl_is_over() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();

    let (first, _) = tick_at(&variables, &kv, Duration::ZERO);
    assert_eq!(first.cache_hits, 0);
    let every_kind = [
        ("/coins/list", 1),
        ("/coins/map", 1),
        ("/credits", 1),
        ("/exchanges/list", 1),
        ("/overview", 1),
        ("/status", 1),
    ];
    assert_eq!(calls_per_path(&fake), counts(&every_kind));

    // Coins and overview (60 s TTL, not longer than the 60 s interval) are not cached: the
    // next cron tick would find them expired. Nothing of theirs is in the index or a segment.
    let index = support::collector_state(&kv).cache;
    let mut kinds: Vec<&str> = index
        .entries
        .keys()
        .map(|k| k.split('|').next().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["/credits", "/exchanges/list", "/status"]);
    let segments = kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(cache::SEGMENT_PREFIX))
        .count();
    assert_eq!(
        segments, 0,
        "the exchanges' small body is inline in the index"
    );
    assert!(
        index.entries.iter().all(
            |(k, e)| e.segment.is_empty() && e.inline.is_empty() != k.starts_with("/exchanges")
        ),
        "status and credits are kept without a body: {index:?}"
    );

    // 30 s later (an off-schedule tick, `POST /collect`): status, credits and exchanges come
    // from the cache; coins and overview are fetched afresh.
    let (second, _) = tick_at(&variables, &kv, 30 * S);
    assert_eq!(second.outcome, Outcome::Success, "{:?}", second.errors);
    assert_eq!(second.cache_hits, 3);
    let refetched = [
        ("/coins/list", 2),
        ("/coins/map", 2),
        ("/credits", 1),
        ("/exchanges/list", 1),
        ("/overview", 2),
        ("/status", 1),
    ];
    assert_eq!(calls_per_path(&fake), counts(&refetched));

    // A minute on: coins and overview again; two minutes: status (120 s); five: credits
    // (300 s); ten: exchanges (600 s).
    tick_at(&variables, &kv, 60 * S);
    assert_eq!(
        calls_per_path(&fake),
        counts(&[
            ("/coins/list", 3),
            ("/coins/map", 3),
            ("/credits", 1),
            ("/exchanges/list", 1),
            ("/overview", 3),
            ("/status", 1)
        ])
    );
    tick_at(&variables, &kv, 120 * S);
    tick_at(&variables, &kv, 300 * S);
    assert_eq!(
        calls_per_path(&fake),
        counts(&[
            ("/coins/list", 5),
            ("/coins/map", 5),
            ("/credits", 2),
            ("/exchanges/list", 1),
            ("/overview", 5),
            ("/status", 3)
        ])
    );
    let (last, _) = tick_at(&variables, &kv, 600 * S);
    assert_eq!(fake.seen_on("/exchanges/list").len(), 2);
    assert_eq!(last.outcome, Outcome::Success);

    let index = support::collector_state(&kv).cache;
    // Hits: status, credits, exchanges at +30 s and at +60; credits, exchanges at +120;
    // exchanges at +300; none at +600.
    assert_eq!(index.stats.hits, 3 + 3 + 2 + 1);
    assert!(index.stats.expirations > 0);
    assert_eq!(index.entries.len(), 3);
}

#[test]
fn an_answer_is_cached_only_when_its_ttl_outlasts_the_interval() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    // Ticks every 30 s: the 60 s coins and overview answers are read back by the next tick.
    variables.push(("cycle_interval_s", "30".into()));
    variables.push(("cycle_deadline_ms", "20000".into()));
    let kv = SharedKv::default();

    tick_at(&variables, &kv, Duration::ZERO);
    let (second, _) = tick_at(&variables, &kv, 30 * S);
    assert_eq!(second.outcome, Outcome::Success, "{:?}", second.errors);
    assert_eq!(second.cache_hits, 6);
    assert_eq!(fake.seen_on("/coins/list").len(), 1);
    assert_eq!(fake.seen_on("/overview").len(), 1);
}

#[test]
fn a_cached_answer_keeps_its_fetch_time_all_the_way_into_influxdb() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();

    tick_at(&variables, &kv, Duration::ZERO);
    let first_time = influx.rows("exchange_data")[0]["time"].as_i64().unwrap();
    let (second, _) = tick_at(&variables, &kv, 61 * S);
    assert!(
        second.points_written["exchanges"] == 1,
        "the cached exchanges are written again…"
    );

    let exchanges = influx.rows("exchange_data");
    assert_eq!(
        exchanges.len(),
        1,
        "…with their first fetch time, so nothing new appears"
    );
    assert_eq!(exchanges[0]["time"].as_i64().unwrap(), first_time);
    // Coins were fetched again: two points per coin, a minute apart.
    let btc: Vec<i64> = influx
        .rows("cryptocurrency_data")
        .iter()
        .filter(|r| r["code"] == "BTC")
        .map(|r| r["time"].as_i64().unwrap())
        .collect();
    assert_eq!(btc.len(), 2);
    assert!(btc[1] - btc[0] >= 60_000, "{btc:?}");
}

#[test]
fn errors_and_empty_answers_are_never_cached() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    // Kinds whose TTL is longer than the interval (those the cache keeps at all).
    fake.respond("/exchanges/list", Reply::documented_error(503));
    fake.respond("/credits", Reply::json(200, "{}"));
    let mut variables = variables_for(&fake, &influx);
    variables.push(("retry_max", "0".into()));
    let kv = SharedKv::default();

    tick_at(&variables, &kv, Duration::ZERO);
    fake.restore("/exchanges/list");
    let (second, _) = tick_at(&variables, &kv, 10 * S);

    assert_eq!(
        fake.seen_on("/exchanges/list").len(),
        2,
        "the 503 was not cached"
    );
    assert_eq!(
        fake.seen_on("/credits").len(),
        2,
        "the empty answer was not cached"
    );
    assert_eq!(fake.seen_on("/status").len(), 1, "the good answers were");
    assert_eq!(second.points_written["exchanges"], 1);
}

fn ttls() -> Ttls {
    Ttls {
        status_s: 120,
        credits_s: 300,
        coins_single_s: 60,
        coins_list_s: 60,
        overview_s: 60,
        exchanges_list_s: 600,
    }
}

#[test]
fn lru_eviction_drops_the_least_recently_used_entry() {
    let host = NativeHost::new(&[("x", "y")]);
    let body = |n: u32| format!("[{{\"code\":\"C{n}\"}}]").into_bytes();
    let key = |n: u32| {
        cache::key(
            Endpoint::CoinsList,
            format!("{{\"offset\":{n}}}").as_bytes(),
        )
    };

    let mut tick = TickCache::new(cache::Index::default(), ttls(), 3, "t1", 1_000);
    for n in 0..3 {
        assert!(tick.store(
            Endpoint::CoinsList,
            key(n),
            body(n),
            1_000,
            1_000 + i64::from(n)
        ));
    }
    let (index, saved) = block_on(tick.finish(&host));
    saved.unwrap();

    let mut tick = TickCache::new(index, ttls(), 3, "t2", 5_000);
    let hit = block_on(tick.lookup(&host, &key(0), 5_000)).unwrap();
    assert_eq!(
        (hit.body, hit.fetched_at_ms),
        (body(0), 1_000),
        "a hit keeps its fetch time"
    );
    assert!(tick.store(Endpoint::CoinsList, key(3), body(3), 5_000, 5_000));
    assert_eq!(tick.len(), 3);
    assert!(
        block_on(tick.lookup(&host, &key(1), 5_001)).is_none(),
        "1 was least recently used"
    );
    for n in [0, 2, 3] {
        assert!(
            block_on(tick.lookup(&host, &key(n), 5_002)).is_some(),
            "{n} stays"
        );
    }
    assert!(
        !tick.store(Endpoint::CoinsList, key(9), b"[]".to_vec(), 5_000, 5_000),
        "empty answers are refused"
    );
    let stats = tick.stats();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (4, 1, 1));
    let (index, saved) = block_on(tick.finish(&host));
    saved.unwrap();

    // The first tick's segment still holds entries 0 and 2; after they expire it is deleted.
    let segments = |host: &NativeHost| {
        host.kv
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(cache::SEGMENT_PREFIX))
            .count()
    };
    assert_eq!(segments(&host), 2);
    let tick = TickCache::new(index, ttls(), 3, "t3", 70_000);
    assert_eq!(tick.len(), 0);
    assert_eq!(tick.stats().expirations, 3);
    block_on(tick.finish(&host)).1.unwrap();
    assert_eq!(segments(&host), 0, "no segment outlives its entries");
}

#[test]
fn clear_forgets_every_entry_but_keeps_the_statistics() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();
    let (_, host) = tick_at(&variables, &kv, Duration::ZERO);
    tick_at(&variables, &kv, 10 * S);

    let mut doc = support::collector_state(&kv);
    assert_eq!(block_on(cache::clear(&host, &mut doc.cache)).unwrap(), 3);
    support::put_collector_state(&kv, &doc);

    let index = support::collector_state(&kv).cache;
    assert!(index.entries.is_empty());
    assert_eq!(index.stats.hits, 3);
    assert!(
        !kv.lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with(cache::SEGMENT_PREFIX))
    );
    let calls = fake.seen().len();
    tick_at(&variables, &kv, 20 * S);
    assert_eq!(fake.seen().len(), calls + 6, "everything is fetched again");
}

#[test]
fn the_calls_of_a_tick_overlap_up_to_the_concurrency_bound() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    for path in TICK_PATHS {
        fake.respond_with(path, |seen: &Seen| {
            let name = fixture_for(&seen.path).expect("a fixture for every tick endpoint");
            Reply::json(200, fixture(name)).delayed(S)
        });
    }
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_concurrent_requests", "6".into()));

    let started = Instant::now();
    let record = block_on(cycle::run(&NativeHost::new(&variables)));
    let took = started.elapsed();

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(fake.max_in_flight(), 6, "all six calls in flight together");
    // Six calls of 1 s each: about one delay, far from the 6 s they would take in a row.
    assert!(took < Duration::from_millis(3_500), "{took:?}");
    eprintln!(
        "tick with six 1 s calls, 6 at once: {} ms",
        record.duration_ms
    );

    let fake = LcwFake::start();
    fake.respond(
        "/overview",
        Reply::json(200, fixture("overview.json")).delayed(Duration::from_millis(300)),
    );
    fake.respond(
        "/coins/list",
        Reply::json(200, fixture("coins_list.json")).delayed(Duration::from_millis(300)),
    );
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_concurrent_requests", "2".into()));
    block_on(cycle::run(&NativeHost::new(&variables)));
    assert_eq!(
        fake.max_in_flight(),
        2,
        "never more than max_concurrent_requests"
    );
}

#[test]
fn a_hanging_lcw_cannot_hold_the_tick_past_its_deadline() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    for path in TICK_PATHS {
        fake.respond(path, Reply::json(200, "{}").delayed(30 * S));
    }
    let mut variables = variables_for(&fake, &influx);
    variables.push(("cycle_deadline_ms", "3000".into()));
    let kv = SharedKv::default();

    let started = Instant::now();
    let (record, _) = tick_at(&variables, &kv, Duration::ZERO);
    let took = started.elapsed();

    assert_eq!(record.outcome, Outcome::Error);
    assert!(
        record.duration_ms <= 3_000 + 500,
        "{} ms",
        record.duration_ms
    );
    assert!(took < 5 * S, "{took:?}");
    assert!(
        record
            .errors
            .iter()
            .all(|e| e.contains("timed out") || e.contains("deadline")),
        "{:?}",
        record.errors
    );
    let history = support::collector_state(&kv).history;
    assert_eq!(history.recent.len(), 1, "the outcome is recorded");
}

#[test]
fn of_two_overlapping_ticks_one_runs_and_one_skips() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/overview",
        Reply::json(200, fixture("overview.json")).delayed(S),
    );
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();

    let running = {
        let (variables, kv) = (variables.clone(), kv.clone());
        std::thread::spawn(move || block_on(cycle::run(&NativeHost::with_kv(&variables, kv))))
    };
    std::thread::sleep(Duration::from_millis(400));
    let calls = fake.seen().len();
    let (overlapping, host) = tick_at(&variables, &kv, Duration::ZERO);
    let first = running.join().unwrap();

    assert_eq!(overlapping.outcome, Outcome::SkippedOverlap);
    assert_eq!(fake.seen().len(), calls, "the skipped tick made no call");
    assert!(host.log_text().contains("holds the lease"));
    assert_eq!(first.outcome, Outcome::Success, "{:?}", first.errors);
    let lease: lease::Lease =
        serde_json::from_slice(&kv.lock().unwrap()[state::LEASE_KEY]).unwrap();
    assert_eq!(lease.owner, "", "the lease is released at the end");
}

#[test]
fn an_expired_lease_is_taken_over() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let kv = SharedKv::default();
    let dead = lease::Lease {
        owner: "a-tick-that-died".into(),
        expires_at_ms: 1,
        ..lease::Lease::default()
    };
    kv.lock()
        .unwrap()
        .insert(state::LEASE_KEY.into(), serde_json::to_vec(&dead).unwrap());
    let (record, _) = tick_at(&variables_for(&fake, &influx), &kv, Duration::ZERO);
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
}

/// A synthetic top-200 list from the documented meta answer, served page by page.
fn two_hundred_coins() -> Vec<Value> {
    let template = fixture_json("coins_contract.json");
    (0..200)
        .map(|i| {
            let mut coin = template.clone();
            coin["code"] = json!(format!("T{i:03}"));
            coin["name"] = json!(format!("Token {i}, \"quoted\""));
            coin["rank"] = json!(i + 1);
            coin["rate"] = json!(1.0 / (f64::from(i) + 7.0));
            coin["volume"] = json!(1_000_000.5 * f64::from(i + 1));
            coin["delta"]["day"] = json!(1.0 + f64::from(i) / 1000.0);
            if i % 3 == 0 {
                coin["liquidity"] = Value::Null;
            }
            coin
        })
        .collect()
}

fn serve_pages(fake: &LcwFake, coins: Vec<Value>) {
    fake.respond_with("/coins/list", move |seen: &Seen| {
        let body = seen.json();
        let offset = body["offset"].as_u64().unwrap() as usize;
        let limit = body["limit"].as_u64().unwrap() as usize;
        let page: Vec<&Value> = coins.iter().skip(offset).take(limit).collect();
        Reply::json(200, serde_json::to_vec(&page).unwrap())
    });
}

#[test]
fn a_200_coin_tick_lands_every_value_exactly() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let coins = two_hundred_coins();
    serve_pages(&fake, coins.clone());
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_coins_per_fetch", "200".into()));
    let kv = SharedKv::default();

    let (record, _) = tick_at(&variables, &kv, Duration::ZERO);

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(
        record.points_written["coins"], 203,
        "200 listed + the 3 tracked"
    );
    let rows = influx.rows("cryptocurrency_data");
    assert_eq!(rows.len(), 203);
    let mut expected = coins;
    expected.extend(
        fixture_json("coins_map.json")
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    for coin in &expected {
        let row = rows
            .iter()
            .find(|r| r["code"] == coin["code"])
            .unwrap_or_else(|| panic!("{}", coin["code"]));
        for (field, key) in [
            ("rate", "rate"),
            ("volume", "volume"),
            ("market_cap", "cap"),
            ("liquidity", "liquidity"),
            ("circulating_supply", "circulatingSupply"),
            ("all_time_high_usd", "allTimeHighUSD"),
        ] {
            match coin.get(key) {
                None | Some(Value::Null) => {
                    assert!(!row.contains_key(field), "{field} of {}", coin["code"])
                }
                Some(v) => assert_eq!(
                    row[field].as_f64().unwrap().to_bits(),
                    v.as_f64().unwrap().to_bits(),
                    "{field} of {}",
                    coin["code"]
                ),
            }
        }
        assert_eq!(row["delta_24h"].as_f64(), coin["delta"]["day"].as_f64());
        if coin.get("name").is_some() {
            assert_eq!(row["name"], coin["name"]);
            assert_eq!(row["rank"], coin["rank"]);
        }
    }
    assert_eq!(influx.rows("market_overview").len(), 1);
    assert_eq!(influx.rows("exchange_data").len(), 1);
}

/// KV round trips of one tick, for a store that has seen `warm_up` ticks before.
fn kv_round_trips(max_coins: &str) -> (usize, usize) {
    let fake = LcwFake::start();
    let influx = Influx::start();
    serve_pages(
        &fake,
        two_hundred_coins().into_iter().cycle().take(1000).collect(),
    );
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_coins_per_fetch", max_coins.into()));
    let kv = SharedKv::default();
    tick_at(&variables, &kv, Duration::ZERO);
    let (_, host) = tick_at(&variables, &kv, 61 * S);
    (
        host.calls.kv_reads.load(Ordering::SeqCst),
        host.calls.kv_writes.load(Ordering::SeqCst),
    )
}

#[test]
fn a_ticks_kv_round_trips_do_not_grow_with_the_number_of_coins() {
    let hundred = kv_round_trips("100");
    let thousand = kv_round_trips("1000");
    assert_eq!(
        hundred, thousand,
        "(reads, writes) with 100 and with 1000 coins"
    );
    eprintln!(
        "KV round trips of a tick: {} reads, {} writes",
        hundred.0, hundred.1
    );
    // Lease get/increment/set, state get, state set, lease set/increment: no backfill
    // document, no cache segment (coins and overview are not cached, the exchanges' body is
    // inline in the index).
    assert!(hundred.0 + hundred.1 <= 7, "{hundred:?}");
}

/// A steady-state cron tick (`run_scheduled`): 9 store round trips, the slot ticket and the
/// deletion of the ticket 10 slots back included; every 10 minutes (`ADOPT_EVERY`) one listing
/// of the store's keys more, for the spool, the cache and orphaned tickets at once: never more
/// than 10. (Before, a tick in 10 listed and deleted the old tickets itself, and the spool and
/// the cache each listed the keys: 21.)
#[test]
fn a_steady_cron_tick_makes_at_most_ten_store_round_trips() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();
    let start = NativeHost::new(&variables);
    let first_s =
        u64::try_from(lcw_fetcher::host::Clock::unix_millis(&start) / 60_000 * 60).unwrap() + 60;
    let mut trips = Vec::new();
    for n in 0..25u64 {
        let host = NativeHost::with_kv(&variables, kv.clone());
        host.advance(Duration::from_secs(60 * (n + 1)));
        let slot = first_s + 60 * n;
        let record = block_on(cycle::run_scheduled(&host, slot));
        assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
        if n >= 12 {
            trips.push(
                host.calls.kv_reads.load(Ordering::SeqCst)
                    + host.calls.kv_writes.load(Ordering::SeqCst),
            );
        }
    }
    eprintln!("store round trips of steady cron ticks: {trips:?}");
    assert!(trips.iter().all(|&t| t <= 10), "{trips:?}");
    assert!(trips.iter().filter(|&&t| t == 9).count() >= 10, "{trips:?}");
}

/// Small bodies travel inline in the index (within the budget): no segment written or read;
/// a larger one, or one past the budget, goes into the tick's segment; an inline body that
/// does not read is a miss, not a crash.
#[test]
fn small_bodies_are_kept_inline_within_the_budget() {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let segments = |host: &NativeHost| {
        host.kv
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(cache::SEGMENT_PREFIX))
            .count()
    };
    let small = br#"[{"code":"binance","volume":1}]"#.to_vec();
    // Incompressible: over the inline limit once gzip and base64 are done.
    let mut state = 7u64;
    let large: Vec<u8> = (0..8 * 1024)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            b'a' + ((state >> 33) % 26) as u8
        })
        .collect();
    let mut tick = TickCache::new(cache::Index::default(), ttls(), 10, "t1", 1_000)
        .inline_up_to(cache::INLINE_BUDGET);
    assert!(tick.store(
        Endpoint::ExchangesList,
        "small".into(),
        small.clone(),
        1_000,
        1_000
    ));
    assert!(tick.store(
        Endpoint::ExchangesList,
        "large".into(),
        large.clone(),
        1_000,
        1_000
    ));
    let (index, saved) = block_on(tick.finish(&host));
    saved.unwrap();
    assert!(!index.entries["small"].inline.is_empty());
    assert!(index.entries["large"].inline.is_empty());
    assert_eq!(segments(&host), 1, "the large body's segment only");

    let reads = host.calls.kv_reads.load(Ordering::SeqCst);
    let mut tick = TickCache::new(index.clone(), ttls(), 10, "t2", 2_000);
    let hit = block_on(tick.lookup(&host, "small", 2_000)).unwrap();
    assert_eq!((hit.body, hit.fetched_at_ms), (small, 1_000));
    assert_eq!(
        host.calls.kv_reads.load(Ordering::SeqCst),
        reads,
        "no store read"
    );
    assert!(block_on(tick.lookup(&host, "large", 2_000)).unwrap().body == large);

    let mut broken = index;
    broken.entries.get_mut("small").unwrap().inline = "not base64!".into();
    let mut tick = TickCache::new(broken, ttls(), 10, "t3", 2_000);
    assert!(block_on(tick.lookup(&host, "small", 2_000)).is_none());

    // The budget: 8 KB of inline bodies at most, the rest in a segment.
    let mut tick = TickCache::new(cache::Index::default(), ttls(), 100, "t4", 1_000)
        .inline_up_to(cache::INLINE_BUDGET);
    for n in 0..20 {
        let body: Vec<u8> = large[n * 300..n * 300 + 1_000].to_vec();
        tick.store(Endpoint::ExchangesList, format!("k{n}"), body, 1_000, 1_000);
    }
    let (index, saved) = block_on(tick.finish(&host));
    saved.unwrap();
    let inline: usize = index.entries.values().map(|e| e.inline.len()).sum();
    assert!(inline <= cache::INLINE_BUDGET, "{inline}");
    assert!(index.entries.values().any(|e| !e.segment.is_empty()));
}
