//! The cost of a whole tick, native: the real `cycle::run_scheduled` of a cron tick against an
//! in-process host that answers at once (no network, no latency), with generated LCW answers
//! as large and as varied as real ones (200 coins with meta in two pages, the tracked coins,
//! the overview, 20 exchanges), after enough ticks that every stored document (the state
//! document, its history, the cache index, the backfill document) has its steady size.
//! Prints tables, asserts nothing (see docs/PERFORMANCE.md, "Cost of a whole tick, native").
//!
//! `cargo bench --bench tick_cost` (add `-- --ticks N` for another number of timed ticks).
//! `-- --trace` also prints every store call of ten steady-state ticks at 100 coins; `-- --coins
//! N` runs N coins only (for a profiler).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lcw_fetcher::host::{
    Clock, HttpClient, HttpRequest, HttpResponse, KeyValue, KvError, Level, Log, Random, Sql,
    SqlError, SqlRows, SqlValue, Timeouts, TransportError, Variables,
};
use lcw_fetcher::telemetry::history::Outcome;

/// Counts allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// 10^x, x uniform in `lo..hi`.
    fn magnitude(&mut self, lo: f64, hi: f64) -> f64 {
        10f64.powf(lo + (hi - lo) * self.unit())
    }
}

/// What stays the same from tick to tick: codes and names.
struct Identity {
    code: String,
    name: String,
    symbol: String,
    /// log10 of the coin's rate: from 1e-9 to 1e5.
    rate_exp: f64,
    slug: String,
}

const SYLLABLES: [&str; 16] = [
    "bit", "coin", "eth", "chain", "lum", "sol", "ra", "doge", "nex", "ter", "vo", "qu", "zen",
    "ar", "lin", "ko",
];
/// Names as LCW has them: spaces, commas, quotes, backslashes, `=`, non-ASCII, emoji.
const ODD_NAMES: [&str; 12] = [
    "Wrapped \"Staked\" Ether",
    "Back\\slash Token",
    "Foo, Inc. Share",
    "a=b Protocol",
    "Ξther Classic",
    "币安币",
    "Émile Coin",
    "Rocket 🚀 Moon",
    "Tab\tName",
    "Dollar $ Stable, v2",
    "Ünïcödé Ñame",
    "Ящик Токен",
];

fn identities(count: usize, seed: u64) -> Vec<Identity> {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let i = out.len();
        let mut code = match i {
            0 => "BTC".to_owned(),
            1 => "ETH".to_owned(),
            _ => {
                let len = 2 + rng.below(8) as usize;
                (0..len)
                    .map(|_| {
                        let c = rng.below(36) as u8;
                        if c < 26 {
                            (b'A' + c) as char
                        } else {
                            (b'0' + c - 26) as char
                        }
                    })
                    .collect()
            }
        };
        if rng.chance(0.04) {
            // LCW's prefix for a second coin with the same ticker.
            code.insert_str(0, "__");
        }
        if !seen.insert(code.clone()) {
            continue;
        }
        let name = match i {
            0 => "Bitcoin".to_owned(),
            1 => "Ethereum".to_owned(),
            _ if rng.chance(0.1) => ODD_NAMES[rng.below(ODD_NAMES.len() as u64) as usize].into(),
            _ => {
                let words = 1 + rng.below(3);
                let mut name = String::new();
                for w in 0..words {
                    if w > 0 {
                        name.push(' ');
                    }
                    for s in 0..1 + rng.below(3) {
                        let syl = SYLLABLES[rng.below(16) as usize];
                        if s == 0 {
                            name.push_str(&syl[..1].to_uppercase());
                            name.push_str(&syl[1..]);
                        } else {
                            name.push_str(syl);
                        }
                    }
                }
                name
            }
        };
        let symbol = match rng.below(4) {
            0 => "₿".to_owned(),
            1 => "Ξ".to_owned(),
            _ => code.trim_start_matches('_').chars().take(3).collect(),
        };
        let rate_exp = match i {
            0 => 4.8,
            1 => 3.4,
            _ => -9.0 + 14.0 * rng.unit(),
        };
        let slug = code.trim_start_matches('_').to_lowercase();
        out.push(Identity {
            code,
            name,
            symbol,
            rate_exp,
            slug,
        });
    }
    out
}

