//! The simulated host: virtual time, scripted latencies, in-process answers — thousands of ticks
//! of the real `cycle::run` in seconds — and a model of the original service fed the same
//! latency profile, for the latency benchmark (`benches/simulate.rs`) and its smoke test.
//!
//! Time only moves when every task waits: a single-threaded executor runs the tick until all its
//! futures wait on timers, then jumps the clock to the earliest timer. LCW and InfluxDB answer
//! from the shared fixtures after a latency drawn from a [`Profile`]: a log-normal body, with
//! small probabilities of a 5xx, a 429 and a hang (no answer before the timeout).

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lcw_fetcher::host::{
    Clock, HttpClient, HttpRequest, HttpResponse, KeyValue, KvError, Level, Log, Random, Sql,
    SqlError, SqlRows, SqlValue, Timeouts, TransportError, Variables,
};

/// The largest value the simulated store takes, like a hosted one (1 MB).
pub const VALUE_LIMIT: usize = 1024 * 1024;

/// How the network behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Median and log-normal sigma of one LCW request.
    pub lcw_median_ms: f64,
    pub lcw_sigma: f64,
    /// Median and sigma of one InfluxDB write.
    pub influx_median_ms: f64,
    pub influx_sigma: f64,
    /// Per request: a 503, a 429, no answer at all.
    pub p_5xx: f64,
    pub p_429: f64,
    pub p_hang: f64,
}

impl Profile {
    pub const CALM: Profile = Profile {
        name: "calm",
        lcw_median_ms: 250.0,
        lcw_sigma: 0.4,
        influx_median_ms: 20.0,
        influx_sigma: 0.4,
        p_5xx: 0.001,
        p_429: 0.0,
        p_hang: 0.0,
    };
    /// Calibrated so that the model of the original reproduces its published figures.
    pub const SEED: Profile = Profile {
        name: "seed",
        lcw_median_ms: 1_250.0,
        lcw_sigma: 0.9,
        influx_median_ms: 150.0,
        influx_sigma: 0.8,
        p_5xx: 0.02,
        p_429: 0.003,
        p_hang: 0.012,
    };
    pub const DEGRADED: Profile = Profile {
        name: "degraded",
        lcw_median_ms: 1_500.0,
        lcw_sigma: 1.0,
        influx_median_ms: 200.0,
        influx_sigma: 1.0,
        p_5xx: 0.05,
        p_429: 0.005,
        p_hang: 0.01,
    };
}

/// What a simulated request turns out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw {
    Answer(Duration),
    ServerError(Duration),
    TooMany(Duration),
    Hang,
}

/// A seeded generator (xorshift64*), shared by both models so they see the same network.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn log_normal(&mut self, median_ms: f64, sigma: f64) -> Duration {
        Duration::from_secs_f64(median_ms / 1000.0 * (sigma * self.normal()).exp())
    }

    /// One LCW request under `profile` (an outage turns every answer into a 503).
    pub fn lcw(&mut self, profile: &Profile, outage: bool) -> Draw {
        let latency = self.log_normal(profile.lcw_median_ms, profile.lcw_sigma);
        let roll = self.unit();
        if outage {
            Draw::ServerError(latency.min(Duration::from_millis(200)))
        } else if roll < profile.p_hang {
            Draw::Hang
        } else if roll < profile.p_hang + profile.p_5xx {
            Draw::ServerError(latency)
        } else if roll < profile.p_hang + profile.p_5xx + profile.p_429 {
            Draw::TooMany(latency)
        } else {
            Draw::Answer(latency)
        }
    }

    pub fn influx(&mut self, profile: &Profile) -> Duration {
        self.log_normal(profile.influx_median_ms, profile.influx_sigma)
    }
}

/// Virtual time and the timers waiting on it.
#[derive(Default)]
pub struct Clockwork {
    now: Cell<Duration>,
    timers: RefCell<BinaryHeap<Reverse<(Duration, u64)>>>,
    wakers: RefCell<HashMap<u64, Waker>>,
    next_id: Cell<u64>,
}

impl Clockwork {
    pub fn now(&self) -> Duration {
        self.now.get()
    }

    pub fn advance_to(&self, at: Duration) {
        if at > self.now.get() {
            self.now.set(at);
        }
    }

    fn sleep_until(self: &Rc<Self>, deadline: Duration) -> Timer {
        Timer {
            clock: Rc::clone(self),
            deadline,
            id: None,
        }
    }

