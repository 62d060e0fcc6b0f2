//! `GET /metrics`: the Prometheus text rendering of the collector's statistics (404 when
//! `enable_metrics = false`). Read-only.

use http::StatusCode;

use super::{Response, error, respond, with_snapshot};
use crate::config;
use crate::host::{Host, Level};
use crate::telemetry;

pub(super) async fn metrics<H: Host>(host: &H) -> Response {
    match config::load_flag(host, config::variables::ENABLE_METRICS).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                "metrics are disabled (enable_metrics = false)",
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    with_snapshot(host, |snapshot| {
        match telemetry::prometheus::render(snapshot) {
            Ok(text) => respond(
                StatusCode::OK,
                telemetry::prometheus::CONTENT_TYPE,
                text.into_bytes(),
            ),
            Err(e) => {
                host.log(Level::Error, &format!("metrics rendering failed: {e}"));
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("metrics rendering failed: {e}"),
                )
            }
        }
    })
    .await
}
