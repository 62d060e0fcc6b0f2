//! The plan of a tick: which LCW calls are due now, which optional ones the credit budget drops,
//! and what the settings cost in credits per day.
//!
//! Owns the "what and how often" of fetching. It must not make calls or apply the breaker and the
//! rate limiter (that is `guard`); it only reads the persisted state it is given.

use crate::config::Settings;
use crate::guard::ResilienceState;
use crate::lcw::PAGE_LIMIT;

/// What this tick fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: bool,
    pub credits: bool,
    /// Pages of `/coins/list` (100 coins each); pages after the first are optional.
    pub coin_pages: u32,
    pub overview: bool,
    /// Why optional calls were dropped, for the log.
    pub dropped: Option<String>,
}

/// Decides what is due at `now_ms`.
pub fn plan(settings: &Settings, state: &ResilienceState, now_ms: i64) -> Plan {
    let due = |last_ms: Option<i64>, ttl_s: u64| {
        last_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= (ttl_s as i64).saturating_mul(1000))
    };
    let mut coin_pages = settings.max_coins_per_fetch.div_ceil(PAGE_LIMIT);
    let mut dropped = None;
    if let Some(credits) = &state.credits
        && credits.below_reserve(settings.credit_reserve_percent)
        && coin_pages > 1
    {
        dropped = Some(format!(
            "{} of {} daily credits left, at or below the {} % reserve: fetching 1 coin page instead of {coin_pages}",
            credits.remaining, credits.limit, settings.credit_reserve_percent
        ));
        coin_pages = 1;
    }
    Plan {
        status: due(
            state.status.as_ref().map(|s| s.checked_at_ms),
            settings.cache_ttl_status_s,
        ),
        credits: due(
            state.credits.as_ref().map(|c| c.fetched_at_ms),
            settings.cache_ttl_credits_s,
        ),
        coin_pages,
        overview: true,
        dropped,
    }
}

/// LCW calls a day at these settings (every call counted as one credit, `/status` included,
/// since LCW does not document which are free).
pub fn calls_per_day(settings: &Settings) -> u64 {
    let interval_s = settings.cycle_interval_s.max(1);
    let cycles = 86_400 / interval_s;
    // A kind with a TTL is fetched on the first tick at or after its expiry.
    let every = |ttl_s: u64| cycles / ttl_s.div_ceil(interval_s).max(1);
    let per_cycle = u64::from(settings.max_coins_per_fetch.div_ceil(PAGE_LIMIT)) + 1;
    cycles * per_cycle + every(settings.cache_ttl_status_s) + every(settings.cache_ttl_credits_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::StatusCheck;
    use crate::resilience::Credits;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_lookup(|name| {
            if name == "lcw_api_key" {
                return Some("k".into());
            }
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn default_settings_cost_3888_calls_a_day() {
        // 1440 ticks × (1 coin page + overview) + status every 2nd tick + credits every 5th.
        assert_eq!(calls_per_day(&settings(&[])), 1440 * 2 + 720 + 288);
        assert_eq!(
            calls_per_day(&settings(&[("max_coins_per_fetch", "250")])),
            1440 * 4 + 720 + 288
        );
    }

    #[test]
    fn status_and_credits_are_due_when_their_ttl_ran_out() {
        let s = settings(&[]);
        let mut state = ResilienceState::default();
        let first = plan(&s, &state, 1_000_000);
        assert!(first.status && first.credits && first.overview);
        state.status = Some(StatusCheck {
            checked_at_ms: 1_000_000,
            reachable: true,
            error: None,
        });
        state.credits = Some(Credits {
            remaining: 9_000.0,
            limit: 10_000.0,
            fetched_at_ms: 1_000_000,
        });
        let later = plan(&s, &state, 1_000_000 + 119_999);
        assert!(!later.status && !later.credits);
        assert!(plan(&s, &state, 1_000_000 + 120_000).status);
        assert!(plan(&s, &state, 1_000_000 + 300_000).credits);
    }

    #[test]
    fn below_the_reserve_only_the_first_coin_page_is_fetched() {
        let s = settings(&[("max_coins_per_fetch", "300")]);
        let mut state = ResilienceState::default();
        assert_eq!(plan(&s, &state, 0).coin_pages, 3);
        state.credits = Some(Credits {
            remaining: 499.0,
            limit: 10_000.0,
            fetched_at_ms: 0,
        });
        let p = plan(&s, &state, 0);
        assert_eq!(p.coin_pages, 1);
        assert!(
            p.dropped
                .unwrap()
                .contains("499 of 10000 daily credits left")
        );
    }
}
