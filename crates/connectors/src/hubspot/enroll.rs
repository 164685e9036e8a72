//! `enroll_sequence`: `{"sequence","sender":{"owner_id"?,"email"}}` ->
//! `POST /automation/v4/sequences/enrollments?userId=..` with `contactId`, `sequenceId`
//! and `senderEmail`. HubSpot wants the sender's *user* id, not the owner id: it is read
//! from the owner (`GET /crm/v3/owners/{id}`) or, with only an email, from the owners
//! list filtered by email.
//!
//! A contact is in one sequence at a time, so HubSpot refuses a second enrollment. After
//! an indeterminate attempt, that refusal is checked: enrolled in *this* sequence means
//! the earlier attempt worked (success); in another, terminal.

use reqwest::Method;
use serde_json::{Value as Json, json};

use super::read::id_text;
use super::write::{HubSpotConnector, describe, not_hubspot, success, terminal, text};
use crate::{ActionJob, Outcome, Success};

impl HubSpotConnector {
    pub(crate) async fn enroll_sequence(&self, job: &ActionJob) -> Outcome {
        if let Some(refusal) = not_hubspot(job) {
            return refusal;
        }
        if job.object.object_type != "contact" {
            return terminal(format!(
                "only contacts can be enrolled in a sequence, not {}",
                job.object
            ));
        }
        let Some(sequence) = text(&job.params, "sequence") else {
            return terminal("enroll_sequence needs a `sequence` id");
        };
        let sender = job.params.get("sender").cloned().unwrap_or(Json::Null);
        let Some(email) = text(&sender, "email") else {
            return terminal("enroll_sequence needs the sender's email (`sender.email`)");
        };
        let user_id = match self.sender_user_id(text(&sender, "owner_id"), &email).await {
            Ok(user_id) => user_id,
            Err(outcome) => return outcome,
        };
        let mut url = self.url(&["automation", "v4", "sequences", "enrollments"]);
        url.query_pairs_mut().append_pair("userId", &user_id);
        let body = json!({
            "contactId": job.object.id,
            "sequenceId": sequence,
            "senderEmail": email,
        });
        match self.call(Method::POST, url, Some(&body)).await {
            Ok(answer) => {
                let id = id_text(&answer.json()["id"]);
                let summary = format!("{} enrolled in sequence {sequence}", describe(job));
                success(
                    &answer,
                    summary,
                    json!({ "enrollment_id": id, "sequence": sequence }),
                )
            }
            Err(Outcome::Terminal(failure))
                if job.after_indeterminate && already_enrolled(&failure) =>
            {
                self.check_enrollment(job, &sequence).await
            }
            Err(outcome) => outcome,
        }
    }

    /// The sender's HubSpot user id, from their owner record or their email.
    async fn sender_user_id(
        &self,
        owner_id: Option<String>,
        email: &str,
    ) -> Result<String, Outcome> {
        let user_id = if let Some(owner_id) = owner_id {
            let url = self.url(&["crm", "v3", "owners", &owner_id]);
            let answer = self.call(Method::GET, url, None).await?;
            id_text(&answer.json()["userId"])
        } else {
            let mut url = self.url(&["crm", "v3", "owners"]);
            url.query_pairs_mut().append_pair("email", email);
            let answer = self.call(Method::GET, url, None).await?;
            id_text(&answer.json()["results"][0]["userId"])
        };
        user_id.ok_or_else(|| {
            terminal(format!(
                "no HubSpot user found for the sequence sender {email}"
            ))
        })
    }

    /// After "already enrolled": success if it is in `sequence`, else terminal.
    async fn check_enrollment(&self, job: &ActionJob, sequence: &str) -> Outcome {
        let url = self.url(&[
            "automation",
            "v4",
            "sequences",
            "enrollments",
            "contact",
            &job.object.id,
        ]);
        let answer = match self.call(Method::GET, url, None).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let enrollment = answer.json();
        let enrolled_in = id_text(&enrollment["sequenceId"]);
        if enrolled_in.as_deref() == Some(sequence) {
            return Outcome::Success(Success {
                status: Some(answer.status.as_u16()),
                summary: format!(
                    "{} found enrolled in sequence {sequence} (by an earlier attempt)",
                    describe(job)
                ),
                result: json!({ "enrollment_id": id_text(&enrollment["id"]), "sequence": sequence }),
            });
        }
        terminal(format!(
            "{} is enrolled in another sequence ({}), not {sequence}",
            describe(job),
            enrolled_in.unwrap_or_else(|| "unknown".into())
        ))
    }
}

/// HubSpot's refusal of a second enrollment (`ALREADY_ENROLLED`).
fn already_enrolled(failure: &crate::Failure) -> bool {
    let text = format!(
        "{} {}",
        failure.message,
        failure.response.as_deref().unwrap_or_default()
    )
    .to_ascii_lowercase();
    failure.status == Some(400)
        && (text.contains("already_enrolled") || text.contains("already enrolled"))
}
