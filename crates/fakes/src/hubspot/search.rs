//! `POST /crm/v3/objects/{objectType}/search`.
//!
//! `{"filterGroups":[{"filters":[{"propertyName","operator":"EQ","value"}]}],
//! "properties":[..],"limit":N,"after":".."}` -> `{"total","results":[..],"paging"}`.
//! Groups are ORed, filters in a group ANDed (HubSpot's limits: 5 groups, 6 filters
//! each, 200 per page). Only `EQ` is implemented (others answer 501, so a client relying
//! on one fails loudly). Like HubSpot's index, a record is not found until it is older
//! than the search lag (`FakeHubSpot::set_search_lag`). Results come in creation order.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors;
use super::object_type::ObjectType;
use super::objects::object_json;
use super::query::unsupported;
use super::state::{Shared, StoredObject};
use super::validate;

const MAX_LIMIT: u64 = 200;
const DEFAULT_LIMIT: u64 = 10;
const MAX_GROUPS: usize = 5;
const MAX_FILTERS: usize = 6;
/// HubSpot's search never pages past this many results.
const MAX_RESULTS: usize = 10_000;
const OPERATORS: [&str; 13] = [
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

/// One `EQ` filter.
struct Filter {
    property: String,
    value: String,
}

pub(crate) async fn search(
    State(shared): State<Arc<Shared>>,
    Path(object_type): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let Some(kind) = ObjectType::parse(&object_type) else {
        return errors::unknown_object_type(&object_type);
    };
    let request = match validate::json_body(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    let groups = match filter_groups(&request) {
        Ok(groups) => groups,
        Err(refusal) => return refusal,
    };
    let limit = match request.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(limit) => match limit.as_u64() {
            Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => return errors::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")),
        },
    };
    let offset = match request.get("after") {
        None | Some(Value::Null) => 0,
        Some(Value::String(after)) => match after.parse::<usize>() {
            Ok(offset) => offset,
            Err(_) => return errors::bad_request("invalid paging cursor `after`"),
        },
        Some(Value::Number(after)) => usize::try_from(after.as_u64().unwrap_or(0)).unwrap_or(0),
        Some(_) => return errors::bad_request("`after` must be a string"),
    };
    let properties: Vec<String> = match request.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => return errors::bad_request("`properties` must be an array of names"),
    };
    if offset >= MAX_RESULTS {
        return errors::bad_request(format!("search pages end at {MAX_RESULTS} results"));
    }

    let state = shared.state();
    let lag = state.search_lag;
    let mut matching: Vec<(&String, &StoredObject)> = state
        .objects
        .iter()
        .filter(|((k, _), object)| *k == kind && object.created.elapsed() >= lag)
        .map(|((_, id), object)| (id, object))
        .filter(|(id, object)| {
            groups.is_empty()
                || groups
                    .iter()
                    .any(|group| group.iter().all(|f| matches(id, object, f)))
        })
        .collect();
    matching.sort_by(|a, b| a.1.created.cmp(&b.1.created).then_with(|| a.0.cmp(b.0)));
    let total = matching.len();
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut names: Vec<&str> = properties.iter().map(String::as_str).collect();
    if names.is_empty() {
        names = kind.default_properties().to_vec();
    }
    let results: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page)
        .map(|(id, object)| object_json(kind, id, object, &names))
        .collect();
    let mut body = json!({ "total": total, "results": results });
    let next = offset.saturating_add(page);
    if next < total.min(MAX_RESULTS) {
        body["paging"] = json!({ "next": { "after": next.to_string() } });
    }
    Json(body).into_response()
}

fn matches(id: &str, object: &StoredObject, filter: &Filter) -> bool {
    if filter.property == "hs_object_id" {
        return id == filter.value;
    }
    object
        .properties
        .get(&filter.property)
        .is_some_and(|value| *value == filter.value)
}

fn filter_groups(request: &Value) -> Result<Vec<Vec<Filter>>, Response> {
    let groups = match request.get("filterGroups") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(groups)) => groups,
        Some(_) => return Err(errors::bad_request("`filterGroups` must be an array")),
    };
    if groups.len() > MAX_GROUPS {
        return Err(errors::bad_request(format!(
            "at most {MAX_GROUPS} filterGroups are allowed"
        )));
    }
    let mut parsed = Vec::new();
    for group in groups {
        let Some(filters) = group.get("filters").and_then(Value::as_array) else {
            return Err(errors::bad_request(
                "each filter group needs a `filters` array",
            ));
        };
        if filters.len() > MAX_FILTERS {
            return Err(errors::bad_request(format!(
                "at most {MAX_FILTERS} filters are allowed per group"
            )));
        }
        let mut group = Vec::new();
        for filter in filters {
            group.push(parse_filter(filter)?);
        }
        parsed.push(group);
    }
    Ok(parsed)
}

fn parse_filter(filter: &Value) -> Result<Filter, Response> {
    let Some(property) = filter.get("propertyName").and_then(Value::as_str) else {
        return Err(errors::bad_request("each filter needs a `propertyName`"));
    };
    let operator = filter.get("operator").and_then(Value::as_str).unwrap_or("");
    if !OPERATORS.contains(&operator) {
        return Err(errors::bad_request(format!(
            "unknown filter operator `{operator}`"
        )));
    }
    if operator != "EQ" {
        return Err(errors::not_implemented(format!(
            "the search operator `{operator}`"
        )));
    }
    let value = match filter.get("value") {
        Some(Value::String(value)) => value.clone(),
        Some(Value::Number(value)) => value.to_string(),
        Some(Value::Bool(value)) => value.to_string(),
        _ => return Err(errors::bad_request("an EQ filter needs a `value`")),
    };
    Ok(Filter {
        property: property.to_owned(),
        value,
    })
}
