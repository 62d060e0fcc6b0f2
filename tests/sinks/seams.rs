//! Issue 22, the sinks seam as an adversary sees it: delivery hands sinks points, the spool keeps
//! line protocol, so a stored line is parsed on replay and a fresh point is mapped to rows
//! directly. Here: tag values through both paths alike (exhaustively, short strings), stored
//! lines of another writer replayed into SQLite as main stored them, stored lines InfluxDB takes
//! sent to it, and the per-batch refusal limit for stored lines that do not parse.

use crate::support;

use std::time::Duration;

use lcw_fetcher::config::{InfluxSettings, Settings, SinkKind};
use lcw_fetcher::host::Clock as _;
use lcw_fetcher::point::{FieldValue, Point};
use lcw_fetcher::sink::delivery::{Delivery, QUARANTINE_LIMIT_PER_BATCH, SinkState};
use lcw_fetcher::sink::line_protocol::{encode_points, parse_line, tag_value_read_back};
use lcw_fetcher::sink::spool;
use serde_json::Value;
use support::native_host::SharedSql;
use support::{LcwFake, NativeHost, Reply, block_on};

const S: Duration = Duration::from_secs(1);

/// `text` as one spool segment, then one replay into the sink of `kind`, finished.
fn replay(
    host: &NativeHost,
    kind: SinkKind,
    settings: &InfluxSettings,
    text: &str,
) -> (Delivery, SinkState) {
    let mut state = SinkState::default();
    block_on(spool::append(host, &mut state.spool, text, 100_000, 1));
    block_on(async {
        let deadline = host.monotonic() + 20 * S;
        let mut courier = support::courier(host, kind, settings, deadline, state);
        courier.replay(deadline).await;
        courier.finish().await
    })
}

fn sqlite_settings() -> InfluxSettings {
    Settings::from_pairs(&[("lcw_api_key", "k")])
        .unwrap()
        .influx
}

