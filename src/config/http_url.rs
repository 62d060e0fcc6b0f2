//! [`HttpUrl`]: an `http://` or `https://` URL with a host and no query or fragment, as the
//! `lcw_base_url` and `influx_url` settings hold one, and the request URLs made from it.
//!
//! Owns reading such a URL (with the reason when it is not one), joining an endpoint's path and
//! query onto it, and showing a URL without its userinfo. It is read with `http::Uri`, which the
//! requests need anyway: the `url` crate with its IDNA code cost the collector component 43 KB
//! of its 1.2 MB budget (docs/PERFORMANCE.md). Like `url` with the IDNA stub before it, it takes
//! ASCII hosts only (a Unicode host is written in its `xn--` form). It must not show a
//! credential: its `Debug` masks the userinfo.

use std::fmt;

/// An absolute `http://` or `https://` URL with a host, no query and no fragment. Its text
/// always has a path: `https://h` reads as `https://h/`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `scheme://authority/path`, the scheme in lower case.
    text: String,
    /// Where the path starts in `text`.
    path_at: usize,
}

/// Why a value is not an [`HttpUrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// It does not parse as a URL; the reason.
    NotAUrl(String),
    /// Another scheme, or no host.
    NotHttp,
    /// It has a query or a fragment, which an endpoint's own would clash with.
    QueryOrFragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAUrl(reason) => write!(f, "is not a URL ({reason})"),
            Self::NotHttp => f.write_str("must be an http:// or https:// URL with a host"),
            Self::QueryOrFragment => f.write_str("must not have a query or fragment"),
        }
    }
}

impl std::error::Error for UrlError {}

impl HttpUrl {
    pub fn parse(value: &str) -> Result<Self, UrlError> {
        let uri: http::Uri = value
            .parse()
            .map_err(|e: http::uri::InvalidUri| UrlError::NotAUrl(e.to_string()))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let Some(authority) = uri.authority() else {
            return Err(UrlError::NotHttp);
        };
        if !matches!(scheme.as_str(), "http" | "https") || authority.host().is_empty() {
            return Err(UrlError::NotHttp);
        }
        // `http::Uri` takes any digits for a port; a request could not be made to 99999.
        let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let port = host_and_port.rsplit_once(':').map(|(_, port)| port);
        if port.is_some_and(|p| !p.contains(']') && p.parse::<u16>().is_err()) {
            return Err(UrlError::NotAUrl("invalid port number".into()));
        }
        // `http::Uri` drops a fragment without a word.
        if uri.query().is_some() || value.contains('#') {
            return Err(UrlError::QueryOrFragment);
        }
        let origin = format!("{scheme}://{authority}");
        Ok(Self {
            path_at: origin.len(),
            text: origin + uri.path(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its path, `/` at least.
    pub fn path(&self) -> &str {
        &self.text[self.path_at..]
    }

    /// This URL with `path` after its own path (a proxy's prefix is kept: `http://p/lcw/` and
    /// `/coins/list` make `http://p/lcw/coins/list`).
    pub fn join(&self, path: &str) -> String {
        let prefix = self.path().trim_end_matches('/');
        format!("{}{prefix}{path}", &self.text[..self.path_at])
    }

    /// [`join`](Self::join) with a query of `pairs`, form-encoded.
    pub fn join_with_query(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}?{query}", self.join(path))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&without_userinfo(&self.text))
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({self})")
    }
}

/// `value` as a message may show it: a URL's `user:password@` becomes `***@`, and a value that
/// looks like a URL with userinfo but does not parse is not shown at all.
pub fn without_userinfo(value: &str) -> String {
    match value.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) if authority.as_str().contains('@') => {
                let host = authority.as_str().rsplit('@').next().unwrap_or_default();
                let rest = uri.path_and_query().map_or("/", |p| p.as_str());
                format!("{scheme}://***@{host}{rest}")
            }
            _ => value.to_owned(),
        },
        Err(_) if value.contains("://") && value.contains('@') => "***".to_owned(),
        Err(_) => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_url_reads_with_a_path() {
        let url = HttpUrl::parse("https://api.livecoinwatch.com").unwrap();
        assert_eq!(url.as_str(), "https://api.livecoinwatch.com/");
        assert_eq!(url.path(), "/");
        let url = HttpUrl::parse("HTTP://127.0.0.1:9000/lcw/").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/lcw/");
        assert!(HttpUrl::parse("http://[::1]:8086").is_ok());
    }

    #[test]
    fn what_is_not_an_http_url_says_why() {
        let reason = |v: &str| HttpUrl::parse(v).unwrap_err().to_string();
        assert_eq!(
            reason("ftp://x"),
            "must be an http:// or https:// URL with a host"
        );
        assert_eq!(
            reason("api.livecoinwatch.com"),
            "must be an http:// or https:// URL with a host"
        );
        assert_eq!(
            reason("http://h:99999/"),
            "is not a URL (invalid port number)"
        );
        assert!(reason("http://a b/").starts_with("is not a URL ("));
        assert!(reason("http://häst.example/").starts_with("is not a URL ("));
        assert_eq!(reason("http://h/?x=1"), "must not have a query or fragment");
        assert_eq!(reason("http://h/#top"), "must not have a query or fragment");
    }

    #[test]
    fn paths_and_queries_join_after_a_prefix() {
        let url = HttpUrl::parse("http://p/lcw/").unwrap();
        assert_eq!(url.join("/coins/list"), "http://p/lcw/coins/list");
        let url = HttpUrl::parse("http://db:8086").unwrap();
        assert_eq!(
            url.join_with_query("/write", &[("db", "a b&c"), ("precision", "ms")]),
            "http://db:8086/write?db=a+b%26c&precision=ms"
        );
    }

    #[test]
    fn userinfo_is_never_shown() {
        let url = HttpUrl::parse("http://bob:hunter2@db:8086/x").unwrap();
        assert_eq!(url.to_string(), "http://***@db:8086/x");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(
            without_userinfo("http://bob:hunter2@db:8086/?x=1"),
            "http://***@db:8086/?x=1"
        );
        assert_eq!(without_userinfo("http://eve:pw2@ bad host/"), "***");
        assert_eq!(without_userinfo("plain"), "plain");
    }
}
