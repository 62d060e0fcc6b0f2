//! The embedded SQLite store: a sink ([`SqliteSink`]: points straight into rows), the store the
//! query API and the page read (`db`), and its part of `/status` (`status`).
//!
//! Owns the SQLite side of a batch; it must not retry, split, spool or quarantine (that is
//! delivery's, whatever the sink).

mod db;
pub mod status;

pub use db::*;

use std::time::Duration;

use futures::future::{FutureExt as _, LocalBoxFuture};

use crate::config::SinkKind;
use crate::host::Host;
use crate::sink::{Batch, BatchOutcome, Sent, Sink};

/// The embedded store for one tick.
pub struct SqliteSink<'a, H> {
    host: &'a H,
    /// The connection of this invocation is set up and its schema current.
    ready: bool,
}

impl<'a, H: Host> SqliteSink<'a, H> {
    pub fn new(host: &'a H) -> Self {
        Self { host, ready: false }
    }

    /// One batch into the store, as the outcome an InfluxDB answer would have been: a point the
    /// tables cannot take is refused like a 400, a database that fails is transient like a 5xx.
    /// Its size is counted as its line protocol, as InfluxDB's is (uncompressed), so the byte
    /// counters of the two sinks compare.
    async fn write_points(&mut self, batch: Batch<'_>, deadline: Duration) -> (BatchOutcome, Sent) {
        let bytes = batch.lines.iter().map(|l| l.len()).sum();
        let sent = Sent {
            raw_bytes: bytes,
            wire_bytes: bytes,
        };
        // No wait for the other process's write lock outlasts the deadline.
        let host = self.host;
        let time_left = move || deadline.saturating_sub(host.monotonic());
        if !self.ready {
            if let Err(error) = Db::open_within(host, &time_left).await {
                let detail = error.to_string();
                return (BatchOutcome::Transient { detail }, sent);
            }
            self.ready = true;
        }
        let db = Db::opened_within(host, &time_left);
        let written = if batch.read_back {
            db.write_read_back(batch.points).await
        } else {
            db.write_points(batch.points).await
        };
        let outcome = match written {
            Ok(_) => BatchOutcome::Written,
            Err(WriteError::Rejected(message)) => BatchOutcome::Rejected { status: 0, message },
            Err(WriteError::Unavailable(detail)) => BatchOutcome::Transient {
                detail: format!("SQLite: {detail}"),
            },
        };
        (outcome, sent)
    }
}

impl<H: Host> Sink for SqliteSink<'_, H> {
    fn kind(&self) -> SinkKind {
        SinkKind::Sqlite
    }

    fn name(&self) -> &'static str {
        "SQLite"
    }

    /// It refuses no setting (it has none that a write could contradict): never said.
    fn settings_hint(&self) -> &'static str {
        "check the SQLite store"
    }

    fn refusals_hint(&self) -> &'static str {
        "check the SQLite store's schema"
    }

    fn write<'s>(
        &'s mut self,
        batch: Batch<'s>,
        deadline: Duration,
    ) -> LocalBoxFuture<'s, (BatchOutcome, Sent)> {
        self.write_points(batch, deadline).boxed_local()
    }
}
