//! The tests every [`crate::Store`] backend must pass. A backend's test module calls
//! [`conformance_tests!`](crate::conformance_tests) with a function that returns a fresh,
//! migrated store (and a guard that keeps its resources alive), and one that opens the
//! store behind a guard again.
//!
//! The outbox workers' checks (claims, leases, dead letters, rotations) are in
//! `conformance/outbox.rs`.

use std::sync::Arc;

use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, RunId, Timestamp};
use serde_json::{Value, json};

use crate::{
    AssociationSync, AssociationWrite, CachedOwner, Deferral, InboxBatch, JournalEntry,
    JournalKind, OutboxJob, PropertyWrite, RunRecord, Store, StoreError, TimerRecord, UnitOfWork,
};

mod admin;
mod engine;
mod outbox;

pub use admin::{
    a_lead_is_found_by_email_in_any_case, an_objects_trace_reads_whole_across_restarts_and_prunes,
    prune_removes_old_journal_rows_and_applied_payloads_only,
    runs_are_listed_newest_first_by_rule_and_status,
    stats_count_pending_work_per_rule_and_connector,
};

pub use engine::{
    a_batch_loads_its_objects_active_runs_oldest_first,
    a_deferred_event_holds_back_its_object_until_due, due_timers_read_past_the_batches_in_flight,
    links_go_both_ways_and_a_fetched_list_replaces_them,
    one_active_run_per_rule_and_key_unless_parallel,
    outbox_jobs_are_queued_once_per_idempotency_key, owners_runs_and_timers_read_back,
    pending_events_read_past_the_batches_in_flight,
    timers_come_due_oldest_first_and_can_be_cancelled,
};

pub use outbox::{
    a_claim_leases_a_job_until_the_lease_expires, a_dead_letter_is_replayed_once,
    a_job_found_by_key_says_why_it_died, a_retry_hides_the_job_until_its_next_at,
    an_outcome_under_a_stale_lease_is_not_recorded,
    an_unrecorded_attempt_makes_later_ones_check_first,
    claims_take_only_their_connectors_jobs_oldest_first, concurrent_claims_never_share_a_job,
    done_and_dead_jobs_are_never_claimed_again,
    next_job_at_is_the_soonest_due_job_or_expiring_lease, rotation_wraps_and_survives_reopening,
    timers_come_due_with_an_outcome_only_under_the_lease,
};

/// A `now` later than every test's events and deferrals.
const NOW: Timestamp = Timestamp(1_000_000_000);

/// Generates one `#[tokio::test]` per conformance check. `$fresh` returns a guard and a
/// fresh store; `$reopen` opens a new store on the data behind a guard (what a restart
/// does), for the checks of what survives one.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path, $reopen:path) => {
        $crate::conformance_tests!(@each $fresh;
            duplicate_deliveries_are_counted_not_stored,
            concurrent_deliveries_of_one_event_insert_it_once,
            newest_value_wins_and_history_keeps_every_value_in_order,
            pending_events_come_oldest_first_and_leave_once_applied,
            journal_is_kept_per_object_in_order,
            ready_after_migration_and_closed_after_close,
            every_kind_of_event_reads_back_as_it_was_written,
            outbox_jobs_are_queued_once_per_idempotency_key,
            one_active_run_per_rule_and_key_unless_parallel,
            timers_come_due_oldest_first_and_can_be_cancelled,
            a_deferred_event_holds_back_its_object_until_due,
            pending_events_read_past_the_batches_in_flight,
            due_timers_read_past_the_batches_in_flight,
            links_go_both_ways_and_a_fetched_list_replaces_them,
            owners_runs_and_timers_read_back,
            a_batch_loads_its_objects_active_runs_oldest_first,
            a_claim_leases_a_job_until_the_lease_expires,
            an_outcome_under_a_stale_lease_is_not_recorded,
            a_retry_hides_the_job_until_its_next_at,
            done_and_dead_jobs_are_never_claimed_again,
            a_dead_letter_is_replayed_once,
            an_unrecorded_attempt_makes_later_ones_check_first,
            claims_take_only_their_connectors_jobs_oldest_first,
            concurrent_claims_never_share_a_job,
            next_job_at_is_the_soonest_due_job_or_expiring_lease,
            timers_come_due_with_an_outcome_only_under_the_lease,
            a_job_found_by_key_says_why_it_died,
            stats_count_pending_work_per_rule_and_connector,
            a_lead_is_found_by_email_in_any_case,
            runs_are_listed_newest_first_by_rule_and_status,
            prune_removes_old_journal_rows_and_applied_payloads_only,
        );
        $crate::conformance_tests!(@reopen $fresh, $reopen;
            rotation_wraps_and_survives_reopening,
            an_objects_trace_reads_whole_across_restarts_and_prunes,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $fresh();
                $crate::conformance::$name(store).await;
            }
        )*
    };
    // Checks that need the store closed and opened again on the same data: `$reopen`
    // takes the guard `$fresh` returned.
    (@reopen $fresh:path, $reopen:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (guard, store) = $fresh();
                $crate::conformance::$name(store, || $reopen(&guard)).await;
            }
        )*
    };
}

