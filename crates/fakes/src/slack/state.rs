//! What the fake Slack holds (users, channels, webhooks, posted messages) and the knobs
//! tests turn (failures, chaos, per-channel rate limit), behind one mutex that no handler
//! holds across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

use crate::RecordedRequest;

/// How the next request(s) should fail.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackFailure {
    pub(crate) kind: FailureKind,
    pub(crate) retry_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FailureKind {
    /// An HTTP status with Slack's body for it.
    Status(u16),
    /// A Web API `{"ok":false,"error":..}` (HTTP 200); on a webhook, the plain-text
    /// error with the status Slack sends it with.
    Error(String),
    /// The request takes effect, then the answer is held this long.
    AppliedThenHang(Duration),
}

impl SlackFailure {
    /// Answer with this HTTP status: 429 carries `{"ok":false,"error":"ratelimited"}`
    /// (add [`retry_after`](Self::retry_after) for the header), 5xx an HTML page.
    pub fn status(status: u16) -> Self {
        Self {
            kind: FailureKind::Status(status),
            retry_after: None,
        }
    }

    /// Answer HTTP 200 `{"ok":false,"error":"<code>"}` (e.g. `invalid_auth`,
    /// `ratelimited`); a webhook answers the code as plain text with Slack's status for
    /// it (400 `invalid_payload`, 403 `action_prohibited`, 404 `channel_not_found`, 410
    /// `channel_is_archived`, 500 otherwise).
    pub fn error(code: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Error(code.into()),
            retry_after: None,
        }
    }

    /// The request is handled normally (the message IS posted), then the answer is held
    /// for `hold`: past a client's timeout, this is the ambiguous case.
    pub fn applied_then_hang(hold: Duration) -> Self {
        Self {
            kind: FailureKind::AppliedThenHang(hold),
            retry_after: None,
        }
    }

    /// Add a `Retry-After` header with this exact value (seconds, as Slack sends it).
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }
}

/// Random misbehaviour of `chat.postMessage`, drawn per request from a seeded generator
/// (so a failing test replays). Probabilities are in `0.0..=1.0` and tried in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackChaos {
    /// HTTP 429 with `Retry-After: 1`.
    pub rate_limited: f64,
    /// HTTP 200 `{"ok":false,"error":"internal_error"}`, nothing posted.
    pub error: f64,
    /// Posted, then the answer is held for `hold`.
    pub applied_then_hang: f64,
    pub hold: Duration,
    pub seed: u64,
}

impl Default for SlackChaos {
    fn default() -> Self {
        Self {
            rate_limited: 0.0,
            error: 0.0,
            applied_then_hang: 0.0,
            hold: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// What chaos picked for one request.
pub(crate) enum ChaosPick {
    RateLimited,
    Error,
    AppliedThenHang(Duration),
}

/// Slack's per-channel limit: about one message a second, short bursts tolerated. A
/// token bucket: `burst` messages at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelRateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for ChannelRateLimit {
    fn default() -> Self {
        Self {
            per_second: 1.0,
            burst: 3,
        }
    }
}

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedMessage {
    /// What it was posted to: the channel as the client named it (`C01..`, `#sales`),
    /// or the user id of a DM.
    pub channel: String,
    pub text: String,
    pub blocks: Option<Json>,
    /// Slack's timestamp id of the message (empty for webhook posts, which return none).
    pub ts: String,
    /// Whether it came through an incoming webhook.
    pub via_webhook: bool,
    pub at: Instant,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Channel {
    pub bot_is_member: bool,
    pub archived: bool,
}

pub(crate) struct State {
    /// Lower-cased email -> user id.
    pub users: BTreeMap<String, String>,
    /// By id or name (without `#`).
    pub channels: BTreeMap<String, Channel>,
    /// Webhook path (`/services/T../B../..`) -> channel.
    pub webhooks: BTreeMap<String, String>,
    pub messages: Vec<PostedMessage>,
    pub failures: VecDeque<SlackFailure>,
    pub chaos: Option<(SlackChaos, StdRng)>,
    pub rate_limit: Option<ChannelRateLimit>,
    /// Channel -> (tokens left, when last refilled).
    buckets: HashMap<String, (f64, Instant)>,
    pub delay: Duration,
    pub requests: Vec<RecordedRequest>,
    next_ts: u64,
    next_webhook: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            users: BTreeMap::new(),
            channels: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            messages: Vec::new(),
            failures: VecDeque::new(),
            chaos: None,
            rate_limit: None,
            buckets: HashMap::new(),
            delay: Duration::ZERO,
            requests: Vec::new(),
            next_ts: 0,
            next_webhook: 0,
        }
    }

    pub(crate) fn set_chaos(&mut self, chaos: Option<SlackChaos>) {
        self.chaos = chaos.map(|chaos| {
            let rng = StdRng::seed_from_u64(chaos.seed);
            (chaos, rng)
        });
    }

    pub(crate) fn pick_chaos(&mut self) -> Option<ChaosPick> {
        let (chaos, rng) = self.chaos.as_mut()?;
        let roll: f64 = rng.random();
        let mut bound = chaos.rate_limited;
        if roll < bound {
            return Some(ChaosPick::RateLimited);
        }
        bound += chaos.error;
        if roll < bound {
            return Some(ChaosPick::Error);
        }
        bound += chaos.applied_then_hang;
        (roll < bound).then_some(ChaosPick::AppliedThenHang(chaos.hold))
    }

    /// Takes a token from the channel's bucket; `Err(wait)` when it is empty.
    pub(crate) fn admit(&mut self, channel: &str, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.rate_limit else {
            return Ok(());
        };
        let burst = f64::from(limit.burst.max(1));
        let rate = limit.per_second.max(0.001);
        let (tokens, last) = self
            .buckets
            .entry(channel.to_owned())
            .or_insert((burst, now));
        let refilled = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }

    /// A fresh message timestamp id, `"<epoch seconds>.<6 digits>"`, unique per fake.
    pub(crate) fn next_ts(&mut self) -> String {
        self.next_ts += 1;
        let seconds = jiff::Timestamp::now().as_second();
        format!("{seconds}.{:06}", self.next_ts % 1_000_000)
    }

    pub(crate) fn next_webhook_path(&mut self) -> String {
        self.next_webhook += 1;
        let secret = super::random_hex(24);
        format!("/services/T0FAKE0001/B{:09}/{secret}", self.next_webhook)
    }

    /// The channel a `chat.postMessage` names, by id or by name with or without `#`.
    pub(crate) fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels
            .get(name)
            .or_else(|| self.channels.get(name.trim_start_matches('#')))
    }

    pub(crate) fn is_user_id(&self, id: &str) -> bool {
        self.users.values().any(|user| user == id)
    }
}

/// The fake's shared half: what the handlers and the test's handle both reach.
pub(crate) type Shared = crate::shared::Shared<State>;
