//! Backfill: no holes in the data after an outage, and the bounds of backfill, the slot ticket
//! and `POST /backfill`.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "backfill/bounds.rs"]
mod bounds;
#[path = "backfill/no_holes.rs"]
mod no_holes;
