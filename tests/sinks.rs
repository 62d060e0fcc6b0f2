//! Delivery and the sinks: fresh data first and nothing lost uncounted, InfluxDB's request shapes
//! and answers, line protocol through real parsers, the embedded SQLite store and its figures.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "sinks/delivery.rs"]
mod delivery;
#[path = "sinks/influx.rs"]
mod influx;
#[path = "sinks/line_protocol.rs"]
mod line_protocol;
#[path = "sinks/seams.rs"]
mod seams;
#[path = "sinks/sqlite.rs"]
mod sqlite;
#[path = "sinks/sqlite_figures.rs"]
mod sqlite_figures;
