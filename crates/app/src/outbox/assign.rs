//! What only the worker can fill in before a call: the owner an `assign_owner` with a
//! `team` goes to, by a durable round-robin over the team's owner ids.

use std::collections::BTreeMap;

use followthrough_connectors::{ActionJob, Failure};
use followthrough_store::StoreError;
use serde_json::Value as Json;

use super::{Lane, OutboxParts};

/// `connectors.hubspot.teams`: team name -> owner ids.
#[derive(Debug, Clone, Default)]
pub struct Teams(pub BTreeMap<String, Vec<String>>);

/// Fills in `owner_id` of an `assign_owner` to a team. `Ok(Err(_))` is the job's fault
/// (an unknown team): a dead letter. A store error is worth retrying.
pub(super) async fn resolve(
    parts: &OutboxParts,
    lane: &Lane,
    job: &mut ActionJob,
) -> Result<Result<(), Failure>, StoreError> {
    let _ = lane;
    if job.action != "assign_owner" || job.params.get("owner_id").is_some() {
        return Ok(Ok(()));
    }
    let Some(team) = job.params.get("team").and_then(Json::as_str).map(str::to_owned) else {
        return Ok(Err(Failure::new(None, "assign_owner names neither a team nor an owner")));
    };
    let Some(owners) = parts.teams.0.get(&team).filter(|owners| !owners.is_empty()) else {
        return Ok(Err(Failure::new(
            None,
            format!("unknown team `{team}`: list its owner ids in connectors.hubspot.teams.{team}"),
        )));
    };
    let size = u32::try_from(owners.len()).unwrap_or(u32::MAX);
    let turn = parts
        .store
        .next_in_rotation(&format!("team:{team}"), size, &job.key)
        .await?;
    let owner = owners[turn as usize % owners.len()].clone();
    job.params["owner_id"] = Json::String(owner);
    Ok(Ok(()))
}
