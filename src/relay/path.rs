//! Joining a client's path to a region's base URL so that the result stays under the
//! base. The base path is the operator's (`https://relay/openai/v1`): a client path with
//! dot segments (`/v1/../../internal`, also percent-encoded as `%2e%2e`) or encoded
//! separators would otherwise reach other paths of the relay, with the operator's key in
//! managed mode. Such paths get a 400; the joined URL is checked as well.

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::paths::is_safe_path;

fn bad_path() -> ApiError {
    ApiError::InvalidRequest {
        message: "the request path may not contain dot segments or encoded separators".into(),
        param: None,
        code: "invalid_path",
    }
}

/// A region's base URL and its path, parsed once (every relay call parsed the base again
/// to learn its path: a URL parse per call on the miss path), and the URLs of the
/// cacheable endpoints, joined once: parsing the joined URL (with IDNA processing of the
/// host) was 3.4% of a miss's samples on the request worker (bench/RESULTS.md).
#[derive(Debug)]
pub struct RelayBase {
    url: String,
    path: String,
    endpoints: [Option<reqwest::Url>; Endpoint::ALL.len()],
}

impl RelayBase {
    pub fn new(base: &str) -> Result<Self, ApiError> {
        let url = base.trim_end_matches('/').to_owned();
        let path = reqwest::Url::parse(&url)
            .map_err(|_| ApiError::Internal("relay base URL does not parse".into()))?
            .path()
            .trim_end_matches('/')
            .to_owned();
        let mut base = Self {
            url,
            path,
            endpoints: Default::default(),
        };
        base.endpoints = Endpoint::ALL.map(|e| base.parse_joined(e.relay_suffix()).ok());
        Ok(base)
    }

    /// The base URL as configured, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `self` + `suffix`, refused unless it stays under the base's path.
    pub fn join(&self, suffix: &str) -> Result<reqwest::Url, ApiError> {
        let known = Endpoint::ALL
            .iter()
            .position(|e| e.relay_suffix() == suffix)
            .and_then(|i| self.endpoints[i].as_ref());
        match known {
            Some(url) => Ok(url.clone()),
            None => self.parse_joined(suffix),
        }
    }

    fn parse_joined(&self, suffix: &str) -> Result<reqwest::Url, ApiError> {
        let path = suffix.split_once('?').map_or(suffix, |(p, _)| p);
        if !is_safe_path(path) {
            return Err(bad_path());
        }
        let url = reqwest::Url::parse(&format!("{}{suffix}", self.url)).map_err(|_| bad_path())?;
        let inside = url.path() == self.path
            || url
                .path()
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if inside { Ok(url) } else { Err(bad_path()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_url(base: &str, suffix: &str) -> Result<reqwest::Url, ApiError> {
        RelayBase::new(base)?.join(suffix)
    }

    #[test]
    fn paths_stay_under_the_base() {
        let base = "http://relay/openai/v1";
        assert_eq!(
            relay_url(base, "/chat/completions").unwrap().as_str(),
            "http://relay/openai/v1/chat/completions"
        );
        assert_eq!(
            relay_url(base, "/files?purpose=batch&after=a..b")
                .unwrap()
                .path(),
            "/openai/v1/files"
        );
        for escape in [
            "/../../internal/admin/rotate-keys",
            "/%2e%2e/%2e%2e/internal/admin/rotate-keys",
            "/%2E%2e/x",
            "/./models",
            "/files/..",
            "/a%2f..%2f..%2fb",
            "/a%5c..",
            "/a\\..\\b",
        ] {
            assert!(relay_url(base, escape).is_err(), "{escape} was let through");
        }
        assert!(
            relay_url(base, "/files/file..name").is_ok(),
            "dots inside a name are fine"
        );
    }

    #[test]
    fn the_endpoints_joined_once_are_the_urls_a_parse_gives() {
        for base in [
            "http://relay/v1",
            "https://relay.example:8443/openai/v1/",
            "http://127.0.0.1:9/v1",
        ] {
            let joined = RelayBase::new(base).unwrap();
            for endpoint in Endpoint::ALL {
                let suffix = endpoint.relay_suffix();
                let parsed = joined.parse_joined(suffix).unwrap();
                assert_eq!(joined.join(suffix).unwrap(), parsed, "{base} + {suffix}");
                assert_eq!(
                    parsed.as_str(),
                    format!("{}{suffix}", base.trim_end_matches('/'))
                );
            }
        }
    }
}
