//! `GET /api/v1/…`: the query API over the embedded store, answered by `query`. Read-only, no
//! token.

use http::{StatusCode, header};

use super::{Request, Response, error, respond};
use crate::config::Settings;
use crate::host::Host;
use crate::query;

/// The query API: read-only market data from the embedded store.
pub(super) async fn api_v1<H: Host>(host: &H, request: &Request) -> Response {
    let settings = match Settings::load(host).await {
        Ok(settings) => settings,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let answer = query::answer(
        host,
        &settings,
        request.uri().path(),
        request.uri().query(),
        accept,
    )
    .await;
    respond(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        answer.content_type,
        answer.body,
    )
}
