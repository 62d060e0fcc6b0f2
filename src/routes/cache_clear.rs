//! `POST /cache/clear` (admin): empties the response cache, under the lease, so a running tick
//! cannot save over the clear.

use http::StatusCode;
use serde_json::json;

use super::admin::{readable_state, save_if_held, under_lease, unreadable_state};
use super::{Response, error, json_response};
use crate::host::{Host, Level};
use crate::{cache, state};

/// Empties the cache under the lease, so a running tick cannot save over the clear.
pub(super) async fn clear_cache<H: Host>(host: &H) -> Response {
    let outcome = under_lease(host, "cache-clear", async |held| {
        let Some(mut doc) = readable_state(host).await? else {
            return Ok(None);
        };
        let cleared = cache::clear(host, &mut doc.cache).await?;
        save_if_held(host, held, state::STATE_KEY, &doc).await?;
        Ok::<_, cache::CacheError>(Some(cleared))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Ok(None)) => unreadable_state(),
        Ok(Ok(Some(cleared))) => {
            host.log(
                Level::Info,
                &format!("cache cleared by the admin route: {cleared} entries"),
            );
            json_response(StatusCode::OK, &json!({ "cleared_entries": cleared }))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
