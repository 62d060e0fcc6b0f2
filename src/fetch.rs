//! The LCW side of a tick: serves the wanted answers from the cache or LCW (through the guard),
//! reads them into points through their sources, and takes status and credits answers into the
//! resilience state.
//!
//! Owns the order of that work: cache first, then the calls (a due breaker probe alone first,
//! the rest concurrently), then the answers in plan order, so that a coin in both a page and the
//! tracked list is taken once. It knows no source by name: each want's [`Source`] says its
//! endpoint, body, reading and points. It must not decide what a tick wants (`plan`), write
//! anything to a sink or the store (`cycle`), or apply resilience and caching rules itself
//! (`guard`, `cache`).

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt as _;

use crate::cache::{self, TickCache};
use crate::config::Settings;
use crate::guard::{Guard, StatusCheck};
use crate::host::{Host, Level};
use crate::lcw::{self, CreditsAnswer, Endpoint, LcwError, Skipped};
use crate::plan;
use crate::point::Point;
use crate::resilience::Credits;
use crate::source::{self, Answer, Context, Effect, Parsed, Source, Want};
use crate::telemetry::Timing;

/// A wanted call, ready to send or to look up in the cache.
struct Request<'w> {
    /// Its place in the plan.
    index: usize,
    want: &'w Want,
    body: Vec<u8>,
    key: String,
}

/// An answer read, and the time its data was fetched.
struct Fetched<'w> {
    index: usize,
    want: &'w Want,
    parsed: Parsed,
    fetched_at_ms: i64,
    from_cache: bool,
}

/// A call that went out, when, and what came of it.
struct Sent<'w> {
    request: Request<'w>,
    requested_at_ms: i64,
    result: Result<Answer, LcwError>,
    timing: Timing,
}

/// What the LCW side of a tick produced.
#[derive(Default)]
pub struct Fetch {
    pub points: Vec<Point>,
    pub errors: Vec<String>,
    /// A call that carries data failed.
    pub data_failed: bool,
    pub cache_hits: u64,
    /// One per call that went out.
    pub timings: Vec<Timing>,
    /// List elements skipped, by endpoint and reason.
    pub records_skipped: BTreeMap<String, BTreeMap<String, u64>>,
    /// LCW's clock, from the last answer with a `Date` header.
    pub lcw_clock_ms: Option<i64>,
}

/// Serves the wanted answers from the cache or LCW, and builds their points.
pub async fn fetch<H: Host>(
    host: &H,
    settings: &Settings,
    wants: &[Want],
    guard: &Guard<'_, H>,
    mut cache: Option<&mut TickCache>,
) -> Fetch {
    let mut record = Fetch::default();
    let mut fetched = Vec::new();
    let to_send = serve_from_cache(
        host,
        settings,
        wants,
        cache.as_deref_mut(),
        &mut fetched,
        &mut record,
    )
    .await;
    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    let sent = send(host, settings, guard, &client, to_send).await;
    record.lcw_clock_ms = client.remote_clock_ms();
    take_answers(host, guard, sent, cache, &mut fetched, &mut record);
    build_points(host, settings, guard, fetched, &mut record);
    record
}

/// The requests of `wants`; fresh answers come from the cache (into `fetched`), the rest are
/// returned, to go out.
async fn serve_from_cache<'w, H: Host>(
    host: &H,
    settings: &Settings,
    wants: &'w [Want],
    mut cache: Option<&mut TickCache>,
    fetched: &mut Vec<Fetched<'w>>,
    record: &mut Fetch,
) -> Vec<Request<'w>> {
    let names = BTreeMap::new();
    let mut to_send = Vec::new();
    for (index, want) in wants.iter().enumerate() {
        let source = want.source;
        let request = match request(index, want, settings) {
            Ok(request) => request,
            Err(error) => {
                record.data_failed |= source.carries_data();
                record.errors.push(error.to_string());
                continue;
            }
        };
        let hit = match cache.as_deref_mut() {
            // Taken into account when they came: a hit needs no body (none is kept).
            Some(cache) if !source.needs_body() => cache
                .fresh(&request.key, host.unix_millis())
                .map(|fetched_at_ms| (Ok(Parsed::default()), fetched_at_ms)),
            Some(cache) if cache.caches(source.endpoint()) => cache
                .lookup(host, &request.key, host.unix_millis())
                .await
                .map(|hit| {
                    let context = Context {
                        currency: &settings.currency,
                        fetched_at_ms: hit.fetched_at_ms,
                        names: &names,
                    };
                    let parsed = source.parse(&want.ask, &hit.body, &context);
                    (parsed, hit.fetched_at_ms)
                }),
            _ => None,
        };
        match hit {
            Some((Ok(parsed), fetched_at_ms)) => {
                record.cache_hits += 1;
                fetched.push(Fetched {
                    index,
                    want,
                    parsed,
                    fetched_at_ms,
                    from_cache: true,
                });
            }
            _ => to_send.push(request),
        }
    }
    to_send
}