fn contact(id: &str) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", id)
}

/// A property-change event as the HubSpot ingest would produce it.
pub fn property_event(
    object: &ObjectRef,
    dedup: &str,
    at: i64,
    property: &str,
    value: &str,
) -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: dedup.into(),
        object: object.clone(),
        kind: EventKind::PropertyChange {
            property: property.into(),
            value: value.into(),
        },
        occurred_at: Timestamp(at),
        received_at: Timestamp(at + 1),
        subscription: "contact.propertyChange".into(),
        change_source: Some("CRM_UI".into()),
        source_id: None,
        raw: RawJson::from_value(&json!({ "propertyName": property, "propertyValue": value })),
    }
}

fn batch(events: Vec<Event>) -> InboxBatch {
    InboxBatch {
        events,
        journal: JournalEntry {
            at: Timestamp(0),
            object: None,
            kind: JournalKind::Webhook,
            summary: "hubspot webhook accepted".into(),
            detail: json!({ "request_id": "req_test" }),
        },
    }
}

/// Applies pending events the simplest way: each property change is one write.
async fn apply_all(store: &dyn Store) {
    let pending = store.pending_events(NOW, 10_000).await.unwrap();
    let mut unit = UnitOfWork {
        applied_at: Some(Timestamp(99)),
        ..UnitOfWork::default()
    };
    for pending in pending {
        let event = pending.event;
        if let Some((name, value)) = event.property_change() {
            unit.property_writes.push(PropertyWrite {
                object: event.object.clone(),
                name: name.to_owned(),
                value: value.clone(),
                occurred_at: event.occurred_at,
                event_id: event.id.clone(),
            });
        }
        unit.applied.push(pending.seq);
    }
    store.apply(unit).await.unwrap();
}

pub async fn duplicate_deliveries_are_counted_not_stored(store: Arc<dyn Store>) {
    let object = contact("1");
    let events = vec![
        property_event(&object, "p:s:1", 10, "lifecyclestage", "lead"),
        property_event(&object, "p:s:2", 20, "lifecyclestage", "salesqualifiedlead"),
    ];
    let first = store.append_inbox(batch(events.clone())).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (2, 0));

    // A redelivery gets new local ids but the same dedup keys.
    let mut again = events.clone();
    again.iter_mut().for_each(|event| event.id = EventId::new());
    again.push(property_event(&object, "p:s:3", 30, "firstname", "Ada"));
    let second = store.append_inbox(batch(again)).await.unwrap();
    assert_eq!((second.inserted, second.duplicates), (1, 2));
    assert_eq!(store.received_events(&object).await.unwrap().len(), 3);

    let requests = store.recent_requests(10).await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].detail["duplicates"], 2,
        "newest request first, with its counts"
    );
    assert!(
        requests[0].summary.contains("1 new, 2 duplicates"),
        "{}",
        requests[0].summary
    );
}

pub async fn concurrent_deliveries_of_one_event_insert_it_once(store: Arc<dyn Store>) {
    let object = contact("2");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let event = property_event(&object, "p:s:race", 10, "lifecyclestage", "lead");
            tokio::spawn(async move { store.append_inbox(batch(vec![event])).await.unwrap() })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await.unwrap().inserted;
    }
    assert_eq!(inserted, 1);
    assert_eq!(store.received_events(&object).await.unwrap().len(), 1);
}

