//! Who is calling, and with which key the relay is called for them. Pass-through mode
//! forwards the client's own `authorization` and namespaces the cache by a hash of it;
//! managed mode accepts only configured gateway keys and calls the relay with ours.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ApiError;

/// The result of authenticating one request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Cache partition: the tenant name (managed) or `key-<hash prefix>` (pass-through).
    pub namespace: Arc<str>,
    /// Managed mode: the client's `authorization` stays here; the relay gets a pool key.
    pub managed: bool,
}

pub enum Authenticator {
    PassThrough,
    Managed {
        /// SHA-256 of each accepted key to its tenant: lookups compare digests, not keys.
        tenants: HashMap<[u8; 32], Arc<str>>,
    },
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|k| !k.is_empty())
}

impl Authenticator {
    pub fn from_config(config: &Config) -> Result<Self, ApiError> {
        if !config.is_managed() {
            return Ok(Self::PassThrough);
        }
        let tenants = config
            .auth
            .gateway_api_keys
            .iter()
            .map(|(tenant, key)| (digest(key.expose().as_bytes()), Arc::from(tenant.as_str())))
            .collect();
        Ok(Self::Managed { tenants })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        match self {
            Self::PassThrough => {
                let namespace = match headers.get(header::AUTHORIZATION) {
                    Some(v) => {
                        let d = digest(v.as_bytes());
                        format!("key-{}", hex::encode(&d[..8])).into()
                    }
                    None => Arc::from("anonymous"),
                };
                Ok(Caller {
                    namespace,
                    managed: false,
                })
            }
            Self::Managed { tenants } => {
                let key = bearer(headers).ok_or(ApiError::Unauthorized(
                    "missing API key: send 'Authorization: Bearer <gateway key>'",
                ))?;
                let tenant = tenants
                    .get(&digest(key))
                    .ok_or(ApiError::Unauthorized("invalid API key"))?;
                Ok(Caller {
                    namespace: tenant.clone(),
                    managed: true,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn pass_through_namespaces_by_key_hash_never_the_key() {
        let a = Authenticator::PassThrough;
        let one = a.authenticate(&headers("Bearer sk-one")).unwrap();
        let two = a.authenticate(&headers("Bearer sk-two")).unwrap();
        assert_ne!(one.namespace, two.namespace);
        assert!(!one.namespace.contains("sk-one"));
        assert!(!one.managed);
        assert_eq!(
            a.authenticate(&HeaderMap::new())
                .unwrap()
                .namespace
                .as_ref(),
            "anonymous"
        );
    }

    #[test]
    fn managed_mode_maps_keys_to_tenants() {
        let mut config = Config::default();
        config.relay.api_key = Some(Secret::new("sk-relay"));
        config
            .auth
            .gateway_api_keys
            .insert("acme".into(), Secret::new("gw-1"));
        let a = Authenticator::from_config(&config).unwrap();
        let caller = a.authenticate(&headers("bearer gw-1")).unwrap();
        assert_eq!(caller.namespace.as_ref(), "acme");
        assert!(caller.managed);
        assert!(matches!(
            a.authenticate(&headers("Bearer gw-2")),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            a.authenticate(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            a.authenticate(&headers("Basic gw-1")),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
