//! Test adapters and real peers for the native integration tests: the native host, the LCW fake,
//! a real InfluxDB, promtool. Network traffic goes to 127.0.0.1 only.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of the support code.

pub mod http_server;
pub mod influxd;
pub mod lcw_fake;
pub mod native_host;
pub mod scripted_guard;
pub mod sim;
pub mod sql;

use std::io::Write as _;
use std::process::{Command, Stdio};

pub use influxd::Influx;
pub use lcw_fake::{LcwFake, Reply};
pub use native_host::NativeHost;

/// The collector's state document as a store holds it (default when absent).
pub fn collector_state(kv: &native_host::SharedKv) -> lcw_fetcher::cycle::CollectorState {
    kv.lock()
        .unwrap()
        .get(lcw_fetcher::state::STATE_KEY)
        .map(|raw| serde_json::from_slice(raw).expect("the state document is JSON"))
        .unwrap_or_default()
}

/// Stores a state document.
pub fn put_collector_state(kv: &native_host::SharedKv, doc: &lcw_fetcher::cycle::CollectorState) {
    kv.lock().unwrap().insert(
        lcw_fetcher::state::STATE_KEY.into(),
        serde_json::to_vec(doc).unwrap(),
    );
}

/// A new empty directory under the system's temporary one, unique to this process and call.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lcw-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a future to completion on the test thread.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Variables for a cycle against `fake` writing to `influx` through the v1 API (Debian's InfluxDB
/// 1.x has no v2 endpoint).
pub fn variables_for(fake: &LcwFake, influx: &Influx) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", influx.url.clone()),
        ("influx_api", "v1".to_owned()),
        ("influx_database", influx.database.clone()),
        ("cycle_deadline_ms", "20000".to_owned()),
        // Backfill adds history calls to ticks; its own tests turn it on.
        ("initial_history_hours", "0".to_owned()),
        ("backfill_calls_per_tick", "0".to_owned()),
    ]
}

/// `promtool check metrics` on `text`: Ok, or promtool's complaints.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let promtool = influxd::which("promtool").unwrap_or_else(|| {
        panic!("`promtool` not found: install Debian's `prometheus` package (scripts/test-all does it when run as root)")
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Points from line protocol text, one a line, as the tests write what a tick delivers.
pub fn points(text: &str) -> Vec<lcw_fetcher::point::Point> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            lcw_fetcher::sink::line_protocol::parse_line(line)
                .unwrap_or_else(|e| panic!("a test line that parses: {e}"))
        })
        .collect()
}

/// Delivery to the sink of `kind` with the `influx_*` settings only, as the cycle opens it
/// through `sink::registry` from the whole settings.
pub fn courier<'a>(
    host: &'a NativeHost,
    kind: lcw_fetcher::config::SinkKind,
    settings: &'a lcw_fetcher::config::InfluxSettings,
    deadline: std::time::Duration,
    state: lcw_fetcher::sink::delivery::SinkState,
) -> lcw_fetcher::sink::delivery::Courier<'a, NativeHost> {
    use lcw_fetcher::config::SinkKind;
    use lcw_fetcher::sink::Sink;
    let sink: Box<dyn Sink + 'a> = match kind {
        SinkKind::Influxdb => Box::new(lcw_fetcher::sink::influxdb::InfluxDb::new(host, settings)),
        SinkKind::Sqlite => Box::new(lcw_fetcher::sink::sqlite::SqliteSink::new(host)),
    };
    lcw_fetcher::sink::delivery::Courier::new(
        host,
        sink,
        lcw_fetcher::sink::delivery::Limits::of(settings),
        deadline,
        state,
    )
}
