//! A fake Pipedrive API: activities and notes (v1 creates), deal and person updates
//! (v2 PATCH).
//!
//! ```no_run
//! # async fn demo() {
//! use followthrough_fakes::{FakePipedrive, PipedriveFailure};
//! use serde_json::json;
//! let pipedrive = FakePipedrive::start().await;
//! pipedrive.set_deal(42, json!({"title": "Big deal", "stage_id": 1}));
//! pipedrive.fail_next(1, PipedriveFailure::status(429).retry_after("2"));
//! // point the client at pipedrive.base_url() (for https://<company>.pipedrive.com/api)
//! // and send pipedrive.token() in the x-api-token header
//! assert!(pipedrive.activities().is_empty());
//! # }
//! ```
//!
//! Layout: `gate` (recording, failures, auth) wraps every route; `activities` holds the
//! creates, `records` the updates, `replies` Pipedrive's answer shapes.

mod activities;
mod gate;
mod records;
mod replies;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{patch, post};
use serde_json::Value as Json;
use tokio::task::JoinHandle;

pub use state::PipedriveFailure;
use state::{Kind, Shared};

/// A Pipedrive API on `127.0.0.1:<random port>`, alive until this handle is dropped.
pub struct FakePipedrive {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakePipedrive {
    crate::shared::request_log_methods!();

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start() -> Self {
        let (shared, server) = crate::shared::serve(
            "Pipedrive",
            crate::slack::random_hex(40),
            state::State::new(),
            router,
        )
        .await;
        Self { shared, server }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: use it where the client
    /// would use `https://<company>.pipedrive.com/api` (routes are `/v1/..`, `/v2/..`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The only API token the fake accepts (random per instance).
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// Creates or replaces a deal. `fields` should be a JSON object (anything else
    /// stores an empty record).
    pub fn set_deal(&self, id: u64, fields: Json) {
        self.set(Kind::Deal, id, fields);
    }

    /// Creates or replaces a person.
    pub fn set_person(&self, id: u64, fields: Json) {
        self.set(Kind::Person, id, fields);
    }

    /// A deal's current fields, as a client's updates left them.
    pub fn deal(&self, id: u64) -> Option<Json> {
        self.get(Kind::Deal, id)
    }

    /// A person's current fields.
    pub fn person(&self, id: u64) -> Option<Json> {
        self.get(Kind::Person, id)
    }

    /// Every activity created so far (as stored: with `id`, `done`, `add_time`).
    pub fn activities(&self) -> Vec<Json> {
        self.shared.state().activities.clone()
    }

    /// Every note created so far.
    pub fn notes(&self) -> Vec<Json> {
        self.shared.state().notes.clone()
    }

    /// The next `n` requests fail as described.
    pub fn fail_next(&self, n: usize, failure: PipedriveFailure) {
        let mut state = self.shared.state();
        state.failures.extend(std::iter::repeat_n(failure, n));
    }

    fn set(&self, kind: Kind, id: u64, fields: Json) {
        let mut fields = match fields {
            Json::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        fields.insert("id".into(), id.into());
        self.shared.state().records.insert((kind, id), fields);
    }

    fn get(&self, kind: Kind, id: u64) -> Option<Json> {
        let state = self.shared.state();
        state.records.get(&(kind, id)).cloned().map(Json::Object)
    }
}

impl Drop for FakePipedrive {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakePipedrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePipedrive")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/activities", post(activities::create_activity))
        .route("/v1/notes", post(activities::create_note))
        .route("/v2/{kind}/{id}", patch(records::update))
        .fallback(|request: axum::extract::Request| async move {
            let what = format!("{} {}", request.method(), request.uri().path());
            replies::error(
                StatusCode::NOT_IMPLEMENTED,
                &format!("the fake Pipedrive does not implement {what}"),
            )
        })
        .layer(from_fn_with_state(shared.clone(), gate::gate))
        .with_state(shared)
}
