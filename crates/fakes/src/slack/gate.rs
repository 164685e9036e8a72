//! What every request goes through before its handler, in this order: it is recorded,
//! delayed, and failed if a test asked for it (or if chaos picks it). Bearer-token
//! checks and the per-channel rate limit live in the handlers, because Slack answers
//! them in each method's own way (an HTTP 200 `ok:false`, or a 429).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::RecordedRequest;

use super::replies;
use super::state::{ChaosPick, FailureKind, Shared, SlackFailure};

/// Far larger than any message Slack accepts (40,000 characters of text).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let webhook = parts.uri.path().starts_with("/services/");
    let posting = parts.uri.path() == "/chat.postMessage";
    let (delay, failure, chaos) = {
        let mut state = shared.state();
        state.requests.push(RecordedRequest::new(&parts, &bytes));
        let failure = state.failures.pop_front();
        let chaos = if failure.is_none() && posting {
            state.pick_chaos()
        } else {
            None
        };
        (state.delay, failure, chaos)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut hold = None;
    match (failure, chaos) {
        (
            Some(SlackFailure {
                kind: FailureKind::AppliedThenHang(d),
                ..
            }),
            _,
        )
        | (None, Some(ChaosPick::AppliedThenHang(d))) => hold = Some(d),
        (Some(failure), _) => return replies::injected(&failure, webhook),
        (None, Some(ChaosPick::RateLimited)) => {
            return replies::rate_limited(Some("1"), webhook);
        }
        (None, Some(ChaosPick::Error)) => return replies::api_error("internal_error"),
        (None, None) => {}
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(hold) = hold {
        hang(hold).await;
    }
    response
}

/// Holds the answer; the client has usually given up (and closed the connection) by
/// the time this returns.
async fn hang(hold: Duration) {
    tokio::time::sleep(hold).await;
}
