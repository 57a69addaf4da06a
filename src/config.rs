//! The one typed configuration, layered: built-in defaults, then an optional TOML file,
//! then environment variables (the names of `SPEC.md`). `validate()` runs before anything
//! starts, so a bad value stops the process with a message naming the key instead of
//! failing later on a request.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// A credential. Prints and serializes as `*****` so it cannot leak through logs,
/// `check-config` output or error bodies by accident; `expose()` is the one way out.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*****")
    }
}

/// Why the configuration could not be used; the message always names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub relay: RelayConfig,
    pub auth: AuthConfig,
    pub cache: CacheConfig,
    pub normalize: NormalizeConfig,
    pub redis: RedisConfig,
    pub sqlite: SqliteConfig,
    pub analytics: AnalyticsConfig,
    pub rate_limit: RateLimitConfig,
    pub privacy: PrivacyConfig,
    /// Model name to USD per million input/output tokens; adds to and overrides the
    /// built-in table.
    pub pricing: BTreeMap<String, crate::analytics::ModelPrice>,
    /// This instance's region name (`EDGE_REGION`, else `FLY_REGION`, else `local`).
    pub edge_region: String,
    /// Bearer token for `/admin/*`; unset disables those routes.
    pub admin_token: Option<Secret>,
    /// Tracing filter (`RUST_LOG`).
    pub log: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub port: u16,
    pub bind: IpAddr,
    pub max_body_bytes: usize,
    /// How long SIGTERM waits for in-flight requests before giving up on them.
    pub shutdown_grace_secs: u64,
    /// `/v1/*` requests in flight beyond this are shed with 503 before the process degrades.
    pub max_in_flight: usize,
    /// A request body must arrive within this (slow-loris bodies are cut with 408).
    pub body_timeout_ms: u64,
    /// Requests with more headers, or more header bytes, get 431.
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Client connections open at once; at the cap the connection idle longest is
    /// closed to make room (lowered at start to fit the open-file limit).
    pub max_connections: usize,
    /// A connection must send a request's headers within this, counted from when it
    /// opened or its previous response ended: the slow-header and keep-alive idle limit.
    pub header_timeout_ms: u64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per client key (pass-through) or tenant (managed); 0 turns limiting off.
    pub requests_per_second: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
    /// Cache hits do not count against the limit (only relay calls do).
    pub exempt_cache_hits: bool,
    /// Per-tenant limits that replace the default for that tenant.
    pub tenants: BTreeMap<String, TenantLimit>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Log prompts and answers (debugging only; off by default: they are users' data).
    pub log_payloads: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Base URL including `/v1`; the region named `default`.
    pub url: String,
    /// Set: managed mode (clients present gateway keys, the relay sees only this key).
    pub api_key: Option<Secret>,
    pub connect_timeout_ms: u64,
    /// Time from sending the request until the relay's response headers arrive.
    pub first_byte_timeout_ms: u64,
    /// Longest silence allowed between two body chunks of a relay response.
    pub idle_timeout_ms: u64,
    /// The relay's regional endpoints. Empty: one region `default` at `url`.
    pub regions: Vec<RegionConfig>,
    /// Per edge region (`EDGE_REGION`), relay region name to weight, replacing the
    /// configured weights for the regions it names: an instance in `sin` can prefer `sin`.
    pub weights: BTreeMap<String, BTreeMap<String, u32>>,
    pub retry: RetryConfig,
    pub health: HealthConfig,
    /// Managed mode: the non-cacheable routes forwarded to the relay (a route and the
    /// paths under it). Tenants share the operator's relay account, so files, batches,
    /// assistants and the like stay closed unless listed here.
    pub forward_routes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only while no primary region is healthy.
    #[serde(default)]
    pub backup: bool,
    /// Environment variable holding this region's key (or comma-separated keys, used in
    /// turn); else `RELAY_API_KEY`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Resolved from `api_key_env` (or `RELAY_API_KEY`) at load; never printed.
    #[serde(skip)]
    pub keys: Vec<Secret>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Relay attempts per request, the first included.
    pub max_attempts: u32,
    /// No new attempt starts after this long since the first.
    pub budget_ms: u64,
    /// Exponential backoff with full jitter: base × 2^(attempt−1), at most `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A 429's `retry-after` up to this is waited out and retried; beyond it the client
    /// gets the 429 with its `retry-after`.
    pub retry_after_cap_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            budget_ms: 30_000,
            backoff_base_ms: 25,
            backoff_max_ms: 1_000,
            retry_after_cap_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Consecutive failed attempts (5xx, errors) that open a region's breaker. Timeouts
    /// and refused connections open it at once.
    pub failure_threshold: u32,
    /// Error ratio over the last `window` attempts that opens the breaker.
    pub error_ratio: f64,
    pub window: u32,
    /// How long an open breaker waits before one trial request (half-open).
    pub cooldown_ms: u64,
    /// Active checks: `GET {url}/models` per region; 0 turns them off.
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            error_ratio: 0.5,
            window: 20,
            cooldown_ms: 5_000,
            probe_interval_ms: 10_000,
            probe_timeout_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Client keys accepted in managed mode, tenant name to key.
    pub gateway_api_keys: BTreeMap<String, Secret>,
    /// Pass-through mode: requests without a credential are served (sharing the
    /// namespace `anonymous`) instead of getting 401.
    pub allow_anonymous: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub ttl_secs: u64,
    /// Largest `x-cache-ttl` a client may ask for.
    pub max_ttl_secs: u64,
    pub l1_max_bytes: u64,
    /// Set: every tenant reads and writes this one namespace (an explicit operator choice).
    pub shared_namespace: Option<String>,
    /// Memory for recognising byte-identical request bodies without parsing them
    /// (0 turns the fast path off).
    pub fast_path_bytes: u64,
    /// Request bodies larger than this are never remembered by the fast path.
    pub fast_path_max_body_bytes: usize,
    /// Largest answer body stored in any tier, and largest value read back from Redis
    /// (larger ones are skipped and counted, never allocated or waited for).
    pub max_entry_bytes: usize,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Fold case in message text before keying, so "Hello" and "hello" share an entry.
    pub case_insensitive: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Option<Secret>,
    pub cluster_urls: Vec<Secret>,
    /// Per-call timeout: the most a request ever waits on Redis.
    pub timeout_ms: u64,
    /// Consecutive failed calls that mark Redis down (lookups and writes go to SQLite).
    pub failure_threshold: u32,
    /// How often a down Redis is probed to bring it back.
    pub probe_interval_ms: u64,
    /// Connection attempts (by the prober, never by a request) give up after this.
    pub connect_timeout_ms: u64,
    /// Keys are `{prefix}:v1:{namespace}:{key}`; lets instances of several apps share one Redis.
    pub key_prefix: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Off: no rows, no counters (for measuring what analytics costs; not for production).
    pub enabled: bool,
    /// Rows older than this many days are pruned (0 keeps them forever).
    pub retention_days: u32,
    /// Events the writer queue holds before it drops (and counts) new ones.
    pub queue_capacity: usize,
    /// How often this instance adds its counts to the per-hour Redis counters.
    pub global_flush_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 90,
            queue_capacity: crate::analytics::QUEUE_CAPACITY,
            global_flush_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// Cache entries beyond this many body bytes are evicted, oldest first.
    pub max_cache_bytes: u64,
    /// How often expired entries are deleted and the size bound enforced.
    pub cleanup_interval_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            relay: RelayConfig::default(),
            auth: AuthConfig::default(),
            cache: CacheConfig::default(),
            normalize: NormalizeConfig::default(),
            redis: RedisConfig::default(),
            sqlite: SqliteConfig::default(),
            analytics: AnalyticsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            privacy: PrivacyConfig::default(),
            pricing: BTreeMap::new(),
            edge_region: "local".into(),
            admin_token: None,
            log: "info".into(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            bind: IpAddr::from([0, 0, 0, 0]),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_secs: 30,
            max_in_flight: 4_096,
            body_timeout_ms: 30_000,
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            max_connections: 4_096,
            header_timeout_ms: 30_000,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            url: "https://api.openai.com/v1".into(),
            api_key: None,
            connect_timeout_ms: 3_000,
            first_byte_timeout_ms: 120_000,
            idle_timeout_ms: 60_000,
            regions: Vec::new(),
            weights: BTreeMap::new(),
            retry: RetryConfig::default(),
            health: HealthConfig::default(),
            forward_routes: vec!["/v1/models".into()],
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            max_ttl_secs: 30 * 86_400,
            l1_max_bytes: 256 * 1024 * 1024,
            shared_namespace: None,
            fast_path_bytes: 16 * 1024 * 1024,
            fast_path_max_body_bytes: 64 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster_urls: Vec::new(),
            timeout_ms: 50,
            failure_threshold: 3,
            probe_interval_ms: 1_000,
            connect_timeout_ms: 1_000,
            key_prefix: "eg".into(),
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/edge-gateway.db"),
            max_cache_bytes: 1024 * 1024 * 1024,
            cleanup_interval_secs: 60,
        }
    }
}

