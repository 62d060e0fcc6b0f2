//! Counters, totals and sums loaded from stored documents (of another release, or from a
//! corrupted or hostile store) at their largest: a tick of the real cycle and the API routes
//! must neither panic (tests run in debug, where `u64::MAX + 1` panics) nor wrap (a Prometheus
//! counter going backwards). Each test failed on the code it was written against.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::backfill::{Range, Target};
use lcw_fetcher::cycle::{self, CollectorState};
use lcw_fetcher::host::Clock as _;
use lcw_fetcher::lease::Lease;
use lcw_fetcher::resilience::{BreakerState, Bucket};
use lcw_fetcher::routes::{self, LiveCheck, StatusChecks};
use lcw_fetcher::sink::LastWrite;
use lcw_fetcher::sink::delivery::{Quarantine, QuarantinedLine};
use lcw_fetcher::sink::spool::{SEGMENT_PREFIX, SegmentMeta};
use lcw_fetcher::state::{
    LEASE_KEY, OVERLAPS_KEY, QUARANTINE_KEY, STATE_KEY, STATUS_CHECKS_KEY, UNREADABLE_COUNT_KEY,
};
use lcw_fetcher::telemetry::history::{CycleRecord, Outcome, Overlaps};
use lcw_fetcher::telemetry::{Histogram, OPERATION_BUCKETS, op};
use serde_json::Value;
use support::promtool_check_metrics;
use support::sim::{Profile, SimHost, World};

const MAX: u64 = u64::MAX;
/// `u64::MAX` as the exposition format and JSON floats show it.
const MAX_F: f64 = u64::MAX as f64;

fn put<T: serde::Serialize>(world: &World, key: &str, value: &T) {
    world
        .kv
        .borrow_mut()
        .insert(key.into(), serde_json::to_vec(value).unwrap());
}

