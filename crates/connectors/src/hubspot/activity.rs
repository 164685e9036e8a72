//! `create_task` and `create_note`, and how they are made safe to repeat. HubSpot has
//! no Idempotency-Key header, so the action key goes into a unique-value property
//! (`idempotency_property`) and:
//!
//! - with `idempotency_upsert`: `batch/upsert` by that property, then the default
//!   associations (both are harmless to repeat): [`Repeat::Safe`];
//! - without: a plain create carrying the key; after an indeterminate attempt, a search
//!   for the key first (found: done, nothing created), waiting out the search index lag
//!   before trusting "not found": [`Repeat::CheckFirst`]. A create HubSpot refuses with
//!   409 (the key is taken) is the earlier attempt's record: it is looked up the same way;
//! - without the property: a plain create. Nothing can tell whether a timed-out create
//!   happened: [`Repeat::Never`], the outbox parks it.
//!
//! [`Repeat::Safe`]: crate::Repeat::Safe
//! [`Repeat::CheckFirst`]: crate::Repeat::CheckFirst
//! [`Repeat::Never`]: crate::Repeat::Never

use followthrough_core::{ObjectRef, Timestamp};
use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use super::read::{SOURCE, api_type, id_text};
use super::write::{HubSpotConnector, search_body, success, terminal, text};
use crate::{ActionJob, Failure, Outcome, Success};

/// The two activity types the connector creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    Task,
    Note,
}

impl Activity {
    fn singular(self) -> &'static str {
        match self {
            Activity::Task => "task",
            Activity::Note => "note",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Activity::Task => "tasks",
            Activity::Note => "notes",
        }
    }

    fn result_key(self) -> &'static str {
        match self {
            Activity::Task => "task_id",
            Activity::Note => "note_id",
        }
    }

    /// HubSpot's HUBSPOT_DEFINED association type from this activity to `to`.
    fn association_type_id(self, to: &str) -> Option<u32> {
        match (self, to) {
            (Activity::Task, "contact") => Some(204),
            (Activity::Task, "deal") => Some(216),
            (Activity::Task, "company") => Some(192),
            (Activity::Note, "contact") => Some(202),
            (Activity::Note, "deal") => Some(214),
            (Activity::Note, "company") => Some(190),
            _ => None,
        }
    }
}

/// What to create: its properties (the key included, when configured) and what to
/// associate it with.
struct Draft {
    properties: Map<String, Json>,
    targets: Vec<(ObjectRef, u32)>,
}

impl HubSpotConnector {
    pub(crate) async fn create_activity(&self, job: &ActionJob, activity: Activity) -> Outcome {
        let draft = match self.draft(job, activity) {
            Ok(draft) => draft,
            Err(outcome) => return outcome,
        };
        let Some(property) = self.config.idempotency_property.clone() else {
            return self.create(job, activity, draft, None).await;
        };
        if self.config.idempotency_upsert {
            return self.upsert(job, activity, draft, &property).await;
        }
        if job.after_indeterminate {
            match self.find_by_key(activity, &property, &job.key).await {
                Ok(Some(found)) => return found,
                Ok(None) => {}
                Err(outcome) => return outcome,
            }
        }
        self.create(job, activity, draft, Some(&property)).await
    }