/// A JSON number, or `null` with probability `p_null`.
fn num(out: &mut String, rng: &mut Rng, value: f64, p_null: f64) {
    if rng.chance(p_null) {
        out.push_str("null");
    } else {
        write!(out, "{value}").unwrap();
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap());
}

/// One coin with meta, as `/coins/list` and `/coins/map` answer it.
fn coin_json(out: &mut String, id: &Identity, rank: usize, rng: &mut Rng) {
    let rate = 10f64.powf(id.rate_exp) * (1.0 + 0.02 * (rng.unit() - 0.5));
    let supply = rng.magnitude(5.0, 12.0).round();
    out.push_str("{\"code\":");
    json_str(out, &id.code);
    out.push_str(",\"name\":");
    json_str(out, &id.name);
    out.push_str(",\"symbol\":");
    json_str(out, &id.symbol);
    write!(
        out,
        ",\"rank\":{rank},\"age\":{},\"color\":\"#{:06x}\"",
        1 + rng.below(5000),
        rng.below(0x100_0000)
    )
    .unwrap();
    for (kind, size, ext) in [
        ("png", 32, "png"),
        ("png", 64, "png"),
        ("webp", 32, "webp"),
        ("webp", 64, "webp"),
    ] {
        write!(
            out,
            ",\"{kind}{size}\":\"https://lcw.nyc3.cdn.digitaloceanspaces.com/production/currencies/{size}/{}.{ext}\"",
            id.slug
        )
        .unwrap();
    }
    write!(
        out,
        ",\"exchanges\":{},\"markets\":{},\"pairs\":{}",
        rng.below(300),
        rng.below(5000),
        rng.below(3000)
    )
    .unwrap();
    out.push_str(",\"allTimeHighUSD\":");
    let v = rate * (1.0 + 10.0 * rng.unit());
    num(out, rng, v, 0.05);
    out.push_str(",\"circulatingSupply\":");
    num(out, rng, supply, 0.1);
    out.push_str(",\"totalSupply\":");
    let v = (supply * (1.0 + rng.unit())).round();
    num(out, rng, v, 0.3);
    out.push_str(",\"maxSupply\":");
    let v = (supply * (1.0 + 3.0 * rng.unit())).round();
    num(out, rng, v, 0.5);
    out.push_str(",\"categories\":[");
    for c in 0..rng.below(3) {
        if c > 0 {
            out.push(',');
        }
        out.push_str(["\"defi\"", "\"smart_contract_platforms\"", "\"meme\""][c as usize]);
    }
    out.push_str("],\"rate\":");
    write!(out, "{rate}").unwrap();
    out.push_str(",\"volume\":");
    let v = (rate * supply * rng.magnitude(-4.0, -0.5)).round();
    num(out, rng, v, 0.05);
    out.push_str(",\"cap\":");
    num(out, rng, (rate * supply).round(), 0.08);
    out.push_str(",\"delta\":{");
    for (i, span) in ["hour", "day", "week", "month", "quarter", "year"]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        write!(out, "\"{span}\":").unwrap();
        let spread = 0.01 * (i as f64 + 1.0).powi(2);
        let d = 1.0 + spread * (rng.unit() - 0.5) * 2.0;
        num(out, rng, (d * 10_000.0).round() / 10_000.0, 0.04);
    }
    out.push_str("}}");
}

/// The answers of one tick's LCW, varied from `variant` to `variant`.
struct Answers {
    pages: Vec<Vec<u8>>,
    map: Vec<u8>,
    overview: Vec<u8>,
    exchanges: Vec<u8>,
}

