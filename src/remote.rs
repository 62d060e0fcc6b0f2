//! What both remote systems, LCW and InfluxDB, share: how a failure is classed, the
//! `Retry-After` header, and the `User-Agent` we announce ourselves with.
//!
//! Lives below both clients so that neither has to borrow from the other, and below the
//! resilience rules that act on an [`ErrorClass`]. It must not know either system's endpoints,
//! bodies or status-code meanings beyond these shared words.

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

/// `Retry-After` in delta-seconds (LCW documents none; proxies, gateways and InfluxDB send
/// seconds).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
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
}
