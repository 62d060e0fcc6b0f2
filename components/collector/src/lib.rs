//! Cron-triggered component: one fetch cycle per tick. Glue only — the cycle is
//! `lcw_fetcher::cycle::run`, the host is `lcw_fetcher::spin_host::SpinHost`.
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
