//! `GET /api/v1/health`: one look at whether the server is well and how much work
//! waits, for a dashboard or an on-call person (`/readyz` is the load balancer's).

use axum::extract::State;
use axum::http::StatusCode;
use followthrough_core::Timestamp;
use followthrough_store::StoreStats;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Admin;
use super::schema::{ErrorBody, ms_opt, rfc3339, rfc3339_opt};
use crate::server::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Everything works and nothing waits for a person.
    Ok,
    /// Work goes on, but something needs a look: a connector's circuit is not closed,
    /// or dead letters wait for a person.
    Degraded,
    /// The store does not answer or is not migrated: nothing is accepted or done.
    Failing,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: Overall,
    /// Why the status is not `ok`, one reason per line; empty when it is.
    pub reasons: Vec<String>,
    pub checked_at: String,
    pub checked_at_ms: i64,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub version: String,
    pub store: StoreHealth,
    /// The figures, or `null` when the store could not be read.
    pub work: Option<Work>,
    /// Each configured connector's circuit breaker.
    pub connectors: Vec<ConnectorCircuit>,
    pub rules: RulesLoaded,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreHealth {
    /// The store answers and its schema is the one this build expects.
    pub ready: bool,
}

/// How much work waits, in each stage of the pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct Work {
    /// Events received and not yet applied.
    pub inbox_pending: u64,
    /// Runs `new`, `running` or `waiting`.
    pub active_runs: u64,
    pub timers_pending: u64,
    pub next_timer_at: Option<String>,
    pub next_timer_at_ms: Option<i64>,
    /// Pending outbox jobs, over all connectors.
    pub outbox_pending: u64,
    pub outbox: Vec<Backlog>,
    /// Dead letters waiting for a person (not replayed).
    pub dead_letters: u64,
}

/// One connector's pending jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backlog {
    pub connector: String,
    pub pending: u64,
    /// When the oldest pending job was queued.
    pub oldest_created_at: Option<String>,
    pub oldest_created_at_ms: Option<i64>,
    /// How long it has waited, in seconds.
    pub oldest_age_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorCircuit {
    pub connector: String,
    /// `closed` (healthy), `open` (not sending: the API looked down) or `half_open`
    /// (one probe in flight).
    #[schema(example = "closed")]
    pub circuit: String,
    pub consecutive_failures: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RulesLoaded {
    pub count: usize,
    /// 0 for the set loaded at start, +1 on each successful reload.
    pub generation: u64,
}

/// The server's health and its backlogs.
///
/// Answers 200 while the store answers (`ok` or `degraded`), 503 with the same body when
/// it does not (`failing`).
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "`ok` or `degraded`", body = Health),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"followthrough\"`"))),
        (status = 503, description = "`failing`: the store does not answer", body = Health),
    ),
)]
pub async fn health(
    _admin: Admin,
    axum::extract::State(state): State<AppState>,
) -> (StatusCode, axum::Json<Health>) {
    let now = state.clock.now();
    let ready = match state.store.ready().await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "health: store not ready");
            false
        }
    };
    let stats = if ready {
        state
            .store
            .stats()
            .await
            .inspect_err(|error| tracing::warn!(%error, "health: store stats unreadable"))
            .ok()
    } else {
        None
    };
    let connectors: Vec<ConnectorCircuit> = state
        .outbox
        .health()
        .into_iter()
        .map(|health| ConnectorCircuit {
            connector: health.connector.to_owned(),
            circuit: health.circuit.to_owned(),
            consecutive_failures: health.consecutive_failures,
        })
        .collect();
    let (status, reasons) = judge(ready, stats.as_ref(), &connectors);
    let body = Health {
        status,
        reasons,
        checked_at: rfc3339(now),
        checked_at_ms: now.as_millis(),
        started_at: rfc3339(state.started_at),
        uptime_seconds: now.since(state.started_at).as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        store: StoreHealth { ready },
        work: stats.map(|stats| work(&stats, now)),
        connectors,
        rules: RulesLoaded {
            count: state.rules.current().rules().len(),
            generation: state.rules.generation(),
        },
    };
    let code = if status == Overall::Failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body))
}

fn judge(
    ready: bool,
    stats: Option<&StoreStats>,
    connectors: &[ConnectorCircuit],
) -> (Overall, Vec<String>) {
    let Some(stats) = stats.filter(|_| ready) else {
        return (
            Overall::Failing,
            vec!["the store does not answer, or is not migrated".to_owned()],
        );
    };
    let mut reasons: Vec<String> = connectors
        .iter()
        .filter(|c| c.circuit != "closed")
        .map(|c| {
            format!(
                "connector {}: circuit {} after {} consecutive failures",
                c.connector, c.circuit, c.consecutive_failures
            )
        })
        .collect();
    if stats.dead_letters > 0 {
        reasons.push(format!(
            "{} dead letter(s) wait for a person",
            stats.dead_letters
        ));
    }
    let status = if reasons.is_empty() {
        Overall::Ok
    } else {
        Overall::Degraded
    };
    (status, reasons)
}

fn work(stats: &StoreStats, now: Timestamp) -> Work {
    Work {
        inbox_pending: stats.inbox_pending,
        active_runs: stats.active_runs_total(),
        timers_pending: stats.timers_pending,
        next_timer_at: rfc3339_opt(stats.next_timer_at),
        next_timer_at_ms: ms_opt(stats.next_timer_at),
        outbox_pending: stats.outbox_pending_total(),
        outbox: stats
            .outbox_pending
            .iter()
            .map(|backlog| Backlog {
                connector: backlog.connector.clone(),
                pending: backlog.pending,
                oldest_created_at: rfc3339_opt(backlog.oldest_created_at),
                oldest_created_at_ms: ms_opt(backlog.oldest_created_at),
                oldest_age_seconds: backlog.oldest_created_at.map(|at| now.since(at).as_secs()),
            })
            .collect(),
        dead_letters: stats.dead_letters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(state: &str) -> ConnectorCircuit {
        ConnectorCircuit {
            connector: "hubspot".into(),
            circuit: state.into(),
            consecutive_failures: 3,
        }
    }

    #[test]
    fn the_status_says_failing_degraded_or_ok_and_why() {
        let stats = StoreStats::default();
        assert_eq!(judge(false, None, &[]).0, Overall::Failing);
        assert_eq!(
            judge(true, Some(&stats), &[circuit("closed")]),
            (Overall::Ok, vec![])
        );
        let (status, reasons) = judge(true, Some(&stats), &[circuit("open")]);
        assert_eq!(status, Overall::Degraded);
        assert!(reasons[0].contains("hubspot"), "{reasons:?}");
        let waiting = StoreStats {
            dead_letters: 2,
            ..StoreStats::default()
        };
        let (status, reasons) = judge(true, Some(&waiting), &[]);
        assert_eq!(status, Overall::Degraded);
        assert!(reasons[0].contains("2 dead letter"), "{reasons:?}");
    }
}
