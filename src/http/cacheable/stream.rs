//! A streamed miss: forwarded chunk by chunk as it arrives, recorded, stored once
//! `[DONE]` has passed; usage the client did not ask for is stripped.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use tracing::Instrument;

use super::mark_relayed;
use super::miss::{Miss, settle};
use crate::cache::{CachedAnswer, FlightGuard, FlightOutcome, StreamRecorder};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::request_log::RequestLog;
use crate::http::usage_strip::UsageStrip;
use crate::relay::{RelayResponse, response_headers_for_client};

impl Miss {
    /// Forwards a streamed answer chunk by chunk while recording it. The relay is read
    /// by its own task, so a client that disconnects mid-stream does not waste the
    /// tokens already paid for: the answer is still completed, stored and handed to
    /// any followers. A stream that breaks ends with an SSE error event.
    pub(super) fn stream_through(
        mut self,
        relay: RelayResponse,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        mut log: RequestLog,
    ) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ApiError>>(32);
        let mut response = Response::new(Body::from_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )));
        *response.status_mut() = relay.status;
        *response.headers_mut() = response_headers_for_client(&relay.headers, self.managed);
        mark_relayed(response.headers_mut(), x_cache, self.key, &relay.region);
        let mut body = relay.body;
        // The row's latency is time to response headers, like every other row's; a stream
        // that broke after its headers still reached the client as a 200.
        log.headers_sent();
        log.answered(StatusCode::OK.as_u16());
        let work = self.state.work.clone();
        work.spawn(
            async move {
                let cut = self.state.cut.clone();
                let mut recorder = StreamRecorder::new(self.endpoint);
                // Chat and completions only: Responses events carry usage in their own shape.
                let mut strip = (!self.include_usage && self.endpoint != Endpoint::Responses)
                    .then(UsageStrip::default);
                let mut client_gone = false;
                let mut failure = None;
                loop {
                    let next = tokio::select! {
                        next = body.next() => next,
                        () = cut.cancelled() => Some(Err(ApiError::RelayTimeout(
                            "the gateway shut down mid-stream",
                        ))),
                    };
                    let Some(chunk) = next else { break };
                    match chunk {
                        Ok(bytes) => {
                            recorder.feed(&bytes);
                            let out = match &mut strip {
                                Some(strip) => strip.feed(&bytes),
                                None => bytes,
                            };
                            if !client_gone && !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                                client_gone = true;
                            }
                        }
                        Err(error) => {
                            // The 200 is sent: the client learns of the failure from a
                            // last SSE event, as its SDK expects, not a cut connection.
                            if !client_gone {
                                let _ = tx.send(Ok(error.sse_event())).await;
                            }
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if let (Some(strip), None) = (strip, &failure) {
                    let rest = strip.finish();
                    if !client_gone && !rest.is_empty() {
                        let _ = tx.send(Ok(rest)).await;
                    }
                }
                drop(tx);
                let outcome = match (failure, recorder.finish()) {
                    (Some(error), _) => FlightOutcome::Failed(error),
                    (None, None) => FlightOutcome::Failed(ApiError::RelayBadResponse(
                        "the relay's stream ended without [DONE]".into(),
                    )),
                    (None, Some(mut value)) => {
                        let estimate = self.estimate_usage(&mut value).await;
                        let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                        let answer = Arc::new(self.answer(body, &value, estimate));
                        log.spent(&self.state, answer.usage);
                        let storable = CachedAnswer::storable(self.endpoint, &value);
                        self.store(store, storable, &answer).await;
                        FlightOutcome::Answer(answer)
                    }
                };
                drop(log); // the row, with the stream's usage
                settle(guard, outcome);
            }
            .in_current_span(),
        );
        response
    }
}
