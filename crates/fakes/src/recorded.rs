//! What a fake remembers of each request it received, for tests to assert on.

use std::time::Instant;

use axum::extract::Query;
use axum::http::request::Parts;
use serde_json::Value as Json;

/// One request as a fake received it (before any failure injection or auth check, so
/// rejected requests and retries are counted too).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path as sent (still percent-encoded), e.g. `/crm/v3/owners/7`.
    pub path: String,
    /// The raw query string, without the `?`; `None` when there was none.
    pub query: Option<String>,
    /// The body parsed as JSON; `None` when empty or not JSON.
    pub body: Option<Json>,
    /// When it arrived: what a test measures request rates with.
    pub at: Instant,
}

impl RecordedRequest {
    pub(crate) fn new(parts: &Parts, body: &[u8]) -> Self {
        Self {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            body: serde_json::from_slice(body).ok(),
            at: Instant::now(),
        }
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        let uri = format!("/?{query}").parse().ok()?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
        pairs
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}
