//! What every request goes through before its handler, in this order: it is recorded,
//! delayed, failed if a test asked for it, checked for the bearer token, failed at
//! random under chaos, and counted against the rate limit. The rate-limit headers go on
//! every counted answer. An "applied then timed out" request runs its handler and then
//! holds the answer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::RecordedRequest;

use super::chaos::Roll;
use super::errors;
use super::state::{Failure, RATE_LIMIT_WINDOW, Shared};

/// Larger than any body a HubSpot endpoint accepts.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

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
    let mut hold = None;
    match failure {
        Some(Failure {
            hold: Some(duration),
            ..
        }) => hold = Some(duration),
        Some(failure) => return errors::injected(&failure),
        None => {}
    }
    if !authorized(&parts.headers, &shared.token) {
        return errors::unauthorized();
    }
    let roll = shared
        .state()
        .chaos
        .as_mut()
        .map_or(Roll::Normal, |c| c.roll());
    match roll {
        Roll::Normal => {}
        Roll::RateLimited { retry_after_secs } => {
            let failure = Failure::status(429).retry_after(retry_after_secs.to_string());
            return errors::injected(&failure);
        }
        Roll::Unavailable => return errors::injected(&Failure::status(503)),
        Roll::AppliedThenTimeout(duration) => hold = Some(duration),
    }
    let limit = shared
        .state()
        .rate_limit
        .as_mut()
        .map(|limit| (limit.max, limit.admit(Instant::now())));
    let mut response = match limit {
        Some((_, None)) => errors::rate_limited(),
        _ => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    if let Some((max, remaining)) = limit {
        add_rate_limit_headers(response.headers_mut(), max, remaining.unwrap_or(0));
    }
    if let Some(hold) = hold {
        // The write has happened; the client gives up waiting for the answer.
        tokio::time::sleep(hold).await;
    }
    response
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

fn add_rate_limit_headers(headers: &mut HeaderMap, max: u32, remaining: u32) {
    let interval = RATE_LIMIT_WINDOW.as_millis().to_string();
    for (name, value) in [
        ("x-hubspot-ratelimit-max", max.to_string()),
        ("x-hubspot-ratelimit-remaining", remaining.to_string()),
        ("x-hubspot-ratelimit-interval-milliseconds", interval),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
