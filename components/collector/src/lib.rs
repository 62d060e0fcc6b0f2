//! Collector component: one fetch cycle per cron tick, and `POST /collect` (spin.toml routes that
//! one path here, so that the api component does not carry the cycle's code). Glue only — the
//! cycle is `lcw_fetcher::cycle::run`, the route `lcw_fetcher::routes::handle_collect`, the host
//! `lcw_fetcher::spin_host::SpinHost`.
#![cfg(target_arch = "wasm32")]

spin_sdk::wit_bindgen::generate!({
    world: "spin-cron",
    path: "wit",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

use lcw_fetcher::spin_host::SpinHost;

struct Collector;

impl Guest for Collector {
    async fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        let host = SpinHost::open("collector").await;
        // The cycle records and logs its own outcome; a failed tick is not a trigger error
        // (the plugin would only log it again). The tick's time names its slot, so that of
        // several hosts firing for it one runs.
        lcw_fetcher::cycle::run_scheduled(&host, metadata.timestamp).await;
        Ok(())
    }
}

export!(Collector);

/// `POST /collect`: a tick now, answered as the full route table answers it.
mod collect_route {
    use lcw_fetcher::spin_host::SpinHost;
    use spin_sdk::http::{FullBody, Request, body::IncomingBodyExt as _};
    use spin_sdk::wasip3::http::types::ErrorCode;

    #[spin_sdk::http_service]
    async fn handle(request: Request) -> Result<http::Response<FullBody<bytes::Bytes>>, ErrorCode> {
        let (parts, body) = request.into_parts();
        let body = body.bytes().await?.to_vec();
        let host = SpinHost::open("collector").await;
        let response =
            lcw_fetcher::routes::handle_collect(&host, &http::Request::from_parts(parts, body))
                .await;
        Ok(response.map(|body| FullBody::new(bytes::Bytes::from(body))))
    }
}
