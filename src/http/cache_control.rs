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
        // Two values would leave it to chance which one counts.
        for name in [X_CACHE_TTL, X_CACHE_NAMESPACE] {
            if headers.get_all(&name).iter().nth(1).is_some() {
                return Err(bad_header(
                    if name == X_CACHE_TTL {
                        "x-cache-ttl"
                    } else {
                        "x-cache-namespace"
                    },
                    "send it once",
                ));
            }
        }
        let (mut no_cache, mut no_store) = (false, false);
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                no_cache |= directive.eq_ignore_ascii_case("no-cache");
                no_store |= directive.eq_ignore_ascii_case("no-store");
            }
        }
        let ttl = match headers.get(X_CACHE_TTL) {
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
        let partition = match headers.get(X_CACHE_NAMESPACE) {
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
        let semantic_off = match headers.get(X_CACHE_SEMANTIC) {
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
