//! What the app keeps from outside stays bounded and saveable, and no stored document it cannot
//! read is ever written over: a long name from LCW, a state document over the store's value
//! limit, an unreadable quarantine document.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::config::{Settings, SinkKind};
use lcw_fetcher::cycle;
use lcw_fetcher::host::SqlValue;
use lcw_fetcher::host::{Clock as _, KeyValue as _};
use lcw_fetcher::lcw::NAME_LIMIT;
use lcw_fetcher::routes;
use lcw_fetcher::sink::delivery::Quarantine;
use lcw_fetcher::state::QUARANTINE_KEY;
use lcw_fetcher::telemetry::history::Outcome;

use crate::support::native_host::memory_sql;
use crate::support::{LcwFake, NativeHost, Reply, block_on, collector_state};

const ADMIN: &str = "admin-token-for-the-quarantine-test";

fn admin_post(host: &NativeHost, path: &str) -> http::Response<Vec<u8>> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Vec::new())
        .unwrap();
    block_on(routes::handle(host, &request))
}

fn stored_aside(host: &NativeHost, key: &str) -> Vec<Vec<u8>> {
    let prefix = format!("{key}.unreadable.");
    let kv = host.kv.lock().unwrap();
    kv.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

/// A quarantine document the release cannot read is set aside before a refused line is
/// appended: it was read as empty and written over, the lines it held gone.
#[test]
fn an_unreadable_quarantine_is_set_aside_before_a_tick_appends_to_it() {
    let host = NativeHost::new(&[("lcw_api_key", "k")]).with_sql(memory_sql());
    let unreadable = b"{\"total\": 7, \"recent\": [ truncated".to_vec();
    block_on(host.kv_set(QUARANTINE_KEY, &unreadable)).unwrap();
    let settings = Settings::from_pairs(&[("lcw_api_key", "k")]).unwrap();
    let (delivery, _) = block_on(async {
        let mut sink = crate::support::courier(
            &host,
            SinkKind::Sqlite,
            &settings.influx,
            host.monotonic() + Duration::from_secs(20),
            Default::default(),
        );
        sink.deliver(&crate::support::points(
            "market_overview,currency=USD total_market_cap=2i 2000\n",
        ))
        .await;
        sink.finish().await
    });
    assert_eq!(delivery.quarantined, 1);
    assert_eq!(
        stored_aside(&host, QUARANTINE_KEY),
        vec![unreadable],
        "the unreadable document is kept aside, byte for byte"
    );
    let quarantine: Quarantine =
        serde_json::from_slice(&host.kv.lock().unwrap()[QUARANTINE_KEY]).unwrap();
    assert_eq!(
        quarantine.recent.len(),
        1,
        "the new line starts a fresh one"
    );
    assert!(
        host.log_text().contains("unreadable"),
        "{}",
        host.log_text()
    );
}

/// The admin's retry and clear set an unreadable quarantine aside too, before they write.
#[test]
fn an_unreadable_quarantine_is_set_aside_before_the_admin_routes_write_it() {
    for path in ["/quarantine/retry", "/quarantine/clear"] {
        let host =
            NativeHost::new(&[("lcw_api_key", "k"), ("admin_token", ADMIN)]).with_sql(memory_sql());
        let unreadable = b"not json at all".to_vec();
        block_on(host.kv_set(QUARANTINE_KEY, &unreadable)).unwrap();
        let answer = admin_post(&host, path);
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(answer.body())
        );
        assert_eq!(
            stored_aside(&host, QUARANTINE_KEY),
            vec![unreadable],
            "{path}"
        );
    }
}

