//! The LCW client and its resilience rules against the loopback fake: every endpoint, every
//! error class, retries and their waits (read from the host's clock, not wall time), the breaker
//! across ticks, the rate limiter, the credit reserve, hung servers.

use crate::support;

use std::time::{Duration, Instant};

use lcw_fetcher::config::{HttpUrl, Secret, Settings};
use lcw_fetcher::cycle;
use lcw_fetcher::guard::{Guard, ResilienceState};
use lcw_fetcher::host::{Clock, Timeouts};
use lcw_fetcher::lcw::{self, Client, Endpoint, LcwError, NotSentReason};
use lcw_fetcher::remote::ErrorClass;
use lcw_fetcher::resilience::BreakerState;
use lcw_fetcher::telemetry::history::Outcome;
use support::lcw_fake::{API_KEY, TICK_PATHS};
use support::native_host::SharedKv;
use support::{Influx, LcwFake, NativeHost, Reply, block_on, variables_for};

const S: Duration = Duration::from_secs(1);

fn timeouts() -> Timeouts {
    Timeouts {
        connect: 2 * S,
        first_byte: 2 * S,
        total: 2 * S,
    }
}

fn client_call<T>(
    fake: &LcwFake,
    key: &str,
    f: impl AsyncFnOnce(&Client<'_, NativeHost>) -> T,
) -> T {
    let host = NativeHost::new(&[("lcw_api_key", key)]);
    let url = HttpUrl::parse(&fake.base_url).unwrap();
    let key = Secret::new(key);
    let client = Client::new(&host, &url, &key);
    block_on(f(&client))
}

fn resilience(kv: &SharedKv) -> ResilienceState {
    support::collector_state(kv).resilience
}

#[test]
fn every_endpoint_parses_its_documented_answer() {
    let fake = LcwFake::start();
    let usd = "USD";
    client_call(&fake, API_KEY, async |c| {
        c.status(timeouts()).await.unwrap();
        let credits = c.credits(timeouts()).await.unwrap();
        assert_eq!(
            (credits.daily_credits_remaining, credits.daily_credits_limit),
            (Some(4321.0), Some(10000.0))
        );
        let overview = c
            .overview(&lcw::CurrencyRequest { currency: usd }, timeouts())
            .await
            .unwrap();
        assert_eq!(overview.btc_dominance, Some(0.5932948858748709));
        let list = c
            .coins_list(&lcw::CoinsListRequest::top_by_rank(usd, 0, 10), timeouts())
            .await
            .unwrap();
        assert_eq!(list[1].code, "ETH");
        let codes = vec!["BTC".to_owned(), "GRIN".to_owned()];
        let map = c
            .coins_map(&lcw::CoinsMapRequest::codes(usd, &codes), timeouts())
            .await
            .unwrap();
        assert_eq!(map[2].rate, Some(0.07354315748650457));
        let single = lcw::SingleRequest {
            currency: usd,
            code: "ETH",
            meta: true,
        };
        let eth = c.coin_single(&single, timeouts()).await.unwrap();
        assert_eq!(
            (eth.code.as_str(), eth.name.as_deref(), eth.rank),
            ("ETH", Some("Ethereum"), Some(2.0))
        );
        assert_eq!(
            (eth.total_supply, eth.all_time_high_usd),
            (None, Some(2036.3088032624153))
        );
        let history_request = lcw::CoinHistoryRequest {
            currency: usd,
            code: "BTC",
            start: 1,
            end: 2,
            meta: true,
        };
        let history = c.coin_history(&history_request, timeouts()).await.unwrap();
        assert_eq!(
            (history.coin.max_supply, history.history.len()),
            (Some(21e6), 2)
        );
        assert_eq!(history.history[0].date, Some(1617035100000.0));
        let exchanges = c
            .exchanges_list(
                &lcw::ExchangesListRequest::top_by_volume(usd, 20),
                timeouts(),
            )
            .await
            .unwrap();
        assert_eq!(
            (exchanges[0].code.as_str(), exchanges[0].visitors),
            ("binance", Some(779440.0))
        );
        let gemini = lcw::SingleRequest {
            currency: usd,
            code: "gemini",
            meta: true,
        };
        let exchange = c.exchange_single(&gemini, timeouts()).await.unwrap();
        assert_eq!(
            (exchange.us_compliant, exchange.depth),
            (Some(true), Some(23151.76758456139))
        );
    });

    // Bodies as LCW documents them; the key on every call but /status.
    let seen = fake.seen();
    assert_eq!(seen.len(), 9);
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("x-api-key"),
            (request.path != "/status").then_some(API_KEY),
            "{}",
            request.path
        );
    }
    assert_eq!(
        fake.seen_on("/coins/map")[0].json()["codes"],
        serde_json::json!(["BTC", "GRIN"])
    );
    assert_eq!(fake.seen_on("/exchanges/list")[0].json()["sort"], "volume");
    assert_eq!(fake.seen_on("/credits")[0].json(), serde_json::json!({}));
}

