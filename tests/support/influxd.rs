//! A real InfluxDB (Debian's `influxd` 1.x) on 127.0.0.1 for the round-trip tests.
//!
//! The test command (`scripts/test-all`) starts one server for the whole run and passes its URL in
//! `LCW_TEST_INFLUX_URL`; a plain `cargo test` starts one per test here instead (in a temporary
//! directory, killed on drop). Either way each test gets a database of its own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Influx {
    pub url: String,
    pub database: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Influx {
    /// A running server with a fresh, empty database.
    pub fn start() -> Self {
        match std::env::var("LCW_TEST_INFLUX_URL") {
            Ok(url) if !url.is_empty() => Self::with(url, None, None),
            _ => Self::own(),
        }
    }

    /// A server of this test's own, which it may stop and restart.
    pub fn own() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lcw-influxd-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = write_config(&dir);
        let (url, child) = spawn(&config);
        Self::with(url, Some(child), Some(dir))
    }

    /// Stops this test's own server (its data stays).
    pub fn stop(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("only an own server can be stopped");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts this test's own server again, same port, same data.
    pub fn restart(&mut self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only an own server can be restarted");
        let (url, child) = spawn(&dir.join("influxdb.conf"));
        assert_eq!(url, self.url);
        self.child = Some(child);
    }

    fn with(url: String, child: Option<Child>, dir: Option<PathBuf>) -> Self {
        let database = format!(
            "lcw_test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let influx = Self {
            url,
            database,
            child,
            dir,
        };
        influx.query_ok(&format!("CREATE DATABASE \"{}\"", influx.database));
        influx
    }

    /// Runs an InfluxQL statement in this test's database; returns the parsed JSON answer.
    pub fn query(&self, statement: &str) -> serde_json::Value {
        let response = ureq::post(&format!("{}/query", self.url))
            .query("db", &self.database)
            .query("epoch", "ms")
            .query("q", statement)
            .send_empty()
            .unwrap_or_else(|e| panic!("InfluxDB query `{statement}` failed: {e}"));
        serde_json::from_slice(&response.into_body().read_to_vec().unwrap()).unwrap()
    }

    fn query_ok(&self, statement: &str) {
        let answer = self.query(statement);
        assert!(
            answer["results"][0].get("error").is_none(),
            "`{statement}`: {answer}"
        );
    }

    /// Every row of `measurement` as a map column → value, ordered by time then `code`.
    pub fn rows(&self, measurement: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let answer = self.query(&format!("SELECT * FROM \"{measurement}\""));
        let Some(series) = answer["results"][0]["series"].as_array() else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for s in series {
            let columns: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            for values in s["values"].as_array().unwrap() {
                let row = columns
                    .iter()
                    .cloned()
                    .zip(values.as_array().unwrap().iter().cloned());
                rows.push(row.filter(|(_, v)| !v.is_null()).collect());
            }
        }
        rows
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        if self.dir.is_none() {
            let _ = ureq::post(&format!("{}/query", self.url))
                .query("q", format!("DROP DATABASE \"{}\"", self.database))
                .send_empty();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a configuration for a server on free loopback ports keeping its data in `dir`.
fn write_config(dir: &std::path::Path) -> PathBuf {
    let (http_port, rpc_port) = (free_port(), free_port());
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc_port}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [continuous_queries]\n  enabled = false\n",
        d = dir.display()
    );
    let config_path = dir.join("influxdb.conf");
    std::fs::write(&config_path, config).unwrap();
    config_path
}

/// Starts `influxd` with `config` and waits for `/ping`; returns its URL.
fn spawn(config: &std::path::Path) -> (String, Child) {
    let influxd = which("influxd").unwrap_or_else(|| {
        panic!("`influxd` not found: install Debian's `influxdb` package (scripts/test-all does it when run as root)")
    });
    let text = std::fs::read_to_string(config).unwrap();
    let http_port = text
        .split("[http]")
        .nth(1)
        .and_then(|http| http.split("127.0.0.1:").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("http port in the config");
    let mut child = Command::new(influxd)
        .arg("-config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start influxd");
    let url = format!("http://127.0.0.1:{http_port}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if ureq::get(&format!("{url}/ping")).call().is_ok() {
            return (url, child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("influxd did not answer /ping on {url} within 30 s");
}

/// The path of `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}
