//! `GET /admin/dashboard`: one self-contained page (no CDN: it works on a private
//! network) that draws the analytics in the browser. The admin token is asked once, on a
//! login form; the page then lives on an HttpOnly, SameSite=Strict session cookie that
//! the admin routes accept like the bearer token. Without a session only the form shows.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::admin::{SESSION_COOKIE, authorize, session_value};
use crate::error::ApiError;
use crate::state::AppState;

const PAGE: &str = include_str!("dashboard.html");

fn login_page(message: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edge-gateway · sign in</title>
<style>body{{font:14px system-ui,sans-serif;display:grid;place-items:center;height:100vh;margin:0;background:#f6f8fb}}
form{{background:#fff;border:1px solid #e3e7ef;border-radius:8px;padding:24px;display:grid;gap:10px;min-width:300px}}
input,button{{font:inherit;padding:6px 8px}} p{{color:#d9472b;margin:0}}</style></head>
<body><form method="post" action="/admin/dashboard/login"><b>edge-gateway dashboard</b>
<label>Admin token <input id="token" name="token" type="password" autocomplete="current-password" required></label>
<button id="sign-in" type="submit">Sign in</button><p id="message">{message}</p></form></body></html>"#
    )
}

/// Pages must not be framed or cached (they show the operator's figures).
fn page(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

pub async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authorize(&state, &headers) {
        Ok(()) => page(StatusCode::OK, PAGE.to_owned()),
        Err(ApiError::AdminDisabled) => ApiError::AdminDisabled.into_response(),
        Err(_) => page(StatusCode::OK, login_page("")),
    }
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Response {
    let Some(token) = &state.config.admin_token else {
        return ApiError::AdminDisabled.into_response();
    };
    let mut probe = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", form.token));
    if let Ok(value) = bearer {
        probe.insert(header::AUTHORIZATION, value);
    }
    if authorize(&state, &probe).is_err() {
        return page(
            StatusCode::UNAUTHORIZED,
            login_page("That is not the admin token."),
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=43200",
        session_value(token.expose())
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/admin/dashboard")],
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
