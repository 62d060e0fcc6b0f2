//! The write APIs on the wire: v1 `/write`, v2 `/api/v2/write`, v3 `/api/v3/write_lp`, and the
//! health endpoints.
//!
//! Sends one batch (gzip-compressed when enabled) with the API's authentication and classifies
//! the answer; what to do about it is delivery's job. Tokens and passwords go only into the
//! `Authorization` header: never into a URL, an error or a log.

use base64::Engine as _;

use crate::config::{InfluxApi, InfluxSettings};
use crate::host::{HttpClient, Timeouts};
use crate::remote::{mask_userinfo, sanitize};
use crate::sink::line_protocol::gzip;
use crate::sink::{BatchOutcome, Sent};

/// Sends one batch of newline-terminated lines (the body, when not compressed).
pub async fn send_batch<H: HttpClient>(
    http: &H,
    settings: &InfluxSettings,
    lines: String,
    timeouts: Timeouts,
) -> (BatchOutcome, Sent) {
    let (request, sent) = match build_request(settings, lines) {
        Ok(built) => built,
        Err(detail) => return (BatchOutcome::Transient { detail }, Sent::default()),
    };
    let outcome = match http.send(request, timeouts).await {
        Err(error) => BatchOutcome::Transient {
            detail: sanitize(&mask_userinfo(&error.to_string())),
        },
        Ok(response) => classify(
            response.status().as_u16(),
            response.headers(),
            response.body(),
        ),
    };
    (outcome, sent)
}

/// Maps a status to what it means for the batch.
pub fn classify(status: u16, headers: &http::HeaderMap, body: &[u8]) -> BatchOutcome {
    let message = || server_message(body);
    match status {
        200..=299 => BatchOutcome::Written,
        413 => BatchOutcome::TooLarge,
        401 | 403 => BatchOutcome::Unauthorized {
            status,
            message: message(),
        },
        404 => BatchOutcome::NotFound { message: message() },
        429 | 503 => BatchOutcome::Throttled {
            status,
            retry_after: crate::remote::retry_after(headers),
            message: message(),
        },
        400..=499 => {
            let message = message();
            if let Some(dropped) = retention_dropped(&message) {
                BatchOutcome::Dropped { dropped, message }
            } else if names_a_setting(&message) {
                BatchOutcome::Misconfigured { status, message }
            } else {
                BatchOutcome::Rejected { status, message }
            }
        }
        _ => BatchOutcome::Transient {
            detail: format!("HTTP {status}: {}", message()),
        },
    }
}