#[test]
fn every_error_class_is_recognised_and_the_key_never_shows() {
    let fake = LcwFake::start();
    let mut cases: Vec<(Reply, ErrorClass, &str)> = vec![
        (
            Reply::json(500, "oops"),
            ErrorClass::Transient,
            "HTTP 500: oops",
        ),
        (
            Reply::documented_error(503),
            ErrorClass::Transient,
            "HTTP 503: Service Unavailable: We're temporarily offline",
        ),
        (
            Reply::documented_error(401),
            ErrorClass::Auth,
            "HTTP 401: Unauthorized",
        ),
        (
            Reply::json(403, r#"{"error":{"code":403,"status":"Forbidden"}}"#),
            ErrorClass::Auth,
            "HTTP 403: Forbidden",
        ),
        (
            Reply::json(400, ""),
            ErrorClass::Permanent,
            "HTTP 400: Bad Request",
        ),
        (
            Reply::json(404, "{}"),
            ErrorClass::Permanent,
            "HTTP 404: {}",
        ),
        (
            Reply::json(200, r#"{"cap":"big"}"#),
            ErrorClass::Malformed,
            "/overview: unexpected response body: invalid type: string \"big\"",
        ),
        (
            Reply::json(200, "[]").delayed(3 * S),
            ErrorClass::Transient,
            "/overview: response timed out",
        ),
    ];
    let mut limited = Reply::documented_error(429);
    limited.headers.push(("Retry-After".into(), "7".into()));
    cases.push((
        limited,
        ErrorClass::RateLimited,
        "HTTP 429: Too Many Requests",
    ));

    for (reply, class, message) in cases {
        fake.respond("/overview", reply.clone());
        let error = client_call(&fake, "very-secret-key-1", async |c| {
            c.overview(&lcw::CurrencyRequest { currency: "USD" }, timeouts())
                .await
        })
        .unwrap_err();
        assert_eq!(error.class(), class, "{error}");
        assert!(
            error.to_string().contains(message),
            "{error} lacks {message}"
        );
        if class == ErrorClass::RateLimited {
            assert_eq!(error.retry_after(), Some(7 * S));
        }
        assert!(!format!("{error} {error:?}").contains("very-secret-key-1"));
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = NativeHost::new(&[("x", "y")]);
    let url = HttpUrl::parse(&format!("http://127.0.0.1:{closed}")).unwrap();
    let key = Secret::new("very-secret-key-1");
    let error = block_on(Client::new(&host, &url, &key).status(timeouts())).unwrap_err();
    assert!(matches!(error, LcwError::Transport { .. }), "{error:?}");
    assert_eq!(
        (error.class(), error.status_label().as_str()),
        (ErrorClass::Transient, "connect_error")
    );
}

#[test]
fn transient_failures_are_retried_with_jittered_capped_backoff() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond("/overview", Reply::documented_error(503));
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));

    assert_eq!(record.outcome, Outcome::Partial);
    assert_eq!(
        fake.seen_on("/overview").len(),
        4,
        "one attempt and 3 retries"
    );
    assert_eq!(record.lcw.retries, 3);
    let slept = host.slept();
    assert_eq!(slept.len(), 3);
    for (wait, ceiling) in slept.iter().zip([2 * S, 4 * S, 8 * S]) {
        assert!(
            *wait < ceiling,
            "{wait:?} should be a full-jitter draw below {ceiling:?}"
        );
    }
    assert!(
        slept.iter().any(|w| *w > Duration::from_millis(100)),
        "jitter should not be all ~0: {slept:?}"
    );
    let statuses: Vec<&str> = record
        .lcw
        .attempts
        .iter()
        .filter(|a| a.endpoint == "/overview")
        .map(|a| a.status.as_str())
        .collect();
    assert_eq!(statuses, ["503"; 4]);
}

