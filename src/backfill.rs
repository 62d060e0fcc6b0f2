//! Backfill: holes in the data found and filled from LCW's history.
//!
//! Owns the backfill document ([`BackfillState`]: when each series family last had a point, the
//! queue of ranges to fill, and what became of them), how a tick's points reveal a gap, and how
//! a queued range becomes one history call and its points. Whatever made the gap — LCW or the
//! collector down, the breaker open, ticks skipped — the next tick with points sees it.
//!
//! It spends spare capacity only: at most `backfill_calls_per_tick` calls, after the tick's live
//! calls, through the same guard (rate limit, breaker, the LCW deadline), and none while the
//! credits are at or below the reserve. It must not write points (the cycle delivers them with
//! the tick's own) nor touch the store (the cycle loads and saves the document).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::guard::Guard;
use crate::host::{Host, Level};
use crate::influx::line_protocol::{FieldValue, Point};
use crate::lcw::{self, CoinHistoryRequest, Endpoint, LcwError, OverviewHistoryRequest};
use crate::remote::ErrorClass;
use crate::schema;

/// The longest range one history call asks for. LCW answers 5-minute samples; that it does so
/// for a day per call is assumed (its documentation gives no limit).
pub const CHUNK_MS: i64 = 24 * 3600 * 1000;
/// Ranges the queue holds at most; beyond, the oldest are abandoned (and counted).
pub const QUEUE_KEPT: usize = 500;
/// Failed attempts after which a range is abandoned.
pub const MAX_ATTEMPTS: u32 = 3;
/// The longest range the admin route queues at once.
pub const MAX_REQUEST_MS: i64 = 30 * CHUNK_MS;

/// What a range is filled for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Coin {
        code: String,
    },
    #[default]
    Overview,
}

impl Target {
    fn family(&self) -> String {
        match self {
            Self::Coin { code } => format!("coin:{code}"),
            Self::Overview => "overview".into(),
        }
    }
}

/// A time range (Unix milliseconds, both ends included) to fill for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Range {
    pub target: Target,
    pub from_ms: i64,
    pub to_ms: i64,
    pub attempts: u32,
}

/// The backfill document, kept apart from the state document so that neither an unreadable
/// state nor a restart loses the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackfillState {
    /// When each family (`coin:<CODE>`, `overview`) last had a point written or spooled.
    pub last_point_ms: BTreeMap<String, i64>,
    /// Names of the coins watched, so that history points join the live series.
    pub names: BTreeMap<String, String>,
    pub queue: VecDeque<Range>,
    /// The first tick has queued its initial history.
    pub initialized: bool,
    pub queued_total: u64,
    pub filled: u64,
    pub abandoned: u64,
    pub points: u64,
}

impl BackfillState {
    /// Queues `from..=to` for `target`, in chunks one call can fill.
    pub fn enqueue(&mut self, target: &Target, from_ms: i64, to_ms: i64) {
        let mut start = from_ms;
        while start <= to_ms {
            let end = start.saturating_add(CHUNK_MS - 1).min(to_ms);
            self.queue.push_back(Range {
                target: target.clone(),
                from_ms: start,
                to_ms: end,
                attempts: 0,
            });
            self.queued_total += 1;
            start = end.saturating_add(1);
        }
        while self.queue.len() > QUEUE_KEPT {
            self.queue.pop_front();
            self.abandoned += 1;
        }
    }
}

