//! The read-only side the engine uses to hydrate a rule's context (owners, objects,
//! associations).

use std::collections::BTreeMap;

use followthrough_core::ObjectRef;
use followthrough_core::Owner;
use serde_json::Value as Json;

/// Why a read failed. The engine journals it and retries the event later; it never
/// evaluates a rule against a guess.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The connector is not configured (no token): nothing can be fetched.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    /// Rate limited (429): not before `retry_after_ms` from now, if the API said.
    #[error("rate limited by the API")]
    RateLimited { retry_after_ms: Option<u64> },
    /// A 5xx, a timeout or a connection error: worth retrying.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    /// A 4xx other than 404/429 (bad token, bad request): retrying will not help soon.
    #[error("the API refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// Read-only access to a CRM, as the engine needs it.
///
/// Object types are followthrough's singular names (`contact`, `deal`, `company`,
/// `call`...); `None` means the CRM answered 404.
#[async_trait::async_trait]
pub trait CrmReader: Send + Sync + 'static {
    /// The owner with this id (HubSpot: `GET /crm/v3/owners/{id}`).
    async fn owner(&self, id: &str) -> Result<Option<Owner>, FetchError>;

    /// The object's current values of `properties` (all the CRM returns by default when
    /// empty). HubSpot: `GET /crm/v3/objects/{type}/{id}?properties=...`.
    async fn object(
        &self,
        object: &ObjectRef,
        properties: &[String],
    ) -> Result<Option<BTreeMap<String, Json>>, FetchError>;

    /// Every object of type `to_type` associated with `object`, following pagination.
    /// HubSpot: `GET /crm/v4/objects/{type}/{id}/associations/{toType}`.
    async fn associations(
        &self,
        object: &ObjectRef,
        to_type: &str,
    ) -> Result<Vec<ObjectRef>, FetchError>;
}
