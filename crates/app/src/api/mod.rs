//! The admin API under `/api/v1`: health, objects and their traces, runs, rules and dead
//! letters, as JSON for scripts and dashboards. Every route but the OpenAPI document
//! needs a bearer token ([`extract::Admin`]); every answer, errors included, is JSON.
//!
//! The routes are registered through `utoipa-axum`, so the router and the OpenAPI
//! document ([`openapi`]) come from the same list: a route cannot be served without
//! being documented.

mod dead_letters;
mod extract;
mod health;
mod objects;
mod openapi;
mod rules;
mod runs;
mod schema;

use axum::Router;
use followthrough_store::StoreError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_error::{self, ApiError};
use crate::server::AppState;

pub use openapi::PREFIX;

/// The `/api/v1` routes, to be nested at [`PREFIX`] by the server.
pub fn router() -> Router<AppState> {
    let (router, document) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::health))
        .routes(routes!(objects::search))
        .routes(routes!(objects::object))
        .routes(routes!(runs::list))
        .routes(routes!(runs::show))
        .routes(routes!(rules::list))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::show))
        .routes(routes!(dead_letters::replay::replay_one))
        .routes(routes!(dead_letters::replay::replay_many))
        .routes(routes!(openapi::document))
        .split_for_parts();
    let document = openapi::finish(document);
    router
        .layer(axum::Extension(document))
        // Our own, so this prefix answers JSON whatever the rest of the server does.
        .fallback(api_error::not_found)
        .method_not_allowed_fallback(api_error::method_not_allowed)
}

/// A store failure as a client sees it: opaque (the detail may name tables and SQL),
/// logged here with the detail.
fn store_error(error: StoreError) -> ApiError {
    tracing::error!(%error, "admin API: store call failed");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the store did not answer; retry later",
    )
}
