//! Query-string checks shared by the handlers.

use axum::response::Response;

use super::errors;

/// A 501 naming the first query parameter the fake does not implement, so a client
/// relying on one fails loudly instead of silently getting the default behaviour.
pub(crate) fn unsupported(query: &[(String, String)], known: &[&str]) -> Option<Response> {
    query
        .iter()
        .find(|(key, _)| !known.contains(&key.as_str()))
        .map(|(key, _)| errors::not_implemented(format!("the query parameter `{key}`")))
}
