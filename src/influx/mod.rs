//! InfluxDB: points, line protocol and the write APIs.
//!
//! Owns how data becomes line protocol and how line protocol reaches InfluxDB (v1, v2, v3).
//! It must not know where the data came from (that is `schema`) nor decide when to write
//! (that is `cycle`).

mod line_protocol;
mod write;

pub use line_protocol::{Encoded, FieldValue, Point, encode_points};
pub use write::{InfluxError, WriteReport, write_lines};
