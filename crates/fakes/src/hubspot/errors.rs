//! HubSpot's error answers: the JSON error body, the 401, the 429 with its rate-limit
//! body, and the gateway pages HubSpot's edge sends for 502/503/504.

use std::hash::{BuildHasher, RandomState};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::Failure;

/// `{"status":"error","message":..,"correlationId":..,"category":..}`, HubSpot's shape.
pub(crate) fn error(status: StatusCode, category: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "status": "error",
        "message": message.into(),
        "correlationId": correlation_id(),
        "category": category,
    });
    (status, Json(body)).into_response()
}

/// A 400 with `errors[]` details (`message`, `code`), as HubSpot sends for malformed
/// inputs such as invalid associations.
pub(crate) fn bad_request_with(message: impl Into<String>, details: &[(String, &str)]) -> Response {
    let errors: Vec<_> = details
        .iter()
        .map(|(message, code)| json!({"message": message, "code": code}))
        .collect();
    let body = json!({
        "status": "error",
        "message": message.into(),
        "correlationId": correlation_id(),
        "category": "VALIDATION_ERROR",
        "errors": errors,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// One invalid property value, as listed in HubSpot's "Property values were not valid".
pub(crate) struct Invalid {
    pub name: String,
    pub error: &'static str,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(name: &str, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            error,
            message: message.into(),
        }
    }
}

/// HubSpot's answer to invalid property values: a 400 whose `message` embeds the list.
pub(crate) fn invalid_properties(invalid: &[Invalid]) -> Response {
    let list: Vec<_> = invalid
        .iter()
        .map(|i| json!({"isValid": false, "message": i.message, "error": i.error, "name": i.name}))
        .collect();
    let list = serde_json::to_string(&list).unwrap_or_default();
    bad_request(format!("Property values were not valid: {list}"))
}

/// A 409: a unique value is already taken.
pub(crate) fn conflict(message: impl Into<String>) -> Response {
    error(StatusCode::CONFLICT, "CONFLICT", message)
}

pub(crate) fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

/// An object type HubSpot would not recognise.
pub(crate) fn unknown_object_type(name: &str) -> Response {
    bad_request(format!("Unable to infer object type from: {name}"))
}

pub(crate) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and \
         you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )
}

/// The 429 for the ten-second rolling limit. HubSpot sends no `Retry-After` with it.
pub(crate) fn rate_limited() -> Response {
    let body = json!({
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": "TEN_SECONDLY_ROLLING",
    });
    (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
}

/// Something the fake does not implement: loud, so a test never passes by accident.
pub(crate) fn not_implemented(what: impl Into<String>) -> Response {
    let message = format!("the fake HubSpot does not implement {}", what.into());
    error(StatusCode::NOT_IMPLEMENTED, "NOT_IMPLEMENTED", message)
}

/// The answer to a request that a test told to fail.
pub(crate) fn injected(failure: &Failure) -> Response {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match status.as_u16() {
        429 => rate_limited(),
        401 => unauthorized(),
        // HubSpot's edge answers these with an HTML page, not the JSON error shape.
        502..=504 | 520..=524 => gateway_page(status),
        500..=599 => error(status, "INTERNAL_ERROR", "internal error"),
        403 => error(
            status,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes",
        ),
        404 => not_found("resource not found"),
        423 => error(status, "LOCKED", "The resource is locked; try again later"),
        _ => error(status, "VALIDATION_ERROR", "injected failure"),
    };
    *response.status_mut() = status;
    let retry_after = failure.retry_after.as_deref().map(HeaderValue::from_str);
    if let Some(Ok(value)) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn gateway_page(status: StatusCode) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = format!(
        "<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}</h1></center></body></html>"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// A random UUID-shaped id, like the ones HubSpot puts in every error.
pub(crate) fn correlation_id() -> String {
    let a = RandomState::new().hash_one(0u8);
    let b = RandomState::new().hash_one(1u8);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}
