//! HubSpot's CRM API: the read side the engine hydrates contexts with ([`HubSpotReader`])
//! and, as it is built, the write side the outbox acts through.

mod read;

pub use read::{HubSpotConfigError, HubSpotReader, SOURCE};
