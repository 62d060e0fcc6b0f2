//! InfluxDB: points, line protocol, the write APIs, and delivery that loses nothing.
//!
//! Owns how data becomes line protocol and is read back (`line_protocol`), how a batch goes over the wire
//! (`write`), what happens to lines the sink — InfluxDB or the embedded store — does not take (`sink`), and where they wait
//! meanwhile (`spool`). It must not know where the data came from (that is `schema`) nor decide
//! when to write (that is `cycle`).
//!
//! The submodules sit in different layers (`docs/layers.toml`): `line_protocol` is a format below
//! every adapter, `write` and `spool` talk to InfluxDB and the store, `sink` composes them. There
//! are no re-exports here, so a path names the layer it comes from.

pub mod line_protocol;
pub mod sink;
pub mod spool;
pub mod write;
