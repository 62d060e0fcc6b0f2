//! The embedded store: Spin's SQLite database as a second sink, and the reads of the query API.
//!
//! Owns the SQL: the tables (one per measurement, with InfluxDB's field names), their versioned
//! migrations (`schema_version`), how a batch of points becomes upserts, retention, and
//! the few read queries the API makes. It reaches the database only through the
//! `host::Sql` port. It must not decide what happens to a batch that fails (that
//! is `sink::delivery`, which spools it exactly as for InfluxDB), nor shape HTTP answers (`query`).
//!
//! Every identifier in a statement comes from the static [`TABLES`]; values from the data or a
//! request are always bound parameters, never text of the statement.

use std::fmt;
use std::time::Duration;

use crate::host::{Sql, SqlError, SqlRows, SqlValue};
use crate::point::{FieldValue, Point};
use crate::sink::line_protocol;

/// How long a statement waits for the other process's write lock before failing with "database
/// is locked": the collector's writes are short transactions, so a reader or writer never waits
/// long, and a batch that still fails is spooled, never lost. A caller with a deadline waits at
/// most the time it has left ([`Db::open_within`]).
pub const BUSY_TIMEOUT_MS: u32 = 5_000;
/// Rows one upsert statement carries (19 parameters a coin row: well under SQLite's limit of
/// 32 766 bound parameters).
pub const ROWS_PER_STATEMENT: usize = 200;
/// Rows one retention statement deletes: small, so the write lock is held only briefly.
pub const PRUNE_BATCH: i64 = 1_000;

/// The SQL type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Real,
    Integer,
}

/// One measurement's table.
#[derive(Debug)]
pub struct Table {
    /// The measurement, and the table's name.
    pub name: &'static str,
    /// The tags that identify a series: with `time_ms`, the primary key. `name` is not one of
    /// them: LCW may rename a coin, and its rows stay one series.
    pub key_tags: &'static [&'static str],
    /// Tags stored as columns beside the key.
    pub other_tags: &'static [&'static str],
    pub fields: &'static [(&'static str, Kind)],
}

impl Table {
    pub fn field(&self, name: &str) -> Option<Kind> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, k)| *k)
    }

    /// `currency = ? AND code = ?`: the key condition for one series.
    fn key_condition(&self, alias: &str) -> String {
        self.key_tags
            .iter()
            .map(|t| format!("{alias}{t} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

pub const COINS: Table = Table {
    name: "cryptocurrency_data",
    key_tags: &["currency", "code"],
    other_tags: &["name"],
    fields: &[
        ("rate", Kind::Real),
        ("volume", Kind::Real),
        ("market_cap", Kind::Real),
        ("liquidity", Kind::Real),
        ("circulating_supply", Kind::Real),
        ("total_supply", Kind::Real),
        ("max_supply", Kind::Real),
        ("all_time_high_usd", Kind::Real),
        ("delta_1h", Kind::Real),
        ("delta_24h", Kind::Real),
        ("delta_7d", Kind::Real),
        ("delta_30d", Kind::Real),
        ("delta_90d", Kind::Real),
        ("delta_1y", Kind::Real),
        ("rank", Kind::Integer),
    ],
};

pub const EXCHANGES: Table = Table {
    name: "exchange_data",
    key_tags: &["currency", "code"],
    other_tags: &["name"],
    fields: &[
        ("volume", Kind::Real),
        ("volume_per_visitor", Kind::Real),
        ("bid_total", Kind::Real),
        ("ask_total", Kind::Real),
        ("depth", Kind::Real),
        ("visitors", Kind::Integer),
        ("markets", Kind::Integer),
    ],
};

pub const OVERVIEW: Table = Table {
    name: "market_overview",
    key_tags: &["currency"],
    other_tags: &[],
    fields: &[
        ("total_market_cap", Kind::Real),
        ("total_volume", Kind::Real),
        ("total_liquidity", Kind::Real),
        ("btc_dominance", Kind::Real),
    ],
};

pub const TABLES: [&Table; 3] = [&COINS, &EXCHANGES, &OVERVIEW];

/// The table of a measurement.
pub fn table(measurement: &str) -> Option<&'static Table> {
    TABLES.into_iter().find(|t| t.name == measurement)
}

/// The migrations, in order. A release that changes the tables adds one (never edits one that
/// shipped): a database is brought up to the last version the first time a release uses it.
/// `WITHOUT ROWID`: the rows live in the primary key's b-tree, so the key is stored once.
pub const MIGRATIONS: &[(u32, &[&str])] = &[(
    1,
    &[
        "CREATE TABLE cryptocurrency_data (
            currency TEXT NOT NULL, code TEXT NOT NULL, time_ms INTEGER NOT NULL, name TEXT,
            rate REAL, volume REAL, market_cap REAL, liquidity REAL, circulating_supply REAL,
            total_supply REAL, max_supply REAL, all_time_high_usd REAL, delta_1h REAL,
            delta_24h REAL, delta_7d REAL, delta_30d REAL, delta_90d REAL, delta_1y REAL,
            rank INTEGER,
            PRIMARY KEY (currency, code, time_ms)) WITHOUT ROWID",
        // Retention and the latest values scan by time.
        "CREATE INDEX cryptocurrency_data_time ON cryptocurrency_data (time_ms)",
        "CREATE TABLE exchange_data (
            currency TEXT NOT NULL, code TEXT NOT NULL, time_ms INTEGER NOT NULL, name TEXT,
            volume REAL, volume_per_visitor REAL, bid_total REAL, ask_total REAL, depth REAL,
            visitors INTEGER, markets INTEGER,
            PRIMARY KEY (currency, code, time_ms)) WITHOUT ROWID",
        "CREATE INDEX exchange_data_time ON exchange_data (time_ms)",
        "CREATE TABLE market_overview (
            currency TEXT NOT NULL, time_ms INTEGER NOT NULL, total_market_cap REAL,
            total_volume REAL, total_liquidity REAL, btc_dominance REAL,
            PRIMARY KEY (currency, time_ms)) WITHOUT ROWID",
        "CREATE INDEX market_overview_time ON market_overview (time_ms)",
    ],
)];

