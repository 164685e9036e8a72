//! followthrough's integration tests: one binary, the real server on 127.0.0.1:0 with a
//! temporary SQLite file, or the real `followthrough` executable as a child process.

mod api;
mod crash;
mod dlq;
mod engine;
mod helpers;
mod ingest;
mod instances;
mod observe;
mod outbox;
mod reload;
mod rules_cli;
mod state;
mod ui;
mod ui_browser;
