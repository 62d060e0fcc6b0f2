//! One guarded LCW call whose copies are scripted — how long each takes and what it answers —
//! run through the real guard in virtual time (`support::sim`), for the hedging tests: which
//! answer won, when each copy was sent, which were dropped, what the guard counted.

use std::cell::RefCell;
use std::time::Duration;

use lcw_fetcher::config::Settings;
use lcw_fetcher::guard::{Guard, GuardReport, ResilienceState};
use lcw_fetcher::host::Clock;
use lcw_fetcher::lcw::{Endpoint, LcwError};

use super::sim::{Profile, SimHost, World, our_variables};

/// One copy of an attempt: after `after` it answers (200) or fails with `status`, and a 429
/// carries `retry_after`.
#[derive(Clone, Copy)]
pub struct Copy {
    pub after: Duration,
    pub status: u16,
    pub retry_after: Option<Duration>,
}

pub fn ok(ms: u64) -> Copy {
    fails(ms, 200)
}

pub fn fails(ms: u64, status: u16) -> Copy {
    Copy {
        after: Duration::from_millis(ms),
        status,
        retry_after: None,
    }
}

/// The simulation's variables with `pairs` on top.
pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let mut all = our_variables();
    all.extend_from_slice(pairs);
    Settings::from_pairs(&all).unwrap()
}

/// What became of each copy sent, in the order they were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Running,
    Answered,
    /// Dropped before it answered: its request was cancelled.
    Dropped,
}

/// Marks its copy dropped unless it finished.
struct Watch<'a> {
    fates: &'a RefCell<Vec<Fate>>,
    index: usize,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut fates = self.fates.borrow_mut();
        if fates[self.index] == Fate::Running {
            fates[self.index] = Fate::Dropped;
        }
    }
}

pub struct Outcome {
    /// The index of the copy whose answer won, or the call's error.
    pub result: Result<u16, LcwError>,
    /// Virtual time from the call to its result.
    pub took: Duration,
    /// When each copy was sent, from the call's start.
    pub sent_at: Vec<Duration>,
    pub fates: Vec<Fate>,
    pub state: ResilienceState,
    pub report: GuardReport,
}

/// One guarded call whose n-th copy behaves as `copies[n]` (the last one repeats), `deadline`
/// after its start.
pub fn call(
    settings: &Settings,
    state: ResilienceState,
    deadline: Duration,
    copies: &[Copy],
) -> Outcome {
    let world = World::new(Profile::CALM, 1);
    let host = SimHost::new(&world, &[]);
    let started = host.monotonic();
    let guard = Guard::new(&host, settings, started + deadline, state);
    let sent_at = RefCell::new(Vec::new());
    let fates = RefCell::new(Vec::new());
    let result = world
        .clock
        .run(guard.call(Endpoint::CoinsList, |_timeouts| {
            sent_at.borrow_mut().push(host.monotonic() - started);
            let index = {
                let mut fates = fates.borrow_mut();
                fates.push(Fate::Running);
                fates.len() - 1
            };
            let copy = copies[index.min(copies.len() - 1)];
            let (host, fates) = (&host, &fates);
            async move {
                let _watch = Watch { fates, index };
                host.sleep(copy.after).await;
                fates.borrow_mut()[index] = Fate::Answered;
                match copy.status {
                    200 => Ok(index as u16),
                    status => Err(LcwError::Status {
                        endpoint: Endpoint::CoinsList,
                        status,
                        message: "scripted".into(),
                        retry_after: copy.retry_after,
                    }),
                }
            }
        }));
    let took = host.monotonic() - started;
    let (state, report) = guard.finish();
    Outcome {
        result,
        took,
        sent_at: sent_at.into_inner(),
        fates: fates.into_inner(),
        state,
        report,
    }
}
