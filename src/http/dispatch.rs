//! The front door: a `POST` to one of the cacheable routes goes straight to its handler,
//! with the guard's checks and the observer's bookkeeping done inline; every other request
//! goes through the axum router and its middleware. The router does the same for the
//! cacheable routes, at the price of matching, two middleware layers and a boxed service
//! call per request: on a cache hit that was a quarter of the gateway's own work
//! (profile in bench/RESULTS.md).

use std::convert::Infallible;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower::Service;

use crate::auth::ConnAuth;
use crate::endpoint::Endpoint;
use crate::state::AppState;

#[derive(Clone)]
pub struct Dispatch {
    state: AppState,
    router: Router,
}

impl Dispatch {
    pub fn new(state: AppState) -> Self {
        Self {
            router: super::router(state.clone()),
            state,
        }
    }

    /// Answers one request from the connection whose last caller `conn` remembers.
    pub async fn call(&self, request: Request, conn: &ConnAuth) -> Response {
        if request.method() == Method::POST
            && let Some(endpoint) = Endpoint::from_path(request.uri().path())
        {
            return self.cacheable(endpoint, request, conn).await;
        }
        // Boxed: the router's future is large, and inline it would be moved with every
        // request's future, the cacheable ones included.
        let result: Result<Response, Infallible> =
            Box::pin(self.router.clone().call(request)).await;
        match result {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    async fn cacheable(&self, endpoint: Endpoint, request: Request, conn: &ConnAuth) -> Response {
        let started = Instant::now();
        let _slot = match super::guard::admit(&self.state, request.headers()) {
            Ok(slot) => slot,
            Err(refused) => return refused.into_response(),
        };
        let (mut response, latency_ms) =
            super::cacheable::handle(self.state.clone(), endpoint, request, started, conn).await;
        super::observe::observed(&self.state, endpoint, latency_ms, &mut response);
        response
    }
}
