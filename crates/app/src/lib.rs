//! followthrough, the application: configuration, the HTTP server and ingest, the
//! engine, the outbox workers, and the command line. `main.rs` only calls [`cli::main`].

pub mod alerts;
pub mod api;
pub mod api_error;
pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod find;
pub mod ingest;
pub mod journal;
pub mod listener;
pub mod metrics;
pub mod outbox;
pub mod privacy;
pub mod retention;
pub mod rules_handle;
pub mod server;
pub mod store_target;
pub mod telemetry;
pub mod trace;
pub mod ui;
