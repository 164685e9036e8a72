//! HubSpot's CRM API: the read side the engine hydrates contexts with ([`HubSpotReader`])
//! and the write side the outbox acts through ([`HubSpotConnector`]). Both stand on one
//! client (`client`: URL building, auth, error text made safe); `classify` decides what
//! each answer means for retrying.

mod activity;
pub mod classify;
mod client;
mod enroll;
mod read;
mod revert;
mod write;

pub use client::HubSpotConfigError;
pub use read::{HubSpotReader, SOURCE};
pub use write::{HubSpotConnector, HubSpotConnectorConfig};

#[cfg(test)]
mod write_tests;
