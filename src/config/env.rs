//! Environment variables, from one table: [`ENV`] says each variable's name, the TOML
//! key it overrides and how it is applied. Loading walks the table; the
//! deployment files and the README's configuration table are checked against it by
//! tests. A new variable is one row here plus its docs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::{Config, ConfigError, Secret, invalid};

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

type Apply = fn(&mut Config, &str) -> Result<(), ConfigError>;

/// One environment variable.
pub struct EnvVar {
    pub name: &'static str,
    /// The TOML key it overrides (`—` when it has none). Its meaning is in the README's
    /// table, which a test checks against this one.
    pub toml_key: &'static str,
    /// `None`: read elsewhere (the CLI, logging setup) or only as another's fallback.
    apply: Option<Apply>,
}

fn parsed<T: std::str::FromStr>(key: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| invalid(key, format!("{raw:?}: {e}")))
}

/// Every environment variable the gateway reads, in the README's order.
pub const ENV: &[EnvVar] = &[
    EnvVar {
        name: "EDGE_GATEWAY_CONFIG",
        toml_key: "—",
        apply: None,
    },
    EnvVar {
        name: "PORT",
        toml_key: "server.port",
        apply: Some(|c, v| {
            c.server.port = parsed("PORT", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "BIND",
        toml_key: "server.bind",
        apply: Some(|c, v| {
            c.server.bind = parsed("BIND", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "RELAY_URL",
        toml_key: "relay.url",
        apply: Some(|c, v| {
            c.relay.url = v.to_owned();
            Ok(())
        }),
    },
    EnvVar {
        name: "RELAY_API_KEY",
        toml_key: "relay.api_key",
        apply: Some(|c, v| {
            c.relay.api_key = Some(Secret::new(v));
            Ok(())
        }),
    },
    EnvVar {
        name: "GATEWAY_API_KEYS",
        toml_key: "auth.gateway_api_keys",
        apply: Some(|c, v| {
            c.auth.gateway_api_keys = parse_api_keys(v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "RELAY_CONNECT_TIMEOUT_MS",
        toml_key: "relay.connect_timeout_ms",
        apply: Some(|c, v| {
            c.relay.connect_timeout_ms = parsed("RELAY_CONNECT_TIMEOUT_MS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "RELAY_FIRST_BYTE_TIMEOUT_MS",
        toml_key: "relay.first_byte_timeout_ms",
        apply: Some(|c, v| {
            c.relay.first_byte_timeout_ms = parsed("RELAY_FIRST_BYTE_TIMEOUT_MS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "RELAY_IDLE_TIMEOUT_MS",
        toml_key: "relay.idle_timeout_ms",
        apply: Some(|c, v| {
            c.relay.idle_timeout_ms = parsed("RELAY_IDLE_TIMEOUT_MS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "REDIS_URL",
        toml_key: "redis.url",
        apply: Some(|c, v| {
            c.redis.url = Some(Secret::new(v));
            Ok(())
        }),
    },
    EnvVar {
        name: "REDIS_CLUSTER_URLS",
        toml_key: "redis.cluster_urls",
        apply: Some(|c, v| {
            c.redis.cluster_urls = split_keys(v);
            Ok(())
        }),
    },
    EnvVar {
        name: "REDIS_TIMEOUT_MS",
        toml_key: "redis.timeout_ms",
        apply: Some(|c, v| {
            c.redis.timeout_ms = parsed("REDIS_TIMEOUT_MS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "SQLITE_PATH",
        toml_key: "sqlite.path",
        apply: Some(|c, v| {
            c.sqlite.path = PathBuf::from(v);
            Ok(())
        }),
    },
    EnvVar {
        name: "ANALYTICS_RETENTION_DAYS",
        toml_key: "analytics.retention_days",
        apply: Some(|c, v| {
            c.analytics.retention_days = parsed("ANALYTICS_RETENTION_DAYS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "CACHE_TTL_SECS",
        toml_key: "cache.ttl_secs",
        apply: Some(|c, v| {
            c.cache.ttl_secs = parsed("CACHE_TTL_SECS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "L1_MAX_BYTES",
        toml_key: "cache.l1_max_bytes",
        apply: Some(|c, v| {
            c.cache.l1_max_bytes = parsed("L1_MAX_BYTES", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "EDGE_REGION",
        toml_key: "edge_region",
        apply: Some(|c, v| {
            c.edge_region = v.to_owned();
            Ok(())
        }),
    },
    EnvVar {
        name: "FLY_REGION",
        toml_key: "—",
        apply: None,
    },
    EnvVar {
        name: "ADMIN_TOKEN",
        toml_key: "admin_token",
        apply: Some(|c, v| {
            c.admin_token = Some(Secret::new(v));
            Ok(())
        }),
    },
    EnvVar {
        name: "MAX_BODY_BYTES",
        toml_key: "server.max_body_bytes",
        apply: Some(|c, v| {
            c.server.max_body_bytes = parsed("MAX_BODY_BYTES", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "SHUTDOWN_GRACE_SECS",
        toml_key: "server.shutdown_grace_secs",
        apply: Some(|c, v| {
            c.server.shutdown_grace_secs = parsed("SHUTDOWN_GRACE_SECS", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "SEMANTIC_CACHE",
        toml_key: "semantic.mode",
        apply: Some(|c, v| {
            c.semantic.mode = parsed("SEMANTIC_CACHE", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "SEMANTIC_THRESHOLD",
        toml_key: "semantic.threshold",
        apply: Some(|c, v| {
            c.semantic.threshold = parsed("SEMANTIC_THRESHOLD", v)?;
            Ok(())
        }),
    },
    EnvVar {
        name: "EMBEDDINGS_MODEL",
        toml_key: "semantic.embedding_model",
        apply: Some(|c, v| {
            c.semantic.embedding_model = v.trim().to_owned();
            Ok(())
        }),
    },
    EnvVar {
        name: "RUST_LOG",
        toml_key: "log",
        apply: Some(|c, v| {
            c.log = v.to_owned();
            Ok(())
        }),
    },
    EnvVar {
        name: "LOG_FORMAT",
        toml_key: "—",
        apply: None,
    },
    EnvVar {
        name: "OTEL_EXPORTER_OTLP_ENDPOINT",
        toml_key: "—",
        apply: None,
    },
];

/// The names in [`ENV`].
pub fn env_var_names() -> impl Iterator<Item = &'static str> {
    ENV.iter().map(|v| v.name)
}

impl Config {
    /// Applies every set (non-empty) variable of [`ENV`], then the region keys.
    pub(super) fn apply_env(&mut self, env: &dyn EnvSource) -> Result<(), ConfigError> {
        let get = |key: &str| env.get(key).filter(|v| !v.is_empty());
        for var in ENV {
            if let (Some(apply), Some(value)) = (var.apply, get(var.name)) {
                apply(self, &value)?;
            }
        }
        if get("EDGE_REGION").is_none()
            && let Some(fly) = get("FLY_REGION")
        {
            self.edge_region = fly;
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
}

/// Comma-separated values (keys, URLs), trimmed, empty ones dropped.
pub(super) fn split_keys(raw: &str) -> Vec<Secret> {
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .collect()
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
        if keys.insert(tenant.to_owned(), Secret::new(key)).is_some() {
            return Err(invalid(
                "GATEWAY_API_KEYS",
                format!("tenant {tenant:?} appears twice"),
            ));
        }
    }
    Ok(keys)
}
