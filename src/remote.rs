//! What both remote systems, LCW and InfluxDB, share: how a failure is classed, the
//! `Retry-After` header, the `User-Agent` we announce ourselves with, and how untrusted text
//! (error bodies, descriptions, names) and URLs are made safe to show.
//!
//! Lives below both clients so that neither has to borrow from the other, and below the
//! resilience rules that act on an [`ErrorClass`]. It must not know either system's endpoints,
//! bodies or status-code meanings beyond these shared words.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// `User-Agent` of every outbound call: the project and its version.
pub const USER_AGENT: &str = concat!("lcw-fetcher/", env!("CARGO_PKG_VERSION"));

/// How the resilience policies treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 5xx, connection failure, timeout: worth retrying, counts against the breaker.
    Transient,
    /// 429: retry after the advised delay; does not count against the breaker.
    RateLimited,
    /// 401/403: the key is wrong; retrying cannot help.
    Auth,
    /// Other 4xx: this request is wrong; retrying cannot help.
    Permanent,
    /// A 2xx whose body does not have the documented shape.
    Malformed,
    /// Not sent at all (breaker open, rate budget, deadline): says nothing about the API.
    NotSent,
}

/// The longest delay a `Retry-After` can ask for: a remote number never meets a `Duration` sum
/// uncapped (each caller applies its own, smaller limit on top).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3_600);

/// `Retry-After` as delta-seconds or as an HTTP-date (RFC 9110 §10.2.3), capped at
/// [`RETRY_AFTER_MAX`]. LCW documents none; proxies, gateways and InfluxDB send seconds.
///
/// A date is read against the answer's own `Date` header (the sender's clock, so no clock of
/// ours is needed and skew cancels out); a date without a `Date` header, a negative or garbled
/// value is ignored (the caller's own backoff applies). A date in the past means "now".
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "very long": capped, never an error.
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(RETRY_AFTER_MAX));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(sent_at(headers)?)
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_MAX),
    )
}

/// The sender's clock: an answer's `Date` header, if it reads as an HTTP date.
fn sent_at(headers: &http::HeaderMap) -> Option<std::time::SystemTime> {
    let sent = headers.get(http::header::DATE)?.to_str().ok()?;
    httpdate::parse_http_date(sent.trim()).ok()
}

/// [`sent_at`] as Unix milliseconds (whole seconds: an HTTP date reads 1970 to 9999 only).
pub fn date_ms(headers: &http::HeaderMap) -> Option<i64> {
    let since_epoch = sent_at(headers)?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// Untrusted text kept at most: a few hundred bytes say what went wrong; more is an attack or
/// an HTML page.
pub const TEXT_LIMIT: usize = 300;

/// Makes untrusted text (an error body, an LCW description, a name) safe for a log line, a
/// stored document or a route: control characters (newlines included, so nothing can forge a
/// log line) become spaces, runs of whitespace shrink to one, and the result is cut to
/// [`TEXT_LIMIT`] bytes on a character boundary, with `…` to say so.
pub fn sanitize(text: &str) -> String {
    sanitize_to(text, TEXT_LIMIT)
}

/// [`sanitize`] with another limit (in bytes, at least a few). The invocation's secrets are
/// redacted first ([`protect`]), so that cutting the text can never leave part of one.
pub fn sanitize_to(text: &str, limit: usize) -> String {
    let text = redact(text);
    let text = text.as_ref();
    let mut out = String::with_capacity(text.len().min(limit + 4));
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if out.len() + c.len_utf8() > limit {
            let end = out.trim_end().len();
            out.truncate(end);
            out.push('…');
            return out;
        }
        out.push(c);
    }
    let end = out.trim_end().len();
    out.truncate(end);
    out
}

/// Secrets shorter than this are not looked for: a text with every `a` or `42` of it replaced
/// would say nothing, and a secret that short protects nothing either.
pub const SECRET_MIN_LEN: usize = 4;

/// What replaces a secret in a text.
pub const REDACTED: &str = "***";

thread_local! {
    /// The forms of this invocation's secrets, longest first. Thread-local rather than passed
    /// along: every untrusted text already goes through [`sanitize`], and an invocation runs
    /// on one thread (a wasm instance has one; each native test has its own).
    static SECRET_FORMS: RefCell<Rc<[String]>> = RefCell::new(Rc::from(Vec::new()));
}

