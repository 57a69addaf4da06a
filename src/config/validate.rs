//! What serde cannot check: ranges, URL shapes, consistency between settings. Runs
//! before anything starts, so a bad value stops the process with a message naming the key.

use super::{Config, ConfigError, invalid};

impl Config {
    /// Checks what serde cannot: ranges, URL shapes, consistency between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_relay_url("RELAY_URL", &self.relay.url)?;
        let mut names = std::collections::HashSet::new();
        let regions = self.effective_regions();
        for region in &regions {
            let valid_name = !region.name.is_empty()
                && region
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(invalid(
                    "relay.regions.name",
                    format!("{:?}: use letters, digits, '-' or '_'", region.name),
                ));
            }
            if !names.insert(region.name.as_str()) {
                return Err(invalid(
                    "relay.regions.name",
                    format!("{:?} appears twice", region.name),
                ));
            }
            check_relay_url("relay.regions.url", &region.url)?;
            if region.weight == 0 {
                return Err(invalid(
                    "relay.regions.weight",
                    format!("region {:?}: must be at least 1", region.name),
                ));
            }
            if self.is_managed() && region.keys.is_empty() {
                return Err(invalid(
                    "relay.regions.api_key_env",
                    format!("region {:?} has no key (managed mode)", region.name),
                ));
            }
        }
        if regions.iter().all(|r| r.backup) {
            return Err(invalid(
                "relay.regions.backup",
                "at least one region must be a primary",
            ));
        }
        for (edge, table) in &self.relay.weights {
            for (name, weight) in table {
                if !names.contains(name.as_str()) {
                    return Err(invalid(
                        "relay.weights",
                        format!("[relay.weights.{edge}] names unknown relay region {name:?}"),
                    ));
                }
                if *weight == 0 {
                    return Err(invalid(
                        "relay.weights",
                        format!("[relay.weights.{edge}] {name}: must be at least 1"),
                    ));
                }
            }
        }
        for route in &self.relay.forward_routes {
            if !route.starts_with("/v1/")
                || !crate::paths::is_safe_path(route)
                || route.contains('?')
            {
                return Err(invalid(
                    "relay.forward_routes",
                    format!(
                        "{route:?}: each route must be a path under /v1/, without dot segments or a query"
                    ),
                ));
            }
        }
        let retry = &self.relay.retry;
        if retry.max_attempts == 0 {
            return Err(invalid("relay.retry.max_attempts", "must be at least 1"));
        }
        let health = &self.relay.health;
        if !(0.0..=1.0).contains(&health.error_ratio)
            || health.window == 0
            || health.failure_threshold == 0
        {
            return Err(invalid(
                "relay.health",
                "error_ratio must be within 0..=1, window and failure_threshold at least 1",
            ));
        }
        if self
            .relay
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose().is_empty())
        {
            return Err(invalid("RELAY_API_KEY", "must not be empty"));
        }
        if self.is_managed() && self.auth.gateway_api_keys.is_empty() {
            return Err(invalid(
                "GATEWAY_API_KEYS",
                "managed mode (RELAY_API_KEY set) needs at least one tenant:key",
            ));
        }
        for (key, value) in [
            ("RELAY_CONNECT_TIMEOUT_MS", self.relay.connect_timeout_ms),
            (
                "RELAY_FIRST_BYTE_TIMEOUT_MS",
                self.relay.first_byte_timeout_ms,
            ),
            ("RELAY_IDLE_TIMEOUT_MS", self.relay.idle_timeout_ms),
            ("REDIS_TIMEOUT_MS", self.redis.timeout_ms),
            ("redis.probe_interval_ms", self.redis.probe_interval_ms),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            (
                "redis.failure_threshold",
                u64::from(self.redis.failure_threshold),
            ),
            ("sqlite.max_cache_bytes", self.sqlite.max_cache_bytes),
            ("analytics.global_flush_ms", self.analytics.global_flush_ms),
            (
                "analytics.queue_capacity",
                self.analytics.queue_capacity as u64,
            ),
            (
                "sqlite.cleanup_interval_secs",
                self.sqlite.cleanup_interval_secs,
            ),
            ("L1_MAX_BYTES", self.cache.l1_max_bytes),
            ("cache.max_entry_bytes", self.cache.max_entry_bytes as u64),
            ("MAX_BODY_BYTES", self.server.max_body_bytes as u64),
            ("server.max_in_flight", self.server.max_in_flight as u64),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
            ("server.max_headers", self.server.max_headers as u64),
            ("server.max_connections", self.server.max_connections as u64),
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            (
                "server.max_header_bytes",
                self.server.max_header_bytes as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.cache.ttl_secs > self.cache.max_ttl_secs {
            return Err(invalid(
                "CACHE_TTL_SECS",
                format!(
                    "{} exceeds cache.max_ttl_secs ({})",
                    self.cache.ttl_secs, self.cache.max_ttl_secs
                ),
            ));
        }
        if let Some(url) = &self.redis.url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        for url in &self.redis.cluster_urls {
            if !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://")) {
                return Err(invalid(
                    "REDIS_CLUSTER_URLS",
                    "each seed must start with redis:// or rediss://",
                ));
            }
        }
        if self.redis.url.is_some() && !self.redis.cluster_urls.is_empty() {
            return Err(invalid(
                "REDIS_CLUSTER_URLS",
                "set either REDIS_URL or REDIS_CLUSTER_URLS, not both",
            ));
        }
        if self.redis.key_prefix.is_empty()
            || self.redis.key_prefix.contains([':', '*', '?', '[', ' '])
        {
            return Err(invalid(
                "redis.key_prefix",
                "must be non-empty, without ':', '*', '?', '[' or spaces",
            ));
        }
        if self.redis.purge_poll_ms == 0 || self.redis.purge_poll_ms > 1_000 {
            return Err(invalid(
                "redis.purge_poll_ms",
                "between 1 and 1000: a purge must reach every instance within a second",
            ));
        }
        if self.redis.lease_ms < 30 {
            return Err(invalid(
                "redis.lease_ms",
                "at least 30 (it is renewed every third of it)",
            ));
        }
        self.check_semantic()?;
        if self.sqlite.path.as_os_str().is_empty() {
            return Err(invalid("SQLITE_PATH", "must not be empty"));
        }
        if self.edge_region.is_empty()
            || !self
                .edge_region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "EDGE_REGION",
                "must be non-empty letters, digits, '-' or '_'",
            ));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(invalid("ADMIN_TOKEN", "must be at least 16 characters"));
        }
        if let Some(ns) = &self.cache.shared_namespace
            && ns.is_empty()
        {
            return Err(invalid("cache.shared_namespace", "must not be empty"));
        }
        let limits = std::iter::once((
            "rate_limit",
            self.rate_limit.requests_per_second,
            self.rate_limit.burst,
        ))
        .chain(
            self.rate_limit
                .tenants
                .values()
                .map(|t| ("rate_limit.tenants", t.requests_per_second, t.burst)),
        );
        for (key, rps, burst) in limits {
            if rps > 0 && burst == 0 {
                return Err(invalid(key, "burst must be at least 1 when a rate is set"));
            }
        }
        for tenant in self.rate_limit.tenants.keys() {
            if self.is_managed() && !self.auth.gateway_api_keys.contains_key(tenant) {
                return Err(invalid(
                    "rate_limit.tenants",
                    format!("{tenant:?} is not a tenant of GATEWAY_API_KEYS"),
                ));
            }
        }
        for (model, price) in &self.pricing {
            if !(price.input.is_finite() && price.output.is_finite())
                || price.input < 0.0
                || price.output < 0.0
            {
                return Err(invalid(
                    "pricing",
                    format!("{model:?}: prices must be finite and not negative"),
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| invalid("RUST_LOG", e.to_string()))?;
        Ok(())
    }
}

impl Config {
    fn check_semantic(&self) -> Result<(), ConfigError> {
        let s = &self.semantic;
        if !(s.threshold > 0.0 && s.threshold <= 1.0) {
            return Err(invalid(
                "SEMANTIC_THRESHOLD",
                format!("{}: must be in (0, 1]", s.threshold),
            ));
        }
        if s.embedder.trim().is_empty() {
            return Err(invalid(
                "semantic.embedder",
                "use \"relay\" or the path of a model directory",
            ));
        }
        if s.embedding_model.trim().is_empty() {
            return Err(invalid("EMBEDDINGS_MODEL", "must not be empty"));
        }
        if s.max_entries == 0 || s.candidates == 0 || s.max_text_chars == 0 {
            return Err(invalid(
                "semantic.max_entries",
                "max_entries, candidates and max_text_chars must be at least 1",
            ));
        }
        if s.share_poll_ms == 0 {
            return Err(invalid("semantic.share_poll_ms", "must be at least 1"));
        }
        Ok(())
    }
}

fn check_relay_url(key: &'static str, raw: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(key, format!("{raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must start with http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key, "must not carry a query or fragment"));
    }
    Ok(())
}
