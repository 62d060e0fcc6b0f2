//! The LCW side of a tick: serves the wanted answers from the cache or LCW (through the guard),
//! parses them and builds their points, and takes status and credits answers into the resilience
//! state.
//!
//! Owns the request, parse and cache-hit rules of each wanted call. It must not decide what a
//! tick wants (`plan`), write anything to a sink or the store (`cycle`), or apply resilience and
//! caching rules itself (`guard`, `cache`).

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt as _;

use crate::cache::{self, TickCache};
use crate::config::Settings;
use crate::guard::{Guard, StatusCheck};
use crate::host::{Host, Level};
use crate::lcw::{
    self, Coin, CoinsListRequest, CoinsMapRequest, CreditsAnswer, CurrencyRequest, Endpoint,
    Exchange, ExchangesListRequest, LcwError, NoParameters, Overview, Page,
};
use crate::plan::{self, Want};
use crate::point::Point;
use crate::resilience::Credits;
use crate::schema;
use crate::telemetry::{Timing, op};

/// A wanted call, ready to send or to look up in the cache.
struct Request {
    want: Want,
    endpoint: Endpoint,
    body: Vec<u8>,
    key: String,
}

/// A parsed LCW answer.
enum Answer {
    Status,
    Credits(CreditsAnswer),
    Coins(Page<Coin>),
    Overview(Overview),
    Exchanges(Page<Exchange>),
}

/// An answer and the time its data was fetched.
struct Fetched {
    want: Want,
    answer: Answer,
    fetched_at_ms: i64,
    from_cache: bool,
}

fn request(want: Want, settings: &Settings) -> Result<Request, LcwError> {
    let currency = settings.currency.as_str();
    let endpoint = want.endpoint();
    let body = match &want {
        Want::Status | Want::Credits => lcw::request_body(endpoint, &NoParameters {})?,
        Want::CoinsPage { offset, limit } => lcw::request_body(
            endpoint,
            &CoinsListRequest::top_by_rank(currency, *offset, *limit),
        )?,
        Want::Tracked => lcw::request_body(
            endpoint,
            &CoinsMapRequest::codes(currency, &settings.tracked_coins),
        )?,
        Want::Overview => lcw::request_body(endpoint, &CurrencyRequest { currency })?,
        Want::Exchanges { limit } => lcw::request_body(
            endpoint,
            &ExchangesListRequest::top_by_volume(currency, *limit),
        )?,
    };
    Ok(Request {
        key: cache::key(endpoint, &body),
        want,
        endpoint,
        body,
    })
}

fn parse(want: &Want, body: &[u8]) -> Result<Answer, LcwError> {
    let endpoint = want.endpoint();
    Ok(match want {
        Want::Status => {
            lcw::parse_body::<lcw::Status>(endpoint, body)?;
            Answer::Status
        }
        Want::Credits => Answer::Credits(lcw::parse_body(endpoint, body)?),
        // Lists are read element by element: one bad element does not cost the page.
        Want::CoinsPage { .. } | Want::Tracked => Answer::Coins(lcw::parse_list(endpoint, body)?),
        Want::Overview => Answer::Overview(lcw::parse_body(endpoint, body)?),
        Want::Exchanges { .. } => Answer::Exchanges(lcw::parse_list(endpoint, body)?),
    })
}

/// The telemetry name of a wanted call.
fn operation_of(want: &Want) -> &'static str {
    match want {
        Want::Status => op::STATUS,
        Want::Credits => op::CREDITS,
        Want::CoinsPage { .. } => op::COINS_LIST,
        Want::Tracked => op::COINS_MAP,
        Want::Overview => op::OVERVIEW,
        Want::Exchanges { .. } => op::EXCHANGES,
    }
}

/// Whether a cache hit of `want` needs the answer's body: status and credits are taken into
/// account when they arrive, so a fresh entry is all a later tick needs.
fn needs_body(want: &Want) -> bool {
    !matches!(want, Want::Status | Want::Credits)
}

/// The answer a hit without body stands for (ignored: see [`needs_body`]).
fn cached_without_body(want: &Want) -> Answer {
    match want {
        Want::Credits => Answer::Credits(CreditsAnswer {
            daily_credits_remaining: None,
            daily_credits_limit: None,
        }),
        _ => Answer::Status,
    }
}

/// Status and credits only inform; the other wants carry data, and their failure makes a tick
/// partial.
fn carries_data(want: &Want) -> bool {
    !matches!(want, Want::Status | Want::Credits)
}