fn request<'w>(index: usize, want: &'w Want, settings: &Settings) -> Result<Request<'w>, LcwError> {
    let body = want.source.body(&want.ask, settings)?;
    Ok(Request {
        index,
        want,
        key: cache::key(want.source.endpoint(), &body),
        body,
    })
}

/// Sends the requests through the guard, at most `max_concurrent_requests` at once. A due
/// breaker probe goes alone first, a call that [`Source::is_probe`] if there is one; once it
/// has closed the breaker the rest of the plan follows in this tick.
async fn send<'w, H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    client: &lcw::Client<'_, H>,
    mut to_send: Vec<Request<'w>>,
) -> Vec<Sent<'w>> {
    let names = BTreeMap::new();
    let context = Context {
        currency: &settings.currency,
        fetched_at_ms: 0,
        names: &names,
    };
    let send = |request: Request<'w>| async move {
        let requested_at_ms = host.unix_millis();
        let call_started = host.monotonic();
        let result = source::call(host, guard, client, request.want, &request.body, context).await;
        let timing = Timing {
            operation: request.want.source.operation(),
            duration: host.monotonic() - call_started,
            ok: result.is_ok(),
        };
        Sent {
            request,
            requested_at_ms,
            result,
            timing,
        }
    };
    let mut sent = Vec::with_capacity(to_send.len());
    if guard.probe_due() && !to_send.is_empty() {
        let at = to_send
            .iter()
            .position(|r| r.want.source.is_probe())
            .unwrap_or(0);
        sent.push(send(to_send.remove(at)).await);
    }
    sent.extend(
        futures::stream::iter(to_send.into_iter().map(send))
            .buffer_unordered(settings.max_concurrent_requests as usize)
            .collect::<Vec<_>>()
            .await,
    );
    sent
}

/// Takes the calls' results as they ended: timings, answers into the cache and `fetched`,
/// failures into the record (a failed reachability check into the resilience state).
fn take_answers<'w, H: Host>(
    host: &H,
    guard: &Guard<'_, H>,
    sent: Vec<Sent<'w>>,
    mut cache: Option<&mut TickCache>,
    fetched: &mut Vec<Fetched<'w>>,
    record: &mut Fetch,
) {
    let now_ms = host.unix_millis();
    for Sent {
        request,
        requested_at_ms,
        result,
        timing,
    } in sent
    {
        // Calls the guard turned away without sending are not timed operations.
        if !matches!(&result, Err(LcwError::NotSent { after: None, .. })) {
            record.timings.push(timing);
        }
        let source = request.want.source;
        match result {
            Ok(Answer {
                parsed,
                raw,
                fetched_at_ms,
            }) => {
                if let Some(cache) = cache.as_deref_mut() {
                    let times = (requested_at_ms, fetched_at_ms);
                    keep(cache, source, request.key, raw, times);
                }
                fetched.push(Fetched {
                    index: request.index,
                    want: request.want,
                    parsed,
                    fetched_at_ms,
                    from_cache: false,
                });
            }
            Err(error) => {
                record.data_failed |= source.carries_data();
                if source.checks_reachability() {
                    guard.with_state(|s| {
                        s.status = Some(StatusCheck {
                            checked_at_ms: now_ms,
                            reachable: false,
                            error: Some(error.to_string()),
                        })
                    });
                }
                record.errors.push(error.to_string());
            }
        }
    }
}

