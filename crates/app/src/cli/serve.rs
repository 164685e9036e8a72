//! `followthrough serve`.

use std::process::ExitCode;
use std::sync::Arc;

use followthrough_core::SystemClock;

use crate::config::Validated;
use crate::rules_handle::{PidFile, RulesHandle};
use crate::server;
use crate::telemetry;
use followthrough_connectors::CrmReader;
use followthrough_connectors::hubspot::HubSpotReader;
use followthrough_rules::print_diagnostics;

pub fn run(config: Validated) -> anyhow::Result<ExitCode> {
    telemetry::init(
        config.config.log.format,
        &config.config.log.level,
        config.config.privacy.redact_patterns,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if secrecy::ExposeSecret::expose_secret(&config.hubspot_secret).is_empty() {
            tracing::warn!(
                "sources.hubspot.client_secret is empty: HubSpot webhooks will be refused (401)"
            );
        }
        let rules_dir = config.config.rules.dir.clone();
        let rules = match RulesHandle::load(&rules_dir) {
            Ok(rules) => rules,
            Err(diagnostics) => {
                let _ = print_diagnostics(&diagnostics, &mut std::io::stderr());
                anyhow::bail!(
                    "{} problem(s) in the rules in {}: not starting",
                    diagnostics.len(),
                    rules_dir.display()
                );
            }
        };
        tracing::info!(dir = %rules_dir.display(), rules = rules.current().rules().len(), "rules loaded");
        let _pid_file = match &config.config.server.pid_file {
            path if path.as_os_str().is_empty() => None,
            path => Some(PidFile::create(path)?),
        };
        let crm = crm_reader(&config)?;
        let store = config.store.open(true).await?;
        tracing::info!(store = %config.store.describe(), "store open and migrated");
        let services = server::Services {
            store,
            clock: Arc::new(SystemClock),
            rules: Arc::new(rules),
            crm,
        };
        let running = server::spawn(config, services).await?;
        let shutdown = running.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
        running.handle.await??;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

/// The HubSpot reader, if `connectors.hubspot.token` is set.
pub fn crm_reader(config: &Validated) -> anyhow::Result<Option<Arc<dyn CrmReader>>> {
    let hubspot = &config.config.connectors.hubspot;
    let token = hubspot.token()?;
    if secrecy::ExposeSecret::expose_secret(&token).is_empty() {
        tracing::warn!(
            "connectors.hubspot.token is empty: rules that read owners or linked objects will wait"
        );
        return Ok(None);
    }
    let timeout = std::time::Duration::from_millis(config.config.engine.fetch_timeout_ms);
    let reader = HubSpotReader::new(&hubspot.base_url, token, timeout)?;
    Ok(Some(Arc::new(reader)))
}
