//! The query API over the embedded store: `/api/v1/coins`, `/api/v1/coins/{code}`,
//! `/api/v1/overview`, `/api/v1/exchanges`, as JSON or CSV.
//!
//! Owns the request parameters (`from`, `to`, `step`, `field`, `currency`, `format`), their
//! limits, and the two renderings; the SQL is `sqlite`'s. Read-only and without a token: it
//! serves market data the collector fetched, never state or settings. Every refusal is a 400
//! naming the parameter and what was wrong. It must not write (beyond the schema a first read
//! creates) nor know HTTP beyond a status, a content type and a body.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::clock;
use crate::config::{self, Settings, SinkKind};
use crate::host::{Host, SqlError, SqlRows, SqlValue};
use crate::sink::sqlite::{self, Db, Table};

/// The longest range a series may cover (three times the default retention).
pub const MAX_RANGE_MS: i64 = 92 * DAY_MS;
/// The most buckets a series may have: a `step` that would give more is refused.
pub const MAX_POINTS: i64 = 2_000;
/// The finest step (the collector ticks once a minute).
pub const MIN_STEP_MS: i64 = 60_000;
/// Buckets a series gets when no `step` is given, at most.
pub const DEFAULT_POINTS: i64 = 300;
/// The most rows of a latest-values answer.
pub const MAX_LATEST_ROWS: usize = 2_000;
/// How far before the newest row a series still counts as current in a latest-values answer: a
/// coin that left the top list an hour ago is no longer shown.
pub const LATEST_WINDOW_MS: i64 = 3_600_000;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Steps an automatic `step` is rounded up to.
const NICE_STEPS: [i64; 8] = [
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    DAY_MS,
    7 * DAY_MS,
];

/// An answer: status, content type, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Why a request got no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub status: u16,
    pub message: String,
}

impl QueryError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    fn store(error: SqlError) -> Self {
        Self {
            status: 503,
            message: format!("the embedded store cannot answer: {error}"),
        }
    }
}

/// The rendering asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// Rows with named columns, as the store gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

impl Rows {
    fn from_sql(rows: SqlRows) -> Self {
        Self {
            columns: rows.columns,
            rows: rows.rows,
        }
    }

    /// The value of `column` in row `i`.
    pub fn get(&self, i: usize, column: &str) -> Option<&SqlValue> {
        let at = self.columns.iter().position(|c| c == column)?;
        self.rows.get(i)?.get(at)
    }