/// The text columns of every row of `table`.
fn texts(sql: &SharedSql, table: &str, column: &str) -> Vec<String> {
    let connection = sql.lock().unwrap();
    let answer = support::sql::execute(
        &connection,
        &format!("SELECT {column} FROM {table} ORDER BY time_ms"),
        &[],
    )
    .expect("query");
    answer
        .rows
        .iter()
        .map(|row| match &row[0] {
            lcw_fetcher::host::SqlValue::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Every string of up to `len` characters of `alphabet`.
fn strings(alphabet: &[char], len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|s| {
                alphabet.iter().map(move |c| {
                    let mut t = s.clone();
                    t.push(*c);
                    t
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

/// What the SQLite sink stores of a fresh point's tag (`tag_value_read_back`) is what its line
/// reads back as (what InfluxDB holds and a replayed point carries), and reading a replayed
/// value back again changes nothing: every string of up to 5 characters among those the encoder
/// treats specially (backslash, the three specials, a C0 and a C1 control, a non-breaking space,
/// a quote, a two-byte letter). Held on the candidate.
#[test]
fn a_tag_value_is_stored_as_its_line_reads_back_exhaustively() {
    let alphabet = ['a', '\\', ',', '=', ' ', '\n', '\u{85}', '\u{a0}', '"', 'é'];
    let mut line = String::new();
    for value in strings(&alphabet, 5) {
        let point = Point {
            measurement: "cryptocurrency_data".into(),
            tags: vec![
                ("code".into(), value.clone()),
                ("currency".into(), "USD".into()),
            ],
            fields: vec![("rate".into(), FieldValue::Float(1.0))],
            timestamp_ms: 1,
        };
        line.clear();
        encode_points([&point], &mut line);
        let parsed = parse_line(&line).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        let read = parsed.tag("code").unwrap_or_default();
        assert_eq!(tag_value_read_back(&value), read, "{value:?} as {line:?}");
        assert_eq!(tag_value_read_back(read), read, "{value:?}: read twice");
    }
}

/// A stored line of another writer with `\\` in a tag (InfluxDB 1.x reads two backslashes) lands
/// in SQLite as the line parses, as main stored it (`to_rows` parsed the line and stored its
/// values). The candidate reads the parsed value back a second time (`tag_value_read_back` in
/// `to_row`), which drops a backslash: the replayed row differs from main's and from InfluxDB
/// 1.x's.
#[test]
fn a_replayed_line_lands_in_sqlite_as_it_parses() {
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    let line = "cryptocurrency_data,code=A\\\\B,currency=USD,name=x\\\\\\,y rate=1 1000\n";
    let parsed = parse_line(line).unwrap();
    assert_eq!(parsed.tag("code"), Some("A\\\\B"));
    assert_eq!(parsed.tag("name"), Some("x\\\\,y"));
    let (delivery, _) = replay(&host, SinkKind::Sqlite, &sqlite_settings(), line);
    assert_eq!(delivery.replayed, 1, "{delivery:?}");
    assert_eq!(texts(&host.sql, "cryptocurrency_data", "code"), ["A\\\\B"]);
    assert_eq!(texts(&host.sql, "cryptocurrency_data", "name"), ["x\\\\,y"]);
}

/// Stored lines InfluxDB takes reach it byte for byte on replay, as on main (which sent every
/// stored line): InfluxDB's parser skips a line's leading whitespace and comment lines. The
/// candidate parses them first, refuses these, and quarantines them without asking InfluxDB.
#[test]
fn stored_lines_influxdb_takes_are_sent_to_it() {
    let fake = LcwFake::start();
    fake.respond("/api/v2/write", Reply::json(204, ""));
    let settings = Settings::from_pairs(&[
        ("lcw_api_key", "k"),
        ("influx_org", "o"),
        ("influx_token", "secret-token-9"),
        ("influx_url", &fake.base_url),
        ("influx_gzip", "false"),
    ])
    .unwrap()
    .influx;
    let host = NativeHost::new(&[("x", "y")]);
    let text = "market_overview,currency=USD total_market_cap=1 1000\n\
                \x20\x20market_overview,currency=USD total_market_cap=2 2000\n\
                \tmarket_overview,currency=USD total_market_cap=3 3000\n";
    let (delivery, state) = replay(&host, SinkKind::Influxdb, &settings, text);
    let sent: String = fake
        .seen_on("/api/v2/write")
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert_eq!(sent, text, "every stored line, byte for byte");
    assert_eq!(delivery.quarantined, 0, "{delivery:?}");
    assert_eq!(delivery.replayed, 3, "{delivery:?}");
    assert!(state.spool.is_empty());
}

/// Stored lines that do not parse are refused as main refused them (its sinks refused them like
/// a 400): at most `QUARANTINE_LIMIT_PER_BATCH` a batch go to the quarantine, the rest stay in
/// the spool, and every point is counted exactly once. The candidate quarantines all of a
/// segment's unparsable lines at once (with an error log line each), whatever their number: a
/// segment of a format this release cannot read (a newer release's) empties into the
/// quarantine, which keeps 500.
#[test]
fn unparsable_stored_lines_keep_the_per_batch_refusal_limit() {
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    let bad = 30u64;
    let mut text = String::from("market_overview,currency=USD total_market_cap=1 1000\n");
    for i in 0..bad {
        text.push_str(&format!("a format of another release {i}\n"));
    }
    let (delivery, state) = replay(&host, SinkKind::Sqlite, &sqlite_settings(), &text);
    assert_eq!(delivery.replayed, 1, "{delivery:?}");
    assert_eq!(
        delivery.quarantined, QUARANTINE_LIMIT_PER_BATCH,
        "{delivery:?}"
    );
    assert_eq!(state.spool.points(), bad - QUARANTINE_LIMIT_PER_BATCH);
    assert_eq!(
        delivery.replayed + delivery.quarantined + state.spool.points(),
        bad + 1
    );
    let logged = host.log_text().matches("refused a line for good").count() as u64;
    assert!(logged <= QUARANTINE_LIMIT_PER_BATCH, "{logged} error lines");
}

/// The counters of one replay sum to the segment's points: written, quarantined (the sink's
/// refusal and the parser's) and kept. Held on the candidate.
#[test]
fn a_replay_counts_every_stored_point_once() {
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    let text = "market_overview,currency=USD total_market_cap=1 1000\n\
                not line protocol\n\
                market_overview,currency=USD total_market_cap=2i 2000\n\
                market_overview,currency=USD total_market_cap=3 3000\n\
                market_overview,currency=USD total_market_cap=3 3000\n\
                no_table f=1 4000\n";
    let (delivery, state) = replay(&host, SinkKind::Sqlite, &sqlite_settings(), text);
    assert_eq!(delivery.replayed, 3, "{delivery:?}");
    assert_eq!(delivery.quarantined, 3, "{delivery:?}");
    assert_eq!(state.counters.replayed + state.counters.quarantined, 6);
    assert!(state.spool.is_empty());
    let doc: Value =
        serde_json::from_slice(&host.kv.lock().unwrap()[lcw_fetcher::state::QUARANTINE_KEY])
            .unwrap();
    assert_eq!(doc["total"], 3);
}

/// Lines kept past the refusal limit join the lines the sink could not take yet on lines of their
/// own, though a segment's last line may lack its newline (a segment of another writer): the
/// rewritten segment holds each kept line whole.
#[test]
fn lines_kept_unread_stay_whole_beside_a_last_line_without_newline() {
    let host = NativeHost::new(&[("x", "y")]).with_sql(support::native_host::memory_sql());
    host.set_sql_down(true);
    let good = "market_overview,currency=USD total_market_cap=1 1000";
    let mut text = format!("{good}\n");
    for i in 0..=QUARANTINE_LIMIT_PER_BATCH {
        text.push_str(&format!("unreadable {i}\n"));
    }
    text.push_str("market_overview,currency=USD total_market_cap=2 2000");
    let (delivery, state) = replay(&host, SinkKind::Sqlite, &sqlite_settings(), &text);
    assert_eq!(delivery.quarantined, QUARANTINE_LIMIT_PER_BATCH);
    let meta = state.spool.segments.front().expect("a segment kept");
    let kept = block_on(spool::read(&host, meta)).unwrap().unwrap();
    let lines: Vec<&str> = kept.lines().collect();
    assert_eq!(
        lines,
        [
            good,
            "market_overview,currency=USD total_market_cap=2 2000",
            "unreadable 10"
        ],
        "{kept:?}"
    );
}