/// `N` of InfluxDB 1.x's `partial write: points beyond retention policy dropped=N`.
fn retention_dropped(message: &str) -> Option<u64> {
    if !message.contains("beyond retention policy") {
        return None;
    }
    let after = &message[message.rfind("dropped=")? + "dropped=".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// True when a refusal's message is about where or as whom we write, not about a line: the
/// answers InfluxDB 1.x, 2.x and 3 give for a missing organisation, bucket or database, or a
/// credential that does not allow the write.
fn names_a_setting(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    if m.contains("partial write") || m.contains("unable to parse") || m.contains("conflict") {
        return false;
    }
    [
        "orgid or org",
        "organization",
        "bucket",
        "database not found",
        "db not found",
        "not found",
        "unauthorized",
        "unauthorised",
        "authorization",
        "authentication",
        "permission",
        "forbidden",
        "token",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// `CREATE DATABASE` on v1, as Telegraf does when the database is missing. The name is an
/// InfluxQL identifier in double quotes (a quote or backslash in it escaped).
pub async fn create_database<H: HttpClient>(
    http: &H,
    settings: &InfluxSettings,
    timeouts: Timeouts,
) -> Result<(), String> {
    let name = settings.database.replace('\\', "\\\\").replace('"', "\\\"");
    let statement = format!("CREATE DATABASE \"{name}\"");
    let url = settings.url.join_with_query("/query", &[("q", &statement)]);
    // Sized, like every body this app sends (an empty POST too).
    let builder = http::Request::post(url.as_str()).header(http::header::CONTENT_LENGTH, 0);
    let response = bodiless(http, settings, builder, timeouts).await?;
    let status = response.status().as_u16();
    let message = server_message(response.body());
    // 1.x answers 200 with `{"results":[{"error":…}]}` when the statement itself failed.
    let failed = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|v| v["results"][0]["error"].as_str().map(sanitize));
    match failed {
        None if (200..300).contains(&status) => Ok(()),
        Some(error) => Err(format!("CREATE DATABASE: {error}")),
        None => Err(format!("CREATE DATABASE: HTTP {status}: {message}")),
    }
}

/// The write endpoint with its query string; holds no credential.
pub fn write_url(settings: &InfluxSettings) -> String {
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
    settings.url.join_with_query(path, &query)
}

/// The health endpoint: `/health` for v2, `/ping` for v1 and v3.
pub fn health_url(settings: &InfluxSettings) -> String {
    settings.url.join(if settings.api == InfluxApi::V2 {
        "/health"
    } else {
        "/ping"
    })
}

/// Asks the server whether it is up: Ok, or what is wrong.
pub async fn health<H: HttpClient>(
    http: &H,
    settings: &InfluxSettings,
    timeouts: Timeouts,
) -> Result<(), String> {
    let builder = http::Request::get(health_url(settings).as_str());
    let response = bodiless(http, settings, builder, timeouts).await?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status}: {}",
            server_message(response.body())
        ))
    }
}

