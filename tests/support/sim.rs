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
///
/// One LCW request takes `lcw_floor_ms` plus a log-normal part (median, sigma) and may instead
/// answer 503 or 429, or hang (no answer before any timeout). A tick may fall in an LCW incident
/// (probability `p_incident` per tick), during which a request hangs with `incident_p_hang`
/// instead of `p_hang` and its log-normal part is `incident_slowdown` times slower: failures
/// then come in bursts, as real incidents do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Fixed part of one LCW request (connection, TLS, the server's own work).
    pub lcw_floor_ms: f64,
    /// Median and log-normal sigma of the variable part of one LCW request.
    pub lcw_median_ms: f64,
    pub lcw_sigma: f64,
    /// Median and sigma of one InfluxDB request.
    pub influx_median_ms: f64,
    pub influx_sigma: f64,
    /// Per request: a 503, a 429, no answer at all.
    pub p_5xx: f64,
    pub p_429: f64,
    pub p_hang: f64,
    /// Per tick: an LCW incident, the probability that a request hangs during one, and how
    /// many times slower the log-normal part of a request is during one.
    pub p_incident: f64,
    pub incident_p_hang: f64,
    pub incident_slowdown: f64,
}

impl Profile {
    pub const CALM: Profile = Profile {
        name: "calm",
        lcw_floor_ms: 0.0,
        lcw_median_ms: 250.0,
        lcw_sigma: 0.4,
        influx_median_ms: 20.0,
        influx_sigma: 0.4,
        p_5xx: 0.001,
        p_429: 0.0,
        p_hang: 0.0,
        p_incident: 0.0,
        incident_p_hang: 0.0,
        incident_slowdown: 1.0,
    };
    /// Calibrated so that the model of the original ([`Original`]) reproduces its published
    /// figures (`cargo bench --bench simulate` prints the fit).
    pub const SEED: Profile = Profile {
        name: "seed",
        lcw_floor_ms: 1_600.0,
        lcw_median_ms: 217.0,
        lcw_sigma: 1.42,
        influx_median_ms: 30.0,
        influx_sigma: 0.8,
        p_5xx: 0.0043,
        p_429: 0.003,
        p_hang: 0.0009,
        p_incident: 0.057,
        incident_p_hang: 0.05,
        incident_slowdown: 6.5,
    };
    /// The seed profile with three times its 5xx and hangs, twice its 429s and incidents.
    pub const DEGRADED: Profile = Profile {
        name: "degraded",
        p_5xx: Profile::SEED.p_5xx * 3.0,
        p_429: Profile::SEED.p_429 * 2.0,
        p_hang: Profile::SEED.p_hang * 3.0,
        p_incident: Profile::SEED.p_incident * 2.0,
        ..Profile::SEED
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

impl Draw {
    /// How long the request takes to answer (None: it never does).
    pub fn latency(self) -> Option<Duration> {
        match self {
            Draw::Answer(l) | Draw::ServerError(l) | Draw::TooMany(l) => Some(l),
            Draw::Hang => None,
        }
    }
}

/// A seeded generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A generator for one keyed draw (see [`draw_key`]).
    pub fn keyed(key: u64) -> Self {
        Self(mix(key) | 1)
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
}

/// splitmix64's finaliser: a bijection of u64 that scatters every input bit.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of one request's draw (common random numbers): the `k`-th request (from 0) to
/// `endpoint` in tick `tick` of a run seeded `seed` draws the same latency and outcome whoever
/// sends it, whatever else was sent before it.
pub fn draw_key(seed: u64, tick: u64, endpoint: &str, k: u32) -> u64 {
    // FNV-1a over the endpoint's identity, then splitmix over every part.
    let name = endpoint.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    mix(mix(mix(mix(seed) ^ tick) ^ name) ^ u64::from(k))
}

/// Whether LCW has an incident during tick `tick`.
pub fn incident(profile: &Profile, seed: u64, tick: u64) -> bool {
    profile.p_incident > 0.0
        && Rng::keyed(draw_key(seed, tick, "#incident", 0)).unit() < profile.p_incident
}

/// The `k`-th LCW request to `endpoint` in tick `tick` (an outage turns it into a quick 503).
pub fn lcw_draw(
    profile: &Profile,
    seed: u64,
    tick: u64,
    endpoint: &str,
    k: u32,
    outage: bool,
) -> Draw {
    let mut rng = Rng::keyed(draw_key(seed, tick, endpoint, k));
    let incident = incident(profile, seed, tick);
    let (p_hang, slowdown) = if incident {
        (profile.incident_p_hang, profile.incident_slowdown)
    } else {
        (profile.p_hang, 1.0)
    };
    let latency = Duration::from_secs_f64(profile.lcw_floor_ms / 1000.0)
        + rng.log_normal(profile.lcw_median_ms * slowdown, profile.lcw_sigma);
    let roll = rng.unit();
    if outage {
        Draw::ServerError(latency.min(Duration::from_millis(200)))
    } else if roll < p_hang {
        Draw::Hang
    } else if roll < p_hang + profile.p_5xx {
        Draw::ServerError(latency)
    } else if roll < p_hang + profile.p_5xx + profile.p_429 {
        Draw::TooMany(latency)
    } else {
        Draw::Answer(latency)
    }
}

/// The `k`-th InfluxDB request to `path` in tick `tick`: its latency.
pub fn influx_draw(profile: &Profile, seed: u64, tick: u64, path: &str, k: u32) -> Duration {
    Rng::keyed(draw_key(seed, tick, path, k))
        .log_normal(profile.influx_median_ms, profile.influx_sigma)
}

/// What tells one LCW call from another of the same path: the coin's code (`/coins/single`),
/// the page's offset (`/coins/list`, `/exchanges/list`, ...), from the JSON body.
pub fn endpoint_identity(path: &str, body: &[u8]) -> String {
    let mut identity = path.to_owned();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
        if let Some(code) = fields.get("code").and_then(|c| c.as_str()) {
            identity.push_str("?code=");
            identity.push_str(code);
        }
        if let Some(offset) = fields.get("offset").and_then(|o| o.as_u64()) {
            identity.push_str(&format!("@{offset}"));
        }
    }
    identity
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
    /// Store latencies, hostile answers and the core's own randomness (not the network's draws,
    /// which are keyed: see [`draw_key`]).
    pub rng: RefCell<Rng>,
    pub profile: Profile,
    /// The seed of the network's keyed draws.
    pub seed: u64,
    /// The tick whose draws requests take ([`our_tick`] sets it).
    pub tick: Cell<u64>,
    /// Requests so far to each endpoint identity in the current tick (the `k` of a draw).
    sent: RefCell<(u64, HashMap<String, u32>)>,
    /// Every LCW first attempt (k = 0) so far, its latency capped as the request's timeout caps
    /// it (a hang counts as the timeout).
    pub first_attempts: RefCell<Vec<Duration>>,
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
            seed,
            tick: Cell::new(0),
            sent: RefCell::new((0, HashMap::new())),
            first_attempts: RefCell::new(Vec::new()),
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
    /// The `k` of the next request to `identity` in the current tick.
    pub fn next_k(&self, identity: &str) -> u32 {
        let mut sent = self.sent.borrow_mut();
        let tick = self.tick.get();
        if sent.0 != tick {
            *sent = (tick, HashMap::new());
        }
        let k = sent.1.entry(identity.to_owned()).or_insert(0);
        *k += 1;
        *k - 1
    }

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
            let k = world.next_k(&path);
            let latency = influx_draw(&world.profile, world.seed, world.tick.get(), &path, k);
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
        let identity = endpoint_identity(&path, request.body());
        let k = world.next_k(&identity);
        let draw = lcw_draw(
            &world.profile,
            world.seed,
            world.tick.get(),
            &identity,
            k,
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
        if k == 0 {
            // A retry or a hedge is a later request to the same identity: never a first attempt.
            let capped = draw.latency().map_or(limit, |l| l.min(limit));
            world.first_attempts.borrow_mut().push(capped);
        }
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
    /// The slowest first attempt among the tick's LCW requests (k = 0), capped by its timeout;
    /// None when it sent none (or for the original's model, which does not record it).
    pub slowest_first_attempt: Option<Duration>,
}

/// Runs our tick `n` (ticks are a minute apart) in `world` with `variables`; its requests take
/// the draws of tick `n`.
pub fn our_tick(
    world: &World,
    variables: &[(&str, &str)],
    n: u64,
) -> (TickResult, lcw_fetcher::telemetry::history::CycleRecord) {
    world.clock.advance_to(Duration::from_secs(60 * n));
    world.tick.set(n);
    let calls_before = world.lcw_requests.get();
    let firsts_before = world.first_attempts.borrow().len();
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
    let slowest_first_attempt = world.first_attempts.borrow()[firsts_before..]
        .iter()
        .max()
        .copied();
    (
        TickResult {
            duration,
            lcw_calls: world.lcw_requests.get() - calls_before,
            freshness,
            wrote_prices,
            slowest_first_attempt,
        },
        record,
    )
}

/// The original service's fetch cycle as its code stood before 2025-09-22 (jrbgit/lcw-fetch at
/// ecc5cc4, `src/lcw_fetcher/fetcher.py` `run_full_fetch`, `api/client.py`,
/// `database/influx_client.py`, `scheduler.py`), call for call and wait for wait:
///
/// - a job every minute, `max_instances=1`: a cycle still running when the next is due makes
///   the scheduler skip that one;
/// - status (a failure abandons the cycle), credits, `/coins/single` for BTC, ETH and GLQ, a
///   store, `/coins/list` (offset 0, limit 20), a store, `/exchanges/list` (limit 20), a store,
///   `/overview`, a store: one after another; a store of nothing is skipped;
/// - before each LCW call the rate limiter sleeps what is left of 60/rpm s since the previous
///   call's start;
/// - each call is a `requests` POST with one 30 s timeout under urllib3
///   `Retry(total=3, backoff_factor=1, status_forcelist=[429, 500, 502, 503, 504],
///   allowed_methods=["POST"])`: up to 4 attempts; 429, 5xx and read timeouts are retried after
///   sleeping 0, 2 and 4 s (no `Retry-After` in the simulated answers); when they are spent
///   requests raises, the fetcher logs it and goes on (its 60 s sleep on `LCWRateLimitError`
///   never runs: a 429 never reaches it, urllib3 retries it and then raises `RetryError`);
/// - a store opens a new InfluxDB client, calls `health()` (failures swallowed), writes
///   synchronously without retries, and closes: two InfluxDB requests, 10 s timeout each.
pub struct Original {
    pub rpm: u32,
    /// When the running cycle ends (absolute virtual time).
    busy_until: Duration,
    /// `_last_request_time`: the start of the previous LCW call.
    last_request: Option<Duration>,
}

/// One cycle of the original that ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginalCycle {
    pub result: TickResult,
    /// `/status` failed and the cycle was abandoned (it logs no completion time).
    pub abandoned: bool,
}

/// The network the original's model sees: its draws are those of [`World`] for the same seed.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    pub profile: Profile,
    pub seed: u64,
    /// LCW answers 503 to every request made within this window of virtual time.
    pub outage: Option<(Duration, Duration)>,
}

