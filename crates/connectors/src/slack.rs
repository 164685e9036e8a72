//! Slack: `slack_message` posts to a channel (through `chat.postMessage`, or the
//! channel's incoming webhook when one is configured), `slack_dm` finds the recipient
//! by email (`users.lookupByEmail`, cached) and posts to their user id.
//!
//! Slack answers most failures with HTTP 200 and `{"ok":false,"error":..}`: that is a
//! failure, classified by its code. A chat message cannot be looked up afterwards, so
//! an ambiguous post is never repeated ([`Repeat::Never`]). The bot token lives only in
//! a sensitive header and a scrubber; webhook URLs (their path is the credential) are
//! scrubbed too and never named in a message.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use url::Url;

use crate::http::wire::{self, Scrub};
use crate::{ActionJob, Connector, Failure, Outcome, Repeat, Success};

/// Where the Web API lives.
pub const SLACK_API: &str = "https://slack.com/api";
/// Slack's pace per channel is about one message a second: the wait after a
/// `ratelimited` that came without a `Retry-After`.
const RATELIMITED_WAIT: Duration = Duration::from_secs(1);
/// Slack's answers are small; read no more than this.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How the Slack connector reaches Slack.
pub struct SlackConfig {
    /// `https://slack.com/api`, or a fake's URL.
    pub base_url: String,
    /// A bot token (`xoxb-...`) with `chat:write` and, for DMs, `users:read.email`.
    /// May be empty when every channel posts through a webhook.
    pub token: SecretString,
    /// Bounds each request, connection included.
    pub timeout: Duration,
    /// Channel (as rules name it: `#alerts` or `alerts`) -> incoming webhook URL.
    pub webhooks: BTreeMap<String, SecretString>,
    /// How long an email -> user id lookup is reused.
    pub user_cache_ttl: Duration,
}

