//! `GET /stats` and `GET /stats/cache`: the statistics the collector's ticks recorded, as JSON or
//! a text table. Read-only.

use http::{StatusCode, header};

use super::{Request, Response, error, json_response, query_param, respond, with_snapshot};
use crate::config::Settings;
use crate::host::Host;
use crate::plan;
use crate::telemetry;

pub(super) async fn stats<H: Host>(host: &H, request: &Request) -> Response {
    let operation = query_param(request, "operation");
    let text = query_param(request, "format") == Some("text")
        || request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"));
    let planned = Settings::load(host)
        .await
        .ok()
        .map(|s| plan::calls_per_day(&s));
    with_snapshot(host, |snapshot| {
        if let Some(name) = operation
            && !snapshot.telemetry.operations.contains_key(name)
        {
            let known: Vec<&str> = snapshot
                .telemetry
                .operations
                .keys()
                .map(String::as_str)
                .collect();
            return error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no statistics for operation `{name}`; known: {}",
                    known.join(", ")
                ),
            );
        }
        if text {
            let table = telemetry::report::stats_text(snapshot, operation);
            respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                table.into_bytes(),
            )
        } else {
            json_response(
                StatusCode::OK,
                &telemetry::report::stats_json(snapshot, operation, planned),
            )
        }
    })
    .await
}

/// `GET /stats/cache`: cache statistics and a verdict.
pub(super) async fn cache<H: Host>(host: &H) -> Response {
    with_snapshot(host, |s| {
        json_response(StatusCode::OK, &telemetry::report::cache_json(s))
    })
    .await
}
