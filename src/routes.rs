//! The HTTP API over the core, host-agnostic: a request in, a response out.
//!
//! Owns paths, methods, status codes and bodies of the API component. It must not hold state
//! between requests (a Spin instance may be fresh for every one) and must not write cycle state:
//! it reads documents through `state` and renders them through `telemetry`.

use http::{Method, StatusCode, header};

use crate::config::{self, Settings};
use crate::guard::ResilienceState;
use crate::host::{Host, Level};
use crate::plan;
use crate::state::{self, CycleHistory};
use crate::telemetry;

/// Answers one request.
pub async fn handle<H: Host>(
    host: &H,
    request: &http::Request<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    let path = request.uri().path();
    let method = request.method();
    match (path, method) {
        ("/metrics", &Method::GET) => metrics(host).await,
        ("/stats", &Method::GET) => stats(host).await,
        ("/metrics" | "/stats", _) => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on {path}; use GET"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            response
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        ),
    }
}

async fn metrics<H: Host>(host: &H) -> http::Response<Vec<u8>> {
    match config::load_flag(host, "enable_metrics").await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                "metrics are disabled (enable_metrics = false)",
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let (history, resilience) = match load_state(host).await {
        Ok(docs) => docs,
        Err(response) => return response,
    };
    match telemetry::render_prometheus(&history, &resilience) {
        Ok(text) => respond(
            StatusCode::OK,
            telemetry::PROMETHEUS_CONTENT_TYPE,
            text.into_bytes(),
        ),
        Err(e) => {
            host.log(Level::Error, &e.to_string());
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn stats<H: Host>(host: &H) -> http::Response<Vec<u8>> {
    let (history, resilience) = match load_state(host).await {
        Ok(docs) => docs,
        Err(response) => return response,
    };
    let planned = Settings::load(host)
        .await
        .ok()
        .map(|s| plan::calls_per_day(&s));
    json(
        StatusCode::OK,
        &telemetry::stats_json(&history, &resilience, planned),
    )
}

/// The documents the collector writes, read in two KV round trips.
async fn load_state<H: Host>(
    host: &H,
) -> Result<(CycleHistory, ResilienceState), http::Response<Vec<u8>>> {
    let unavailable = |e: crate::host::KvError| {
        host.log(Level::Error, &e.to_string());
        error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
    };
    let history = state::load(host, state::CYCLES_KEY)
        .await
        .map_err(unavailable)?;
    let resilience = state::load(host, state::RESILIENCE_KEY)
        .await
        .map_err(unavailable)?;
    Ok((history, resilience))
}

fn json(status: StatusCode, body: &serde_json::Value) -> http::Response<Vec<u8>> {
    respond(status, "application/json", body.to_string().into_bytes())
}

fn error(status: StatusCode, message: &str) -> http::Response<Vec<u8>> {
    json(
        status,
        &serde_json::json!({ "error": { "status": status.as_u16(), "message": message } }),
    )
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> http::Response<Vec<u8>> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
