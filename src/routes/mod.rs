//! The HTTP API over the core, host-agnostic: a request in, a response out.
//!
//! Owns the route table ([`api_routes`], [`collector_routes`]): for each route its method, its
//! path, who may call it and the handler that answers it. Dispatch, the 404 and the 405 with
//! `Allow`, and the admin check all come from the table and from nowhere else, so a path that
//! is not in it is a 404 whatever the method and token; docs/api.md's route table is checked
//! against it (`tests/http_api/routes.rs`). Each route's handler is a file of this folder; what
//! the admin routes that change state share is [`admin`]. This module must not answer a route
//! itself, nor hold state between requests (a Spin instance may be fresh for each).
//!
//! **Adding a route**: a file here with a `pub(super) async fn` taking the host and the request
//! and answering a [`Response`], its `mod` line here, and its line in [`api_routes`] (or in
//! [`collector_routes`] for a route of the collector component, with a [`Serve::Elsewhere`]
//! line in [`api_routes`]), and its row in docs/api.md.
//!
//! Under Spin, `POST /collect` is served by the collector component ([`handle_collect`], its
//! own route in spin.toml) and every other route by the api component ([`handle_api`]), so that
//! neither wasm component carries code only the other runs (the fetch cycle is most of the
//! collector: 303 KB of the api component, docs/PERFORMANCE.md). [`handle`] serves them all
//! alike; it is what the native tests call.
//!
//! Admin routes want `Authorization: Bearer <admin_token>` and do not exist while `admin_token`
//! is empty. Public routes do bounded work: `/status` makes at most one live check of each
//! remote per `cache_ttl_status_s`, whoever asks and however often; routes write state only
//! through the same core functions the collector uses.

mod admin;
mod backfill;
mod cache_clear;
mod collect;
mod metrics;
mod page;
mod quarantine;
mod query_api;
mod stats;
mod status;

use std::future::Future;
use std::pin::Pin;

use http::{Method, StatusCode, header};
use serde_json::json;

use crate::config;
use crate::cycle;
use crate::host::{Host, Level};
use crate::remote::mask_userinfo;
use crate::telemetry::Snapshot;

pub use status::{LiveCheck, STALE_AFTER, StatusChecks};

pub type Request = http::Request<Vec<u8>>;
pub type Response = http::Response<Vec<u8>>;

/// A handler's answer, borrowed from the host and the request.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Response> + 'a>>;
/// What answers a route: a handler of this component, or another component of the app.
pub type Handler<H> = for<'a> fn(&'a H, &'a Request) -> Answer<'a>;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// `Authorization: Bearer <admin_token>`; absent while `admin_token` is empty.
    Admin,
}

/// The paths a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPattern {
    Exact(&'static str),
    /// `prefix` then one non-empty segment without `/`, shown as `{name}`.
    Segment {
        prefix: &'static str,
        name: &'static str,
    },
}

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == *exact,
            Self::Segment { prefix, .. } => path
                .strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')),
        }
    }

    /// As docs/api.md writes it: `/api/v1/coins/{code}`.
    pub fn shown(&self) -> String {
        match self {
            Self::Exact(exact) => (*exact).to_owned(),
            Self::Segment { prefix, name } => format!("{prefix}{{{name}}}"),
        }
    }
}