/// An answer into the cache: with its body, or (for one a later tick does not read) only its
/// times.
fn keep(cache: &mut TickCache, source: &dyn Source, key: String, raw: Vec<u8>, times: (i64, i64)) {
    let (requested_at_ms, fetched_at_ms) = times;
    let endpoint = source.endpoint();
    if source.needs_body() {
        cache.store(endpoint, key, raw, requested_at_ms, fetched_at_ms);
    } else {
        cache.store_fetched_only(endpoint, key, &raw, requested_at_ms, fetched_at_ms);
    }
}

/// The answers in plan order: skipped elements counted and their effects taken (both once, when
/// an answer came: a cached one was), their points kept (a coin once, from its first want).
fn build_points<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    mut fetched: Vec<Fetched<'_>>,
    record: &mut Fetch,
) {
    fetched.sort_by_key(|f| f.index);
    let mut coins_seen = HashSet::new();
    for Fetched {
        want,
        parsed,
        fetched_at_ms,
        from_cache,
        ..
    } in fetched
    {
        let source = want.source;
        if !from_cache {
            count_skipped(source.endpoint(), &parsed.skipped, record);
            take_effect(host, settings, guard, source, &parsed.effect, fetched_at_ms);
        }
        if source.coins_once() {
            record
                .points
                .extend(parsed.points.into_iter().filter(|point| {
                    coins_seen.insert(point.tag("code").unwrap_or_default().to_owned())
                }));
        } else {
            record.points.extend(parsed.points);
        }
    }
}

/// Skipped list elements, counted by endpoint and reason, and said: the tick is partial, its
/// record names the first reason.
fn count_skipped(endpoint: Endpoint, skipped: &[Skipped], record: &mut Fetch) {
    for skip in skipped {
        *record
            .records_skipped
            .entry(endpoint.path().to_owned())
            .or_default()
            .entry(skip.reason.to_owned())
            .or_default() += 1;
    }
    if let Some(first) = skipped.first() {
        record.data_failed = true;
        record.errors.push(format!(
            "LCW {}: {} unreadable elements skipped, the rest written ({})",
            endpoint,
            skipped.len(),
            first.detail
        ));
    }
}

/// What a fresh answer tells the tick, into the resilience state.
fn take_effect<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    source: &dyn Source,
    effect: &Effect,
    fetched_at_ms: i64,
) {
    match effect {
        Effect::None => {}
        Effect::Status => guard.with_state(|s| {
            s.status = Some(StatusCheck {
                checked_at_ms: fetched_at_ms,
                reachable: true,
                error: None,
            })
        }),
        Effect::Credits(credits) => record_credits(
            host,
            settings,
            guard,
            source.endpoint(),
            credits,
            fetched_at_ms,
        ),
    }
}

/// Keeps the day's credits and warns when the settings plan more calls than the day allows.
fn record_credits<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    endpoint: Endpoint,
    answer: &CreditsAnswer,
    fetched_at_ms: i64,
) {
    let (Some(remaining), Some(limit)) =
        (answer.daily_credits_remaining, answer.daily_credits_limit)
    else {
        host.log(
            Level::Warn,
            "LCW /credits answered without both credit numbers; keeping the previous ones",
        );
        return;
    };
    // Answers are taken in once the tick's calls are done: those that ended after this one are
    // not in its count. A call in flight beside it may be counted on either side (off by at
    // most `max_concurrent_requests`).
    let spent_since = guard.attempts_after(endpoint);
    guard.with_state(|s| {
        s.credits = Some(Credits {
            remaining,
            limit,
            fetched_at_ms,
            spent_since,
        })
    });
    let planned = plan::calls_per_day(settings);
    if planned as f64 > limit {
        host.log(
            Level::Warn,
            &format!(
                "these settings plan {planned} LCW calls a day{}, above the daily limit of {limit} credits",
                match plan::hedges_per_day(settings) {
                    0 => String::new(),
                    hedges => format!(" ({hedges} of them hedges)"),
                }
            ),
        );
    }
}