/// Where configuration values come from besides the file; a trait object so tests can
/// feed a map instead of mutating the process environment.
pub trait EnvSource {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

/// Every environment variable the gateway reads. Deployment files are checked against it.
pub const ENV_VARS: &[&str] = &[
    "EDGE_GATEWAY_CONFIG",
    "PORT",
    "BIND",
    "RELAY_URL",
    "RELAY_API_KEY",
    "RELAY_CONNECT_TIMEOUT_MS",
    "RELAY_FIRST_BYTE_TIMEOUT_MS",
    "RELAY_IDLE_TIMEOUT_MS",
    "GATEWAY_API_KEYS",
    "REDIS_URL",
    "REDIS_CLUSTER_URLS",
    "REDIS_TIMEOUT_MS",
    "SQLITE_PATH",
    "CACHE_TTL_SECS",
    "L1_MAX_BYTES",
    "EDGE_REGION",
    "FLY_REGION",
    "ADMIN_TOKEN",
    "MAX_BODY_BYTES",
    "SHUTDOWN_GRACE_SECS",
    "ANALYTICS_RETENTION_DAYS",
    "RUST_LOG",
    "LOG_FORMAT",
];

impl Config {
    /// Defaults, then `file` (if any), then `env`; validated.
    pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    fn apply_env(&mut self, env: &dyn EnvSource) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(key: &'static str, raw: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            raw.trim()
                .parse()
                .map_err(|e| invalid(key, format!("{raw:?}: {e}")))
        }
        let get = |key: &str| env.get(key).filter(|v| !v.is_empty());

