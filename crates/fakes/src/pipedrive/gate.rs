//! What every request goes through before its handler, in this order: it is recorded,
//! delayed, failed if a test asked for it, and checked for the API token (the
//! `x-api-token` header, or the legacy `api_token` query parameter).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::RecordedRequest;

use super::replies;
use super::state::{FailureKind, Shared};

const BODY_LIMIT: usize = 4 * 1024 * 1024;

pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let (delay, failure) = {
        let mut state = shared.state();
        state.requests.push(RecordedRequest::new(&parts, &bytes));
        (state.delay, state.failures.pop_front())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let hold = match failure {
        Some(failure) => match failure.kind {
            FailureKind::AppliedThenHang(hold) => Some(hold),
            FailureKind::Status(_) => return replies::injected(&failure),
        },
        None => None,
    };
    if !authorized(&parts, &shared.token) {
        return replies::unauthorized();
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    response
}

fn authorized(parts: &axum::http::request::Parts, token: &str) -> bool {
    let header = parts
        .headers
        .get("x-api-token")
        .and_then(|value| value.to_str().ok());
    if let Some(given) = header {
        return given == token;
    }
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) else {
        return false;
    };
    pairs
        .iter()
        .any(|(key, value)| key == "api_token" && value == token)
}
