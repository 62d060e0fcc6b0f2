//! Delivery to InfluxDB: the v2 and v3 request shapes, every documented status code on a loopback
//! fake, splitting on 413, the quarantine on a real partial write, and the spool through a real
//! outage — nothing lost, nothing doubled.

use crate::support;

use std::io::Read as _;
use std::time::Duration;

use lcw_fetcher::config::{InfluxSettings, Settings, SinkKind};
use lcw_fetcher::cycle;
use lcw_fetcher::host::Timeouts;
use lcw_fetcher::sink::delivery::{Courier, Delivery};
use lcw_fetcher::sink::delivery::{Quarantine, SinkState};
use lcw_fetcher::sink::influxdb::write;
use lcw_fetcher::state::QUARANTINE_KEY;
use lcw_fetcher::telemetry::history::Outcome;
use support::lcw_fake::Seen;
use support::native_host::SharedKv;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

const S: Duration = Duration::from_secs(1);

fn influx_settings(pairs: &[(&str, &str)]) -> InfluxSettings {
    Settings::from_pairs(
        &[
            &[
                ("lcw_api_key", "k"),
                ("influx_org", "o"),
                ("influx_token", "t"),
            ],
            pairs,
        ]
        .concat(),
    )
    .unwrap()
    .influx
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// `n` distinct, valid lines.
fn lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("m,k=v{i} f={i}.5 {}\n", 1_700_000_000_000i64 + i as i64))
        .collect()
}

