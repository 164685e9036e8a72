//! In-process fakes of the APIs followthrough talks to, for tests and benchmarks.
//!
//! Each fake is a real HTTP server on `127.0.0.1:0` that answers with the vendor's
//! documented shapes (including its error bodies and headers), records every request,
//! and can be told to fail, to be slow or to rate-limit. Point a client at
//! [`FakeHubSpot::base_url`] instead of the vendor's host.
//!
//! One module per vendor; inside it, one module per API area, so the write side
//! (tasks, batch upsert, notes) and other vendors (Slack) slot in beside the read side.

pub mod hubspot;
pub mod pipedrive;
mod recorded;
mod shared;
pub mod slack;

pub use hubspot::{
    Chaos, Failure, FakeAssociation, FakeEnrollment, FakeHubSpot, FakeOwner, FakeRecord,
};
pub use pipedrive::{FakePipedrive, PipedriveFailure};
pub use recorded::RecordedRequest;
pub use slack::{ChannelRateLimit, FakeSlack, PostedMessage, SlackChaos, SlackFailure};
