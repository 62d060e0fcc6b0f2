//! A secret a remote echoes back goes no further: an LCW error whose description holds the API
//! key, an InfluxDB refusal that quotes the token, in any encoding, reach neither the logs, the
//! stored documents nor any route.

use http::{Method, Request};
use lcw_fetcher::cycle;
use lcw_fetcher::routes;

use crate::support::native_host::memory_sql;
use crate::support::{LcwFake, NativeHost, Reply, block_on};

/// A key with characters that URL-encoding changes, so that each form is its own text.
const KEY: &str = "k3y/with+odd=chars";
const KEY_ENCODED: &str = "k3y%2Fwith%2Bodd%3Dchars";
const TOKEN: &str = "influx-t0ken/secret";
const TOKEN_ENCODED: &str = "influx-t0ken%2Fsecret";
const ADMIN: &str = "admin-secret-for-echo-test";

/// A request on a thread of its own, as every request is a fresh instance under Spin: nothing
/// an earlier tick or request protected on the test's thread may hide a leak.
fn get(host: &NativeHost, path: &str) -> String {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Vec::new())
        .unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let response = block_on(routes::handle(host, &request));
                String::from_utf8_lossy(response.body()).into_owned()
            })
            .join()
            .unwrap()
    })
}

/// Everything the app lets out or keeps: its logs, every stored document, and the routes that
/// show stored text.
fn everything_shown(host: &NativeHost) -> Vec<(String, String)> {
    let mut shown = vec![("logs".to_owned(), host.log_text())];
    for (key, value) in host.kv.lock().unwrap().iter() {
        shown.push((key.clone(), String::from_utf8_lossy(value).into_owned()));
    }
    for path in [
        "/stats",
        "/stats?format=text",
        "/status",
        "/metrics",
        "/quarantine",
        "/",
    ] {
        shown.push((path.to_owned(), get(host, path)));
    }
    shown
}

fn assert_unseen(host: &NativeHost, secrets: &[&str]) {
    for (place, text) in everything_shown(host) {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "`{secret}` shown in {place}:\n{text}"
            );
        }
    }
}

/// An LCW 400 that quotes the key, as sent and URL-encoded, in its description: the key was in
/// the logs, `lcw/v1/state` and `GET /stats`.
#[test]
fn an_lcw_error_echoing_the_key_shows_it_nowhere() {
    let fake = LcwFake::start();
    let description = format!("invalid key {KEY} (as a query: key={KEY_ENCODED})");
    let body = serde_json::json!({"error": {"code": 400, "status": "Bad Request", "description": description}});
    for path in [
        "/coins/list",
        "/coins/map",
        "/overview",
        "/credits",
        "/exchanges/list",
    ] {
        fake.respond(path, Reply::json(400, body.to_string()));
    }
    let host = NativeHost::new(&[
        ("lcw_api_key", KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("admin_token", ADMIN),
    ])
    .with_sql(memory_sql());
    let record = block_on(cycle::run(&host));
    assert!(!record.errors.is_empty(), "the 400s are errors of the tick");
    assert!(
        host.log_text().contains("invalid key ***"),
        "the rest of the message is kept: {}",
        host.log_text()
    );
    assert_unseen(&host, &[KEY, KEY_ENCODED]);
}

/// InfluxDB (or a proxy before it) refusing a write with the token in its message: the
/// quarantine, the sink's last error and the logs held it.
#[test]
fn an_influxdb_refusal_echoing_the_token_shows_it_nowhere() {
    let lcw = LcwFake::start();
    let influx = LcwFake::start();
    let message = format!("token {TOKEN} ({TOKEN_ENCODED}) may not write here");
    influx.respond(
        "/api/v2/write",
        Reply::json(
            400,
            serde_json::json!({"code": "invalid", "message": message}).to_string(),
        ),
    );
    let host = NativeHost::new(&[
        ("lcw_api_key", "test-lcw-key-5f3a9c"),
        ("lcw_base_url", lcw.base_url.as_str()),
        ("influx_url", influx.base_url.as_str()),
        ("influx_org", "o"),
        ("influx_token", TOKEN),
        ("influx_gzip", "false"),
        ("admin_token", ADMIN),
    ]);
    block_on(cycle::run(&host));
    assert!(
        host.log_text()
            .contains("token *** (***) may not write here"),
        "{}",
        host.log_text()
    );
    assert_unseen(&host, &[TOKEN, TOKEN_ENCODED]);
}

/// A stored document of an earlier release that took a key in before it was scrubbed: the
/// routes show it redacted, and the next save writes it redacted.
#[test]
fn a_stored_document_holding_the_key_is_redacted_on_the_way_out() {
    let fake = LcwFake::start();
    let host = NativeHost::new(&[
        ("lcw_api_key", KEY),
        ("lcw_base_url", fake.base_url.as_str()),
        ("admin_token", ADMIN),
    ])
    .with_sql(memory_sql());
    let mut doc = cycle::CollectorState::default();
    doc.sink.last_error = Some(format!("refused: key {KEY} is not allowed"));
    crate::support::put_collector_state(&host.kv, &doc);
    for path in [
        "/stats",
        "/status",
        "/metrics",
        "/stats/cache",
        "/quarantine",
        "/",
    ] {
        let shown = get(&host, path);
        assert!(!shown.contains(KEY), "{path}: {shown}");
    }
    block_on(cycle::run(&host));
    assert_unseen(&host, &[KEY, KEY_ENCODED]);
}
