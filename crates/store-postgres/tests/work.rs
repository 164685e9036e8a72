//! Sharing the engine's work between instances: fair shares of the partitions, a dead
//! instance's share passing on, and the fences that keep a late instance from writing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Schema;
use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, RunId, Timestamp};
use followthrough_store::{
    InboxBatch, JournalEntry, JournalKind, RunRecord, Store, StoreError, UnitOfWork,
    WORK_PARTITIONS, WorkShare,
};
use followthrough_store_postgres::PostgresStore;
use serde_json::json;

fn partitions(share: &WorkShare) -> BTreeSet<i16> {
    share
        .partitions()
        .expect("a shared store leases partitions")
        .into_iter()
        .collect()
}

fn contact(id: usize) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", id.to_string())
}

fn change(object: &ObjectRef, at: i64) -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: format!("{object}-{at}"),
        object: object.clone(),
        kind: EventKind::PropertyChange {
            property: "lead_score".into(),
            value: json!(at),
        },
        occurred_at: Timestamp(at),
        received_at: Timestamp(at),
        subscription: "contact.propertyChange".into(),
        change_source: None,
        source_id: None,
        raw: RawJson::from_value(&json!({ "at": at })),
    }
}

async fn receive(store: &PostgresStore, events: Vec<Event>) {
    store
        .append_inbox(InboxBatch {
            events,
            journal: JournalEntry {
                at: Timestamp(0),
                object: None,
                kind: JournalKind::Webhook,
                summary: "hubspot webhook accepted".into(),
                detail: json!({}),
            },
        })
        .await
        .unwrap();
}

