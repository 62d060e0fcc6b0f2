//! Promises the README makes — to the data, to the clock, to the deadline, to secrets and to the
//! people who deploy it — each kept by a test that failed on the code before its fix. One module
//! per subject; a test's name says the behaviour it keeps.

mod support;

mod clock;
mod credits;
mod deadlines;
mod deploy;
mod http_input;
mod lease;
mod secrets;
mod sqlite_values;
mod state_input;
