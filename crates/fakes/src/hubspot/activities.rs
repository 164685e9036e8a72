//! Tasks and notes: `POST /crm/v3/objects/{tasks|notes}` (create, with associations)
//! and `POST /crm/v3/objects/{tasks|notes}/batch/upsert` (create or update by a
//! unique-value property).
//!
//! Validated as HubSpot does: `hs_timestamp` is required on create; a task's
//! `hs_task_priority`, `hs_task_type` and `hs_task_status` must be one of their options;
//! `hubspot_owner_id` must name an owner; associations must be HUBSPOT_DEFINED types
//! from this object type to records that exist; a unique-value property cannot hold a
//! value another record holds (409). Upsert inputs carry no associations, as in
//! HubSpot's API: a client associates separately.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::{self, Invalid};
use super::object_type::{ObjectType, association_target};
use super::objects::object_json;
use super::query::unsupported;
use super::state::{self, Shared, Source, State as FakeState};
use super::validate;

const PRIORITIES: [&str; 3] = ["LOW", "MEDIUM", "HIGH"];
const TASK_TYPES: [&str; 3] = ["CALL", "EMAIL", "TODO"];
const TASK_STATUSES: [&str; 5] = [
    "NOT_STARTED",
    "IN_PROGRESS",
    "WAITING",
    "COMPLETED",
    "DEFERRED",
];
/// HubSpot's cap on batch inputs.
const MAX_BATCH: usize = 100;

/// An association of the record being created.
struct Association {
    to: ObjectType,
    id: String,
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(object_type): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let kind = match activity_type(&object_type, "") {
        Ok(kind) => kind,
        Err(refusal) => return refusal,
    };
    let input = match validate::json_body(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal,
    };
    let properties = match validate::properties(&input) {
        Ok(properties) => properties,
        Err(refusal) => return refusal,
    };
    let associations = match associations(kind, input.get("associations")) {
        Ok(associations) => associations,
        Err(refusal) => return refusal,
    };
    let mut state = shared.state();
    if let Some(refusal) = check(&state, kind, &properties, None) {
        return refusal;
    }
    let missing: Vec<(String, &str)> = associations
        .iter()
        .filter(|a| !state.objects.contains_key(&(a.to, a.id.clone())))
        .map(|a| {
            let message = format!("No {} with id {} exists", a.to.singular(), a.id);
            (message, "OBJECT_NOT_FOUND")
        })
        .collect();
    if !missing.is_empty() {
        return errors::bad_request_with("One or more associations are invalid", &missing);
    }
    let id = state.new_object_id();
    let names: Vec<String> = properties.keys().cloned().collect();
    state.write_properties(kind, &id, properties, Source::Api);
    for association in &associations {
        state.associate_one_way(kind, &id, association.to, &association.id);
        state.associate_one_way(association.to, &association.id, kind, &id);
    }
    let body = record_json(&state, kind, &id, &names);
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(crate) async fn batch_upsert(
    State(shared): State<Arc<Shared>>,
    Path(object_type): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let kind = match activity_type(&object_type, "/batch/upsert") {
        Ok(kind) => kind,
        Err(refusal) => return refusal,
    };
    let body = match validate::json_body(&body) {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return errors::bad_request("`inputs` is required and must be an array");
    };
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return errors::bad_request(format!("`inputs` must hold 1 to {MAX_BATCH} items"));
    }
    let started_at = state::now();
    let mut state = shared.state();
    let mut planned = Vec::new();
    let mut seen = BTreeSet::new();
    for input in inputs {
        match plan_upsert(&state, kind, input) {
            Ok(plan) => {
                if !seen.insert((plan.id_property.clone(), plan.value.clone())) {
                    return errors::bad_request("Duplicate IDs found in batch input");
                }
                planned.push(plan);
            }
            Err(refusal) => return refusal,
        }
    }
    let mut results = Vec::new();
    for plan in planned {
        let existing = state.find_by_property(kind, &plan.id_property, &plan.value);
        let is_new = existing.is_none();
        let id = existing.unwrap_or_else(|| state.new_object_id());
        let names: Vec<String> = plan.properties.keys().cloned().collect();
        state.write_properties(kind, &id, plan.properties, Source::Api);
        let mut result = record_json(&state, kind, &id, &names);
        result["new"] = json!(is_new);
        results.push(result);
    }
    Json(json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started_at,
        "completedAt": state::now(),
    }))
    .into_response()
}

struct Upsert {
    id_property: String,
    value: String,
    properties: BTreeMap<String, String>,
}