#[test]
fn permanent_and_malformed_answers_are_not_retried() {
    for reply in [Reply::json(400, "{}"), Reply::json(200, "{\"cap\":")] {
        let fake = LcwFake::start();
        let influx = Influx::start();
        fake.respond("/overview", reply);
        let host = NativeHost::new(&variables_for(&fake, &influx));
        let record = block_on(cycle::run(&host));
        assert_eq!(record.outcome, Outcome::Partial);
        assert_eq!(fake.seen_on("/overview").len(), 1);
        assert!(host.slept().is_empty());
    }
}

#[test]
fn retry_after_is_honoured_and_a_rate_limited_call_counts_once_for_the_breaker() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut limited = Reply::documented_error(429);
    limited.headers.push(("Retry-After".into(), "3".into()));
    fake.respond("/overview", limited);
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));

    assert_eq!(host.slept(), [3 * S, 3 * S, 3 * S]);
    assert_eq!(fake.seen_on("/overview").len(), 4);
    assert!(record.errors.iter().any(|e| e.contains("HTTP 429")));
    assert_eq!(
        resilience(&host.kv).breaker,
        BreakerState::Closed {
            consecutive_failures: 1
        },
        "one failed call, not four failed attempts"
    );
}

#[test]
fn a_retry_that_cannot_finish_before_the_deadline_is_not_started() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut limited = Reply::documented_error(429);
    limited.headers.push(("Retry-After".into(), "30".into()));
    fake.respond("/overview", limited);
    let mut variables = variables_for(&fake, &influx);
    variables.push(("cycle_deadline_ms", "20000".into()));
    let host = NativeHost::new(&variables);

    let record = block_on(cycle::run(&host));

    assert!(
        host.slept().is_empty(),
        "a 30 s wait cannot fit a 20 s tick"
    );
    assert_eq!(fake.seen_on("/overview").len(), 1);
    let error = record
        .errors
        .iter()
        .find(|e| e.contains("/overview"))
        .unwrap();
    assert!(
        error.ends_with("not retried: no time left before the cycle deadline"),
        "{error}"
    );
    assert_eq!(record.lcw.not_sent["deadline"], 1);
}

/// Settings without hedging (as the native host's variables): its virtual sleep ends at once,
/// so a hedge timer would always beat the fake (hedging is tested in `tests/lcw/hedging.rs`).
fn settings(pairs: &[(&str, &str)]) -> Settings {
    let base = [
        ("influx_org", "o"),
        ("influx_token", "t"),
        ("lcw_hedge_after_ms", "0"),
    ];
    Settings::from_pairs(&[&base[..], pairs].concat()).unwrap()
}

