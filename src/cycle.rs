//! One fetch cycle, start to finish: settings, plan, guarded LCW calls, points, InfluxDB writes,
//! the record.
//!
//! Owns the order of a tick and its time budget: every call gets the smaller of its own timeout
//! and the time left before `cycle_deadline_ms`, so the tick ends before its deadline. Independent
//! calls run concurrently. It must not format wire data (that is `lcw` and `influx`), decide field
//! names (that is `schema`) or apply resilience rules itself (that is `guard`); it never sleeps on
//! a fixed schedule.

use std::time::Duration;

use futures::future::{OptionFuture, join_all};

use crate::config::Settings;
use crate::guard::{Guard, ResilienceState, StatusCheck};
use crate::host::{Host, Level, Timeouts};
use crate::influx::{self, Point, WriteReport};
use crate::lcw::{self, CoinsListRequest, CurrencyRequest, Endpoint, LcwError};
use crate::plan;
use crate::resilience::Credits;
use crate::schema;
use crate::state::{self, CycleHistory, CycleRecord, Outcome};

/// Data type labels, as in `lcw_data_points_stored_total{data_type}` and `/stats`.
pub const COINS: &str = "coins";
pub const OVERVIEW: &str = "overview";

/// Runs one cycle and records it in the key-value store. Never fails: every problem ends up in
/// the returned record (and the store), so the caller only logs.
pub async fn run<H: Host>(host: &H) -> CycleRecord {
    let started = host.monotonic();
    let started_at_ms = host.unix_millis();
    let mut record = match Settings::load(host).await {
        Ok(settings) => collect(host, &settings, started).await,
        // No LCW or InfluxDB call with settings we cannot trust.
        Err(error) => CycleRecord::new(Outcome::Error, vec![error.to_string()]),
    };
    record.started_at_ms = started_at_ms;
    record.duration_ms = elapsed_ms(host, started);
    for error in &record.errors {
        host.log(Level::Error, error);
    }
    host.log(
        if record.outcome == Outcome::Success {
            Level::Info
        } else {
            Level::Warn
        },
        &format!(
            "cycle {}: {} points written, {} failed, {} LCW attempts, {} ms",
            record.outcome.as_str(),
            record.total_written(),
            record.points_failed,
            record.lcw.attempts.len(),
            record.duration_ms
        ),
    );
    persist(host, &record).await;
    record
}

async fn collect<H: Host>(host: &H, settings: &Settings, started: Duration) -> CycleRecord {
    let deadline = started + Duration::from_millis(settings.cycle_deadline_ms);
    let (resilience, resilience_loaded) = match state::load(host, state::RESILIENCE_KEY).await {
        Ok(doc) => (doc, true),
        Err(error) => {
            host.log(
                Level::Error,
                &format!("resilience state not loaded, using a fresh one: {error}"),
            );
            (ResilienceState::default(), false)
        }
    };
    let plan = plan::plan(settings, &resilience, host.unix_millis());
    let guard = Guard::new(host, settings, deadline, resilience);

    let mut record = if guard.breaker_open() {
        host.log(Level::Warn, "circuit breaker open: no LCW call this tick");
        CycleRecord::new(Outcome::SkippedBreaker, Vec::new())
    } else {
        if let Some(reason) = &plan.dropped {
            host.log(Level::Warn, reason);
        }
        fetch_and_write(host, settings, &plan, &guard, deadline).await
    };

    let (resilience, report) = guard.finish();
    record.lcw = report;
    if resilience_loaded
        && let Err(error) = state::save(host, state::RESILIENCE_KEY, &resilience).await
    {
        host.log(
            Level::Error,
            &format!("resilience state not saved: {error}"),
        );
    }
    record
}

