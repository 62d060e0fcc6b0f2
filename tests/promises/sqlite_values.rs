//! The embedded store says what it holds: every value a point carries reads back bit for bit,
//! and `/status` names the schema version of the database itself, not the one this release
//! would write.

use http::Request;
use lcw_fetcher::host::SqlValue;
use lcw_fetcher::lcw::Coin;
use lcw_fetcher::routes;
use lcw_fetcher::schema;
use lcw_fetcher::sink::line_protocol;
use lcw_fetcher::sink::sqlite::{self, Db};

use crate::support::lcw_fake::API_KEY;
use crate::support::native_host::memory_sql;
use crate::support::{NativeHost, block_on};

/// LCW's `-0.0` (a ratio or a price that rounds to a signed zero, as a number or in a string)
/// went to the sinks as `-0`, and SQLite's REAL columns keep a whole float as an integer, so
/// it read back as `0.0`: the store and InfluxDB disagreed on its bits. A zero enters as `0.0`.
#[test]
fn a_negative_zero_from_lcw_reads_back_from_sqlite_with_the_bits_the_point_carried() {
    let coins: Vec<Coin> = serde_json::from_str(
        r#"[{"code":"BTC","rate":-0.0,"volume":"-0.0","cap":0,"delta":{"hour":-0.0,"day":1.5}}]"#,
    )
    .expect("LCW's coin list");
    let point = schema::coin_point(&coins[0], "USD", 1_700_000_000_000);
    let sql = memory_sql();
    let host = NativeHost::new(&[("lcw_api_key", API_KEY)]).with_sql(sql.clone());
    let db = block_on(Db::open(&host)).expect("the store opens");
    block_on(db.write_points(std::slice::from_ref(&point))).expect("the point is stored");
    let stored = crate::support::sql::execute(
        &sql.lock().unwrap(),
        "SELECT rate, volume, market_cap, delta_1h, delta_24h FROM cryptocurrency_data",
        &[],
    )
    .unwrap();
    for (column, value) in stored.columns.iter().zip(&stored.rows[0]) {
        let carried = point
            .fields
            .iter()
            .find(|(key, _)| key == column)
            .map(|(_, v)| match v {
                line_protocol::FieldValue::Float(f) => *f,
                other => panic!("{column} is {other:?}"),
            })
            .unwrap_or_else(|| panic!("the point carries {column}: {point:?}"));
        let read = match value {
            SqlValue::Real(f) => *f,
            SqlValue::Integer(i) => *i as f64,
            other => panic!("{column} reads back as {other:?}"),
        };
        assert_eq!(
            read.to_bits(),
            carried.to_bits(),
            "{column}: the point carried {carried:?}, the store gives {read:?}"
        );
    }
}

/// `/status` showed `sqlite::latest_version()`, the version this release writes, whatever the
/// database held: a database a later release had moved on was reported as this release's.
#[test]
fn status_names_the_schema_version_the_database_holds() {
    let sql = memory_sql();
    let host = NativeHost::new(&[("lcw_api_key", API_KEY)]).with_sql(sql.clone());
    block_on(Db::open(&host)).expect("the store opens");
    let later = i64::from(sqlite::latest_version()) + 3;
    crate::support::sql::execute(
        &sql.lock().unwrap(),
        "INSERT INTO schema_version (version, applied_at_ms) VALUES (?, 0)",
        &[SqlValue::Integer(later)],
    )
    .unwrap();
    let request = Request::get("/status").body(Vec::new()).unwrap();
    let response = block_on(routes::handle(&host, &request));
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let store = &body["sink"]["sqlite"];
    assert_eq!(store["schema_version"], later, "{body}");
    assert_eq!(
        store["release_schema_version"],
        sqlite::latest_version(),
        "{body}"
    );
}
