//! Which headers cross the gateway. Hop-by-hop headers (RFC 9110 §7.6.1) describe one
//! connection and never travel on; our own cache-control headers stop here; the client's
//! `authorization` reaches the relay only in pass-through mode.

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
/// managed mode the client's `authorization` (the relay gets a pool key instead).
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
            || (managed && name == header::AUTHORIZATION)
            || name.as_str().starts_with("x-cache-")
            || connection_listed(incoming, name);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Headers of a relay answer to pass to the client, less hop-by-hop ones.
pub fn response_headers_for_client(relay: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(relay.len() + 4);
    for (name, value) in relay {
        if !is_hop_by_hop(name) && !connection_listed(relay, name) {
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
        ]);
        let out = request_headers_for_relay(&h, true, true);
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert!(out.get(header::ACCEPT_ENCODING).is_none());
        let passthrough = request_headers_for_relay(&h, false, false);
        assert_eq!(passthrough[header::AUTHORIZATION], "Bearer client");
        assert_eq!(passthrough[header::ACCEPT_ENCODING], "gzip");
    }
}
