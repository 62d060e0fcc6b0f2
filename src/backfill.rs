//! Backfill: holes in the data found and filled from LCW's history.
//!
//! Owns the backfill document ([`BackfillState`]: when each series family last had a point, the
//! queue of ranges to fill, and what became of them), how a tick's points reveal a gap, and how
//! a queued range becomes one history call and its points (through the coin-history and
//! overview-history sources). Whatever made the gap — LCW or the
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
use crate::lcw::{self, LcwError};
use crate::remote::ErrorClass;
use crate::schema;
use crate::sink::line_protocol::{FieldValue, Point};
use crate::source::{
    self, Ask, Context, Want, coin_history::COIN_HISTORY, overview_history::OVERVIEW_HISTORY,
};

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
    /// A kind a newer release queued: dropped (and counted abandoned) instead of making the
    /// whole document unreadable.
    #[serde(other)]
    Unknown,
}

impl Target {
    fn family(&self) -> String {
        match self {
            Self::Coin { code } => format!("coin:{code}"),
            Self::Overview => "overview".into(),
            Self::Unknown => "unknown".into(),
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
    /// Only the last [`MAX_REQUEST_MS`] of a longer gap are queued (older history is rarely
    /// worth the credits, and a clock that jumped must not fill the queue); a range already
    /// queued is not queued again.
    pub fn enqueue(&mut self, target: &Target, from_ms: i64, to_ms: i64) {
        let mut start = from_ms.max(to_ms.saturating_sub(MAX_REQUEST_MS));
        while start <= to_ms {
            let end = start.saturating_add(CHUNK_MS - 1).min(to_ms);
            let range = Range {
                target: target.clone(),
                from_ms: start,
                to_ms: end,
                attempts: 0,
            };
            if !self.queue.iter().any(|queued| same_range(queued, &range)) {
                self.queue.push_back(range);
                self.queued_total = self.queued_total.saturating_add(1);
            }
            start = end.saturating_add(1);
        }
        self.bound();
    }

    /// Keeps the queue within [`QUEUE_KEPT`] ranges: the oldest beyond are abandoned (and
    /// counted). Applied to every queue read too (another release's, a corrupted one).
    /// Names and codes are held to what a live answer may bring in (`lcw::NAME_LIMIT`,
    /// `lcw::CODE_LIMIT`), whatever the stored document held.
    pub fn bound(&mut self) {
        let excess = self.queue.len().saturating_sub(QUEUE_KEPT);
        self.queue.drain(..excess);
        self.abandoned = self.abandoned.saturating_add(excess as u64);
        self.names
            .retain(|code, _| code.len() <= crate::lcw::CODE_LIMIT);
        for name in self.names.values_mut() {
            if name.len() > crate::lcw::NAME_LIMIT {
                *name = crate::remote::sanitize_to(name, crate::lcw::NAME_LIMIT);
            }
        }
        self.last_point_ms
            .retain(|family, _| family.len() <= crate::lcw::CODE_LIMIT + "coin:".len());
    }
}

impl BackfillState {
    /// Takes in what `other`, another copy of this document, holds and this one lacks: its
    /// ranges not queued here, names, the later last point of each family, the larger counters.
    /// Nothing queued in either copy is lost (a range filled here since may be filled again).
    pub fn merge(&mut self, other: BackfillState) {
        for range in other.queue {
            if !self.queue.iter().any(|queued| same_range(queued, &range)) {
                self.queue.push_back(range);
            }
        }
        for (family, at) in other.last_point_ms {
            let last = self.last_point_ms.entry(family).or_insert(at);
            *last = (*last).max(at);
        }
        for (code, name) in other.names {
            self.names.entry(code).or_insert(name);
        }
        self.initialized |= other.initialized;
        self.queued_total = self.queued_total.max(other.queued_total);
        self.filled = self.filled.max(other.filled);
        self.abandoned = self.abandoned.max(other.abandoned);
        self.points = self.points.max(other.points);
        self.bound();
    }
}

/// A fingerprint of everything in `state` but `last_point_ms` (which moves every tick): the
/// cycle writes the backup copy of the document ([`crate::state::BACKFILL_KEY`]) only when this
/// changes. FNV-1a over the JSON, stable across builds.
pub fn durable_fingerprint(state: &BackfillState) -> u64 {
    #[derive(Serialize)]
    struct Durable<'a> {
        names: &'a BTreeMap<String, String>,
        queue: &'a VecDeque<Range>,
        initialized: bool,
        queued_total: u64,
        filled: u64,
        abandoned: u64,
        points: u64,
    }
    let json = serde_json::to_vec(&Durable {
        names: &state.names,
        queue: &state.queue,
        initialized: state.initialized,
        queued_total: state.queued_total,
        filled: state.filled,
        abandoned: state.abandoned,
        points: state.points,
    })
    .unwrap_or_default();
    json.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn same_range(a: &Range, b: &Range) -> bool {
    a.target == b.target && a.from_ms == b.from_ms && a.to_ms == b.to_ms
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
        if let (Target::Coin { code }, Some(name)) = (&target, point.tag("name")) {
            state.names.insert(code.clone(), name.to_owned());
        }
        let family = target.family();
        let time = point.timestamp_ms;
        let last = state.last_point_ms.get(&family).copied();
        if let Some(last) = last
            && time.saturating_sub(last) > min_gap_ms
        {
            state.enqueue(&target, last.saturating_add(1), time.saturating_sub(1));
        }
        // Even when older than the last one seen (a clock that had jumped ahead), the series
        // goes on from here: otherwise one jump forward would hide every later gap.
        state.last_point_ms.insert(family, time);
    }
    // Ranges from the future were queued under a clock that had jumped ahead.
    let queued = state.queue.len();
    state.queue.retain(|range| range.from_ms <= now_ms);
    state.abandoned = state
        .abandoned
        .saturating_add((queued - state.queue.len()) as u64);
    // Coins no longer watched are forgotten, so the document stays bounded.
    let is_watched = |code: &str| watched.iter().any(|w| w == code);
    state.last_point_ms.retain(|family, _| {
        family == "overview" || family.strip_prefix("coin:").is_some_and(is_watched)
    });
    state.names.retain(|code, _| is_watched(code));
}

/// `tracked_coins`, plus the first `backfill_top_coins` coins of the top list by rank.
fn watched_coins(settings: &Settings, points: &[Point]) -> Vec<String> {
    let mut watched = settings.tracked_coins.clone();
    let mut ranked: Vec<(i64, &str)> = points
        .iter()
        .filter(|p| p.measurement == schema::COINS_MEASUREMENT)
        .filter_map(|p| {
            let FieldValue::Integer(rank) = p.field("rank")? else {
                return None;
            };
            Some((*rank, p.tag("code")?))
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
    match point.measurement.as_ref() {
        schema::OVERVIEW_MEASUREMENT => Some(Target::Overview),
        schema::COINS_MEASUREMENT => {
            let code = point.tag("code")?;
            watched.iter().any(|w| w == code).then(|| Target::Coin {
                code: code.to_owned(),
            })
        }
        _ => None,
    }
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
    live: &[Point],
) -> Filled {
    let mut filled = Filled::default();
    if state.queue.is_empty() || settings.backfill.calls_per_tick == 0 {
        return filled;
    }
    let budget = settings
        .backfill
        .calls_per_tick
        .min(spare_credits(settings, guard));
    if budget == 0 {
        host.log(
            Level::Info,
            "backfill waits: the day's credits are at the reserve",
        );
        return filled;
    }
    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    let now_ms = host.unix_millis();
    while filled.calls < budget {
        let Some(range) = state.queue.pop_front() else {
            break;
        };
        // Queued by a clock that had jumped ahead, or by a newer release: nothing to ask.
        if range.from_ms > now_ms || range.target == Target::Unknown {
            state.abandoned = state.abandoned.saturating_add(1);
            continue;
        }
        filled.calls += 1;
        let result = history(host, &client, settings, guard, &range, &names(state, live)).await;
        if !settle(state, range, result, &mut filled) {
            break;
        }
    }
    filled
}

/// Takes what became of one range's call into the document and `filled`; false when the call
/// was not sent (breaker, rate limit, deadline): the range waits for a later tick, and so do
/// the others.
fn settle(
    state: &mut BackfillState,
    mut range: Range,
    result: Result<Vec<Point>, LcwError>,
    filled: &mut Filled,
) -> bool {
    match result {
        Ok(points) => {
            // Totals of the stored document: saturating, whatever it held.
            state.filled = state.filled.saturating_add(1);
            state.points = state.points.saturating_add(points.len() as u64);
            filled.points.extend(points);
        }
        Err(LcwError::NotSent { .. }) => {
            state.queue.push_front(range);
            return false;
        }
        Err(error) => {
            range.attempts = range.attempts.saturating_add(1);
            let retry = matches!(
                error.class(),
                ErrorClass::Transient | ErrorClass::RateLimited
            ) && range.attempts < MAX_ATTEMPTS;
            filled.errors.push(format!("backfill: {error}"));
            if retry {
                state.queue.push_back(range);
            } else {
                state.abandoned = state.abandoned.saturating_add(1);
            }
        }
    }
    true
}

/// Coin names known this tick: the watched coins' kept names, and every live coin point's (so
/// that a coin queued by hand joins its live series too).
fn names(state: &BackfillState, live: &[Point]) -> BTreeMap<String, String> {
    let mut names = state.names.clone();
    for point in live
        .iter()
        .filter(|p| p.measurement == schema::COINS_MEASUREMENT)
    {
        if let (Some(code), Some(name)) = (point.tag("code"), point.tag("name")) {
            names.insert(code.to_owned(), name.to_owned());
        }
    }
    names
}

/// History calls the credits allow: those above the reserve, less every call made since the
/// count was read (it may be minutes old). Unknown credits allow the whole budget.
fn spare_credits<H: Host>(settings: &Settings, guard: &Guard<'_, H>) -> u32 {
    let Some(credits) = guard.with_state(|s| s.credits) else {
        return u32::MAX;
    };
    let reserve = credits.reserve(settings.credit_reserve_percent);
    (credits.estimated_remaining() - reserve).clamp(0.0, f64::from(u32::MAX)) as u32
}

/// One history call for `range` and its points, within the range, one a 5-minute slot (the
/// resolution asked for, whatever the answer holds).
async fn history<H: Host>(
    host: &H,
    client: &lcw::Client<'_, H>,
    settings: &Settings,
    guard: &Guard<'_, H>,
    range: &Range,
    names: &BTreeMap<String, String>,
) -> Result<Vec<Point>, LcwError> {
    let Some(want) = history_want(range) else {
        return Ok(Vec::new());
    };
    let body = want.source.body(&want.ask, settings)?;
    let context = Context {
        currency: &settings.currency,
        fetched_at_ms: 0,
        names,
    };
    let answer = source::call(host, guard, client, &want, &body, context).await?;
    let mut slots = std::collections::BTreeSet::new();
    Ok(answer
        .parsed
        .points
        .into_iter()
        .filter(|p| (range.from_ms..=range.to_ms).contains(&p.timestamp_ms))
        .filter(|p| slots.insert(p.timestamp_ms.div_euclid(SAMPLE_MS)))
        .collect())
}

/// LCW's history resolution.
const SAMPLE_MS: i64 = 5 * 60 * 1000;

/// The history call that fills `range`: its source and parameters (none for a target of a
/// newer release).
fn history_want(range: &Range) -> Option<Want> {
    let (from_ms, to_ms) = (range.from_ms, range.to_ms);
    match &range.target {
        Target::Coin { code } => Some(Want::new(
            &COIN_HISTORY,
            Ask::CoinRange {
                code: code.clone(),
                from_ms,
                to_ms,
            },
        )),
        Target::Overview => Some(Want::new(&OVERVIEW_HISTORY, Ask::Range { from_ms, to_ms })),
        Target::Unknown => None,
    }
}
