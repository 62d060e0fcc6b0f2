//! Issue 14, InfluxDB side: fresh data is never held back by old data, and no point disappears
//! uncounted. Expired spools against a real short retention policy, refusals limited per batch,
//! `dropped=N` read, settings InfluxDB says are wrong, the v1 database created, the quarantine
//! retried and cleared. Each test here failed on the code before its fix.

use crate::support;

use std::time::Duration;

use http::{Method, Request, StatusCode};
use lcw_fetcher::config::{InfluxSettings, Settings};
use lcw_fetcher::cycle;
use lcw_fetcher::routes;
use lcw_fetcher::sink::delivery::{Courier, Delivery, Quarantine, SinkState};
use lcw_fetcher::state::QUARANTINE_KEY;
use serde_json::Value;
use support::native_host::SharedKv;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

const S: Duration = Duration::from_secs(1);
const ADMIN: &str = "admin-token-77";

fn influx_settings(pairs: &[(&str, &str)]) -> InfluxSettings {
    Settings::from_pairs(
        &[
            &[
                ("lcw_api_key", "k"),
                ("influx_org", "o"),
                ("influx_token", "secret-token-9"),
            ],
            pairs,
        ]
        .concat(),
    )
    .unwrap()
    .influx
}

fn now(host: &NativeHost) -> Duration {
    use lcw_fetcher::host::Clock as _;
    host.monotonic()
}

/// One tick's sink work on the sink state kept in `host`'s store, saved back as a tick does.
fn with_sink(
    host: &NativeHost,
    settings: &InfluxSettings,
    work: impl AsyncFnOnce(&mut Courier<'_, NativeHost>),
) -> (Delivery, SinkState) {
    let mut doc = support::collector_state(&host.kv);
    let deadline = now(host) + 20 * S;
    let (delivery, state) = block_on(async {
        let mut sink = crate::support::courier(
            host,
            lcw_fetcher::config::SinkKind::Influxdb,
            settings,
            deadline,
            doc.sink.clone(),
        );
        work(&mut sink).await;
        sink.finish().await
    });
    doc.sink = state.clone();
    support::put_collector_state(&host.kv, &doc);
    (delivery, state)
}

fn lines(tag: &str, n: usize, at_ms: i64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "cryptocurrency_data,code={tag}{i} rate={i}.5 {}\n",
                at_ms + i as i64
            )
        })
        .collect()
}

fn call(
    host: &NativeHost,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> http::Response<Vec<u8>> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    block_on(routes::handle(host, &request.body(Vec::new()).unwrap()))
}

fn json(response: &http::Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// Item 1: a spool older than the retention policy used to block fresh data (400 partial write,
/// quarantine 10, the sink down, fresh lines spooled behind the backlog). Now fresh lines are
/// written first, and the expired points are a counted drop.
#[test]
fn an_expired_spool_never_blocks_fresh_data() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    influx.query(&format!(
        "CREATE RETENTION POLICY \"hour\" ON \"{}\" DURATION 1h REPLICATION 1 DEFAULT",
        influx.database
    ));
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();
    // Two days ago InfluxDB was away: 30 points went to the spool.
    let host = NativeHost::with_kv(&variables, kv.clone());
    let dead = influx_settings(&[("influx_url", "http://127.0.0.1:9"), ("influx_api", "v1")]);
    let two_days_ago = lcw_fetcher::host::Clock::unix_millis(&host) - 2 * 86_400_000;
    let (delivery, _) = with_sink(&host, &dead, async |sink| {
        sink.deliver(&crate::support::points(&lines("OLD", 30, two_days_ago)))
            .await;
    });
    assert_eq!(delivery.spooled, 30);

    let record = block_on(cycle::run(&host));
    assert!(record.total_written() > 0, "{record:?}");
    assert_eq!(record.points_quarantined, 0, "{record:?}");
    assert_eq!(
        record.points_spooled, 0,
        "fresh lines are not spooled: {record:?}"
    );
    let rows = influx.rows("cryptocurrency_data");
    assert!(
        rows.iter().any(|r| r["code"] == "BTC"),
        "fresh coins stored"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["code"].as_str().unwrap_or("").starts_with("OLD"))
    );
    let doc = support::collector_state(&kv);
    assert!(doc.sink.spool.is_empty(), "the backlog drained in one tick");
    assert_eq!(doc.sink.counters.dropped_retention, 30);
    assert_eq!(doc.sink.counters.quarantined, 0);
    let api = NativeHost::with_kv(&[("lcw_api_key", "unused")], kv.clone());
    let metrics = String::from_utf8(call(&api, Method::GET, "/metrics", None).into_body()).unwrap();
    assert!(
        metrics.contains("lcw_points_dropped_total{reason=\"retention\"} 30"),
        "{metrics}"
    );
    let stats = json(&call(&api, Method::GET, "/stats", None));
    assert_eq!(stats["influx"]["counters"]["dropped_retention"], 30);
}