fn plan_upsert(state: &FakeState, kind: ObjectType, input: &Value) -> Result<Upsert, Response> {
    let Some(value) = input
        .get("id")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return Err(errors::bad_request(
            "each input needs a non-empty string `id`",
        ));
    };
    let Some(id_property) = input.get("idProperty").and_then(Value::as_str) else {
        return Err(errors::bad_request(
            "each input needs `idProperty`, a unique-value property",
        ));
    };
    if !state
        .unique_properties
        .contains(&(kind, id_property.to_owned()))
    {
        return Err(errors::bad_request(format!(
            "{id_property} is not a unique-value property of {}",
            kind.plural()
        )));
    }
    let mut properties = validate::properties(input)?;
    if properties
        .get(id_property)
        .is_some_and(|given| given != value)
    {
        return Err(errors::bad_request(format!(
            "`properties.{id_property}` differs from the input's `id`"
        )));
    }
    properties.insert(id_property.to_owned(), value.to_owned());
    let existing = state.find_by_property(kind, id_property, value);
    if let Some(refusal) = check(state, kind, &properties, existing.as_deref()) {
        return Err(refusal);
    }
    Ok(Upsert {
        id_property: id_property.to_owned(),
        value: value.to_owned(),
        properties,
    })
}

/// Property checks for a create (`existing` is `None`) or an update of `existing`.
fn check(
    state: &FakeState,
    kind: ObjectType,
    properties: &BTreeMap<String, String>,
    existing: Option<&str>,
) -> Option<Response> {
    let mut invalid: Vec<Invalid> = Vec::new();
    if existing.is_none() && !properties.contains_key("hs_timestamp") {
        invalid.push(Invalid::new(
            "hs_timestamp",
            "REQUIRED_FIELD",
            "hs_timestamp is required",
        ));
    }
    invalid.extend(validate::datetime(properties, "hs_timestamp"));
    if kind == ObjectType::Task {
        invalid.extend(validate::option(
            properties,
            "hs_task_priority",
            &PRIORITIES,
        ));
        invalid.extend(validate::option(properties, "hs_task_type", &TASK_TYPES));
        invalid.extend(validate::option(
            properties,
            "hs_task_status",
            &TASK_STATUSES,
        ));
    }
    invalid.extend(validate::owner(state, properties));
    if !invalid.is_empty() {
        return Some(errors::invalid_properties(&invalid));
    }
    validate::unique(state, kind, properties, existing)
}

/// `tasks` or `notes` (any name HubSpot accepts for them); other types are not
/// implemented by the fake's write side.
fn activity_type(name: &str, suffix: &str) -> Result<ObjectType, Response> {
    match ObjectType::parse(name) {
        Some(kind @ (ObjectType::Task | ObjectType::Note)) => Ok(kind),
        Some(_) => Err(errors::not_implemented(format!(
            "POST /crm/v3/objects/{name}{suffix}"
        ))),
        None => Err(errors::unknown_object_type(name)),
    }
}

/// `[{"to":{"id"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":204}]}]`.
fn associations(kind: ObjectType, raw: Option<&Value>) -> Result<Vec<Association>, Response> {
    let Some(raw) = raw.filter(|raw| !raw.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = raw.as_array() else {
        return Err(errors::bad_request("`associations` must be an array"));
    };
    let mut problems: Vec<(String, &str)> = Vec::new();
    let mut found = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let id = match item.pointer("/to/id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                let message = format!("associations[{index}].to.id is required");
                problems.push((message, "INVALID_ASSOCIATION"));
                continue;
            }
        };
        let types = item.get("types").and_then(Value::as_array);
        let Some(types) = types.filter(|types| !types.is_empty()) else {
            let message = format!("associations[{index}].types must be a non-empty array");
            problems.push((message, "INVALID_ASSOCIATION"));
            continue;
        };
        for spec in types {
            match association_type(kind, spec) {
                Ok(to) => found.push(Association { to, id: id.clone() }),
                Err(message) => {
                    problems.push((
                        format!("associations[{index}]: {message}"),
                        "INVALID_ASSOCIATION",
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(errors::bad_request_with(
            "One or more associations are invalid",
            &problems,
        ))
    }
}

fn association_type(kind: ObjectType, spec: &Value) -> Result<ObjectType, String> {
    let category = spec.get("associationCategory").and_then(Value::as_str);
    let type_id = spec.get("associationTypeId").and_then(Value::as_u64);
    match (category, type_id) {
        (Some("HUBSPOT_DEFINED"), Some(type_id)) => {
            association_target(kind, type_id).ok_or_else(|| {
                format!(
                    "{type_id} is not a HUBSPOT_DEFINED association type from {}",
                    kind.plural()
                )
            })
        }
        (Some("USER_DEFINED" | "INTEGRATOR_DEFINED"), Some(_)) => {
            Err("the fake knows no labeled association types".to_owned())
        }
        (Some(other), Some(_)) => Err(format!("unknown associationCategory `{other}`")),
        _ => Err("associationCategory and a numeric associationTypeId are required".to_owned()),
    }
}

/// The record as HubSpot answers a write: the properties written plus the id and times.
fn record_json(state: &FakeState, kind: ObjectType, id: &str, names: &[String]) -> Value {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match state.objects.get(&(kind, id.to_owned())) {
        Some(object) => object_json(kind, id, object, &names),
        None => json!({ "id": id }),
    }
}