    pub fn real(&self, i: usize, column: &str) -> Option<f64> {
        match self.get(i, column)? {
            SqlValue::Real(f) => Some(*f),
            SqlValue::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub fn text(&self, i: usize, column: &str) -> Option<&str> {
        match self.get(i, column)? {
            SqlValue::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Adds a column computed from each row.
    fn add_column(&mut self, name: &str, value: impl Fn(&Self, usize) -> SqlValue) {
        let values: Vec<SqlValue> = (0..self.rows.len()).map(|i| value(self, i)).collect();
        self.columns.push(name.to_owned());
        for (row, v) in self.rows.iter_mut().zip(values) {
            row.push(v);
        }
    }
}

/// A parsed request: its query parameters, percent-decoded.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The format: `?format=csv|json`, else `Accept: text/csv`, else JSON.
pub fn format(params: &Params, accept: Option<&str>) -> Result<Format, QueryError> {
    match params.get("format").map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok(Format::Csv),
        Some("json") => Ok(Format::Json),
        Some(other) => Err(QueryError::bad(format!(
            "`format` = {other:?}: must be json or csv"
        ))),
        None if accept.is_some_and(|a| a.contains("text/csv")) => Ok(Format::Csv),
        None => Ok(Format::Json),
    }
}

/// A series request, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
}

/// `from` and `to` (default: the last 24 hours) and `step` (default: a round step giving at most
/// [`DEFAULT_POINTS`] buckets), within the limits.
pub fn range(params: &Params, now_ms: i64) -> Result<Range, QueryError> {
    let to_ms = match params.get("to") {
        Some(text) => parse_time("to", text, now_ms)?,
        None => now_ms,
    };
    let from_ms = match params.get("from") {
        Some(text) => parse_time("from", text, now_ms)?,
        None => to_ms - DAY_MS,
    };
    if from_ms >= to_ms {
        return Err(QueryError::bad(format!(
            "`from` ({}) must be before `to` ({})",
            iso(from_ms),
            iso(to_ms)
        )));
    }
    if to_ms - from_ms > MAX_RANGE_MS {
        return Err(QueryError::bad(format!(
            "the range from `from` to `to` is {} days: at most {} days",
            (to_ms - from_ms) / DAY_MS,
            MAX_RANGE_MS / DAY_MS
        )));
    }
    let span = to_ms - from_ms;
    let step_ms = match params.get("step") {
        Some(text) => {
            let step = parse_duration(text).ok_or_else(|| {
                QueryError::bad(format!(
                    "`step` = {text:?}: give seconds (3600) or a duration (30s, 5m, 1h, 1d)"
                ))
            })?;
            if step < MIN_STEP_MS {
                return Err(QueryError::bad(format!(
                    "`step` = {text:?}: at least {} s",
                    MIN_STEP_MS / 1000
                )));
            }
            step
        }
        None => NICE_STEPS
            .into_iter()
            .find(|s| span / s <= DEFAULT_POINTS)
            .unwrap_or(7 * DAY_MS),
    };
    let points = (span + step_ms - 1) / step_ms;
    if points > MAX_POINTS {
        return Err(QueryError::bad(format!(
            "too many rows: {points} steps of {} s from `from` to `to`, at most {MAX_POINTS}; use a larger `step` (at least {} s) or a shorter range",
            step_ms / 1000,
            (span + MAX_POINTS - 1) / MAX_POINTS / 1000 + 1
        )));
    }
    Ok(Range {
        from_ms,
        to_ms,
        step_ms,
    })
}

/// Unix milliseconds, `YYYY-MM-DD[THH:MM[:SS]]Z` (UTC), `now`, or an offset back from now
/// (`-24h`, `-7d`).
fn parse_time(name: &str, text: &str, now_ms: i64) -> Result<i64, QueryError> {
    let text = text.trim();
    let bad = || {
        QueryError::bad(format!(
            "`{name}` = {text:?}: give unix milliseconds, a UTC time (2025-01-31T12:00:00Z), now, or an offset back from now (-24h, -7d)"
        ))
    };
    if text == "now" {
        return Ok(now_ms);
    }
    if let Some(back) = text.strip_prefix('-') {
        return parse_duration(back).map(|d| now_ms - d).ok_or_else(bad);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return if (0..=253_402_300_799_000).contains(&ms) {
            Ok(ms)
        } else {
            Err(bad())
        };
    }
    match parse_iso(text) {
        Some(Ok(ms)) => Ok(ms),
        Some(Err(why)) => Err(QueryError::bad(format!("`{name}` = {text:?}: {why}"))),
        None => Err(bad()),
    }
}

/// `90` (seconds), `30s`, `5m`, `1h`, `1d`, `1w` into milliseconds.
fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => MINUTE_MS,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => return None,
    };
    n.checked_mul(unit_ms)
        .filter(|d| *d > 0 && *d <= 10 * 366 * DAY_MS)
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS`, with an optional `Z`: UTC. `None`
/// when the text is not of that shape; an error when it is, but names no real time (a
/// 2025-02-31 is not read as 2025-03-03).
fn parse_iso(text: &str) -> Option<Result<i64, String>> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00"));
    let number = |part: Option<&str>| -> Option<i64> {
        part.filter(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let (mut d, mut t) = (date.split('-'), time.split(':'));
    let (y, m, day) = (number(d.next())?, number(d.next())?, number(d.next())?);
    let (h, min) = (number(t.next())?, number(t.next())?);
    let s = match t.next() {
        Some(s) => number(Some(s))?,
        None => 0,
    };
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    let impossible = if !(1970..=9999).contains(&y) {
        Some(format!("the year must be 1970 to 9999, not {y}"))
    } else if !(1..=12).contains(&m) {
        Some(format!("there is no month {m}"))
    } else if !(1..=days_in_month(y, m)).contains(&day) {
        Some(format!(
            "there is no day {day} in {y}-{m:02}, which has {} days",
            days_in_month(y, m)
        ))
    } else if h >= 24 || min >= 60 || s >= 60 {
        Some(format!(
            "there is no time {h:02}:{min:02}:{s:02} (00:00:00 to 23:59:59)"
        ))
    } else {
        None
    };
    Some(match impossible {
        Some(why) => Err(why),
        None => Ok(((days_from_civil(y, m, day) * 24 + h) * 60 + min) * 60_000 + s * 1_000),
    })
}

/// The days of month `m` (1 to 12) of year `y`, in the proleptic Gregorian calendar.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rest = ms.rem_euclid(DAY_MS) / 1000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Answers `path` (under `/api/v1/`) for the settings' sink.
pub async fn answer<H: Host>(
    host: &H,
    settings: &Settings,
    path: &str,
    query: Option<&str>,
    accept: Option<&str>,
) -> Answer {
    let params = Params::parse(query);
    let result = async {
        let format = format(&params, accept)?;
        if settings.sink != SinkKind::Sqlite {
            return Err(QueryError {
                status: 404,
                message: "sink = influxdb: the data is in InfluxDB (influx_url), query it there (deploy/grafana has dashboards); /api/v1 reads the embedded SQLite store, used with sink = sqlite".into(),
            });
        }
        let currency = match params.get("currency") {
            Some(c) => config::normalize_code(c)
                .map_err(|why| QueryError::bad(format!("`currency` = {c:?}: {why}")))?,
            None => settings.currency.clone(),
        };
        let (meta, rows) = match path.strip_prefix("/api/v1/") {
            Some("coins") => (json!({}), latest_coins(host, &currency).await?),
            Some("exchanges") => (
                json!({}),
                latest(host, &sqlite::EXCHANGES, &currency).await?,
            ),
            Some("overview") => {
                let range = range(&params, host.unix_millis())?;
                let field = field(&params, &sqlite::OVERVIEW, "total_market_cap")?;
                let rows = series(host, &sqlite::OVERVIEW, &[&currency], field, range).await?;
                (series_meta(None, field, range), rows)
            }
            Some(rest) if rest.starts_with("coins/") => {
                let raw = &rest["coins/".len()..];
                let code = coin_code(raw)?;
                let range = range(&params, host.unix_millis())?;
                let field = field(&params, &sqlite::COINS, "rate")?;
                let rows = series(host, &sqlite::COINS, &[&currency, &code], field, range).await?;
                (series_meta(Some(&code), field, range), rows)
            }
            _ => {
                return Err(QueryError {
                    status: 404,
                    message: format!("no route for GET {path}"),
                });
            }
        };
        let mut meta = meta;
        meta["currency"] = json!(currency);
        Ok(render(format, meta, &rows))
    }
    .await;
    result.unwrap_or_else(|e| error(&e))
}

/// A coin code from a path, percent-decoded and checked.
pub fn coin_code(raw: &str) -> Result<String, QueryError> {
    let decoded = percent_decode(raw);
    config::normalize_code(&decoded)
        .map_err(|why| QueryError::bad(format!("coin code {decoded:?}: {why}")))
}

/// `field` (default `fallback`), one of the table's numeric fields.
fn field(
    params: &Params,
    table: &Table,
    fallback: &'static str,
) -> Result<&'static str, QueryError> {
    let wanted = params.get("field").unwrap_or(fallback);
    table
        .fields
        .iter()
        .map(|(f, _)| *f)
        .find(|f| *f == wanted)
        .ok_or_else(|| {
            let known: Vec<&str> = table.fields.iter().map(|(f, _)| *f).collect();
            QueryError::bad(format!("`field` = {wanted:?}: one of {}", known.join(", ")))
        })
}

fn series_meta(code: Option<&str>, field: &str, range: Range) -> Value {
    let mut meta = json!({
        "field": field,
        "from": iso(range.from_ms),
        "to": iso(range.to_ms),
        "from_ms": range.from_ms,
        "to_ms": range.to_ms,
        "step_s": range.step_ms / 1000,
    });
    if let Some(code) = code {
        meta["code"] = json!(code);
    }
    meta
}

/// The latest row of every coin, by rank, with `change_24h` in percent (from LCW's `delta_24h`
/// ratio, 1 meaning unchanged).
pub async fn latest_coins<H: Host>(host: &H, currency: &str) -> Result<Rows, QueryError> {
    let mut rows = latest(host, &sqlite::COINS, currency).await?;
    rows.add_column("change_24h", |rows, i| {
        rows.real(i, "delta_24h")
            .map_or(SqlValue::Null, |d| SqlValue::Real((d - 1.0) * 100.0))
    });
    Ok(rows)
}

async fn latest<H: Host>(host: &H, table: &Table, currency: &str) -> Result<Rows, QueryError> {
    let db = Db::open(host).await.map_err(QueryError::store)?;
    let credible_ms = clock::newest_credible(host.unix_millis());
    let rows = db
        .latest(
            table,
            currency,
            LATEST_WINDOW_MS,
            credible_ms,
            MAX_LATEST_ROWS,
        )
        .await
        .map_err(QueryError::store)?;
    let mut rows = Rows::from_sql(rows);
    rows.add_column("time", |rows, i| match rows.get(i, "time_ms") {
        Some(SqlValue::Integer(ms)) => SqlValue::Text(iso(*ms)),
        _ => SqlValue::Null,
    });
    Ok(rows)
}

/// A downsampled series: `time` (the bucket's start), `time_ms`, `first`, `last`, `min`, `max`,
/// `avg`, `count`.
pub async fn series<H: Host>(
    host: &H,
    table: &Table,
    key: &[&str],
    field: &str,
    range: Range,
) -> Result<Rows, QueryError> {
    let db = Db::open(host).await.map_err(QueryError::store)?;
    let rows = db
        .series(table, key, field, range.from_ms, range.to_ms, range.step_ms)
        .await
        .map_err(QueryError::store)?;
    let mut rows = Rows::from_sql(rows);
    if let Some(c) = rows.columns.iter_mut().find(|c| *c == "bucket_ms") {
        *c = "time_ms".into();
    }
    rows.add_column("time", |rows, i| match rows.get(i, "time_ms") {
        Some(SqlValue::Integer(ms)) => SqlValue::Text(iso(*ms)),
        _ => SqlValue::Null,
    });
    Ok(rows)
}

fn render(format: Format, meta: Value, rows: &Rows) -> Answer {
    match format {
        Format::Json => {
            let list: Vec<Value> = rows
                .rows
                .iter()
                .map(|row| {
                    let object: Map<String, Value> = rows
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.clone(), json_value(v)))
                        .collect();
                    Value::Object(object)
                })
                .collect();
            let mut body = meta;
            body["count"] = json!(list.len());
            body["rows"] = Value::Array(list);
            Answer {
                status: 200,
                content_type: "application/json",
                body: body.to_string().into_bytes(),
            }
        }
        Format::Csv => Answer {
            status: 200,
            content_type: "text/csv; charset=utf-8",
            body: csv(rows).into_bytes(),
        },
    }
}

fn json_value(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null | SqlValue::Blob(_) => Value::Null,
        SqlValue::Integer(n) => json!(n),
        // serde_json writes the shortest form that reads back as the same f64.
        SqlValue::Real(f) => json!(f),
        SqlValue::Text(t) => json!(t),
    }
}

/// RFC 4180: a header line, then one line per row, CRLF-terminated. Numbers are written as
/// numbers; text (codes and names come from LCW, untrusted) never starts a spreadsheet formula
/// ([`csv_text`]).
pub fn csv(rows: &Rows) -> String {
    let mut out = String::new();
    out.push_str(&rows.columns.join(","));
    out.push_str("\r\n");
    for row in &rows.rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match value {
                SqlValue::Null | SqlValue::Blob(_) => {}
                SqlValue::Integer(n) => {
                    let _ = write!(out, "{n}");
                }
                SqlValue::Real(f) => {
                    let _ = write!(out, "{f}");
                }
                SqlValue::Text(t) => csv_text(&mut out, t),
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// What a spreadsheet may split a line into cells on, whatever this file's own separator: the
/// comma, a locale's semicolon, tab and pipe, and line breaks.
const CELL_BREAKS: [char; 6] = [',', ';', '\t', '|', '\n', '\r'];
/// The first characters of a cell that make a spreadsheet read it as a formula (OWASP, "CSV
/// Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell: `'` before every place a spreadsheet could start a cell (the cell's start, or
/// just after any of [`CELL_BREAKS`]) where what follows, past spaces, would start a formula; a
/// spreadsheet splitting on `;` would otherwise read `Evil;=1+2` as `Evil` and a formula, even
/// quoted (a quote inside a cell does not quote). Quoted when it holds a break or a quote.
fn csv_text(out: &mut String, text: &str) {
    let mut guarded = String::with_capacity(text.len() + 1);
    let mut cell_start = true;
    for (at, c) in text.char_indices() {
        if cell_start
            && text[at..]
                .trim_start_matches(' ')
                .starts_with(FORMULA_STARTS)
        {
            guarded.push('\'');
        }
        guarded.push(c);
        cell_start = CELL_BREAKS.contains(&c);
    }
    if guarded.contains(CELL_BREAKS) || guarded.contains('"') {
        out.push('"');
        out.push_str(&guarded.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&guarded);
    }
}

/// An error as JSON: `{"error":{"status":…,"message":…}}`, like every other route's.
pub fn error(e: &QueryError) -> Answer {
    Answer {
        status: e.status,
        content_type: "application/json",
        body: json!({ "error": { "status": e.status, "message": e.message } })
            .to_string()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print_in_utc() {
        assert_eq!(parse_iso("1970-01-01"), Some(Ok(0)));
        assert_eq!(
            parse_iso("2024-02-29T12:30:15Z"),
            Some(Ok(1_709_209_815_000))
        );
        assert_eq!(iso(1_709_209_815_000), "2024-02-29T12:30:15Z");
        assert!(matches!(parse_iso("2024-13-01"), Some(Err(_))));
        assert_eq!(parse_iso("2024-01-01T12"), None);
        assert_eq!(parse_time("from", "-2h", 10 * HOUR_MS), Ok(8 * HOUR_MS));
        assert!(parse_time("from", "yesterday", 0).is_err());
        assert_eq!(parse_duration("90"), Some(90_000));
        assert_eq!(parse_duration("1h"), Some(HOUR_MS));
        assert_eq!(parse_duration("1x"), None);
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let p = Params::parse(Some("from=2024-01-01T00%3A00%3A00Z&code=a+b&x=%zz"));
        assert_eq!(p.get("from"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(p.get("code"), Some("a b"));
        assert_eq!(p.get("x"), Some("%zz"));
    }

    #[test]
    fn a_default_range_is_a_day_in_round_steps() {
        let r = range(&Params::parse(None), 100 * DAY_MS).unwrap();
        assert_eq!((r.to_ms - r.from_ms, r.step_ms), (DAY_MS, 5 * MINUTE_MS));
        let r = range(&Params::parse(Some("from=-30d")), 100 * DAY_MS).unwrap();
        assert_eq!(r.step_ms, 3 * HOUR_MS);
    }

    #[test]
    fn csv_quotes_and_guards_text() {
        let rows = Rows {
            columns: vec!["name".into(), "rate".into()],
            rows: vec![
                vec![SqlValue::Text("a,\"b\"".into()), SqlValue::Real(0.1)],
                vec![SqlValue::Text("=HYPERLINK()".into()), SqlValue::Null],
            ],
        };
        assert_eq!(
            csv(&rows),
            "name,rate\r\n\"a,\"\"b\"\"\",0.1\r\n'=HYPERLINK(),\r\n"
        );
    }
}