/// Item 1: `dropped=N` is read, so the counters match what InfluxDB kept; no split, no
/// quarantine for points it merely dropped.
#[test]
fn a_partial_write_beyond_retention_counts_what_was_dropped() {
    let fake = LcwFake::start();
    fake.respond(
        "/api/v2/write",
        Reply::json(
            400,
            r#"{"code":"invalid","message":"partial write: points beyond retention policy dropped=3"}"#,
        ),
    );
    let settings = influx_settings(&[("influx_url", &fake.base_url)]);
    let host = NativeHost::new(&[("x", "y")]);
    let (delivery, state) = with_sink(&host, &settings, async |sink| {
        sink.deliver(&crate::support::points(&lines("A", 5, 1_700_000_000_000)))
            .await;
    });
    assert_eq!(fake.seen().len(), 1, "one request, no split");
    assert_eq!(delivery.written_total(), 2);
    assert_eq!(delivery.quarantined, 0);
    assert_eq!(delivery.spooled, 0);
    assert_eq!(state.counters.dropped_retention, 3);
    assert_eq!(state.counters.points_written, 2);
}

/// Item 1: the refusal limit holds per batch: a batch of bad lines does not cost the next batch
/// of good ones its write.
#[test]
fn the_refusal_limit_is_per_batch() {
    let fake = LcwFake::start();
    fake.respond_with("/api/v2/write", |seen| {
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        if body.contains("BAD") {
            Reply::json(
                400,
                r#"{"code":"invalid","message":"unable to parse: bad"}"#,
            )
        } else {
            Reply::json(204, "")
        }
    });
    let settings = influx_settings(&[
        ("influx_url", &fake.base_url),
        ("influx_batch_size", "20"),
        ("influx_gzip", "false"),
    ]);
    let host = NativeHost::new(&[("x", "y")]);
    let text = lines("BAD", 20, 1) + &lines("GOOD", 20, 100);
    let (delivery, _) = with_sink(&host, &settings, async |sink| {
        sink.deliver(&crate::support::points(&text)).await;
    });
    assert_eq!(delivery.written_total(), 20, "{delivery:?}");
    assert_eq!(delivery.quarantined, 10);
    assert_eq!(delivery.spooled, 10);
}

