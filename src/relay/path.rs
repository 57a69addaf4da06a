//! Joining a client's path to a region's base URL so that the result stays under the
//! base. The base path is the operator's (`https://relay/openai/v1`): a client path with
//! dot segments (`/v1/../../internal`, also percent-encoded as `%2e%2e`) or encoded
//! separators would otherwise reach other paths of the relay, with the operator's key in
//! managed mode. Such paths get a 400; the joined URL is checked as well.

use crate::error::ApiError;
use crate::paths::is_safe_path;

fn bad_path() -> ApiError {
    ApiError::InvalidRequest {
        message: "the request path may not contain dot segments or encoded separators".into(),
        param: None,
        code: "invalid_path",
    }
}

/// `base` + `suffix` (the part after `/v1`, with its query), refused unless it stays
/// under `base`'s path.
pub fn relay_url(base: &str, suffix: &str) -> Result<reqwest::Url, ApiError> {
    let path = suffix.split_once('?').map_or(suffix, |(p, _)| p);
    if !is_safe_path(path) {
        return Err(bad_path());
    }
    let url = reqwest::Url::parse(&format!("{base}{suffix}")).map_err(|_| bad_path())?;
    let base_path = reqwest::Url::parse(base)
        .map_err(|_| ApiError::Internal("relay base URL does not parse".into()))?
        .path()
        .trim_end_matches('/')
        .to_owned();
    let inside = url.path() == base_path
        || url
            .path()
            .strip_prefix(base_path.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
    if inside { Ok(url) } else { Err(bad_path()) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
