//! The write APIs: v1 `/write`, v2 `/api/v2/write`, v3 `/api/v3/write_lp`.
//!
//! Splits encoded lines into batches of `influx_batch_size`, gzips each body when enabled, sends
//! it with the API's authentication and reports what landed and what did not. Tokens and
//! passwords go only into the `Authorization` header: never into a URL, an error or a log.

use std::fmt;
use std::io::Write as _;

use base64::Engine as _;
use url::Url;

use crate::config::{InfluxApi, InfluxSettings};
use crate::host::{HttpClient, Timeouts, TransportError};

/// A batch that InfluxDB did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfluxError {
    /// No response: connection failure or timeout.
    Transport(TransportError),
    /// A non-2xx answer; `message` is the server's own error text.
    Status { status: u16, message: String },
    /// The request could not be built or compressed.
    Request(String),
}

impl fmt::Display for InfluxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(error) => write!(f, "InfluxDB write: {error}"),
            Self::Status { status, message } => {
                write!(f, "InfluxDB write: HTTP {status}: {message}")
            }
            Self::Request(detail) => write!(f, "InfluxDB write: cannot build request: {detail}"),
        }
    }
}

impl std::error::Error for InfluxError {}

/// What a call to [`write_lines`] achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub lines_written: usize,
    pub lines_failed: usize,
    pub batches_written: usize,
    /// One entry per failed batch, in order.
    pub errors: Vec<InfluxError>,
    /// Bytes sent on the wire (after compression), for cost accounting.
    pub bytes_sent: usize,
}

/// Writes newline-terminated line protocol in batches of `settings.batch_size` lines.
/// A failed batch does not stop the others: each is independent.
pub async fn write_lines<H: HttpClient>(
    http: &H,
    settings: &InfluxSettings,
    lines: &str,
    timeouts: Timeouts,
) -> WriteReport {
    let mut report = WriteReport::default();
    let url = write_url(settings);
    for batch in batches(lines, settings.batch_size as usize) {
        let count = batch.bytes().filter(|&b| b == b'\n').count();
        let result = match build_request(settings, &url, batch) {
            Ok(request) => {
                report.bytes_sent += request.body().len();
                send(http, request, timeouts).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                report.lines_written += count;
                report.batches_written += 1;
            }
            Err(error) => {
                report.lines_failed += count;
                report.errors.push(error);
            }
        }
    }
    report
}

async fn send<H: HttpClient>(
    http: &H,
    request: http::Request<Vec<u8>>,
    timeouts: Timeouts,
) -> Result<(), InfluxError> {
    let response = http
        .send(request, timeouts)
        .await
        .map_err(InfluxError::Transport)?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(InfluxError::Status {
            status,
            message: server_message(response.body()),
        })
    }
}

/// Slices `lines` into runs of at most `size` whole lines, without copying.
fn batches(lines: &str, size: usize) -> impl Iterator<Item = &str> {
    let size = size.max(1);
    let mut rest = lines;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .match_indices('\n')
            .nth(size - 1)
            .map_or(rest.len(), |(i, _)| i + 1);
        let (batch, tail) = rest.split_at(end);
        rest = tail;
        Some(batch)
    })
}

/// The write endpoint with its query string; holds no credential.
pub fn write_url(settings: &InfluxSettings) -> Url {
    let mut url = settings.url.clone();
    let prefix = settings.url.path().trim_end_matches('/').to_owned();
    let (path, query): (&str, Vec<(&str, &str)>) = match settings.api {
        InfluxApi::V1 => {
            let mut q = vec![("db", settings.database.as_str()), ("precision", "ms")];
            if !settings.retention_policy.is_empty() {
                q.push(("rp", settings.retention_policy.as_str()));
            }
            ("/write", q)
        }
        InfluxApi::V2 => (
            "/api/v2/write",
            vec![
                ("org", settings.org.as_str()),
                ("bucket", settings.bucket.as_str()),
                ("precision", "ms"),
            ],
        ),
        InfluxApi::V3 => (
            "/api/v3/write_lp",
            vec![
                ("db", settings.database.as_str()),
                ("precision", "millisecond"),
            ],
        ),
    };
    url.set_path(&format!("{prefix}{path}"));
    url.query_pairs_mut().clear().extend_pairs(query);
    url
}

