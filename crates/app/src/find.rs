//! Finding a lead the way a person asks for one: by its full reference
//! (`hubspot:contact:501`), by its CRM id alone (`501`), or by email.

use followthrough_core::ObjectRef;
use followthrough_store::{Store, StoreError};

/// The object kinds a bare id is tried as, most asked-for first.
const KINDS: &[(&str, &str)] = &[
    ("hubspot", "contact"),
    ("hubspot", "deal"),
    ("hubspot", "company"),
    ("pipedrive", "person"),
    ("pipedrive", "deal"),
    ("salesforce", "lead"),
    ("salesforce", "contact"),
    ("salesforce", "opportunity"),
];

/// Objects followthrough knows that match `query`, at most `limit`. Empty when nothing
/// matches (an unknown reference is not an error: it is "no such lead").
pub async fn find_objects(
    store: &dyn Store,
    query: &str,
    limit: usize,
) -> Result<Vec<ObjectRef>, StoreError> {
    let query = query.trim();
    if query.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    if query.contains('@') {
        return store.objects_by_email(query, limit).await;
    }
    let candidates: Vec<ObjectRef> = match query.parse::<ObjectRef>() {
        Ok(object) => vec![object],
        Err(_) => KINDS
            .iter()
            .map(|(source, kind)| ObjectRef::new(*source, *kind, query))
            .collect(),
    };
    let mut found = Vec::new();
    for candidate in candidates {
        if found.len() == limit {
            break;
        }
        if store.object(&candidate).await?.is_some() {
            found.push(candidate);
        }
    }
    Ok(found)
}