/// A name of 1.1 MB text from LCW is cut where it comes in: it went uncut into the backfill
/// document's names, the state document passed 1 MB, and every later tick logged "state not
/// saved", kept no record, lost its cache, and `/status` stayed 503.
#[test]
fn a_megabyte_coin_name_is_cut_where_it_comes_in_and_the_state_still_saves() {
    use crate::support::lcw_fake::{API_KEY, fixture_for, fixture_json};
    let fake = LcwFake::start();
    let huge = "Bitcoin ".repeat(140_000);
    for path in ["/coins/list", "/coins/map"] {
        let mut coins = fixture_json(fixture_for(path).unwrap());
        for coin in coins.as_array_mut().unwrap() {
            if coin["code"] == "BTC" {
                coin["name"] = huge.clone().into();
            }
        }
        fake.respond(path, Reply::json(200, coins.to_string()));
    }
    let sql = memory_sql();
    let host = NativeHost::new(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
    ])
    .with_sql(sql.clone());
    for _ in 0..2 {
        let record = block_on(cycle::run(&host));
        assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    }
    assert!(
        !host.log_text().contains("state not saved"),
        "{}",
        host.log_text()
    );
    let doc = collector_state(&host.kv);
    assert_eq!(doc.history.recent.len(), 2, "both ticks are recorded");
    let name = &doc.backfill.names["BTC"];
    assert!(
        name.len() <= NAME_LIMIT + '…'.len_utf8(),
        "{} bytes",
        name.len()
    );
    assert!(name.starts_with("Bitcoin Bitcoin"), "{name}");
    let stored = crate::support::sql::execute(
        &sql.lock().unwrap(),
        "SELECT MAX(LENGTH(name)) FROM cryptocurrency_data",
        &[],
    )
    .unwrap();
    assert!(
        matches!(stored.rows[0][0], SqlValue::Integer(n) if n as usize <= NAME_LIMIT + 3),
        "{stored:?}"
    );
    let status = get(&host, "/status");
    assert_eq!(
        status.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(status.body())
    );
}

/// A state document over the store's value limit, whatever made it so (here a store that
/// takes only 12 KB, under a tick of 200 coins), drops its least needed parts and is saved,
/// counted in `/stats` and `/metrics`, rather than left unsaved tick after tick.
#[test]
fn a_state_document_over_the_value_limit_drops_its_least_needed_parts_and_saves() {
    use crate::support::lcw_fake::API_KEY;
    let fake = LcwFake::start();
    let variables = [
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("max_coins_per_fetch", "200"),
    ];
    let unlimited = NativeHost::new(&variables).with_sql(memory_sql());
    block_on(cycle::run(&unlimited));
    let full = unlimited.kv.lock().unwrap()[lcw_fetcher::state::STATE_KEY].len();
    let limit = full * 2 / 3;
    let host = NativeHost::with_kv(&variables, unlimited.kv.clone())
        .with_sql(memory_sql())
        .with_value_limit(limit);
    let record = block_on(cycle::run(&host));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert!(
        !host.log_text().contains("state not saved"),
        "{}",
        host.log_text()
    );
    assert!(
        host.log_text().contains("over the store's limit"),
        "{}",
        host.log_text()
    );
    let saved = host.kv.lock().unwrap()[lcw_fetcher::state::STATE_KEY].clone();
    assert!(saved.len() <= limit, "{} of {limit}", saved.len());
    let doc = collector_state(&host.kv);
    assert_eq!(doc.trimmed, 1);
    assert!(
        doc.sink.counters.points_written > 0,
        "the sink's counters survive"
    );
    let stats: serde_json::Value = serde_json::from_slice(get(&host, "/stats").body()).unwrap();
    assert_eq!(stats["state_trimmed"], 1, "{stats}");
    let metrics = String::from_utf8(get(&host, "/metrics").into_body()).unwrap();
    assert!(metrics.contains("lcw_state_trimmed_total 1"), "{metrics}");
}

fn get(host: &NativeHost, path: &str) -> http::Response<Vec<u8>> {
    let request = Request::builder().uri(path).body(Vec::new()).unwrap();
    block_on(routes::handle(host, &request))
}
