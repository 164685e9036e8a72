//! followthrough's integration tests: one binary, the real server on 127.0.0.1:0 or the
//! real `followthrough` executable as a child process, each test on a store of its own:
//! a temporary SQLite file, or with `FOLLOWTHROUGH_TEST_STORE=postgres` a schema of its
//! own in the PostgreSQL test database (see `backend`).

mod api;
mod backend;
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
