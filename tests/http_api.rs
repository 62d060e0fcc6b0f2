//! The HTTP API: the route table, the two components' entries, `/status`, the query API, the
//! statistics and metrics across ticks, and the page in a real browser.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "http_api/observability.rs"]
mod observability;
#[path = "http_api/page_browser.rs"]
mod page_browser;
#[path = "http_api/query.rs"]
mod query;
#[path = "http_api/route_split.rs"]
mod route_split;
#[path = "http_api/routes.rs"]
mod routes;
#[path = "http_api/status.rs"]
mod status;