    /// Runs `future` to completion in virtual time.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            let next = self.timers.borrow().peek().copied();
            let Some(Reverse((deadline, _))) = next else {
                panic!("the tick waits on nothing: a future that no timer will ever wake");
            };
            self.advance_to(deadline);
            loop {
                let due = self.timers.borrow().peek().copied();
                match due {
                    Some(Reverse((at, id))) if at <= self.now.get() => {
                        self.timers.borrow_mut().pop();
                        let waker = self.wakers.borrow_mut().remove(&id);
                        if let Some(w) = waker {
                            w.wake();
                        }
                    }
                    _ => break,
                }
            }
        }
    }
}

struct Timer {
    clock: Rc<Clockwork>,
    deadline: Duration,
    id: Option<u64>,
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = self.clock.next_id.get();
                self.clock.next_id.set(id + 1);
                self.clock
                    .timers
                    .borrow_mut()
                    .push(Reverse((self.deadline, id)));
                self.id = Some(id);
                id
            }
        };
        self.clock
            .wakers
            .borrow_mut()
            .insert(id, cx.waker().clone());
        Poll::Pending
    }
}

/// Shared between the ticks of one run: the store, the clock, the network.
pub struct World {
    pub clock: Rc<Clockwork>,
    pub kv: RefCell<HashMap<String, Vec<u8>>>,
    /// The embedded database, in memory (SQL statements take no virtual time).
    pub sql: rusqlite::Connection,
    pub rng: RefCell<Rng>,
    pub profile: Profile,
    pub lcw_outage: Cell<bool>,
    /// LCW answers 503 to every request made within this window of virtual time.
    pub lcw_outage_window: Cell<Option<(Duration, Duration)>>,
    pub lcw_requests: Cell<u64>,
    pub kv_round_trips: Cell<u64>,
    pub kv_bytes_written: Cell<u64>,
    /// Each KV call takes a random virtual time up to this, so that two ticks run together
    /// interleave their store calls (zero: KV calls take no time).
    pub kv_latency_max: Cell<Duration>,
    /// The store has atomic increment.
    pub atomics: Cell<bool>,
    /// InfluxDB answers every write with 503.
    pub influx_down: Cell<bool>,
    /// Lines InfluxDB accepted.
    pub influx_lines: Cell<u64>,
    /// LCW and InfluxDB answer with hostile bodies and statuses (see [`hostile_answer`]).
    pub hostile: Cell<bool>,
    /// The largest value written to the store.
    pub largest_value: Cell<usize>,
    bodies: HashMap<&'static str, Vec<u8>>,
}

impl World {
    pub fn new(profile: Profile, seed: u64) -> Self {
        let fixture = |name: &str| super::lcw_fake::fixture(name);
        let bodies = HashMap::from([
            ("/status", fixture("status.json")),
            (
                "/credits",
                br#"{"dailyCreditsRemaining":90000,"dailyCreditsLimit":100000}"#.to_vec(),
            ),
            ("/overview", fixture("overview.json")),
            ("/coins/list", fixture("coins_list.json")),
            ("/coins/map", fixture("coins_map.json")),
            ("/exchanges/list", fixture("exchanges_list.json")),
        ]);
        Self {
            clock: Rc::new(Clockwork::default()),
            kv: RefCell::new(HashMap::new()),
            sql: super::sql::open(None),
            rng: RefCell::new(Rng::new(seed)),
            profile,
            lcw_outage: Cell::new(false),
            lcw_outage_window: Cell::new(None),
            lcw_requests: Cell::new(0),
            kv_round_trips: Cell::new(0),
            kv_bytes_written: Cell::new(0),
            kv_latency_max: Cell::new(Duration::ZERO),
            atomics: Cell::new(true),
            influx_down: Cell::new(false),
            influx_lines: Cell::new(0),
            hostile: Cell::new(false),
            largest_value: Cell::new(0),
            bodies,
        }
    }
}

impl World {
    fn in_outage_window(&self) -> bool {
        self.lcw_outage_window
            .get()
            .is_some_and(|(from, to)| (from..to).contains(&self.clock.now()))
    }
}

/// The host of one simulated tick.
pub struct SimHost<'w> {
    pub world: &'w World,
    pub variables: HashMap<String, String>,
}

