//! followthrough's shared vocabulary: typed ids, object references, the canonical
//! [`Event`] every source is normalized into, and the injected [`Clock`].
//!
//! This crate does no I/O. Everything else depends on it; it depends on nothing of ours.

mod clock;
mod event;
mod ids;
mod object;
mod owner;
mod raw;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use event::{Event, EventKind};
pub use ids::{EventId, RunId};
pub use object::{ObjectRef, ObjectRefError};
pub use owner::Owner;
pub use raw::RawJson;
