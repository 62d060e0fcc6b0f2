//! The InfluxDB sink: its write APIs (v1, v2, v3) over HTTP.

pub mod write;