pub async fn newest_value_wins_and_history_keeps_every_value_in_order(store: Arc<dyn Store>) {
    let object = contact("3");
    // Arrival order: 30, 10, 20. Occurrence order: 10, 20, 30.
    for (dedup, at, value) in [
        ("a", 30, "customer"),
        ("b", 10, "lead"),
        ("c", 20, "salesqualifiedlead"),
    ] {
        store
            .append_inbox(batch(vec![property_event(
                &object,
                dedup,
                at,
                "lifecyclestage",
                value,
            )]))
            .await
            .unwrap();
        apply_all(store.as_ref()).await;
    }
    let state = store
        .object(&object)
        .await
        .unwrap()
        .expect("object exists once applied");
    assert_eq!(state.properties["lifecyclestage"].value, json!("customer"));
    assert_eq!(
        state.properties["lifecyclestage"].occurred_at,
        Timestamp(30)
    );
    let history: Vec<(Value, i64)> = store
        .property_history(&object)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.value, entry.occurred_at.as_millis()))
        .collect();
    assert_eq!(
        history,
        vec![
            (json!("lead"), 10),
            (json!("salesqualifiedlead"), 20),
            (json!("customer"), 30)
        ]
    );
    assert_eq!(store.object(&contact("never-seen")).await.unwrap(), None);
}

pub async fn pending_events_come_oldest_first_and_leave_once_applied(store: Arc<dyn Store>) {
    let object = contact("4");
    let events = vec![
        property_event(&object, "x", 300, "a", "3"),
        property_event(&object, "y", 100, "a", "1"),
        property_event(&object, "z", 200, "a", "2"),
    ];
    store.append_inbox(batch(events)).await.unwrap();
    let pending = store.pending_events(NOW, 10).await.unwrap();
    let order: Vec<i64> = pending
        .iter()
        .map(|p| p.event.occurred_at.as_millis())
        .collect();
    assert_eq!(order, vec![100, 200, 300]);
    assert_eq!(
        store.pending_events(NOW, 2).await.unwrap().len(),
        2,
        "limit is honoured"
    );
    apply_all(store.as_ref()).await;
    assert!(store.pending_events(NOW, 10).await.unwrap().is_empty());
    let received = store.received_events(&object).await.unwrap();
    assert!(received.iter().all(|r| r.applied_at == Some(Timestamp(99))));
}

pub async fn journal_is_kept_per_object_in_order(store: Arc<dyn Store>) {
    let object = contact("5");
    let entry = |summary: &str, object: Option<ObjectRef>| JournalEntry {
        at: Timestamp(5),
        object,
        kind: JournalKind::Event,
        summary: summary.into(),
        detail: json!({}),
    };
    store
        .journal(vec![
            entry("first", Some(object.clone())),
            entry("elsewhere", Some(contact("6"))),
            entry("second", Some(object.clone())),
        ])
        .await
        .unwrap();
    let summaries: Vec<String> = store
        .journal_for(&object)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.summary)
        .collect();
    assert_eq!(summaries, vec!["first", "second"]);
}

pub async fn ready_after_migration_and_closed_after_close(store: Arc<dyn Store>) {
    store
        .ready()
        .await
        .expect("a freshly migrated store is ready");
    store.close().await.unwrap();
    let result = store.journal(vec![]).await;
    assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
}

pub async fn every_kind_of_event_reads_back_as_it_was_written(store: Arc<dyn Store>) {
    let object = contact("7");
    let base = property_event(&object, "k0", 10, "email", "ada@example.com");
    let kinds = [
        EventKind::Created,
        EventKind::PropertyChange {
            property: "lead_score".into(),
            value: Value::Null,
        },
        EventKind::Deleted,
        EventKind::Restored,
        EventKind::Merged {
            merged_ids: vec!["8".into(), "9".into()],
            new_id: Some("7".into()),
        },
        EventKind::AssociationChange {
            to: ObjectRef::new("hubspot", "company", "99"),
            association_type: "CONTACT_TO_COMPANY".into(),
            removed: true,
        },
    ];
    let mut events = vec![base.clone()];
    for (i, kind) in kinds.into_iter().enumerate() {
        let mut event = base.clone();
        event.id = EventId::new();
        event.dedup_key = format!("k{}", i + 1);
        event.kind = kind;
        event.source_id = (i % 2 == 0).then(|| "userId:1".to_owned());
        event.change_source = (i % 3 == 0).then(|| "API".to_owned());
        events.push(event);
    }
    store.append_inbox(batch(events.clone())).await.unwrap();
    let read: Vec<Event> = store
        .received_events(&object)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(read, events);
    let pending: Vec<Event> = store
        .pending_events(NOW, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event)
        .collect();
    assert_eq!(pending.len(), events.len());
    assert!(pending.iter().all(|event| events.contains(event)));
}