/// Runs one tick's worth of sink work (`work`) on the sink state kept in `host`'s store, and
/// saves that state back, as a tick does.
fn with_sink(
    host: &NativeHost,
    settings: &InfluxSettings,
    work: impl AsyncFnOnce(&mut Courier<'_, NativeHost>),
) -> (Delivery, SinkState) {
    let mut doc = support::collector_state(&host.kv);
    let deadline = host_now(host) + 20 * S;
    let (delivery, state) = block_on(async {
        let mut sink = crate::support::courier(
            host,
            SinkKind::Influxdb,
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

/// Delivers `text` through a sink against `settings`.
fn deliver(host: &NativeHost, settings: &InfluxSettings, text: &str) -> (Delivery, SinkState) {
    with_sink(host, settings, async |sink| {
        sink.deliver(&crate::support::points(text)).await;
    })
}

fn host_now(host: &NativeHost) -> Duration {
    use lcw_fetcher::host::Clock as _;
    host.monotonic()
}

#[test]
fn v3_requests_have_the_documented_shape() {
    let sink = LcwFake::start();
    sink.respond("/api/v3/write_lp", Reply::json(204, ""));
    let settings = influx_settings(&[
        ("influx_api", "v3"),
        ("influx_url", &sink.base_url),
        ("influx_database", "market"),
        ("influx_token", "t3"),
    ]);
    let host = NativeHost::new(&[("x", "y")]);

    let (delivery, _) = deliver(&host, &settings, &lines(3));

    assert_eq!(delivery.written["m"], 3);
    let seen = sink.seen_on("/api/v3/write_lp");
    assert_eq!(
        seen[0].url,
        "/api/v3/write_lp?db=market&precision=millisecond"
    );
    assert_eq!(seen[0].header("authorization"), Some("Token t3"));
    assert_eq!(seen[0].header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&seen[0].body), lines(3));
}

#[test]
fn gzip_can_be_switched_off() {
    let sink = LcwFake::start();
    sink.respond("/api/v2/write", Reply::json(204, ""));
    let settings = influx_settings(&[("influx_url", &sink.base_url), ("influx_gzip", "false")]);
    deliver(&NativeHost::new(&[("x", "y")]), &settings, &lines(2));
    let seen = &sink.seen_on("/api/v2/write")[0];
    assert_eq!(seen.header("content-encoding"), None);
    assert_eq!(String::from_utf8(seen.body.clone()).unwrap(), lines(2));
}

#[test]
fn batches_hold_at_most_influx_batch_size_lines() {
    let sink = LcwFake::start();
    sink.respond("/api/v2/write", Reply::json(204, ""));
    let settings = influx_settings(&[("influx_url", &sink.base_url), ("influx_batch_size", "4")]);
    let (delivery, state) = deliver(&NativeHost::new(&[("x", "y")]), &settings, &lines(10));
    let sizes: Vec<usize> = sink
        .seen()
        .iter()
        .map(|s| gunzip(&s.body).lines().count())
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(delivery.written["m"], 10);
    assert_eq!(
        (
            state.counters.batches_written,
            state.counters.points_written
        ),
        (3, 10)
    );
    assert!(state.counters.bytes_wire < state.counters.bytes_raw);
}

#[test]
fn a_413_splits_the_batch_until_it_fits() {
    let sink = LcwFake::start();
    sink.respond_with("/api/v2/write", |seen: &Seen| {
        if gunzip(&seen.body).lines().count() > 3 {
            Reply::json(413, r#"{"message":"too large"}"#)
        } else {
            Reply::json(204, "")
        }
    });
    let settings = influx_settings(&[("influx_url", &sink.base_url)]);
    let (delivery, _) = deliver(&NativeHost::new(&[("x", "y")]), &settings, &lines(10));
    assert_eq!(delivery.written["m"], 10);
    assert_eq!((delivery.spooled, delivery.quarantined), (0, 0));
    let accepted: usize = sink
        .seen()
        .iter()
        .map(|s| gunzip(&s.body).lines().count())
        .filter(|&n| n <= 3)
        .sum();
    assert_eq!(
        accepted, 10,
        "every line went out exactly once in an accepted batch"
    );
}

/// Every documented status on the v2 API: what the sink does, and how many requests it takes.
#[test]
fn each_status_code_has_its_handling() {
    struct Case {
        status: u16,
        retry_after: Option<&'static str>,
        requests: usize,
        spooled: u64,
        quarantined: u64,
    }
    let cases = [
        Case {
            status: 204,
            retry_after: None,
            requests: 1,
            spooled: 0,
            quarantined: 0,
        },
        Case {
            status: 401,
            retry_after: None,
            requests: 1,
            spooled: 4,
            quarantined: 0,
        },
        Case {
            status: 403,
            retry_after: None,
            requests: 1,
            spooled: 4,
            quarantined: 0,
        },
        Case {
            status: 404,
            retry_after: None,
            requests: 1,
            spooled: 4,
            quarantined: 0,
        },
        Case {
            status: 429,
            retry_after: Some("120"),
            requests: 1,
            spooled: 4,
            quarantined: 0,
        },
        Case {
            status: 503,
            retry_after: None,
            requests: 1,
            spooled: 4,
            quarantined: 0,
        },
        Case {
            status: 500,
            retry_after: None,
            requests: 3,
            spooled: 4,
            quarantined: 0,
        },
        // A line that is always refused ends up alone and quarantined: 1 + 2 + 2 requests.
        Case {
            status: 400,
            retry_after: None,
            requests: 7,
            spooled: 0,
            quarantined: 4,
        },
        Case {
            status: 422,
            retry_after: None,
            requests: 7,
            spooled: 0,
            quarantined: 4,
        },
    ];
    for case in cases {
        let sink = LcwFake::start();
        let mut reply = Reply::json(case.status, r#"{"code":"x","message":"as documented"}"#);
        if let Some(seconds) = case.retry_after {
            reply.headers.push(("Retry-After".into(), seconds.into()));
        }
        sink.respond("/api/v2/write", reply);
        let settings = influx_settings(&[
            ("influx_url", &sink.base_url),
            ("influx_token", "secret-token-9"),
        ]);
        let host = NativeHost::new(&[("x", "y")]);
        let (delivery, state) = deliver(&host, &settings, &lines(4));
        let status = case.status;
        assert_eq!(sink.seen().len(), case.requests, "HTTP {status}: requests");
        assert_eq!(delivery.spooled, case.spooled, "HTTP {status}: spooled");
        assert_eq!(
            delivery.quarantined, case.quarantined,
            "HTTP {status}: quarantined"
        );
        if case.spooled > 0 {
            assert!(
                state
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains(&format!("HTTP {status}")),
                "{:?}",
                state.last_error
            );
        }
        if status == 429 {
            let pause = state.not_before_ms.unwrap() - lcw_fetcher::host::Clock::unix_millis(&host);
            assert!(
                (119_000..=120_000).contains(&pause),
                "Retry-After respected: {pause} ms"
            );
        }
        assert!(!format!("{delivery:?} {state:?} {}", host.log_text()).contains("secret-token-9"));
    }
}

#[test]
fn a_server_refusing_every_line_quarantines_a_few_and_keeps_the_rest() {
    let sink = LcwFake::start();
    sink.respond(
        "/api/v2/write",
        Reply::json(400, r#"{"code":"invalid","message":"invalid precision"}"#),
    );
    let settings = influx_settings(&[("influx_url", &sink.base_url)]);
    let (delivery, state) = deliver(&NativeHost::new(&[("x", "y")]), &settings, &lines(40));
    assert_eq!(delivery.quarantined, 10);
    assert_eq!(
        delivery.spooled, 30,
        "kept for a later tick, not quarantined"
    );
    assert!(
        state
            .last_error
            .unwrap()
            .contains("check the influx_* settings")
    );
}

#[test]
fn after_a_429_nothing_is_sent_before_retry_after() {
    let sink = LcwFake::start();
    let mut reply = Reply::json(429, "{}");
    reply.headers.push(("Retry-After".into(), "60".into()));
    sink.respond("/api/v2/write", reply);
    let settings = influx_settings(&[("influx_url", &sink.base_url)]);
    let kv = SharedKv::default();
    deliver(
        &NativeHost::with_kv(&[("x", "y")], kv.clone()),
        &settings,
        &lines(2),
    );
    sink.respond("/api/v2/write", Reply::json(204, ""));

    let soon = NativeHost::with_kv(&[("x", "y")], kv.clone());
    soon.advance(30 * S);
    let (delivery, state) = deliver(&soon, &settings, &lines(1));
    assert_eq!(
        sink.seen().len(),
        1,
        "paused: the new line is spooled without a request"
    );
    assert_eq!(delivery.spooled, 1);
    assert_eq!(state.spool.points(), 3);

    let later = NativeHost::with_kv(&[("x", "y")], kv.clone());
    later.advance(61 * S);
    let (delivery, state) = with_sink(&later, &settings, async |sink| {
        sink.replay(host_now(&later) + 20 * S).await;
    });
    assert_eq!(delivery.replayed, 3);
    assert!(state.spool.is_empty());
}

fn sink_state(kv: &SharedKv) -> SinkState {
    support::collector_state(kv).sink
}

/// A real partial write: InfluxDB 1.6 refuses a field whose type conflicts with the stored one
/// and stores the rest of the batch.
#[test]
fn a_partial_write_quarantines_exactly_the_refused_lines() {
    let influx = Influx::start();
    let settings = influx_settings(&[
        ("influx_api", "v1"),
        ("influx_url", &influx.url),
        ("influx_database", &influx.database),
    ]);
    let host = NativeHost::new(&[("x", "y")]);
    deliver(&host, &settings, "m,k=a f=1i 1000\n");

    let batch = "m,k=b f=2i 2000\nm,k=c f=3.5 3000\nm,k=d f=4i 4000\nm,k=e f=\"text\" 5000\nm,k=f f=6i 6000\n";
    let (delivery, state) = deliver(&host, &settings, batch);

    assert_eq!(delivery.written["m"], 3);
    assert_eq!(delivery.quarantined, 2);
    let quarantine: Quarantine =
        serde_json::from_slice(&host.kv.lock().unwrap()[QUARANTINE_KEY]).unwrap();
    let refused: Vec<&str> = quarantine.recent.iter().map(|q| q.line.as_str()).collect();
    assert_eq!(refused, ["m,k=c f=3.5 3000", "m,k=e f=\"text\" 5000"]);
    assert!(
        quarantine.recent[0].message.contains("field type conflict"),
        "{}",
        quarantine.recent[0].message
    );
    assert_eq!(quarantine.total, 2);
    assert_eq!(state.counters.quarantined, 2);
    let keys: Vec<String> = influx
        .rows("m")
        .iter()
        .map(|r| r["k"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        ["a", "b", "d", "f"],
        "the accepted lines are stored once"
    );
}

#[test]
fn health_checks_ask_the_right_endpoint() {
    let influx = Influx::start();
    let v1 = influx_settings(&[("influx_api", "v1"), ("influx_url", &influx.url)]);
    let host = NativeHost::new(&[("x", "y")]);
    let t = Timeouts {
        connect: 2 * S,
        first_byte: 2 * S,
        total: 2 * S,
    };
    block_on(write::health(&host, &v1, t)).unwrap();

    let fake = LcwFake::start();
    fake.respond(
        "/health",
        Reply::json(503, r#"{"status":"fail","message":"not ready"}"#),
    );
    let v2 = influx_settings(&[("influx_url", &fake.base_url)]);
    assert_eq!(
        block_on(write::health(&host, &v2, t)).unwrap_err(),
        "HTTP 503: not ready"
    );
}

/// InfluxDB down for five ticks: every point waits in the spool; back up: everything replayed,
/// read back, counted, with no duplicate.
#[test]
fn an_outage_loses_nothing_and_duplicates_nothing() {
    let fake = LcwFake::start();
    let mut influx = Influx::own();
    let variables = variables_for(&fake, &influx);
    let kv = SharedKv::default();
    let tick = |at: Duration| {
        let host = NativeHost::with_kv(&variables, kv.clone());
        host.advance(at);
        block_on(cycle::run(&host))
    };

    influx.stop();
    let mut spooled = 0;
    for i in 0..5u32 {
        let record = tick(61 * S * i);
        assert_eq!(record.outcome, Outcome::Error, "{:?}", record.errors);
        assert!(
            record
                .errors
                .iter()
                .any(|e| e.contains("InfluxDB write: connection failed")),
            "{:?}",
            record.errors
        );
        spooled += record.points_spooled;
    }
    // 3 coins, the overview and the exchange each tick (the exchange served by the cache).
    assert_eq!(spooled, 25);
    assert_eq!(sink_state(&kv).spool.points(), 25);

    influx.restart();
    let record = tick(61 * S * 5);
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert_eq!(record.points_replayed, 25);
    assert!(sink_state(&kv).spool.is_empty());
    assert!(
        !kv.lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("lcw/v1/spool/")),
        "no segment left behind"
    );

    // Six ticks of coins and overview; the exchange answer was cached all along: one point.
    assert_eq!(influx.rows("cryptocurrency_data").len(), 3 * 6);
    assert_eq!(influx.rows("market_overview").len(), 6);
    assert_eq!(influx.rows("exchange_data").len(), 1);
}

#[test]
fn a_full_spool_evicts_its_oldest_points_and_says_so() {
    let sink = LcwFake::start();
    sink.respond("/api/v2/write", Reply::json(503, ""));
    let settings = InfluxSettings {
        spool_max_points: 1_000,
        ..influx_settings(&[("influx_url", &sink.base_url)])
    };
    let kv = SharedKv::default();
    let mut evicted = 0;
    for round in 0..8 {
        let host = NativeHost::with_kv(&[("x", "y")], kv.clone());
        host.advance(Duration::from_secs(600 * round));
        let (delivery, _) = with_sink(&host, &settings, async |sink| {
            sink.deliver(&crate::support::points(&lines(150))).await;
        });
        evicted += delivery.evicted;
        if delivery.evicted > 0 {
            assert!(
                host.log_text()
                    .contains("spool full (spool_max_points = 1000)"),
                "{}",
                host.log_text()
            );
        }
    }
    let state = sink_state(&kv);
    assert_eq!(
        8 * 150,
        state.spool.points() + evicted,
        "every point is either kept or counted"
    );
    assert!(
        evicted > 0 && state.spool.points() <= 1_000,
        "{} kept, {evicted} evicted",
        state.spool.points()
    );
    assert_eq!(state.counters.evicted, evicted);
    assert!(
        state.spool.segments.len() > 1,
        "segments of at most a tenth of the bound"
    );
}

/// A tick whose points waited out InfluxDB's pause ended `error` with no error at all: its record
/// said nothing of why every point went to the spool. The pause is said, once, with its end.
#[test]
fn points_kept_back_by_a_pause_say_why_in_the_ticks_errors() {
    let sink = LcwFake::start();
    let mut reply = Reply::json(429, "{}");
    reply.headers.push(("Retry-After".into(), "60".into()));
    sink.respond("/api/v2/write", reply);
    let settings = influx_settings(&[("influx_url", &sink.base_url)]);
    let kv = SharedKv::default();
    deliver(
        &NativeHost::with_kv(&[("x", "y")], kv.clone()),
        &settings,
        &lines(2),
    );
    let soon = NativeHost::with_kv(&[("x", "y")], kv.clone());
    soon.advance(30 * S);
    let (delivery, _) = deliver(&soon, &settings, &lines(3));
    assert_eq!(delivery.spooled, 3);
    let said: Vec<&String> = delivery
        .errors
        .iter()
        .filter(|e| e.contains("pause"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", delivery.errors);
    assert!(said[0].contains("InfluxDB"), "{said:?}");
    assert!(said[0].contains("3 lines"), "{said:?}");
}
