//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes
//! and served at `GET /api/v1/openapi.json` without a token (it describes the API; it
//! holds no data).

use std::sync::Arc;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::PathsMap;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::schema::ErrorBody;

/// Where the server mounts the API.
pub const PREFIX: &str = "/api/v1";

/// The name of the bearer scheme in `components.securitySchemes` (the derive below
/// repeats it as a literal: its attribute takes no constant).
const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "followthrough admin API",
        description = "Health, leads and their timelines, rule runs, rules and dead letters of a followthrough server. Send `Authorization: Bearer <token>` with a token listed (as its digest) in `api.tokens`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Is the server well, and how much work is waiting"),
        (name = "objects", description = "CRM objects (leads, deals) and their timelines"),
        (name = "runs", description = "Rule runs"),
        (name = "rules", description = "The rules in force"),
        (name = "dead-letters", description = "Actions that failed for good, and their replay"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// The document's fixed parts; the routes add their paths and schemas.
pub fn base() -> OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token made by `followthrough token`, whose digest is in `api.tokens`.",
                ))
                .build(),
        ),
    );
    document
}

/// The document as served: paths as clients call them (the router is nested at
/// [`PREFIX`] by the server, so the handlers know only their own part), serialized once.
pub fn finish(mut document: OpenApi) -> ServedDocument {
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (format!("{PREFIX}{path}"), item))
        .collect::<PathsMap<_, _>>();
    let json = document
        .to_json()
        .expect("the OpenAPI document is plain data and always serializes");
    ServedDocument(Arc::from(json))
}

/// The serialized document, shared by every request.
#[derive(Clone)]
pub struct ServedDocument(Arc<str>);

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn document(Extension(document): Extension<ServedDocument>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        document.0.as_bytes().to_vec(),
    )
}