fn answers(coins: &[Identity], exchanges: &[Identity], variant: u64) -> Answers {
    let mut rng = Rng::new(1000 + variant);
    let pages = coins
        .chunks(100)
        .enumerate()
        .map(|(p, chunk)| {
            let mut out = String::from("[");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                coin_json(&mut out, id, p * 100 + i + 1, &mut rng);
            }
            out.push(']');
            out.into_bytes()
        })
        .collect();
    let mut map = String::from("[");
    for (i, id) in coins.iter().take(2).enumerate() {
        if i > 0 {
            map.push(',');
        }
        coin_json(&mut map, id, i + 1, &mut rng);
    }
    map.push(']');
    let overview = format!(
        "{{\"cap\":{},\"volume\":{},\"liquidity\":{},\"btcDominance\":{}}}",
        (rng.magnitude(12.2, 12.4)).round(),
        (rng.magnitude(10.7, 11.0)).round(),
        (rng.magnitude(9.5, 9.7)).round(),
        0.5 + 0.1 * rng.unit()
    );
    let mut ex = String::from("[");
    for (i, id) in exchanges.iter().enumerate() {
        if i > 0 {
            ex.push(',');
        }
        ex.push_str("{\"name\":");
        json_str(&mut ex, &id.name);
        for (kind, size) in [("png", 64), ("png", 128), ("webp", 64), ("webp", 128)] {
            write!(
                ex,
                ",\"{kind}{size}\":\"https://lcw.nyc3.cdn.digitaloceanspaces.com/production/exchanges/{size}/{}.{kind}\"",
                id.slug
            )
            .unwrap();
        }
        write!(
            ex,
            ",\"centralized\":{},\"usCompliant\":{},\"code\":",
            rng.chance(0.8),
            rng.chance(0.3)
        )
        .unwrap();
        json_str(&mut ex, &id.slug);
        write!(ex, ",\"markets\":{}", rng.below(2000)).unwrap();
        let volume = rng.magnitude(6.0, 10.5);
        ex.push_str(",\"volume\":");
        num(&mut ex, &mut rng, volume.round(), 0.02);
        ex.push_str(",\"bidTotal\":");
        let v = volume * 0.01 * rng.unit();
        num(&mut ex, &mut rng, v, 0.1);
        ex.push_str(",\"askTotal\":");
        let v = volume * 0.01 * rng.unit();
        num(&mut ex, &mut rng, v, 0.1);
        ex.push_str(",\"depth\":");
        let v = volume * 0.02 * rng.unit();
        num(&mut ex, &mut rng, v, 0.1);
        ex.push_str(",\"visitors\":");
        let visitors = rng.below(1_000_000) as f64;
        num(&mut ex, &mut rng, visitors, 0.1);
        ex.push_str(",\"volumePerVisitor\":");
        num(&mut ex, &mut rng, volume / (visitors + 1.0), 0.1);
        ex.push('}');
    }
    ex.push(']');
    Answers {
        pages,
        map: map.into_bytes(),
        overview: overview.into_bytes(),
        exchanges: ex.into_bytes(),
    }
}

/// Answers and a store shared by the ticks of one run.
struct World {
    variants: Vec<Answers>,
    history: Vec<u8>,
    variant: Cell<usize>,
    kv: RefCell<HashMap<String, Vec<u8>>>,
    /// Virtual wall clock at the start of the current tick.
    tick_start_ms: Cell<i64>,
    tick_start: Cell<Instant>,
    rng: RefCell<Rng>,
    round_trips: Cell<u64>,
    bytes_written: Cell<u64>,
    lcw_calls: Cell<u64>,
    trace: RefCell<Option<Vec<String>>>,
}

