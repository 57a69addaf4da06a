//! The upstream side: forwarding a request to the relay and streaming its answer back,
//! with separate connect, first-byte and idle-between-chunks timeouts.

mod client;
mod headers;

pub use client::{RelayBody, RelayClient, RelayResponse};
pub use headers::{is_hop_by_hop, request_headers_for_relay, response_headers_for_client};
