//! The SQL port on a real SQLite (rusqlite, bundled), for the native and the simulated hosts.
//!
//! Binds and reads values exactly as Spin's SQLite host does (integers, reals, text, blobs,
//! nulls), and keeps a statement cache per connection, as a prepared statement is what Spin's
//! host reuses too. It decides nothing: busy timeouts, WAL and transactions are the core's.

use std::path::Path;

use lcw_fetcher::host::{SqlError, SqlRows, SqlValue};
use rusqlite::types::{Value, ValueRef};

/// A connection on `path` (a file every host of a test may open: two connections, like the two
/// Spin processes), or in memory with `None`.
pub fn open(path: Option<&Path>) -> rusqlite::Connection {
    let connection = match path {
        Some(path) => rusqlite::Connection::open(path),
        None => rusqlite::Connection::open_in_memory(),
    }
    .expect("open SQLite");
    connection.set_prepared_statement_cache_capacity(64);
    connection
}

/// Runs one statement and reads all its rows.
pub fn execute(
    connection: &rusqlite::Connection,
    statement: &str,
    params: &[SqlValue],
) -> Result<SqlRows, SqlError> {
    let error = |e: rusqlite::Error| SqlError(e.to_string());
    let mut prepared = connection.prepare_cached(statement).map_err(error)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let bound: Vec<Value> = params
        .iter()
        .map(|p| match p {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::Integer(*i),
            SqlValue::Real(f) => Value::Real(*f),
            SqlValue::Text(t) => Value::Text(t.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        })
        .collect();
    let mut rows = prepared
        .query(rusqlite::params_from_iter(bound))
        .map_err(error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(match row.get_ref(i).map_err(error)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(f) => SqlValue::Real(f),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(SqlRows { columns, rows: out })
}