impl World {
    fn new(coins: usize) -> Self {
        let ids = identities(coins, 7);
        let ex = identities(20, 99);
        let variants = (0..8).map(|v| answers(&ids, &ex, v)).collect();
        let history = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/lcw/coins_single_history.json"),
        )
        .expect("the LCW samples in tests/fixtures/lcw");
        Self {
            variants,
            history,
            variant: Cell::new(0),
            kv: RefCell::new(HashMap::new()),
            tick_start_ms: Cell::new(1_800_000_000_000),
            tick_start: Cell::new(Instant::now()),
            rng: RefCell::new(Rng::new(42)),
            round_trips: Cell::new(0),
            bytes_written: Cell::new(0),
            lcw_calls: Cell::new(0),
            trace: RefCell::new(None),
        }
    }

    fn trip(&self, what: &str, key: &str, bytes: usize) {
        self.round_trips.set(self.round_trips.get() + 1);
        if let Some(trace) = self.trace.borrow_mut().as_mut() {
            trace.push(format!("{what} {key} ({bytes} bytes)"));
        }
    }

    fn answer(&self, request: &HttpRequest) -> Vec<u8> {
        let answers = &self.variants[self.variant.get()];
        let field = |name: &str| -> u64 {
            serde_json::from_slice::<serde_json::Value>(request.body())
                .ok()
                .and_then(|v| v.get(name).and_then(|o| o.as_u64()))
                .unwrap_or(0)
        };
        match request.uri().path() {
            "/status" => b"{}".to_vec(),
            "/credits" => br#"{"dailyCreditsRemaining":90000,"dailyCreditsLimit":100000}"#.to_vec(),
            "/coins/list" => answers
                .pages
                .get((field("offset") / 100) as usize)
                .cloned()
                .unwrap_or_else(|| b"[]".to_vec()),
            "/coins/map" => answers.map.clone(),
            "/overview" => answers.overview.clone(),
            "/exchanges/list" => answers.exchanges.clone(),
            "/coins/single/history" => self.history.clone(),
            _ => b"{}".to_vec(),
        }
    }
}

struct BenchHost<'w> {
    world: &'w World,
    variables: HashMap<String, String>,
}

impl HttpClient for BenchHost<'_> {
    async fn send(
        &self,
        request: HttpRequest,
        _timeouts: Timeouts,
    ) -> Result<HttpResponse, TransportError> {
        let path = request.uri().path();
        if path.starts_with("/api/") || path.starts_with("/write") {
            return Ok(http::Response::builder()
                .status(204)
                .body(Vec::new())
                .unwrap());
        }
        self.world.lcw_calls.set(self.world.lcw_calls.get() + 1);
        Ok(http::Response::builder()
            .status(200)
            .body(self.world.answer(&request))
            .unwrap())
    }
}

impl KeyValue for BenchHost<'_> {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.world.kv.borrow().get(key).cloned();
        self.world
            .trip("get", key, value.as_ref().map_or(0, Vec::len));
        Ok(value)
    }
    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.world.trip("set", key, value.len());
        self.world
            .bytes_written
            .set(self.world.bytes_written.get() + value.len() as u64);
        self.world
            .kv
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    async fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.world.trip("delete", key, 0);
        self.world.kv.borrow_mut().remove(key);
        Ok(())
    }
    async fn kv_increment(&self, key: &str, delta: i64) -> Result<Option<i64>, KvError> {
        self.world.trip("increment", key, 8);
        let mut kv = self.world.kv.borrow_mut();
        let current = kv
            .get(key)
            .map(|v| i64::from_le_bytes(v.as_slice().try_into().expect("a counter")))
            .unwrap_or(0);
        kv.insert(key.to_owned(), (current + delta).to_le_bytes().to_vec());
        Ok(Some(current + delta))
    }
    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.world.trip("keys", prefix, 0);
        Ok(self
            .world
            .kv
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

impl Sql for BenchHost<'_> {
    async fn sql_execute(&self, _: &str, _: &[SqlValue]) -> Result<SqlRows, SqlError> {
        Err(SqlError("no SQL in this bench (InfluxDB sink)".into()))
    }
}

impl Variables for BenchHost<'_> {
    async fn variable(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self.variables.get(name).cloned())
    }
}

