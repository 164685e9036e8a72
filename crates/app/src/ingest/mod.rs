//! Webhook ingest: one module per source. Each verifies the raw body, normalizes it into
//! canonical events and appends the batch to the inbox in one transaction; only then
//! does it answer 2xx.

pub mod body;
pub mod generic;
pub mod hubspot;
