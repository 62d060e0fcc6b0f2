//! What the HTTP routes take in and give out, as a hostile or merely unusual client meets them:
//! `/status` makes at most one live LCW check per TTL however many ask at once, and a claim
//! its maker never finished expires with the TTL; a CSV cell never becomes a spreadsheet
//! formula, whichever separator the spreadsheet splits on; the `Bearer` scheme is matched in
//! any case, the token still exactly; an impossible date or time is a 400 that names it.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use http::{Method, Request};
use lcw_fetcher::host::Clock;
use lcw_fetcher::routes;
use lcw_fetcher::sink::sqlite::Db;
use serde_json::Value;

use crate::support::lcw_fake::{self, fixture};
use crate::support::{LcwFake, NativeHost, Reply, block_on};

fn get(host: &NativeHost, uri: &str, authorization: Option<&str>) -> (u16, String) {
    let mut request = Request::builder().method(Method::GET).uri(uri);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = block_on(routes::handle(host, &request.body(Vec::new()).unwrap()));
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

fn status_live(host: &NativeHost) -> Value {
    let (_, body) = get(host, "/status", None);
    let body: Value = serde_json::from_str(&body).unwrap();
    body["lcw"]["live"].clone()
}

/// LCW's `/status` answers slowly, so that every concurrent request reads the checks document
/// before the first check is saved.
fn slow_status_fake(delay: Duration) -> (LcwFake, Vec<(&'static str, String)>) {
    let fake = LcwFake::start();
    fake.respond(
        "/status",
        Reply::json(200, fixture("status.json")).delayed(delay),
    );
    let variables = vec![
        ("lcw_api_key", lcw_fake::API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("sink", "sqlite".to_owned()),
        ("cache_ttl_status_s", "120".to_owned()),
    ];
    (fake, variables)
}

#[test]
fn eight_concurrent_status_requests_make_one_live_check() {
    let (fake, variables) = slow_status_fake(Duration::from_millis(300));
    // Store calls that take a while let the eight requests interleave.
    let host = NativeHost::new(&variables).with_kv_jitter(Duration::from_millis(20));
    assert_eq!(status_live(&host), true, "the first request checks");
    // The check is stale for every request alike.
    host.advance(Duration::from_secs(121));
    let start = Barrier::new(8);
    let live: Vec<Value> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    status_live(&host)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        fake.seen_on("/status").len(),
        2,
        "the first check, then one of 8 concurrent /status requests: {live:?}"
    );
    assert_eq!(
        live.iter().filter(|l| **l == Value::Bool(true)).count(),
        1,
        "{live:?}"
    );
}

#[test]
fn an_unfinished_status_check_blocks_live_checks_for_one_ttl_only() {
    let (fake, variables) = slow_status_fake(Duration::from_secs(2));
    let holder = NativeHost::new(&variables);
    std::thread::scope(|scope| {
        // A check that has not come back (its maker may have died): its claim stands...
        let pending = scope.spawn(|| status_live(&holder));
        let began = Instant::now();
        while fake.seen_on("/status").is_empty() {
            assert!(began.elapsed() < Duration::from_secs(5), "no check began");
            std::thread::sleep(Duration::from_millis(5));
        }
        let meanwhile = NativeHost::with_kv(&variables, holder.kv.clone());
        assert_eq!(status_live(&meanwhile), false);
        assert_eq!(
            fake.seen_on("/status").len(),
            1,
            "no second check meanwhile"
        );
        // ...until the TTL has passed: then a request checks again.
        let later = NativeHost::with_kv(&variables, holder.kv.clone());
        later.advance(Duration::from_secs(121));
        assert_eq!(status_live(&later), true);
        assert_eq!(fake.seen_on("/status").len(), 2);
        assert_eq!(pending.join().unwrap(), true);
    });
}

#[test]
fn status_claims_do_not_pile_up_in_the_store() {
    let (_fake, variables) = slow_status_fake(Duration::ZERO);
    let first = NativeHost::new(&variables);
    for period in 0..10 {
        let host = NativeHost::with_kv(&variables, first.kv.clone());
        host.advance(Duration::from_secs(121 * period));
        assert_eq!(status_live(&host), true, "period {period}");
    }
    let claims: Vec<String> = first
        .kv
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(lcw_fetcher::state::STATUS_CLAIMS_PREFIX))
        .cloned()
        .collect();
    assert!(claims.len() <= 2, "{claims:?}");
}

/// The cells `/api/v1/coins?format=csv` gives for a coin whose name and code are `name`.
fn csv_of_a_coin_named(name_tag: &str) -> String {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    let now = host.unix_millis();
    let lines = format!(
        "cryptocurrency_data,code=EVIL,currency=USD,name={name_tag} rate=-0.5,delta_24h=0.5,rank=1i {now}\n"
    );
    block_on(async {
        Db::open(&host)
            .await
            .unwrap()
            .write_points(&crate::support::points(&lines))
            .await
    })
    .unwrap();
    let (status, body) = get(&host, "/api/v1/coins?format=csv", None);
    assert_eq!(status, 200, "{body}");
    body
}

/// The cells a spreadsheet sees when it splits the lines on `separator` and honours quotes
/// only where a cell begins, as spreadsheets do.
fn cells(csv: &str, separator: char) -> Vec<String> {
    let mut out = Vec::new();
    for line in csv.split("\r\n").filter(|l| !l.is_empty()) {
        let (mut cell, mut at_start, mut quoted) = (String::new(), true, false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if quoted {
                if c != '"' {
                    cell.push(c);
                } else if chars.next_if_eq(&'"').is_some() {
                    cell.push('"');
                } else {
                    quoted = false;
                }
            } else if c == separator {
                out.push(std::mem::take(&mut cell));
                at_start = true;
                continue;
            } else if at_start && c == '"' {
                quoted = true;
            } else {
                cell.push(c);
            }
            at_start = false;
        }
        out.push(cell);
    }
    out
}

#[test]
fn no_csv_cell_starts_a_formula_whatever_the_separator() {
    for name in [
        r"Evil;\=1+2",
        r"Evil\,\=1+2",
        "Evil|+1",
        "Evil\t@SUM(A1)",
        r"\=HYPERLINK(x)",
        "-1+2",
        "Semi;colon",
    ] {
        let body = csv_of_a_coin_named(name);
        for separator in [',', ';', '\t', '|'] {
            // A number is read as a number (the rate of -0.5 is one), not as a formula.
            for cell in cells(&body, separator)
                .into_iter()
                .filter(|c| c.parse::<f64>().is_err())
            {
                let first = cell.trim_start_matches(' ').chars().next();
                assert!(
                    !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r')),
                    "name {name:?}, split on {separator:?}: cell {cell:?} starts a formula in\n{body}"
                );
            }
        }
    }
}

#[test]
fn csv_quotes_text_with_a_separator_and_keeps_numbers_numbers() {
    let body = csv_of_a_coin_named(r"Evil;\=1+2");
    let header: Vec<&str> = body.lines().next().unwrap().split(',').collect();
    let row = body.split("\r\n").nth(1).unwrap();
    assert!(
        row.contains(",\"Evil;'=1+2\","),
        "the name is one quoted, guarded cell: {row}"
    );
    let at = |column: &str| header.iter().position(|c| *c == column).unwrap();
    let cells = cells(&body, ',');
    let row_cells = &cells[header.len()..];
    assert_eq!(
        row_cells[at("rate")],
        "-0.5",
        "a negative number stays a number"
    );
    assert_eq!(row_cells[at("change_24h")], "-50", "{row}");
    assert_eq!(row_cells[at("name")], "Evil;'=1+2");
}

#[test]
fn the_bearer_scheme_is_matched_in_any_case_the_token_exactly() {
    let host = NativeHost::new(&[("lcw_api_key", "k"), ("admin_token", "right-token")]);
    for accepted in [
        "Bearer right-token",
        "bearer right-token",
        "BEARER right-token",
        "bEaReR right-token",
        "Bearer   right-token",
    ] {
        let (status, body) = get(&host, "/quarantine", Some(accepted));
        assert_eq!(status, 200, "{accepted:?}: {body}");
    }
    for refused in [
        "bearer wrong-token",
        "bearer right-toke",
        "bearer right-token2",
        "bearer Right-token",
        "bearer ",
        "bearer",
        "bearerright-token",
        "Basic right-token",
        "Token right-token",
        "right-token",
        "",
    ] {
        let (status, body) = get(&host, "/quarantine", Some(refused));
        assert_eq!(status, 401, "{refused:?}: {body}");
    }
    assert_eq!(get(&host, "/quarantine", None).0, 401);
}

#[test]
fn an_impossible_date_or_time_is_a_400_naming_it() {
    let host = NativeHost::new(&[("lcw_api_key", "k")]);
    // Each beside a `from` or `to` that would make a valid range of the date it is taken for.
    for (parameter, value, other) in [
        ("from", "2025-02-31", "to=2025-03-10"),
        ("from", "2025-02-29", "to=2025-03-10"),
        ("from", "2023-02-29T00:00Z", "to=2023-03-10"),
        ("from", "2100-02-29", "to=2100-03-10"),
        ("from", "2025-04-31T12:00:00Z", "to=2025-05-10"),
        ("from", "2025-13-01", "to=2025-12-31"),
        ("from", "2025-00-10", "to=2025-01-10"),
        ("from", "2025-01-00", "to=2025-01-10"),
        ("from", "2025-01-01T24:00Z", "to=2025-01-10"),
        ("from", "2025-01-01T12:61Z", "to=2025-01-10"),
        ("from", "2025-01-01T24:61Z", "to=2025-01-10"),
        ("from", "2025-01-01T12:00:60Z", "to=2025-01-10"),
        ("from", "2025-+1-01", "to=2025-01-10"),
        ("to", "2025-06-31", "from=2025-06-01"),
        ("to", "2025-09-31T00:00Z", "from=2025-09-01"),
    ] {
        let encoded = value.replace('+', "%2B");
        let uri = format!("/api/v1/coins/BTC?{parameter}={encoded}&{other}");
        let (status, body) = get(&host, &uri, None);
        assert_eq!(status, 400, "{uri}: {body}");
        let message: Value = serde_json::from_str(&body).unwrap();
        let message = message["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{parameter}` = {value:?}")),
            "{uri}: {message}"
        );
    }
    for (from, to) in [
        ("2024-02-29", "2024-03-01"),
        ("2024-02-29T23:59:59Z", "2024-03-01"),
        ("2000-02-29T00:00Z", "2000-03-01"),
        ("2024-02-28", "2024-02-29"),
    ] {
        let uri = format!("/api/v1/coins/BTC?from={from}&to={to}");
        let (status, body) = get(&host, &uri, None);
        assert_eq!(status, 200, "{uri}: {body}");
    }
}
