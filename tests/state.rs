//! State in the key-value store: documents unreadable, unsaveable, of another release or at their
//! largest, racing ticks, and a slow, flaky store under a wrong clock.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "state/counters_at_their_largest.rs"]
mod counters_at_their_largest;
#[path = "state/faults_in_store_and_clock.rs"]
mod faults_in_store_and_clock;
#[path = "state/releases.rs"]
mod releases;
#[path = "state/safety.rs"]
mod safety;
#[path = "state/schema3.rs"]
mod schema3;