/// The schema version this release writes and reads.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Why a batch was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// A line the tables cannot take: unreadable, an unknown measurement or field, a field of
    /// the wrong type, a missing key tag. Sending it again cannot help (the sink quarantines it).
    Rejected(String),
    /// The database failed (cannot be opened, locked past the busy timeout, disk full): nothing
    /// of the batch is stored, and it may work later (the sink retries, then spools).
    Unavailable(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(message) => write!(f, "refused: {message}"),
            Self::Unavailable(message) => write!(f, "unavailable: {message}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// The database of one invocation, with its connection set up and its schema current.
pub struct Db<'a, S> {
    sql: &'a S,
    /// The time its caller has left before its deadline, if it has one.
    time_left: Option<&'a dyn Fn() -> Duration>,
}

impl<'a, S: Sql> Db<'a, S> {
    /// Sets the busy timeout (a property of the connection: every invocation's is new) and brings
    /// the schema to [`latest_version`].
    pub async fn open(sql: &'a S) -> Result<Self, SqlError> {
        Self::opened(sql).set_up().await
    }

    /// [`open`](Self::open) for a caller with a deadline: a statement that may wait for the
    /// write lock waits at most what `time_left` says when it starts (the host's busy timeout,
    /// 5 s, would otherwise outlast a short deadline).
    pub async fn open_within(
        sql: &'a S,
        time_left: &'a dyn Fn() -> Duration,
    ) -> Result<Self, SqlError> {
        Self::opened_within(sql, time_left).set_up().await
    }

    /// The database of a connection [`open`](Self::open) already set up in this invocation.
    pub fn opened(sql: &'a S) -> Self {
        Self {
            sql,
            time_left: None,
        }
    }

    /// [`opened`](Self::opened), its waits cut as [`open_within`](Self::open_within) cuts them.
    pub fn opened_within(sql: &'a S, time_left: &'a dyn Fn() -> Duration) -> Self {
        Self {
            sql,
            time_left: Some(time_left),
        }
    }

    async fn set_up(self) -> Result<Self, SqlError> {
        self.limit_wait().await?;
        self.migrate().await?;
        Ok(self)
    }

    /// Sets the busy timeout: [`BUSY_TIMEOUT_MS`], or the caller's time left if that is less.
    async fn limit_wait(&self) -> Result<(), SqlError> {
        let left_ms = self.time_left.map_or(u128::MAX, |left| left().as_millis());
        let wait_ms = u32::try_from(left_ms).map_or(BUSY_TIMEOUT_MS, |ms| ms.min(BUSY_TIMEOUT_MS));
        self.exec(&format!("PRAGMA busy_timeout = {wait_ms}"), &[])
            .await
            .map(drop)
    }

    /// A statement that may wait for the write lock (the one thing that waits under WAL), the
    /// busy timeout first cut to the caller's time left.
    async fn exec_locking(
        &self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<SqlRows, SqlError> {
        if self.time_left.is_some() {
            self.limit_wait().await?;
        }
        self.exec(statement, params).await
    }

    async fn exec(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        self.sql.sql_execute(statement, params).await
    }

    /// The schema version the database holds: [`latest_version`] once [`open`](Self::open) has
    /// run, more when a later release has moved it on.
    pub async fn version(&self) -> Result<u32, SqlError> {
        let rows = self
            .exec("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(SqlValue::Integer(v)) => u32::try_from(*v).unwrap_or(0),
            _ => 0,
        })
    }

    /// Applies the missing migrations in one transaction. Both processes may get here at once
    /// on a new file: `BEGIN IMMEDIATE` takes the write lock first and the version is read
    /// again under it, so one applies them and the other finds them applied.
    async fn migrate(&self) -> Result<(), SqlError> {
        self.exec_locking(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
            &[],
        )
        .await?;
        if self.version().await? >= latest_version() {
            return Ok(());
        }
        // Readers do not block the writer nor it them: the API reads while a tick writes. A host
        // or an in-memory database that cannot do WAL keeps its journal mode, which only costs
        // more waiting under the busy timeout.
        let _ = self.exec("PRAGMA journal_mode = WAL", &[]).await;
        self.exec_locking("BEGIN IMMEDIATE", &[]).await?;
        let applied = async {
            let current = self.version().await?;
            for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                for statement in *statements {
                    self.exec(statement, &[]).await?;
                }
                self.exec(
                    "INSERT INTO schema_version (version, applied_at_ms) VALUES (?, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
                    &[SqlValue::Integer(i64::from(*version))],
                )
                .await?;
            }
            Ok(())
        }
        .await;
        self.finish_transaction(applied).await
    }

    async fn finish_transaction(&self, result: Result<(), SqlError>) -> Result<(), SqlError> {
        match result {
            Ok(()) => self.exec("COMMIT", &[]).await.map(drop),
            Err(error) => {
                // A failed rollback leaves nothing committed either: the connection ends with
                // the invocation.
                let _ = self.exec("ROLLBACK", &[]).await;
                Err(error)
            }
        }
    }

    /// Stores points in one transaction: all of them, or none, each tag value as it reads back
    /// from the point's line. A point written again replaces the fields it carries and keeps the
    /// others, as InfluxDB does.
    pub async fn write_points(&self, points: &[Point]) -> Result<usize, WriteError> {
        self.write_rows(to_rows(points, Tags::ReadBackFromTheLine)?)
            .await
    }

    /// [`write_points`](Self::write_points) for points read back from stored lines (a replay):
    /// their tag values are stored as the lines gave them, as every release stored them.
    pub async fn write_read_back(&self, points: &[Point]) -> Result<usize, WriteError> {
        self.write_rows(to_rows(points, Tags::AsGiven)?).await
    }

    async fn write_rows(&self, rows: Vec<Row>) -> Result<usize, WriteError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let unavailable = |e: SqlError| WriteError::Unavailable(e.0);
        self.exec_locking("BEGIN IMMEDIATE", &[])
            .await
            .map_err(unavailable)?;
        let written = async {
            // Consecutive rows of one table with the same columns share a statement.
            let mut start = 0;
            while start < rows.len() {
                let mut end = start + 1;
                while end < rows.len()
                    && end - start < ROWS_PER_STATEMENT
                    && std::ptr::eq(rows[end].table, rows[start].table)
                    && rows[end].columns == rows[start].columns
                {
                    end += 1;
                }
                let (statement, params) = upsert(&rows[start..end]);
                self.exec(&statement, &params).await?;
                start = end;
            }
            Ok(())
        }
        .await;
        self.finish_transaction(written)
            .await
            .map_err(unavailable)?;
        Ok(rows.len())
    }

    /// Deletes rows older than `cutoff_ms`, at most [`PRUNE_BATCH`] a statement (each its own
    /// short transaction), while `more()` says there is time. Returns the rows deleted.
    pub async fn prune(
        &self,
        cutoff_ms: i64,
        mut more: impl FnMut() -> bool,
    ) -> Result<u64, SqlError> {
        let mut deleted = 0;
        for table in TABLES {
            let key: Vec<&str> = table.key_tags.iter().copied().chain(["time_ms"]).collect();
            let key = key.join(", ");
            let statement = format!(
                "DELETE FROM {name} WHERE ({key}) IN (SELECT {key} FROM {name} WHERE time_ms < ? ORDER BY time_ms LIMIT ?)",
                name = table.name
            );
            while more() {
                self.exec_locking(
                    &statement,
                    &[SqlValue::Integer(cutoff_ms), SqlValue::Integer(PRUNE_BATCH)],
                )
                .await?;
                let changed = self.exec("SELECT changes()", &[]).await?;
                let n = match changed.rows.first().and_then(|r| r.first()) {
                    Some(SqlValue::Integer(n)) => *n,
                    _ => 0,
                };
                deleted += n as u64;
                if n < PRUNE_BATCH {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// The newest row of every series of `table` in `currency` among the rows of the last
    /// `window_ms` before the newest one, with every column. Rows stamped after `credible_ms`
    /// (a clock ahead wrote them) are left out: they would hide every fresh row.
    pub async fn latest(
        &self,
        table: &Table,
        currency: &str,
        window_ms: i64,
        credible_ms: i64,
        limit: usize,
    ) -> Result<SqlRows, SqlError> {
        let others: Vec<&str> = table
            .key_tags
            .iter()
            .copied()
            .filter(|t| *t != "currency")
            .collect();
        let group = if others.is_empty() {
            "currency".to_owned()
        } else {
            others.join(", ")
        };
        let join: Vec<String> = others
            .iter()
            .chain(["time_ms"].iter())
            .map(|c| format!("t.{c} = l.{c}"))
            .collect();
        let order = match table.field("rank") {
            Some(_) => "t.rank IS NULL, t.rank, t.code".to_owned(),
            None if others.is_empty() => "t.time_ms".to_owned(),
            None => format!(
                "t.{} IS NULL, t.{} DESC",
                table.fields[0].0, table.fields[0].0
            ),
        };
        let statement = format!(
            "SELECT t.* FROM {name} AS t JOIN (
                SELECT {group}, MAX(time_ms) AS time_ms FROM {name}
                WHERE currency = ?1 AND time_ms <= ?2
                  AND time_ms >= (SELECT MAX(time_ms) FROM {name} WHERE time_ms <= ?2) - ?3
                GROUP BY {group}) AS l ON {join}
             WHERE t.currency = ?1 ORDER BY {order} LIMIT ?4",
            name = table.name,
            join = join.join(" AND ")
        );
        self.exec(
            &statement,
            &[
                SqlValue::Text(currency.to_owned()),
                SqlValue::Integer(credible_ms),
                SqlValue::Integer(window_ms),
                SqlValue::Integer(limit as i64),
            ],
        )
        .await
    }

    /// One series of `field` downsampled into buckets of `step_ms` (aligned on the epoch) over
    /// `[from_ms, to_ms)`: columns `bucket_ms, first, last, min, max, avg, count`, oldest first.
    /// `key` holds the values of `table.key_tags`, in order. `field` must be one of the table's.
    pub async fn series(
        &self,
        table: &Table,
        key: &[&str],
        field: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<SqlRows, SqlError> {
        // The one identifier from a request is checked against the static table first.
        let Some(_) = table.field(field) else {
            return Err(SqlError(format!("no field `{field}` in {}", table.name)));
        };
        let statement = format!(
            "WITH b AS (
                SELECT time_ms / ?1 AS bucket, MIN(time_ms) AS t0, MAX(time_ms) AS t1,
                       MIN({field}) AS lo, MAX({field}) AS hi, AVG({field}) AS mean, COUNT({field}) AS n
                FROM {name} WHERE {cond} AND time_ms >= ?2 AND time_ms < ?3 AND {field} IS NOT NULL
                GROUP BY bucket)
             SELECT b.bucket * ?1 AS bucket_ms, f.{field} AS first, l.{field} AS last,
                    b.lo AS min, b.hi AS max, b.mean AS avg, b.n AS count
             FROM b JOIN {name} AS f ON {fcond} AND f.time_ms = b.t0
                    JOIN {name} AS l ON {lcond} AND l.time_ms = b.t1
             ORDER BY b.bucket",
            name = table.name,
            cond = numbered(&table.key_condition(""), 4),
            fcond = numbered(&table.key_condition("f."), 4),
            lcond = numbered(&table.key_condition("l."), 4),
        );
        let mut params = vec![
            SqlValue::Integer(step_ms),
            SqlValue::Integer(from_ms),
            SqlValue::Integer(to_ms),
        ];
        params.extend(key.iter().map(|k| SqlValue::Text((*k).to_owned())));
        self.exec(&statement, &params).await
    }

    /// Each table's newest row time at or before `credible_ms` and its rows stamped after it
    /// (both cheap: the time index), and the bytes of the database's pages.
    pub async fn summary(&self, credible_ms: i64) -> Result<Summary, SqlError> {
        let mut summary = Summary::default();
        for table in TABLES {
            let rows = self
                .exec(
                    &format!(
                        "SELECT (SELECT MAX(time_ms) FROM {name} WHERE time_ms <= ?1),
                                (SELECT COUNT(*) FROM {name} WHERE time_ms > ?1)",
                        name = table.name
                    ),
                    &[SqlValue::Integer(credible_ms)],
                )
                .await?;
            let row = rows.rows.first();
            let newest = match row.and_then(|r| r.first()) {
                Some(SqlValue::Integer(t)) => Some(*t),
                _ => None,
            };
            let ahead = match row.and_then(|r| r.get(1)) {
                Some(SqlValue::Integer(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            summary.tables.push(TableSummary {
                name: table.name,
                newest_ms: newest,
                rows_ahead: ahead,
            });
        }
        let pages = integer(&self.exec("PRAGMA page_count", &[]).await?);
        let page_size = integer(&self.exec("PRAGMA page_size", &[]).await?);
        summary.bytes = pages * page_size;
        Ok(summary)
    }
}

/// What `/status` shows of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub tables: Vec<TableSummary>,
    /// The database's pages, in bytes.
    pub bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub name: &'static str,
    /// The newest row's time, among the rows a reader's clock finds credible.
    pub newest_ms: Option<i64>,
    /// Rows stamped later than that: written by a clock ahead.
    pub rows_ahead: u64,
}

fn integer(rows: &SqlRows) -> i64 {
    match rows.rows.first().and_then(|r| r.first()) {
        Some(SqlValue::Integer(n)) => *n,
        _ => 0,
    }
}

/// Numbers the `?` of a key condition from `first` on (the statement numbers its others).
fn numbered(condition: &str, first: usize) -> String {
    let mut out = String::new();
    let mut n = first;
    for c in condition.chars() {
        out.push(c);
        if c == '?' {
            out.push_str(&n.to_string());
            n += 1;
        }
    }
    out
}

/// A line as a row of its table.
struct Row {
    table: &'static Table,
    /// Column names, key tags first then `time_ms`, other tags and fields in line order.
    columns: Vec<&'static str>,
    values: Vec<SqlValue>,
}

/// Points as rows of their tables: each value as it would read back from its line (a tag value
/// the encoder leaves out is absent), so the store holds what InfluxDB holds.
fn to_rows(points: &[Point], tags: Tags) -> Result<Vec<Row>, WriteError> {
    let mut rows = Vec::with_capacity(points.len());
    for point in points {
        rows.push(to_row(point, tags)?);
    }
    Ok(rows)
}

/// How a point's tag values become cells.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tags {
    /// A fresh point's: as they read back from its line (`tag_value_read_back`).
    ReadBackFromTheLine,
    /// A point read back from its line already: as they are.
    AsGiven,
}

impl Tags {
    fn cell(self, value: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Self::ReadBackFromTheLine => line_protocol::tag_value_read_back(value),
            Self::AsGiven => std::borrow::Cow::Borrowed(value),
        }
    }
}

fn to_row(point: &Point, tags: Tags) -> Result<Row, WriteError> {
    let reject = |what: String| {
        WriteError::Rejected(format!("{what} (measurement `{}`)", point.measurement))
    };
    let table =
        table(&point.measurement).ok_or_else(|| reject("no table for this measurement".into()))?;
    let mut columns = Vec::with_capacity(table.key_tags.len() + point.fields.len() + 2);
    let mut values = Vec::with_capacity(columns.capacity());
    // Each tag value as it reads back from the point's line; one the line leaves out is absent.
    let tag = |key: &str| {
        point
            .tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| tags.cell(v))
            .filter(|v| !v.is_empty())
    };
    for key in table.key_tags {
        let value = tag(key).ok_or_else(|| reject(format!("the key tag `{key}` is missing")))?;
        columns.push(*key);
        values.push(SqlValue::Text(value.into_owned()));
    }
    columns.push("time_ms");
    values.push(SqlValue::Integer(point.timestamp_ms));
    for (key, value) in &point.tags {
        let value = tags.cell(value);
        if table.key_tags.contains(&key.as_ref()) || value.is_empty() {
            continue;
        }
        let column = table
            .other_tags
            .iter()
            .find(|t| **t == key)
            .ok_or_else(|| reject(format!("no column for the tag `{key}`")))?;
        columns.push(column);
        values.push(SqlValue::Text(value.into_owned()));
    }
    for (key, value) in &point.fields {
        let (column, value) = field_cell(table, key, value).map_err(reject)?;
        columns.push(column);
        values.push(value);
    }
    Ok(Row {
        table,
        columns,
        values,
    })
}

/// A field's column and value; a field the table lacks, or of the other type, is refused (a field
/// keeps one type, as in InfluxDB: a conflict is never converted).
fn field_cell(
    table: &'static Table,
    key: &str,
    value: &FieldValue,
) -> Result<(&'static str, SqlValue), String> {
    let (column, kind) = table
        .fields
        .iter()
        .find(|(f, _)| *f == key)
        .ok_or_else(|| format!("no column for the field `{key}`"))?;
    match (kind, value) {
        (Kind::Real, FieldValue::Float(f)) => Ok((*column, SqlValue::Real(*f))),
        (Kind::Integer, FieldValue::Integer(i)) => Ok((*column, SqlValue::Integer(*i))),
        (kind, value) => Err(format!(
            "the field `{key}` is {kind:?} here, the line has {value:?}"
        )),
    }
}

/// One multi-row upsert. On a conflict the fields the new row carries replace the old ones and
/// the others are kept (`COALESCE`), so a point written again is the same row.
fn upsert(rows: &[Row]) -> (String, Vec<SqlValue>) {
    let first = &rows[0];
    let table = first.table;
    let placeholders = format!("({})", vec!["?"; first.columns.len()].join(", "));
    let updates: Vec<String> = first
        .columns
        .iter()
        .filter(|c| !table.key_tags.contains(c) && **c != "time_ms")
        .map(|c| format!("{c} = COALESCE(excluded.{c}, {c})"))
        .collect();
    let mut key: Vec<&str> = table.key_tags.to_vec();
    key.push("time_ms");
    let action = if updates.is_empty() {
        "NOTHING".to_owned()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    let statement = format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO {action}",
        table.name,
        first.columns.join(", "),
        vec![placeholders; rows.len()].join(", "),
        key.join(", "),
    );
    let params = rows.iter().flat_map(|r| r.values.iter().cloned()).collect();
    (statement, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(lines: &str) -> Vec<Point> {
        lines
            .lines()
            .map(|l| line_protocol::parse_line(l).unwrap())
            .collect()
    }

    #[test]
    fn placeholders_are_numbered_after_the_statements_own() {
        assert_eq!(
            numbered(&COINS.key_condition("f."), 4),
            "f.currency = ?4 AND f.code = ?5"
        );
    }

    #[test]
    fn a_bad_line_refuses_the_batch_before_any_statement() {
        for (lines, says) in [
            ("nope,currency=USD x=1 1\n", "no table"),
            ("cryptocurrency_data,currency=USD rate=1 1\n", "`code`"),
            (
                "cryptocurrency_data,code=A,currency=USD rank=1 1\n",
                "`rank`",
            ),
            (
                "cryptocurrency_data,code=A,currency=USD bogus=1 1\n",
                "`bogus`",
            ),
            (
                "cryptocurrency_data,code=A,currency=USD,x=y rate=1 1\n",
                "`x`",
            ),
        ] {
            match to_rows(&points(lines), Tags::ReadBackFromTheLine) {
                Err(WriteError::Rejected(message)) => assert!(message.contains(says), "{message}"),
                _ => panic!("{lines} was taken"),
            }
        }
    }

    #[test]
    fn rows_of_one_shape_share_an_upsert() {
        let rows = to_rows(
            &points(
                "cryptocurrency_data,code=A,currency=USD,name=a rate=1,rank=1i 5\ncryptocurrency_data,code=B,currency=USD,name=b rate=2,rank=2i 5\n",
            ),
            Tags::ReadBackFromTheLine,
        )
        .unwrap();
        let (statement, params) = upsert(&rows);
        assert_eq!(params.len(), 12);
        assert!(
            statement.contains("VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)"),
            "{statement}"
        );
        assert!(statement.contains("ON CONFLICT (currency, code, time_ms) DO UPDATE SET name = COALESCE(excluded.name, name)"), "{statement}");
    }
}
