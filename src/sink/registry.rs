//! The sinks there are: one line per [`SinkKind`], mapping it onto its sink's constructor.
//!
//! Owns which type serves which kind, and nothing else: adding a sink is its folder, its
//! `SinkKind` variant and its variables, and one line here; delivery does not change. It must
//! not hold a rule of delivery nor a sink's settings.

use crate::config::{Settings, SinkKind};
use crate::host::Host;
use crate::sink::Sink;
use crate::sink::influxdb::InfluxDb;
use crate::sink::sqlite::SqliteSink;

/// The sink of `kind`, for one tick or one admin request.
pub fn open<'a, H: Host>(
    kind: SinkKind,
    host: &'a H,
    settings: &'a Settings,
) -> Box<dyn Sink + 'a> {
    match kind {
        SinkKind::Influxdb => Box::new(InfluxDb::new(host, &settings.influx)),
        SinkKind::Sqlite => Box::new(SqliteSink::new(host)),
    }
}