/// Where a route is answered.
pub enum Serve<H> {
    Here(Handler<H>),
    /// By the named component of the app (spin.toml routes the path there): a request that
    /// reaches this one anyway is a 404 that says so, once it has passed the route's access.
    Elsewhere(&'static str),
}

/// One line of the route table.
pub struct Route<H> {
    pub method: Method,
    pub path: PathPattern,
    pub access: Access,
    pub serve: Serve<H>,
}

fn route<H>(method: Method, path: &'static str, access: Access, handler: Handler<H>) -> Route<H> {
    Route {
        method,
        path: PathPattern::Exact(path),
        access,
        serve: Serve::Here(handler),
    }
}

/// Every route of the app, as the api component serves them.
pub fn api_routes<H: Host>() -> Vec<Route<H>> {
    use Access::{Admin, Public};
    use Method as M;
    let coin = PathPattern::Segment {
        prefix: "/api/v1/coins/",
        name: "code",
    };
    vec![
        route(M::GET, "/", Public, |h, r| Box::pin(page::home(h, r))),
        route(M::GET, "/api/v1/coins", Public, |h, r| {
            Box::pin(query_api::api_v1(h, r))
        }),
        Route {
            method: M::GET,
            path: coin,
            access: Public,
            serve: Serve::Here(|h, r| Box::pin(query_api::api_v1(h, r))),
        },
        route(M::GET, "/api/v1/overview", Public, |h, r| {
            Box::pin(query_api::api_v1(h, r))
        }),
        route(M::GET, "/api/v1/exchanges", Public, |h, r| {
            Box::pin(query_api::api_v1(h, r))
        }),
        route(M::GET, "/metrics", Public, |h, _| {
            Box::pin(metrics::metrics(h))
        }),
        route(M::GET, "/stats", Public, |h, r| {
            Box::pin(stats::stats(h, r))
        }),
        route(M::GET, "/stats/cache", Public, |h, _| {
            Box::pin(stats::cache(h))
        }),
        route(M::GET, "/status", Public, |h, _| {
            Box::pin(status::status(h))
        }),
        // Not `collector_routes()[0]`: naming its handler would link the cycle into the api.
        Route {
            method: M::POST,
            path: PathPattern::Exact("/collect"),
            access: Admin,
            serve: Serve::Elsewhere("collector"),
        },
        route(M::POST, "/cache/clear", Admin, |h, _| {
            Box::pin(cache_clear::clear_cache(h))
        }),
        route(M::GET, "/quarantine", Admin, |h, _| {
            Box::pin(quarantine::quarantine(h))
        }),
        route(M::POST, "/quarantine/retry", Admin, |h, _| {
            Box::pin(quarantine::retry_quarantine(h))
        }),
        route(M::POST, "/quarantine/clear", Admin, |h, _| {
            Box::pin(quarantine::clear_quarantine(h))
        }),
        route(M::POST, "/backfill", Admin, |h, r| {
            Box::pin(backfill::queue_backfill(h, r))
        }),
    ]
}

/// The routes the collector component serves.
pub fn collector_routes<H: Host>() -> Vec<Route<H>> {
    vec![route(Method::POST, "/collect", Access::Admin, |h, _| {
        Box::pin(collect::collect(h))
    })]
}

/// Answers one request, on any route: the table of both components.
pub async fn handle<H: Host>(host: &H, request: &Request) -> Response {
    if collector_routes::<H>()
        .iter()
        .any(|r| r.path.matches(request.uri().path()))
    {
        handle_collect(host, request).await
    } else {
        handle_api(host, request).await
    }
}

/// The collector component's HTTP entry: [`collector_routes`]; any other path is a 404.
/// Separate async functions, not one with a flag: a wasm build keeps the code of every state of
/// an async function it calls.
pub async fn handle_collect<H: Host>(host: &H, request: &Request) -> Response {
    protect_secrets(host).await;
    dispatch(host, request, &collector_routes()).await
}

/// The api component's entry: [`api_routes`].
pub async fn handle_api<H: Host>(host: &H, request: &Request) -> Response {
    protect_secrets(host).await;
    dispatch(host, request, &api_routes()).await
}

/// The route of `table` for the request's path and method, its access checked, answered; else
/// 404 (no route has the path), or 405 with `Allow` (routes have it, with other methods).
async fn dispatch<H: Host>(host: &H, request: &Request, table: &[Route<H>]) -> Response {
    let (path, method) = (request.uri().path(), request.method());
    let on_path: Vec<&Route<H>> = table.iter().filter(|r| r.path.matches(path)).collect();
    let Some(route) = on_path.iter().find(|r| r.method == method) else {
        return refused(method, path, &on_path);
    };
    if route.access == Access::Admin
        && let Err(response) = authorize(host, request).await
    {
        return response;
    }
    match route.serve {
        Serve::Here(handler) => handler(host, request).await,
        Serve::Elsewhere(component) => error(
            StatusCode::NOT_FOUND,
            &format!(
                "{method} {path} is the {component} component's route (spin.toml), not this one's"
            ),
        ),
    }
}

/// 404 when no route has the path; 405 with `Allow` when routes have it with other methods.
fn refused<H>(method: &Method, path: &str, on_path: &[&Route<H>]) -> Response {
    if on_path.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        );
    }
    let allowed: Vec<&str> = on_path.iter().map(|r| r.method.as_str()).collect();
    let allowed = allowed.join(", ");
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed on {path}; use {allowed}"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&allowed) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Before anything else: whatever a route reads or answers, no configured secret leaves in its
/// body (`remote::protect`; a request is a fresh instance, with nothing protected yet).
async fn protect_secrets<H: Host>(host: &H) {
    crate::remote::protect(&config::load_secrets(host).await);
}