fn stored_state(world: &World) -> CollectorState {
    let raw = world.kv.borrow()[STATE_KEY].clone();
    serde_json::from_slice(&raw).unwrap_or_else(|e| {
        panic!(
            "the state document stays readable ({e}): {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn tick(world: &World, at: Duration) -> CycleRecord {
    world.clock.advance_to(at);
    let host = SimHost::new(world, &support::sim::our_variables());
    world.clock.run(cycle::run(&host))
}

fn get(world: &World, uri: &str) -> http::Response<Vec<u8>> {
    let host = SimHost::new(world, &support::sim::our_variables());
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Vec::new())
        .unwrap();
    world.clock.run(routes::handle(&host, &request))
}

fn text(response: &http::Response<Vec<u8>>) -> String {
    String::from_utf8(response.body().clone()).unwrap()
}

/// Every bucket, the count and the sum at their largest (a sum of two such overflows `f64` too).
fn max_histogram(h: &mut Histogram) {
    h.counts = vec![MAX; OPERATION_BUCKETS.len() + 1];
    h.count = MAX;
    h.sum = f64::MAX;
}

/// The samples of a family in exposition text: (name with labels, value).
fn samples(text: &str, family: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| {
            name.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
        .collect()
}

/// A document a real tick wrote (so that its maps hold the keys ticks use), with every counter,
/// total and sum at its largest, and more keys besides.
fn maxed_out(mut doc: CollectorState, now_ms: i64) -> CollectorState {
    let t = &mut doc.telemetry;
    for name in [
        op::STATUS,
        op::CREDITS,
        op::COINS_LIST,
        op::COINS_MAP,
        op::OVERVIEW,
        op::EXCHANGES,
        op::INFLUX_WRITE,
        op::SPOOL_REPLAY,
        op::CACHE_LOAD,
        op::CACHE_SAVE,
        op::FETCH_CYCLE,
    ] {
        t.operations.entry(name.to_owned()).or_default();
    }
    for stats in t.operations.values_mut() {
        stats.count = MAX;
        stats.successes = MAX;
        stats.errors = MAX;
        stats.min_ms = Some(0);
        stats.max_ms = MAX;
        stats.sum_ms = MAX;
        stats.slow = MAX;
        stats.critical = MAX;
        for status in ["success", "error"] {
            max_histogram(stats.by_status.entry(status.to_owned()).or_default());
        }
    }
    for endpoint in [
        "/status",
        "/credits",
        "/coins/list",
        "/coins/map",
        "/overview",
        "/exchanges/list",
    ] {
        let calls = t.api_calls.entry(endpoint.to_owned()).or_default();
        for status in ["200", "429", "503", "timeout", "hedge_dropped"] {
            calls.insert(status.to_owned(), MAX);
        }
        t.api_response.entry(endpoint.to_owned()).or_default();
    }
    for calls in t.api_calls.values_mut() {
        calls.values_mut().for_each(|n| *n = MAX);
    }
    t.api_response.values_mut().for_each(max_histogram);
    t.hedges = MAX;
    t.hedges_won = MAX;
    for status in ["204", "503", "timeout"] {
        t.database_operations.insert(status.to_owned(), MAX);
    }
    t.database_operations.values_mut().for_each(|n| *n = MAX);
    max_histogram(&mut t.database_response);
    max_histogram(&mut t.cycle_duration);
    t.cycle_duration.counts.truncate(3); // a document with fewer buckets than bounds
    t.last_tick_duration_ms = Some(MAX);

    let h = &mut doc.history;
    for outcome in Outcome::ALL {
        h.cycles_by_outcome.insert(outcome, MAX);
    }
    for data_type in ["coins", "overview", "exchanges"] {
        h.points_written_by_type.insert(data_type.to_owned(), MAX);
    }
    h.records_skipped
        .entry("/coins/list".to_owned())
        .or_default()
        .insert("unreadable".to_owned(), MAX);
    // Records whose written points sum past the largest count, and no summaries: a document
    // of the first release, whose records are summed into summaries.
    h.summaries.clear();
    for record in &mut h.recent {
        record.duration_ms = MAX;
        record.errors_omitted = MAX;
        for data_type in ["coins", "overview", "exchanges"] {
            record.points_written.insert(data_type.to_owned(), MAX);
        }
    }

    let c = &mut doc.cache.stats;
    (c.hits, c.misses, c.evictions, c.expirations) = (MAX, MAX, MAX, MAX);
    // Every cached answer expired: each one counts an expiration.
    for entry in doc.cache.entries.values_mut() {
        entry.expires_at_ms = 0;
    }

    let s = &mut doc.sink.counters;
    s.points_written = MAX;
    s.batches_written = MAX;
    s.bytes_raw = MAX;
    s.bytes_wire = MAX;
    s.requests = MAX;
    s.retries = MAX;
    s.quarantined = MAX;
    s.spooled = MAX;
    s.replayed = MAX;
    s.evicted = MAX;
    s.dropped_retention = MAX;
    // Two segments the index claims at the largest size and count (their sum overflows), whose
    // values are gone: the replay counts their points as evicted.
    for n in 0..2 {
        doc.sink.spool.segments.push_back(SegmentMeta {
            key: format!("{SEGMENT_PREFIX}gone-{n}"),
            seq: None,
            points: MAX,
            bytes: MAX,
            created_at_ms: now_ms,
            first_time: now_ms,
            last_time: now_ms,
        });
    }

    let b = &mut doc.backfill;
    b.queued_total = MAX;
    b.filled = MAX;
    b.abandoned = MAX;
    b.points = MAX;
    // Not initialised yet: the tick queues the initial history (one more queued).
    b.initialized = false;
    b.queue.push_front(Range {
        target: Target::Overview,
        from_ms: now_ms - 3_600_000,
        to_ms: now_ms - 3_000_000,
        attempts: u32::MAX,
    });
    b.queue.push_front(Range {
        target: Target::Overview,
        from_ms: now_ms + 3_600_000, // from the future: abandoned
        to_ms: now_ms + 4_000_000,
        attempts: 0,
    });
    doc
}

/// Every counter the routes show at its largest: the figures stay there, `/metrics` passes
/// promtool, `/stats`, `/stats?format=text`, `/stats/cache` and `/status` answer. Returns
/// `/stats`, and the counter samples of `/metrics` at their largest.
fn assert_routes_sane(world: &World) -> (Value, BTreeSet<String>) {
    let response = get(world, "/metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = text(&response);
    promtool_check_metrics(&metrics).unwrap_or_else(|e| panic!("promtool: {e}\n{metrics}"));
    for family in [
        "lcw_api_hedges_total",
        "lcw_api_hedges_won_total",
        "lcw_spool_evicted_points_total",
        "lcw_backfill_points_total",
        "lcw_quarantined_points_total",
    ] {
        assert_eq!(
            samples(&metrics, family),
            [(family.to_owned(), MAX_F)],
            "{family} stays at its largest"
        );
    }
    let mut at_max = BTreeSet::new();
    for family in [
        "lcw_api_calls_total",
        "lcw_cache_operations_total",
        "lcw_database_operations_total",
        "lcw_fetch_cycles_total",
        "lcw_data_points_stored_total",
        "lcw_operations_total",
        "lcw_api_response_duration_seconds_count",
        "lcw_operation_duration_seconds_count",
    ] {
        let found = samples(&metrics, family);
        assert!(!found.is_empty(), "{family} has samples");
        at_max.extend(
            found
                .into_iter()
                .filter(|(_, value)| *value == MAX_F)
                .map(|(name, _)| name),
        );
    }
    for family in [
        "lcw_api_response_duration_seconds_sum",
        "lcw_operation_duration_seconds_sum",
    ] {
        for (name, value) in samples(&metrics, family) {
            assert!(value.is_finite() && value > 0.0, "{name} = {value}");
        }
    }

    let response = get(world, "/stats");
    assert_eq!(response.status(), StatusCode::OK);
    let stats: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(stats["hedges"], MAX);
    assert_eq!(stats["hedges_won"], MAX);
    assert_eq!(stats["cycles_by_outcome"]["skipped_overlap"], MAX);
    assert_eq!(stats["backfill"]["queued"], MAX);
    assert_eq!(stats["backfill"]["abandoned"], MAX);
    for operation in stats["operations"].as_array().unwrap() {
        assert_eq!(operation["count"], MAX, "{operation}");
        let p99 = operation["p99_ms"].as_u64().unwrap();
        assert!(p99 <= 60_000, "{operation}");
    }
    let rate = stats["cache"]["hit_rate"].as_f64().unwrap();
    assert!((rate - 0.5).abs() < 1e-9, "hit rate {rate}");
    for summary in stats["cycle_summaries"].as_array().unwrap() {
        assert!(summary["points_written"].as_u64().is_some(), "{summary}");
    }

    for uri in ["/stats?format=text", "/stats/cache", "/status", "/"] {
        let response = get(world, uri);
        assert!(
            response.status() == StatusCode::OK
                || response.status() == StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {} {}",
            response.status(),
            text(&response)
        );
    }
    (stats, at_max)
}

#[test]
fn stored_counters_at_their_largest_neither_panic_a_tick_nor_wrap() {
    let world = World::new(Profile::CALM, 41);
    let mut at = Duration::from_secs(1_000);
    tick(&world, at);
    let now_ms = SimHost::new(&world, &[]).unix_millis();
    put(&world, STATE_KEY, &maxed_out(stored_state(&world), now_ms));
    put(
        &world,
        OVERLAPS_KEY,
        &Overlaps {
            count: MAX,
            last_at_ms: Some(now_ms),
            lease_failures: MAX,
            last_lease_failure_at_ms: Some(now_ms),
        },
    );
    // The routes read the document as stored, then after ticks that add to every counter.
    let stored = stored_state(&world);
    let (stats, at_max) = assert_routes_sane(&world);
    assert_eq!(stats["state_bytes"], MAX);
    assert_eq!(stats["sink"]["spool_points"], MAX);
    assert!(at_max.len() > 50, "{at_max:?}");
    for _ in 0..3 {
        at += Duration::from_secs(61);
        tick(&world, at);
    }
    let doc = stored_state(&world);
    let t = &doc.telemetry;
    assert_eq!((t.hedges, t.hedges_won), (MAX, MAX));
    for (name, stats) in &t.operations {
        assert_eq!((stats.count, stats.sum_ms), (MAX, MAX), "{name}");
        for h in stats.by_status.values() {
            assert_eq!(h.count, MAX, "{name}");
            assert!(h.sum.is_finite(), "{name}");
        }
    }
    for (endpoint, calls) in &stored.telemetry.api_calls {
        for status in calls.keys() {
            assert_eq!(t.api_calls[endpoint][status], MAX, "{endpoint} {status}");
        }
    }
    for endpoint in stored.telemetry.api_response.keys() {
        assert_eq!(t.api_response[endpoint].count, MAX, "{endpoint}");
    }
    let c = doc.cache.stats;
    assert_eq!((c.hits, c.misses, c.expirations), (MAX, MAX, MAX));
    let s = &doc.sink.counters;
    assert_eq!(
        (s.points_written, s.requests, s.bytes_wire, s.evicted),
        (MAX, MAX, MAX, MAX)
    );
    assert!(
        doc.history.cycles_by_outcome.values().all(|&n| n == MAX),
        "{:?}",
        doc.history.cycles_by_outcome
    );
    let b = &doc.backfill;
    assert_eq!((b.queued_total, b.filled, b.abandoned), (MAX, MAX, MAX));
    let (_, still_at_max) = assert_routes_sane(&world);
    let fell: Vec<&String> = at_max.difference(&still_at_max).collect();
    assert!(fell.is_empty(), "counters that went backwards: {fell:?}");
}

/// A tick that finds the lease held counts an overlap in its own document, at its largest.
#[test]
fn an_overlap_count_at_its_largest_does_not_panic_a_skipped_tick() {
    let world = World::new(Profile::CALM, 42);
    world.clock.advance_to(Duration::from_secs(1_000));
    let now_ms = SimHost::new(&world, &[]).unix_millis();
    put(
        &world,
        LEASE_KEY,
        &Lease {
            generation: 0,
            owner: "another tick".into(),
            expires_at_ms: now_ms + 600_000,
            changed_at_ms: now_ms,
            ..Lease::default()
        },
    );
    put(
        &world,
        OVERLAPS_KEY,
        &Overlaps {
            count: MAX,
            last_at_ms: None,
            ..Overlaps::default()
        },
    );
    let record = tick(&world, Duration::from_secs(1_000));
    assert_eq!(record.outcome, Outcome::SkippedOverlap);
    let raw = world.kv.borrow()[OVERLAPS_KEY].clone();
    let overlaps: Overlaps = serde_json::from_slice(&raw).unwrap();
    assert_eq!(overlaps.count, MAX);
}

/// On a store without atomics the unreadable-documents count is text, read, added to and
/// written back: at its largest, setting an unreadable document aside must not panic.
#[test]
fn an_unreadable_count_at_its_largest_does_not_panic_setting_a_document_aside() {
    let world = World::new(Profile::CALM, 43);
    world.atomics.set(false);
    world
        .kv
        .borrow_mut()
        .insert(UNREADABLE_COUNT_KEY.into(), MAX.to_string().into_bytes());
    world
        .kv
        .borrow_mut()
        .insert(STATE_KEY.into(), b"{ broken".to_vec());
    tick(&world, Duration::from_secs(1_000));
    stored_state(&world);
    let count = world.kv.borrow()[UNREADABLE_COUNT_KEY].clone();
    assert_eq!(String::from_utf8_lossy(&count).trim(), MAX.to_string());
    let stats: Value = serde_json::from_slice(get(&world, "/stats").body()).unwrap();
    assert_eq!(stats["unreadable_documents"], MAX);
}

fn tick_with(world: &World, at: Duration, extra: &[(&'static str, &'static str)]) -> CycleRecord {
    world.clock.advance_to(at);
    let mut variables = support::sim::our_variables();
    variables.extend_from_slice(extra);
    let host = SimHost::new(world, &variables);
    world.clock.run(cycle::run(&host))
}

/// Times of stored documents at the far past: "how long ago" must not overflow in a tick (the
/// breaker's probe, the rate limiter's refill, the alert cool-down, cache expiry) or in the
/// routes (`/status`'s checks and last write, `/`'s last tick, the last success's age).
#[test]
fn stored_times_at_the_far_past_neither_panic_a_tick_nor_the_routes() {
    let world = World::new(Profile::CALM, 44);
    let mut at = Duration::from_secs(1_000);
    tick(&world, at);
    let mut doc = stored_state(&world);
    doc.resilience.breaker = BreakerState::HalfOpen {
        probe_started_ms: i64::MIN,
    };
    doc.resilience.bucket = Some(Bucket {
        tokens: 0.0,
        updated_ms: i64::MIN,
    });
    for name in [
        op::FETCH_CYCLE,
        op::OVERVIEW,
        op::COINS_LIST,
        op::INFLUX_WRITE,
    ] {
        doc.telemetry
            .last_alert_ms
            .insert(name.to_owned(), i64::MIN);
    }
    for entry in doc.cache.entries.values_mut() {
        entry.expires_at_ms = i64::MIN;
    }
    doc.history.last_success_at_ms = Some(i64::MIN);
    for record in &mut doc.history.recent {
        record.started_at_ms = i64::MIN;
    }
    doc.sink.last_write = Some(LastWrite {
        at_ms: i64::MIN,
        ok: true,
        error: None,
    });
    put(&world, STATE_KEY, &doc);
    let far_past = LiveCheck {
        checked_at_ms: i64::MIN,
        ok: true,
        error: None,
    };
    let checks = StatusChecks {
        attempted_at_ms: Some(i64::MIN),
        lcw: Some(far_past.clone()),
        influx: Some(far_past),
    };
    put(&world, STATUS_CHECKS_KEY, &checks);
    let routes = |world: &World| {
        for uri in ["/status", "/", "/stats", "/stats?format=text", "/metrics"] {
            let response = get(world, uri);
            assert!(
                response.status() == StatusCode::OK
                    || response.status() == StatusCode::SERVICE_UNAVAILABLE,
                "{uri}: {} {}",
                response.status(),
                text(&response)
            );
        }
    };
    routes(&world);
    // A check just attempted is not made again: `/status` shows the stored ones.
    let now_ms = SimHost::new(&world, &[]).unix_millis();
    put(
        &world,
        STATUS_CHECKS_KEY,
        &StatusChecks {
            attempted_at_ms: Some(now_ms),
            ..checks.clone()
        },
    );
    let response = get(&world, "/status");
    assert!(!text(&response).is_empty());
    put(&world, STATE_KEY, &doc);
    at += Duration::from_secs(61);
    // Every operation slower than a second raises an alert, whose cool-down is measured from
    // the last one.
    tick_with(
        &world,
        at,
        &[("alert_warning_s", "1"), ("alert_critical_s", "2")],
    );
    routes(&world);
}

/// A breaker counting failures at the largest count, then a failure: it opens, no overflow.
#[test]
fn a_failure_count_at_its_largest_does_not_panic_the_breaker() {
    let world = World::new(Profile::CALM, 45);
    let at = Duration::from_secs(1_000);
    tick(&world, at);
    let mut doc = stored_state(&world);
    doc.resilience.breaker = BreakerState::Closed {
        consecutive_failures: u32::MAX,
    };
    put(&world, STATE_KEY, &doc);
    world.lcw_outage.set(true);
    tick(&world, at + Duration::from_secs(61));
    assert!(matches!(
        stored_state(&world).resilience.breaker,
        BreakerState::Open { .. }
    ));
}

/// `POST /quarantine/retry` adds the lines InfluxDB took to the stored count of points written.
#[test]
fn a_quarantine_retry_onto_a_count_at_its_largest_does_not_panic() {
    let world = World::new(Profile::CALM, 46);
    let at = Duration::from_secs(1_000);
    tick(&world, at);
    let mut doc = stored_state(&world);
    doc.sink.counters.points_written = MAX;
    put(&world, STATE_KEY, &doc);
    let now_ms = SimHost::new(&world, &[]).unix_millis();
    put(
        &world,
        QUARANTINE_KEY,
        &Quarantine {
            total: MAX,
            recent: [QuarantinedLine {
                at_ms: now_ms,
                line: format!("lcw_overview cap=1 {}", now_ms * 1_000_000),
                message: "refused once".into(),
            }]
            .into(),
        },
    );
    let mut variables = support::sim::our_variables();
    variables.push(("admin_token", "admin-secret"));
    let host = SimHost::new(&world, &variables);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/quarantine/retry")
        .header("authorization", "Bearer admin-secret")
        .body(Vec::new())
        .unwrap();
    let response = world.clock.run(routes::handle(&host, &request));
    assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
    assert_eq!(stored_state(&world).sink.counters.points_written, MAX);
}

/// A spool whose index and segment headers claim the largest counts: new points join it while
/// InfluxDB asks for a pause, the oldest segments are evicted (their points summed), segments no
/// index lists are adopted or counted lost, and the cache evicts answers.
#[test]
fn a_spool_at_its_largest_neither_panics_a_tick_nor_wraps_its_counts() {
    let world = World::new(Profile::CALM, 47);
    let at = Duration::from_secs(1_000);
    tick(&world, at);
    let mut doc = stored_state(&world);
    let now_ms = SimHost::new(&world, &[]).unix_millis();
    doc.sink.counters.evicted = MAX;
    doc.sink.counters.spooled = MAX;
    // Within the longest pause honoured (5 min): a later end is a clock ahead's, and is over.
    doc.sink.not_before_ms = Some(now_ms + 300_000);
    doc.sink.spool.adopted_at_ms = 0;
    for n in 0..2 {
        doc.sink.spool.segments.push_back(SegmentMeta {
            key: format!("{SEGMENT_PREFIX}0-claimed-{n}"),
            seq: None,
            points: MAX,
            bytes: MAX,
            created_at_ms: now_ms,
            first_time: now_ms,
            last_time: now_ms,
        });
    }
    doc.cache.stats.evictions = MAX;
    put(&world, STATE_KEY, &doc);
    // Unreadable segments no index lists, whose headers claim the largest count.
    for n in 0..2 {
        let mut value = b"LCWSPOOL1 ".to_vec();
        value.extend(format!(r#"{{"points":{MAX}}}"#).as_bytes());
        value.extend(b"\nnot gzip");
        world
            .kv
            .borrow_mut()
            .insert(format!("{SEGMENT_PREFIX}1-unlisted-{n}"), value);
    }
    let record = tick_with(
        &world,
        at + Duration::from_secs(61),
        &[("cache_max_entries", "1")],
    );
    assert!(record.points_spooled > 0, "{record:?}");
    let mut doc = stored_state(&world);
    let c = &doc.sink.counters;
    assert_eq!((c.evicted, c.spooled), (MAX, MAX));
    assert_eq!(doc.cache.stats.evictions, MAX);
    assert!(
        doc.sink.spool.points() < MAX,
        "the claimed segments were evicted"
    );
    // A small newest segment claiming the largest count: the next points are not added to it.
    let tail = doc
        .sink
        .spool
        .segments
        .back_mut()
        .expect("points were spooled");
    tail.points = MAX;
    tail.bytes = 0;
    put(&world, STATE_KEY, &doc);
    let record = tick(&world, at + Duration::from_secs(122));
    assert!(record.points_spooled > 0, "{record:?}");
    assert_eq!(stored_state(&world).sink.counters.evicted, MAX);
}

/// A line InfluxDB refuses for good joins a quarantine whose stored total is at its largest.
#[test]
fn a_quarantine_total_at_its_largest_does_not_panic_a_refusal() {
    use lcw_fetcher::config::{Settings, SinkKind};
    use lcw_fetcher::host::KeyValue as _;
    use lcw_fetcher::sink::delivery::SinkState;
    use support::{LcwFake, NativeHost, Reply, block_on};

    let fake = LcwFake::start();
    fake.respond_with("/api/v2/write", |_| {
        Reply::json(400, r#"{"code":"invalid","message":"unable to parse"}"#)
    });
    let settings = Settings::from_pairs(&[
        ("lcw_api_key", "k"),
        ("influx_org", "o"),
        ("influx_token", "secret-token-9"),
        ("influx_url", &fake.base_url),
        ("influx_gzip", "false"),
    ])
    .unwrap()
    .influx;
    let host = NativeHost::new(&[("x", "y")]);
    block_on(async {
        let quarantine = Quarantine {
            total: MAX,
            recent: Default::default(),
        };
        host.kv_set(QUARANTINE_KEY, &serde_json::to_vec(&quarantine).unwrap())
            .await
            .unwrap();
        let mut state = SinkState::default();
        state.counters.quarantined = MAX;
        let mut sink = crate::support::courier(
            &host,
            SinkKind::Influxdb,
            &settings,
            host.monotonic() + Duration::from_secs(20),
            state,
        );
        sink.deliver(&crate::support::points(
            "lcw_overview cap=1 1700000000000000000\n",
        ))
        .await;
        let (delivery, state) = sink.finish().await;
        assert_eq!(delivery.quarantined, 1, "{delivery:?}");
        assert_eq!(state.counters.quarantined, MAX);
        let raw = host.kv_get(QUARANTINE_KEY).await.unwrap().unwrap();
        let quarantine: Quarantine = serde_json::from_slice(&raw).unwrap();
        assert_eq!(quarantine.total, MAX);
        assert_eq!(quarantine.recent.len(), 1);
    });
}
