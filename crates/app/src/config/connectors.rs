//! `[connectors.*]` (how to reach each API and how hard to push it) and `[outbox]` (how
//! its workers claim, retry and give up).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use followthrough_connectors::RetryPolicy;
use followthrough_connectors::limit::Limit;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid, resolve_secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    pub hubspot: HubSpotConnectorConfig,
    pub slack: SlackConnectorConfig,
    pub pipedrive: PipedriveConnectorConfig,
    pub http: HttpConnectorConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConnectorConfig {
    pub base_url: String,
    pub token: SecretString,
    pub token_file: PathBuf,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
    pub idempotency_property: String,
    pub idempotency_upsert: bool,
    pub search_settle_ms: u64,
    pub app_id: String,
    /// `assign_owner` teams: name -> owner ids.
    pub teams: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConnectorConfig {
    pub base_url: String,
    pub token: SecretString,
    pub token_file: PathBuf,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
    /// Channel name -> incoming-webhook URL, used instead of `chat.postMessage`.
    pub webhooks: BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveConnectorConfig {
    pub base_url: String,
    pub token: SecretString,
    pub token_file: PathBuf,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectorConfig {
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
    /// Hosts (names or addresses) the SSRF guard lets through although they are
    /// private, loopback or link-local.
    pub allowed_hosts: Vec<String>,
}

/// What every connector's workers share: how many calls at once, how fast, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub concurrency: usize,
    pub limit: Limit,
    pub timeout: Duration,
}

fn pace(concurrency: usize, rate_limit: u32, window_ms: u64, timeout_ms: u64) -> Pace {
    Pace {
        concurrency,
        limit: Limit::new(rate_limit, Duration::from_millis(window_ms)),
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// `pace()` for every connector section, and `token()` (from `token_file` when set)
/// for those that have one: the same four keys mean the same thing in each.
macro_rules! connector_settings {
    ($section:literal, $config:ty) => {
        impl $config {
            pub fn pace(&self) -> Pace {
                pace(
                    self.concurrency,
                    self.rate_limit,
                    self.rate_limit_window_ms,
                    self.timeout_ms,
                )
            }
        }
    };
    ($section:literal, $config:ty, token) => {
        connector_settings!($section, $config);
        impl $config {
            /// The token, from `token_file` when it is set.
            pub fn token(&self) -> Result<SecretString, ConfigError> {
                resolve_secret(&self.token, &self.token_file)
                    .map_err(|message| invalid(concat!($section, ".token_file"), message))
            }
        }
    };
}

connector_settings!("connectors.hubspot", HubSpotConnectorConfig, token);
connector_settings!("connectors.slack", SlackConnectorConfig, token);
connector_settings!("connectors.pipedrive", PipedriveConnectorConfig, token);
connector_settings!("connectors.http", HttpConnectorConfig);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Most jobs one connector's workers claim at once.
    pub claim_batch: usize,
    /// How long a claimed job stays reserved for its worker.
    pub lease_ms: u64,
    /// How often idle workers look for due jobs (a new job also wakes them).
    pub poll_ms: u64,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub max_attempts: u32,
    pub max_age_ms: u64,
    pub circuit_failures: u32,
    pub circuit_open_ms: u64,
}

impl OutboxConfig {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.retry_base_ms),
            cap: Duration::from_millis(self.retry_cap_ms),
            max_attempts: self.max_attempts,
            max_age: Duration::from_millis(self.max_age_ms),
        }
    }

    /// A worker that dies mid-call holds its jobs until the lease ends; a lease shorter
    /// than a call would let a second worker repeat a call still in flight.
    pub(super) fn validate(&self, connectors: &ConnectorsConfig) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.claim_batch) {
            return Err(invalid("outbox.claim_batch", "must be between 1 and 1000"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("outbox.max_attempts", "must be at least 1"));
        }
        if self.retry_base_ms == 0 || self.retry_cap_ms < self.retry_base_ms {
            return Err(invalid(
                "outbox.retry_cap_ms",
                "retry_base_ms must be more than 0 and retry_cap_ms at least retry_base_ms",
            ));
        }
        if self.poll_ms == 0 {
            return Err(invalid("outbox.poll_ms", "must be more than 0"));
        }
        let paces = [
            (
                "connectors.hubspot",
                connectors.hubspot.pace(),
                connectors.hubspot.rate_limit,
            ),
            (
                "connectors.slack",
                connectors.slack.pace(),
                connectors.slack.rate_limit,
            ),
            (
                "connectors.pipedrive",
                connectors.pipedrive.pace(),
                connectors.pipedrive.rate_limit,
            ),
            (
                "connectors.http",
                connectors.http.pace(),
                connectors.http.rate_limit,
            ),
        ];
        for (section, pace, rate_limit) in paces {
            if pace.concurrency == 0 || rate_limit == 0 || pace.limit.per.is_zero() {
                return Err(invalid(
                    "outbox",
                    format!(
                        "{section}: concurrency, rate_limit and rate_limit_window_ms must be more than 0"
                    ),
                ));
            }
            // Two calls (a check, then the create) must fit in one lease, with room.
            if u128::from(self.lease_ms) < 3 * pace.timeout.as_millis() {
                return Err(invalid(
                    "outbox.lease_ms",
                    format!(
                        "must be at least 3 x {section}.timeout_ms, so a call in flight is never repeated by another worker"
                    ),
                ));
            }
        }
        for (team, owners) in &connectors.hubspot.teams {
            if owners.is_empty() {
                return Err(invalid(
                    "connectors.hubspot.teams",
                    format!("team `{team}` has no owner ids"),
                ));
            }
        }
        for (channel, url) in &connectors.slack.webhooks {
            if !url.expose_secret().starts_with("https://")
                && !url.expose_secret().starts_with("http://")
            {
                return Err(invalid(
                    "connectors.slack.webhooks",
                    format!("the webhook of `{channel}` is not an http(s) URL"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn validate(layer: &str) -> Result<(), String> {
        Config::from_defaults_and(&[layer])
            .map_err(|e| e.to_string())?
            .validate()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_valid() {
        validate("").unwrap();
    }

    #[test]
    fn a_lease_shorter_than_three_calls_is_refused_naming_the_key() {
        let error = validate("[outbox]\nlease_ms = 20000\n").unwrap_err();
        assert!(error.contains("outbox.lease_ms"), "{error}");
        assert!(error.contains("connectors.hubspot.timeout_ms"), "{error}");
    }

    #[test]
    fn a_team_without_owners_and_a_zero_rate_are_refused() {
        let error = validate("[connectors.hubspot.teams]\nhunters = []\n").unwrap_err();
        assert!(error.contains("`hunters` has no owner ids"), "{error}");
        let error = validate("[connectors.slack]\nrate_limit = 0\n").unwrap_err();
        assert!(error.contains("connectors.slack"), "{error}");
    }

    #[test]
    fn a_token_is_read_from_its_file_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hubspot-token");
        std::fs::write(&file, "pat-na1-secret\n").unwrap();
        let layer = format!(
            "[connectors.hubspot]\ntoken_file = \"{}\"\n",
            file.display()
        );
        let config = Config::from_defaults_and(&[&layer]).unwrap();
        let token = config.connectors.hubspot.token().unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&token),
            "pat-na1-secret"
        );
        assert!(!format!("{config:?}").contains("pat-na1-secret"));
    }
}
