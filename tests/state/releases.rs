//! Documents of earlier releases: what each release left in the store (`tests/fixtures/release-N`,
//! one file a key) loads whole under this one, and its spooled points are replayed, into InfluxDB
//! or the embedded SQLite store. Owns those fixtures' checks; it must not write the fixtures (they
//! are what the release wrote, regenerated only by that release).

use crate::support;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lcw_fetcher::backfill::{self, BackfillState};
use lcw_fetcher::cache::TickCache;
use lcw_fetcher::config::Settings;
use lcw_fetcher::cycle::{self, CollectorState};
use lcw_fetcher::sink::delivery::Quarantine;
use lcw_fetcher::sink::spool;
use lcw_fetcher::state::{BACKFILL_KEY, QUARANTINE_KEY, STATE_KEY};
use lcw_fetcher::telemetry::history::{CycleRecord, Outcome};
use support::lcw_fake::API_KEY;
use support::native_host::{SharedKv, memory_sql};
use support::{LcwFake, NativeHost, Reply, block_on};

/// Points the second release's spool holds: two segments (10 and 18 points).
const RELEASE_2_SPOOLED: u64 = 28;

/// A store holding what `release` left: each file of its fixture directory under its key.
fn store_of(release: &str) -> SharedKv {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(release);
    let kv = SharedKv::default();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let key = entry.file_name().to_string_lossy().replace('_', "/");
        kv.lock()
            .unwrap()
            .insert(key, std::fs::read(entry.path()).unwrap());
    }
    kv
}

fn document<T: serde::de::DeserializeOwned>(kv: &SharedKv, key: &str) -> T {
    let raw = kv.lock().unwrap()[key].clone();
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{key} does not parse: {e}"))
}

fn spool_keys(kv: &SharedKv) -> usize {
    kv.lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(spool::SEGMENT_PREFIX))
        .count()
}

/// InfluxDB played by the fake: it takes every write and keeps its lines.
fn influx_up(fake: &LcwFake) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&lines);
    fake.respond_with("/api/v2/write", move |seen| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(seen.body.as_slice())
            .read_to_string(&mut text)
            .expect("gzip body");
        kept.lock().unwrap().extend(text.lines().map(str::to_owned));
        Reply::json(204, "")
    });
    lines
}

fn influx_variables(fake: &LcwFake) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", fake.base_url.clone()),
        ("influx_org", "lcw".to_owned()),
        ("influx_token", "releases-token".to_owned()),
        ("cache_ttl_coins_list_s", "1".to_owned()),
        ("cache_ttl_overview_s", "1".to_owned()),
        ("cache_ttl_exchanges_s", "1".to_owned()),
    ]
}

/// A tick of this release on `kv`, `n` minutes after the clock's start.
fn tick(variables: &[(&str, String)], kv: &SharedKv, n: u64) -> CycleRecord {
    let host = NativeHost::with_kv(variables, kv.clone());
    host.advance(Duration::from_secs(61 * n));
    block_on(cycle::run(&host))
}

