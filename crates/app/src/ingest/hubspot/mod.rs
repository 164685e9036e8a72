//! `POST /webhooks/hubspot`: content type, size limit, signature, parse, one durable
//! append, then 200. Every rejection is journaled with its reason; nothing else is
//! stored for it.

pub mod payload;
pub mod signature;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use followthrough_store::InboxBatch;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::ingest::body;
use crate::journal;
use crate::server::{AppState, RequestId};
use signature::{SignatureHeaders, SignedParts};

pub async fn receive(
    State(state): State<AppState>,
    request_id: RequestId,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    match accept(&state, &request_id, &uri, &headers, body).await {
        Ok(response) => Ok(response),
        Err(error) => {
            if error.status != StatusCode::SERVICE_UNAVAILABLE
                && error.status != StatusCode::INTERNAL_SERVER_ERROR
            {
                reject(&state, &request_id, &error).await;
            }
            Err(error)
        }
    }
}

async fn accept(
    state: &AppState,
    request_id: &RequestId,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    body::require_json(headers)?;
    let body = body::read_limited(headers, body, state.max_body_bytes).await?;

    let hubspot = &state.hubspot;
    if hubspot.secret.expose_secret().is_empty() {
        // With no secret anyone could sign; refuse rather than accept unauthenticated data.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "source_not_configured",
            "sources.hubspot.client_secret is not configured on this server",
        ));
    }
    let full_uri = public_uri(&hubspot.public_url, uri);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = signature::verify(
        hubspot.secret.expose_secret().as_bytes(),
        SignedParts {
            method: "POST",
            uri: &full_uri,
            body: &body,
        },
        SignatureHeaders {
            v3: header(signature::HEADER_V3),
            timestamp: header(signature::HEADER_TIMESTAMP),
            v1_v2: header(signature::HEADER_V1_V2),
            version: header(signature::HEADER_VERSION),
        },
        &hubspot.policy,
        state.clock.now(),
    )
    .map_err(|error| ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string()))?;

    let received_at = state.clock.now();
    let events = payload::parse_batch(&body, received_at).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            error.to_string(),
        )
    })?;
    let count = events.len();
    let outcome = state
        .store
        .append_inbox(InboxBatch {
            events,
            journal: journal::webhook_accepted(
                received_at,
                payload::SOURCE,
                request_id.as_str(),
                count,
            ),
        })
        .await
        .map_err(ApiError::unavailable)?;
    if outcome.inserted > 0 {
        state.engine_wake.notify_one();
    }
    crate::metrics::webhook(payload::SOURCE, "accepted");
    crate::metrics::webhook_events(payload::SOURCE, outcome.inserted, outcome.duplicates);
    tracing::info!(
        signature = verified.version,
        inserted = outcome.inserted,
        duplicates = outcome.duplicates,
        "hubspot webhook accepted"
    );
    Ok(Json(json!({
        "accepted": outcome.inserted,
        "duplicates": outcome.duplicates,
        "request_id": request_id.as_str(),
    })))
}

/// The URL HubSpot called: the configured public base, then the request's path and query.
fn public_uri(base: &url::Url, uri: &Uri) -> String {
    let base = base.as_str().trim_end_matches('/');
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    format!("{base}{path_and_query}")
}

async fn reject(state: &AppState, request_id: &RequestId, error: &ApiError) {
    // The request span already carries the request id.
    tracing::warn!(
        status = error.status.as_u16(),
        code = error.code,
        "hubspot webhook rejected: {}",
        error.message
    );
    crate::metrics::webhook(payload::SOURCE, "rejected");
    let mut entry = journal::webhook_rejected(
        state.clock.now(),
        payload::SOURCE,
        request_id.as_str(),
        error.status.as_u16(),
        error.code,
        &error.message,
    );
    state.redactor.seal(std::slice::from_mut(&mut entry));
    if let Err(store_error) = state.store.journal(vec![entry]).await {
        tracing::error!(error = %store_error, "could not journal a rejected webhook");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_uri_keeps_base_prefix_path_and_query() {
        let base = url::Url::parse("https://crm-hooks.example.com/ft/").unwrap();
        let uri: Uri = "/webhooks/hubspot?portal=1".parse().unwrap();
        assert_eq!(
            public_uri(&base, &uri),
            "https://crm-hooks.example.com/ft/webhooks/hubspot?portal=1"
        );
        let base = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            public_uri(&base, &"/webhooks/hubspot".parse().unwrap()),
            "http://127.0.0.1:8080/webhooks/hubspot"
        );
    }
}
