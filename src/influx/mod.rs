//! InfluxDB: points, line protocol, the write APIs, and delivery that loses nothing.
//!
//! Owns how data becomes line protocol (`line_protocol`), how a batch goes over the wire
//! (`write`), what happens to lines InfluxDB does not take (`sink`), and where they wait
//! meanwhile (`spool`). It must not know where the data came from (that is `schema`) nor decide
//! when to write (that is `cycle`).

mod line_protocol;
pub mod sink;
pub mod spool;
pub mod write;

pub use line_protocol::{Encoded, FieldValue, Point, encode_points};
pub use sink::{Delivery, Sink};
