//! Who is calling, and with which key the relay is called for them. Pass-through mode
//! forwards the client's own credential and namespaces the cache by a hash of it;
//! managed mode accepts only configured gateway keys and calls the relay with ours.
//!
//! A credential is `Authorization: Bearer KEY` or `api-key: KEY` (Azure-style clients).
//! Two in one request are ambiguous (which one did the relay check?) and get a 400; none
//! gets a 401 before any lookup, unless the operator allows anonymous callers, who then
//! share the namespace `anonymous`. So no caller can read another's entries by sending
//! no key, a key the relay rejects, or a different header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ApiError;

/// Azure-style credential header.
pub const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// The result of authenticating one request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Cache partition: the tenant name (managed) or `key-<hash prefix>` (pass-through).
    pub namespace: Arc<str>,
    /// Managed mode: the client's credential stays here; the relay gets a pool key.
    pub managed: bool,
}

pub enum Authenticator {
    PassThrough {
        allow_anonymous: bool,
    },
    Managed {
        /// SHA-256 of each accepted key to its tenant: lookups compare digests, not keys.
        tenants: HashMap<[u8; 32], Arc<str>>,
    },
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|k| !k.is_empty())
}

/// The request's one credential: `Ok(None)` when it has none, 400 when it has two, 401
/// when `Authorization` is not a usable bearer token.
fn credential(headers: &HeaderMap) -> Result<Option<&[u8]>, ApiError> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let mut api_key = headers.get_all(API_KEY).iter();
    let (auth, second_auth) = (authorization.next(), authorization.next());
    let (key, second_key) = (api_key.next(), api_key.next());
    let count = [auth, second_auth, key, second_key]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if count > 1 {
        return Err(ApiError::InvalidRequest {
            message: "send one credential: 'Authorization: Bearer <key>' or 'api-key: <key>', not both or twice".into(),
            param: None,
            code: "ambiguous_credentials",
        });
    }
    if let Some(value) = auth {
        return bearer_token(value.as_bytes())
            .map(Some)
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be 'Bearer <key>'",
            ));
    }
    Ok(key
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty()))
}

/// The last credential one connection presented, and who that was. Keep-alive clients
/// send the same `Authorization` on every request; comparing its bytes to the last one
/// is cheaper than hashing and formatting the namespace again (a tenth of a cache hit's
/// work in the profile). Authentication is a pure function of that one header, so the
/// remembered caller is exactly what authenticating again would give.
#[derive(Default)]
pub struct ConnAuth(Mutex<Option<(HeaderValue, Caller)>>);

impl ConnAuth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(HeaderValue, Caller)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The request's `Authorization` value when it is its only credential header.
fn sole_authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let value = all.next()?;
    (all.next().is_none() && !headers.contains_key(API_KEY)).then_some(value)
}

impl Authenticator {
    /// As [`Authenticator::authenticate`], remembering the caller for the connection.
    pub fn authenticate_on(
        &self,
        headers: &HeaderMap,
        conn: &ConnAuth,
    ) -> Result<Caller, ApiError> {
        let Some(value) = sole_authorization(headers) else {
            return self.authenticate(headers);
        };
        if let Some((seen, caller)) = &*conn.lock()
            && seen == value
        {
            return Ok(caller.clone());
        }
        let caller = self.authenticate(headers)?;
        *conn.lock() = Some((value.clone(), caller.clone()));
        Ok(caller)
    }

    pub fn from_config(config: &Config) -> Result<Self, ApiError> {
        if !config.is_managed() {
            return Ok(Self::PassThrough {
                allow_anonymous: config.auth.allow_anonymous,
            });
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
        let presented = credential(headers)?;
        match self {
            Self::PassThrough { allow_anonymous } => {
                let namespace = match presented {
                    Some(key) => {
                        let d = digest(key);
                        format!("key-{}", hex::encode(&d[..8])).into()
                    }
                    None if *allow_anonymous => Arc::from("anonymous"),
                    None => {
                        return Err(ApiError::Unauthorized(
                            "missing API key: send 'Authorization: Bearer <key>' or 'api-key: <key>'",
                        ));
                    }
                };
                Ok(Caller {
                    namespace,
                    managed: false,
                })
            }
            Self::Managed { tenants } => {
                let key = presented.ok_or(ApiError::Unauthorized(
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
        let a = Authenticator::PassThrough {
            allow_anonymous: false,
        };
        let one = a.authenticate(&headers("Bearer sk-one")).unwrap();
        let two = a.authenticate(&headers("Bearer sk-two")).unwrap();
        assert_ne!(one.namespace, two.namespace);
        assert!(!one.namespace.contains("sk-one"));
        assert!(!one.managed);
        let mut azure = HeaderMap::new();
        azure.insert(API_KEY, HeaderValue::from_static("sk-one"));
        assert_eq!(
            a.authenticate(&azure).unwrap().namespace,
            one.namespace,
            "api-key is the same credential as a bearer token"
        );
        assert!(matches!(
            a.authenticate(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
        let mut both = headers("Bearer sk-one");
        both.insert(API_KEY, HeaderValue::from_static("sk-two"));
        assert!(matches!(
            a.authenticate(&both),
            Err(ApiError::InvalidRequest { .. })
        ));
        let open = Authenticator::PassThrough {
            allow_anonymous: true,
        };
        assert_eq!(
            open.authenticate(&HeaderMap::new())
                .unwrap()
                .namespace
                .as_ref(),
            "anonymous"
        );
    }

    /// Managed mode with one tenant, `acme`, whose key is `gw-1`.
    fn managed_acme() -> Authenticator {
        let mut config = Config::default();
        config.relay.api_key = Some(Secret::new("sk-relay"));
        config
            .auth
            .gateway_api_keys
            .insert("acme".into(), Secret::new("gw-1"));
        Authenticator::from_config(&config).unwrap()
    }

    #[test]
    fn a_connection_remembers_its_caller_exactly_as_authenticating_again_would() {
        let pass = Authenticator::PassThrough {
            allow_anonymous: false,
        };
        let managed = managed_acme();
        let mut twice = headers("Bearer sk-one");
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-one"),
        );
        let mut with_api_key = headers("Bearer gw-1");
        with_api_key.insert(API_KEY, HeaderValue::from_static("gw-1"));
        let sequence = [
            headers("Bearer sk-one"),
            headers("Bearer sk-one"),
            headers("Bearer gw-1"),
            headers("Bearer sk-two"),
            with_api_key,
            twice,
            headers("Basic sk-one"),
            HeaderMap::new(),
            headers("Bearer gw-1"),
            headers("Bearer sk-one"),
        ];
        for auth in [&pass, &managed] {
            let conn = ConnAuth::default();
            for h in &sequence {
                let fresh = auth.authenticate(h).map(|c| (c.namespace, c.managed));
                let remembered = auth
                    .authenticate_on(h, &conn)
                    .map(|c| (c.namespace, c.managed));
                assert_eq!(format!("{fresh:?}"), format!("{remembered:?}"), "{h:?}");
            }
        }
    }

    #[test]
    fn managed_mode_maps_keys_to_tenants() {
        let a = managed_acme();
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