impl SlackConfig {
    /// Slack's own API with `token`, a 10 s timeout, no webhooks, a one-hour user cache.
    pub fn new(token: SecretString) -> Self {
        Self {
            base_url: SLACK_API.to_owned(),
            token,
            timeout: Duration::from_secs(10),
            webhooks: BTreeMap::new(),
            user_cache_ttl: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field(
                "webhook_channels",
                &self.webhooks.keys().collect::<Vec<_>>(),
            )
            .field("user_cache_ttl", &self.user_cache_ttl)
            .finish_non_exhaustive()
    }
}

/// Why a [`SlackConnector`] could not be built (a configuration mistake).
#[derive(Debug, thiserror::Error)]
pub enum SlackConfigError {
    #[error("invalid Slack base URL `{url}`: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the Slack token contains characters not allowed in an HTTP header")]
    InvalidToken,
    #[error("the incoming webhook for `{channel}` is not an http(s) URL")]
    Webhook { channel: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// The `slack` connector.
pub struct SlackConnector {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <token>`, sensitive; `None` without a token.
    auth: Option<HeaderValue>,
    /// Keyed by channel name without `#`.
    webhooks: BTreeMap<String, Url>,
    users: Mutex<HashMap<String, (String, Instant)>>,
    user_cache_ttl: Duration,
    scrub: Scrub,
}

impl fmt::Debug for SlackConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConnector")
            .field("base", &self.base.as_str())
            .field(
                "webhook_channels",
                &self.webhooks.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A Web API method answered `ok:true` with this body, or failed as this outcome.
type ApiResult = Result<Json, Outcome>;

impl SlackConnector {
    pub fn new(config: SlackConfig) -> Result<Self, SlackConfigError> {
        let base_error = |reason: &str| SlackConfigError::BaseUrl {
            url: config.base_url.clone(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(&config.base_url).map_err(|e| base_error(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(base_error("expected an http:// or https:// URL"));
        }
        let token = config.token.expose_secret();
        let auth = if token.is_empty() {
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| SlackConfigError::InvalidToken)?;
            value.set_sensitive(true);
            Some(value)
        };
        let mut secrets = vec![token.to_owned()];
        let mut webhooks = BTreeMap::new();
        for (channel, url) in &config.webhooks {
            let text = url.expose_secret();
            let parsed = Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| SlackConfigError::Webhook {
                    channel: channel.clone(),
                })?;
            secrets.push(text.to_owned());
            secrets.push(parsed.path().to_owned());
            webhooks.insert(channel_key(channel), parsed);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("followthrough/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SlackConfigError::Client(error.to_string()))?;
        Ok(Self {
            http,
            base,
            auth,
            webhooks,
            users: Mutex::new(HashMap::new()),
            user_cache_ttl: config.user_cache_ttl,
            scrub: Scrub::new(secrets),
        })
    }

    fn method_url(&self, method: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(method);
        }
        url
    }

    async fn post_to_channel(&self, channel: &str, text: &str) -> Outcome {
        if let Some(webhook) = self.webhooks.get(&channel_key(channel)) {
            return self.post_webhook(channel, webhook, text).await;
        }
        match self.post_message(channel, text).await {
            Ok(answer) => {
                let ts = answer["ts"].as_str().unwrap_or_default();
                Outcome::Success(Success {
                    status: Some(200),
                    summary: format!("message posted to {channel}"),
                    result: json!({"channel": answer["channel"], "ts": ts}),
                })
            }
            Err(outcome) => outcome,
        }
    }

    async fn direct_message(&self, to: &str, text: &str) -> Outcome {
        let user_id = if to.contains('@') {
            match self.user_id(to).await {
                Ok(id) => id,
                Err(outcome) => return outcome,
            }
        } else {
            // Already a user id (`U..`/`W..`).
            to.to_owned()
        };
        match self.post_message(&user_id, text).await {
            Ok(answer) => Outcome::Success(Success {
                status: Some(200),
                summary: format!("direct message posted to {user_id}"),
                result: json!({"user_id": user_id, "channel": answer["channel"], "ts": answer["ts"]}),
            }),
            Err(outcome) => {
                if matches!(outcome, Outcome::Terminal(_)) {
                    // The cached id may be stale (user deactivated, re-created).
                    self.forget_user(to);
                }
                outcome
            }
        }
    }

    /// The user id for `email`: from the cache while fresh, else `users.lookupByEmail`.
    async fn user_id(&self, email: &str) -> Result<String, Outcome> {
        let key = email.trim().to_lowercase();
        let now = Instant::now();
        if let Some((id, at)) = self.cache().get(&key)
            && now.duration_since(*at) < self.user_cache_ttl
        {
            return Ok(id.clone());
        }
        let mut url = self.method_url("users.lookupByEmail");
        url.query_pairs_mut().append_pair("email", &key);
        let request = self.with_auth(self.http.get(url));
        // A lookup changes nothing: a request that got no answer is a plain retry.
        let answer = match self.call_api("users.lookupByEmail", request).await {
            Err(Outcome::Indeterminate(failure)) => return Err(Outcome::Retry(failure)),
            other => other?,
        };
        let Some(id) = answer["user"]["id"].as_str().filter(|id| !id.is_empty()) else {
            let failure = Failure::new(Some(200), "users.lookupByEmail: the answer has no user id");
            return Err(Outcome::Terminal(failure));
        };
        self.cache().insert(key, (id.to_owned(), now));
        Ok(id.to_owned())
    }

    fn forget_user(&self, email: &str) {
        self.cache().remove(&email.trim().to_lowercase());
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn post_message(&self, channel: &str, text: &str) -> ApiResult {
        let body = json!({"channel": channel, "text": text});
        let request = self
            .http
            .post(self.method_url("chat.postMessage"))
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string());
        self.call_api("chat.postMessage", self.with_auth(request))
            .await
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// Sends a Web API request and classifies the answer.
    async fn call_api(&self, method: &str, request: reqwest::RequestBuilder) -> ApiResult {
        if self.auth.is_none() {
            let message = format!("{method}: no Slack bot token is configured");
            return Err(Outcome::Terminal(Failure::new(None, message)));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Err(wire::transport_outcome(method, &error, &self.scrub)),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match wire::read_capped(response, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            Err(error) => return Err(wire::transport_outcome(method, &error, &self.scrub)),
        };
        let failure =
            |message: String| wire::answered(status, message, &headers, &body, &self.scrub);
        match status {
            200 => {}
            429 => {
                let mut failure = failure(format!("{method}: rate limited (429)"));
                failure.retry_after.get_or_insert(RATELIMITED_WAIT);
                return Err(Outcome::Retry(failure));
            }
            500..=599 => {
                return Err(Outcome::Retry(failure(format!(
                    "{method}: Slack answered {status}"
                ))));
            }
            _ => {
                return Err(Outcome::Terminal(failure(format!(
                    "{method}: Slack answered {status}"
                ))));
            }
        }
        let Ok(answer) = serde_json::from_slice::<Json>(&body) else {
            // A 200 we cannot read: the post may have happened.
            let failure = failure(format!(
                "{method}: Slack answered 200 with a body that is not JSON"
            ));
            return Err(Outcome::Indeterminate(failure));
        };
        if answer["ok"] == Json::Bool(true) {
            return Ok(answer);
        }
        let code = answer["error"].as_str().unwrap_or("unknown_error");
        let mut failure = failure(format!("{method}: {code}"));
        Err(match code {
            "ratelimited" | "rate_limited" => {
                failure.retry_after.get_or_insert(RATELIMITED_WAIT);
                Outcome::Retry(failure)
            }
            "service_unavailable" => Outcome::Retry(failure),
            // Slack documents these as "some aspect of the operation may have succeeded".
            "internal_error" | "fatal_error" => Outcome::Indeterminate(failure),
            _ => Outcome::Terminal(failure),
        })
    }

    async fn post_webhook(&self, channel: &str, webhook: &Url, text: &str) -> Outcome {
        let what = format!("incoming webhook for {channel}");
        let body = json!({"text": text});
        let request = self
            .http
            .post(webhook.clone())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string());
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return wire::transport_outcome(&what, &error, &self.scrub),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = wire::read_capped(response, 4 * 1024)
            .await
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return Outcome::Success(Success {
                status: Some(status),
                summary: format!("message posted to {channel} through its incoming webhook"),
                result: json!({"channel": channel, "webhook": true}),
            });
        }
        let code = String::from_utf8_lossy(&body);
        let code = code.trim();
        let message = if code.is_empty() || code.len() > 64 {
            format!("{what}: Slack answered {status}")
        } else {
            format!("{what}: {code} ({status})")
        };
        let mut failure = wire::answered(status, message, &headers, &body, &self.scrub);
        match status {
            429 => {
                failure.retry_after.get_or_insert(RATELIMITED_WAIT);
                Outcome::Retry(failure)
            }
            500..=599 => Outcome::Retry(failure),
            _ => Outcome::Terminal(failure),
        }
    }
}

#[async_trait::async_trait]
impl Connector for SlackConnector {
    fn name(&self) -> &'static str {
        "slack"
    }

    /// Slack limits posting per channel (about one message a second).
    fn bucket(&self, job: &ActionJob) -> String {
        let target = match job.action.as_str() {
            "slack_dm" => job.params["to"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_lowercase(),
            _ => channel_key(job.params["channel"].as_str().unwrap_or_default()),
        };
        format!("slack:{target}")
    }

    /// A DM may first look the recipient up by email.
    fn max_requests(&self, job: &ActionJob) -> u32 {
        if job.action == "slack_dm" { 2 } else { 1 }
    }

    /// A chat message cannot be looked up to see whether it was posted.
    fn on_indeterminate(&self, _job: &ActionJob) -> Repeat {
        Repeat::Never
    }

    async fn execute(&self, job: &ActionJob) -> Outcome {
        let text = job.params["text"].as_str().unwrap_or_default();
        if text.trim().is_empty() {
            return Outcome::Terminal(Failure::new(
                None,
                format!("{}: the text is empty", job.action),
            ));
        }
        match job.action.as_str() {
            "slack_message" => {
                let channel = job.params["channel"].as_str().unwrap_or_default().trim();
                if channel.is_empty() {
                    return Outcome::Terminal(Failure::new(None, "slack_message: no channel"));
                }
                self.post_to_channel(channel, text).await
            }
            "slack_dm" => {
                let to = job.params["to"].as_str().unwrap_or_default().trim();
                if to.is_empty() {
                    return Outcome::Terminal(Failure::new(None, "slack_dm: no recipient"));
                }
                self.direct_message(to, text).await
            }
            other => Outcome::Terminal(Failure::new(
                None,
                format!("the slack connector does not do `{other}`"),
            )),
        }
    }
}

/// A channel as a key: without `#` and surrounding space (`#alerts` = `alerts`).
fn channel_key(channel: &str) -> String {
    channel.trim().trim_start_matches('#').to_owned()
}

#[cfg(test)]
#[path = "slack_tests.rs"]
mod tests;