/// What the LCW side of a tick produced.
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
    let mut record = Fetch {
        points: Vec::new(),
        errors: Vec::new(),
        data_failed: false,
        cache_hits: 0,
        timings: Vec::new(),
        records_skipped: BTreeMap::new(),
        lcw_clock_ms: None,
    };
    let mut data_failed = false;
    let mut fetched = Vec::new();
    let mut to_send = Vec::new();

    // Fresh answers come from the cache; the rest go out.
    for want in wants {
        let request = match request(want.clone(), settings) {
            Ok(request) => request,
            Err(error) => {
                data_failed |= carries_data(want);
                record.errors.push(error.to_string());
                continue;
            }
        };
        let hit = match cache.as_deref_mut() {
            // Taken into account when they came: a hit needs no body (none is kept).
            Some(cache) if !needs_body(&request.want) => cache
                .fresh(&request.key, host.unix_millis())
                .map(|fetched_at_ms| (Ok(cached_without_body(&request.want)), fetched_at_ms)),
            Some(cache) if cache.caches(request.endpoint) => cache
                .lookup(host, &request.key, host.unix_millis())
                .await
                .map(|hit| (parse(&request.want, &hit.body), hit.fetched_at_ms)),
            _ => None,
        };
        match hit {
            Some((Ok(answer), fetched_at_ms)) => {
                record.cache_hits += 1;
                fetched.push(Fetched {
                    want: request.want,
                    answer,
                    fetched_at_ms,
                    from_cache: true,
                });
            }
            _ => to_send.push(request),
        }
    }

    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    let send = |request: Request| {
        let client = &client;
        async move {
            let requested_at_ms = host.unix_millis();
            let call_started = host.monotonic();
            let result = guard
                .call(request.endpoint, |timeouts| {
                    let body = request.body.clone();
                    let want = &request.want;
                    async move {
                        let raw = client.send_raw(want.endpoint(), body, timeouts).await?;
                        let answer = parse(want, &raw)?;
                        Ok((answer, raw))
                    }
                })
                .await;
            let timing = Timing {
                operation: operation_of(&request.want),
                duration: host.monotonic() - call_started,
                ok: result.is_ok(),
            };
            (request, requested_at_ms, host.unix_millis(), result, timing)
        }
    };
    let mut sent = Vec::with_capacity(to_send.len());
    if guard.probe_due() && !to_send.is_empty() {
        // The probe goes alone, a coin page if there is one (the cheapest call that carries
        // data); once it has closed the breaker the rest of the plan follows in this tick.
        let at = to_send
            .iter()
            .position(|r| matches!(r.want, Want::CoinsPage { .. }))
            .unwrap_or(0);
        sent.push(send(to_send.remove(at)).await);
    }
    sent.extend(
        futures::stream::iter(to_send.into_iter().map(send))
            .buffer_unordered(settings.max_concurrent_requests as usize)
            .collect::<Vec<_>>()
            .await,
    );

    record.lcw_clock_ms = client.remote_clock_ms();
    let now_ms = host.unix_millis();
    for (request, requested_at_ms, fetched_at_ms, result, timing) in sent {
        // Calls the guard turned away without sending are not timed operations.
        if !matches!(&result, Err(LcwError::NotSent { after: None, .. })) {
            record.timings.push(timing);
        }
        match result {
            Ok((answer, raw)) => {
                if let Some(cache) = cache.as_deref_mut() {
                    if needs_body(&request.want) {
                        cache.store(
                            request.endpoint,
                            request.key,
                            raw,
                            requested_at_ms,
                            fetched_at_ms,
                        );
                    } else {
                        cache.store_fetched_only(
                            request.endpoint,
                            request.key,
                            &raw,
                            requested_at_ms,
                            fetched_at_ms,
                        );
                    }
                }
                fetched.push(Fetched {
                    want: request.want,
                    answer,
                    fetched_at_ms,
                    from_cache: false,
                });
            }
            Err(error) => {
                data_failed |= carries_data(&request.want);
                if request.want == Want::Status {
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

    // Points, in plan order so that a coin in both a page and the tracked list is taken once.
    fetched.sort_by_key(|f| wants.iter().position(|w| *w == f.want));
    let currency = settings.currency.as_str();
    let mut coins_seen = HashSet::new();
    for Fetched {
        want,
        answer,
        fetched_at_ms,
        from_cache,
    } in &fetched
    {
        // Skipped elements are counted once, when the answer came (a cached one was counted).
        let skipped = match answer {
            Answer::Coins(page) if !*from_cache => page.skipped.as_slice(),
            Answer::Exchanges(page) if !*from_cache => page.skipped.as_slice(),
            _ => &[],
        };
        for skip in skipped {
            *record
                .records_skipped
                .entry(want.endpoint().path().to_owned())
                .or_default()
                .entry(skip.reason.to_owned())
                .or_default() += 1;
        }
        // Counted and said: the tick is partial, its record names the first reason.
        if let Some(first) = skipped.first() {
            data_failed = true;
            record.errors.push(format!(
                "LCW {}: {} unreadable elements skipped, the rest written ({})",
                want.endpoint(),
                skipped.len(),
                first.detail
            ));
        }
        match answer {
            // A cached status or credits answer was taken into account when it was fetched.
            Answer::Status | Answer::Credits(_) if *from_cache => {}
            Answer::Status => {
                guard.with_state(|s| {
                    s.status = Some(StatusCheck {
                        checked_at_ms: *fetched_at_ms,
                        reachable: true,
                        error: None,
                    })
                });
            }
            Answer::Credits(credits) => {
                record_credits(host, settings, guard, credits, *fetched_at_ms)
            }
            Answer::Coins(coins) => record.points.extend(
                coins
                    .items
                    .iter()
                    .filter(|coin| coins_seen.insert(coin.code.clone()))
                    .map(|coin| schema::coin_point(coin, currency, *fetched_at_ms)),
            ),
            Answer::Overview(overview) => {
                record
                    .points
                    .push(schema::overview_point(overview, currency, *fetched_at_ms))
            }
            Answer::Exchanges(exchanges) => record.points.extend(
                exchanges
                    .items
                    .iter()
                    .map(|e| schema::exchange_point(e, currency, *fetched_at_ms)),
            ),
        }
    }
    record.data_failed = data_failed;
    record
}

/// Keeps the day's credits and warns when the settings plan more calls than the day allows.
fn record_credits<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
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
    let spent_since = guard.attempts_after(Endpoint::Credits);
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
