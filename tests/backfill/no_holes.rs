//! No holes in the data: after an outage of LCW, of InfluxDB or of the collector itself, the
//! tracked coins' series in a real InfluxDB has a point at least every 5 minutes, filled from
//! LCW's history within the per-tick budget and never below the credit reserve.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lcw_fetcher::backfill::BackfillState;
use lcw_fetcher::cycle;
use lcw_fetcher::state;
use lcw_fetcher::telemetry::history::CycleRecord;
use serde_json::{Value, json};
use support::lcw_fake::TICK_PATHS;
use support::native_host::SharedKv;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

const FIVE_MINUTES: i64 = 300_000;
const MINUTE: Duration = Duration::from_secs(60);

/// LCW's history for any range: a sample every 5 minutes, values from the time.
fn serve_history(fake: &LcwFake) -> Arc<Mutex<Vec<(i64, i64)>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    fake.respond_with("/coins/single/history", move |request| {
        let body = request.json();
        let (start, end) = (body["start"].as_i64().unwrap(), body["end"].as_i64().unwrap());
        seen.lock().unwrap().push((start, end));
        let history: Vec<Value> = grid(start, end)
            .map(|t| json!({"date": t, "rate": 100.0 + (t / FIVE_MINUTES % 97) as f64 / 8.0, "volume": 1e9, "cap": 2e12}))
            .collect();
        Reply::json(200, serde_json::to_vec(&json!({ "history": history })).unwrap())
    });
    fake.respond_with("/overview/history", |request| {
        let body = request.json();
        let (start, end) = (body["start"].as_i64().unwrap(), body["end"].as_i64().unwrap());
        let samples: Vec<Value> = grid(start, end)
            .map(|t| json!({"date": t, "cap": 3e12, "volume": 1e11, "liquidity": 5e9, "btcDominance": 0.5}))
            .collect();
        Reply::json(200, serde_json::to_vec(&samples).unwrap())
    });
    asked
}

fn grid(start: i64, end: i64) -> impl Iterator<Item = i64> {
    let first = (start + FIVE_MINUTES - 1) / FIVE_MINUTES * FIVE_MINUTES;
    (0..)
        .map(move |i| first + i * FIVE_MINUTES)
        .take_while(move |t| *t <= end)
}

fn variables(fake: &LcwFake, influx: &Influx) -> Vec<(&'static str, String)> {
    let mut v = variables_for(fake, influx);
    v.retain(|(k, _)| !["initial_history_hours", "backfill_calls_per_tick"].contains(k));
    v.push(("initial_history_hours", "0".into()));
    v
}

/// Tick at `at` after the start, on the shared store.
fn tick(variables: &[(&'static str, String)], kv: &SharedKv, at: Duration) -> CycleRecord {
    let host = NativeHost::with_kv(variables, kv.clone());
    host.advance(at);
    block_on(cycle::run(&host))
}

/// The longest stretch without a point of `code`, in ms, over all its points.
fn longest_hole(influx: &Influx, code: &str) -> (i64, usize) {
    let mut times: Vec<i64> = influx
        .rows("cryptocurrency_data")
        .iter()
        .filter(|r| r["code"] == code)
        .map(|r| r["time"].as_i64().unwrap())
        .collect();
    times.sort();
    let hole = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    (hole, times.len())
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

#[test]
fn a_collector_that_did_not_run_for_an_hour_leaves_no_hole() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    serve_history(&fake);
    let variables = variables(&fake, &influx);
    let kv = SharedKv::default();

    tick(&variables, &kv, Duration::ZERO);
    let record = tick(&variables, &kv, 60 * MINUTE);

    assert!(record.errors.is_empty(), "{:?}", record.errors);
    for code in ["BTC", "ETH"] {
        let (hole, points) = longest_hole(&influx, code);
        assert!(
            hole <= FIVE_MINUTES,
            "{code}: a hole of {hole} ms in {points} points"
        );
        assert!(points >= 12, "{code}: {points} points");
    }
    let doc = backfill_doc(&kv);
    assert!(doc.queue.is_empty(), "{:?}", doc.queue);
    assert_eq!(
        (doc.filled, doc.abandoned),
        (3, 0),
        "2 coins and the overview"
    );
}

#[test]
fn an_lcw_outage_of_ten_ticks_leaves_no_hole() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    serve_history(&fake);
    let mut variables = variables(&fake, &influx);
    variables.push(("retry_max", "0".into()));
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    for path in TICK_PATHS {
        fake.respond(path, Reply::documented_error(503));
    }
    for n in 1..=10 {
        tick(&variables, &kv, MINUTE * n);
    }
    for path in TICK_PATHS {
        fake.restore(path);
    }
    // The breaker may turn the first tick back to a probe; two ticks see LCW again.
    tick(&variables, &kv, MINUTE * 11);
    tick(&variables, &kv, MINUTE * 12);

    let (hole, points) = longest_hole(&influx, "BTC");
    assert!(
        hole <= FIVE_MINUTES,
        "a hole of {hole} ms in {points} points"
    );
}

/// Points that waited in the spool are no hole: nothing is queued, nothing fetched twice.
#[test]
fn an_influxdb_outage_is_no_gap_to_fill() {
    let fake = LcwFake::start();
    let mut influx = Influx::own();
    let asked = serve_history(&fake);
    let variables = variables(&fake, &influx);
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    influx.stop();
    for n in 1..=5 {
        tick(&variables, &kv, MINUTE * n);
    }
    influx.restart();
    tick(&variables, &kv, MINUTE * 6);

    assert!(
        asked.lock().unwrap().is_empty(),
        "{:?}",
        asked.lock().unwrap()
    );
    let (hole, points) = longest_hole(&influx, "BTC");
    assert!(hole <= 61_000, "a hole of {hole} ms in {points} points");
}

#[test]
fn the_first_tick_fetches_the_initial_history() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let asked = serve_history(&fake);
    let mut variables = variables(&fake, &influx);
    variables.retain(|(k, _)| *k != "initial_history_hours");
    variables.push(("initial_history_hours", "24".into()));
    let kv = SharedKv::default();

    tick(&variables, &kv, Duration::ZERO);

    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked.len(),
        2,
        "one call per tracked coin for 24 h: {asked:?}"
    );
    assert!(asked.iter().all(|(s, e)| e - s == 24 * 3_600_000 - 1));
    let (hole, points) = longest_hole(&influx, "BTC");
    assert!(
        points >= 288 && hole <= FIVE_MINUTES,
        "{points} points, hole {hole} ms"
    );
}

