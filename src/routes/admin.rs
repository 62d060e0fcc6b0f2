//! What the admin routes that change the collector's state share: the lease they work under, the
//! state document they may read, and the settings they need. It must not answer a route itself.

use http::StatusCode;

use super::{Response, error};
use crate::config::Settings;
use crate::host::{Host, KvError, Level};
use crate::lease::{self, Taken};
use crate::remote::mask_userinfo;
use crate::{cycle, state};

/// The collector's state document, or `None` when it is unreadable: that one is left for the
/// next tick to set aside, never overwritten by a route.
pub(super) async fn readable_state<H: Host>(
    host: &H,
) -> Result<Option<cycle::CollectorState>, KvError> {
    Ok(
        match state::load_checked::<cycle::CollectorState, _>(host, state::STATE_KEY).await? {
            state::Loaded::Read(doc) => Some(doc),
            state::Loaded::Absent => Some(cycle::CollectorState::default()),
            state::Loaded::Unreadable { .. } => None,
        },
    )
}
pub(super) fn unreadable_state() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the state document is unreadable: the next tick sets it aside; try again after it",
    )
}
/// Saves a document while the lease is still valid (a write after that could land over a
/// newer holder's).
pub(super) async fn save_if_held<H: Host, T: serde::Serialize>(
    host: &H,
    held: &lease::Held,
    key: &str,
    doc: &T,
) -> Result<(), KvError> {
    if !held.valid_at(host.unix_millis()) {
        return Err(KvError(format!(
            "the lease ran out before `{key}` was saved"
        )));
    }
    state::save(host, key, doc).await
}
/// Runs `work` under the lease (409 while a tick runs), as every writer of a shared document.
pub(super) async fn under_lease<H: Host, T>(
    host: &H,
    what: &str,
    work: impl AsyncFnOnce(&lease::Held) -> T,
) -> Result<T, Response> {
    let owner = format!("{what}-{:016x}", host.random_u64());
    let expires_at_ms = host.unix_millis() + lease::ROUTE_LEASE.as_millis() as i64;
    let held = match lease::take(host, &owner, expires_at_ms).await {
        Ok(Taken::Held(held)) => held,
        Ok(Taken::Busy { .. }) => {
            return Err(error(
                StatusCode::CONFLICT,
                "a tick is running; try again when it ends",
            ));
        }
        Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    };
    let result = work(&held).await;
    if let Err(e) = lease::release(host, &held).await {
        host.log(
            Level::Warn,
            &format!("lease not released (it expires by itself): {e}"),
        );
    }
    Ok(result)
}
/// The settings, or the 503 that names what is wrong with them (userinfo masked).
pub(super) async fn usable_settings<H: Host>(host: &H) -> Result<Settings, Response> {
    Settings::load(host).await.map_err(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            &mask_userinfo(&e.to_string()),
        )
    })
}
