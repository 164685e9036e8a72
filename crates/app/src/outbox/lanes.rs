//! Building the outbox from the configuration: a lane for each connector that can act
//! (HubSpot, Slack and Pipedrive need a token; the HTTP connector always can).

use std::sync::Arc;
use std::time::Duration;

use followthrough_connectors::Connector;
use followthrough_connectors::circuit::Circuit;
use followthrough_connectors::http::{HttpConfig, HttpConnector};
use followthrough_connectors::hubspot::{HubSpotConnector, HubSpotConnectorConfig};
use followthrough_connectors::limit::RateLimiter;
use followthrough_connectors::pipedrive::{PipedriveConfig, PipedriveConnector};
use followthrough_connectors::slack::{SlackConfig, SlackConnector};
use followthrough_core::Clock;
use followthrough_store::Store;
use secrecy::ExposeSecret;

use super::{Lane, Outbox, OutboxParts, Teams};
use crate::config::Validated;
use crate::config::connectors::Pace;

/// The outbox workers `config` asks for. A connector without a token gets no lane: its
/// jobs wait in the outbox (and the log says so) until it is configured.
pub fn build(
    config: &Validated,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    engine_wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<Outbox> {
    let connectors = &config.config.connectors;
    let outbox = &config.config.outbox;
    let circuit = || {
        Circuit::new(
            outbox.circuit_failures,
            Duration::from_millis(outbox.circuit_open_ms),
        )
    };
    let mut lanes = Vec::new();
    let mut add = |connector: Arc<dyn Connector>, pace: Pace| {
        lanes.push(Lane::new(connector, pace, circuit()));
    };

    let hubspot = &connectors.hubspot;
    let mut teams = Teams::new(hubspot.teams.clone());
    let token = hubspot.token()?;
    if token.expose_secret().is_empty() {
        tracing::warn!("connectors.hubspot.token is empty: HubSpot actions wait in the outbox");
    } else {
        let property = hubspot.idempotency_property.trim();
        let connector = HubSpotConnector::new(
            HubSpotConnectorConfig {
                base_url: hubspot.base_url.clone(),
                token,
                timeout: hubspot.pace().timeout,
                idempotency_property: (!property.is_empty()).then(|| property.to_owned()),
                idempotency_upsert: hubspot.idempotency_upsert,
                search_settle: Duration::from_millis(hubspot.search_settle_ms),
            },
            Arc::clone(&clock),
        )?;
        let connector = Arc::new(connector);
        teams.loads = Some(Arc::clone(&connector));
        add(connector, hubspot.pace());
    }

    let slack = &connectors.slack;
    let token = slack.token()?;
    if token.expose_secret().is_empty() && slack.webhooks.is_empty() {
        tracing::warn!("connectors.slack.token is empty: Slack messages wait in the outbox");
    } else {
        let mut slack_config = SlackConfig::new(token);
        slack_config.base_url = slack.base_url.clone();
        slack_config.timeout = slack.pace().timeout;
        slack_config.webhooks = slack.webhooks.clone();
        add(Arc::new(SlackConnector::new(slack_config)?), slack.pace());
    }

    let pipedrive = &connectors.pipedrive;
    let token = pipedrive.token()?;
    if !token.expose_secret().is_empty() {
        let mut pipedrive_config = PipedriveConfig::new(pipedrive.base_url.clone(), token);
        pipedrive_config.timeout = pipedrive.pace().timeout;
        add(
            Arc::new(PipedriveConnector::new(pipedrive_config)?),
            pipedrive.pace(),
        );
    }

    let http = &connectors.http;
    let http_config = HttpConfig {
        timeout: http.pace().timeout,
        allowed_hosts: http.allowed_hosts.clone(),
        ..HttpConfig::default()
    };
    add(Arc::new(HttpConnector::new(http_config)?), http.pace());

    Ok(Outbox::new(OutboxParts {
        store,
        clock,
        lanes,
        policy: outbox.retry_policy(),
        limiter: RateLimiter::default(),
        teams,
        redactor: crate::server::redactor(config),
        lease: Duration::from_millis(outbox.lease_ms),
        claim_batch: outbox.claim_batch,
        poll: Duration::from_millis(outbox.poll_ms),
        engine_wake,
    }))
}
