//! `GET /`: the page (collector health, latest prices, a chart), rendered by `page`. It renders
//! even when the state or the settings cannot be read, and says so. Read-only.

use http::{StatusCode, header};

use super::{Request, Response, respond};
use crate::config::Settings;
use crate::host::{Host, Level};
use crate::telemetry::Snapshot;
use crate::{cycle, page};

/// The page. It renders even when the state or the settings cannot be read: it says so.
pub(super) async fn home<H: Host>(host: &H, request: &Request) -> Response {
    let snapshot = match cycle::load_snapshot(host).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            host.log(Level::Error, &e.to_string());
            Snapshot::default()
        }
    };
    let settings = Settings::load(host).await.ok();
    let html = page::render(host, settings.as_ref(), &snapshot, request.uri().query()).await;
    let mut response = respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        html.into_bytes(),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(page::CSP),
    );
    response
}
