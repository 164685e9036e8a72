//! `POST /chat.postMessage`: to a channel (by id or name) or to a user id (a DM).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::replies::{api_error, api_ok, rate_limited, retry_seconds, unauthenticated};
use super::state::{PostedMessage, Shared};

pub(crate) async fn post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unauthenticated(&headers, &shared.token) {
        return refusal;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return api_error("invalid_json");
    };
    let channel = body["channel"].as_str().unwrap_or_default();
    let text = body["text"].as_str().unwrap_or_default();
    let blocks = body.get("blocks").filter(|b| !b.is_null()).cloned();
    if channel.is_empty() {
        return api_error("channel_not_found");
    }
    if text.trim().is_empty() && blocks.is_none() {
        return api_error("no_text");
    }
    let mut state = shared.state();
    let reply_channel = if state.is_user_id(channel) {
        // Slack answers with the id of the DM conversation it posted in.
        format!("D{}", channel.trim_start_matches('U'))
    } else {
        match state.channel(channel) {
            None => return api_error("channel_not_found"),
            Some(found) if found.archived => return api_error("is_archived"),
            Some(found) if !found.bot_is_member => return api_error("not_in_channel"),
            Some(_) => channel.to_owned(),
        }
    };
    let now = Instant::now();
    if let Err(wait) = state.admit(channel.trim_start_matches('#'), now) {
        return rate_limited(Some(&retry_seconds(wait)), false);
    }
    let ts = state.next_ts();
    state.messages.push(PostedMessage {
        channel: channel.to_owned(),
        text: text.to_owned(),
        blocks,
        ts: ts.clone(),
        via_webhook: false,
        at: now,
    });
    api_ok(json!({
        "channel": reply_channel,
        "ts": ts,
        "message": {"type": "message", "text": text, "ts": ts},
    }))
}
