//! `followthrough serve`.

use std::process::ExitCode;
use std::sync::Arc;

use followthrough_core::SystemClock;
use followthrough_store_sqlite::SqliteStore;

use crate::config::Validated;
use crate::server;
use crate::telemetry;

pub fn run(config: Validated) -> anyhow::Result<ExitCode> {
    telemetry::init(config.config.log.format, &config.config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if secrecy::ExposeSecret::expose_secret(&config.hubspot_secret).is_empty() {
            tracing::warn!(
                "sources.hubspot.client_secret is empty: HubSpot webhooks will be refused (401)"
            );
        }
        let store = SqliteStore::open(&config.store_path, true)?;
        tracing::info!(store = %config.store_path.display(), "store open and migrated");
        let running = server::spawn(config, Arc::new(store), Arc::new(SystemClock)).await?;
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