#[test]
fn the_breaker_opens_after_exactly_five_consecutive_transient_failures() {
    let fake = LcwFake::start();
    fake.respond("/overview", Reply::documented_error(503));
    let host = NativeHost::new(&[("x", "y")]);
    let settings = settings(&[
        ("lcw_api_key", API_KEY),
        ("lcw_base_url", &fake.base_url),
        ("retry_max", "0"),
    ]);
    let client = Client::new(&host, &settings.lcw_base_url, &settings.lcw_api_key);
    let guard = Guard::new(&host, &settings, 40 * S, ResilienceState::default());
    let request = lcw::CurrencyRequest { currency: "USD" };

    let mut errors = Vec::new();
    for _ in 0..7 {
        errors.push(
            block_on(guard.call(Endpoint::Overview, |t| client.overview(&request, t))).unwrap_err(),
        );
    }

    assert_eq!(
        fake.seen_on("/overview").len(),
        5,
        "the 6th and 7th calls must not go out"
    );
    assert!(
        errors[..5]
            .iter()
            .all(|e| e.class() == ErrorClass::Transient)
    );
    assert!(errors[5..].iter().all(|e| matches!(
        e,
        LcwError::NotSent {
            reason: NotSentReason::BreakerOpen,
            ..
        }
    )));
    let (state, report) = guard.finish();
    assert!(matches!(state.breaker, BreakerState::Open { .. }));
    assert_eq!(
        state.transitions[0].reason,
        "5 consecutive transient failures"
    );
    assert_eq!(report.not_sent["breaker_open"], 2);
}

/// Every data endpoint fails; the breaker must open, stay open in the next tick (a new host on
/// the same store), let one probe through after the cool-down, and close or re-open on its result.
fn failing_everywhere(fake: &LcwFake) {
    for path in TICK_PATHS {
        fake.respond(path, Reply::documented_error(503));
    }
}

/// Moves a fresh host's clocks to `extra` past the breaker's `until_ms`.
fn advance_past(host: &NativeHost, until_ms: i64, extra: Duration) {
    host.advance(Duration::from_millis((until_ms - host.unix_millis()).max(0) as u64) + extra);
}

fn breaker_until(kv: &SharedKv) -> i64 {
    match resilience(kv).breaker {
        BreakerState::Open { until_ms, .. } => until_ms,
        other => panic!("breaker should be open: {other:?}"),
    }
}

fn healthy_again(fake: &LcwFake) {
    for path in TICK_PATHS {
        fake.restore(path);
    }
}

#[test]
fn the_breaker_state_survives_between_ticks_and_a_probe_closes_it() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    // All six calls of a tick start together, so the half-open probe is deterministic.
    variables.push(("max_concurrent_requests", "8".into()));
    failing_everywhere(&fake);
    let kv = SharedKv::default();

    let first = NativeHost::with_kv(&variables, kv.clone());
    let record = block_on(cycle::run(&first));
    assert_eq!(record.outcome, Outcome::Error);
    let BreakerState::Open { until_ms, .. } = resilience(&kv).breaker else {
        panic!("breaker should be open")
    };
    let calls_so_far = fake.seen().len();

    let second = NativeHost::with_kv(&variables, kv.clone());
    second.advance(10 * S);
    let record = block_on(cycle::run(&second));
    assert_eq!(record.outcome, Outcome::SkippedBreaker);
    assert_eq!(
        fake.seen().len(),
        calls_so_far,
        "no LCW call while the breaker is open"
    );

    healthy_again(&fake);
    let third = NativeHost::with_kv(&variables, kv.clone());
    advance_past(&third, until_ms, 2 * S);
    let record = block_on(cycle::run(&third));
    let calls: Vec<String> = fake.seen()[calls_so_far..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        calls.len(),
        6,
        "the probe, then the rest of the plan: {calls:?}"
    );
    assert_eq!(calls[0], "/coins/list", "the probe is a coin page, alone");
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    assert!(record.lcw.not_sent.is_empty(), "{:?}", record.lcw.not_sent);
    let state = resilience(&kv);
    assert_eq!(
        state.breaker,
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    let path: Vec<(&str, &str)> = state
        .transitions
        .iter()
        .map(|t| (t.from.as_str(), t.to.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed")
        ]
    );

    let fourth = NativeHost::with_kv(&variables, kv.clone());
    advance_past(&fourth, until_ms, 3 * S);
    assert_eq!(block_on(cycle::run(&fourth)).outcome, Outcome::Success);
}

