//! The outbox workers against the fake APIs: the scenarios' requests as HubSpot and
//! Slack receive them, dead letters and replay, `lookup` steps through the HTTP
//! connector, and each action exactly once under chaos and SIGKILL.

mod chaos;
mod delivery;
mod lookup;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use followthrough::config::connectors::Pace;
use followthrough::outbox::{Lane, Outbox, OutboxParts, Teams};
use followthrough_connectors::RetryPolicy;
use followthrough_connectors::circuit::Circuit;
use followthrough_connectors::hubspot::{HubSpotConnector, HubSpotConnectorConfig};
use followthrough_connectors::limit::{Limit, RateLimiter};
use followthrough_core::{Clock, ObjectRef, RunId, SystemClock, Timestamp};
use followthrough_fakes::FakeHubSpot;
use followthrough_store::{JobStatus, OutboxJob, Store, UnitOfWork};
use serde_json::json;

use crate::backend::TestDb;

/// The unique-value task property the tests configure for idempotent creates.
pub(super) const KEY_PROPERTY: &str = "followthrough_key";

/// The idempotency key of test job `i`.
pub(super) fn key(i: usize) -> String {
    format!("run_{i:05}:steps[0]")
}

pub(super) fn contact_of(i: usize) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", (i % 100).to_string())
}

/// A fake HubSpot with the contacts the test jobs are about and the key property.
pub(super) async fn fake_hubspot() -> FakeHubSpot {
    let hubspot = FakeHubSpot::start().await;
    hubspot.add_unique_property("task", KEY_PROPERTY);
    for i in 0..100 {
        hubspot.set_object("contact", &i.to_string(), BTreeMap::new());
    }
    hubspot
}

/// Queues `count` create_task jobs, as runs of a rule would.
pub(super) async fn queue_tasks(store: &dyn Store, count: usize, now: Timestamp) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let outbox = chunk
            .iter()
            .map(|&i| OutboxJob {
                idempotency_key: key(i),
                run_id: RunId::new(),
                rule_id: "chaos".into(),
                action: "create_task".into(),
                connector: "hubspot".into(),
                object: contact_of(i),
                params: json!({ "subject": format!("Call lead {i}"), "priority": "HIGH", "owner_id": null, "associations": [contact_of(i).to_string()] }),
                created_at: now,
                next_at: now,
            })
            .collect();
        store
            .apply(UnitOfWork {
                outbox,
                ..UnitOfWork::default()
            })
            .await
            .unwrap();
    }
}

/// How many jobs are in each status, straight from the table.
pub(super) fn statuses(db: &TestDb) -> BTreeMap<String, i64> {
    db.rows("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        .into_iter()
        .collect()
}

/// Outbox workers with one HubSpot lane, as `serve` builds them, tuned for tests.
pub(super) fn hubspot_outbox(
    hubspot: &FakeHubSpot,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limit: Limit,
) -> Outbox {
    hubspot_outbox_with(hubspot, store, clock, limit, true)
}

/// `upsert`: create through batch upsert by the key; otherwise create, and search for
/// the key first after an unknown outcome.
pub(super) fn hubspot_outbox_with(
    hubspot: &FakeHubSpot,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limit: Limit,
    upsert: bool,
) -> Outbox {
    let timeout = Duration::from_millis(1_000);
    let connector = HubSpotConnector::new(
        HubSpotConnectorConfig {
            base_url: hubspot.base_url(),
            token: hubspot.token().into(),
            timeout,
            idempotency_property: Some(KEY_PROPERTY.into()),
            idempotency_upsert: upsert,
            search_settle: Duration::from_millis(500),
        },
        Arc::clone(&clock),
    )
    .unwrap();
    let pace = Pace {
        concurrency: 32,
        limit,
        timeout,
    };
    Outbox::new(OutboxParts {
        store,
        clock,
        lanes: vec![Lane::new(
            Arc::new(connector),
            pace,
            Circuit::new(5, Duration::from_secs(1)),
        )],
        policy: RetryPolicy {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(3),
            max_attempts: 50,
            max_age: Duration::from_secs(3600),
        },
        limiter: RateLimiter::default(),
        teams: Teams::default(),
        redactor: followthrough::journal::Redactor::new([], true),
        lease: Duration::from_secs(5),
        claim_batch: 128,
        poll: Duration::from_millis(50),
        engine_wake: Arc::default(),
    })
}

pub(super) fn now() -> Timestamp {
    SystemClock.now()
}

pub(super) fn done(status: &BTreeMap<String, i64>) -> i64 {
    status
        .get(JobStatus::Done.as_str())
        .copied()
        .unwrap_or_default()
}
