//! Request-body checks the write endpoints share, answering as HubSpot does: invalid
//! JSON and invalid property values are 400s with the VALIDATION_ERROR body, a taken
//! unique value is a 409.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::Value;

use super::errors::{self, Invalid};
use super::object_type::ObjectType;
use super::state::State;

/// The body as JSON, or HubSpot's answer to malformed JSON.
pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|error| {
        errors::bad_request(format!(
            "Invalid input JSON on line {}, column {}: {error}",
            error.line(),
            error.column()
        ))
    })
}

/// `properties` of a create/update input as HubSpot stores them: strings (numbers and
/// booleans are accepted and stringified, `null` clears).
pub(crate) fn properties(input: &Value) -> Result<BTreeMap<String, String>, Response> {
    let Some(raw) = input.get("properties") else {
        return Err(errors::bad_request("`properties` is required"));
    };
    let Some(raw) = raw.as_object() else {
        return Err(errors::bad_request("`properties` must be an object"));
    };
    let mut properties = BTreeMap::new();
    for (name, value) in raw {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(errors::invalid_properties(&[Invalid::new(
                    name,
                    "INVALID_PROPERTY_VALUE",
                    format!("{name} must be a string, a number or a boolean"),
                )]));
            }
        };
        properties.insert(name.clone(), text);
    }
    Ok(properties)
}

/// A property that must hold one of `allowed`, when it is set.
pub(crate) fn option(
    properties: &BTreeMap<String, String>,
    name: &str,
    allowed: &[&str],
) -> Option<Invalid> {
    let value = properties.get(name)?;
    if value.is_empty() || allowed.contains(&value.as_str()) {
        return None;
    }
    Some(Invalid::new(
        name,
        "INVALID_OPTION",
        format!(
            "{value} was not one of the allowed options: [{}]",
            allowed.join(", ")
        ),
    ))
}

/// A datetime property: epoch milliseconds or an ISO 8601 UTC timestamp.
pub(crate) fn datetime(properties: &BTreeMap<String, String>, name: &str) -> Option<Invalid> {
    let value = properties.get(name)?;
    let valid = value.parse::<i64>().is_ok() || value.parse::<jiff::Timestamp>().is_ok();
    (!valid).then(|| {
        Invalid::new(
            name,
            "INVALID_DATE",
            format!("{value} is not a valid datetime (expected epoch milliseconds or ISO 8601)"),
        )
    })
}

/// `hubspot_owner_id`, when set, must name an owner.
pub(crate) fn owner(state: &State, properties: &BTreeMap<String, String>) -> Option<Invalid> {
    let value = properties.get("hubspot_owner_id")?;
    if value.is_empty() || state.owners.contains_key(value) {
        return None;
    }
    Some(Invalid::new(
        "hubspot_owner_id",
        "INVALID_OWNER_ID",
        format!("{value} is not a valid owner id"),
    ))
}

/// The 409 for a unique-value property whose value another record of `kind` holds.
pub(crate) fn unique(
    state: &State,
    kind: ObjectType,
    properties: &BTreeMap<String, String>,
    this_id: Option<&str>,
) -> Option<Response> {
    for (unique_kind, name) in &state.unique_properties {
        let Some(value) = properties.get(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        if *unique_kind != kind {
            continue;
        }
        let existing = state.find_by_property(kind, name, value);
        if let Some(existing) = existing.filter(|id| Some(id.as_str()) != this_id) {
            return Some(errors::conflict(format!(
                "A {} with {name} `{value}` already exists. Existing ID: {existing}",
                kind.singular()
            )));
        }
    }
    None
}
