//! `GET /crm/v3/objects/{objectType}/{objectId}?properties=a,b`.
//!
//! As HubSpot does: the id and the two timestamps always come back; without
//! `properties`, the type's default properties do; a requested property the object has
//! no value for comes back as `null` (HubSpot omits only properties that do not exist in
//! the account's schema, which the fake does not model). Every value is a string.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::errors;
use super::object_type::ObjectType;
use super::query::unsupported;
use super::state::{Shared, StoredObject};

pub(crate) async fn get_object(
    State(shared): State<Arc<Shared>>,
    Path((object_type, object_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &["properties"]) {
        return refusal;
    }
    let Some(kind) = ObjectType::parse(&object_type) else {
        return errors::unknown_object_type(&object_type);
    };
    // HubSpot takes both `properties=a,b` and `properties=a&properties=b`.
    let requested: Vec<&str> = query
        .iter()
        .filter(|(key, _)| key == "properties")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    let state = shared.state();
    match state.objects.get(&(kind, object_id.clone())) {
        Some(object) => Json(object_json(kind, &object_id, object, &requested)).into_response(),
        None => errors::not_found("resource not found"),
    }
}

fn object_json(kind: ObjectType, id: &str, object: &StoredObject, requested: &[&str]) -> Value {
    let names = if requested.is_empty() {
        kind.default_properties()
    } else {
        requested
    };
    let mut properties = Map::new();
    for name in names {
        let value = object
            .properties
            .get(*name)
            .map_or(Value::Null, |v| json!(v));
        properties.insert((*name).to_owned(), value);
    }
    properties.insert("hs_object_id".into(), json!(id));
    properties.insert(kind.created_property().into(), json!(object.created_at));
    properties.insert(kind.modified_property().into(), json!(object.updated_at));
    json!({
        "id": id,
        "properties": properties,
        "createdAt": object.created_at,
        "updatedAt": object.updated_at,
        "archived": false,
    })
}
