//! The request headers that steer caching: `cache-control: no-cache | no-store`,
//! `x-cache-ttl`, `x-cache-namespace`. Bad values get a 400, not a silent default.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};

use crate::config::CacheConfig;
use crate::error::ApiError;
use crate::http::{X_CACHE_NAMESPACE, X_CACHE_SEMANTIC, X_CACHE_TTL};

#[derive(Debug)]
pub struct CacheControls {
    /// Skip the lookup, call the relay, store the fresh answer.
    pub no_cache: bool,
    /// Skip the lookup and the store.
    pub no_store: bool,
    pub ttl: Duration,
    pub partition: Option<String>,
    /// `x-cache-semantic: off`: exact tiers only for this request.
    pub semantic_off: bool,
}

fn bad_header(name: &'static str, why: &str) -> ApiError {
    ApiError::InvalidRequest {
        message: format!("invalid {name} header: {why}"),
        param: Some(name),
        code: "invalid_header",
    }
}

impl CacheControls {
    pub fn from_headers(headers: &HeaderMap, config: &CacheConfig) -> Result<Self, ApiError> {
        // One walk over the request's headers: six hashed lookups of these names cost a
        // cache hit ~1,000 instructions (callgrind, bench/RESULTS.md), this ~300.
        let (mut no_cache, mut no_store) = (false, false);
        let (mut ttl, mut partition, mut semantic) = (None, None, None);
        for (name, value) in headers {
            if name == header::CACHE_CONTROL {
                let Ok(value) = value.to_str() else { continue };
                for directive in value.split(',').map(str::trim) {
                    no_cache |= directive.eq_ignore_ascii_case("no-cache");
                    no_store |= directive.eq_ignore_ascii_case("no-store");
                }
            } else if name == X_CACHE_TTL {
                if ttl.replace(value).is_some() {
                    return Err(bad_header("x-cache-ttl", "send it once"));
                }
            } else if name == X_CACHE_NAMESPACE {
                if partition.replace(value).is_some() {
                    return Err(bad_header("x-cache-namespace", "send it once"));
                }
            } else if name == X_CACHE_SEMANTIC {
                // The first one counts, as `HeaderMap::get` would have it.
                semantic.get_or_insert(value);
            }
        }
        let ttl = match ttl {
            None => config.ttl_secs,
            Some(v) => {
                let secs: u64 = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| bad_header("x-cache-ttl", "expected whole seconds"))?;
                if secs == 0 || secs > config.max_ttl_secs {
                    return Err(bad_header(
                        "x-cache-ttl",
                        &format!("must be between 1 and {} seconds", config.max_ttl_secs),
                    ));
                }
                secs
            }
        };
        let partition = match partition {
            None => None,
            Some(v) => {
                let name = v.to_str().unwrap_or_default();
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !valid {
                    return Err(bad_header(
                        "x-cache-namespace",
                        "1 to 64 letters, digits, '-', '_' or '.'",
                    ));
                }
                Some(name.to_owned())
            }
        };
        let semantic_off = match semantic {
            None => false,
            Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                Ok("off") => true,
                Ok("on") => false,
                _ => return Err(bad_header("x-cache-semantic", "use on or off")),
            },
        };
        Ok(Self {
            semantic_off,
            no_cache,
            no_store,
            ttl: Duration::from_secs(ttl),
            partition,
        })
    }

    pub fn bypasses_lookup(&self) -> bool {
        self.no_cache || self.no_store
    }

    /// The namespace entries of this request live in: the caller's (or the configured
    /// shared one), partitioned by `x-cache-namespace`.
    pub fn namespace(&self, caller: &Arc<str>, shared: Option<&str>) -> Arc<str> {
        let base = shared.unwrap_or(caller);
        match &self.partition {
            None if shared.is_none() => caller.clone(),
            None => Arc::from(base),
            Some(p) => Arc::from(format!("{base}/{p}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn controls(pairs: &[(&str, &str)]) -> Result<CacheControls, ApiError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        CacheControls::from_headers(&headers, &CacheConfig::default())
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        match controls(pairs) {
            Err(ApiError::InvalidRequest { message, .. }) => message,
            Err(other) => panic!("{pairs:?}: {other:?}"),
            Ok(c) => panic!("{pairs:?} was accepted: {c:?}"),
        }
    }

    #[test]
    fn every_header_that_steers_caching_is_read_in_one_walk() {
        let c = controls(&[
            ("authorization", "Bearer sk-1"),
            ("Cache-Control", "max-age=0, No-Cache"),
            ("x-cache-ttl", " 60 "),
            ("cache-control", "no-store"),
            ("x-cache-namespace", "tenant-a.faq"),
            ("x-cache-semantic", "OFF"),
            ("x-cache-semantic", "on"),
        ])
        .unwrap();
        assert!(c.no_cache && c.no_store, "both cache-control lines count");
        assert_eq!(c.ttl, Duration::from_secs(60));
        assert_eq!(c.partition.as_deref(), Some("tenant-a.faq"));
        assert!(c.semantic_off, "the first x-cache-semantic counts");

        let plain = controls(&[("content-type", "application/json")]).unwrap();
        assert!(!plain.no_cache && !plain.no_store && !plain.semantic_off);
        assert_eq!(
            plain.ttl,
            Duration::from_secs(CacheConfig::default().ttl_secs)
        );
        assert_eq!(plain.partition, None);
    }

    #[test]
    fn a_repeated_ttl_or_namespace_and_bad_values_are_refused() {
        assert!(refused(&[("x-cache-ttl", "60"), ("x-cache-ttl", "60")]).contains("x-cache-ttl"));
        assert!(
            refused(&[("x-cache-namespace", "a"), ("x-cache-namespace", "b")])
                .contains("x-cache-namespace header: send it once")
        );
        assert!(refused(&[("x-cache-ttl", "0")]).contains("between 1 and"));
        assert!(refused(&[("x-cache-ttl", "soon")]).contains("whole seconds"));
        assert!(refused(&[("x-cache-namespace", "a/b")]).contains("x-cache-namespace"));
        assert!(refused(&[("x-cache-semantic", "maybe")]).contains("on or off"));
    }
}