#[test]
fn backfill_never_spends_the_credit_reserve_and_its_queue_waits() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let asked = serve_history(&fake);
    fake.respond(
        "/credits",
        Reply::json(
            200,
            r#"{"dailyCreditsRemaining":400,"dailyCreditsLimit":10000}"#,
        ),
    );
    let variables = variables(&fake, &influx);
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    tick(&variables, &kv, 30 * MINUTE);

    assert!(
        asked.lock().unwrap().is_empty(),
        "4 % left, reserve 5 %: no history call"
    );
    assert_eq!(
        backfill_doc(&kv).queue.len(),
        3,
        "the gap waits in the queue"
    );
}

#[test]
fn the_queue_survives_an_unreadable_state_document() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables(&fake, &influx);
    variables.push(("backfill_calls_per_tick", "0".into()));
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    tick(&variables, &kv, 30 * MINUTE);
    assert_eq!(backfill_doc(&kv).queue.len(), 3);
    kv.lock()
        .unwrap()
        .insert(state::STATE_KEY.into(), b"not json".to_vec());

    serve_history(&fake);
    variables.retain(|(k, _)| *k != "backfill_calls_per_tick");
    tick(&variables, &kv, 31 * MINUTE);

    let doc = backfill_doc(&kv);
    assert_eq!((doc.queue.len(), doc.filled), (0, 3), "{doc:?}");
    let (hole, points) = longest_hole(&influx, "BTC");
    assert!(
        hole <= FIVE_MINUTES,
        "a hole of {hole} ms in {points} points"
    );
}

#[test]
fn at_most_the_call_budget_is_spent_per_tick() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let asked = serve_history(&fake);
    let mut variables = variables(&fake, &influx);
    variables.push(("backfill_calls_per_tick", "2".into()));
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    // Three days away: 3 targets × 4 day-long ranges (a little over 3 days), 2 calls a tick.
    tick(&variables, &kv, 3 * 24 * 60 * MINUTE);
    assert_eq!(asked.lock().unwrap().len(), 2);
    let doc = backfill_doc(&kv);
    assert_eq!(doc.queued_total, 12);
    assert_eq!(doc.queue.len(), 10);
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .all(|(s, e)| e - s < 24 * 3_600_000),
        "day-long ranges"
    );
}

#[test]
fn an_admin_can_queue_a_range() {
    use http::Method;
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables(&fake, &influx);
    variables.push(("admin_token", "admin-9".into()));
    let kv = SharedKv::default();
    let api = NativeHost::with_kv(&variables, kv.clone());
    let now = lcw_fetcher::host::Clock::unix_millis(&api);
    let call = |query: &str| {
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(format!("/backfill?{query}"))
            .header("authorization", "Bearer admin-9")
            .body(Vec::new())
            .unwrap();
        block_on(lcw_fetcher::routes::handle(&api, &request))
    };

    let ok = call(&format!(
        "from={}&to={}&codes=btc,SOL",
        now - 7_200_000,
        now - 3_600_000
    ));
    assert_eq!(ok.status(), 200, "{}", String::from_utf8_lossy(ok.body()));
    assert_eq!(backfill_doc(&kv).queue.len(), 2);
    for (query, names) in [
        ("to=1".to_owned(), "`from`"),
        (format!("from={now}&to={}", now - 1), "`to`"),
        (format!("from=0&to={now}"), "30 days"),
        ("from=1&to=2&codes=B%20C".to_owned(), "`codes`"),
        (format!("from=1&to={}", now + 3_600_000), "future"),
    ] {
        let bad = call(&query);
        let body = String::from_utf8_lossy(bad.body()).into_owned();
        assert_eq!(bad.status(), 400, "{query}: {body}");
        assert!(body.contains(names), "{query}: {body}");
    }
}

