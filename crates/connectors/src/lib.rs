//! The APIs followthrough reads and acts on.
//!
//! Every action the outbox holds is executed by one [`Connector`], which makes the call
//! and classifies what happened as an [`Outcome`]: `Success`, `Retry`, `Terminal` or
//! `Indeterminate`. Deciding *whether* to retry lives here, with the connector that
//! knows its API; deciding *when* lives in one place, [`RetryPolicy`]. Nothing here sees
//! the store: the outbox workers (in the app) claim jobs, call a connector outside any
//! transaction and record the outcome.
//!
//! [`CrmReader`] is the read-only side the engine uses to hydrate a rule's context.

pub mod circuit;
pub mod http;
pub mod hubspot;
pub mod limit;
mod outcome;
pub mod pipedrive;
mod read;
pub mod retry;
pub mod slack;

pub use outcome::{ActionJob, Connector, Failure, Outcome, Repeat, Success};
pub use read::{CrmReader, FetchError};
pub use retry::{RetryAfterUnit, RetryPolicy, parse_retry_after};

use followthrough_core::ObjectRef;

/// The connector that executes `action` about `object`: chat goes to Slack, `http` and
/// lookups to the HTTP connector, and CRM actions to the CRM the object lives in.
pub fn connector_for(action: &str, object: &ObjectRef) -> &'static str {
    match action {
        "slack_dm" | "slack_message" => "slack",
        "http" | "lookup" => "http",
        _ if object.source == "pipedrive" => "pipedrive",
        _ => "hubspot",
    }
}