impl Clock for BenchHost<'_> {
    fn unix_millis(&self) -> i64 {
        self.world.tick_start_ms.get() + self.world.tick_start.get().elapsed().as_millis() as i64
    }
    fn monotonic(&self) -> Duration {
        self.world.tick_start.get().elapsed()
            + Duration::from_millis(self.world.tick_start_ms.get() as u64)
    }
    async fn sleep(&self, _duration: Duration) {}
}

impl Random for BenchHost<'_> {
    fn random_u64(&self) -> u64 {
        self.world.rng.borrow_mut().next()
    }
}

impl Log for BenchHost<'_> {
    fn log(&self, _level: Level, _message: &str) {}
}

/// One tick's figures.
struct TickCost {
    elapsed: Duration,
    round_trips: u64,
    bytes_written: u64,
    allocations: u64,
    lcw_calls: u64,
}

const FIRST_SLOT_S: u64 = 1_800_000_000 / 60 * 60;

/// Cron tick `n` (a minute apart), timed.
fn tick(world: &World, variables: &HashMap<String, String>, n: u64) -> TickCost {
    let scheduled_s = FIRST_SLOT_S + 60 * n;
    world.tick_start_ms.set(scheduled_s as i64 * 1000);
    world.tick_start.set(Instant::now());
    world
        .variant
        .set((n % world.variants.len() as u64) as usize);
    let host = BenchHost {
        world,
        variables: variables.clone(),
    };
    let (trips, bytes, calls) = (
        world.round_trips.get(),
        world.bytes_written.get(),
        world.lcw_calls.get(),
    );
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    let record = futures::executor::block_on(lcw_fetcher::cycle::run_scheduled(&host, scheduled_s));
    let elapsed = started.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    assert!(
        matches!(record.outcome, Outcome::Success | Outcome::Partial),
        "tick {n}: {:?} {:?}",
        record.outcome,
        record.errors
    );
    TickCost {
        elapsed,
        round_trips: world.round_trips.get() - trips,
        bytes_written: world.bytes_written.get() - bytes,
        allocations,
        lcw_calls: world.lcw_calls.get() - calls,
    }
}