/// Item 2: an answer that means "this setting is wrong" spools everything (nothing goes to the
/// quarantine for good), and `/status` turns 503 with the reason until a write succeeds.
#[test]
fn a_wrong_setting_spools_and_turns_status_unhealthy() {
    for (status, body) in [
        (
            400,
            r#"{"code":"invalid","message":"Please provide either orgID or org"}"#,
        ),
        (
            404,
            r#"{"code":"not found","message":"bucket \"nope\" not found"}"#,
        ),
        (
            401,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        ),
    ] {
        let fake = LcwFake::start();
        fake.respond("/api/v2/write", Reply::json(status, body));
        fake.respond("/health", Reply::json(200, r#"{"status":"pass"}"#));
        let variables = vec![
            ("lcw_api_key", support::lcw_fake::API_KEY.to_owned()),
            ("lcw_base_url", fake.base_url.clone()),
            ("influx_url", fake.base_url.clone()),
            ("influx_org", "o".to_owned()),
            ("influx_token", "secret-token-9".to_owned()),
            ("cycle_deadline_ms", "20000".to_owned()),
        ];
        let host = NativeHost::new(&variables);
        let record = block_on(cycle::run(&host));
        assert_eq!(record.points_quarantined, 0, "HTTP {status}: {record:?}");
        assert!(record.points_spooled > 0, "HTTP {status}: {record:?}");
        let quarantine: Option<Quarantine> = host
            .kv
            .lock()
            .unwrap()
            .get(QUARANTINE_KEY)
            .map(|raw| serde_json::from_slice(raw).unwrap());
        assert!(quarantine.is_none_or(|q| q.total == 0), "HTTP {status}");
        let status_answer = call(&host, Method::GET, "/status", None);
        assert_eq!(
            status_answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "HTTP {status}"
        );
        let answer = json(&status_answer);
        let problems = answer["problems"].to_string();
        assert!(problems.contains("InfluxDB"), "HTTP {status}: {problems}");
        assert_eq!(
            answer["influx"]["healthy"], false,
            "HTTP {status}: {answer}"
        );
        assert!(!answer.to_string().contains("secret-token-9"));
    }
}

/// Item 2: on v1 a missing database is created once (as Telegraf does), unless switched off.
#[test]
fn a_missing_v1_database_is_created_unless_switched_off() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let fresh_db = format!("{}_created", influx.database);
    let mut variables = variables_for(&fake, &influx);
    variables.push(("influx_database", fresh_db.clone()));
    variables.push(("influx_create_database", "false".to_owned()));
    let host = NativeHost::new(&variables);
    let record = block_on(cycle::run(&host));
    assert_eq!(record.total_written(), 0, "{record:?}");
    assert!(record.points_spooled > 0);
    assert_eq!(record.points_quarantined, 0);
    assert_eq!(
        call(&host, Method::GET, "/status", None).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    variables.retain(|(k, _)| *k != "influx_create_database");
    let next = NativeHost::with_kv(&variables, host.kv.clone());
    next.advance(61 * S);
    let record = block_on(cycle::run(&next));
    assert!(record.total_written() > 0, "{record:?}");
    assert!(
        record.points_replayed > 0,
        "the spooled points follow: {record:?}"
    );
    let answer = influx.query(&format!(
        "SELECT count(rate) FROM \"{fresh_db}\"..cryptocurrency_data"
    ));
    assert!(answer["results"][0]["series"].is_array(), "{answer}");
}

/// Item 2: each API names what it needs; defaults alone are no longer a valid v2 target. Only
/// checked when InfluxDB is the sink (`influx_url` set); without it the embedded store is.
#[test]
fn validation_requires_what_each_api_needs() {
    const URL: (&str, &str) = ("influx_url", "http://127.0.0.1:8086");
    let err = Settings::from_pairs(&[("lcw_api_key", "k"), URL, ("influx_api", "v2")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`influx_org`"), "{err}");
    assert!(err.contains("`influx_token`"), "{err}");
    let err = Settings::from_pairs(&[
        ("lcw_api_key", "k"),
        URL,
        ("influx_api", "v3"),
        ("influx_database", ""),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("`influx_database`"), "{err}");
    Settings::from_pairs(&[
        ("lcw_api_key", "k"),
        URL,
        ("influx_org", "o"),
        ("influx_token", "t"),
    ])
    .unwrap();
    Settings::from_pairs(&[("lcw_api_key", "k"), URL, ("influx_api", "v1")]).unwrap();
    Settings::from_pairs(&[("lcw_api_key", "k"), ("influx_api", "v2")])
        .expect("without influx_url the embedded store needs no InfluxDB setting");
}

/// Item 4: quarantined lines can be sent again (those accepted leave it) and cleared.
#[test]
fn quarantine_can_be_retried_and_cleared() {
    let fake = LcwFake::start();
    fake.respond(
        "/api/v2/write",
        Reply::json(400, r#"{"code":"invalid","message":"field type conflict"}"#),
    );
    let settings = influx_settings(&[("influx_url", &fake.base_url), ("influx_gzip", "false")]);
    let host = NativeHost::new(&[
        ("lcw_api_key", "k"),
        ("influx_url", fake.base_url.as_str()),
        ("influx_org", "o"),
        ("influx_token", "secret-token-9"),
        ("influx_gzip", "false"),
        ("admin_token", ADMIN),
    ]);
    let (delivery, _) = with_sink(&host, &settings, async |sink| {
        sink.deliver(&crate::support::points(&lines("Q", 3, 1)))
            .await;
    });
    assert_eq!(delivery.quarantined, 3);

    // The conflict is resolved for two of the three lines.
    fake.respond_with("/api/v2/write", |seen| {
        if String::from_utf8_lossy(&seen.body).contains("Q1") {
            Reply::json(400, r#"{"code":"invalid","message":"field type conflict"}"#)
        } else {
            Reply::json(204, "")
        }
    });
    assert_eq!(
        call(&host, Method::POST, "/quarantine/retry", None).status(),
        StatusCode::UNAUTHORIZED
    );
    let retried = call(&host, Method::POST, "/quarantine/retry", Some(ADMIN));
    assert_eq!(
        retried.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(retried.body())
    );
    let answer = json(&retried);
    assert_eq!(answer["written"], 2, "{answer}");
    assert_eq!(answer["remaining"], 1, "{answer}");
    let left = json(&call(&host, Method::GET, "/quarantine", Some(ADMIN)));
    assert_eq!(left["recent"].as_array().unwrap().len(), 1, "{left}");
    assert!(left["recent"][0]["line"].as_str().unwrap().contains("Q1"));

    assert_eq!(
        call(&host, Method::POST, "/quarantine/clear", None).status(),
        StatusCode::UNAUTHORIZED
    );
    let cleared = json(&call(&host, Method::POST, "/quarantine/clear", Some(ADMIN)));
    assert_eq!(cleared["cleared"], 1, "{cleared}");
    let left = json(&call(&host, Method::GET, "/quarantine", Some(ADMIN)));
    assert_eq!(left["recent"].as_array().unwrap().len(), 0, "{left}");
}

/// A stored line that does not parse (a damaged or hand-edited segment) is quarantined with the
/// parser's reason when the spool is replayed; the lines around it are written and the segment
/// is gone. Replay reads lines back into points, so this is decided before any sink sees them.
#[test]
fn a_spooled_line_that_does_not_parse_is_quarantined_on_replay() {
    use lcw_fetcher::config::SinkKind;
    use lcw_fetcher::sink::spool;
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    let settings = Settings::from_pairs(&[("lcw_api_key", "k")]).unwrap();
    let mut state = SinkState::default();
    let text = "market_overview,currency=USD total_market_cap=1 1000\n\
                not line protocol\n\
                market_overview,currency=USD total_market_cap=3 3000\n";
    block_on(spool::append(&host, &mut state.spool, text, 1_000, 1));
    assert_eq!(state.spool.points(), 3);
    let (delivery, state) = block_on(async {
        let deadline = now(&host) + 20 * S;
        let mut sink = support::courier(&host, SinkKind::Sqlite, &settings.influx, deadline, state);
        assert!(sink.replay(deadline).await);
        sink.finish().await
    });
    assert_eq!(delivery.replayed, 2, "{delivery:?}");
    assert_eq!(delivery.quarantined, 1, "{delivery:?}");
    assert_eq!(state.counters.quarantined, 1);
    assert!(state.spool.is_empty(), "{:?}", state.spool);
    let quarantine: Quarantine =
        serde_json::from_slice(&host.kv.lock().unwrap()[QUARANTINE_KEY]).unwrap();
    assert_eq!(quarantine.recent.len(), 1);
    assert_eq!(quarantine.recent[0].line, "not line protocol");
    assert!(
        quarantine.recent[0].message.starts_with("line protocol: "),
        "{}",
        quarantine.recent[0].message
    );
}

/// NaN and infinite fields are left out before any sink sees the points, and a point left with no
/// field is dropped: counted (`points_dropped`) and said once, as the encoder counted them when
/// the points reached the sinks as line protocol.
#[test]
fn non_finite_fields_are_dropped_and_counted_before_any_sink() {
    use lcw_fetcher::config::SinkKind;
    use lcw_fetcher::point::FieldValue;
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    let settings = Settings::from_pairs(&[("lcw_api_key", "k")]).unwrap();
    let mut points = support::points(
        "market_overview,currency=USD total_market_cap=1,total_volume=2 1000\n\
         market_overview,currency=USD total_market_cap=3 2000\n",
    );
    points[0].fields[1].1 = FieldValue::Float(f64::NAN);
    points[1].fields[0].1 = FieldValue::Float(f64::INFINITY);
    let (delivery, _) = block_on(async {
        let deadline = now(&host) + 20 * S;
        let state = SinkState::default();
        let mut sink = support::courier(&host, SinkKind::Sqlite, &settings.influx, deadline, state);
        assert!(sink.deliver(&points).await);
        sink.finish().await
    });
    assert_eq!(delivery.written_total(), 1, "{delivery:?}");
    assert_eq!(delivery.dropped_points, 1);
    assert_eq!(delivery.quarantined + delivery.spooled, 0);
    assert!(
        host.log_text()
            .contains("2 non-finite fields and 1 points without any field left out"),
        "{}",
        host.log_text()
    );
}