/// Notes this tick's points: queues the first run's history, and every gap a watched family
/// shows (its last point longer than `backfill_min_gap_s` before this one).
pub fn observe(state: &mut BackfillState, settings: &Settings, points: &[Point], now_ms: i64) {
    let watched = watched_coins(settings, points);
    if !state.initialized {
        state.initialized = true;
        let hours = i64::try_from(settings.backfill.initial_history_hours).unwrap_or(0);
        if hours > 0 {
            let from = now_ms.saturating_sub(hours * 3600 * 1000);
            for code in &settings.tracked_coins {
                state.enqueue(&Target::Coin { code: code.clone() }, from, now_ms - 1);
            }
        }
    }
    let min_gap_ms =
        i64::try_from(settings.backfill.min_gap_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    for point in points {
        let Some(target) = target_of(point, &watched) else {
            continue;
        };
        if let (Target::Coin { code }, Some(name)) = (&target, tag(point, "name")) {
            state.names.insert(code.clone(), name.to_owned());
        }
        let family = target.family();
        let time = point.timestamp_ms;
        if let Some(&last) = state.last_point_ms.get(&family)
            && time.saturating_sub(last) > min_gap_ms
        {
            state.enqueue(&target, last.saturating_add(1), time.saturating_sub(1));
        }
        let last = state.last_point_ms.entry(family).or_insert(time);
        *last = (*last).max(time);
    }
    // Coins no longer watched are forgotten, so the document stays bounded.
    state.last_point_ms.retain(|family, _| {
        family == "overview"
            || family
                .strip_prefix("coin:")
                .is_some_and(|c| watched.contains(&c.to_owned()))
    });
    state.names.retain(|code, _| watched.contains(code));
}

/// `tracked_coins`, plus the first `backfill_top_coins` coins of the top list by rank.
fn watched_coins(settings: &Settings, points: &[Point]) -> Vec<String> {
    let mut watched = settings.tracked_coins.clone();
    let mut ranked: Vec<(i64, &str)> = points
        .iter()
        .filter(|p| p.measurement == schema::COINS_MEASUREMENT)
        .filter_map(|p| {
            let rank = p.fields.iter().find_map(|(k, v)| match (k, v) {
                (&"rank", FieldValue::Integer(r)) => Some(*r),
                _ => None,
            })?;
            Some((rank, tag(p, "code")?))
        })
        .collect();
    ranked.sort();
    for (_, code) in ranked
        .into_iter()
        .take(settings.backfill.top_coins as usize)
    {
        if !watched.iter().any(|w| w == code) {
            watched.push(code.to_owned());
        }
    }
    watched
}

fn target_of(point: &Point, watched: &[String]) -> Option<Target> {
    match point.measurement {
        schema::OVERVIEW_MEASUREMENT => Some(Target::Overview),
        schema::COINS_MEASUREMENT => {
            let code = tag(point, "code")?;
            watched.iter().any(|w| w == code).then(|| Target::Coin {
                code: code.to_owned(),
            })
        }
        _ => None,
    }
}

fn tag<'p>(point: &'p Point, key: &str) -> Option<&'p str> {
    point
        .tags
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

/// What a tick's backfill did.
#[derive(Debug, Default)]
pub struct Filled {
    pub points: Vec<Point>,
    pub calls: u32,
    pub errors: Vec<String>,
}

/// Fills queued ranges, oldest first, within the budget (see the module doc).
pub async fn fill<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    state: &mut BackfillState,
) -> Filled {
    let mut filled = Filled::default();
    if state.queue.is_empty() || settings.backfill.calls_per_tick == 0 {
        return filled;
    }
    let credits = guard.with_state(|s| s.credits);
    if credits.is_some_and(|c| c.below_reserve(settings.credit_reserve_percent)) {
        host.log(
            Level::Info,
            "backfill waits: the day's credits are at the reserve",
        );
        return filled;
    }
    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    while filled.calls < settings.backfill.calls_per_tick {
        let Some(mut range) = state.queue.pop_front() else {
            break;
        };
        filled.calls += 1;
        match history(&client, settings, guard, &range, state).await {
            Ok(points) => {
                state.filled += 1;
                state.points += points.len() as u64;
                filled.points.extend(points);
            }
            // Not sent (breaker, rate limit, deadline): the range waits for a later tick.
            Err(LcwError::NotSent { .. }) => {
                state.queue.push_front(range);
                break;
            }
            Err(error) => {
                range.attempts += 1;
                let retry = matches!(
                    error.class(),
                    ErrorClass::Transient | ErrorClass::RateLimited
                ) && range.attempts < MAX_ATTEMPTS;
                filled.errors.push(format!("backfill: {error}"));
                if retry {
                    state.queue.push_back(range);
                } else {
                    state.abandoned += 1;
                }
            }
        }
    }
    filled
}

/// One history call for `range` and its points, within the range.
async fn history<H: Host>(
    client: &lcw::Client<'_, H>,
    settings: &Settings,
    guard: &Guard<'_, H>,
    range: &Range,
    state: &BackfillState,
) -> Result<Vec<Point>, LcwError> {
    let currency = settings.currency.as_str();
    let within = |p: &Point| (range.from_ms..=range.to_ms).contains(&p.timestamp_ms);
    match &range.target {
        Target::Coin { code } => {
            let request = CoinHistoryRequest {
                currency,
                code,
                start: range.from_ms,
                end: range.to_ms,
                meta: false,
            };
            let answer = guard
                .call(Endpoint::CoinsSingleHistory, |timeouts| {
                    client.coin_history(&request, timeouts)
                })
                .await?;
            let name = state.names.get(code).map(String::as_str);
            Ok(answer
                .history
                .iter()
                .filter_map(|s| schema::coin_history_point(code, name, currency, s))
                .filter(within)
                .collect())
        }
        Target::Overview => {
            let request = OverviewHistoryRequest {
                currency,
                start: range.from_ms,
                end: range.to_ms,
            };
            let answer = guard
                .call(Endpoint::OverviewHistory, |timeouts| {
                    client.overview_history(&request, timeouts)
                })
                .await?;
            Ok(answer
                .iter()
                .filter_map(|s| schema::overview_history_point(s, currency))
                .filter(within)
                .collect())
        }
    }
}