async fn pending_objects(store: &PostgresStore, share: &WorkShare) -> BTreeSet<ObjectRef> {
    store
        .pending_events_in(share, Timestamp(i64::MAX / 2), 10_000, Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event.object)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_split_the_work_fairly_and_each_object_goes_to_one() {
    let schema = Schema::new();
    let (a, b) = (schema.connect(true).await, schema.connect(true).await);
    let objects: Vec<ObjectRef> = (0..300).map(contact).collect();
    receive(&a, objects.iter().map(|o| change(o, 1)).collect()).await;

    let alone = a.claim_work("a", 60_000).await.unwrap();
    assert_eq!(
        partitions(&alone).len(),
        usize::from(WORK_PARTITIONS),
        "alone, A takes all"
    );
    assert_eq!(pending_objects(&a, &alone).await.len(), 300);

    // B arrives: everything is leased, so it stands by until A gives half back.
    let waiting = b.claim_work("b", 60_000).await.unwrap();
    assert!(waiting.is_empty(), "{waiting:?}");
    assert!(pending_objects(&b, &waiting).await.is_empty());
    let halved = a.claim_work("a", 60_000).await.unwrap();
    let b_share = b.claim_work("b", 60_000).await.unwrap();
    assert_eq!(partitions(&halved).len(), 32);
    assert_eq!(partitions(&b_share).len(), 32);
    assert!(partitions(&halved).is_disjoint(&partitions(&b_share)));

    // Each pending object is read by exactly one of them.
    let (seen_by_a, seen_by_b) = (
        pending_objects(&a, &halved).await,
        pending_objects(&b, &b_share).await,
    );
    assert!(seen_by_a.is_disjoint(&seen_by_b));
    assert_eq!(seen_by_a.len() + seen_by_b.len(), 300);
    assert!(
        seen_by_a.len() > 100 && seen_by_b.len() > 100,
        "the hash spreads objects: {} and {}",
        seen_by_a.len(),
        seen_by_b.len()
    );

    // A stops gracefully: B takes everything at once.
    a.release_work("a").await.unwrap();
    let all = b.claim_work("b", 60_000).await.unwrap();
    assert_eq!(partitions(&all).len(), usize::from(WORK_PARTITIONS));
    assert_eq!(pending_objects(&b, &all).await.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_share_passes_on_and_its_late_commit_is_refused_whole() {
    let schema = Schema::new();
    let (a, b) = (schema.connect(true).await, schema.connect(true).await);
    let object = contact(7);
    receive(&a, vec![change(&object, 1)]).await;
    a.claim_work("a", 200).await.unwrap();
    let a_share = a.claim_work("a", 200).await.unwrap();
    assert_eq!(partitions(&a_share).len(), usize::from(WORK_PARTITIONS));
    let prepared_by_a = a
        .pending_events_in(&a_share, Timestamp(10), 10, Default::default())
        .await
        .unwrap();
    assert_eq!(prepared_by_a.len(), 1);

    // A stalls (or dies) past its lease; B sees it gone and takes every partition.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b_share = b.claim_work("b", 60_000).await.unwrap();
    assert_eq!(partitions(&b_share).len(), usize::from(WORK_PARTITIONS));

    // A wakes up and commits what it prepared: refused, nothing written.
    let late = UnitOfWork {
        applied: vec![prepared_by_a[0].seq],
        applied_at: Some(Timestamp(20)),
        journal: vec![JournalEntry {
            at: Timestamp(20),
            object: Some(object.clone()),
            kind: JournalKind::Rule,
            summary: "written by an instance that lost its lease".into(),
            detail: json!({}),
        }],
        fence: a_share.fence(),
        ..UnitOfWork::default()
    };
    match a.apply(late).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("lease"), "{why}"),
        other => panic!("a fenced-out unit must be refused, got {other:?}"),
    }
    assert!(a.journal_for(&object).await.unwrap().is_empty());
    assert_eq!(a.pending_count().await.unwrap(), 1, "the event waits for B");

    // B's unit under its own leases commits.
    let mine = b
        .pending_events_in(&b_share, Timestamp(10), 10, Default::default())
        .await
        .unwrap();
    b.apply(UnitOfWork {
        applied: vec![mine[0].seq],
        applied_at: Some(Timestamp(30)),
        fence: b_share.fence(),
        ..UnitOfWork::default()
    })
    .await
    .unwrap();
    assert_eq!(b.pending_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_changed_since_it_was_read_is_not_overwritten() {
    let schema = Schema::new();
    let store = schema.connect(true).await;
    let run = RunRecord {
        run_id: RunId::new(),
        rule_id: "lead-gone-cold".into(),
        rule_version: "v1".into(),
        key: "7".into(),
        object: contact(7),
        status: "waiting".into(),
        parallel: false,
        reason: None,
        state: json!({ "step": 0 }).to_string(),
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        revision: 0,
    };
    let write = |run: RunRecord| UnitOfWork {
        runs: vec![run],
        ..UnitOfWork::default()
    };
    store.apply(write(run.clone())).await.unwrap();
    let read = store.runs(std::slice::from_ref(&run.run_id)).await.unwrap();
    assert_eq!(read[0].revision, 0);

    // Two instances read revision 0; the first to commit wins.
    let first = RunRecord {
        state: json!({ "step": 1 }).to_string(),
        ..read[0].clone()
    };
    let second = RunRecord {
        status: "cancelled".into(),
        ..read[0].clone()
    };
    store.apply(write(first.clone())).await.unwrap();
    match store.apply(write(second)).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("changed"), "{why}"),
        other => panic!("a stale run write must be refused, got {other:?}"),
    }
    let now = store.runs(std::slice::from_ref(&run.run_id)).await.unwrap();
    assert_eq!(now[0].status, "waiting");
    assert_eq!(now[0].state_value(), json!({ "step": 1 }));
    assert_eq!(now[0].revision, 1);

    // One unit may write a run twice (it changed twice in one batch).
    store
        .apply(UnitOfWork {
            runs: vec![
                RunRecord {
                    state: json!({ "step": 2 }).to_string(),
                    ..now[0].clone()
                },
                RunRecord {
                    state: json!({ "step": 3 }).to_string(),
                    ..now[0].clone()
                },
            ],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let last = store.runs(std::slice::from_ref(&run.run_id)).await.unwrap();
    assert_eq!(
        (last[0].state_value(), last[0].revision),
        (json!({ "step": 3 }), 3)
    );
}
