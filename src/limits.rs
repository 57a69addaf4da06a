//! Rate limits per client key (pass-through) or tenant (managed): a token bucket
//! (`governor`, GCRA) with a steady rate and a burst, configurable per tenant. A limited
//! request gets 429 with `retry-after` in the OpenAI error shape.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::ApiError;

fn quota(rps: u32, burst: u32) -> Option<Quota> {
    let rps = NonZeroU32::new(rps)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rps);
    Some(Quota::per_second(rps).allow_burst(burst))
}

pub struct RateLimits {
    default: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    tenants: HashMap<String, DefaultDirectRateLimiter>,
    /// Cache hits do not count; the caller checks only before relay calls.
    pub exempt_cache_hits: bool,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            default: quota(config.requests_per_second, config.burst).map(RateLimiter::keyed),
            tenants: config
                .tenants
                .iter()
                .filter_map(|(tenant, l)| {
                    quota(l.requests_per_second, l.burst)
                        .map(|q| (tenant.clone(), RateLimiter::direct(q)))
                })
                .collect(),
            exempt_cache_hits: config.exempt_cache_hits,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.default.is_some() || !self.tenants.is_empty()
    }

    /// Takes one request from `caller`'s bucket (its tenant's own limit, else the default).
    pub fn check(&self, caller: &Arc<str>) -> Result<(), ApiError> {
        let verdict = match self.tenants.get(caller.as_ref()) {
            Some(limiter) => limiter.check(),
            None => match &self.default {
                Some(limiter) => limiter.check_key(caller),
                None => return Ok(()),
            },
        };
        verdict.map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Forgets idle callers so the keyed table stays small.
    pub fn shrink(&self) {
        if let Some(limiter) = &self.default {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantLimit;

    #[test]
    fn bursts_then_limits_per_caller_with_tenant_overrides() {
        let mut config = RateLimitConfig {
            requests_per_second: 1,
            burst: 3,
            ..Default::default()
        };
        config.tenants.insert(
            "big".into(),
            TenantLimit {
                requests_per_second: 1,
                burst: 10,
            },
        );
        let limits = RateLimits::new(&config);
        let (a, b, big): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "big".into());
        for _ in 0..3 {
            assert!(limits.check(&a).is_ok());
        }
        match limits.check(&a) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        assert!(limits.check(&b).is_ok(), "buckets are per caller");
        for _ in 0..10 {
            assert!(limits.check(&big).is_ok());
        }
        assert!(limits.check(&big).is_err());
        assert!(!RateLimits::new(&RateLimitConfig::default()).is_enabled());
    }
}