fn variables(coins: usize) -> HashMap<String, String> {
    [
        ("lcw_api_key", "bench-key".to_owned()),
        ("lcw_base_url", "http://lcw.bench".to_owned()),
        ("influx_url", "http://influx.bench".to_owned()),
        ("influx_token", "bench-token".to_owned()),
        ("influx_org", "bench-org".to_owned()),
        ("max_coins_per_fetch", coins.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Run {
    coins: usize,
    median_ms: f64,
    p90_ms: f64,
    /// Mean over the timed ticks (a steady-state tick's figures depend on which TTLs are due).
    round_trips: f64,
    round_trips_max: u64,
    bytes_written: f64,
    bytes_written_max: u64,
    allocations: f64,
    lcw_calls: f64,
    state_bytes: usize,
    backfill_bytes: usize,
    answer_bytes: usize,
    /// How many ticks made how many round trips.
    trips_histogram: std::collections::BTreeMap<u64, usize>,
}

/// Warms a store up to steady state, then times `timed` ticks.
fn run(coins: usize, warm_up: u64, timed: u64, trace: bool) -> Run {
    let world = World::new(coins);
    let vars = variables(coins);
    for n in 0..warm_up {
        tick(&world, &vars, n);
    }
    let mut costs: Vec<TickCost> = (warm_up..warm_up + timed)
        .map(|n| tick(&world, &vars, n))
        .collect();
    if trace {
        for n in warm_up + timed..warm_up + timed + 10 {
            *world.trace.borrow_mut() = Some(Vec::new());
            tick(&world, &vars, n);
            let trace = world.trace.borrow_mut().take().unwrap();
            println!("store calls of steady-state tick {n} ({coins} coins):");
            for (i, call) in trace.iter().enumerate() {
                println!("  {:2}. {call}", i + 1);
            }
        }
    }
    let n = costs.len() as f64;
    let mean = |f: &dyn Fn(&TickCost) -> u64| costs.iter().map(f).sum::<u64>() as f64 / n;
    let round_trips = mean(&|c| c.round_trips);
    let bytes_written = mean(&|c| c.bytes_written);
    let allocations = mean(&|c| c.allocations);
    let lcw_calls = mean(&|c| c.lcw_calls);
    let round_trips_max = costs.iter().map(|c| c.round_trips).max().unwrap_or(0);
    let mut trips_histogram = std::collections::BTreeMap::new();
    for c in &costs {
        *trips_histogram.entry(c.round_trips).or_insert(0) += 1;
    }
    let bytes_written_max = costs.iter().map(|c| c.bytes_written).max().unwrap_or(0);
    costs.sort_by_key(|c| c.elapsed);
    let pct = |q: f64| {
        costs[((q * costs.len() as f64).ceil() as usize).clamp(1, costs.len()) - 1]
            .elapsed
            .as_secs_f64()
            * 1000.0
    };
    let kv = world.kv.borrow();
    if let Ok(dir) = std::env::var("TICK_COST_DUMP") {
        // The steady-state documents, for a look.
        for (key, value) in kv.iter() {
            let name = key.replace('/', "_");
            std::fs::write(format!("{dir}/{coins}-{name}"), value).unwrap();
        }
    }
    let size = |key: &str| kv.get(key).map_or(0, Vec::len);
    let answers = &world.variants[0];
    Run {
        coins,
        median_ms: pct(0.5),
        p90_ms: pct(0.9),
        round_trips,
        round_trips_max,
        bytes_written,
        bytes_written_max,
        allocations,
        lcw_calls,
        state_bytes: size(lcw_fetcher::state::STATE_KEY),
        backfill_bytes: size(lcw_fetcher::state::BACKFILL_KEY),
        answer_bytes: answers.pages.iter().map(Vec::len).sum::<usize>()
            + answers.map.len()
            + answers.overview.len()
            + answers.exchanges.len(),
        trips_histogram,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let timed = args
        .iter()
        .position(|a| a == "--ticks")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(300u64);
    let trace = args.iter().any(|a| a == "--trace");
    let coins: Vec<usize> = args
        .iter()
        .position(|a| a == "--coins")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .map_or_else(|| vec![100, 200], |n| vec![n]);
    // Past the history's 60 recent cycles and the exchanges' 600 s TTL several times over.
    let warm_up = 200;
    let runs: Vec<Run> = coins
        .into_iter()
        .map(|coins| run(coins, warm_up, timed, trace && coins == 100))
        .collect();

    println!("## Cost of a whole tick, native");
    println!();
    println!(
        "Command: `cargo bench --bench tick_cost` ({warm_up} warm-up cron ticks, then {timed} timed; release build, InfluxDB v2 sink answering 204, no latency)."
    );
    println!();
    println!(
        "| coins | tick median (ms) | tick p90 (ms) | KV round trips/tick (mean, max) | KV bytes written/tick (mean, max) | allocations/tick | LCW calls/tick | state document (bytes) | `lcw/v1/backfill` (bytes) | LCW answer bytes/tick |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {:.2} | {:.2} | {:.2}, {} | {:.0}, {} | {:.0} | {:.2} | {} | {} | {} |",
            r.coins,
            r.median_ms,
            r.p90_ms,
            r.round_trips,
            r.round_trips_max,
            r.bytes_written,
            r.bytes_written_max,
            r.allocations,
            r.lcw_calls,
            r.state_bytes,
            r.backfill_bytes,
            r.answer_bytes
        );
    }
    println!();
    for r in &runs {
        let ticks: Vec<String> = r
            .trips_histogram
            .iter()
            .map(|(trips, n)| format!("{n} × {trips}"))
            .collect();
        println!(
            "{} coins, timed ticks by KV round trips: {}",
            r.coins,
            ticks.join(", ")
        );
    }
}
