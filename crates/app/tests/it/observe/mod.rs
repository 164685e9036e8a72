//! Seeing everything: a lead's whole story in its trace, metrics that move as events
//! flow, and personal data kept out of the journal and the logs.

mod alerts;
mod metrics;
mod redaction;
mod retention;
mod timeline;
