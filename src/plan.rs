//! The plan of a tick: which LCW calls it wants, which optional ones the credit budget drops,
//! and what the settings cost in credits per day, the expected second copies of hedged requests
//! included.
//!
//! Owns the "what and how often" of fetching. Whether a wanted call is made at all is then up to
//! the cache (a fresh answer is served from it) and the guard (breaker, rate limit, deadline).
//! It must not make calls or read the store.

use crate::cache;
use crate::config::Settings;
use crate::guard::ResilienceState;
use crate::hedge::HedgePolicy;
use crate::lcw::{Endpoint, PAGE_LIMIT};
use crate::source::{LIVE, PLANNED, Want};

/// What this tick wants, in the order it should be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub wants: Vec<Want>,
    /// Why optional calls were dropped, for the log.
    pub dropped: Option<String>,
}

/// The wants of a tick under `settings`, given the last known credits.
pub fn plan(settings: &Settings, state: &ResilienceState) -> Plan {
    let pages = settings.max_coins_per_fetch.div_ceil(PAGE_LIMIT);
    let low_credits = state
        .credits
        .as_ref()
        .filter(|c| c.below_reserve(settings.credit_reserve_percent));
    // Below the reserve the sources keep one coin page and no exchanges (their `wants`).
    let dropped = low_credits
        .filter(|_| 1 < pages || settings.max_exchanges_per_fetch > 0)
        .map(|c| {
            format!(
                "{} of {} daily credits left, at or below the {} % reserve: fetching 1 coin page instead of {pages} and no exchanges",
                c.remaining, c.limit, settings.credit_reserve_percent
            )
        });

    let low = low_credits.is_some();
    let wants = LIVE
        .iter()
        .flat_map(|source| {
            source
                .wants(settings, low)
                .into_iter()
                .map(move |ask| Want::new(*source, ask))
        })
        .collect();
    Plan { wants, dropped }
}

/// LCW calls a day at these settings, each answer cached for its TTL and every call counted as
/// one credit (`/status` included, since LCW does not document which are free): the planned
/// calls plus the second copies hedging is expected to send ([`hedges_per_day`]).
pub fn calls_per_day(settings: &Settings) -> u64 {
    planned_calls_per_day(settings) + hedges_per_day(settings)
}

/// The second copies a day that hedged requests are expected to add: the share of attempts
/// slower than the hedge delay (7 % at `lcw_hedge_after_ms = auto`, the p93; with a fixed delay
/// the most the hedge budget allows, one in 11) of the planned calls.
pub fn hedges_per_day(settings: &Settings) -> u64 {
    let share = HedgePolicy::expected_share(settings.lcw_hedge_after);
    (planned_calls_per_day(settings) as f64 * share).round() as u64
}

/// The calls of the plan a day, without hedges.
pub fn planned_calls_per_day(settings: &Settings) -> u64 {
    let interval_s = settings.cycle_interval_s.max(1);
    let cycles = 86_400 / interval_s;
    // A cached kind is fetched again on the first tick at or after its TTL.
    let fetches = |endpoint: Endpoint| {
        cycles
            / cache::ttl_s(&settings.cache_ttls, endpoint)
                .div_ceil(interval_s)
                .max(1)
    };
    // The wants of `plan` with no credits known, counted through the planning registry (the
    // API component gets these figures without linking the sources' reading code).
    PLANNED
        .iter()
        .map(|source| source.wants(settings, false).len() as u64 * fetches(source.endpoint()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::Credits;
    use crate::source::{
        Ask, coin_pages::COIN_PAGES, credits::CREDITS, exchanges::EXCHANGES, overview::OVERVIEW,
        status::STATUS, tracked::TRACKED,
    };

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(
            &[
                &[
                    ("lcw_api_key", "k"),
                    ("influx_org", "o"),
                    ("influx_token", "t"),
                ],
                pairs,
            ]
            .concat(),
        )
        .unwrap()
    }

    #[test]
    fn default_settings_cost_5472_calls_a_day() {
        // 1440 ticks × (1 coin page + tracked coins + overview), status every 2nd tick,
        // credits every 5th, exchanges every 10th.
        let off = ("lcw_hedge_after_ms", "0");
        assert_eq!(calls_per_day(&settings(&[off])), 1440 * 3 + 720 + 288 + 144);
        assert_eq!(
            calls_per_day(&settings(&[off, ("max_coins_per_fetch", "250")])),
            1440 * 5 + 720 + 288 + 144
        );
        assert_eq!(
            calls_per_day(&settings(&[
                off,
                ("tracked_coins", ""),
                ("max_exchanges_per_fetch", "0")
            ])),
            1440 * 2 + 720 + 288
        );
    }

    #[test]
    fn hedges_add_at_most_a_tenth_to_the_plan() {
        let default = settings(&[]);
        assert_eq!(planned_calls_per_day(&default), 5472);
        assert_eq!(hedges_per_day(&default), 383);
        assert_eq!(calls_per_day(&default), 5472 + 383);
        assert!(hedges_per_day(&default) * 10 <= planned_calls_per_day(&default));
        let fixed = settings(&[("lcw_hedge_after_ms", "1500")]);
        assert_eq!(hedges_per_day(&fixed), 497);
        let off = settings(&[("lcw_hedge_after_ms", "0")]);
        assert_eq!(hedges_per_day(&off), 0);
    }

    #[test]
    fn the_default_plan() {
        let p = plan(
            &settings(&[("max_coins_per_fetch", "150")]),
            &ResilienceState::default(),
        );
        assert_eq!(
            p.wants,
            [
                Want::new(&CREDITS, Ask::Once),
                Want::new(&STATUS, Ask::Once),
                Want::new(
                    &COIN_PAGES,
                    Ask::Page {
                        offset: 0,
                        limit: 100
                    }
                ),
                Want::new(
                    &COIN_PAGES,
                    Ask::Page {
                        offset: 100,
                        limit: 50
                    }
                ),
                Want::new(&TRACKED, Ask::Once),
                Want::new(&OVERVIEW, Ask::Once),
                Want::new(
                    &EXCHANGES,
                    Ask::Page {
                        offset: 0,
                        limit: 20
                    }
                ),
            ]
        );
        assert_eq!(p.dropped, None);
    }

    #[test]
    fn below_the_reserve_optional_calls_are_dropped() {
        let s = settings(&[("max_coins_per_fetch", "300")]);
        let state = ResilienceState {
            credits: Some(Credits {
                remaining: 499.0,
                limit: 10_000.0,
                fetched_at_ms: 0,
                spent_since: 0,
            }),
            ..ResilienceState::default()
        };
        let p = plan(&s, &state);
        assert_eq!(
            p.wants,
            [
                Want::new(&CREDITS, Ask::Once),
                Want::new(&STATUS, Ask::Once),
                Want::new(
                    &COIN_PAGES,
                    Ask::Page {
                        offset: 0,
                        limit: 100
                    }
                ),
                Want::new(&TRACKED, Ask::Once),
                Want::new(&OVERVIEW, Ask::Once)
            ]
        );
        assert!(
            p.dropped
                .unwrap()
                .contains("499 of 10000 daily credits left")
        );
    }
}
