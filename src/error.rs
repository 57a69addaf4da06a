//! The one error type a client can see. Every variant maps to a status and an
//! OpenAI-shaped body `{"error":{"message","type","param","code"}}`, so SDKs surface our
//! errors exactly like the relay's. Relay 4xx/5xx answers are not errors here: they are
//! passed through as the relay sent them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a non-object body, a missing or wrongly typed field.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: &'static str,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("rate limit reached; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the gateway is at capacity; retry shortly")]
    Overloaded,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("request headers too large: {0}")]
    HeadersTooLarge(&'static str),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("admin API is disabled (ADMIN_TOKEN is not set)")]
    AdminDisabled,
    /// The relay refused or dropped the connection.
    #[error("relay unreachable: {0}")]
    RelayUnreachable(String),
    /// The relay answered with something that is not a usable response.
    #[error("relay sent a broken response: {0}")]
    RelayBadResponse(String),
    #[error("no relay region can be tried now")]
    NoHealthyRelay,
    /// Managed mode: the relay refused the operator's key (its answer is not passed on:
    /// it may name the key or the operator's account).
    #[error("the relay rejected the gateway's credentials; the operator has to fix them")]
    RelayRejectedKey,
    #[error("relay timed out: {0}")]
    RelayTimeout(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param,
            code: "invalid_request",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound(_) | Self::AdminDisabled => StatusCode::NOT_FOUND,
            Self::RelayUnreachable(_) | Self::RelayBadResponse(_) | Self::RelayRejectedKey => {
                StatusCode::BAD_GATEWAY
            }
            Self::NoHealthyRelay => StatusCode::SERVICE_UNAVAILABLE,
            Self::RelayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::InvalidRequest { code, .. } => ("invalid_request_error", code),
            Self::Unauthorized(_) => ("invalid_request_error", "invalid_api_key"),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            Self::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            Self::Overloaded => ("api_error", "overloaded"),
            Self::RequestTimeout => ("invalid_request_error", "request_timeout"),
            Self::HeadersTooLarge(_) => ("invalid_request_error", "headers_too_large"),
            Self::NotFound(_) => ("invalid_request_error", "not_found"),
            Self::AdminDisabled => ("invalid_request_error", "admin_disabled"),
            Self::RelayUnreachable(_) => ("api_error", "relay_unreachable"),
            Self::RelayBadResponse(_) => ("api_error", "relay_bad_response"),
            Self::NoHealthyRelay => ("api_error", "no_healthy_relay"),
            Self::RelayRejectedKey => ("api_error", "relay_auth_failed"),
            Self::RelayTimeout(_) => ("api_error", "relay_timeout"),
            Self::Internal(_) => ("api_error", "internal_error"),
        }
    }

    /// A short label for metrics and analytics (low cardinality, never a message).
    pub fn code(&self) -> &'static str {
        self.kind_and_code().1
    }
}

impl ApiError {
    /// The error as an SSE `data:` event, for a stream whose 200 headers are already
    /// sent: OpenAI's SDKs raise an API error on an event that carries `error`.
    pub fn sse_event(&self) -> bytes::Bytes {
        let (kind, code) = self.kind_and_code();
        let event = json!({"error": {"message": self.to_string(), "type": kind, "param": null, "code": code}});
        bytes::Bytes::from(format!("data: {event}\n\n"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, code) = self.kind_and_code();
        let param = match &self {
            Self::InvalidRequest { param, .. } => *param,
            _ => None,
        };
        let body = json!({
            "error": {"message": self.to_string(), "type": kind, "param": param, "code": code}
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs } => Some(retry_after_secs),
            Self::Overloaded | Self::NoHealthyRelay => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_openai_shaped() {
        let all = [
            ApiError::invalid("x", Some("model")),
            ApiError::Unauthorized("bad key"),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::RateLimited {
                retry_after_secs: 3,
            },
            ApiError::RelayUnreachable("refused".into()),
            ApiError::RelayBadResponse("junk".into()),
            ApiError::NoHealthyRelay,
            ApiError::RelayTimeout("first byte"),
            ApiError::Internal("x".into()),
        ];
        let statuses: Vec<u16> = all.iter().map(|e| e.status().as_u16()).collect();
        assert_eq!(statuses, [400, 401, 413, 429, 502, 502, 503, 504, 500]);
        for e in all {
            let r = e.into_response();
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/json",
                "content type"
            );
        }
    }
}
