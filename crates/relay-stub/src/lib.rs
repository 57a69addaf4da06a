//! An OpenAI-compatible relay stand-in for tests, benchmarks and the offline demo
//! (`cargo run -p relay-stub`). Its own crate: test code is
//! not part of the gateway's library or its production image. It answers chat completions (plain and SSE, with
//! tool calls and `reasoning_content`), legacy completions, embeddings and models;
//! counts calls; and can be told to fail with a status (optionally with `retry-after`),
//! delay, hang, pause a stream at a gate, or break a stream in the middle. Tests steer it
//! through [`RelayStub::set`]; other processes through `POST /_stub/behavior`.

mod answers;
mod routes;
mod server;

pub use server::{Behavior, RelayStub};
