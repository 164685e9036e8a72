//! `GET /api/v1/rules`: the rules in force, each with its active runs.

use std::collections::BTreeMap;

use axum::extract::State;
use followthrough_rules::{AssociationAction, EventPattern, Mode, Rule, Trigger};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Admin;
use super::schema::ErrorBody;
use super::store_error;
use crate::api_error::ApiError;
use crate::server::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RulesInForce {
    /// 0 for the set loaded at start, +1 on each successful reload (SIGHUP,
    /// `followthrough reload`).
    pub generation: u64,
    pub count: usize,
    /// By id.
    pub rules: Vec<RuleInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleInfo {
    #[schema(example = "new-sql-gets-a-call")]
    pub id: String,
    /// The hash of the rule file: runs record the version they started with.
    pub version: String,
    pub description: String,
    pub enabled: bool,
    /// `warn` (revert steps are skipped) or `enforce`.
    pub mode: String,
    pub trigger: TriggerInfo,
    /// The rule's file, relative to the rules folder.
    pub file: String,
    /// Active runs by status (`new`, `running`, `waiting`); statuses without runs are
    /// left out.
    pub active_runs: BTreeMap<String, u64>,
    pub active_runs_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerInfo {
    /// The object type the rule is about.
    #[schema(example = "contact")]
    pub object: String,
    /// `created`, `deleted`, `change`, `activity` or `association`.
    #[schema(example = "change")]
    pub event: String,
    /// In words.
    #[schema(example = "contact: lifecyclestage changes to salesqualifiedlead")]
    pub summary: String,
}

/// The rules in force.
#[utoipa::path(
    get,
    path = "/rules",
    tag = "rules",
    responses(
        (status = 200, description = "The rules in force", body = RulesInForce),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn list(
    _admin: Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<RulesInForce>, ApiError> {
    // Read the generation first: if a reload lands in between, the set is newer than
    // the number says, never older.
    let generation = state.rules.generation();
    let set = state.rules.current();
    let stats = state.store.stats().await.map_err(store_error)?;
    let mut rules: Vec<RuleInfo> = set
        .rules()
        .iter()
        .map(|rule| {
            let active_runs: BTreeMap<String, u64> = stats
                .active_runs
                .iter()
                .filter(|count| count.rule_id == rule.id && count.count > 0)
                .map(|count| (count.status.clone(), count.count))
                .collect();
            RuleInfo {
                id: rule.id.clone(),
                version: rule.version.clone(),
                description: rule.description.clone(),
                enabled: rule.enabled,
                mode: match rule.mode {
                    Mode::Warn => "warn",
                    Mode::Enforce => "enforce",
                }
                .to_owned(),
                trigger: trigger_info(&rule.trigger),
                file: file_name(rule, state.rules.dir()),
                active_runs_total: active_runs.values().sum(),
                active_runs,
            }
        })
        .collect();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(axum::Json(RulesInForce {
        generation,
        count: rules.len(),
        rules,
    }))
}

/// Relative to the rules folder: where the server keeps it is not the client's concern,
/// and the relative name is what a rules repository calls it.
fn file_name(rule: &Rule, dir: &std::path::Path) -> String {
    rule.file
        .strip_prefix(dir)
        .unwrap_or(&rule.file)
        .display()
        .to_string()
}

fn trigger_info(trigger: &Trigger) -> TriggerInfo {
    let object = &trigger.object;
    let summary = match &trigger.pattern {
        EventPattern::Created => format!("{object}: created"),
        EventPattern::Deleted => format!("{object}: deleted"),
        EventPattern::Change { property, from, to } => {
            let from = from
                .as_deref()
                .map(|v| format!(" from {v}"))
                .unwrap_or_default();
            let to = to
                .as_deref()
                .map(|v| format!(" to {v}"))
                .unwrap_or_default();
            format!("{object}: {property} changes{from}{to}")
        }
        EventPattern::Activity {
            properties,
            engagements,
        } => format!(
            "{object}: activity ({} engagement types, {} activity properties)",
            engagements.len(),
            properties.len()
        ),
        EventPattern::Association { with, action } => {
            let with = with.as_deref().unwrap_or("any object");
            let action = match action {
                AssociationAction::Added => "added",
                AssociationAction::Removed => "removed",
                AssociationAction::Any => "added or removed",
            };
            format!("{object}: association with {with} {action}")
        }
    };
    TriggerInfo {
        object: object.clone(),
        event: trigger.pattern.name().to_owned(),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_trigger_reads_as_a_sentence() {
        let trigger = Trigger {
            object: "deal".into(),
            pattern: EventPattern::Change {
                property: "dealstage".into(),
                from: None,
                to: Some("negotiation".into()),
            },
        };
        let info = trigger_info(&trigger);
        assert_eq!(info.event, "change");
        assert_eq!(info.summary, "deal: dealstage changes to negotiation");
    }
}