impl<'w> SimHost<'w> {
    pub fn new(world: &'w World, variables: &[(&str, &str)]) -> Self {
        Self {
            world,
            variables: variables
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

impl HttpClient for SimHost<'_> {
    async fn send(
        &self,
        request: HttpRequest,
        timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError> {
        let world = self.world;
        let start = world.clock.now();
        let path = request.uri().path().to_owned();
        if path.starts_with("/write") || path.starts_with("/api/") {
            let latency = world.rng.borrow_mut().influx(&world.profile);
            if latency > timeouts.total {
                world.clock.sleep_until(start + timeouts.total).await;
                return Err(TransportError::Timeout);
            }
            world.clock.sleep_until(start + latency).await;
            if world.hostile.get() && world.rng.borrow_mut().unit() < 0.5 {
                return Ok(hostile_answer(&mut world.rng.borrow_mut()));
            }
            if world.influx_down.get() {
                return Ok(http::Response::builder()
                    .status(503)
                    .body(br#"{"error":"simulated outage"}"#.to_vec())
                    .unwrap());
            }
            world
                .influx_lines
                .set(world.influx_lines.get() + lines_in(&request));
            return Ok(http::Response::builder()
                .status(204)
                .body(Vec::new())
                .unwrap());
        }
        world.lcw_requests.set(world.lcw_requests.get() + 1);
        let draw = world.rng.borrow_mut().lcw(
            &world.profile,
            world.lcw_outage.get() || world.in_outage_window(),
        );
        let (status, latency) = match draw {
            Draw::Answer(l) => (200, l),
            Draw::ServerError(l) => (503, l),
            Draw::TooMany(l) => (429, l),
            Draw::Hang => (0, Duration::MAX),
        };
        // Answers are small: their first byte comes with the rest.
        let limit = timeouts.first_byte.min(timeouts.total);
        if latency > limit {
            world.clock.sleep_until(start + limit).await;
            return Err(TransportError::Timeout);
        }
        world.clock.sleep_until(start + latency).await;
        if world.hostile.get() && world.rng.borrow_mut().unit() < 0.7 {
            return Ok(hostile_answer(&mut world.rng.borrow_mut()));
        }
        let body = if status == 200 {
            world
                .bodies
                .get(path.as_str())
                .cloned()
                .unwrap_or_else(|| b"{}".to_vec())
        } else {
            br#"{"error":{"code":503,"status":"Service Unavailable","description":"simulated"}}"#
                .to_vec()
        };
        Ok(http::Response::builder().status(status).body(body).unwrap())
    }
}

/// An answer as hostile as a server can make it: any status, 64 KB error texts full of
/// newlines and control characters under ever new names, absurd `Retry-After`s, broken JSON,
/// lists of elements of every wrong type.
pub fn hostile_answer(rng: &mut Rng) -> HttpResponse {
    let status =
        [200, 200, 400, 401, 404, 413, 422, 429, 500, 503, 599][rng.next_u64() as usize % 11];
    let noise: String = (0..64 * 1024)
        .map(|i| match (rng.next_u64() % 7, i % 97) {
            (_, 0) => '\n',
            (0, _) => '\u{7}',
            (1, _) => 'é',
            _ => char::from(b'a' + (rng.next_u64() % 26) as u8),
        })
        .collect();
    let body = match (status, rng.next_u64() % 4) {
        (200, 0) => format!(
            r#"[{{"code":"{noise}","rate":1e400}},{{"code":null}},{{"code":"X","rate":"1.5"}}]"#
        ),
        (200, 1) => "[{\"code\":".to_owned(),
        (200, _) => format!(
            r#"[{{"code":"C{}","name":"{noise}","rate":1.0}}]"#,
            rng.next_u64()
        ),
        (_, 0) => {
            format!(r#"{{"error":{{"code":{status},"status":"x","description":"{noise}"}}}}"#)
        }
        (_, 1) => format!(r#"{{"error":"{noise}","message":"{noise}","code":"{noise}"}}"#),
        _ => noise,
    };
    let retry_after = [
        "18446744073709551615",
        "-1",
        "Thu, 01 Jan 2099 00:00:00 GMT",
        "nan",
        "1",
    ][rng.next_u64() as usize % 5];
    http::Response::builder()
        .status(status)
        .header("Retry-After", retry_after)
        .body(body.into_bytes())
        .unwrap()
}

/// Lines of a write request's body (gzip or plain).
fn lines_in(request: &HttpRequest) -> u64 {
    let gzipped = request
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let mut text = Vec::new();
    if gzipped {
        use std::io::Read as _;
        flate2::read::GzDecoder::new(request.body().as_slice())
            .read_to_end(&mut text)
            .expect("a gzip body");
    } else {
        text = request.body().clone();
    }
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

impl SimHost<'_> {
    /// One store round trip: counted, and its way out as slow as the world says.
    async fn kv_trip(&self) {
        let world = self.world;
        world.kv_round_trips.set(world.kv_round_trips.get() + 1);
        self.kv_trip_back().await;
    }

    /// Half of a round trip's latency (its way out, or the answer's way back): a random virtual
    /// time up to half the world's maximum.
    async fn kv_trip_back(&self) {
        let world = self.world;
        let max = world.kv_latency_max.get();
        if !max.is_zero() {
            let nanos = world.rng.borrow_mut().next_u64() % (max.as_nanos() as u64 / 2 + 1);
            let at = world.clock.now() + Duration::from_nanos(nanos);
            world.clock.sleep_until(at).await;
        }
    }
}

impl KeyValue for SimHost<'_> {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv_trip().await;
        let value = self.world.kv.borrow().get(key).cloned();
        self.kv_trip_back().await;
        Ok(value)
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if value.len() > VALUE_LIMIT {
            return Err(KvError(format!("value for `{key}` over the store's limit")));
        }
        self.kv_trip().await;
        self.world
            .kv_bytes_written
            .set(self.world.kv_bytes_written.get() + value.len() as u64);
        self.world
            .largest_value
            .set(self.world.largest_value.get().max(value.len()));
        self.world
            .kv
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        self.kv_trip_back().await;
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv_trip().await;
        self.world.kv.borrow_mut().remove(key);
        self.kv_trip_back().await;
        Ok(())
    }

    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError> {
        if !self.world.atomics.get() {
            return Ok(None);
        }
        self.kv_trip().await;
        let value = {
            let mut kv = self.world.kv.borrow_mut();
            // Encoded as Spin's SQLite store does.
            let current = kv
                .get(key)
                .map(|v| i64::from_le_bytes(v.as_slice().try_into().expect("a counter")))
                .unwrap_or(0);
            kv.insert(key.to_owned(), (current + delta).to_le_bytes().to_vec());
            current + delta
        };
        self.kv_trip_back().await;
        Ok(Some(value))
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.kv_trip().await;
        let keys = self
            .world
            .kv
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        self.kv_trip_back().await;
        Ok(keys)
    }
}

impl Sql for SimHost<'_> {
    async fn sql_execute(&self, statement: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        super::sql::execute(&self.world.sql, statement, params)
    }
}

impl Variables for SimHost<'_> {
    async fn variable(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self.variables.get(name).cloned())
    }
}

impl Clock for SimHost<'_> {
    fn unix_millis(&self) -> i64 {
        1_800_000_000_000 + self.world.clock.now().as_millis() as i64
    }

