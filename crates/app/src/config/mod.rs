//! Configuration: embedded defaults -> file -> `FOLLOWTHROUGH__*` environment -> flags,
//! then [`Config::validate`], whose messages name the key that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

pub mod connectors;

pub use connectors::{
    ConnectorsConfig, HttpConnectorConfig, HubSpotConnectorConfig, OutboxConfig,
    PipedriveConnectorConfig, SlackConnectorConfig,
};

/// The defaults, every key commented: `config.default.toml` at the repository root.
pub const DEFAULTS: &str = include_str!("../../../../config.default.toml");

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "followthrough.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub rules: RulesConfig,
    pub engine: EngineConfig,
    pub sources: SourcesConfig,
    pub connectors: ConnectorsConfig,
    pub outbox: OutboxConfig,
    pub api: ApiConfig,
    pub privacy: PrivacyConfig,
    pub alerts: AlertsConfig,
    pub log: LogConfig,
}

/// `[alerts]`: where and when to tell a person (see `crate::alerts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub slack_channel: String,
    pub webhook_url: String,
    pub check_interval_ms: u64,
    pub repeat_after_ms: u64,
    pub outbox_age_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    /// Where `serve` writes its process id, for `followthrough reload` (empty: nowhere).
    pub pid_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    /// PostgreSQL only: connections this instance's pool keeps.
    pub max_connections: u32,
    /// PostgreSQL only: the schema holding the tables (empty: the search path's).
    pub schema: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub dir: PathBuf,
    /// IANA time zone calendar days are counted in (`rules.time_zone`).
    pub time_zone: String,
    /// `mon` ... `sun` (`rules.working_days`).
    pub working_days: Vec<String>,
    /// `YYYY-MM-DD` dates that are not business days (`rules.holidays`).
    pub holidays: Vec<String>,
}

