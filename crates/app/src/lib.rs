//! followthrough, the application: configuration, the HTTP server and ingest, the
//! engine, the outbox workers, and the command line. `main.rs` only calls [`cli::main`].

pub mod api_error;
pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod find;
pub mod ingest;
pub mod journal;
pub mod listener;
pub mod outbox;
pub mod rules_handle;
pub mod server;
pub mod telemetry;
pub mod trace;
pub mod ui;
