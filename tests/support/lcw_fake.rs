//! A Live Coin Watch fake on 127.0.0.1: answers every endpoint from `tests/fixtures/lcw/`,
//! checks method and API key like the real API, records every request, and can be told to answer
//! an endpoint with another status, body, header or delay.
//!
//! It speaks HTTP/1.1 with both body framings: it reads sized and chunked request bodies, and can
//! answer chunked. By default it refuses a chunked request body with 411, as some servers and
//! proxies do: every body this app sends is small and known, so it must go with `Content-Length`
//! (under Spin a body without that header goes out chunked).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The endpoints a default tick calls.
pub const TICK_PATHS: [&str; 6] = [
    "/status",
    "/credits",
    "/coins/list",
    "/coins/map",
    "/overview",
    "/exchanges/list",
];

/// The API key the fake accepts.
pub const API_KEY: &str = "test-lcw-key-5f3a9c";

/// What the fake answers for one endpoint instead of its fixture.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            body: body.into(),
            ..Self::default()
        }
    }

    /// The documented error body for `status` (`error_<status>.json`).
    pub fn documented_error(status: u16) -> Self {
        Self::json(status, fixture(&format!("error_{status}.json")))
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as sent.
    pub url: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// When the request was read.
    pub at: std::time::SystemTime,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// Computes a reply from the request (e.g. a page of a long list by `offset`).
pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    overrides: HashMap<String, Reply>,
    handlers: HashMap<String, Handler>,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
    accept_chunked: bool,
    chunked_replies: bool,
    send_dates: bool,
}

pub struct LcwFake {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Path of the LCW samples (`tests/fixtures/lcw/`, inside the repository).
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lcw");
    assert!(dir.is_dir(), "LCW fixtures not found at {}", dir.display());
    dir
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// The fixture that answers `path`.
pub fn fixture_for(path: &str) -> Option<&'static str> {
    Some(match path {
        "/status" => "status.json",
        "/credits" => "credits.json",
        "/overview" => "overview.json",
        "/overview/history" => "overview_history.json",
        "/coins/single" => "coins_single.json",
        "/coins/single/history" => "coins_single_history.json",
        "/coins/contract" => "coins_contract.json",
        "/coins/list" => "coins_list.json",
        "/coins/map" => "coins_map.json",
        "/exchanges/single" => "exchanges_single.json",
        "/exchanges/list" => "exchanges_list.json",
        "/fiats/all" => "fiats_all.json",
        "/platforms/all" => "platforms_all.json",
        _ => return None,
    })
}

impl LcwFake {
    /// Listens on 127.0.0.1 (a free port); one thread per connection, so it never limits how
    /// many calls overlap.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the LCW fake on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || serve(stream, &shared));
                }
            })
        };
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers `path` with `reply` from now on.
    pub fn respond(&self, path: &str, reply: Reply) {
        self.shared
            .lock()
            .unwrap()
            .overrides
            .insert(path.to_owned(), reply);
    }

    /// Answers `path` with whatever `handler` makes of each request.
    pub fn respond_with(
        &self,
        path: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) {
        self.shared
            .lock()
            .unwrap()
            .handlers
            .insert(path.to_owned(), Arc::new(handler));
    }

    /// Answers `path` like the real API again.
    pub fn restore(&self, path: &str) {
        let mut shared = self.shared.lock().unwrap();
        shared.overrides.remove(path);
        shared.handlers.remove(path);
    }

    /// Accepts chunked request bodies from now on (by default they are refused with 411).
    pub fn accept_chunked(&self) {
        self.shared.lock().unwrap().accept_chunked = true;
    }

    /// Sends every other answer with `Transfer-Encoding: chunked`, so a client must read both
    /// framings.
    pub fn chunked_replies(&self) {
        self.shared.lock().unwrap().chunked_replies = true;
    }

    /// Dates every answer from now on (`Date`, the fake's real clock), as a real server does,
    /// unless a reply carries its own.
    pub fn send_dates(&self) {
        self.shared.lock().unwrap().send_dates = true;
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.shared.lock().unwrap().seen.clear();
    }

    /// The most requests the fake was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().unwrap().max_in_flight
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for LcwFake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.base_url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP/1.1 request (headers, then a sized or chunked body), answers it, closes.
fn serve(stream: TcpStream, shared: &Mutex<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let Some(seen) = read_request(&mut reader) else {
        return;
    };
    let (accept_chunked, chunked_reply) = {
        let shared = shared.lock().unwrap();
        let chunked_reply = shared.chunked_replies && shared.seen.len() % 2 == 1;
        (shared.accept_chunked, chunked_reply)
    };
    let reply = if seen.chunked && !accept_chunked {
        shared.lock().unwrap().seen.push(seen.clone());
        Reply::json(
            411,
            r#"{"error":{"code":411,"status":"Length Required","description":"A chunked request body is refused: send Content-Length."}}"#,
        )
    } else {
        answer(&seen, shared)
    };
    write_reply(stream, &reply, chunked_reply);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let (method, url) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(Seen {
        method: method.to_uppercase(),
        path: url.split('?').next().unwrap_or("").to_owned(),
        url,
        headers,
        body,
        chunked,
        at: std::time::SystemTime::now(),
    })
}

/// A chunked body: hex size lines, each followed by that many bytes and CRLF, until size 0.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line.trim_end().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

fn write_reply(mut stream: TcpStream, reply: &Reply, chunked: bool) {
    let reason = http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", reply.body.len())
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n",
        reply.status,
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if chunked {
        // Two chunks (when there is a body), so a reader must join them.
        let (first, second) = reply.body.split_at(reply.body.len() / 2);
        for chunk in [first, second].into_iter().filter(|c| !c.is_empty()) {
            let _ = write!(stream, "{:x}\r\n", chunk.len());
            let _ = stream.write_all(chunk);
            let _ = stream.write_all(b"\r\n");
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    } else {
        let _ = stream.write_all(&reply.body);
    }
    let _ = stream.flush();
}

fn answer(seen: &Seen, shared: &Mutex<Shared>) -> Reply {
    let (reply, handler) = {
        let mut shared = shared.lock().unwrap();
        let reply = shared.overrides.get(&seen.path).cloned();
        let handler = shared.handlers.get(&seen.path).cloned();
        shared.seen.push(seen.clone());
        shared.in_flight += 1;
        shared.max_in_flight = shared.max_in_flight.max(shared.in_flight);
        (reply, handler)
    };
    let mut reply = match (handler, reply) {
        (Some(handler), _) => handler(seen),
        (None, Some(reply)) => reply,
        (None, None) => like_the_real_api(seen),
    };
    let dated = reply
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("date"));
    if shared.lock().unwrap().send_dates && !dated {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        reply.headers.push(("Date".to_owned(), now));
    }
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    shared.lock().unwrap().in_flight -= 1;
    reply
}

fn like_the_real_api(seen: &Seen) -> Reply {
    let Some(name) = fixture_for(&seen.path) else {
        return Reply::json(
            404,
            r#"{"error":{"code":404,"status":"Not Found","description":"No such endpoint."}}"#,
        );
    };
    if seen.method != "POST" {
        return Reply::documented_error(405);
    }
    if seen.path != "/status" && seen.header("x-api-key") != Some(API_KEY) {
        return Reply::documented_error(401);
    }
    Reply::json(200, fixture(name))
}