impl RulesConfig {
    /// The calendar rules count durations and business days in; errors name the key.
    pub fn calendar(&self) -> Result<followthrough_rules::Calendar, ConfigError> {
        let working_days = self
            .working_days
            .iter()
            .map(|day| {
                weekday(day).ok_or_else(|| {
                    invalid(
                        "rules.working_days",
                        format!("`{day}` is not a day: use mon, tue, wed, thu, fri, sat or sun"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let holidays = self
            .holidays
            .iter()
            .map(|date| {
                date.parse::<jiff::civil::Date>().map_err(|_| {
                    invalid(
                        "rules.holidays",
                        format!("`{date}` is not a date like 2025-12-25"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        followthrough_rules::Calendar::new(&self.time_zone, working_days, holidays).map_err(
            |error| match error {
                followthrough_rules::CalendarError::TimeZone(_) => {
                    invalid("rules.time_zone", error.to_string())
                }
                followthrough_rules::CalendarError::NoWorkingDays => {
                    invalid("rules.working_days", error.to_string())
                }
            },
        )
    }
}

/// `mon` or `monday`, any case.
fn weekday(text: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    let lower = text.trim().to_ascii_lowercase();
    let day = match lower.get(..3)? {
        "mon" => Monday,
        "tue" => Tuesday,
        "wed" => Wednesday,
        "thu" => Thursday,
        "fri" => Friday,
        "sat" => Saturday,
        "sun" => Sunday,
        _ => return None,
    };
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (lower.len() == 3 || full.contains(&lower.as_str())).then_some(day)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most inbox events (and due timers) applied in one transaction.
    pub batch_size: usize,
    /// A timer that came due longer ago than this (the service was down) is skipped and
    /// journaled instead of fired.
    pub timer_catch_up_limit_ms: u64,
    /// Owners and associations older than this are fetched again before a rule reads them.
    pub context_max_age_ms: u64,
    /// How long an event whose context could not be fetched waits before it is retried.
    pub fetch_retry_ms: u64,
    /// Longest one context fetch may take.
    pub fetch_timeout_ms: u64,
    /// On PostgreSQL, how long an instance's lease on its share of the engine's work
    /// lasts unless renewed: how soon a dead instance's work passes to the others.
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    pub hubspot: HubSpotSourceConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotSourceConfig {
    pub client_secret: SecretString,
    pub client_secret_file: PathBuf,
    pub signature_versions: Vec<String>,
    pub max_timestamp_skew_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `sha256:<hex>` digests of the accepted bearer tokens (or tokens in clear).
    pub tokens: Vec<SecretString>,
    /// How long a console login lasts.
    pub session_ms: u64,
    /// Signs console session cookies; empty: a random key per process (logins end at a
    /// restart and are not shared by instances).
    pub session_secret: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    pub redact_properties: Vec<String>,
    /// Scrub email addresses and phone numbers from all journal text and log lines.
    pub redact_patterns: bool,
    /// Journal rows and applied events' payloads older than this are deleted (0: kept
    /// forever).
    pub retention_days: u64,
    /// How often the server looks for rows past the retention.
    pub prune_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(String),
    #[error("config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Values given on the command line, applied last.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub store_url: Option<String>,
    pub rules_dir: Option<String>,
}

/// What [`Config::validate`] derives: values parsed once, ready to use.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    pub listen: SocketAddr,
    pub public_url: Url,
    pub hubspot_secret: SecretString,
    /// `api.tokens`, as digests.
    pub admin_tokens: crate::auth::AdminTokens,
    /// How many of them were written in clear (`serve` warns).
    pub plain_admin_tokens: usize,
    pub store: crate::store_target::StoreTarget,
}

impl Config {
    /// Loads the configuration. `file` is `--config`; without it `./followthrough.toml`
    /// is read if present. Environment variables `FOLLOWTHROUGH__*` come next, then
    /// `overrides` (the command-line flags).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::Load(format!(
                    "{}: no such file",
                    path.display()
                )));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE))
            }
            None => {}
        }
        figment = figment.merge(Env::prefixed("FOLLOWTHROUGH__").split("__"));
        for (key, value) in flat_overrides(overrides) {
            figment = figment.merge(Serialized::default(&key, value));
        }
        figment
            .extract()
            .map_err(|error| ConfigError::Load(describe(error)))
    }

    /// The defaults with each TOML layer merged over them in turn, and nothing else: no
    /// file, no environment. For tests and tools that need a hermetic configuration.
    pub fn from_defaults_and(layers: &[&str]) -> Result<Config, ConfigError> {
        layers
            .iter()
            .fold(Figment::from(Toml::string(DEFAULTS)), |figment, layer| {
                figment.merge(Toml::string(layer))
            })
            .extract()
            .map_err(|error| ConfigError::Load(describe(error)))
    }

    /// Cross-field and format checks; every message names its key.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let listen: SocketAddr = self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })?;
        let public_url = Url::parse(&self.server.public_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                invalid(
                    "server.public_url",
                    format!("`{}` is not an http(s) URL", self.server.public_url),
                )
            })?;
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid(
                "server.public_url",
                "must not carry a query or fragment",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            return Err(invalid(
                "server.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if self.server.header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be more than 0",
            ));
        }
        if !(1..=50_000).contains(&self.engine.batch_size) {
            return Err(invalid("engine.batch_size", "must be between 1 and 50000"));
        }
        if self.engine.fetch_timeout_ms == 0 {
            return Err(invalid("engine.fetch_timeout_ms", "must be more than 0"));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms", "must be more than 0"));
        }
        let store = crate::store_target::StoreTarget::from_config(&self.store)?;
        if self.engine.lease_ms < 100 {
            return Err(invalid("engine.lease_ms", "must be at least 100"));
        }
        let hubspot = &self.sources.hubspot;
        for version in &hubspot.signature_versions {
            if !matches!(version.as_str(), "v1" | "v2" | "v3") {
                return Err(invalid(
                    "sources.hubspot.signature_versions",
                    format!("unknown version `{version}`: expected v1, v2 or v3"),
                ));
            }
        }
        let hubspot_secret = resolve_secret(&hubspot.client_secret, &hubspot.client_secret_file)
            .map_err(|message| invalid("sources.hubspot.client_secret_file", message))?;
        self.outbox.validate(&self.connectors)?;
        let (admin_tokens, plain_admin_tokens) =
            crate::auth::AdminTokens::from_config(&self.api.tokens)
                .map_err(|error| invalid("api.tokens", error.to_string()))?;
        self.validate_alerts()?;
        if self.api.session_ms == 0 {
            return Err(invalid("api.session_ms", "must be more than 0"));
        }
        // Checked here so `serve` refuses a bad calendar at start, not at the first wait.
        self.rules.calendar()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("not a tracing filter: {e}")))?;
        Ok(Validated {
            listen,
            public_url,
            hubspot_secret,
            admin_tokens,
            plain_admin_tokens,
            store,
            config: self,
        })
    }
}

impl Config {
    fn validate_alerts(&self) -> Result<(), ConfigError> {
        let alerts = &self.alerts;
        if alerts.check_interval_ms == 0 {
            return Err(invalid("alerts.check_interval_ms", "must be more than 0"));
        }
        let webhook = alerts.webhook_url.trim();
        if !webhook.is_empty() {
            let url = Url::parse(webhook).ok();
            if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https")) {
                // Not echoed: a webhook URL's path is its credential.
                return Err(invalid("alerts.webhook_url", "is not an http(s) URL"));
            }
            return Ok(());
        }
        let channel = alerts.slack_channel.trim();
        if channel.is_empty() {
            return Ok(());
        }
        let slack = &self.connectors.slack;
        let token = slack
            .token()
            .map_err(|e| invalid("connectors.slack.token_file", e.to_string()))?;
        if token.expose_secret().is_empty() && !slack.webhooks.contains_key(channel) {
            return Err(invalid(
                "alerts.slack_channel",
                format!(
                    "`{channel}` needs connectors.slack.token or a connectors.slack.webhooks entry for it"
                ),
            ));
        }
        Ok(())
    }
}