        if let Some(v) = get("PORT") {
            self.server.port = parsed("PORT", &v)?;
        }
        if let Some(v) = get("BIND") {
            self.server.bind = parsed("BIND", &v)?;
        }
        if let Some(v) = get("MAX_BODY_BYTES") {
            self.server.max_body_bytes = parsed("MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("SHUTDOWN_GRACE_SECS") {
            self.server.shutdown_grace_secs = parsed("SHUTDOWN_GRACE_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_URL") {
            self.relay.url = v;
        }
        if let Some(v) = get("RELAY_API_KEY") {
            self.relay.api_key = Some(Secret(v));
        }
        if let Some(v) = get("RELAY_CONNECT_TIMEOUT_MS") {
            self.relay.connect_timeout_ms = parsed("RELAY_CONNECT_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("RELAY_FIRST_BYTE_TIMEOUT_MS") {
            self.relay.first_byte_timeout_ms = parsed("RELAY_FIRST_BYTE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("RELAY_IDLE_TIMEOUT_MS") {
            self.relay.idle_timeout_ms = parsed("RELAY_IDLE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("GATEWAY_API_KEYS") {
            self.auth.gateway_api_keys = parse_api_keys(&v)?;
        }
        if let Some(v) = get("REDIS_URL") {
            self.redis.url = Some(Secret(v));
        }
        if let Some(v) = get("REDIS_CLUSTER_URLS") {
            self.redis.cluster_urls = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Secret(s.to_owned()))
                .collect();
        }
        if let Some(v) = get("REDIS_TIMEOUT_MS") {
            self.redis.timeout_ms = parsed("REDIS_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("SQLITE_PATH") {
            self.sqlite.path = PathBuf::from(v);
        }
        if let Some(v) = get("CACHE_TTL_SECS") {
            self.cache.ttl_secs = parsed("CACHE_TTL_SECS", &v)?;
        }
        if let Some(v) = get("L1_MAX_BYTES") {
            self.cache.l1_max_bytes = parsed("L1_MAX_BYTES", &v)?;
        }
        if let Some(v) = get("EDGE_REGION").or_else(|| get("FLY_REGION")) {
            self.edge_region = v;
        }
        if let Some(v) = get("ANALYTICS_RETENTION_DAYS") {
            self.analytics.retention_days = parsed("ANALYTICS_RETENTION_DAYS", &v)?;
        }
        if let Some(v) = get("ADMIN_TOKEN") {
            self.admin_token = Some(Secret(v));
        }
        if let Some(v) = get("RUST_LOG") {
            self.log = v;
        }
        self.resolve_regions(&get)
    }

    /// Resolves each region's `api_key_env` (the variable must exist).
    fn resolve_regions(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for region in &mut self.relay.regions {
            if let Some(var) = &region.api_key_env {
                let raw = get(var).ok_or_else(|| {
                    invalid(
                        "relay.regions.api_key_env",
                        format!(
                            "region {:?}: environment variable {var} is not set",
                            region.name
                        ),
                    )
                })?;
                region.keys = split_keys(&raw);
            }
        }
        Ok(())
    }

    /// The regions in use: the configured ones, or one region `default` at `RELAY_URL`.
    /// Regions without `api_key_env` use the `RELAY_API_KEY` pool (comma-separated keys).
    pub fn effective_regions(&self) -> Vec<RegionConfig> {
        let shared = self
            .relay
            .api_key
            .as_ref()
            .map(|k| split_keys(k.expose()))
            .unwrap_or_default();
        let mut regions = if self.relay.regions.is_empty() {
            vec![RegionConfig {
                name: "default".into(),
                url: self.relay.url.clone(),
                weight: 1,
                backup: false,
                api_key_env: None,
                keys: Vec::new(),
            }]
        } else {
            self.relay.regions.clone()
        };
        for region in &mut regions {
            if region.api_key_env.is_none() {
                region.keys = shared.clone();
            }
        }
        regions
    }

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
                || !crate::relay::is_safe_path(route)
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
        if self.relay.api_key.as_ref().is_some_and(|k| k.0.is_empty()) {
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
            && !(url.0.starts_with("redis://") || url.0.starts_with("rediss://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        for url in &self.redis.cluster_urls {
            if !(url.0.starts_with("redis://") || url.0.starts_with("rediss://")) {
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
        if self.admin_token.as_ref().is_some_and(|t| t.0.len() < 16) {
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

    /// Pass-through mode forwards the client's own key; managed mode swaps in ours
    /// (`RELAY_API_KEY`, or a region's `api_key_env`).
    pub fn is_managed(&self) -> bool {
        self.relay.api_key.is_some() || self.relay.regions.iter().any(|r| r.api_key_env.is_some())
    }

    /// The weight of each region for this edge region (its table, else the configured one).
    pub fn region_weight(&self, region: &RegionConfig) -> u32 {
        self.relay
            .weights
            .get(&self.edge_region)
            .and_then(|t| t.get(&region.name))
            .copied()
            .unwrap_or(region.weight)
    }
}

fn split_keys(raw: &str) -> Vec<Secret> {
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| Secret(k.to_owned()))
        .collect()
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

fn parse_api_keys(raw: &str) -> Result<BTreeMap<String, Secret>, ConfigError> {
    let mut keys = BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // Never echo the pair: it holds a key.
        let (tenant, key) = pair.split_once(':').ok_or_else(|| {
            invalid(
                "GATEWAY_API_KEYS",
                "each entry must be tenant:key (an entry has no ':')",
            )
        })?;
        let (tenant, key) = (tenant.trim(), key.trim());
        if tenant.is_empty() || key.is_empty() {
            return Err(invalid(
                "GATEWAY_API_KEYS",
                "tenant and key must both be non-empty",
            ));
        }
        if keys
            .insert(tenant.to_owned(), Secret(key.to_owned()))
            .is_some()
        {
            return Err(invalid(
                "GATEWAY_API_KEYS",
                format!("tenant {tenant:?} appears twice"),
            ));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.server.bind.to_string(), "0.0.0.0");
        assert_eq!(c.relay.url, "https://api.openai.com/v1");
        assert_eq!(c.cache.ttl_secs, 86_400);
        assert_eq!(c.cache.l1_max_bytes, 268_435_456);
        assert_eq!(c.server.max_body_bytes, 4_194_304);
        assert_eq!(c.sqlite.path, PathBuf::from("./data/edge-gateway.db"));
        assert_eq!(c.edge_region, "local");
        assert!(!c.is_managed());
    }

    #[test]
    fn env_overrides_file_and_fly_region_is_the_fallback_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nport = 9000\nmax_body_bytes = 10\n").unwrap();
        let c = Config::load(
            Some(&path),
            &env(&[("PORT", "9100"), ("FLY_REGION", "cdg")]),
        )
        .unwrap();
        assert_eq!(c.server.port, 9100);
        assert_eq!(c.server.max_body_bytes, 10);
        assert_eq!(c.edge_region, "cdg");
        let c = Config::load(None, &env(&[("EDGE_REGION", "sin"), ("FLY_REGION", "cdg")])).unwrap();
        assert_eq!(c.edge_region, "sin");
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (pairs, key) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("RELAY_URL", "ftp://x/v1")], "RELAY_URL"),
            (vec![("RELAY_URL", "not a url")], "RELAY_URL"),
            (vec![("CACHE_TTL_SECS", "-1")], "CACHE_TTL_SECS"),
            (vec![("L1_MAX_BYTES", "0")], "L1_MAX_BYTES"),
            (vec![("REDIS_URL", "http://x")], "REDIS_URL"),
            (vec![("GATEWAY_API_KEYS", "nocolon")], "GATEWAY_API_KEYS"),
            (vec![("RELAY_API_KEY", "sk-x")], "GATEWAY_API_KEYS"),
            (vec![("EDGE_REGION", "a b")], "EDGE_REGION"),
            (vec![("ADMIN_TOKEN", "short")], "ADMIN_TOKEN"),
        ] {
            let err = Config::load(None, &env(&pairs)).unwrap_err().to_string();
            assert!(err.contains(key), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[cache]\nttl_sec = 5\n").unwrap();
        let err = Config::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ttl_sec"), "{err}");
    }

    #[test]
    fn api_keys_parse_and_never_print() {
        let c = Config::load(
            None,
            &env(&[
                ("RELAY_API_KEY", "sk-relay-secret"),
                ("GATEWAY_API_KEYS", "acme:gw-acme-1, globex:gw-globex-2"),
            ]),
        )
        .unwrap();
        assert!(c.is_managed());
        assert_eq!(c.auth.gateway_api_keys["acme"].expose(), "gw-acme-1");
        let printed = format!("{c:?}{}", toml::to_string(&c).unwrap());
        for secret in ["sk-relay-secret", "gw-acme-1", "gw-globex-2"] {
            assert!(!printed.contains(secret));
        }
        let err = Config::load(None, &env(&[("GATEWAY_API_KEYS", "acme:a,acme:b")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice") && !err.contains(":b"));
    }
}