    fn monotonic(&self) -> Duration {
        self.world.clock.now()
    }

    async fn sleep(&self, duration: Duration) {
        let clock = &self.world.clock;
        clock.sleep_until(clock.now() + duration).await;
    }
}

impl Random for SimHost<'_> {
    fn random_u64(&self) -> u64 {
        self.world.rng.borrow_mut().next_u64()
    }
}

impl Log for SimHost<'_> {
    fn log(&self, _level: Level, _message: &str) {}
}

/// One simulated tick of either model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickResult {
    pub duration: Duration,
    pub lcw_calls: u64,
    /// Age of the newest price when it was written (None when no price was written).
    pub freshness: Option<Duration>,
    pub wrote_prices: bool,
}

/// Runs our tick `n` (ticks are a minute apart) in `world` with `variables`.
pub fn our_tick(
    world: &World,
    variables: &[(&str, &str)],
    n: u64,
) -> (TickResult, lcw_fetcher::telemetry::history::CycleRecord) {
    world.clock.advance_to(Duration::from_secs(60 * n));
    let calls_before = world.lcw_requests.get();
    let host = SimHost::new(world, variables);
    let started = world.clock.now();
    let record = world.clock.run(lcw_fetcher::cycle::run(&host));
    let duration = world.clock.now() - started;
    let wrote_prices = record.points_written.contains_key("coins");
    // The newest price is the one fetched last; the write follows the fetches.
    let freshness = wrote_prices.then(|| {
        let fetched = record
            .lcw
            .attempts
            .iter()
            .filter(|a| a.endpoint == "/coins/list" && a.status == "200")
            .map(|a| a.duration_ms)
            .max()
            .unwrap_or(0);
        duration
            .saturating_sub(Duration::from_millis(fetched))
            .min(duration)
    });
    (
        TickResult {
            duration,
            lcw_calls: world.lcw_requests.get() - calls_before,
            freshness,
            wrote_prices,
        },
        record,
    )
}

