//! The embedded store's part of `/status`: whether it answers, the schema version it holds, the
//! newest row of each table and the rows a clock ahead stamped, its size.
//!
//! Owns what `/status` says of the store; it must write nothing to it but what opening it
//! writes (the migrations any reader applies).

use serde_json::json;

use crate::host::{Host, SqlError};
use crate::sink::sqlite::{Db, latest_version};

/// The embedded store answers, with the newest row's time per table and its size.
pub async fn health<H: Host>(host: &H) -> Result<serde_json::Value, SqlError> {
    let db = Db::open(host).await?;
    let summary = db
        .summary(crate::clock::newest_credible(host.unix_millis()))
        .await?;
    let newest: serde_json::Map<String, serde_json::Value> = summary
        .tables
        .iter()
        .map(|t| (t.name.to_owned(), json!(t.newest_ms)))
        .collect();
    let ahead: serde_json::Map<String, serde_json::Value> = summary
        .tables
        .iter()
        .map(|t| (t.name.to_owned(), json!(t.rows_ahead)))
        .collect();
    Ok(json!({
        "schema_version": db.version().await?,
        "release_schema_version": latest_version(),
        "newest_ms": newest,
        "rows_ahead_of_clock": ahead,
        "bytes": summary.bytes,
    }))
}
