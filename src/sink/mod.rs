//! Sinks: where points go, and the delivery that loses none of them.
//!
//! This module is the seam: the [`Sink`] trait (what differs between sinks: a name, a hint for a
//! setting it refuses, writing one batch of points, an optional set-up step), the
//! [`BatchOutcome`] every sink maps its answer onto, and [`LastWrite`]. `influxdb` and `sqlite`
//! implement it; `registry` maps a [`SinkKind`] onto its constructor; `delivery` is written once
//! over `dyn Sink`: batching, retries, splitting, quarantine, spool and replay. `line_protocol` is
//! InfluxDB's wire format and the spool's codec; `spool` keeps what a sink could not take yet.
//!
//! Owns the contract between delivery and a sink; it must not know any sink's wire format or
//! settings, nor delivery's rules (what to do about an outcome is delivery's).

use std::fmt;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::SinkKind;
use crate::point::Point;

pub mod delivery;
pub mod influxdb;
pub mod line_protocol;
pub mod registry;
pub mod spool;
pub mod sqlite;

/// One place points are written to, for one tick (or one admin request). Object-safe, with boxed
/// futures, so that delivery is compiled once whatever the sink.
pub trait Sink {
    /// Which sink this is (the state document records it).
    fn kind(&self) -> SinkKind;

    /// The sink's name in messages: `InfluxDB`, `SQLite`.
    fn name(&self) -> &'static str;

    /// What to check when the sink refuses a setting (401, 403, 404, a message naming a setting).
    fn settings_hint(&self) -> &'static str;

    /// What to check when it refuses more lines of one batch than bad lines would explain.
    fn refusals_hint(&self) -> &'static str;

    /// Writes one batch (every point has a finite field: delivery drops the others) and says how
    /// the sink answered. `deadline` is on the host's monotonic clock: no wait outlasts it.
    fn write<'s>(
        &'s mut self,
        batch: Batch<'s>,
        deadline: Duration,
    ) -> LocalBoxFuture<'s, (BatchOutcome, Sent)>;

    /// A step that may make a refused batch go through (a missing v1 database created), asked
    /// after every answer: `None` when there is none for this outcome (a sink takes it once at
    /// most), else whether it worked (an error to report). Delivery sends the batch again either
    /// way.
    fn set_up<'s>(
        &'s mut self,
        outcome: &BatchOutcome,
        deadline: Duration,
    ) -> Option<LocalBoxFuture<'s, Result<(), String>>> {
        let _ = (outcome, deadline);
        None
    }
}

impl dyn Sink + '_ {
    /// An outcome as one line naming the sink (`InfluxDB write: HTTP 503: …`).
    pub fn said(&self, outcome: &BatchOutcome) -> String {
        format!("{} write: {}", self.name(), outcome.describe())
    }
}

/// One batch: its points, and the line protocol of each (the spool's and the quarantine's form,
/// which delivery has anyway: a fresh point encoded once, a stored one as it was read). A sink
/// that speaks line protocol sends the lines as they are; another writes the points.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'p> {
    pub points: &'p [Point],
    /// One newline-terminated line a point, in the same order.
    pub lines: &'p [&'p str],
    /// The points were read back from `lines` (a replay): their values are already as they read
    /// back, and a sink that stores points takes them as they are (read back a second time, a
    /// stored `\\` would lose a backslash).
    pub read_back: bool,
}

/// How a sink answered one batch (HTTP statuses are InfluxDB's; the embedded store maps its
/// answers onto the same outcomes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// 2xx: every line is stored.
    Written,
    /// 413: the body is too large; halves may pass.
    TooLarge,
    /// 400, 422 and other 4xx but auth, 404 and 429: some line is bad (a parse error, a field
    /// type conflict). Lines the server accepted are stored; the bad ones never will be.
    /// Status 0: refused by the embedded store, which answers without HTTP.
    Rejected { status: u16, message: String },
    /// 401/403: the credential is wrong; retrying cannot help until someone fixes it.
    Unauthorized { status: u16, message: String },
    /// 404: no such database, bucket or organisation.
    NotFound { message: String },
    /// Another 4xx whose message says a setting is wrong, not a line (no org, unknown bucket or
    /// database, an authorisation problem): retrying cannot help until someone fixes it.
    Misconfigured { status: u16, message: String },
    /// Accepted, but InfluxDB dropped `dropped` points as older than its retention policy
    /// (`partial write: points beyond retention policy dropped=N`): the others are stored.
    Dropped { dropped: u64, message: String },
    /// 429/503: the server asks us to come back later.
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Other 5xx, or no answer: worth a retry.
    Transient { detail: String },
}

impl BatchOutcome {
    /// One line for logs and records; never holds a credential.
    pub fn describe(&self) -> String {
        match self {
            Self::Written => "written".into(),
            Self::TooLarge => "HTTP 413: request too large".into(),
            Self::Rejected { status: 0, message } => message.clone(),
            Self::Rejected { status, message } => format!("HTTP {status}: {message}"),
            Self::Unauthorized { status, message } => format!("HTTP {status}: {message}"),
            Self::NotFound { message } => format!("HTTP 404: {message}"),
            Self::Misconfigured { status, message } => format!("HTTP {status}: {message}"),
            Self::Dropped { message, .. } => format!("HTTP 400: {message}"),
            Self::Throttled {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
            Self::Transient { detail } => detail.clone(),
        }
    }

    /// The batch was taken (a retention drop included).
    pub fn is_written(&self) -> bool {
        matches!(self, Self::Written | Self::Dropped { .. })
    }
}

impl fmt::Display for BatchOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfluxDB write: {}", self.describe())
    }
}

/// Bytes of one request, before and after compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub raw_bytes: usize,
    pub wire_bytes: usize,
}

/// The outcome of the last write request: the sink's health as the writes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWrite {
    pub at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
}
