//! The configuration's sections, one struct each, with their defaults (SPEC.md's).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

/// USD per million tokens.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

/// Events the analytics queue holds by default: at ~200 bytes an event, 64 Ki events
/// is ~13 MiB.
pub const ANALYTICS_QUEUE_CAPACITY: usize = 65_536;

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
    /// Ask the relay for usage on every streamed miss (`stream_options.include_usage`),
    /// stripping it for clients that did not ask. Off only for a relay that refuses the
    /// option: its streams are then priced from the gateway's token estimate.
    pub stream_usage: bool,
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
    /// How often an instance reads the purge generations, to drop from its L1 what
    /// another instance purged (a purge reaches every instance within about this).
    pub purge_poll_ms: u64,
    /// One relay call per key across instances (a Redis lease per missed key). Off: each
    /// instance coalesces only its own requests.
    pub single_flight: bool,
    /// Lease on a missed key while one instance calls the relay for all (renewed every
    /// third of it; a dead holder frees the key when it expires).
    pub lease_ms: u64,
    /// The longest an instance waits for another instance's answer before calling the
    /// relay itself.
    pub remote_wait_ms: u64,
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
            queue_capacity: ANALYTICS_QUEUE_CAPACITY,
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
            stream_usage: true,
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
            purge_poll_ms: 250,
            single_flight: true,
            lease_ms: 3_000,
            remote_wait_ms: 30_000,
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