/// Makes `secrets` (the configured credentials, exactly as sent) unseen on this thread from
/// now on: [`sanitize`] and [`redact`] replace each of them by [`REDACTED`], in every form a
/// remote could echo one back — as sent, percent-encoded (either case of hex, `+` or `%20` for
/// a space) and JSON-escaped. The entry points call it once they have read the settings.
pub fn protect<S: AsRef<str>>(secrets: &[S]) {
    let mut forms: Vec<String> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| s.len() >= SECRET_MIN_LEN)
        .flat_map(encoded_forms)
        .collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    SECRET_FORMS.with(|current| *current.borrow_mut() = Rc::from(forms));
}

fn encoded_forms(secret: &str) -> Vec<String> {
    let percent = |upper: bool| {
        let mut out = String::with_capacity(secret.len() * 3);
        for byte in secret.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else if upper {
                out.push_str(&format!("%{byte:02X}"));
            } else {
                out.push_str(&format!("%{byte:02x}"));
            }
        }
        out
    };
    let json = serde_json::to_string(secret).unwrap_or_default();
    vec![
        secret.to_owned(),
        percent(true),
        percent(false),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or_default()
            .to_owned(),
    ]
}

/// `text` with every form of this invocation's secrets ([`protect`]) replaced by [`REDACTED`]:
/// for what leaves the app (a response, a stored document, a log line), whatever it holds.
pub fn redact(text: &str) -> Cow<'_, str> {
    redact_forms(text, |_| true)
}

/// [`redact`] for a JSON text: the forms a JSON string can hold only (a `"` or `\\` of a
/// secret is escaped inside one, so its raw form could only match across the structure).
pub fn redact_json(text: &str) -> Cow<'_, str> {
    redact_forms(text, |form| !form.contains(['"', '\\']))
}

fn redact_forms(text: &str, usable: impl Fn(&str) -> bool) -> Cow<'_, str> {
    SECRET_FORMS.with(|current| {
        let forms = Rc::clone(&current.borrow());
        let mut text = Cow::Borrowed(text);
        for form in forms.iter().filter(|f| !f.is_empty() && usable(f)) {
            if text.contains(form.as_str()) {
                text = Cow::Owned(text.replace(form.as_str(), REDACTED));
            }
        }
        text
    })
}

/// `text` with the userinfo of every URL in it (`scheme://user:password@host`) replaced by
/// `***@`, so a setting or an error that holds a URL never shows a credential.
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or whitespace; userinfo is before its
        // last `@`.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn sanitized_text_is_one_bounded_line() {
        assert_eq!(sanitize("  a\n\nb\r\tc  "), "a b c");
        let long = "é".repeat(1_000);
        let cut = sanitize(&long);
        assert!(cut.len() <= TEXT_LIMIT + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(sanitize_to("ab€", 4), "ab…", "never inside a character");
        assert_eq!(sanitize("\u{1b}[31mred"), "[31mred");
    }

    #[test]
    fn a_protected_secret_is_redacted_in_every_form() {
        protect(&["s3cret key/ü", "abc"]);
        for echoed in [
            "s3cret key/ü",
            "s3cret%20key%2F%C3%BC",
            "s3cret%20key%2f%c3%bc",
            "s3cret+key%2F%C3%BC",
        ] {
            assert_eq!(
                sanitize(&format!("bad key {echoed}!")),
                "bad key ***!",
                "{echoed}"
            );
        }
        assert_eq!(
            redact("abc is too short to look for"),
            "abc is too short to look for"
        );
        // Cut after the redaction: a secret at the limit leaves no prefix behind.
        let cut = sanitize_to(&format!("{}s3cret key/ü", "x".repeat(20)), 24);
        assert!(!cut.contains("s3c"), "{cut}");
        protect::<&str>(&[]);
        assert_eq!(redact("s3cret key/ü"), "s3cret key/ü");
    }

    #[test]
    fn userinfo_is_masked_in_any_text() {
        assert_eq!(
            mask_userinfo("bad `http://bob:pw@db:8086/x?q=1` and https://h/p@q"),
            "bad `http://***@db:8086/x?q=1` and https://h/p@q"
        );
        assert_eq!(mask_userinfo("http://u:p@a@b/"), "http://***@b/");
        assert_eq!(mask_userinfo("no url"), "no url");
    }
}