/// Sends a request without a body, with the user agent and the credential; a failure as text
/// with no credential or URL userinfo in it.
async fn bodiless<H: HttpClient>(
    http: &H,
    settings: &InfluxSettings,
    mut builder: http::request::Builder,
    timeouts: Timeouts,
) -> Result<crate::host::HttpResponse, String> {
    builder = builder.header(http::header::USER_AGENT, crate::remote::USER_AGENT);
    if let Some(value) = authorization(settings) {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    let request = builder
        .body(Vec::new())
        .map_err(|_| "invalid influx_url".to_owned())?;
    http.send(request, timeouts)
        .await
        .map_err(|e| sanitize(&mask_userinfo(&e.to_string())))
}

fn build_request(
    settings: &InfluxSettings,
    lines: String,
) -> Result<(http::Request<Vec<u8>>, Sent), String> {
    let raw_bytes = lines.len();
    let mut builder = http::Request::post(write_url(settings).as_str())
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, crate::remote::USER_AGENT);
    if let Some(value) = authorization(settings) {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    let body = if settings.gzip {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
        gzip(lines.as_bytes()).map_err(|e| format!("gzip: {e}"))?
    } else {
        lines.into_bytes()
    };
    let sent = Sent {
        raw_bytes,
        wire_bytes: body.len(),
    };
    // Sized, never chunked: Spin sends a body without this header chunked, which some servers
    // and proxies refuse (411).
    let request = builder
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .map_err(|_| {
            "cannot build the request: check influx_url and the credential's characters".to_owned()
        })?;
    Ok((request, sent))
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

/// InfluxDB's error text: `error` (v1), `message` (v2), `error` + the first `data` entry (v3),
/// else the start of the body.
fn server_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        let first_line_error = map
            .get("data")
            .and_then(|d| d.as_array())
            .and_then(|d| d.first())
            .and_then(|d| d.get("error_message"))
            .and_then(|m| m.as_str());
        for key in ["error", "message"] {
            if let Some(serde_json::Value::String(text)) = map.get(key) {
                // Untrusted: bounded, one line, before it reaches a log, a record or a route.
                return sanitize(&match first_line_error {
                    Some(detail) => format!("{text}: {detail}"),
                    None => text.clone(),
                });
            }
        }
    }
    let head = &body[..body.len().min(4 * crate::remote::TEXT_LIMIT)];
    let text = sanitize(&String::from_utf8_lossy(head));
    if text.is_empty() {
        "no message".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Settings;

    fn settings(pairs: &[(&str, &str)]) -> InfluxSettings {
        Settings::from_pairs(
            &[
                &[
                    ("lcw_api_key", "k"),
                    ("influx_org", "o"),
                    ("influx_token", "t"),
                ],
                pairs,
            ]
            .concat(),
        )
        .unwrap()
        .influx
    }

    #[test]
    fn urls_per_api() {
        let v2 = settings(&[("influx_url", "http://db:8086"), ("influx_org", "my org")]);
        assert_eq!(
            write_url(&v2).as_str(),
            "http://db:8086/api/v2/write?org=my+org&bucket=cryptocurrency_data&precision=ms"
        );
        assert_eq!(health_url(&v2).as_str(), "http://db:8086/health");
        let v1 = settings(&[
            ("influx_api", "v1"),
            ("influx_url", "http://127.0.0.1:8086"),
            ("influx_retention_policy", "week"),
        ]);
        assert_eq!(
            write_url(&v1).as_str(),
            "http://127.0.0.1:8086/write?db=cryptocurrency_data&precision=ms&rp=week"
        );
        assert_eq!(health_url(&v1).as_str(), "http://127.0.0.1:8086/ping");
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
            ("influx_token", ""),
        ]);
        assert_eq!(authorization(&v1).as_deref(), Some("Basic Ym9iOnB3"));
        assert_eq!(
            authorization(&settings(&[("influx_api", "v1"), ("influx_token", "")])),
            None
        );
    }

    #[test]
    fn statuses_are_classified() {
        let none = http::HeaderMap::new();
        assert_eq!(classify(204, &none, b""), BatchOutcome::Written);
        assert_eq!(classify(413, &none, b""), BatchOutcome::TooLarge);
        assert!(matches!(
            classify(400, &none, b""),
            BatchOutcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(422, &none, b""),
            BatchOutcome::Rejected { status: 422, .. }
        ));
        assert!(matches!(
            classify(401, &none, b""),
            BatchOutcome::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(403, &none, b""),
            BatchOutcome::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(404, &none, b""),
            BatchOutcome::NotFound { .. }
        ));
        assert!(matches!(
            classify(
                400,
                &none,
                br#"{"code":"invalid","message":"Please provide either orgID or org"}"#
            ),
            BatchOutcome::Misconfigured { status: 400, .. }
        ));
        assert_eq!(
            classify(
                400,
                &none,
                br#"{"error":"partial write: points beyond retention policy dropped=12"}"#
            ),
            BatchOutcome::Dropped {
                dropped: 12,
                message: "partial write: points beyond retention policy dropped=12".into()
            }
        );
        assert!(matches!(
            classify(400, &none, br#"{"error":"partial write: field type conflict: input field \"rate\" on measurement \"m\" is type integer, already exists as type float dropped=1"}"#),
            BatchOutcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(500, &none, b""),
            BatchOutcome::Transient { .. }
        ));
        assert!(matches!(
            classify(502, &none, b""),
            BatchOutcome::Transient { .. }
        ));
        let mut later = http::HeaderMap::new();
        later.insert(http::header::RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(
            classify(503, &later, b"{\"message\":\"busy\"}"),
            BatchOutcome::Throttled {
                status: 503,
                retry_after: Some(Duration::from_secs(30)),
                message: "busy".into()
            }
        );
        assert!(matches!(
            classify(429, &none, b""),
            BatchOutcome::Throttled {
                status: 429,
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(br#"{"error":"database not found: \"x\""}"#),
            "database not found: \"x\""
        );
        assert_eq!(
            server_message(br#"{"code":"invalid","message":"bad line","line":2}"#),
            "bad line"
        );
        assert_eq!(
            server_message(br#"{"error":"partial write of line protocol occurred","data":[{"original_line":"x","line_number":2,"error_message":"No fields were provided"}]}"#),
            "partial write of line protocol occurred: No fields were provided"
        );
        assert_eq!(server_message(b"plain\ntext"), "plain text");
    }
}
