//! What only the worker can fill in before a call: the owner an `assign_owner` with a
//! `team` goes to. `round_robin` takes turns through a durable rotation (a retried job
//! keeps its turn); `least_loaded` asks the CRM how many records of the object's type
//! each owner has and takes the fewest (the first listed on a tie).

use std::collections::BTreeMap;
use std::sync::Arc;

use followthrough_connectors::hubspot::HubSpotConnector;
use followthrough_connectors::{ActionJob, Failure};
use followthrough_store::StoreError;
use serde_json::Value as Json;

use super::{Lane, OutboxParts};

/// `connectors.hubspot.teams`, and the CRM that knows how loaded each owner is.
#[derive(Clone, Default)]
pub struct Teams {
    pub members: BTreeMap<String, Vec<String>>,
    /// For `least_loaded`; `None` when HubSpot is not configured.
    pub loads: Option<Arc<HubSpotConnector>>,
}

impl Teams {
    pub fn new(members: BTreeMap<String, Vec<String>>) -> Self {
        Self {
            members,
            loads: None,
        }
    }
}

/// Fills in `owner_id` of an `assign_owner` to a team. `Ok(Err(_))` is the job's fault
/// or the CRM's answer (a dead letter or a retry, as classified); a store error is
/// worth retrying.
pub(super) async fn resolve(
    parts: &OutboxParts,
    lane: &Lane,
    job: &mut ActionJob,
) -> Result<Result<(), Failure>, StoreError> {
    if job.action != "assign_owner" || job.params.get("owner_id").is_some() {
        return Ok(Ok(()));
    }
    let Some(team) = job
        .params
        .get("team")
        .and_then(Json::as_str)
        .map(str::to_owned)
    else {
        return Ok(Err(Failure::new(
            None,
            "assign_owner names neither a team nor an owner",
        )));
    };
    let Some(owners) = parts.teams.members.get(&team).filter(|o| !o.is_empty()) else {
        return Ok(Err(Failure::new(
            None,
            format!("unknown team `{team}`: list its owner ids in connectors.hubspot.teams.{team}"),
        )));
    };
    let owner = match job.params.get("strategy").and_then(Json::as_str) {
        Some("least_loaded") => match least_loaded(parts, lane, job, owners).await {
            Ok(owner) => owner,
            Err(failure) => return Ok(Err(failure)),
        },
        _ => {
            let size = u32::try_from(owners.len()).unwrap_or(u32::MAX);
            let turn = parts
                .store
                .next_in_rotation(&format!("team:{team}"), size, &job.key)
                .await?;
            owners[turn as usize % owners.len()].clone()
        }
    };
    job.params["owner_id"] = Json::String(owner);
    Ok(Ok(()))
}

/// One search per owner, each drawn from the lane's rate limit.
async fn least_loaded(
    parts: &OutboxParts,
    lane: &Lane,
    job: &ActionJob,
    owners: &[String],
) -> Result<String, Failure> {
    let Some(crm) = &parts.teams.loads else {
        return Err(Failure::new(
            None,
            "least_loaded assignment needs the HubSpot connector (connectors.hubspot.token)",
        ));
    };
    let cost = u32::try_from(owners.len()).unwrap_or(u32::MAX);
    parts
        .limiter
        .acquire(&lane.connector.bucket(job), lane.pace.limit, cost)
        .await;
    let mut best: Option<(u64, &String)> = None;
    for owner in owners {
        let load = crm
            .open_records_owned(&job.object.object_type, owner)
            .await?;
        if best.is_none_or(|(fewest, _)| load < fewest) {
            best = Some((load, owner));
        }
    }
    Ok(best.map(|(_, owner)| owner.clone()).unwrap_or_default())
}
