//! One fetch cycle, start to finish: settings, LCW calls, points, InfluxDB writes, the record.
//!
//! Owns the order of a tick and its time budget: every call gets the smaller of its own timeout
//! and the time left before `cycle_deadline_ms`, so the tick ends before its deadline. Independent
//! calls run concurrently. It must not format wire data (that is `lcw` and `influx`) nor decide
//! field names (that is `schema`); it never sleeps on a fixed schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;

use crate::config::Settings;
use crate::host::{Host, Level, Timeouts};
use crate::influx::{self, Point, WriteReport};
use crate::lcw::{self, CoinsListRequest, CurrencyRequest};
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
        Err(error) => {
            // No LCW or InfluxDB call with settings we cannot trust.
            CycleRecord {
                started_at_ms,
                duration_ms: 0,
                outcome: Outcome::Error,
                points_written: BTreeMap::new(),
                points_failed: 0,
                errors: vec![error.to_string()],
            }
        }
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
            "cycle {}: {} points written, {} failed, {} ms",
            record.outcome.as_str(),
            record.total_written(),
            record.points_failed,
            record.duration_ms
        ),
    );
    persist(host, &record).await;
    record
}

/// The time budget of one tick.
struct Budget {
    deadline: Duration,
}

impl Budget {
    fn left<H: Host>(&self, host: &H) -> Duration {
        self.deadline.saturating_sub(host.monotonic())
    }

    /// The call's own limits, cut to what is left of the tick.
    fn timeouts<H: Host>(&self, host: &H, connect_ms: u64, total_ms: u64) -> Timeouts {
        let left = self.left(host);
        Timeouts {
            connect: Duration::from_millis(connect_ms).min(left),
            total: Duration::from_millis(total_ms).min(left),
        }
    }
}

async fn collect<H: Host>(host: &H, settings: &Settings, started: Duration) -> CycleRecord {
    let budget = Budget {
        deadline: started + Duration::from_millis(settings.cycle_deadline_ms),
    };
    let client = lcw::Client::new(host, &settings.lcw_base_url, &settings.lcw_api_key);
    let currency = settings.currency.as_str();
    let lcw_timeouts = || {
        budget.timeouts(
            host,
            settings.lcw_connect_timeout_ms,
            settings.lcw_response_timeout_ms,
        )
    };

    let pages = settings.max_coins_per_fetch.div_ceil(lcw::PAGE_LIMIT);
    let coin_pages = join_all((0..pages).map(|page| {
        let offset = page * lcw::PAGE_LIMIT;
        let limit = (settings.max_coins_per_fetch - offset).min(lcw::PAGE_LIMIT);
        let request = CoinsListRequest::top_by_rank(currency, offset, limit);
        let client = &client;
        async move {
            let coins = client.coins_list(&request, lcw_timeouts()).await?;
            Ok::<_, lcw::LcwError>((coins, host.unix_millis()))
        }
    }));
    let overview = async {
        let overview = client
            .overview(&CurrencyRequest { currency }, lcw_timeouts())
            .await?;
        Ok::<_, lcw::LcwError>((overview, host.unix_millis()))
    };
    let (coin_pages, overview) = futures::join!(coin_pages, overview);

    let mut errors = Vec::new();
    let mut coin_points = Vec::new();
    for page in coin_pages {
        match page {
            Ok((coins, fetched_at_ms)) => coin_points.extend(
                coins
                    .iter()
                    .map(|coin| schema::coin_point(coin, currency, fetched_at_ms)),
            ),
            Err(error) => errors.push(error.to_string()),
        }
    }
    let overview_points = match overview {
        Ok((overview, fetched_at_ms)) => {
            vec![schema::overview_point(&overview, currency, fetched_at_ms)]
        }
        Err(error) => {
            errors.push(error.to_string());
            Vec::new()
        }
    };

    let influx_timeouts =
        || budget.timeouts(host, settings.influx.timeout_ms, settings.influx.timeout_ms);
    let (coins_report, overview_report) = futures::join!(
        write(host, settings, &coin_points, influx_timeouts()),
        write(host, settings, &overview_points, influx_timeouts()),
    );

    let mut points_written = BTreeMap::new();
    let mut points_failed = 0;
    for (data_type, report) in [(COINS, coins_report), (OVERVIEW, overview_report)] {
        if report.lines_written > 0 {
            points_written.insert(data_type.to_owned(), report.lines_written as u64);
        }
        points_failed += report.lines_failed as u64;
        errors.extend(report.errors.iter().map(ToString::to_string));
    }
    let written: u64 = points_written.values().sum();
    let outcome = match (errors.is_empty(), written > 0) {
        (true, _) => Outcome::Success,
        (false, true) => Outcome::Partial,
        (false, false) => Outcome::Error,
    };
    CycleRecord {
        started_at_ms: 0,
        duration_ms: 0,
        outcome,
        points_written,
        points_failed,
        errors,
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
