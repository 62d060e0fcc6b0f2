//! `POST /collect` (admin): one tick now, through the same cycle as a cron tick (it takes the
//! lease like any tick). The collector component's only route.

use http::StatusCode;
use serde_json::json;

use super::{Response, json_response};
use crate::cycle;
use crate::host::Host;

pub(super) async fn collect<H: Host>(host: &H) -> Response {
    let record = cycle::run(host).await;
    json_response(StatusCode::OK, &json!({ "cycle": record }))
}