async fn fetch_and_write<H: Host>(
    host: &H,
    settings: &Settings,
    plan: &plan::Plan,
    guard: &Guard<'_, H>,
    deadline: Duration,
) -> CycleRecord {
    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    let currency = settings.currency.as_str();
    let status = OptionFuture::from(
        plan.status
            .then(|| guard.call(Endpoint::Status, |t| client.status(t))),
    );
    let credits = OptionFuture::from(
        plan.credits
            .then(|| guard.call(Endpoint::Credits, |t| client.credits(t))),
    );
    let coin_pages = join_all((0..plan.coin_pages).map(|page| {
        let offset = page * lcw::PAGE_LIMIT;
        let limit = (settings.max_coins_per_fetch - offset).min(lcw::PAGE_LIMIT);
        let request = CoinsListRequest::top_by_rank(currency, offset, limit);
        let client = &client;
        async move {
            let coins = guard
                .call(Endpoint::CoinsList, |t| client.coins_list(&request, t))
                .await?;
            Ok::<_, LcwError>((coins, host.unix_millis()))
        }
    }));
    let overview = async {
        let request = CurrencyRequest { currency };
        let overview = guard
            .call(Endpoint::Overview, |t| client.overview(&request, t))
            .await?;
        Ok::<_, LcwError>((overview, host.unix_millis()))
    };
    let (status, credits, coin_pages, overview) =
        futures::join!(status, credits, coin_pages, overview);

    let mut errors = Vec::new();
    let now_ms = host.unix_millis();
    if let Some(result) = status {
        let error = result.err().map(|e| e.to_string());
        guard.with_state(|s| {
            s.status = Some(StatusCheck {
                checked_at_ms: now_ms,
                reachable: error.is_none(),
                error: error.clone(),
            })
        });
        errors.extend(error);
    }
    if let Some(result) = credits {
        match result {
            Ok(answer) => record_credits(host, settings, guard, &answer, now_ms),
            Err(error) => errors.push(error.to_string()),
        }
    }

    let mut data_failed = false;
    let mut coin_points = Vec::new();
    for page in coin_pages {
        match page {
            Ok((coins, fetched_at_ms)) => coin_points.extend(
                coins
                    .iter()
                    .map(|coin| schema::coin_point(coin, currency, fetched_at_ms)),
            ),
            Err(error) => {
                data_failed = true;
                errors.push(error.to_string());
            }
        }
    }
    let overview_points = match overview {
        Ok((overview, fetched_at_ms)) => {
            vec![schema::overview_point(&overview, currency, fetched_at_ms)]
        }
        Err(error) => {
            data_failed = true;
            errors.push(error.to_string());
            Vec::new()
        }
    };

    let influx_timeouts = || {
        let left = deadline.saturating_sub(host.monotonic());
        let own = Duration::from_millis(settings.influx.timeout_ms);
        Timeouts {
            connect: own.min(left),
            total: own.min(left),
        }
    };
    let (coins_report, overview_report) = futures::join!(
        write(host, settings, &coin_points, influx_timeouts()),
        write(host, settings, &overview_points, influx_timeouts()),
    );

    let mut record = CycleRecord::new(Outcome::Success, Vec::new());
    for (data_type, report) in [(COINS, coins_report), (OVERVIEW, overview_report)] {
        if report.lines_written > 0 {
            record
                .points_written
                .insert(data_type.to_owned(), report.lines_written as u64);
        }
        record.points_failed += report.lines_failed as u64;
        data_failed |= !report.errors.is_empty();
        errors.extend(report.errors.iter().map(ToString::to_string));
    }
    record.outcome = match (data_failed, record.total_written() > 0) {
        (false, _) => Outcome::Success,
        (true, true) => Outcome::Partial,
        (true, false) => Outcome::Error,
    };
    record.errors = errors;
    record
}

/// Keeps the day's credits and warns when the settings plan more calls than the day allows.
fn record_credits<H: Host>(
    host: &H,
    settings: &Settings,
    guard: &Guard<'_, H>,
    answer: &lcw::CreditsAnswer,
    now_ms: i64,
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
    guard.with_state(|s| {
        s.credits = Some(Credits {
            remaining,
            limit,
            fetched_at_ms: now_ms,
        })
    });
    let planned = plan::calls_per_day(settings);
    if planned as f64 > limit {
        host.log(
            Level::Warn,
            &format!("these settings plan {planned} LCW calls a day, above the daily limit of {limit} credits"),
        );
    }
}

async fn write<H: Host>(
    host: &H,
    settings: &Settings,
    points: &[Point],
    timeouts: Timeouts,
) -> WriteReport {
    let mut lines = String::with_capacity(points.len() * 320);
    let encoded = influx::encode_points(points, &mut lines);
    if encoded.dropped_fields > 0 || encoded.dropped_points > 0 {
        host.log(
            Level::Warn,
            &format!(
                "{} non-finite fields and {} empty points left out",
                encoded.dropped_fields, encoded.dropped_points
            ),
        );
    }
    if encoded.lines == 0 {
        return WriteReport::default();
    }
    influx::write_lines(host, &settings.influx, &lines, timeouts).await
}

/// Adds the record to the history. If the history cannot be read, it is left alone rather than
/// overwritten with this one cycle.
async fn persist<H: Host>(host: &H, record: &CycleRecord) {
    let result = async {
        let mut history: CycleHistory = state::load(host, state::CYCLES_KEY).await?;
        history.record(record.clone());
        state::save(host, state::CYCLES_KEY, &history).await
    }
    .await;
    if let Err(error) = result {
        host.log(Level::Error, &format!("cycle record not saved: {error}"));
    }
}

fn elapsed_ms<H: Host>(host: &H, started: Duration) -> u64 {
    u64::try_from(host.monotonic().saturating_sub(started).as_millis()).unwrap_or(u64::MAX)
}