/// urllib3's sleep before retry `retry` (1-based) with `Retry(backoff_factor=1)`:
/// `factor * 2 ** (consecutive_errors - 1)`, and 0 after the first error (urllib3 1.26 and 2.x).
pub fn urllib3_backoff(retry: u32) -> Duration {
    if retry <= 1 {
        Duration::ZERO
    } else {
        Duration::from_secs(1 << (retry - 1))
    }
}

const ORIGINAL_LCW_TIMEOUT: Duration = Duration::from_secs(30);
const ORIGINAL_INFLUX_TIMEOUT: Duration = Duration::from_secs(10);

impl Original {
    pub fn new(rpm: u32) -> Self {
        Self {
            rpm,
            busy_until: Duration::ZERO,
            last_request: None,
        }
    }

    /// The cycle due at minute `n`, or None when the previous one still runs (skipped). Its
    /// requests take the draws of tick `n`.
    pub fn tick(&mut self, net: &Network, n: u64) -> Option<OriginalCycle> {
        let start = Duration::from_secs(60 * n);
        if start < self.busy_until {
            return None;
        }
        let mut cycle = Cycle {
            net,
            n,
            now: start,
            sent: HashMap::new(),
            calls: 0,
            spacing: Duration::from_secs_f64(60.0 / f64::from(self.rpm)),
            last_request: self.last_request,
        };
        let status = cycle.lcw("/status", "{}");
        let mut abandoned = true;
        let mut freshness = None;
        if status {
            abandoned = false;
            cycle.lcw("/credits", "{}");
            let mut fetched = 0;
            for code in ["BTC", "ETH", "GLQ"] {
                let body = format!(r#"{{"currency":"USD","code":"{code}","meta":true}}"#);
                fetched += u32::from(cycle.lcw("/coins/single", &body));
            }
            if fetched > 0 {
                cycle.store();
            }
            let list = r#"{"currency":"USD","sort":"rank","order":"ascending","offset":0,"limit":20,"meta":true}"#;
            if cycle.lcw("/coins/list", list) {
                let answered = cycle.now;
                cycle.store();
                freshness = Some(cycle.now - answered);
            }
            let exchanges = r#"{"currency":"USD","sort":"visitors","order":"descending","offset":0,"limit":20,"meta":false}"#;
            if cycle.lcw("/exchanges/list", exchanges) {
                cycle.store();
            }
            if cycle.lcw("/overview", r#"{"currency":"USD"}"#) {
                cycle.store();
            }
        }
        self.busy_until = cycle.now;
        self.last_request = cycle.last_request;
        Some(OriginalCycle {
            result: TickResult {
                duration: cycle.now - start,
                lcw_calls: cycle.calls,
                freshness,
                wrote_prices: freshness.is_some(),
                slowest_first_attempt: None,
            },
            abandoned,
        })
    }
}

/// One fetcher call of the original on its own (the rate limiter idle), as in tick `n`: whether
/// it got an answer, how long it took, how many attempts it sent.
pub fn original_call(net: &Network, n: u64, path: &str, body: &str) -> (bool, Duration, u64) {
    let mut cycle = Cycle {
        net,
        n,
        now: Duration::from_secs(60 * n),
        sent: HashMap::new(),
        calls: 0,
        spacing: Duration::from_secs(1),
        last_request: None,
    };
    let ok = cycle.lcw(path, body);
    (ok, cycle.now - Duration::from_secs(60 * n), cycle.calls)
}

/// The state of one of the original's cycles.
struct Cycle<'a> {
    net: &'a Network,
    n: u64,
    now: Duration,
    sent: HashMap<String, u32>,
    calls: u64,
    spacing: Duration,
    last_request: Option<Duration>,
}

