//! What a handler takes from a request, with every refusal answered as JSON: the bearer
//! token ([`Admin`]), and query strings, path segments and bodies whose axum rejections
//! would otherwise be plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::api_error::ApiError;
use crate::auth::TokenId;
use crate::server::AppState;

/// A request made with one of the configured admin tokens. Its id (a digest prefix,
/// never the token) says who did what in the journal.
#[derive(Debug, Clone)]
pub struct Admin {
    pub token: TokenId,
}

impl Admin {
    /// How the journal names this caller.
    pub fn journal_name(&self) -> String {
        format!("the admin API (token {})", self.token.0)
    }
}

/// A refused token: 401 with `WWW-Authenticate`, as RFC 6750 asks, so a client knows
/// which scheme to use. The message never repeats what was presented.
#[derive(Debug)]
pub struct Unauthorized {
    message: &'static str,
    /// A token was presented and is not valid (RFC 6750's `invalid_token`), as opposed
    /// to no usable credentials at all.
    invalid_token: bool,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let challenge = if self.invalid_token {
            r#"Bearer realm="followthrough", error="invalid_token""#
        } else {
            r#"Bearer realm="followthrough""#
        };
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", self.message).into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        response
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Unauthorized> {
        let refuse = |message, invalid_token| {
            tracing::info!(reason = message, "admin API: request refused");
            Unauthorized {
                message,
                invalid_token,
            }
        };
        let tokens = &state.admin.tokens;
        if tokens.is_empty() {
            return Err(refuse(
                "no admin token is configured (api.tokens is empty), so the admin API refuses every request; create one with `followthrough token`",
                false,
            ));
        }
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(refuse(
                "missing `Authorization: Bearer <token>` header",
                false,
            ));
        };
        let header = header.to_str().unwrap_or_default();
        let is_bearer = header
            .trim()
            .split_once(' ')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        if !is_bearer {
            return Err(refuse(
                "the Authorization header must use the Bearer scheme: `Authorization: Bearer <token>`",
                false,
            ));
        }
        match tokens.verify_bearer(header) {
            Some(token) => Ok(Admin { token }),
            None => Err(refuse("the bearer token is not valid", true)),
        }
    }
}

/// `Query<T>` whose rejection is a JSON 400 saying which parameter was wrong.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| bad_request("bad_query", rejection.body_text()))
    }
}

/// `Path<T>` whose rejection is a JSON 400 (a dead letter id that is not a number...).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| bad_request("bad_path", rejection.body_text()))
    }
}

/// `Json<T>` whose rejection is JSON too: 400 for a body that does not parse or fit,
/// 415 without `Content-Type: application/json`, 413 over the size limit.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Json(value))
            .map_err(|rejection| {
                // axum says 422 for JSON of the wrong shape; DESIGN.md promises 400 for
                // any body that is not what the route takes.
                let (status, code) = match rejection.status() {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    }
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                    }
                    _ => (StatusCode::BAD_REQUEST, "bad_body"),
                };
                ApiError::new(status, code, rejection.body_text())
            })
    }
}

pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}