/// Admin routes: present only with an `admin_token`, and only for its bearer.
async fn authorize<H: Host>(host: &H, request: &Request) -> Result<(), Response> {
    let token = match host.variable("admin_token").await {
        Ok(Some(token)) if !token.trim().is_empty() => token.trim().to_owned(),
        Ok(_) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "admin routes are disabled: set the admin_token variable",
            ));
        }
        Err(detail) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read admin_token: {detail}"),
            ));
        }
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "admin route: send Authorization: Bearer <admin_token>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Err(response)
    }
}
/// The credentials of an `Authorization` value of the `Bearer` scheme, in any case (RFC 9110
/// §11.1: the scheme is case-insensitive; one or more spaces before the credentials).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim_start_matches(' '))
}
/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}
pub(super) async fn with_snapshot<H: Host>(
    host: &H,
    render: impl FnOnce(&Snapshot) -> Response,
) -> Response {
    match cycle::load_snapshot(host).await {
        Ok(snapshot) => render(&snapshot),
        Err(e) => {
            host.log(Level::Error, &e.to_string());
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}
pub(super) fn query_param<'a>(request: &'a http::Request<Vec<u8>>, name: &str) -> Option<&'a str> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    respond(status, "application/json", body.to_string().into_bytes())
}
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let message = crate::remote::sanitize_to(&mask_userinfo(message), 1_000);
    let message = message.as_str();
    json_response(
        status,
        &json!({ "error": { "status": status.as_u16(), "message": message } }),
    )
}
pub(super) fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    // No secret leaves in a body, whatever a stored document or an answer held.
    let body = match String::from_utf8(body) {
        Ok(text) => {
            let redacted = if content_type == "application/json" {
                crate::remote::redact_json(&text)
            } else {
                crate::remote::redact(&text)
            };
            match redacted {
                std::borrow::Cow::Borrowed(_) => text.into_bytes(),
                std::borrow::Cow::Owned(clean) => clean.into_bytes(),
            }
        }
        Err(error) => error.into_bytes(),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_segment_pattern_takes_one_non_empty_segment() {
        let coin = PathPattern::Segment {
            prefix: "/api/v1/coins/",
            name: "code",
        };
        assert!(coin.matches("/api/v1/coins/BTC"));
        assert!(coin.matches("/api/v1/coins/B%2FC"));
        for path in [
            "/api/v1/coins/",
            "/api/v1/coins",
            "/api/v1/coins/BTC/x",
            "/api/v1/coinsBTC",
        ] {
            assert!(!coin.matches(path), "{path}");
        }
        assert_eq!(coin.shown(), "/api/v1/coins/{code}");
    }
}
