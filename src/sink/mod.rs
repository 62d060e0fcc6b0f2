//! Sinks: where points go, and the delivery that loses none of them.
//!
//! `line_protocol` is InfluxDB's wire format and the spool's codec; `spool` keeps what a sink
//! could not take yet; `influxdb` and `sqlite` are the sinks; `delivery` is written once over
//! them: batching, retries, splitting, quarantine, spool and replay.

pub mod delivery;
pub mod influxdb;
pub mod line_protocol;
pub mod spool;
pub mod sqlite;