/// Every spooled line, read through this release's spool reader, each segment holding as many
/// lines as its metadata says.
fn spooled_lines(kv: &SharedKv, doc: &CollectorState) -> Vec<String> {
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let mut lines = Vec::new();
    for meta in &doc.sink.spool.segments {
        let text = block_on(spool::read(&host, meta))
            .unwrap()
            .unwrap_or_else(|| panic!("segment {} unreadable: {}", meta.key(), host.log_text()));
        assert_eq!(spool::count_lines(&text), meta.points, "{meta:?}");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// The state document of the first release, with its numbered spool segment, loads whole and its
/// spooled points are replayed.
#[test]
fn a_document_of_the_first_release_loads_and_its_spool_is_replayed() {
    let kv = store_of("release-1");
    let old: CollectorState = document(&kv, STATE_KEY);
    let spooled = old.sink.spool.points();
    assert!(spooled > 0, "the fixture has a spool");
    assert!(old.history.recent.len() == 3 && old.cache.entries.len() > 1);
    assert!(old.telemetry.operations.len() > 3);
    assert_eq!(old.history.cycles_by_outcome.values().sum::<u64>(), 3);

    let fake = LcwFake::start();
    let influx = influx_up(&fake);
    let record = tick(&influx_variables(&fake), &kv, 10);

    assert_eq!(record.points_replayed, spooled, "{record:?}");
    assert_eq!(influx.lock().unwrap().len() as u64, record.total_written());
    let new = support::collector_state(&kv);
    assert_eq!(new.schema, cycle::STATE_SCHEMA);
    assert_eq!(new.history.cycles_by_outcome.values().sum::<u64>(), 4);
    assert!(new.sink.spool.is_empty());
}

/// Each cache entry holding a body (inline, or in a segment) serves it, read as it was asked.
fn assert_cache_serves_its_bodies(kv: &SharedKv, doc: &CollectorState) {
    let host = NativeHost::with_kv::<&str, &str>(&[], kv.clone());
    let ttls = Settings::from_pairs(&[("lcw_api_key", "k")])
        .unwrap()
        .cache_ttls;
    let (mut inline, mut in_segments) = (0, 0);
    for (key, entry) in &doc.cache.entries {
        if entry.inline.is_empty() && entry.segment.is_empty() {
            continue;
        }
        assert!(
            entry.inline.is_empty() || entry.segment.is_empty(),
            "{entry:?}"
        );
        inline += usize::from(!entry.inline.is_empty());
        in_segments += usize::from(!entry.segment.is_empty());
        let at = entry.requested_at_ms;
        let mut cache = TickCache::new(doc.cache.clone(), ttls, 100, "reader", at);
        let hit = block_on(cache.lookup(&host, key, at))
            .unwrap_or_else(|| panic!("{key}: no body: {}", host.log_text()));
        assert_eq!(hit.fetched_at_ms, entry.fetched_at_ms);
        let _: serde_json::Value = serde_json::from_slice(&hit.body)
            .unwrap_or_else(|e| panic!("{key}: the body is not LCW's JSON: {e}"));
    }
    assert!(
        inline > 0 && in_segments > 0,
        "{inline} inline, {in_segments} in segments"
    );
}

/// What the second release (`tests/fixtures/release-2`) left beside its state document: the
/// backfill backup the document names, and the quarantine with the line InfluxDB refused.
fn assert_release_2_documents(kv: &SharedKv, doc: &CollectorState) {
    assert_eq!(doc.schema, 3, "the second release wrote schema 3");
    assert_eq!(doc.history.recent.len(), 5);
    assert_eq!(doc.history.cycles_by_outcome.values().sum::<u64>(), 5);
    assert!(doc.telemetry.operations.len() > 3);
    assert!(doc.backfill.initialized && doc.backfill.filled > 0);
    let backup: BackfillState = document(kv, BACKFILL_KEY);
    assert_eq!(backfill::durable_fingerprint(&backup), doc.backfill_saved);
    let quarantine: Quarantine = document(kv, QUARANTINE_KEY);
    assert_eq!(quarantine.total, 1);
    assert!(
        quarantine.recent[0].line.contains("code=GRIN"),
        "{quarantine:?}"
    );
    assert_cache_serves_its_bodies(kv, doc);
    assert_eq!(doc.sink.spool.segments.len(), 2);
    assert_eq!(doc.sink.spool.points(), RELEASE_2_SPOOLED);
    assert_eq!(spooled_lines(kv, doc).len() as u64, RELEASE_2_SPOOLED);
}

/// The state document of the second release (commit b408e28), with its two spool segments, a
/// cache segment, the backfill backup and a quarantine, loads whole, and InfluxDB receives every
/// spooled line once the tick replays them.
#[test]
fn a_document_of_the_second_release_loads_and_its_spool_is_replayed() {
    let kv = store_of("release-2");
    let old: CollectorState = document(&kv, STATE_KEY);
    assert_release_2_documents(&kv, &old);
    let spooled = spooled_lines(&kv, &old);

    let fake = LcwFake::start();
    let influx = influx_up(&fake);
    let record = tick(&influx_variables(&fake), &kv, 10);

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_replayed, RELEASE_2_SPOOLED, "{record:?}");
    let received = influx.lock().unwrap().clone();
    assert_eq!(received.len() as u64, record.total_written());
    let missing: Vec<&String> = spooled.iter().filter(|l| !received.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "spooled lines not received: {missing:?}"
    );
    let new = support::collector_state(&kv);
    assert_eq!(new.schema, cycle::STATE_SCHEMA);
    assert_eq!(new.history.cycles_by_outcome.values().sum::<u64>(), 6);
    assert!(new.sink.spool.is_empty() && spool_keys(&kv) == 0);
    let quarantine: Quarantine = document(&kv, QUARANTINE_KEY);
    assert_eq!(quarantine.total, 1, "the refused line stays quarantined");
}

/// The second release's spool replayed into the embedded SQLite store (`sink = sqlite`): each
/// distinct spooled point (series and time) becomes one row.
#[test]
fn the_spool_of_the_second_release_is_replayed_into_sqlite() {
    let kv = store_of("release-2");
    let old: CollectorState = document(&kv, STATE_KEY);
    let spooled = spooled_lines(&kv, &old);
    let last_spooled = old.sink.spool.segments.iter().map(|s| s.last_time).max();
    // A row is a series (measurement and tags) at a time: the line up to its fields, and its last
    // word.
    let points: BTreeSet<(&str, &str)> = spooled
        .iter()
        .map(|l| (l.split(' ').next().unwrap(), l.rsplit(' ').next().unwrap()))
        .collect();

    let fake = LcwFake::start();
    let sql = memory_sql();
    let variables = [
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("sink", "sqlite".to_owned()),
        // The fixture's points stay within retention for years; no backfill writes old times.
        ("sqlite_retention_days", "3650".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
        ("cycle_deadline_ms", "20000".to_owned()),
    ];
    let host = NativeHost::with_kv(&variables, kv.clone()).with_sql(sql.clone());
    host.advance(Duration::from_secs(61 * 10));
    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_replayed, RELEASE_2_SPOOLED, "{record:?}");
    let connection = sql.lock().unwrap();
    let mut rows = 0;
    for table in ["cryptocurrency_data", "market_overview", "exchange_data"] {
        let statement = format!(
            "SELECT COUNT(*) FROM {table} WHERE time_ms <= {}",
            last_spooled.unwrap()
        );
        let answer = support::sql::execute(&connection, &statement, &[]).unwrap();
        match answer.rows[0][0] {
            lcw_fetcher::host::SqlValue::Integer(n) => rows += n as usize,
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!(rows, points.len(), "one row per spooled point");
    assert!(support::collector_state(&kv).sink.spool.is_empty() && spool_keys(&kv) == 0);
}
