//! The one typed configuration, layered: built-in defaults, then an optional TOML file,
//! then environment variables (the names of `SPEC.md`). `validate()` runs before anything
//! starts, so a bad value stops the process with a message naming the key instead of
//! failing later on a request.
//!
//! - [`sections`]: one struct per TOML section, with the defaults;
//! - [`env`]: the table of environment variables (loading, the documented list and the
//!   README's table are all checked against it);
//! - `validate`: the checks serde cannot make; [`Secret`]: credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod env;
mod secret;
mod sections;
mod semantic;
mod validate;

pub use env::{ENV, EnvSource, EnvVar, ProcessEnv, env_var_names};
pub use secret::Secret;
pub use sections::*;
pub use semantic::*;

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
    pub semantic: SemanticConfig,
    /// Model name to USD per million input/output tokens; adds to and overrides the
    /// built-in table.
    pub pricing: BTreeMap<String, ModelPrice>,
    /// This instance's region name (`EDGE_REGION`, else `FLY_REGION`, else `local`).
    pub edge_region: String,
    /// Bearer token for `/admin/*`; unset disables those routes.
    pub admin_token: Option<Secret>,
    /// Tracing filter (`RUST_LOG`).
    pub log: String,
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
            semantic: SemanticConfig::default(),
            pricing: BTreeMap::new(),
            edge_region: "local".into(),
            admin_token: None,
            log: "info".into(),
        }
    }
}

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

    /// The regions in use: the configured ones, or one region `default` at `RELAY_URL`.
    /// Regions without `api_key_env` use the `RELAY_API_KEY` pool (comma-separated keys).
    pub fn effective_regions(&self) -> Vec<RegionConfig> {
        let shared = self
            .relay
            .api_key
            .as_ref()
            .map(|k| env::split_keys(k.expose()))
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
