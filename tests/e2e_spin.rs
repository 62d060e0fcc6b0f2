//! The release check: the built app under a real `spin up`, against a real `influxd`, the LCW fake
//! on loopback and (for two hosts) a real `redis-server`. Each check prints PASS or FAIL with its
//! name; the test fails if any check failed.
//!
//! Run by `scripts/e2e-spin` (which builds the app with `spin build` first); `cargo test` skips it
//! (`#[ignore]`): it needs Spin with the `trigger-cron` plugin and takes minutes, because the cron
//! trigger only fires at second 0 of a minute.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::lcw_fake::{API_KEY, TICK_PATHS, fixture_json};
use support::{Influx, LcwFake, Reply};

const ADMIN_TOKEN: &str = "e2e-admin-token-7c41d2";
const INFLUX_PASSWORD: &str = "e2e-influx-password-93b0ee";
/// Coins in the top list the fake serves, over two pages of 100.
const COINS: usize = 200;

/// Runs every check; a failed check is reported and the next runs, so one run shows them all.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, outcome: Result<String, String>) {
        match outcome {
            Ok(detail) => {
                self.passed += 1;
                println!("PASS  {name}: {detail}");
            }
            Err(why) => {
                println!("FAIL  {name}: {why}");
                self.failed.push(name.to_owned());
            }
        }
        let _ = std::io::stdout().flush();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn spin_binary() -> PathBuf {
    std::env::var_os("LCW_E2E_SPIN")
        .map(PathBuf::from)
        .or_else(|| support::influxd::which("spin"))
        .expect("spin not found: run scripts/e2e-spin, which says how to get it")
}

/// One `spin up` of the repository's app, killed (with its trigger processes) on drop.
struct SpinUp {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl SpinUp {
    fn start(name: &str, runtime_config: &Path, variables: &[(&str, String)]) -> Self {
        Self::start_from("spin.toml", name, runtime_config, variables)
    }

