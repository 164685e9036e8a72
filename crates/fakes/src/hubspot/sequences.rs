//! `POST /automation/v4/sequences/enrollments?userId=..` with
//! `{"contactId","sequenceId","senderEmail","senderAliasAddress"?}`, and
//! `GET /automation/v4/sequences/enrollments/contact/{contactId}`.
//!
//! Validated as HubSpot does: `userId` (a user's id, not an owner id) must name a user;
//! `senderEmail` must be that user's (connected) address; the contact and the sequence
//! must exist; a contact can be in one sequence at a time, so enrolling an enrolled
//! contact is a 400 whose `subCategory` is `ALREADY_ENROLLED`. Sequences exist once a
//! test adds them (`FakeHubSpot::add_sequence`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors;
use super::object_type::ObjectType;
use super::query::unsupported;
use super::state::{self, Shared, StoredEnrollment};
use super::validate;

pub(crate) async fn enroll(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &["userId"]) {
        return refusal;
    }
    let user_id = query.iter().find(|(k, _)| k == "userId").map(|(_, v)| v);
    let Some(user_id) = user_id.filter(|v| !v.is_empty()).cloned() else {
        return errors::bad_request("the query parameter `userId` is required");
    };
    let request = match validate::json_body(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let missing: Vec<(String, &str)> = ["contactId", "sequenceId", "senderEmail"]
        .into_iter()
        .filter(|name| field(name).is_none())
        .map(|name| (format!("{name} is required"), "REQUIRED_FIELD"))
        .collect();
    let (Some(contact_id), Some(sequence_id), Some(sender_email)) = (
        field("contactId"),
        field("sequenceId"),
        field("senderEmail"),
    ) else {
        return errors::bad_request_with("Invalid enrollment request", &missing);
    };

    let mut state = shared.state();
    let Some(user) = state.owner_by_user_id(&user_id) else {
        return errors::bad_request(format!("User {user_id} does not exist"));
    };
    if !user.owner.email.eq_ignore_ascii_case(&sender_email) {
        return errors::bad_request(format!(
            "{sender_email} is not a connected inbox of user {user_id}"
        ));
    }
    if !state.sequences.contains(&sequence_id) {
        return errors::not_found(format!("Sequence {sequence_id} does not exist"));
    }
    let Some(contact) = state
        .objects
        .get(&(ObjectType::Contact, contact_id.clone()))
    else {
        return errors::bad_request(format!("Contact {contact_id} does not exist"));
    };
    let to_email = contact.properties.get("email").cloned().unwrap_or_default();
    if state.enrollments.iter().any(|e| e.contact_id == contact_id) {
        let body = json!({
            "status": "error",
            "message": format!("Contact {contact_id} is already enrolled in a sequence"),
            "correlationId": errors::correlation_id(),
            "category": "VALIDATION_ERROR",
            "subCategory": "ALREADY_ENROLLED",
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let enrollment = StoredEnrollment {
        id: state.new_object_id(),
        contact_id,
        sequence_id,
        sender_email,
        user_id,
        enrolled_at: state::now(),
    };
    let body = json!({
        "id": enrollment.id,
        "toEmail": to_email,
        "enrolledAt": enrollment.enrolled_at,
        "updatedAt": enrollment.enrolled_at,
    });
    state.enrollments.push(enrollment);
    Json(body).into_response()
}

pub(crate) async fn contact_enrollment(
    State(shared): State<Arc<Shared>>,
    Path(contact_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let state = shared.state();
    let Some(enrollment) = state
        .enrollments
        .iter()
        .find(|e| e.contact_id == contact_id)
    else {
        return errors::not_found(format!(
            "Contact {contact_id} is not enrolled in a sequence"
        ));
    };
    let owner = state.owner_by_user_id(&enrollment.user_id);
    Json(json!({
        "id": enrollment.id,
        "sequenceId": enrollment.sequence_id,
        "enrolledAt": enrollment.enrolled_at,
        "updatedAt": enrollment.enrolled_at,
        "enrolledBy": owner.map(|o| o.owner.id.clone()),
        "enrolledByEmail": enrollment.sender_email,
    }))
    .into_response()
}