#[test]
fn a_failed_probe_reopens_the_breaker_for_another_cool_down() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let variables = variables_for(&fake, &influx);
    failing_everywhere(&fake);
    let kv = SharedKv::default();
    block_on(cycle::run(&NativeHost::with_kv(&variables, kv.clone())));
    let calls_so_far = fake.seen().len();

    let later = NativeHost::with_kv(&variables, kv.clone());
    advance_past(&later, breaker_until(&kv), S);
    block_on(cycle::run(&later));

    assert_eq!(
        fake.seen().len(),
        calls_so_far + 1,
        "one probe, not retried"
    );
    let state = resilience(&kv);
    let BreakerState::Open { since_ms, until_ms } = state.breaker else {
        panic!("{:?}", state.breaker)
    };
    assert_eq!(until_ms - since_ms, 30_000);
    assert_eq!(state.transitions.back().unwrap().reason, "probe failed");
}

#[test]
fn a_wrong_key_stops_the_cycle_without_hammering() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    variables[0].1 = "not-the-key".into();
    let kv = SharedKv::default();

    let record = block_on(cycle::run(&NativeHost::with_kv(&variables, kv.clone())));

    assert_eq!(record.outcome, Outcome::Error);
    // No call is retried, and once a 401 has opened the breaker the calls not yet started
    // are not sent at all.
    for path in [
        "/credits",
        "/coins/list",
        "/coins/map",
        "/overview",
        "/exchanges/list",
    ] {
        assert!(
            fake.seen_on(path).len() <= 1,
            "{path}: a 401 is never retried"
        );
    }
    assert!(
        record.lcw.retries == 0 && record.lcw.not_sent.contains_key("breaker_open"),
        "{:?}",
        record.lcw
    );
    assert!(matches!(resilience(&kv).breaker, BreakerState::Open { .. }));
    assert_eq!(
        resilience(&kv).transitions[0].reason,
        "authentication failed"
    );

    let calls = fake.seen().len();
    let next = NativeHost::with_kv(&variables, kv);
    next.advance(10 * S);
    assert_eq!(block_on(cycle::run(&next)).outcome, Outcome::SkippedBreaker);
    assert_eq!(fake.seen().len(), calls);
}

#[test]
fn a_hung_server_cannot_stretch_a_call_past_its_timeout_or_the_tick_past_its_deadline() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond("/coins/list", Reply::json(200, "[]").delayed(20 * S));
    let mut variables = variables_for(&fake, &influx);
    variables.push(("cycle_deadline_ms", "4000".into()));
    variables.push(("lcw_response_timeout_ms", "1500".into()));
    let host = NativeHost::new(&variables);

    let started = Instant::now();
    let record = block_on(cycle::run(&host));
    let real = started.elapsed();

    let timeouts: Vec<_> = record
        .lcw
        .attempts
        .iter()
        .filter(|a| a.endpoint == "/coins/list")
        .collect();
    assert!(
        !timeouts.is_empty() && timeouts.iter().all(|a| a.status == "timeout"),
        "{timeouts:?}"
    );
    // Each attempt ends at its 1.5 s timeout (slack for a loaded machine), and the tick by its
    // 4 s deadline (virtual backoff waits included).
    assert!(
        timeouts.iter().all(|a| a.duration_ms < 2_500),
        "{timeouts:?}"
    );
    assert!(
        record.duration_ms < 4_000 + 1_000,
        "{} ms",
        record.duration_ms
    );
    assert!(real < 6 * S, "{real:?}");
    assert!(
        record
            .errors
            .iter()
            .any(|e| e.contains("/coins/list: response timed out")),
        "{:?}",
        record.errors
    );
    assert_eq!(
        influx.rows("market_overview").len(),
        1,
        "the rest of the tick still lands"
    );
}

