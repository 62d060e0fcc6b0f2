//! `POST /backfill` (admin): queues a range of LCW history to fill, under the lease.

use http::StatusCode;
use serde_json::json;

use super::admin::{readable_state, save_if_held, under_lease, usable_settings};
use super::{Request, Response, error, json_response, query_param};
use crate::backfill::{self, BackfillState, Target};
use crate::config::Settings;
use crate::host::{Host, KvError, Level};
use crate::{cycle, state};

/// Queues `from..=to` (Unix milliseconds) of history for `codes` (comma-separated; default the
/// tracked coins and the overview), for a gap the collector could not see (one from before it
/// ran). The collector fills it with its spare calls.
pub(super) async fn queue_backfill<H: Host>(host: &H, request: &Request) -> Response {
    let settings = match usable_settings(host).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let (from_ms, to_ms, targets) = match backfill_request(request, &settings, host.unix_millis()) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let outcome = under_lease(host, "backfill", async |held| {
        // The queue lives in the state document (and its backup); before the first tick of this
        // release, or while the state is unreadable, in the backfill document alone, which the
        // next tick reads.
        if let Some(mut doc) = readable_state(host)
            .await?
            .filter(|doc| doc.schema >= cycle::BACKFILL_IN_STATE)
        {
            // What an earlier release queued in the backup alone is kept.
            if !cycle::take_in_backup(host, &mut doc.backfill, &mut doc.backfill_saved).await {
                return Err(KvError(format!("`{}` not read", state::BACKFILL_KEY)));
            }
            let before = doc.backfill.queued_total;
            for target in &targets {
                doc.backfill.enqueue(target, from_ms, to_ms);
            }
            save_if_held(host, held, state::BACKFILL_KEY, &doc.backfill).await?;
            doc.backfill_saved = crate::backfill::durable_fingerprint(&doc.backfill);
            save_if_held(host, held, state::STATE_KEY, &doc).await?;
            return Ok(Some((
                doc.backfill.queued_total - before,
                doc.backfill.queue.len(),
            )));
        }
        let mut doc =
            match state::load_checked::<BackfillState, _>(host, state::BACKFILL_KEY).await? {
                state::Loaded::Read(doc) => doc,
                state::Loaded::Absent => BackfillState::default(),
                state::Loaded::Unreadable { .. } => return Ok(None),
            };
        let before = doc.queued_total;
        for target in &targets {
            doc.enqueue(target, from_ms, to_ms);
        }
        save_if_held(host, held, state::BACKFILL_KEY, &doc).await?;
        Ok::<_, KvError>(Some((doc.queued_total - before, doc.queue.len())))
    })
    .await;
    match outcome {
        Err(response) => response,
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Ok(None)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the backfill document is unreadable: the next tick sets it aside; try again after it",
        ),
        Ok(Ok(Some((queued, waiting)))) => {
            host.log(
                Level::Info,
                &format!(
                    "backfill of {from_ms}..={to_ms} queued by the admin route: {queued} ranges"
                ),
            );
            json_response(
                StatusCode::OK,
                &json!({ "queued": queued, "waiting": waiting }),
            )
        }
    }
}
/// `from`, `to` and the targets of a backfill request, or what is wrong with it.
fn backfill_request(
    request: &Request,
    settings: &Settings,
    now_ms: i64,
) -> Result<(i64, i64, Vec<Target>), String> {
    let time = |name: &str| -> Result<i64, String> {
        let value = query_param(request, name)
            .ok_or_else(|| format!("`{name}` is required (Unix milliseconds)"))?;
        value
            .parse::<i64>()
            .ok()
            .filter(|t| (0..=now_ms).contains(t))
            .ok_or_else(|| {
                format!(
                    "`{name}` must be Unix milliseconds, not in the future: {:.40}",
                    value
                )
            })
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if to_ms <= from_ms {
        return Err("`to` must be after `from`".into());
    }
    if to_ms - from_ms > backfill::MAX_REQUEST_MS {
        return Err(format!(
            "the range is longer than {} days: queue it in parts",
            backfill::MAX_REQUEST_MS / 86_400_000
        ));
    }
    let targets: Vec<Target> = match query_param(request, "codes").filter(|c| !c.is_empty()) {
        None => settings
            .tracked_coins
            .iter()
            .map(|code| Target::Coin { code: code.clone() })
            .chain([Target::Overview])
            .collect(),
        Some(codes) => codes
            .split(',')
            .map(|code| {
                let valid = !code.is_empty()
                    && code.len() <= 20
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                valid
                    .then(|| Target::Coin {
                        code: code.to_ascii_uppercase(),
                    })
                    .ok_or_else(|| format!("`codes`: {:.40} is not a coin code", code))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut unique: Vec<Target> = Vec::new();
    for target in targets {
        if !unique.contains(&target) {
            unique.push(target);
        }
    }
    Ok((from_ms, to_ms, unique))
}
