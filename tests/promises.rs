//! Promises the README makes — to the data, to the clock, to the deadline, to secrets and to the
//! people who deploy it — each kept by a test that failed on the code before its fix. One module
//! per subject; a test's name says the behaviour it keeps.

mod support;

#[path = "promises/clock.rs"]
mod clock;
#[path = "promises/clock_stamps.rs"]
mod clock_stamps;
#[path = "promises/credits.rs"]
mod credits;
#[path = "promises/deadlines.rs"]
mod deadlines;
#[path = "promises/deploy.rs"]
mod deploy;
#[path = "promises/http_input.rs"]
mod http_input;
#[path = "promises/lease.rs"]
mod lease;
#[path = "promises/migrating.rs"]
mod migrating;
#[path = "promises/repository.rs"]
mod repository;
#[path = "promises/secrets.rs"]
mod secrets;
#[path = "promises/sqlite_values.rs"]
mod sqlite_values;
#[path = "promises/state_input.rs"]
mod state_input;