#[test]
fn the_rate_limiter_spaces_calls_within_and_across_ticks() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    let mut variables = variables_for(&fake, &influx);
    variables.push(("requests_per_minute", "6".into())); // one token per 10 s, burst of 1
    variables.push(("cycle_deadline_ms", "50000".into())); // LCW calls until 45 s
    variables.push(("tracked_coins", "".into()));
    variables.push(("max_exchanges_per_fetch", "0".into()));
    let kv = SharedKv::default();

    let first = NativeHost::with_kv(&variables, kv.clone());
    let record = block_on(cycle::run(&first));
    assert_eq!(record.outcome, Outcome::Success, "{:?}", record.errors);
    // Four calls (credits, status, coins, overview): the first from the full bucket, each
    // other one 10 s after the one before.
    let slept = first.slept();
    assert_eq!(slept.len(), 3, "{slept:?}");
    let waited: Duration = slept.iter().sum();
    assert!(
        waited.abs_diff(30 * S) < Duration::from_millis(100),
        "{slept:?}"
    );
    assert!(record.duration_ms >= 30_000, "{} ms", record.duration_ms);

    // A minute later coins and overview are due again. The bucket holds one token (its burst);
    // the second call would wait 10 s, past this tick's LCW deadline (10 s − 2 s write reserve).
    variables.push(("cycle_deadline_ms", "10000".into()));
    let calls = fake.seen().len();
    let second = NativeHost::with_kv(&variables, kv);
    second.advance(Duration::from_millis(record.duration_ms) + 62 * S);
    let record = block_on(cycle::run(&second));
    assert_eq!(record.lcw.not_sent["rate_limit"], 1, "{:?}", record.lcw);
    assert_eq!(fake.seen().len(), calls + 1);
    assert_eq!(record.outcome, Outcome::Partial);
    assert!(second.log_text().contains("the rate limit asks for a"));
}

#[test]
fn below_the_credit_reserve_extra_pages_are_dropped() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/credits",
        Reply::json(
            200,
            r#"{"dailyCreditsRemaining":400,"dailyCreditsLimit":10000}"#,
        ),
    );
    let mut variables = variables_for(&fake, &influx);
    variables.push(("max_coins_per_fetch", "300".into()));
    let kv = SharedKv::default();

    block_on(cycle::run(&NativeHost::with_kv(&variables, kv.clone())));
    assert_eq!(
        fake.seen_on("/coins/list").len(),
        3,
        "credits unknown at the first plan"
    );

    let next = NativeHost::with_kv(&variables, kv.clone());
    next.advance(60 * S);
    block_on(cycle::run(&next));
    assert_eq!(
        fake.seen_on("/coins/list").len(),
        4,
        "one page only below the reserve"
    );
    assert!(
        next.log_text()
            .contains("400 of 10000 daily credits left, at or below the 5 % reserve")
    );
    assert_eq!(resilience(&kv).credits.unwrap().remaining, 400.0);
}

#[test]
fn a_plan_above_the_daily_limit_is_warned_about() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond(
        "/credits",
        Reply::json(
            200,
            r#"{"dailyCreditsRemaining":900,"dailyCreditsLimit":1000}"#,
        ),
    );
    let host = NativeHost::new(&variables_for(&fake, &influx));
    block_on(cycle::run(&host));
    assert!(
        host.log_text().contains(
            "these settings plan 5472 LCW calls a day, above the daily limit of 1000 credits"
        ),
        "{}",
        host.log_text()
    );
}

/// Two calls failing with all their retries are two failures, not eight: one LCW blip does not
/// open the breaker.
#[test]
fn the_breaker_counts_failed_calls_not_attempts() {
    let fake = LcwFake::start();
    let influx = Influx::start();
    fake.respond("/overview", Reply::documented_error(503));
    fake.respond("/exchanges/list", Reply::documented_error(503));
    let host = NativeHost::new(&variables_for(&fake, &influx));

    let record = block_on(cycle::run(&host));

    assert!(fake.seen_on("/overview").len() >= 3, "retried");
    assert!(fake.seen_on("/exchanges/list").len() >= 3, "retried");
    assert_eq!(record.outcome, Outcome::Partial);
    assert_eq!(
        resilience(&host.kv).breaker,
        BreakerState::Closed {
            consecutive_failures: 2
        }
    );
}
