//! `GET /quarantine`, `POST /quarantine/retry`, `POST /quarantine/clear` (admin): the lines the
//! sink refused for good, sent again or dropped, under the lease.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::admin::{readable_state, save_if_held, under_lease, unreadable_state, usable_settings};
use super::{Response, error, json_response};
use crate::host::{Host, KvError, Level};
use crate::sink::delivery::{Courier, Limits, Quarantine};
use crate::sink::registry;
use crate::state;

pub(super) async fn quarantine<H: Host>(host: &H) -> Response {
    match state::load::<Quarantine, _>(host, state::QUARANTINE_KEY).await {
        Ok(q) => json_response(
            StatusCode::OK,
            &json!({ "total": q.total, "recent": q.recent }),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
/// Sends the quarantined lines again; those InfluxDB takes leave the quarantine (and count as
/// written), the others stay with InfluxDB's new message.
pub(super) async fn retry_quarantine<H: Host>(host: &H) -> Response {
    let settings = match usable_settings(host).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let outcome = under_lease(host, "quarantine-retry", async |held| {
        let mut quarantine: Quarantine =
            state::load_for_update(host, state::QUARANTINE_KEY, host.unix_millis()).await?;
        let Some(mut doc) = readable_state(host).await? else {
            return Ok(None);
        };
        let entries: Vec<_> = quarantine.recent.iter().cloned().collect();
        let deadline = host.monotonic() + Duration::from_millis(settings.influx.timeout_ms);
        let mut sink = Courier::new(
            host,
            registry::open(settings.sink, host, &settings),
            Limits::of(&settings.influx),
            deadline,
            doc.sink.clone(),
        );
        let (written, remaining) = sink.retry_quarantined(&entries).await;
        quarantine.recent = remaining.into();
        save_if_held(host, held, state::QUARANTINE_KEY, &quarantine).await?;
        // The lines written are points written: the sink's counters say so.
        doc.sink.counters.points_written = doc.sink.counters.points_written.saturating_add(written);
        save_if_held(host, held, state::STATE_KEY, &doc).await?;
        Ok::<_, KvError>(Some((written, quarantine.recent.len())))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(None)) => unreadable_state(),
        Ok(Ok(Some((written, remaining)))) => {
            host.log(
                Level::Info,
                &format!("quarantine retried by the admin route: {written} lines written, {remaining} remain"),
            );
            json_response(
                StatusCode::OK,
                &json!({ "written": written, "remaining": remaining }),
            )
        }
    }
}
/// Empties the quarantine (its running total stays, as a counter does).
pub(super) async fn clear_quarantine<H: Host>(host: &H) -> Response {
    let outcome = under_lease(host, "quarantine-clear", async |held| {
        let mut quarantine: Quarantine =
            state::load_for_update(host, state::QUARANTINE_KEY, host.unix_millis()).await?;
        let cleared = quarantine.recent.len();
        quarantine.recent.clear();
        save_if_held(host, held, state::QUARANTINE_KEY, &quarantine).await?;
        Ok::<_, KvError>(cleared)
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(cleared)) => {
            host.log(
                Level::Info,
                &format!("quarantine cleared by the admin route: {cleared} lines"),
            );
            json_response(StatusCode::OK, &json!({ "cleared": cleared }))
        }
    }
}
