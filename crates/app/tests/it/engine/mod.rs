//! The engine end to end: signed webhooks in through the real HTTP ingest, the rules in
//! `examples/rules/`, runs and timers in the store, actions in the outbox. The clock is
//! a `ManualClock`, so "14 days" takes a call to `advance`.

mod context;
mod durability;
mod scenarios;

use std::time::Duration;

use followthrough_core::{Clock as _, ObjectRef};
use followthrough_fakes::FakeOwner;
use followthrough_store::OutboxJob;
use serde_json::Value;

use crate::helpers::{TestApp, property_change};

pub(super) const DAY: Duration = Duration::from_secs(24 * 3600);
pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn contact(id: u64) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", id.to_string())
}

pub(super) fn deal(id: u64) -> ObjectRef {
    ObjectRef::new("hubspot", "deal", id.to_string())
}

/// Sends property changes of one object, each its own event, all at the clock's time.
pub(super) async fn set(
    app: &TestApp,
    next_id: &mut u64,
    object_type: &str,
    id: u64,
    props: &[(&str, &str)],
) {
    let at = app.clock.now().as_millis();
    let events: Vec<Value> = props
        .iter()
        .map(|(name, value)| {
            *next_id += 1;
            property_change(*next_id, object_type, id, at, name, value)
        })
        .collect();
    let response = app.post_hubspot(&Value::Array(events).to_string()).await;
    assert_eq!(response.status(), 200);
}

pub(super) async fn outbox(app: &TestApp, object: &ObjectRef) -> Vec<OutboxJob> {
    app.store
        .outbox_for(object)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.job)
        .collect()
}

pub(super) fn actions(jobs: &[OutboxJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.action.as_str()).collect()
}

/// Asserts the object's journal holds a row of each (kind, outcome).
pub(super) async fn assert_journal_has(
    app: &TestApp,
    object: &ObjectRef,
    expected: &[(&str, &str)],
) {
    let rows: Vec<(String, String)> = app
        .store
        .journal_for(object)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let outcome = e.detail["outcome"].as_str().unwrap_or_default().to_owned();
            (e.kind.as_str().to_owned(), outcome)
        })
        .collect();
    for (kind, outcome) in expected {
        assert!(
            rows.contains(&((*kind).to_owned(), (*outcome).to_owned())),
            "{kind}/{outcome} in the journal of {object}: {rows:?}"
        );
    }
}

pub(super) fn owner(id: &str, email: &str, first: &str, last: &str) -> FakeOwner {
    FakeOwner {
        id: id.into(),
        email: email.into(),
        first_name: first.into(),
        last_name: last.into(),
        teams: vec![],
    }
}
