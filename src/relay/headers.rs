//! Which headers cross the gateway. Hop-by-hop headers (RFC 9110 §7.6.1) describe one
//! connection and never travel on; our own cache-control headers stop here. In managed
//! mode tenants share the operator's relay account, so nothing that names an account or
//! a session crosses in either direction: the client's credentials, organization,
//! project and cookies stay here, and the relay's cookies and organization stay there.

use axum::http::{HeaderMap, HeaderName, header};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers that, in managed mode, would act on the operator's relay account.
const TENANT_PRIVATE: &[&str] = &[
    "authorization",
    "api-key",
    "openai-organization",
    "openai-project",
    "cookie",
];

/// Relay headers that, in managed mode, describe the operator's account or session.
const OPERATOR_PRIVATE: &[&str] = &["set-cookie", "openai-organization", "openai-project"];

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Names listed in `Connection: a, b` are hop-by-hop for this message too.
fn connection_listed(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

/// Headers to send to the relay: the client's, less hop-by-hop ones, `host` and
/// `content-length` (the HTTP client sets both), our `x-cache-*` controls, and in
/// managed mode the tenant's credentials and account headers (the relay gets a pool key
/// instead).
/// `identity_encoding` asks the relay for an uncompressed body (the gateway must read it).
pub fn request_headers_for_relay(
    incoming: &HeaderMap,
    managed: bool,
    identity_encoding: bool,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let drop = is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || (identity_encoding && name == header::ACCEPT_ENCODING)
            || (managed && TENANT_PRIVATE.contains(&name.as_str()))
            || name.as_str().starts_with("x-cache-")
            || connection_listed(incoming, name);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Headers of a relay answer to pass to the client, less hop-by-hop ones and, in
/// managed mode, the operator's account and cookies.
pub fn response_headers_for_client(relay: &HeaderMap, managed: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(relay.len() + 4);
    for (name, value) in relay {
        let private = managed && OPERATOR_PRIVATE.contains(&name.as_str());
        if !private && !is_hop_by_hop(name) && !connection_listed(relay, name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let h = map(&[
            ("connection", "x-private, keep-alive"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "gw"),
            ("content-length", "3"),
            ("x-cache-ttl", "10"),
            ("accept", "application/json"),
            ("openai-organization", "org"),
        ]);
        let out = request_headers_for_relay(&h, false, false);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "openai-organization"]);
    }

    #[test]
    fn managed_mode_keeps_the_client_key_from_the_relay() {
        let h = map(&[
            ("authorization", "Bearer client"),
            ("accept-encoding", "gzip"),
            ("api-key", "client"),
            ("openai-organization", "org-tenant"),
            ("openai-project", "proj-tenant"),
            ("cookie", "session=tenant"),
            ("accept", "application/json"),
        ]);
        let out = request_headers_for_relay(&h, true, true);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
        let relay = map(&[
            ("set-cookie", "__cf_bm=operator"),
            ("openai-organization", "org-operator"),
            ("openai-project", "proj-operator"),
            ("x-request-id", "req-1"),
        ]);
        let names: Vec<_> = response_headers_for_client(&relay, true)
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(names, ["x-request-id"]);
        assert_eq!(response_headers_for_client(&relay, false).len(), 4);
        let passthrough = request_headers_for_relay(&h, false, false);
        assert_eq!(passthrough[header::AUTHORIZATION], "Bearer client");
        assert_eq!(passthrough[header::ACCEPT_ENCODING], "gzip");
    }
}
