//! A fake Slack: the Web API methods followthrough calls (`chat.postMessage`,
//! `users.lookupByEmail`) and incoming webhooks.
//!
//! ```no_run
//! # async fn demo() {
//! use followthrough_fakes::{FakeSlack, SlackFailure};
//! let slack = FakeSlack::start().await;
//! slack.add_channel("C0SALES");
//! slack.add_user("ada@example.com", "U0ADA");
//! let hook = slack.add_webhook("#alerts"); // a full URL to POST {"text"} to
//! slack.fail_next(1, SlackFailure::error("ratelimited"));
//! // point the client at slack.base_url() (for https://slack.com/api) with slack.token()
//! assert!(slack.messages().is_empty());
//! # }
//! ```
//!
//! Layout: `gate` (recording, injected failures, chaos) wraps every route; `chat`,
//! `users` and `webhooks` hold the handlers; `replies` Slack's answer shapes.

mod chat;
mod gate;
mod replies;
mod state;
#[cfg(test)]
mod tests;
mod users;
mod webhooks;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::task::JoinHandle;

use state::{Channel, Shared};
pub use state::{ChannelRateLimit, PostedMessage, SlackChaos, SlackFailure};

/// A Slack on `127.0.0.1:<random port>`, alive until this handle is dropped.
pub struct FakeSlack {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeSlack {
    crate::shared::request_log_methods!();

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> Self {
        let (shared, server) = crate::shared::serve(
            "Slack",
            format!("xoxb-{}", random_hex(24)),
            state::State::new(),
            router,
        )
        .await;
        Self { shared, server }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: use it where the client
    /// would use `https://slack.com/api`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The only bot token the fake accepts (random per instance, `xoxb-...`).
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// A workspace member `users.lookupByEmail` finds (email matched case-insensitively)
    /// and `chat.postMessage` can DM by `user_id`.
    pub fn add_user(&self, email: &str, user_id: &str) {
        let email = email.trim().to_lowercase();
        self.shared.state().users.insert(email, user_id.to_owned());
    }

    /// A channel the bot is a member of, named by id (`C0..`) or name (`#sales` or
    /// `sales`: both spellings then work).
    pub fn add_channel(&self, channel: &str) {
        let entry = Channel {
            bot_is_member: true,
            archived: false,
        };
        self.insert_channel(name_key(channel), entry);
    }

    /// A channel that exists but the bot is not in: posting answers `not_in_channel`.
    pub fn add_channel_without_bot(&self, channel: &str) {
        let entry = Channel {
            bot_is_member: false,
            archived: false,
        };
        self.insert_channel(name_key(channel), entry);
    }

    /// Archives a channel: posting answers `is_archived`, webhooks 410
    /// `channel_is_archived`.
    pub fn archive_channel(&self, channel: &str) {
        let mut state = self.shared.state();
        let entry = state.channels.entry(name_key(channel)).or_default();
        entry.archived = true;
    }

    /// Deletes a channel: posting answers `channel_not_found`, webhooks 404.
    pub fn remove_channel(&self, channel: &str) {
        self.shared.state().channels.remove(&name_key(channel));
    }

    /// An incoming webhook that posts to `channel` (added if unknown); returns its full
    /// URL (the secret is in the path, as with Slack's `hooks.slack.com/services/...`).
    pub fn add_webhook(&self, channel: &str) -> String {
        let key = name_key(channel);
        let mut state = self.shared.state();
        state.channels.entry(key).or_insert(Channel {
            bot_is_member: true,
            archived: false,
        });
        let path = state.next_webhook_path();
        state.webhooks.insert(path.clone(), channel.to_owned());
        format!("{}{path}", self.shared.base_url)
    }

    /// Every message accepted so far (Web API and webhooks), oldest first.
    pub fn messages(&self) -> Vec<PostedMessage> {
        self.shared.state().messages.clone()
    }

    /// The next `n` requests (of any kind) fail as described.
    pub fn fail_next(&self, n: usize, failure: SlackFailure) {
        let mut state = self.shared.state();
        state.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Random failures of `chat.postMessage` from now on (`None` to stop).
    pub fn set_chaos(&self, chaos: Option<SlackChaos>) {
        self.shared.state().set_chaos(chaos);
    }

    /// Enforces a per-channel rate limit on posts (off by default). Over it, the post
    /// is answered 429 with `Retry-After` (whole seconds) and nothing is posted.
    pub fn set_rate_limit(&self, limit: Option<ChannelRateLimit>) {
        self.shared.state().rate_limit = limit;
    }

    fn insert_channel(&self, key: String, channel: Channel) {
        self.shared.state().channels.insert(key, channel);
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/chat.postMessage", post(chat::post_message))
        .route("/users.lookupByEmail", get(users::lookup_by_email))
        .route("/services/{team}/{bot}/{secret}", post(webhooks::post))
        .fallback(|| async { replies::api_error("unknown_method") })
        .layer(from_fn_with_state(shared.clone(), gate::gate))
        .with_state(shared)
}

/// Channels are stored by id or by name without the `#`.
fn name_key(channel: &str) -> String {
    channel.trim().trim_start_matches('#').to_owned()
}

/// `n` random hex digits, for tokens and webhook secrets.
pub(crate) fn random_hex(n: usize) -> String {
    let mut out = String::new();
    let mut seed = 0u8;
    while out.len() < n {
        out.push_str(&format!("{:016x}", RandomState::new().hash_one(seed)));
        seed = seed.wrapping_add(1);
    }
    out.truncate(n);
    out
}