/// The original service's cycle, as its write-up and code describe it: sequential calls in its
/// order (status, credits, two coin pages, write, exchanges, overview), each LCW call preceded by
/// the rate limiter's 60/rpm s, urllib3 retries sleeping 0/4/8 s on 5xx/429 and read timeouts,
/// 10 s connect / 30 s read timeouts, a 60 s sleep in the cycle on a 429, the cycle aborted when
/// `/status` fails, and its 300 s cache for every answer.
pub struct Original {
    pub rpm: u32,
    cache_until: HashMap<&'static str, Duration>,
}

impl Original {
    pub fn new(rpm: u32) -> Self {
        Self {
            rpm,
            cache_until: HashMap::new(),
        }
    }

    /// One cycle starting at `at` (virtual); the network draws come from `rng`.
    pub fn tick(
        &mut self,
        rng: &mut Rng,
        profile: &Profile,
        outage: bool,
        at: Duration,
    ) -> TickResult {
        let spacing = Duration::from_secs_f64(60.0 / f64::from(self.rpm));
        let mut t = Duration::ZERO;
        let mut calls = 0;
        let mut coins_fetched_at = None;
        let mut wrote = false;
        for step in [
            "/status",
            "/credits",
            "/coins/list#1",
            "/coins/list#2",
            "write",
            "/exchanges/list",
            "/overview",
        ] {
            if step == "write" {
                t += rng.influx(profile).min(Duration::from_secs(30));
                wrote = true;
                continue;
            }
            if self
                .cache_until
                .get(step)
                .is_some_and(|until| at + t < *until)
            {
                continue;
            }
            let mut ok = false;
            for attempt in 0..4u32 {
                // urllib3's backoff with factor 2: no sleep before the first retry, then 4 s, 8 s.
                if attempt > 0 {
                    t += Duration::from_secs(if attempt == 1 {
                        0
                    } else {
                        2u64 << (attempt - 1)
                    });
                }
                t += spacing;
                calls += 1;
                match rng.lcw(profile, outage) {
                    Draw::Answer(latency) if latency <= Duration::from_secs(30) => {
                        t += latency;
                        ok = true;
                        break;
                    }
                    Draw::Answer(_) | Draw::Hang => t += Duration::from_secs(30),
                    Draw::ServerError(latency) => t += latency,
                    Draw::TooMany(latency) => t += latency + Duration::from_secs(60),
                }
            }
            if ok {
                self.cache_until
                    .insert(step, at + t + Duration::from_secs(300));
                if step.starts_with("/coins") {
                    coins_fetched_at = Some(at + t);
                }
            } else if step == "/status" {
                return TickResult {
                    duration: t,
                    lcw_calls: calls,
                    freshness: None,
                    wrote_prices: false,
                };
            }
        }
        // Cached prices are written again with a fresh timestamp: their age is how old they are.
        let newest = coins_fetched_at.or_else(|| {
            self.cache_until
                .get("/coins/list#1")
                .map(|until| until.saturating_sub(Duration::from_secs(300)))
        });
        TickResult {
            duration: t,
            lcw_calls: calls,
            freshness: newest
                .filter(|_| wrote)
                .map(|fetched| (at + t).saturating_sub(fetched)),
            wrote_prices: wrote,
        }
    }
}

/// Our variables for a simulated run (InfluxDB v2 on a simulated host).
pub fn our_variables() -> Vec<(&'static str, &'static str)> {
    vec![
        ("lcw_api_key", "simulated-key"),
        ("lcw_base_url", "http://lcw.sim"),
        ("influx_url", "http://influx.sim"),
        ("influx_token", "simulated-token"),
        ("influx_org", "simulated-org"),
    ]
}