fn flat_overrides(overrides: &Overrides) -> Vec<(String, String)> {
    let mut values = Vec::new();
    if let Some(listen) = &overrides.listen {
        values.push(("server.listen".to_owned(), listen.clone()));
    }
    if let Some(url) = &overrides.store_url {
        values.push(("store.url".to_owned(), url.clone()));
    }
    if let Some(dir) = &overrides.rules_dir {
        values.push(("rules.dir".to_owned(), dir.clone()));
    }
    values
}

pub(crate) fn resolve_secret(inline: &SecretString, file: &Path) -> Result<SecretString, String> {
    if file.as_os_str().is_empty() {
        return Ok(inline.clone());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// figment's errors name the key path; keep the message short and free of values
/// (a value may be a secret).
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let kind = e.kind.to_string();
            if key.is_empty() {
                kind
            } else {
                format!("{key}: {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Validated {
    pub fn hubspot_secret_bytes(&self) -> &[u8] {
        self.hubspot_secret.expose_secret().as_bytes()
    }
}

#[cfg(test)]
// figment's Jail returns its own large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::store_target::StoreTarget;

    fn load_in(
        jail: &mut figment::Jail,
        file: Option<&str>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(file.map(Path::new), overrides)
    }

    #[test]
    fn embedded_defaults_are_complete_and_valid() {
        figment::Jail::expect_with(|jail| {
            let config = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(config.config.server.max_body_bytes, 1_048_576);
            assert!(
                matches!(&config.store, StoreTarget::Sqlite(path) if path == &PathBuf::from("followthrough.db"))
            );
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n",
            )?;
            jail.set_env("FOLLOWTHROUGH__SERVER__MAX_BODY_BYTES", "8192");
            jail.set_env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", "from-env");
            let overrides = Overrides {
                store_url: Some("sqlite://flag.db".into()),
                ..Overrides::default()
            };
            let config = load_in(jail, Some("custom.toml"), &overrides)
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(config.listen.port(), 9000, "file beats defaults");
            assert_eq!(
                config.config.server.max_body_bytes, 8192,
                "environment beats file"
            );
            assert_eq!(config.hubspot_secret_bytes(), b"from-env");
            assert!(
                matches!(&config.store, StoreTarget::Sqlite(path) if path == &PathBuf::from("flag.db")),
                "flags beat everything"
            );
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisten = \"nowhere\"\n")?;
            let error = load_in(jail, Some("bad.toml"), &Overrides::default())
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains("server.listen"), "{error}");

            jail.create_file("typo.toml", "[server]\nlisen = \"127.0.0.1:1\"\n")?;
            let error = load_in(jail, Some("typo.toml"), &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("lisen"), "{error}");

            jail.set_env("FOLLOWTHROUGH__STORE__URL", "mysql://x");
            let error = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains("store.url"), "{error}");

            // A PostgreSQL URL is accepted, and its password is never shown.
            jail.set_env(
                "FOLLOWTHROUGH__STORE__URL",
                "postgres://ft:hunter2@db.internal:5433/crm",
            );
            let config = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(config.store.describe(), "postgres://db.internal:5433/crm");
            assert!(!format!("{:?}", config.store).contains("hunter2"));
            jail.set_env(
                "FOLLOWTHROUGH__STORE__URL",
                "postgres://ft:hunter2@db/crm?x",
            );
            jail.set_env("FOLLOWTHROUGH__STORE__SCHEMA", "bad-name");
            let error = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains("store.schema"), "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_calendar_is_refused_at_validation() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FOLLOWTHROUGH__RULES__TIME_ZONE", "Mars/Olympus_Mons");
            let error = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains("rules.time_zone"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET",
                "hunter2-secret",
            );
            let config = load_in(jail, None, &Overrides::default()).unwrap();
            assert!(!format!("{config:?}").contains("hunter2-secret"));
            Ok(())
        });
    }

    #[test]
    fn secret_can_come_from_a_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("secret.txt", "  file-secret\n")?;
            jail.set_env(
                "FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET_FILE",
                "secret.txt",
            );
            let config = load_in(jail, None, &Overrides::default())
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(config.hubspot_secret_bytes(), b"file-secret");
            Ok(())
        });
    }
}
