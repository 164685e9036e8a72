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