    fn draft(&self, job: &ActionJob, activity: Activity) -> Result<Draft, Outcome> {
        let params = &job.params;
        let mut properties = Map::new();
        let mut set = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                properties.insert(name.to_owned(), Json::String(value));
            }
        };
        match activity {
            Activity::Task => {
                let due = params["due_at_ms"].as_i64().map(Timestamp::from_millis);
                let due = due.unwrap_or_else(|| self.now());
                set("hs_timestamp", Some(due.to_rfc3339()));
                set("hs_task_subject", text(params, "subject"));
                set("hs_task_body", text(params, "body"));
                set("hs_task_status", Some("NOT_STARTED".into()));
                let upper = |key| text(params, key).map(|v| v.to_ascii_uppercase());
                set("hs_task_priority", upper("priority"));
                set("hs_task_type", upper("type"));
                set("hubspot_owner_id", text(params, "owner_id"));
            }
            Activity::Note => {
                let Some(body) = text(params, "body") else {
                    return Err(terminal("create_note needs a `body`"));
                };
                set("hs_timestamp", Some(self.now().to_rfc3339()));
                set("hs_note_body", Some(body));
                set("hubspot_owner_id", text(params, "owner_id"));
            }
        }
        if let Some(property) = &self.config.idempotency_property {
            set(property, Some(job.key.clone()));
        }
        Ok(Draft {
            properties,
            targets: targets(job, activity)?,
        })
    }

    /// One POST; a 409 on the key means an earlier attempt created it.
    async fn create(
        &self,
        job: &ActionJob,
        activity: Activity,
        draft: Draft,
        property: Option<&str>,
    ) -> Outcome {
        let associations: Vec<Json> = draft
            .targets
            .iter()
            .map(|(target, type_id)| {
                json!({
                    "to": { "id": target.id },
                    "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id }],
                })
            })
            .collect();
        let body = json!({ "properties": draft.properties, "associations": associations });
        let url = self.url(&["crm", "v3", "objects", activity.plural()]);
        match self.call(Method::POST, url, Some(&body)).await {
            Ok(answer) => {
                let id = id_text(&answer.json()["id"]);
                let summary = match &id {
                    Some(id) => format!("{} {id} created", activity.singular()),
                    None => format!("{} created (HubSpot sent no id)", activity.singular()),
                };
                success(&answer, summary, json!({ activity.result_key(): id }))
            }
            Err(Outcome::Terminal(failure))
                if failure.status == Some(409) && property.is_some() =>
            {
                let property = property.unwrap_or_default();
                match self.find_by_key(activity, property, &job.key).await {
                    Ok(Some(found)) => found,
                    Ok(None) => Outcome::Indeterminate(Failure {
                        message: format!(
                            "HubSpot says a {} with this key exists, but search does not find it: {}",
                            activity.singular(),
                            failure.message
                        ),
                        ..failure
                    }),
                    Err(outcome) => outcome,
                }
            }
            Err(outcome) => outcome,
        }
    }

    /// Upsert by the key, then associate (the upsert API takes no associations).
    async fn upsert(
        &self,
        job: &ActionJob,
        activity: Activity,
        draft: Draft,
        property: &str,
    ) -> Outcome {
        let url = self.url(&["crm", "v3", "objects", activity.plural(), "batch", "upsert"]);
        let body = json!({ "inputs": [{
            "id": job.key,
            "idProperty": property,
            "properties": draft.properties,
        }] });
        let answer = match self.call(Method::POST, url, Some(&body)).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let reply = answer.json();
        let Some(id) = id_text(&reply["results"][0]["id"]) else {
            // A 207 whose one input failed: HubSpot's errors say why.
            let detail = self.client.error_message(&answer.body);
            return Outcome::Terminal(Failure {
                status: Some(answer.status.as_u16()),
                message: format!(
                    "HubSpot upserted no {}: {}",
                    activity.singular(),
                    detail.unwrap_or_else(|| "no result".into())
                ),
                retry_after: None,
                response: self.client.body_start(&answer.body),
            });
        };
        let created = reply["results"][0]["new"].as_bool().unwrap_or(true);
        for (target, _) in &draft.targets {
            let url = self.url(&[
                "crm",
                "v4",
                "objects",
                activity.plural(),
                &id,
                "associations",
                "default",
                api_type(&target.object_type),
                &target.id,
            ]);
            if let Err(outcome) = self.call(Method::PUT, url, None).await {
                return outcome;
            }
        }
        let how = if created { "created" } else { "updated" };
        let summary = format!("{} {id} {how} by its key (upsert)", activity.singular());
        success(&answer, summary, json!({ activity.result_key(): id }))
    }

    /// Searches for the record holding the key; a miss is searched again once after
    /// `search_settle`, so a record the index has not caught up with is still found.
    async fn find_by_key(
        &self,
        activity: Activity,
        property: &str,
        key: &str,
    ) -> Result<Option<Outcome>, Outcome> {
        let url = self.url(&["crm", "v3", "objects", activity.plural(), "search"]);
        let body = search_body(property, key, property);
        let mut settled = self.config.search_settle.is_zero();
        loop {
            let answer = self.call(Method::POST, url.clone(), Some(&body)).await?;
            if let Some(id) = id_text(&answer.json()["results"][0]["id"]) {
                return Ok(Some(Outcome::Success(Success {
                    status: Some(answer.status.as_u16()),
                    summary: format!(
                        "{} {id} found by its key (created by an earlier attempt), not created again",
                        activity.singular()
                    ),
                    result: json!({ activity.result_key(): id, "found_by_key": true }),
                })));
            }
            if settled {
                return Ok(None);
            }
            tokio::time::sleep(self.config.search_settle).await;
            settled = true;
        }
    }
}

/// The job's object and any `associations` params (`hubspot:deal:9001`), each once,
/// with the association type from the activity.
pub(crate) fn targets(
    job: &ActionJob,
    activity: Activity,
) -> Result<Vec<(ObjectRef, u32)>, Outcome> {
    let mut objects = vec![job.object.clone()];
    let listed = job.params["associations"].as_array().into_iter().flatten();
    for name in listed.filter_map(Json::as_str) {
        match name.parse::<ObjectRef>() {
            Ok(object) if !objects.contains(&object) => objects.push(object),
            Ok(_) => {}
            Err(error) => return Err(terminal(error.to_string())),
        }
    }
    let mut targets = Vec::new();
    for object in objects {
        if object.source != SOURCE {
            return Err(terminal(format!(
                "cannot associate a HubSpot {} with {object}",
                activity.singular()
            )));
        }
        let Some(type_id) = activity.association_type_id(&object.object_type) else {
            return Err(terminal(format!(
                "HubSpot has no default association from a {} to a {}",
                activity.singular(),
                object.object_type
            )));
        };
        targets.push((object, type_id));
    }
    Ok(targets)
}
