//! Slack's answers: the Web API's HTTP 200 `{"ok":..}` envelope, its 429, and the
//! incoming webhooks' plain-text replies.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{FailureKind, SlackFailure};

/// `{"ok":true, ..fields}` with HTTP 200.
pub(crate) fn api_ok(fields: Value) -> Response {
    let mut body = json!({"ok": true});
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    Json(body).into_response()
}

/// `{"ok":false,"error":<code>}` with HTTP 200: how the Web API reports most failures.
pub(crate) fn api_error(code: &str) -> Response {
    Json(json!({"ok": false, "error": code})).into_response()
}

/// HTTP 429, with `Retry-After` in seconds when given.
pub(crate) fn rate_limited(retry_after: Option<&str>, webhook: bool) -> Response {
    let mut response = if webhook {
        plain(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    } else {
        let body = json!({"ok": false, "error": "ratelimited"});
        (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
    };
    if let Some(Ok(value)) = retry_after.map(HeaderValue::from_str) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A webhook's plain-text answer (`ok`, `invalid_payload`, ...).
pub(crate) fn plain(status: StatusCode, text: &str) -> Response {
    let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, content_type, text.to_owned()).into_response()
}

/// The status an incoming webhook sends a given error code with.
pub(crate) fn webhook_status(code: &str) -> StatusCode {
    match code {
        "invalid_payload" | "no_text" | "invalid_token" => StatusCode::BAD_REQUEST,
        "action_prohibited" => StatusCode::FORBIDDEN,
        "channel_not_found" | "no_service" => StatusCode::NOT_FOUND,
        "channel_is_archived" => StatusCode::GONE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to a request that a test told to fail.
pub(crate) fn injected(failure: &SlackFailure, webhook: bool) -> Response {
    let retry_after = failure.retry_after.as_deref();
    let mut response = match &failure.kind {
        FailureKind::Status(429) => return rate_limited(retry_after, webhook),
        FailureKind::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            gateway_page(status)
        }
        FailureKind::Error(code) if webhook => plain(webhook_status(code), code),
        FailureKind::Error(code) => api_error(code),
        // The gate handles this one by running the handler.
        FailureKind::AppliedThenHang(_) => api_error("internal_error"),
    };
    if let Some(Ok(value)) = retry_after.map(HeaderValue::from_str) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// What Slack's edge sends for 5xx: an HTML page, not the JSON envelope.
fn gateway_page(status: StatusCode) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = format!(
        "<html><head><title>{code} {reason}</title></head><body><h1>{reason}</h1></body></html>"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// `not_authed` or `invalid_auth` unless the request carries `Bearer <token>`.
pub(crate) fn unauthenticated(headers: &axum::http::HeaderMap, token: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => Some(api_error("not_authed")),
        Some(given) if given != token => Some(api_error("invalid_auth")),
        Some(_) => None,
    }
}

/// Whole seconds to wait, at least one (Slack never sends `Retry-After: 0`).
pub(crate) fn retry_seconds(wait: std::time::Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}
