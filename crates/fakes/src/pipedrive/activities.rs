//! `POST /v1/activities` and `POST /v1/notes`: the creates, with the validation a
//! client is most likely to trip (dates, times, types, links to missing records).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value as Json};

use super::replies::{bad_request, ok};
use super::state::{Kind, Shared, State as FakeState, v1_now};

/// Pipedrive's default activity types (key strings).
const ACTIVITY_TYPES: [&str; 6] = ["call", "meeting", "task", "deadline", "email", "lunch"];

pub(crate) async fn create_activity(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(fields) = object(&body) else {
        return bad_request("Request body must be a JSON object");
    };
    if let Some(kind) = fields.get("type")
        && !kind
            .as_str()
            .is_some_and(|kind| ACTIVITY_TYPES.contains(&kind))
    {
        return bad_request("Activity type is not valid");
    }
    if let Some(date) = fields.get("due_date")
        && !date
            .as_str()
            .is_some_and(|d| d.len() == 10 && d.parse::<jiff::civil::Date>().is_ok())
    {
        return bad_request("Invalid due_date. Expected format YYYY-MM-DD");
    }
    if let Some(time) = fields.get("due_time")
        && !time.as_str().is_some_and(valid_time)
    {
        return bad_request("Invalid due_time. Expected format HH:MM");
    }
    if let Some(user) = fields.get("user_id")
        && !user.is_u64()
    {
        return bad_request("user_id must be an integer");
    }
    let mut state = shared.state();
    if let Some(refusal) = missing_links(&state, &fields) {
        return refusal;
    }
    let id = state.next_id();
    let mut data = fields;
    data.insert("id".into(), id.into());
    data.entry("type").or_insert_with(|| "task".into());
    data.entry("subject").or_insert_with(|| "Task".into());
    data.insert("done".into(), false.into());
    data.insert("add_time".into(), v1_now().into());
    let data = Json::Object(data);
    state.activities.push(data.clone());
    ok(StatusCode::CREATED, data)
}

pub(crate) async fn create_note(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(fields) = object(&body) else {
        return bad_request("Request body must be a JSON object");
    };
    if fields["content"]
        .as_str()
        .is_none_or(|c| c.trim().is_empty())
    {
        return bad_request("Note content cannot be empty");
    }
    let linked = ["deal_id", "person_id", "org_id", "lead_id"];
    if !linked.iter().any(|key| fields.contains_key(*key)) {
        return bad_request("Note must be attached to a deal, person, organization or lead");
    }
    let mut state = shared.state();
    if let Some(refusal) = missing_links(&state, &fields) {
        return refusal;
    }
    let id = state.next_id();
    let mut data = fields;
    data.insert("id".into(), id.into());
    data.insert("add_time".into(), v1_now().into());
    let data = Json::Object(data);
    state.notes.push(data.clone());
    ok(StatusCode::CREATED, data)
}

fn object(body: &[u8]) -> Option<Map<String, Json>> {
    match serde_json::from_slice(body).ok()? {
        Json::Object(fields) => Some(fields),
        _ => None,
    }
}

/// `HH:MM`, 24-hour.
fn valid_time(time: &str) -> bool {
    let Some((hours, minutes)) = time.split_once(':') else {
        return false;
    };
    let (Ok(h), Ok(m)) = (hours.parse::<u8>(), minutes.parse::<u8>()) else {
        return false;
    };
    hours.len() == 2 && minutes.len() == 2 && h < 24 && m < 60
}

/// A `deal_id` or `person_id` that is not an integer or names no record the fake holds.
fn missing_links(state: &FakeState, fields: &Map<String, Json>) -> Option<Response> {
    for (key, kind) in [("deal_id", Kind::Deal), ("person_id", Kind::Person)] {
        let Some(value) = fields.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(id) = value.as_u64() else {
            return Some(bad_request(&format!("{key} must be an integer")));
        };
        if !state.records.contains_key(&(kind, id)) {
            return Some(bad_request(&format!(
                "{} with id {id} not found",
                kind.label()
            )));
        }
    }
    None
}
