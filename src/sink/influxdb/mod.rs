//! The InfluxDB sink: the batch's line protocol (delivery's encoding of the points), written through InfluxDB's v1, v2 or v3
//! write API (`write`), its part of `/status` (`status`). Its settings are
//! [`crate::config::InfluxSettings`]: they stay in `config`, which reads every variable and may
//! not import a sink.
//!
//! Owns the wire side of a batch and the v1 database it may create; it must not retry, split,
//! spool or quarantine (that is delivery's, whatever the sink).

pub mod status;
pub mod write;

use std::time::Duration;

use futures::future::{FutureExt as _, LocalBoxFuture};

use crate::config::{InfluxApi, InfluxSettings, SinkKind};
use crate::host::{Host, Level, Timeouts};
use crate::sink::{Batch, BatchOutcome, Sent, Sink};

/// InfluxDB for one tick.
pub struct InfluxDb<'a, H> {
    host: &'a H,
    settings: &'a InfluxSettings,
    /// A missing v1 database was already created (or tried) by this sink: once a tick.
    create_tried: bool,
}

impl<'a, H: Host> InfluxDb<'a, H> {
    pub fn new(host: &'a H, settings: &'a InfluxSettings) -> Self {
        Self {
            host,
            settings,
            create_tried: false,
        }
    }

    /// Each request's own timeout, cut to the time left.
    fn timeouts(&self, deadline: Duration) -> Timeouts {
        let left = deadline.saturating_sub(self.host.monotonic());
        let own = Duration::from_millis(self.settings.timeout_ms).min(left);
        Timeouts {
            connect: own,
            first_byte: own,
            total: own,
        }
    }

    /// `CREATE DATABASE`, said in the log when it worked.
    async fn create_database(&self, deadline: Duration) -> Result<(), String> {
        let timeouts = self.timeouts(deadline);
        write::create_database(self.host, self.settings, timeouts).await?;
        self.host.log(
            Level::Warn,
            &format!(
                "InfluxDB database {:?} did not exist: created (influx_create_database = true)",
                crate::remote::sanitize(&self.settings.database)
            ),
        );
        Ok(())
    }
}

impl<H: Host> Sink for InfluxDb<'_, H> {
    fn kind(&self) -> SinkKind {
        SinkKind::Influxdb
    }

    fn name(&self) -> &'static str {
        "InfluxDB"
    }

    fn settings_hint(&self) -> &'static str {
        "check influx_url, influx_api, influx_org, influx_bucket, influx_database and the credential"
    }

    fn refusals_hint(&self) -> &'static str {
        "check the influx_* settings"
    }

    fn write<'s>(
        &'s mut self,
        batch: Batch<'s>,
        deadline: Duration,
    ) -> LocalBoxFuture<'s, (BatchOutcome, Sent)> {
        let lines = batch.lines.concat();
        let timeouts = self.timeouts(deadline);
        write::send_batch(self.host, self.settings, lines, timeouts).boxed_local()
    }

    /// A missing v1 database is created once a tick (as Telegraf does), then the batch goes again.
    fn set_up<'s>(
        &'s mut self,
        outcome: &BatchOutcome,
        deadline: Duration,
    ) -> Option<LocalBoxFuture<'s, Result<(), String>>> {
        let missing = matches!(outcome, BatchOutcome::NotFound { message } if message.contains("database not found"));
        if !missing
            || self.settings.api != InfluxApi::V1
            || !self.settings.create_database
            || self.create_tried
        {
            return None;
        }
        self.create_tried = true;
        Some(self.create_database(deadline).boxed_local())
    }
}
