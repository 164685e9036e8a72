//! Shapes shared by several routes: the error body and how times are written.
//!
//! The API has its own response types rather than serializing store rows: their field
//! names are a contract with scripts, and the store's are free to change.

use followthrough_core::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: what was wrong with the request, in words and as a stable code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for scripts: `unauthorized`, `not_found`, `bad_query`, `bad_path`,
    /// `bad_body`, `bad_object`, `conflict`, `method_not_allowed`, `unavailable`...
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}

/// RFC 3339 in UTC.
pub fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339()
}

pub fn rfc3339_opt(at: Option<Timestamp>) -> Option<String> {
    at.map(Timestamp::to_rfc3339)
}

pub fn ms_opt(at: Option<Timestamp>) -> Option<i64> {
    at.map(Timestamp::as_millis)
}

/// The page size asked for, or the default; 400 outside `1..=max`.
pub fn page_size(
    asked: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, crate::api_error::ApiError> {
    match asked {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(super::extract::bad_request(
            "bad_query",
            format!("limit must be between 1 and {max}, not {n}"),
        )),
    }
}
