//! Pipedrive's answers: `{"success":true,"data":..}` and the error shape
//! `{"success":false,"error":..,"error_info":..,"errorCode":..}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{FailureKind, PipedriveFailure};

const ERROR_INFO: &str =
    "Please check developers.pipedrive.com for more information about Pipedrive API.";

pub(crate) fn ok(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({"success": true, "data": data}))).into_response()
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "success": false,
        "error": message,
        "error_info": ERROR_INFO,
        "data": null,
        "additional_data": null,
        "errorCode": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

pub(crate) fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

pub(crate) fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized access")
}

/// The answer to a request that a test told to fail.
pub(crate) fn injected(failure: &PipedriveFailure) -> Response {
    let code = match failure.kind {
        FailureKind::Status(code) => code,
        FailureKind::AppliedThenHang(_) => 500,
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match code {
        429 => error(status, "Request over limit"),
        502..=504 => {
            let page = format!("<html><body><h1>{code}</h1></body></html>");
            (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
        401 => unauthorized(),
        403 => error(status, "You do not have permissions to perform this action"),
        404 => error(status, "Not found"),
        500..=599 => error(status, "Internal server error"),
        _ => error(status, "Injected failure"),
    };
    let retry_after = failure.retry_after.as_deref().map(HeaderValue::from_str);
    if let Some(Ok(value)) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
