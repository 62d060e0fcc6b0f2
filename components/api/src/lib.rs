//! HTTP component: the routes of `lcw_fetcher::routes` on a Spin host, but `POST /collect`,
//! which spin.toml routes to the collector component. Glue only.
#![cfg(target_arch = "wasm32")]

use lcw_fetcher::spin_host::SpinHost;
use spin_sdk::http::{FullBody, Request, body::IncomingBodyExt as _};
use spin_sdk::wasip3::http::types::ErrorCode;

#[spin_sdk::http_service]
async fn handle(request: Request) -> Result<http::Response<FullBody<bytes::Bytes>>, ErrorCode> {
    let (parts, body) = request.into_parts();
    let body = body.bytes().await?.to_vec();
    let host = SpinHost::open("api").await;
    let response =
        lcw_fetcher::routes::handle_api(&host, &http::Request::from_parts(parts, body)).await;
    Ok(response.map(|body| FullBody::new(bytes::Bytes::from(body))))
}
