//! The CPU cost of builds of the wasm components under a real `spin up`, compared in one run: each
//! build serves `POST /collect` ticks (200 coins from the LCW fake into the embedded SQLite store)
//! and `GET /metrics`, and the Spin processes' CPU time (scheduler counters in /proc) and the wall
//! time of those requests are printed per build. The builds take turns (A B A B …), so that load
//! from elsewhere on the machine falls on each alike. `docs/PERFORMANCE.md` ("wasm component
//! sizes") shows a run.
//!
//! Ignored by `cargo test` (it needs Spin and built components). Usage:
//!   LCW_WASM_CPU_BUILDS="s=/path/with/wasm z=target/wasm32-wasip2/release" \
//!     cargo test --release --test wasm_cpu -- --ignored --nocapture
//! where each directory holds `lcw_api.wasm` and `lcw_collector.wasm`. Optional:
//! LCW_WASM_CPU_TICKS (default 30), LCW_WASM_CPU_SCRAPES (default 300), LCW_WASM_CPU_ROUNDS
//! (default 2). The app runs from a copy of spin.toml without its cron trigger, so only the
//! measured requests run code.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::LcwFake;
use support::lcw_fake::{API_KEY, Reply, fixture_json};

const ADMIN_TOKEN: &str = "wasm-cpu-admin-token";
const COINS: usize = 200;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spin_binary() -> PathBuf {
    std::env::var_os("LCW_E2E_SPIN")
        .map(PathBuf::from)
        .or_else(|| support::influxd::which("spin"))
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            let spin = Path::new(&home).join(".local/bin/spin");
            spin.exists().then_some(spin)
        })
        .expect("spin not found")
}

/// CPU seconds of every thread of every process in `group`, from the scheduler's nanosecond
/// counters (`/proc/PID/task/TID/schedstat`), finer than the 10 ms ticks of `/proc/PID/stat`.
fn group_cpu_seconds(group: u32) -> f64 {
    let mut nanos = 0u64;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces:
        // rest[0] is field 3 (state), so pgrp (field 5) is rest[2].
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<u32>().ok()) != Some(group) {
            continue;
        }
        for task in std::fs::read_dir(entry.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) {
                nanos += schedstat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    nanos as f64 / 1e9
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into()
}