/// The previous release kept the backfill document under its own key only (state schema 2):
/// the first tick of this release takes it into the state document, queue and counters.
#[test]
fn a_backfill_document_of_the_previous_release_is_taken_into_the_state_document() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables(&fake, &influx);
    variables.push(("backfill_calls_per_tick", "0".into()));
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    tick(&variables, &kv, 30 * MINUTE);
    let queued = backfill_doc(&kv);
    assert_eq!(queued.queue.len(), 3);

    let mut old = serde_json::to_value(support::collector_state(&kv)).unwrap();
    let fields = old.as_object_mut().unwrap();
    fields.remove("backfill");
    fields.remove("backfill_saved");
    fields.insert("schema".into(), json!(2));
    {
        let mut store = kv.lock().unwrap();
        store.insert(state::STATE_KEY.into(), serde_json::to_vec(&old).unwrap());
        store.insert(
            state::BACKFILL_KEY.into(),
            serde_json::to_vec(&queued).unwrap(),
        );
    }
    tick(&variables, &kv, 31 * MINUTE);

    let doc = support::collector_state(&kv);
    assert_eq!(doc.schema, cycle::STATE_SCHEMA);
    assert_eq!(doc.backfill.queue, queued.queue);
    assert_eq!(doc.backfill.queued_total, queued.queued_total);
}

/// The backup copy under `BACKFILL_KEY` is written when the queue changes, not on every tick
/// (only the last points moved), and an unreadable state document falls back on it.
#[test]
fn the_backfill_backup_is_written_only_when_the_queue_changes() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables(&fake, &influx);
    variables.push(("backfill_calls_per_tick", "0".into()));
    let kv = SharedKv::default();
    let backup = |kv: &SharedKv| kv.lock().unwrap().get(state::BACKFILL_KEY).cloned();
    tick(&variables, &kv, Duration::ZERO);
    tick(&variables, &kv, 30 * MINUTE);
    let after_gap = backup(&kv).expect("the gap changed the queue: backup written");
    let copy: BackfillState = serde_json::from_slice(&after_gap).unwrap();
    assert_eq!(copy.queue.len(), 3);
    tick(&variables, &kv, 31 * MINUTE);
    tick(&variables, &kv, 32 * MINUTE);
    assert_eq!(
        backup(&kv).as_ref(),
        Some(&after_gap),
        "steady ticks leave the backup alone"
    );
    assert_ne!(
        backfill_doc(&kv).last_point_ms,
        copy.last_point_ms,
        "while the state document follows the last points"
    );
}

/// Once a tick of this release has run, the admin route queues into the state document (and
/// its backup), where the next tick reads the queue.
#[test]
fn an_admin_range_queued_after_a_tick_reaches_the_next_tick() {
    use http::Method;
    let fake = LcwFake::start();
    let influx = Influx::start();
    let asked = serve_history(&fake);
    let mut variables = variables(&fake, &influx);
    variables.push(("admin_token", "admin-9".into()));
    let kv = SharedKv::default();
    tick(&variables, &kv, Duration::ZERO);
    let before = asked.lock().unwrap().len();
    let api = NativeHost::with_kv(&variables, kv.clone());
    api.advance(MINUTE / 2);
    let now = lcw_fetcher::host::Clock::unix_millis(&api);
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!(
            "/backfill?from={}&to={}&codes=SOL",
            now - 7_200_000,
            now - 3_600_000
        ))
        .header("authorization", "Bearer admin-9")
        .body(Vec::new())
        .unwrap();
    let ok = block_on(lcw_fetcher::routes::handle(&api, &request));
    assert_eq!(ok.status(), 200, "{}", String::from_utf8_lossy(ok.body()));
    assert_eq!(backfill_doc(&kv).queue.len(), 1);
    let copy: BackfillState =
        serde_json::from_slice(&kv.lock().unwrap()[state::BACKFILL_KEY]).unwrap();
    assert_eq!(copy.queue.len(), 1, "the backup has it too");

    let filled = backfill_doc(&kv).filled;
    tick(&variables, &kv, MINUTE);
    let doc = backfill_doc(&kv);
    let sol_waits = doc
        .queue
        .iter()
        .any(|r| r.target == lcw_fetcher::backfill::Target::Coin { code: "SOL".into() });
    assert!(
        sol_waits || doc.filled > filled,
        "the tick kept or filled the range: {doc:?}"
    );
    assert!(asked.lock().unwrap().len() >= before);
}
