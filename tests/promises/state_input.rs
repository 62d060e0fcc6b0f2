//! What the app keeps from outside stays bounded and saveable, and no stored document it cannot
//! read is ever written over: a long name from LCW, a state document over the store's value
//! limit, an unreadable quarantine document.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::config::{Settings, SinkKind};
use lcw_fetcher::host::{Clock as _, KeyValue as _};
use lcw_fetcher::influx::sink::{Quarantine, Sink};
use lcw_fetcher::routes;
use lcw_fetcher::state::QUARANTINE_KEY;

use crate::support::native_host::memory_sql;
use crate::support::{NativeHost, block_on};

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
        let mut sink = Sink::new(
            &host,
            SinkKind::Sqlite,
            &settings.influx,
            settings.influx.spool_max_points,
            host.monotonic() + Duration::from_secs(20),
            Default::default(),
        );
        sink.deliver("market_overview,currency=USD total_market_cap=2i 2000\n")
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