fn call(request: Result<http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = request.expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

/// One `spin up` of a build, killed with its process group on drop.
struct Spin {
    child: Child,
    url: String,
}

impl Spin {
    fn start(label: &str, dir: &Path, fake: &LcwFake) -> Self {
        let scratch =
            std::env::temp_dir().join(format!("lcw-wasm-cpu-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let manifest = std::fs::read_to_string(repo().join("spin.toml")).unwrap();
        let manifest = manifest
            .replace(
                "[[trigger.cron]]\ncomponent = \"collector\"\ncron_expression = \"0 * * * * *\"\n",
                "",
            )
            .replace(
                "\"target/wasm32-wasip2/release/",
                &format!("\"{}/", dir.canonicalize().unwrap().display()),
            );
        assert!(!manifest.contains("trigger.cron"), "cron trigger left in");
        std::fs::write(scratch.join("spin.toml"), manifest).unwrap();
        std::fs::copy(
            repo().join("runtime-config.toml"),
            scratch.join("runtime-config.toml"),
        )
        .unwrap();
        let port = support::influxd::free_port();
        let mut command = Command::new(spin_binary());
        command
            .args(["up", "--from", "spin.toml", "--runtime-config-file"])
            .arg("runtime-config.toml")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .current_dir(&scratch)
            .stdout(std::fs::File::create(scratch.join("spin.stdout")).unwrap())
            .stderr(std::fs::File::create(scratch.join("spin.stderr")).unwrap())
            .stdin(Stdio::null());
        for (name, value) in [
            ("lcw_api_key", API_KEY.to_owned()),
            ("lcw_base_url", fake.base_url.clone()),
            ("admin_token", ADMIN_TOKEN.to_owned()),
            ("max_coins_per_fetch", COINS.to_string()),
            // Every tick fetches afresh and parses every answer.
            ("cache_ttl_coins_list_s", "1".to_owned()),
            ("cache_ttl_overview_s", "1".to_owned()),
            ("cache_ttl_exchanges_s", "1".to_owned()),
            ("requests_per_minute", "100000".to_owned()),
        ] {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start spin up");
        let spin = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(response) = agent()
                .get(&format!("{}/.well-known/spin/health", spin.url))
                .call()
                && response.status() == 200
            {
                return spin;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "spin up of {label} did not answer; see {}",
            scratch.display()
        );
    }

    fn collect(&self) {
        let (status, body) = call(
            agent()
                .post(&format!("{}/collect", self.url))
                .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                .send_empty(),
        );
        assert_eq!(status, 200, "POST /collect: {body:.300}");
    }

    fn metrics(&self) {
        let (status, body) = call(agent().get(&format!("{}/metrics", self.url)).call());
        assert_eq!(status, 200, "/metrics: {body:.300}");
        assert!(body.contains("lcw_"), "/metrics: {body:.300}");
    }

    /// CPU seconds and wall seconds of `n` calls of `what`, `pause` apart (not counted).
    fn measure(&self, n: usize, pause: Duration, what: impl Fn(&Self)) -> (f64, f64) {
        let group = self.child.id();
        let (mut cpu, mut wall) = (0.0, 0.0);
        for _ in 0..n {
            std::thread::sleep(pause);
            let before = group_cpu_seconds(group);
            let started = Instant::now();
            what(self);
            wall += started.elapsed().as_secs_f64();
            cpu += group_cpu_seconds(group) - before;
        }
        (cpu, wall)
    }
}

impl Drop for Spin {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn serve_top_coins(fake: &LcwFake) {
    let template = fixture_json("coins_list.json")[0].clone();
    let coins: Vec<Value> = (0..COINS)
        .map(|i| {
            let mut coin = template.clone();
            coin["code"] = json!(format!("CPU{i:03}"));
            coin["rank"] = json!(i + 1);
            if let Some(v) = coin["rate"].as_f64() {
                coin["rate"] = json!(v / (1.0 + i as f64 / 997.0));
            }
            coin
        })
        .collect();
    fake.respond_with("/coins/list", move |seen| {
        let body = seen.json();
        let offset = body["offset"].as_u64().unwrap_or(0) as usize;
        let limit = body["limit"].as_u64().unwrap_or(10) as usize;
        let page: Vec<Value> = coins.iter().skip(offset).take(limit).cloned().collect();
        Reply::json(200, serde_json::to_vec(&page).unwrap())
    });
}

#[test]
#[ignore = "needs Spin and built components: see the header"]
fn cpu_of_builds_under_spin_up() {
    let builds: Vec<(String, PathBuf)> = std::env::var("LCW_WASM_CPU_BUILDS")
        .expect("set LCW_WASM_CPU_BUILDS=\"label=dir label=dir\"")
        .split_whitespace()
        .map(|pair| {
            let (label, dir) = pair.split_once('=').expect("label=dir");
            (label.to_owned(), PathBuf::from(dir))
        })
        .collect();
    let ticks = env_number("LCW_WASM_CPU_TICKS", 30);
    let scrapes = env_number("LCW_WASM_CPU_SCRAPES", 300);
    let rounds = env_number("LCW_WASM_CPU_ROUNDS", 2);
    let fake = LcwFake::start();
    serve_top_coins(&fake);
    // label -> (tick cpu, tick wall, scrape cpu, scrape wall), summed over rounds.
    let mut totals = vec![(0.0, 0.0, 0.0, 0.0); builds.len()];
    for round in 1..=rounds {
        for (i, (label, dir)) in builds.iter().enumerate() {
            for file in ["lcw_api.wasm", "lcw_collector.wasm"] {
                let bytes = std::fs::metadata(dir.join(file))
                    .map(|m| m.len())
                    .unwrap_or(0);
                println!("round {round} {label}: {file} {bytes} bytes");
            }
            let spin = Spin::start(label, dir, &fake);
            // Warm-up: the first tick creates the tables and the state documents.
            spin.collect();
            spin.collect();
            spin.metrics();
            // Ticks over a second apart: every cached answer (1 s TTL) has expired, so each
            // tick fetches, parses and stores all of them.
            let (tick_cpu, tick_wall) =
                spin.measure(ticks, Duration::from_millis(1100), Spin::collect);
            let (scrape_cpu, scrape_wall) = spin.measure(scrapes, Duration::ZERO, Spin::metrics);
            println!(
                "round {round} {label}: {ticks} POST /collect {:.1} ms CPU, {:.1} ms wall each; \
                 {scrapes} GET /metrics {:.2} ms CPU, {:.2} ms wall each",
                1e3 * tick_cpu / ticks as f64,
                1e3 * tick_wall / ticks as f64,
                1e3 * scrape_cpu / scrapes as f64,
                1e3 * scrape_wall / scrapes as f64,
            );
            let t = &mut totals[i];
            t.0 += tick_cpu;
            t.1 += tick_wall;
            t.2 += scrape_cpu;
            t.3 += scrape_wall;
        }
    }
    println!("\n| build | POST /collect CPU | wall | GET /metrics CPU | wall |");
    println!("|---|---:|---:|---:|---:|");
    for ((label, _), t) in builds.iter().zip(&totals) {
        let n_ticks = (ticks * rounds) as f64;
        let n_scrapes = (scrapes * rounds) as f64;
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms |",
            1e3 * t.0 / n_ticks,
            1e3 * t.1 / n_ticks,
            1e3 * t.2 / n_scrapes,
            1e3 * t.3 / n_scrapes,
        );
    }
}
