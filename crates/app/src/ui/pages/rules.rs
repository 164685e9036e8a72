//! `GET /ui/rules`: the rules in force, with how many runs of each are under way.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use super::chrome;
use crate::server::AppState;
use crate::ui::page::{UiError, render};
use crate::ui::session::Session;

#[derive(Debug, Serialize)]
struct RuleRow {
    id: String,
    description: String,
    version: String,
    file: String,
    enabled: bool,
    active_runs: u64,
    /// `waiting 3, running 1`: the active runs by status.
    by_status: String,
}

pub async fn show(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let stats = state.store.stats().await?;
    let mut counts: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for count in &stats.active_runs {
        counts
            .entry(count.rule_id.as_str())
            .or_default()
            .push((count.status.as_str(), count.count));
    }
    let set = state.rules.current();
    let rules: Vec<RuleRow> = set
        .rules()
        .iter()
        .map(|rule| {
            let statuses = counts.get(rule.id.as_str()).cloned().unwrap_or_default();
            RuleRow {
                id: rule.id.clone(),
                description: rule.description.clone(),
                version: rule.version.clone(),
                file: rule
                    .file
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                enabled: rule.enabled,
                active_runs: statuses.iter().map(|(_, n)| n).sum(),
                by_status: statuses
                    .iter()
                    .map(|(status, n)| format!("{status} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
        .collect();
    // Runs of rules no longer loaded (removed by a reload) still count: say so.
    let orphaned: u64 = stats
        .active_runs
        .iter()
        .filter(|count| set.get(&count.rule_id).is_none())
        .map(|count| count.count)
        .sum();
    Ok(render(
        StatusCode::OK,
        "rules.html",
        context! {
            title => "Rules",
            chrome => Serde(chrome(&state, &session)),
            rules => Serde(rules),
            orphaned => orphaned,
            dir => state.rules.dir().display().to_string(),
            generation => state.rules.generation(),
        },
    ))
}
