//! The bounds of backfill, the slot ticket and the admin route `POST /backfill`. Each
//! test states a guarantee the README gives (or a bound the state needs) and FAILS on the code
//! it was written against; see the doc comment of each for the root cause.

use crate::support;

use std::sync::{Arc, Mutex};

use http::Method;
use lcw_fetcher::backfill::{self, BackfillState, Target};
use lcw_fetcher::config::Settings;
use lcw_fetcher::cycle;
use lcw_fetcher::lease;
use lcw_fetcher::schema;
use lcw_fetcher::sink::line_protocol::{FieldValue, Point};
use lcw_fetcher::state;
use lcw_fetcher::telemetry::history::CycleRecord;
use serde_json::{Value, json};
use support::lcw_fake::API_KEY;
use support::native_host::{SharedKv, SharedSql};
use support::{LcwFake, NativeHost, Reply, block_on};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const FIVE_MINUTES: i64 = 300_000;

/// A tick on the embedded store (no InfluxDB), with backfill on: an hour of initial history.
fn variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("cycle_deadline_ms", "20000".to_owned()),
        ("initial_history_hours", "1".to_owned()),
        ("backfill_calls_per_tick", "5".to_owned()),
        ("admin_token", "admin-7".to_owned()),
    ]
}

fn tick(variables: &[(&'static str, String)], kv: &SharedKv, sql: &SharedSql) -> CycleRecord {
    let host = NativeHost::with_kv(variables, kv.clone()).with_sql(sql.clone());
    block_on(cycle::run(&host))
}

/// The backfill document a tick reads: in the state document since schema 3.
fn backfill_doc(kv: &SharedKv) -> BackfillState {
    let doc = support::collector_state(kv);
    if doc.schema >= lcw_fetcher::cycle::BACKFILL_IN_STATE {
        return doc.backfill;
    }
    kv.lock()
        .unwrap()
        .get(state::BACKFILL_KEY)
        .map(|raw| serde_json::from_slice(raw).unwrap())
        .unwrap_or_default()
}

fn grid(start: i64, end: i64) -> impl Iterator<Item = i64> {
    let first = (start + FIVE_MINUTES - 1) / FIVE_MINUTES * FIVE_MINUTES;
    (0..)
        .map(move |i| first + i * FIVE_MINUTES)
        .take_while(move |t| *t <= end)
}

/// `/coins/single/history` answered by `samples(start, end)`; the ranges asked are recorded.
fn serve_coin_history(
    fake: &LcwFake,
    samples: impl Fn(i64, i64) -> Vec<Value> + Send + Sync + 'static,
) -> Arc<Mutex<Vec<(String, i64, i64)>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    fake.respond_with("/coins/single/history", move |request| {
        let body = request.json();
        let (start, end) = (
            body["start"].as_i64().unwrap(),
            body["end"].as_i64().unwrap(),
        );
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        seen.lock().unwrap().push((code, start, end));
        Reply::json(
            200,
            serde_json::to_vec(&json!({ "history": samples(start, end) })).unwrap(),
        )
    });
    asked
}

fn settings(extra: &[(&'static str, &str)]) -> Settings {
    let mut variables: Vec<(&str, &str)> =
        vec![("lcw_api_key", "k"), ("initial_history_hours", "0")];
    variables.extend_from_slice(extra);
    block_on(Settings::load(&NativeHost::new(&variables))).expect("settings")
}

/// The points a tick makes for BTC (tracked) and the overview at `at`.
fn tick_points(at: i64) -> Vec<Point> {
    vec![
        Point {
            measurement: schema::COINS_MEASUREMENT.into(),
            tags: vec![
                ("code".into(), "BTC".to_owned()),
                ("currency".into(), "USD".to_owned()),
                ("name".into(), "Bitcoin".to_owned()),
            ],
            fields: vec![
                ("rate".into(), FieldValue::Float(1.0)),
                ("rank".into(), FieldValue::Integer(1)),
            ],
            timestamp_ms: at,
        },
        Point {
            measurement: schema::OVERVIEW_MEASUREMENT.into(),
            tags: vec![("currency".into(), "USD".to_owned())],
            fields: vec![("total_market_cap".into(), FieldValue::Float(1.0))],
            timestamp_ms: at,
        },
    ]
}

/// One tick under a clock that jumped far ahead (NTP step, a VM restored with a wrong RTC)
/// must not blind gap detection once the clock is right again: an hour-long outage afterwards
/// is a gap like any other.
///
/// Root cause: `observe` keeps `last_point_ms` as the running *maximum* of point times, so a
/// single future timestamp stays "the last point" until the real clock reaches it; the jump
/// also queues hundreds of day-long ranges in the future, evicting real ranges.
/// Fix: treat a point time earlier than `last_point_ms` (or later than `now` + a margin) as a
/// clock step: reset the family's last point to this time instead of keeping the maximum, and
/// never queue ranges beyond `now`.
#[test]
fn a_tick_under_a_far_future_clock_blinds_gap_detection_afterwards() {
    let settings = settings(&[]);
    let t = 1_800_000_000_000;
    let mut doc = BackfillState::default();
    backfill::observe(&mut doc, &settings, &tick_points(t), t);
    // Queued before the clock step: a real gap of the day before.
    doc.enqueue(&Target::Overview, t - 26 * HOUR_MS, t - 25 * HOUR_MS);
    let future = t + 10 * 365 * 24 * HOUR_MS;
    backfill::observe(&mut doc, &settings, &tick_points(future), future);
    // The clock is right again; then the collector is down for two hours.
    backfill::observe(
        &mut doc,
        &settings,
        &tick_points(t + MINUTE_MS),
        t + MINUTE_MS,
    );
    let after_outage = t + MINUTE_MS + 2 * HOUR_MS;
    backfill::observe(
        &mut doc,
        &settings,
        &tick_points(after_outage),
        after_outage,
    );

    let future_ranges = doc.queue.iter().filter(|r| r.to_ms > after_outage).count();
    let outage_queued = doc.queue.iter().any(|r| {
        r.target == Target::Coin { code: "BTC".into() }
            && r.from_ms <= t + MINUTE_MS + 1
            && r.to_ms >= after_outage - 1
    });
    assert!(
        outage_queued && future_ranges == 0,
        "the 2-hour outage after the clock step queued: {outage_queued}; ranges in the future: {future_ranges} of {}; ranges evicted: {}",
        doc.queue.len(),
        doc.abandoned
    );
}

/// A history answer is at most a day of 5-minute samples (README); a hostile or broken
/// answer with a sample every second must not become tens of thousands of points a call.
///
/// Root cause: `backfill::history` keeps every sample whose date lies in the range, and the
/// LCW client reads an answer of any size; nothing bounds points per range.
/// Fix: keep at most one sample per 5-minute slot (or cap samples per call at
/// `CHUNK_MS / 5 min + 1`, counting the rest as dropped), and cap the answer's body size.
#[test]
fn a_history_answer_with_a_sample_every_second_is_held_to_five_minute_samples() {
    let fake = LcwFake::start();
    serve_coin_history(&fake, |start, end| {
        (start..=end)
            .step_by(1_000)
            .map(|t| json!({"date": t, "rate": 1.0}))
            .collect()
    });
    let kv = SharedKv::default();
    let sql = support::native_host::memory_sql();

    tick(&variables(&fake), &kv, &sql);

    let doc = backfill_doc(&kv);
    let per_range = doc.points / doc.filled.max(1);
    assert!(
        per_range <= 13,
        "{} points from {} one-hour ranges ({per_range} a range, 13 at most at 5 minutes)",
        doc.points,
        doc.filled
    );
}

/// One malformed sample (a wrong type) in a history answer must not throw away the range's
/// good samples: the live lists skip a bad element and count it, history abandons the whole
/// range at once (a permanent parse error, no retry).
///
/// Root cause: `CoinHistory::history` is a `Vec<HistorySample>` parsed as a whole, so one bad
/// element fails the answer. Fix: parse history answers element by element like the list
/// pages (`lcw::page`), skipping and counting bad samples.
#[test]
fn one_malformed_history_sample_does_not_abandon_the_range() {
    let fake = LcwFake::start();
    serve_coin_history(&fake, |start, end| {
        let mut samples: Vec<Value> = grid(start, end)
            .map(|t| json!({"date": t, "rate": 100.0}))
            .collect();
        samples.push(json!({"date": end, "rate": {"value": 1}}));
        samples
    });
    let kv = SharedKv::default();
    let sql = support::native_host::memory_sql();

    let record = tick(&variables(&fake), &kv, &sql);

    let doc = backfill_doc(&kv);
    assert!(
        doc.abandoned == 0 && doc.points >= 2 * 11,
        "abandoned {} ranges, kept {} points; errors {:?}",
        doc.abandoned,
        doc.points,
        record.errors
    );
}

/// The same range asked twice (an admin retrying `POST /backfill`, `codes=BTC,BTC`, or a
/// detected gap inside an admin range) must be filled once: every duplicate is a paid call.
///
/// Root cause: `BackfillState::enqueue` appends without looking at what is queued, and
/// `backfill_request` does not dedupe `codes`. Fix: skip (or merge) a chunk already queued for
/// the same target and overlapping range; dedupe the codes of a request.
#[test]
fn the_same_admin_range_posted_twice_is_queued_once() {
    let fake = LcwFake::start();
    let kv = SharedKv::default();
    let api = NativeHost::with_kv(&variables(&fake), kv.clone());
    let now = lcw_fetcher::host::Clock::unix_millis(&api);
    let post = |query: &str| {
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(format!("/backfill?{query}"))
            .header("authorization", "Bearer admin-7")
            .body(Vec::new())
            .unwrap();
        block_on(lcw_fetcher::routes::handle(&api, &request))
    };
    let query = format!(
        "from={}&to={}&codes=BTC,btc",
        now - 2 * HOUR_MS,
        now - HOUR_MS
    );

    for _ in 0..2 {
        let answer = post(&query);
        assert_eq!(
            answer.status(),
            200,
            "{}",
            String::from_utf8_lossy(answer.body())
        );
    }

    let queue = backfill_doc(&kv).queue;
    assert_eq!(
        queue.len(),
        1,
        "one hour of BTC queued as {} ranges: {queue:?}",
        queue.len()
    );
}

/// A backfill document from another release (a newer one with a target kind this one does
/// not know) must not lose the whole queue: its ranges are filled or counted as abandoned.
///
/// Root cause: `Target` is a strict serde enum, so one unknown `kind` makes the document
/// unreadable; `open_backfill` sets it aside and starts afresh, and its queued ranges vanish
/// from `/stats` without being counted. Fix: read the queue element by element (e.g.
/// `Vec<serde_json::Value>` then `Range`), dropping and counting unknown ranges as abandoned.
#[test]
fn a_backfill_document_with_a_newer_range_kind_keeps_the_rest_of_the_queue() {
    let fake = LcwFake::start();
    let asked = serve_coin_history(&fake, |start, end| {
        grid(start, end)
            .map(|t| json!({"date": t, "rate": 100.0}))
            .collect()
    });
    let kv = SharedKv::default();
    let sql = support::native_host::memory_sql();
    let now = lcw_fetcher::host::Clock::unix_millis(&NativeHost::new(&[("a", "b")]));
    let (from, to) = (now - 3 * HOUR_MS, now - 2 * HOUR_MS);
    let doc = json!({
        "last_point_ms": {},
        "names": {},
        "queue": [
            {"target": {"kind": "exchange", "code": "binance"}, "from_ms": from, "to_ms": to, "attempts": 0},
            {"target": {"kind": "coin", "code": "SOL"}, "from_ms": from, "to_ms": to, "attempts": 0},
        ],
        "initialized": true,
        "queued_total": 2,
        "filled": 0,
        "abandoned": 0,
        "points": 0,
    });
    kv.lock().unwrap().insert(
        state::BACKFILL_KEY.into(),
        serde_json::to_vec(&doc).unwrap(),
    );

    tick(&variables(&fake), &kv, &sql);

    let doc = backfill_doc(&kv);
    let sol_asked = asked.lock().unwrap().iter().any(|(code, ..)| code == "SOL");
    assert!(
        sol_asked && doc.abandoned >= 1,
        "SOL's queued range filled: {sol_asked}; abandoned counted: {}; queued_total {}",
        doc.abandoned,
        doc.queued_total
    );
}

/// Slot tickets are kept to the last few slots (`claim_slot`: "older ones are deleted as new slots are claimed"; tests/state/safety.rs: "only the last few slots' tickets
/// are kept") also when the cron trigger's timestamps are not exactly on the minute: the
/// Spin cron trigger passes `SystemTime::now()` in seconds when the job fires, which drifts
/// by a second now and then.
///
/// Root cause: `claim_slot` deletes exactly the key `scheduled_s - 10 × interval`; a
/// timestamp off the grid never matches, so every such ticket stays forever.
/// Fix: round `scheduled_s` to the interval before making the key, and delete tickets by
/// listing the prefix (all older than the kept window), not one computed key.
#[test]
fn slot_tickets_do_not_pile_up_when_cron_timestamps_drift_by_a_second() {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let slot = 1_800_000_000u64;
    for n in 0..100 {
        block_on(lease::claim_slot(&host, slot + 60 * n + n % 3, 60)).unwrap();
    }
    let tickets = host
        .kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(lease::SLOTS_PREFIX))
        .count();
    // Swept every 10 slots: at most the last 20.
    assert!(tickets <= 20, "{tickets} slot tickets kept after 100 slots");
}

/// Of two hosts whose crons fire for the same minute, one runs — also when their
/// schedulers stamp the event a second apart (clock skew between hosts, or one firing at
/// :00.999 and the other at :01.001).
///
/// Root cause: the ticket key is the raw `scheduled_s`, which is the firing host's clock, not
/// a slot number. Fix: key the ticket on the slot, `scheduled_s` rounded to `interval_s`.
#[test]
fn two_hosts_firing_for_one_minute_a_second_apart_claim_it_once() {
    let kv = SharedKv::default();
    let first = NativeHost::with_kv(&[("lcw_api_key", "k")], kv.clone());
    let second = NativeHost::with_kv(&[("lcw_api_key", "k")], kv.clone());
    let slot = 1_800_000_000u64;

    let a = block_on(lease::claim_slot(&first, slot, 60)).unwrap();
    let b = block_on(lease::claim_slot(&second, slot + 1, 60)).unwrap();

    assert!(
        !(a && b),
        "both hosts claimed the minute starting at {slot}"
    );
}

/// "None while the day's credits are at or below the reserve": a tick that starts one
/// credit above the reserve must not make twenty history calls into it.
///
/// Root cause: `fill` checks `below_reserve` once before its loop and never counts the calls
/// it makes (nor the tick's live calls) against the remaining credits. Fix: allow at most
/// `remaining - reserve - live calls of this tick` history calls (and decrement the kept
/// `credits.remaining` by each call made, so the next ticks before a fresh /credits see it).
#[test]
fn backfill_stops_at_the_credit_reserve_within_a_tick() {
    let fake = LcwFake::start();
    let asked = serve_coin_history(&fake, |start, end| {
        grid(start, end)
            .map(|t| json!({"date": t, "rate": 100.0}))
            .collect()
    });
    fake.respond(
        "/credits",
        Reply::json(
            200,
            r#"{"dailyCreditsRemaining":501,"dailyCreditsLimit":10000}"#,
        ),
    );
    let mut variables = variables(&fake);
    variables.retain(|(k, _)| !["initial_history_hours", "backfill_calls_per_tick"].contains(k));
    variables.push(("initial_history_hours", "240".into()));
    variables.push(("backfill_calls_per_tick", "20".into()));
    let kv = SharedKv::default();
    let sql = support::native_host::memory_sql();

    tick(&variables, &kv, &sql);

    let calls = asked.lock().unwrap().len();
    assert!(
        calls <= 1,
        "1 credit above the 5 % reserve (500 of 10,000): {calls} history calls in one tick"
    );
}

/// History points join the live series (README: "the same measurement, tags and field
/// names as live points … so a chart stays continuous"). A coin of the top list that is not
/// in `tracked_coins` (`backfill_top_coins` is 0 by default), backfilled by the admin route,
/// must carry the live series' `name` tag; in InfluxDB a different tag set is another series,
/// and the hole in the live one stays.
///
/// Root cause: `history` takes the name from `BackfillState::names`, which `observe` fills
/// for *watched* coins only and prunes of all others. Fix: learn names from every coin point
/// of the tick (bounded by the top list), or take the name from the history answer with
/// `meta: true`, for any target queued.
#[test]
fn an_admin_backfilled_top_coin_joins_its_live_series_in_influxdb() {
    use std::io::Read as _;
    let fake = LcwFake::start();
    fake.respond(
        "/coins/list",
        Reply::json(
            200,
            serde_json::to_vec(&json!([
                {"code": "BTC", "name": "Bitcoin", "rank": 1, "rate": 100000.0},
                {"code": "SOL", "name": "Solana", "rank": 5, "rate": 150.0},
            ]))
            .unwrap(),
        ),
    );
    serve_coin_history(&fake, |start, end| {
        grid(start, end)
            .map(|t| json!({"date": t, "rate": 150.0}))
            .collect()
    });
    let lines = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&lines);
    fake.respond_with("/api/v2/write", move |seen| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(seen.body.as_slice())
            .read_to_string(&mut text)
            .expect("gzip body");
        sink.lock().unwrap().push_str(&text);
        Reply::json(204, "")
    });
    let mut variables = variables(&fake);
    variables.retain(|(k, _)| *k != "initial_history_hours");
    variables.push(("initial_history_hours", "0".into()));
    variables.push(("influx_url", fake.base_url.clone()));
    variables.push(("influx_org", "lcw".into()));
    variables.push(("influx_token", "t".into()));
    let kv = SharedKv::default();
    let sql = support::native_host::memory_sql();
    // A first tick sees SOL live, with its name.
    tick(&variables, &kv, &sql);
    let api = NativeHost::with_kv(&variables, kv.clone());
    let now = lcw_fetcher::host::Clock::unix_millis(&api);
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!(
            "/backfill?from={}&to={}&codes=SOL",
            now - 2 * HOUR_MS,
            now - HOUR_MS
        ))
        .header("authorization", "Bearer admin-7")
        .body(Vec::new())
        .unwrap();
    let answer = block_on(lcw_fetcher::routes::handle(&api, &request));
    assert_eq!(
        answer.status(),
        200,
        "{}",
        String::from_utf8_lossy(answer.body())
    );

    let host = NativeHost::with_kv(&variables, kv.clone()).with_sql(sql.clone());
    host.advance(std::time::Duration::from_secs(61));
    block_on(cycle::run(&host));

    let text = lines.lock().unwrap().clone();
    let series: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("cryptocurrency_data,") && l.contains("code=SOL"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let history = text
        .lines()
        .filter(|l| l.contains("code=SOL") && !l.contains("rank="))
        .count();
    assert!(
        history > 0 && series.len() == 1,
        "{history} SOL history points; SOL series written: {series:?}"
    );
}
