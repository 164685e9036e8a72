//! Incoming webhooks: `POST /services/T../B../<secret>` with `{"text"}` -> plain `ok`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::replies::{plain, rate_limited, retry_seconds};
use super::state::{PostedMessage, Shared};

pub(crate) async fn post(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let mut state = shared.state();
    let Some(channel) = state.webhooks.get(uri.path()).cloned() else {
        return plain(StatusCode::NOT_FOUND, "no_service");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    let text = body["text"].as_str().unwrap_or_default();
    let blocks = body.get("blocks").filter(|b| !b.is_null()).cloned();
    if text.trim().is_empty() && blocks.is_none() {
        return plain(StatusCode::BAD_REQUEST, "no_text");
    }
    match state.channel(&channel) {
        None => return plain(StatusCode::NOT_FOUND, "channel_not_found"),
        Some(found) if found.archived => return plain(StatusCode::GONE, "channel_is_archived"),
        Some(_) => {}
    }
    let now = Instant::now();
    if let Err(wait) = state.admit(channel.trim_start_matches('#'), now) {
        return rate_limited(Some(&retry_seconds(wait)), true);
    }
    state.messages.push(PostedMessage {
        channel,
        text: text.to_owned(),
        blocks,
        ts: String::new(),
        via_webhook: true,
        at: now,
    });
    plain(StatusCode::OK, "ok")
}