    /// `spin up` of the repository's manifest `manifest` (`spin.toml`, `spin.http.toml`).
    fn start_from(
        manifest: &str,
        name: &str,
        runtime_config: &Path,
        variables: &[(&str, String)],
    ) -> Self {
        let dir = scratch(name);
        let port = support::influxd::free_port();
        let mut command = Command::new(spin_binary());
        command
            .args(["up", "--from"])
            .arg(repo().join(manifest))
            .arg("--runtime-config-file")
            .arg(runtime_config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--log-dir")
            .arg(dir.join("logs"))
            // Spin resolves a relative SQLite `path` against its working directory (and the
            // key-value store's against the runtime config's): run where the config is, so
            // both files land beside it.
            .current_dir(runtime_config.parent().unwrap())
            .stdout(std::fs::File::create(dir.join("spin.stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("spin.stderr")).unwrap());
        for (name, value) in variables {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        // Its own process group, so the trigger processes it starts go with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start spin up");
        let spin = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        spin.wait_ready();
        spin
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok((200, _)) = get(&self.url, "/.well-known/spin/health") {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "spin up did not answer within 120 s; its output:\n{}",
            self.output()
        );
    }

    /// Everything the app and Spin logged so far.
    fn output(&self) -> String {
        let mut text = String::new();
        for file in files_under(&self.dir) {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(file).unwrap_or_default(),
            ));
        }
        text
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lcw-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// --- HTTP to the app ------------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into()
}

fn read(
    response: Result<http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

fn get(base: &str, path: &str) -> Result<(u16, String), String> {
    read(agent().get(&format!("{base}{path}")).call())
}

fn post(base: &str, path: &str, token: &str) -> Result<(u16, String), String> {
    read(
        agent()
            .post(&format!("{base}{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .send_empty(),
    )
}

fn json_of(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body:.200}"))
}

/// Runs a tick through `POST /collect`; its cycle record.
fn collect(base: &str) -> Result<Value, String> {
    match post(base, "/collect", ADMIN_TOKEN)? {
        (200, body) => Ok(json_of(&body)?["cycle"].clone()),
        (status, body) => Err(format!("POST /collect: {status} {body:.300}")),
    }
}

// --- what the fake serves -------------------------------------------------------------------

/// `COINS` distinct coins with varied values, built from the fixture's first coin.
fn top_coins() -> Vec<Value> {
    let template = fixture_json("coins_list.json")[0].clone();
    (0..COINS)
        .map(|i| {
            let mut coin = template.clone();
            let scale = 1.0 + i as f64 / 997.0;
            coin["code"] = json!(format!("E2E{i:03}"));
            coin["rank"] = json!(i + 1);
            for key in ["rate", "volume", "cap"] {
                if let Some(v) = coin[key].as_f64() {
                    coin[key] = json!(v / scale / 3.0);
                }
            }
            if let Some(delta) = coin["delta"].as_object_mut() {
                for value in delta.values_mut() {
                    if let Some(v) = value.as_f64() {
                        *value = json!(v * scale - 0.01 * i as f64);
                    }
                }
            }
            coin
        })
        .collect()
}

fn serve_top_coins(fake: &LcwFake) {
    serve_top_coins_with(fake, None);
}

/// Pages of [`top_coins`] by `offset` and `limit`, each with `extra` appended when given.
fn serve_top_coins_with(fake: &LcwFake, extra: Option<Value>) {
    let coins = top_coins();
    fake.respond_with("/coins/list", move |seen| {
        let body = seen.json();
        let offset = body["offset"].as_u64().unwrap_or(0) as usize;
        let limit = body["limit"].as_u64().unwrap_or(10) as usize;
        let mut page: Vec<Value> = coins.iter().skip(offset).take(limit).cloned().collect();
        page.extend(extra.clone());
        Reply::json(200, serde_json::to_vec(&page).unwrap())
    });
}

/// Ticks that started at the fake (a tick's first page), with their times.
fn tick_starts(fake: &LcwFake) -> Vec<SystemTime> {
    fake.seen_on("/coins/list")
        .iter()
        .filter(|s| s.json()["offset"] == 0)
        .map(|s| s.at)
        .collect()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Sleeps until `second` past the next minute boundary.
fn sleep_until_second(second: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let target = Duration::from_secs((now.as_secs() / 60 + 1) * 60 + second);
    std::thread::sleep(target - now);
}

/// Makes sure at least `needed` seconds pass before the next cron tick (and the last one is
/// over), so ticks run through `/collect` are not interleaved with a cron tick.
fn quiet_window(needed: u64) {
    let second = unix_secs(SystemTime::now()) % 60;
    if !(3..60 - needed).contains(&second) {
        sleep_until_second(3);
    }
}

// --- checks -----------------------------------------------------------------------------------

fn variables(fake: &LcwFake, influx: &Influx) -> Vec<(&'static str, String)> {
    vec![
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
        ("influx_url", influx.url.clone()),
        ("influx_api", "v1".to_owned()),
        ("influx_database", influx.database.clone()),
        ("influx_username", "e2e".to_owned()),
        ("influx_password", INFLUX_PASSWORD.to_owned()),
        ("admin_token", ADMIN_TOKEN.to_owned()),
        ("max_coins_per_fetch", COINS.to_string()),
        // Every tick fetches afresh, so every tick's points are new rows and can be counted.
        ("cache_ttl_coins_list_s", "1".to_owned()),
        ("cache_ttl_overview_s", "1".to_owned()),
        ("cache_ttl_exchanges_s", "1".to_owned()),
        ("breaker_cool_down_s", "3".to_owned()),
        ("retry_base_ms", "50".to_owned()),
        ("retry_cap_ms", "100".to_owned()),
        // Many ticks in a few minutes: the shared rate limit must not stretch them.
        ("requests_per_minute", "1200".to_owned()),
    ]
}

fn same_number(
    row: &serde_json::Map<String, Value>,
    column: &str,
    expected: &Value,
) -> Result<(), String> {
    match (expected.as_f64(), row.get(column).and_then(Value::as_f64)) {
        (None, None) => Ok(()),
        (Some(want), Some(got)) if want.to_bits() == got.to_bits() => Ok(()),
        (want, got) => Err(format!("{column}: InfluxDB has {got:?}, LCW sent {want:?}")),
    }
}

fn coin_matches(row: &serde_json::Map<String, Value>, coin: &Value) -> Result<(), String> {
    same_number(row, "rate", &coin["rate"])?;
    same_number(row, "volume", &coin["volume"])?;
    same_number(row, "market_cap", &coin["cap"])?;
    for (field, key) in [
        ("delta_1h", "hour"),
        ("delta_24h", "day"),
        ("delta_7d", "week"),
        ("delta_30d", "month"),
        ("delta_90d", "quarter"),
        ("delta_1y", "year"),
    ] {
        same_number(row, field, &coin["delta"][key])?;
    }
    Ok(())
}

/// The cron tick's data, value for value: the top coins, the tracked coins, overview, exchanges.
fn tick_data_in_influx(influx: &Influx) -> Result<String, String> {
    let mut coins = top_coins();
    coins.extend(
        fixture_json("coins_map.json")
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    let rows = influx.rows("cryptocurrency_data");
    if rows.len() != coins.len() {
        return Err(format!(
            "{} coin rows, expected {}",
            rows.len(),
            coins.len()
        ));
    }
    for coin in &coins {
        let row = rows
            .iter()
            .find(|r| r["code"] == coin["code"])
            .ok_or_else(|| format!("no row for {}", coin["code"]))?;
        coin_matches(row, coin).map_err(|e| format!("{}: {e}", coin["code"]))?;
    }
    let overview = fixture_json("overview.json");
    let rows = influx.rows("market_overview");
    let [row] = rows.as_slice() else {
        return Err(format!("{} overview rows, expected 1", rows.len()));
    };
    for (field, key) in [
        ("total_market_cap", "cap"),
        ("total_volume", "volume"),
        ("total_liquidity", "liquidity"),
        ("btc_dominance", "btcDominance"),
    ] {
        same_number(row, field, &overview[key])?;
    }
    let exchanges = fixture_json("exchanges_list.json");
    let rows = influx.rows("exchange_data");
    if rows.len() != exchanges.as_array().unwrap().len() {
        return Err(format!(
            "{} exchange rows for {} exchanges",
            rows.len(),
            exchanges.as_array().unwrap().len()
        ));
    }
    for exchange in exchanges.as_array().unwrap() {
        let code = exchange["code"].as_str().unwrap_or_default().to_uppercase();
        let row = rows
            .iter()
            .find(|r| r["code"] == code.as_str())
            .ok_or_else(|| format!("no row for exchange {code}"))?;
        for (field, key) in [
            ("volume", "volume"),
            ("bid_total", "bidTotal"),
            ("ask_total", "askTotal"),
            ("depth", "depth"),
            ("visitors", "visitors"),
            ("markets", "markets"),
            ("volume_per_visitor", "volumePerVisitor"),
        ] {
            same_number(row, field, &exchange[key]).map_err(|e| format!("{code}: {e}"))?;
        }
    }
    Ok(format!(
        "{} coins, the overview and {} exchanges equal the JSON LCW sent",
        coins.len(),
        rows.len()
    ))
}

fn cron_tick(fake: &LcwFake, influx: &Influx, spin: &SpinUp) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(75);
    let started = loop {
        if let Some(&start) = tick_starts(fake).first() {
            break start;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no tick within 75 s; spin said:\n{}",
                spin.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let second = unix_secs(started) % 60;
    if second > 2 {
        return Err(format!(
            "the tick started at second {second}, not at second 0"
        ));
    }
    // The tick is over when its record is in /stats.
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let (_, body) = get(&spin.url, "/stats")?;
        if json_of(&body)?["recent_cycles"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("the tick recorded no cycle within 50 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let data = tick_data_in_influx(influx)?;
    Ok(format!("started at second {second} of the minute; {data}"))
}

/// Every metric family of docs/api.md's table, in `/metrics`, and promtool accepts the text.
/// A tick whose coin pages carry one unreadable element first, so that the skipped-records
/// family has a sample too.
fn metrics(fake: &LcwFake, spin: &SpinUp, outputs: &mut Vec<String>) -> Result<String, String> {
    serve_top_coins_with(fake, Some(json!({"code": null, "rate": 1.0})));
    let skipped = collect(&spin.url);
    serve_top_coins(fake);
    let skipped = skipped?;
    if skipped["records_skipped"]
        .as_object()
        .is_none_or(|m| m.is_empty())
    {
        return Err(format!("the unreadable element was not counted: {skipped}"));
    }
    let (status, text) = get(&spin.url, "/metrics")?;
    outputs.push(text.clone());
    if status != 200 {
        return Err(format!("status {status}"));
    }
    support::promtool_check_metrics(&text)?;
    let readme = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let section = readme
        .split("### Metrics")
        .nth(1)
        .and_then(|rest| rest.split("\n#").next())
        .unwrap_or("");
    let families: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| `lcw_"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or("").split('`'))
        .filter(|name| name.starts_with("lcw_"))
        .collect();
    let missing: Vec<&&str> = families
        .iter()
        .filter(|f| !text.contains(&format!("# TYPE {f} ")))
        .collect();
    if families.len() < 15 || !missing.is_empty() {
        return Err(format!(
            "families missing: {missing:?} (of {})",
            families.len()
        ));
    }
    Ok(format!(
        "promtool clean, all {} families of docs/api.md",
        families.len()
    ))
}

fn json_route(
    spin: &SpinUp,
    path: &str,
    keys: &[&str],
    outputs: &mut Vec<String>,
) -> Result<String, String> {
    let (status, body) = get(&spin.url, path)?;
    outputs.push(body.clone());
    if status != 200 {
        return Err(format!("{path}: {status} {body:.300}"));
    }
    let value = json_of(&body)?;
    let missing: Vec<&&str> = keys.iter().filter(|k| value.get(**k).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!("{path} lacks {missing:?}"));
    }
    Ok(format!("200 with {}", keys.join(", ")))
}

fn admin_refuses_wrong_token(spin: &SpinUp, outputs: &mut Vec<String>) -> Result<String, String> {
    for (method, path) in [
        ("POST", "/collect"),
        ("POST", "/cache/clear"),
        ("GET", "/quarantine"),
    ] {
        let url = format!("{}{path}", spin.url);
        let request = match method {
            "POST" => agent()
                .post(&url)
                .header("Authorization", "Bearer wrong")
                .send_empty(),
            _ => agent()
                .get(&url)
                .header("Authorization", "Bearer wrong")
                .call(),
        };
        let (status, body) = read(request)?;
        outputs.push(body);
        if status != 401 {
            return Err(format!("{method} {path} with a wrong token: {status}"));
        }
    }
    let (status, _) = get(&spin.url, "/quarantine")?;
    if status != 401 {
        return Err(format!("GET /quarantine without a token: {status}"));
    }
    Ok("401 on /collect, /cache/clear and /quarantine".into())
}

fn breaker_state(spin: &SpinUp) -> Result<String, String> {
    let (_, text) = get(&spin.url, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("lcw_circuit_breaker_state "))
        .map(str::to_owned)
        .ok_or_else(|| "no lcw_circuit_breaker_state in /metrics".into())
}

fn breaker_across_ticks(fake: &LcwFake, spin: &SpinUp) -> Result<String, String> {
    quiet_window(25);
    for path in TICK_PATHS {
        // A handler answers before a reply: remove the coin pages' handler first.
        fake.restore(path);
        fake.respond(path, Reply::documented_error(503));
    }
    let first = collect(&spin.url)?;
    let opened = breaker_state(spin)?;
    let calls_before = fake.seen().len();
    let second = collect(&spin.url)?;
    let calls_while_open = fake.seen().len() - calls_before;
    for path in TICK_PATHS {
        fake.restore(path);
    }
    serve_top_coins(fake);
    std::thread::sleep(Duration::from_secs(4));
    let third = collect(&spin.url)?;
    let closed = breaker_state(spin)?;
    let outcomes =
        [&first, &second, &third].map(|c| c["outcome"].as_str().unwrap_or("?").to_owned());
    if opened != "2" || outcomes[1] != "skipped_breaker" || calls_while_open != 0 {
        return Err(format!(
            "after a failing tick the breaker is {opened} (2 = open); next tick {} with {calls_while_open} LCW calls",
            outcomes[1]
        ));
    }
    if closed != "0" || outcomes[2] != "success" {
        return Err(format!(
            "after recovery the breaker is {closed}, the tick {}",
            outcomes[2]
        ));
    }
    Ok(format!(
        "ticks: {outcomes:?}; open after the first, no LCW call while open, closed after the cool-down"
    ))
}

fn rows_in_influx(influx: &Influx) -> usize {
    ["cryptocurrency_data", "market_overview", "exchange_data"]
        .iter()
        .map(|m| influx.rows(m).len())
        .sum()
}

fn influx_outage(influx: &mut Influx, spin: &SpinUp) -> Result<String, String> {
    quiet_window(30);
    let before = rows_in_influx(influx);
    influx.stop();
    let mut spooled = 0;
    for _ in 0..3 {
        let cycle = collect(&spin.url)?;
        spooled += cycle["points_spooled"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(1100));
    }
    influx.restart();
    let recovery = collect(&spin.url)?;
    let replayed = recovery["points_replayed"].as_u64().unwrap_or(0);
    let written: u64 = recovery["points_written"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let after = rows_in_influx(influx);
    let (_, status) = get(&spin.url, "/status")?;
    let spool_left = json_of(&status)?["spool_points"].as_u64();
    if spooled == 0
        || replayed != spooled
        // A record's written points include the spooled ones it replayed.
        || after - before != written as usize
        || spool_left != Some(0)
    {
        return Err(format!(
            "spooled {spooled}, replayed {replayed}, written {written}; rows {before} -> {after}; spool left {spool_left:?}"
        ));
    }
    Ok(format!(
        "{spooled} points spooled over 3 ticks, all {replayed} replayed, {} fresh written; {} new rows",
        written - replayed,
        after - before
    ))
}

/// Every value in the store's SQLite file, gzip segments decompressed (Python's sqlite3 reads it).
fn stored_values(db: &Path) -> Result<Vec<Vec<u8>>, String> {
    let script = r#"
import sqlite3, sys, gzip
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
out = sys.stdout.buffer
for (table,) in con.execute("select name from sqlite_master where type='table'"):
    for row in con.execute('select * from "%s"' % table):
        for value in row:
            data = value if isinstance(value, bytes) else str(value).encode()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            out.write(len(data).to_bytes(8, "little") + data)
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let mut values = Vec::new();
    let mut rest = output.stdout.as_slice();
    while rest.len() >= 8 {
        let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        values.push(rest[8..8 + len].to_vec());
        rest = &rest[8 + len..];
    }
    Ok(values)
}

fn no_secrets(outputs: &[String], spin: &SpinUp, db: &Path) -> Result<String, String> {
    let secrets = [API_KEY, ADMIN_TOKEN, INFLUX_PASSWORD];
    let values = stored_values(db)?;
    let logs = spin.output();
    let mut places: Vec<(String, &[u8])> = vec![("logs".into(), logs.as_bytes())];
    places.extend(
        outputs
            .iter()
            .map(|o| ("a route's output".to_owned(), o.as_bytes())),
    );
    places.extend(
        values
            .iter()
            .map(|v| ("a stored value".to_owned(), v.as_slice())),
    );
    for (place, bytes) in &places {
        for secret in secrets {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                return Err(format!("a secret is in {place}"));
            }
        }
    }
    Ok(format!(
        "3 secrets in none of {} route outputs, {} bytes of logs, {} stored values",
        outputs.len(),
        logs.len(),
        values.len()
    ))
}

// --- two hosts on one Redis -------------------------------------------------------------------

struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Self {
        let port = support::influxd::free_port();
        let dir = scratch("redis");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one_cron_tick_a_minute(fake: &LcwFake, minutes: u64) -> Result<String, String> {
    sleep_until_second(0);
    let from = unix_secs(SystemTime::now()) / 60;
    std::thread::sleep(Duration::from_secs(minutes * 60 - 5));
    let mut per_minute = vec![0; minutes as usize];
    for start in tick_starts(fake) {
        let minute = unix_secs(start) / 60;
        if (from..from + minutes).contains(&minute) {
            per_minute[(minute - from) as usize] += 1;
        }
    }
    if per_minute.iter().any(|&n| n != 1) {
        return Err(format!("ticks run per minute: {per_minute:?}"));
    }
    Ok(format!("ticks run per minute: {per_minute:?}"))
}

fn racing_collects(fake: &LcwFake, hosts: [&SpinUp; 2], pairs: usize) -> Result<String, String> {
    // Each tick lasts long enough that two started together must overlap.
    fake.respond(
        "/overview",
        Reply::json(200, support::lcw_fake::fixture("overview.json"))
            .delayed(Duration::from_millis(400)),
    );
    let mut both_ran = 0;
    let mut one_ran = 0;
    let mut none_ran = 0;
    for _ in 0..pairs {
        quiet_window(4);
        let barrier = Arc::new(Barrier::new(2));
        let runs: Vec<_> = hosts
            .iter()
            .map(|host| {
                let (url, barrier) = (host.url.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    collect(&url)
                })
            })
            .collect();
        let mut ran = 0;
        for run in runs {
            let cycle = run.join().unwrap()?;
            if cycle["outcome"] != "skipped_overlap" {
                ran += 1;
            }
        }
        match ran {
            2 => both_ran += 1,
            1 => one_ran += 1,
            _ => none_ran += 1,
        }
    }
    fake.restore("/overview");
    let summary =
        format!("{pairs} pairs: one ran in {one_ran}, both in {both_ran}, neither in {none_ran}");
    if both_ran > 0 || one_ran == 0 {
        return Err(summary);
    }
    Ok(summary)
}

#[test]
#[ignore = "needs Spin and the trigger-cron plugin: run scripts/e2e-spin"]
fn the_app_under_spin_up() {
    let started = Instant::now();
    let mut checks = Checks::default();
    let mut outputs = Vec::new();

    let fake = LcwFake::start();
    fake.chunked_replies();
    serve_top_coins(&fake);
    let mut influx = Influx::own();
    // The repository's runtime config, copied so its store file lands in a scratch directory.
    let config_dir = scratch("one-host");
    let runtime_config = config_dir.join("runtime-config.toml");
    std::fs::copy(repo().join("runtime-config.toml"), &runtime_config).unwrap();
    let spin = SpinUp::start("spin-one", &runtime_config, &variables(&fake, &influx));
    println!(
        "spin up ready at {} after {:.1} s",
        spin.url,
        started.elapsed().as_secs_f64()
    );

    checks.check(
        "cron tick at second 0 lands its data in InfluxDB",
        cron_tick(&fake, &influx, &spin),
    );
    checks.check(
        "no request body went chunked (the fake refuses them)",
        match fake.seen().iter().find(|s| s.chunked) {
            None => Ok(format!("{} requests, all sized", fake.seen().len())),
            Some(s) => Err(format!("{} went chunked", s.path)),
        },
    );
    checks.check("/metrics", metrics(&fake, &spin, &mut outputs));
    checks.check(
        "/stats",
        json_route(
            &spin,
            "/stats",
            &[
                "operations",
                "cycles_by_outcome",
                "recent_cycles",
                "api_calls",
            ],
            &mut outputs,
        ),
    );
    checks.check(
        "/stats/cache",
        json_route(&spin, "/stats/cache", &["verdict"], &mut outputs),
    );
    checks.check(
        "/status",
        json_route(
            &spin,
            "/status",
            &["healthy", "lcw", "influx", "breaker", "spool_points"],
            &mut outputs,
        ),
    );
    checks.check(
        "admin routes refuse a wrong token",
        admin_refuses_wrong_token(&spin, &mut outputs),
    );
    checks.check(
        "breaker opens across ticks, then recovers",
        breaker_across_ticks(&fake, &spin),
    );
    checks.check(
        "InfluxDB down for 3 ticks: every point arrives after",
        influx_outage(&mut influx, &spin),
    );
    checks.check(
        "no secret in route outputs, logs or the store",
        no_secrets(&outputs, &spin, &config_dir.join(".spin/lcw-state.db")),
    );
    drop(spin);

    let redis = Redis::start();
    let redis_dir = scratch("redis-config");
    let redis_config = redis_dir.join("runtime-config.toml");
    std::fs::write(
        &redis_config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url
        ),
    )
    .unwrap();
    let hosts = [
        SpinUp::start("spin-a", &redis_config, &variables(&fake, &influx)),
        SpinUp::start("spin-b", &redis_config, &variables(&fake, &influx)),
    ];
    checks.check(
        "two hosts on one Redis: one cron tick a minute",
        one_cron_tick_a_minute(&fake, 2),
    );
    checks.check(
        "two hosts on one Redis: 50 racing POST /collect pairs, one tick each",
        racing_collects(&fake, [&hosts[0], &hosts[1]], 50),
    );
    drop(hosts);

    println!(
        "\n{} checks passed, {} failed, in {:.0} s",
        checks.passed,
        checks.failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(checks.failed.is_empty(), "failed: {:?}", checks.failed);
}

// --- the quick start: the embedded store --------------------------------------------------------

/// The coin rows of the SQLite file the collector wrote, as JSON objects (NULL columns left out).
fn sqlite_coin_rows(db: &Path) -> Result<Vec<serde_json::Map<String, Value>>, String> {
    let connection = support::sql::open(Some(db));
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let rows = support::sql::execute(&connection, "SELECT * FROM cryptocurrency_data", &[])
        .map_err(|e| e.to_string())?;
    Ok(rows
        .rows
        .iter()
        .map(|row| {
            rows.columns
                .iter()
                .zip(row)
                .filter_map(|(c, v)| {
                    let value = match v {
                        lcw_fetcher::host::SqlValue::Integer(i) => json!(i),
                        lcw_fetcher::host::SqlValue::Real(f) => json!(f),
                        lcw_fetcher::host::SqlValue::Text(t) => json!(t),
                        _ => return None,
                    };
                    Some((c.clone(), value))
                })
                .collect()
        })
        .collect())
}

/// Waits for the `n`th cycle in `/stats`, calling `meanwhile` between looks.
fn wait_for_cycles(spin: &SpinUp, n: usize, mut meanwhile: impl FnMut()) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(140);
    loop {
        let (_, body) = get(&spin.url, "/stats")?;
        if json_of(&body)?["recent_cycles"]
            .as_array()
            .is_some_and(|c| c.len() >= n)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no cycle {n} within 140 s; spin said:\n{}",
                spin.output()
            ));
        }
        meanwhile();
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn quick_start_rows(db: &Path) -> Result<String, String> {
    let rows = sqlite_coin_rows(db)?;
    let coins = top_coins();
    for coin in coins.iter().take(100) {
        let row = rows
            .iter()
            .find(|r| r["code"] == coin["code"])
            .ok_or_else(|| format!("no row for {}", coin["code"]))?;
        coin_matches(row, coin)?;
    }
    Ok(format!(
        "{} coin rows in {}, the top 100 equal to what LCW sent, bit for bit",
        rows.len(),
        db.display()
    ))
}

fn quick_start_routes(spin: &SpinUp) -> Result<String, String> {
    let (status, body) = get(&spin.url, "/api/v1/coins")?;
    let coins = json_of(&body)?;
    if status != 200 || coins["rows"][0]["code"] != "E2E000" {
        return Err(format!("/api/v1/coins: {status} {body:.300}"));
    }
    let (status, csv) = get(&spin.url, "/api/v1/coins/E2E000?from=-1h&format=csv")?;
    if status != 200 || !csv.starts_with("time_ms,first,last,min,max,avg,count,time") {
        return Err(format!("/api/v1/coins/E2E000 as CSV: {status} {csv:.300}"));
    }
    let (status, page) = get(&spin.url, "/")?;
    for needle in [
        "<tr data-code=\"E2E000\">",
        "id=\"price-line\" d=\"M",
        "id=\"sink\">sqlite<",
        "id=\"breaker\">closed<",
    ] {
        if status != 200 || !page.contains(needle) {
            return Err(format!("/ ({status}) lacks {needle}: {page:.500}"));
        }
    }
    let (_, status_body) = get(&spin.url, "/status")?;
    let sink = &json_of(&status_body)?["sink"];
    if sink["kind"] != "sqlite" || sink["healthy"] != true {
        return Err(format!("/status sink: {sink}"));
    }
    Ok(format!(
        "/api/v1/coins {} rows, CSV series, / with table, chart and health, /status sink {sink}",
        coins["count"]
    ))
}

impl SpinUp {
    /// Kills the whole `spin up` at once (SIGKILL to its process group), as a host that dies.
    fn kill_hard(mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `spin up` killed whole while a tick waits on a slow LCW answer, then started again on the
/// same state: how long until a tick succeeds again (the dead tick's lease must run out first).
/// Returns the figure and the restarted host.
fn killed_mid_tick(
    fake: &LcwFake,
    spin: SpinUp,
    runtime_config: &Path,
    variables: &[(&str, String)],
) -> (Result<String, String>, SpinUp) {
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let coins = top_coins();
    let slowing = std::sync::Arc::clone(&slow);
    fake.respond_with("/coins/list", move |seen| {
        let body = seen.json();
        let offset = body["offset"].as_u64().unwrap_or(0) as usize;
        let limit = body["limit"].as_u64().unwrap_or(10) as usize;
        let page: Vec<Value> = coins.iter().skip(offset).take(limit).cloned().collect();
        let reply = Reply::json(200, serde_json::to_vec(&page).unwrap());
        if slowing.load(std::sync::atomic::Ordering::SeqCst) {
            reply.delayed(Duration::from_secs(8))
        } else {
            reply
        }
    });
    fake.clear_seen();
    let waited = Instant::now();
    while fake.seen_on("/coins/list").is_empty() {
        if waited.elapsed() > Duration::from_secs(90) {
            return (Err("no tick started within 90 s".into()), spin);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    spin.kill_hard();
    let killed = Instant::now();
    let killed_ms = unix_secs(SystemTime::now()) as i64 * 1000;
    slow.store(false, std::sync::atomic::Ordering::SeqCst);
    let restarted = SpinUp::start("spin-restarted", runtime_config, variables);
    let restart_s = killed.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let success = get(&restarted.url, "/stats")
            .ok()
            .and_then(|(_, body)| json_of(&body).ok())
            .and_then(|stats| {
                stats["recent_cycles"].as_array().and_then(|cycles| {
                    cycles
                        .iter()
                        .find(|c| {
                            c["outcome"] == "success"
                                && c["started_at_ms"].as_i64().is_some_and(|t| t > killed_ms)
                        })
                        .cloned()
                })
            });
        if success.is_some() {
            let after = killed.elapsed().as_secs_f64();
            return (
                Ok(format!(
                    "the next successful tick came {after:.0} s after the kill (spin up restarted in {restart_s:.1} s)"
                )),
                restarted,
            );
        }
        if Instant::now() > deadline {
            let output = restarted.output();
            return (
                Err(format!(
                    "no successful tick within 240 s of the kill; spin said:\n{output}"
                )),
                restarted,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The manifest of hosts without a cron trigger (SpinKube, Akamai): the collector answers
/// `POST /collect` with a successful tick, and in a minute's wait no tick starts on its own.
fn http_only_manifest(
    fake: &LcwFake,
    runtime_config: &Path,
    variables: &[(&str, String)],
) -> Result<String, String> {
    let mut variables = variables.to_vec();
    variables.push(("admin_token", ADMIN_TOKEN.to_owned()));
    let spin = SpinUp::start_from(
        "spin.http.toml",
        "spin-http-only",
        runtime_config,
        &variables,
    );
    // A tick the previous host's stop cut short may hold the lease a little longer.
    let mut cycle = collect(&spin.url)?;
    for _ in 0..3 {
        if cycle["outcome"] != "skipped_overlap" {
            break;
        }
        std::thread::sleep(Duration::from_secs(30));
        cycle = collect(&spin.url)?;
    }
    if cycle["outcome"] != "success" {
        return Err(format!("POST /collect: {cycle}"));
    }
    fake.clear_seen();
    let waited = Instant::now();
    std::thread::sleep(Duration::from_secs(65));
    let starts = fake.seen_on("/coins/list").len();
    if starts > 0 {
        return Err(format!(
            "{starts} /coins/list calls in {:.0} s with no POST /collect: a cron trigger ran",
            waited.elapsed().as_secs_f64()
        ));
    }
    match get(&spin.url, "/status")? {
        (200, _) => Ok(format!(
            "POST /collect: {}; no LCW call in the {:.0} s after it; /status 200",
            cycle["outcome"],
            waited.elapsed().as_secs_f64()
        )),
        (status, body) => Err(format!("/status {status}: {body:.300}")),
    }
}

#[test]
#[ignore = "needs Spin and the trigger-cron plugin: run scripts/e2e-spin"]
fn the_quick_start_under_spin_up() {
    let started = Instant::now();
    let mut checks = Checks::default();
    let fake = LcwFake::start();
    serve_top_coins(&fake);
    let config_dir = scratch("quick-start");
    let runtime_config = config_dir.join("runtime-config.toml");
    std::fs::copy(repo().join("runtime-config.toml"), &runtime_config).unwrap();
    // The README's first command: only the key (and the fake's URL in place of LCW's).
    let variables = [
        ("lcw_api_key", API_KEY.to_owned()),
        ("lcw_base_url", fake.base_url.clone()),
    ];
    let spin = SpinUp::start("spin-quick-start", &runtime_config, &variables);
    checks.check(
        "quick start: spin up runs with influx_url empty in allowed_outbound_hosts",
        Ok(format!("ready at {}", spin.url)),
    );
    let db = config_dir.join(".spin/lcw-data.db");
    checks.check(
        "quick start: a cron tick lands its rows in the SQLite file",
        wait_for_cycles(&spin, 1, || {}).and_then(|()| quick_start_rows(&db)),
    );
    checks.check(
        "quick start: the query API and the page answer",
        quick_start_routes(&spin),
    );
    let mut answers = 0;
    let mut failures = Vec::new();
    let looped = wait_for_cycles(&spin, 2, || {
        for path in ["/api/v1/coins", "/api/v1/coins/E2E001?from=-1h", "/"] {
            match get(&spin.url, path) {
                Ok((200, body)) if !body.contains("locked") => answers += 1,
                other => failures.push(format!("{path}: {other:?}")),
            }
        }
    });
    checks.check(
        "quick start: the API queried in a loop while a cron tick writes",
        looped.and_then(|()| {
            let output = spin.output();
            if !failures.is_empty() || output.contains("database is locked") {
                Err(format!(
                    "{failures:?}; locked in the logs: {}",
                    output.contains("database is locked")
                ))
            } else {
                Ok(format!(
                    "{answers} answers, all 200, no \"database is locked\" in the logs"
                ))
            }
        }),
    );
    let (outcome, spin) = killed_mid_tick(&fake, spin, &runtime_config, &variables);
    checks.check(
        "killed whole mid-tick and restarted: a tick succeeds again",
        outcome,
    );
    drop(spin);
    fake.restore("/coins/list");
    serve_top_coins(&fake);
    checks.check(
        "spin.http.toml (HTTP-only hosts): POST /collect runs a tick, no cron fires",
        http_only_manifest(&fake, &runtime_config, &variables),
    );
    println!(
        "\n{} checks passed, {} failed, in {:.0} s",
        checks.passed,
        checks.failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(checks.failed.is_empty(), "failed: {:?}", checks.failed);
}
