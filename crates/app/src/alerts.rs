//! Telling a person when followthrough needs one: dead letters appeared, a connector's
//! circuit opened (its API looks down), or the outbox backlog is getting old.
//!
//! A watcher checks every `alerts.check_interval_ms` and sends one message per alert
//! kind at most every `alerts.repeat_after_ms`, to a Slack channel (through the Slack
//! connector's token or incoming webhooks) or to any webhook URL (JSON `{"text": ...}`,
//! which Slack and Teams incoming webhooks and most chat tools accept).
//!
//! Alerts go out directly, not through the outbox: an alert about the outbox being stuck
//! must not wait in that outbox. A failed send is logged and tried again at the next
//! check. Each instance watches on its own, so N instances may send up to N messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use followthrough_connectors::slack::{SlackConfig, SlackConnector};
use followthrough_connectors::{ActionJob, Connector as _, Outcome};
use followthrough_core::{Clock, ObjectRef, Timestamp};
use followthrough_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Validated;
use crate::outbox::Outbox;

/// Where alerts go.
pub enum Sink {
    Slack {
        connector: Box<SlackConnector>,
        channel: String,
    },
    Webhook {
        client: reqwest::Client,
        url: url::Url,
    },
}

pub struct Watcher {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub outbox: Outbox,
    pub sink: Sink,
    pub check_every: Duration,
    pub repeat_after: Duration,
    pub backlog_age: Duration,
    /// Dead letters and the backlog are the same for every instance on a shared store:
    /// only the one doing store-wide duties tells about them. A circuit is this
    /// instance's own, so each tells about its own.
    pub store_wide: Arc<crate::engine::StoreWideDuties>,
}

/// What the watcher remembers between checks.
#[derive(Default)]
struct Seen {
    dead_letters: Option<u64>,
    open_circuits: BTreeSet<&'static str>,
    last_sent: HashMap<&'static str, Timestamp>,
}

/// One alert to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `dead_letters`, `circuit_open` or `outbox_backlog`: what the rate limit counts by.
    pub kind: &'static str,
    pub text: String,
}

impl Watcher {
    /// The watcher `alerts` configures, or `None` when no destination is set.
    pub fn from_config(
        config: &Validated,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
        store_wide: Arc<crate::engine::StoreWideDuties>,
    ) -> anyhow::Result<Option<Self>> {
        let alerts = &config.config.alerts;
        let sink = if !alerts.webhook_url.trim().is_empty() {
            Sink::Webhook {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
                url: alerts.webhook_url.trim().parse()?,
            }
        } else if !alerts.slack_channel.trim().is_empty() {
            let slack = &config.config.connectors.slack;
            let mut slack_config = SlackConfig::new(slack.token()?);
            slack_config.base_url = slack.base_url.clone();
            slack_config.timeout = slack.pace().timeout;
            slack_config.webhooks = slack.webhooks.clone();
            Sink::Slack {
                connector: Box::new(SlackConnector::new(slack_config)?),
                channel: alerts.slack_channel.trim().to_owned(),
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Self {
            store,
            clock,
            outbox,
            sink,
            check_every: Duration::from_millis(alerts.check_interval_ms),
            repeat_after: Duration::from_millis(alerts.repeat_after_ms),
            backlog_age: Duration::from_millis(alerts.outbox_age_ms),
            store_wide,
        }))
    }

    /// Checks until cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.check_every) => {}
            }
            match self.check(&mut seen).await {
                Ok(alerts) => {
                    for alert in alerts {
                        self.send(&mut seen, alert).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "alerts: could not read the store"),
            }
        }
    }

    /// What is worth telling now. Dead letters and circuits alert when they change for
    /// the worse; an old backlog alerts while it stays old (the rate limit spaces them).
    async fn check(&self, seen: &mut Seen) -> Result<Vec<Alert>, followthrough_store::StoreError> {
        let stats = self.store.stats().await?;
        let now = self.clock.now();
        let mut alerts = Vec::new();
        let before = seen.dead_letters.unwrap_or(0);
        let store_wide = self.store_wide.are_mine();
        if store_wide && stats.dead_letters > before {
            let new = stats.dead_letters - before;
            alerts.push(Alert {
                kind: "dead_letters",
                text: format!(
                    "followthrough: {new} new dead letter{} ({} waiting). An action failed for good and waits for a person: `followthrough dlq list`, or the console's dead letters page.",
                    plural(new),
                    stats.dead_letters
                ),
            });
        }
        seen.dead_letters = Some(stats.dead_letters);

        let open: BTreeSet<&'static str> = self
            .outbox
            .health()
            .into_iter()
            .filter(|h| h.circuit == "open")
            .map(|h| h.connector)
            .collect();
        for connector in open.difference(&seen.open_circuits) {
            alerts.push(Alert {
                kind: "circuit_open",
                text: format!(
                    "followthrough: the {connector} API looks down (circuit open after repeated failures); its actions wait and will be retried."
                ),
            });
        }
        seen.open_circuits = open;

        if let Some(oldest) = stats.oldest_pending_at().filter(|_| store_wide) {
            let age = now.since(oldest);
            if age > self.backlog_age {
                alerts.push(Alert {
                    kind: "outbox_backlog",
                    text: format!(
                        "followthrough: the oldest pending action has waited {} min ({} pending). Check the connectors' health.",
                        age.as_secs() / 60,
                        stats.outbox_pending_total()
                    ),
                });
            }
        }
        Ok(alerts)
    }

    async fn send(&self, seen: &mut Seen, alert: Alert) {
        let now = self.clock.now();
        if let Some(last) = seen.last_sent.get(alert.kind)
            && now.since(*last) < self.repeat_after
        {
            tracing::info!(kind = alert.kind, "alert not sent: one was sent recently");
            crate::metrics::alert(alert.kind, "suppressed");
            return;
        }
        match self.deliver(&alert, now).await {
            Ok(()) => {
                tracing::info!(kind = alert.kind, "alert sent");
                crate::metrics::alert(alert.kind, "sent");
                seen.last_sent.insert(alert.kind, now);
            }
            Err(why) => {
                tracing::warn!(kind = alert.kind, %why, "alert could not be sent; tried again at the next check");
                crate::metrics::alert(alert.kind, "failed");
            }
        }
    }

    async fn deliver(&self, alert: &Alert, now: Timestamp) -> Result<(), String> {
        match &self.sink {
            Sink::Slack { connector, channel } => {
                let job = ActionJob {
                    key: format!("alert:{}:{}", alert.kind, now.as_millis()),
                    action: "slack_message".into(),
                    object: ObjectRef::new("followthrough", "alert", alert.kind),
                    params: json!({ "channel": channel, "text": alert.text }),
                    attempt: 1,
                    after_indeterminate: false,
                };
                match connector.execute(&job).await {
                    Outcome::Success(_) => Ok(()),
                    Outcome::Retry(f) | Outcome::Terminal(f) | Outcome::Indeterminate(f) => {
                        Err(f.message)
                    }
                }
            }
            Sink::Webhook { client, url } => {
                let response = client
                    .post(url.clone())
                    .json(&json!({ "text": alert.text, "alert": alert.kind }))
                    .send()
                    .await
                    // The URL may carry a credential in its path: never in the message.
                    .map_err(|e| format!("request failed: {}", e.without_url()))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("answered {}", response.status()))
                }
            }
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
