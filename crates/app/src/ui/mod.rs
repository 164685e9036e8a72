//! The web console at `/ui/`: server-rendered pages for the people who run
//! followthrough (overview, lead search and timeline, rules, dead letters with replay).
//!
//! No front-end build: the templates and the style sheet are compiled into the binary.
//! Access is by the same admin tokens as the API, asked for once at `/ui/login` and then
//! held as a signed, stateless session cookie ([`session`]); every POST carries a CSRF
//! token ([`csrf`]). `server::router` mounts [`router`].

mod csrf;
mod login;
mod page;
mod pages;
mod session;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::server::AppState;

pub use page::UiError;

/// Every console route, each under `/ui`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::overview::show))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/search", get(pages::search::show))
        .route("/ui/objects/{object}", get(pages::object::show))
        .route("/ui/rules", get(pages::rules::show))
        .route("/ui/dead-letters", get(pages::dead_letters::list))
        .route("/ui/dead-letters/{id}", get(pages::dead_letters::show))
        .route(
            "/ui/dead-letters/{id}/replay",
            post(pages::dead_letters::replay),
        )
        .route("/ui/console.css", get(stylesheet))
        // Unknown console paths get a console page, not the API's JSON 404.
        .route("/ui/{*rest}", get(pages::not_found))
}

/// The one style sheet, cached for an hour: it only changes with the binary.
async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
}
