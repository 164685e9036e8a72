//! A fake HubSpot CRM API: owners, objects (read, patch, property history),
//! associations, tasks and notes (create, batch upsert), search, lists and sequence
//! enrollments.
//!
//! ```no_run
//! # async fn demo() {
//! use followthrough_fakes::{FakeHubSpot, FakeOwner};
//! let hubspot = FakeHubSpot::start().await;
//! hubspot.add_owner(FakeOwner { id: "7".into(), email: "ada@example.com".into(), ..Default::default() });
//! hubspot.set_object("contact", "501", [("email".into(), "lead@example.com".into())].into());
//! hubspot.associate("contact", "501", "deal", "9001");
//! hubspot.fail_next(1, 503);
//! // point the client at hubspot.base_url() with hubspot.token() ...
//! assert_eq!(hubspot.request_count("/crm/v3/owners/"), 0);
//! # }
//! ```
//!
//! Layout: `gate` (recording, failures, chaos, auth, rate limit) wraps every route; one
//! module per API area (`owners`, `objects`, `associations`, `activities` for tasks and
//! notes, `search`, `lists`, `sequences`) holds its handlers, registered in `router`;
//! `validate` holds the body checks the writes share; `inspect` the write side's test
//! handles.

// Checks return the finished error `Response`: simplest for handlers, and size does not
// matter in a test fake.
#![allow(clippy::result_large_err)]

mod activities;
mod associations;
mod chaos;
mod errors;
mod gate;
mod inspect;
mod lists;
mod object_type;
mod objects;
mod owners;
mod query;
mod search;
mod sequences;
mod state;
#[cfg(test)]
mod tests;
mod validate;
#[cfg(test)]
mod write_tests;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use tokio::task::JoinHandle;

pub use chaos::Chaos;
pub use inspect::{FakeAssociation, FakeEnrollment, FakeRecord};
use object_type::ObjectType;
use state::Shared;
pub use state::{Failure, FakeOwner};

/// A HubSpot API on `127.0.0.1:<random port>`, alive until this handle is dropped.
pub struct FakeHubSpot {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeHubSpot {
    crate::shared::request_log_methods!();

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> Self {
        let (shared, server) =
            crate::shared::serve("HubSpot", new_token(), state::State::new(), router).await;
        Self { shared, server }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: use it where the client
    /// would use `https://api.hubapi.com`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The only bearer token the fake accepts (random per instance, in the shape of a
    /// private-app token).
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// Adds or replaces an owner.
    pub fn add_owner(&self, owner: FakeOwner) {
        self.shared.state().add_owner(owner);
    }

    /// Creates the object, or replaces all its properties (keeping its creation time).
    /// `object_type` is any name HubSpot accepts (`contact`, `contacts`, `0-1`).
    ///
    /// # Panics
    /// On an object type the fake does not know.
    pub fn set_object(&self, object_type: &str, id: &str, properties: BTreeMap<String, String>) {
        let kind = known_type(object_type);
        self.shared.state().set_object(kind, id, properties);
    }

    /// Associates two objects with HubSpot's default (unlabeled) association type,
    /// both ways, as HubSpot does. Repeating it changes nothing.
    ///
    /// # Panics
    /// On an unknown object type, or a pair HubSpot defines no association type for.
    pub fn associate(&self, from_type: &str, from_id: &str, to_type: &str, to_id: &str) {
        let (from, to) = (known_type(from_type), known_type(to_type));
        assert!(
            object_type::association_type_id(from, to).is_some(),
            "the fake knows no HUBSPOT_DEFINED association from {from_type} to {to_type}"
        );
        let mut state = self.shared.state();
        state.associate_one_way(from, from_id, to, to_id);
        state.associate_one_way(to, to_id, from, from_id);
    }

    /// Caps association pages at `size` results (HubSpot's cap is 500), whatever
    /// `limit` the client asks for, so that a client's pagination can be tested.
    pub fn set_max_page_size(&self, size: usize) {
        self.shared.state().max_page_size = size.max(1);
    }

    /// The next `n` requests fail with `status` (see [`Failure::status`] for the bodies).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, Failure::status(status));
    }

    /// The next `n` requests fail as described, e.g. a 429 with a `Retry-After`.
    pub fn fail_next_with(&self, n: usize, failure: Failure) {
        let mut state = self.shared.state();
        state.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Enforces HubSpot's rolling ten-second limit: past `max_per_10s` authenticated
    /// requests in the last ten seconds, answer 429 with the RATE_LIMIT body. Counted
    /// answers carry `X-HubSpot-RateLimit-Max`, `-Remaining` and `-Interval-Milliseconds`.
    pub fn set_rate_limit(&self, max_per_10s: u32) {
        self.shared.state().set_rate_limit(Some(max_per_10s));
    }

    /// Removes the rate limit (the default).
    pub fn clear_rate_limit(&self) {
        self.shared.state().set_rate_limit(None);
    }
}

impl Drop for FakeHubSpot {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeHubSpot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHubSpot")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/crm/v3/owners", get(owners::list_owners))
        .route("/crm/v3/owners/{owner_id}", get(owners::get_owner))
        .route("/crm/v3/objects/{object_type}", post(activities::create))
        .route(
            "/crm/v3/objects/{object_type}/batch/upsert",
            post(activities::batch_upsert),
        )
        .route("/crm/v3/objects/{object_type}/search", post(search::search))
        .route(
            "/crm/v3/objects/{object_type}/{object_id}",
            get(objects::get_object).patch(objects::patch_object),
        )
        .route(
            "/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}",
            get(associations::list),
        )
        .route(
            "/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}",
            put(associations::create_default),
        )
        .route(
            "/crm/v3/lists/{list_id}/memberships/add",
            put(lists::add_members),
        )
        .route(
            "/automation/v4/sequences/enrollments",
            post(sequences::enroll),
        )
        .route(
            "/automation/v4/sequences/enrollments/contact/{contact_id}",
            get(sequences::contact_enrollment),
        )
        .fallback(|request: axum::extract::Request| async move {
            let what = format!("{} {}", request.method(), request.uri().path());
            errors::not_implemented(what)
        })
        .layer(from_fn_with_state(shared.clone(), gate::gate))
        .with_state(shared)
}

fn known_type(name: &str) -> ObjectType {
    ObjectType::parse(name)
        .unwrap_or_else(|| panic!("the fake HubSpot knows no object type `{name}`"))
}

/// Shaped like a private-app token, random so tests can check it never leaks.
fn new_token() -> String {
    let a = RandomState::new().hash_one(0u8);
    let b = RandomState::new().hash_one(1u8);
    format!("pat-na1-{a:016x}{b:016x}")
}
