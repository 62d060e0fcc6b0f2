//! One tick, start to finish: the full cycle, its values back out of a real InfluxDB, and the
//! latency simulation.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "cycle/full.rs"]
mod full;
#[path = "cycle/roundtrip.rs"]
mod roundtrip;
#[path = "cycle/simulation.rs"]
mod simulation;