fn build_request(
    settings: &InfluxSettings,
    url: &Url,
    batch: &str,
) -> Result<http::Request<Vec<u8>>, InfluxError> {
    let mut builder = http::Request::post(url.as_str())
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::USER_AGENT, crate::lcw::USER_AGENT);
    if let Some(value) = authorization(settings) {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    let body = if settings.gzip {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
        gzip(batch.as_bytes()).map_err(|e| InfluxError::Request(format!("gzip: {e}")))?
    } else {
        batch.as_bytes().to_vec()
    };
    builder.body(body).map_err(|_| {
        InfluxError::Request(
            "invalid URL or header (check influx_url and the credential's characters)".into(),
        )
    })
}

fn authorization(settings: &InfluxSettings) -> Option<String> {
    if !settings.token.is_empty() {
        return Some(format!("Token {}", settings.token.expose()));
    }
    if settings.api == InfluxApi::V1 && !settings.username.is_empty() {
        let pair = format!("{}:{}", settings.username, settings.password.expose());
        return Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ));
    }
    None
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    // Level 6: most of level 9's ratio on repetitive line protocol at a fraction of the CPU.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(6),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// InfluxDB's error text: `error` (v1), `message` (v2), else the start of the body.
fn server_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for key in ["error", "message"] {
            if let Some(serde_json::Value::String(text)) = map.get(key) {
                return text.clone();
            }
        }
    }
    String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn settings(pairs: &[(&str, &str)]) -> InfluxSettings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Settings::from_lookup(|name| {
            if name == "lcw_api_key" {
                return Some("k".into());
            }
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
        .influx
    }

    #[test]
    fn batches_split_on_whole_lines() {
        let text = "a 1\nb 2\nc 3\nd 4\ne 5\n";
        assert_eq!(
            batches(text, 2).collect::<Vec<_>>(),
            ["a 1\nb 2\n", "c 3\nd 4\n", "e 5\n"]
        );
        assert_eq!(batches(text, 10).collect::<Vec<_>>(), [text]);
        assert_eq!(batches("", 10).count(), 0);
    }

    #[test]
    fn urls_per_api() {
        let v2 = settings(&[("influx_url", "http://db:8086"), ("influx_org", "my org")]);
        assert_eq!(
            write_url(&v2).as_str(),
            "http://db:8086/api/v2/write?org=my+org&bucket=cryptocurrency_data&precision=ms"
        );
        let v1 = settings(&[("influx_api", "v1"), ("influx_retention_policy", "week")]);
        assert_eq!(
            write_url(&v1).as_str(),
            "http://127.0.0.1:8086/write?db=cryptocurrency_data&precision=ms&rp=week"
        );
        let v3 = settings(&[("influx_api", "v3"), ("influx_url", "https://h/prefix/")]);
        assert_eq!(
            write_url(&v3).as_str(),
            "https://h/prefix/api/v3/write_lp?db=cryptocurrency_data&precision=millisecond"
        );
    }

    #[test]
    fn credentials_go_only_into_the_authorization_header() {
        let v2 = settings(&[("influx_token", "tok-1")]);
        assert_eq!(authorization(&v2).as_deref(), Some("Token tok-1"));
        assert!(!write_url(&v2).as_str().contains("tok-1"));
        let v1 = settings(&[
            ("influx_api", "v1"),
            ("influx_username", "bob"),
            ("influx_password", "pw"),
        ]);
        assert_eq!(authorization(&v1).as_deref(), Some("Basic Ym9iOnB3"));
        assert_eq!(authorization(&settings(&[])), None);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = "cryptocurrency_data,code=BTC rate=1 1\n".repeat(100);
        let packed = gzip(data.as_bytes()).unwrap();
        assert!(packed.len() < data.len() / 10);
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, data);
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(br#"{"error":"database not found: \"x\""}"#),
            "database not found: \"x\""
        );
        assert_eq!(
            server_message(br#"{"code":"invalid","message":"bad line"}"#),
            "bad line"
        );
        assert_eq!(server_message(b"plain\ntext"), "plaintext");
    }
}