impl Cycle<'_> {
    fn next_k(&mut self, identity: &str) -> u32 {
        let k = self.sent.entry(identity.to_owned()).or_insert(0);
        *k += 1;
        *k - 1
    }

    /// One fetcher call: the rate limiter, then up to 4 attempts. Whether it got an answer.
    fn lcw(&mut self, path: &str, body: &str) -> bool {
        if let Some(last) = self.last_request {
            let since = self.now.saturating_sub(last);
            self.now += self.spacing.saturating_sub(since);
        }
        self.last_request = Some(self.now);
        let identity = endpoint_identity(path, body.as_bytes());
        for attempt in 0..4u32 {
            self.now += urllib3_backoff(attempt);
            let k = self.next_k(&identity);
            self.calls += 1;
            let outage = self
                .net
                .outage
                .is_some_and(|(from, to)| (from..to).contains(&self.now));
            let draw = lcw_draw(
                &self.net.profile,
                self.net.seed,
                self.n,
                &identity,
                k,
                outage,
            );
            match draw {
                Draw::Answer(l) if l <= ORIGINAL_LCW_TIMEOUT => {
                    self.now += l;
                    return true;
                }
                // Retried: a read timeout, 429 and 5xx (all in status_forcelist).
                Draw::Answer(_) | Draw::Hang => self.now += ORIGINAL_LCW_TIMEOUT,
                Draw::ServerError(l) | Draw::TooMany(l) => self.now += l.min(ORIGINAL_LCW_TIMEOUT),
            }
        }
        false
    }

    /// `with self.db_client as db: db.write_...`: a new client, `health()`, the write, close.
    fn store(&mut self) {
        for path in ["/health", "/api/v2/write"] {
            let k = self.next_k(path);
            let latency = influx_draw(&self.net.profile, self.net.seed, self.n, path, k);
            self.now += latency.min(ORIGINAL_INFLUX_TIMEOUT);
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
