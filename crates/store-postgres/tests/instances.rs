//! What only a shared server can get wrong: several instances (each its own store and
//! pool) migrating, claiming, starting runs and taking rotation turns at once, and the
//! schema version checks. The conformance suite covers the single-instance contract.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::Schema;
use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, RunId, Timestamp};
use followthrough_store::{
    InboxBatch, JournalEntry, JournalKind, OutboxJob, PropertyWrite, RunRecord, Store, StoreError,
    UnitOfWork,
};
use followthrough_store_postgres::{LATEST_VERSION, PostgresStore};
use serde_json::json;
use sqlx::{Connection, PgConnection};

/// `count` stores on one schema, as `count` instances of the service would be.
async fn instances(schema: &Schema, count: usize) -> Vec<Arc<PostgresStore>> {
    let mut stores = Vec::with_capacity(count);
    for _ in 0..count {
        stores.push(Arc::new(schema.connect(true).await));
    }
    stores
}

async fn sql_connection(schema: &Schema) -> PgConnection {
    let mut connection = PgConnection::connect(&schema.url).await.unwrap();
    sqlx::query(&format!("SET search_path TO \"{}\"", schema.name))
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let schema = Schema::new();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let (url, options) = (schema.url.clone(), schema.options(true));
            tokio::spawn(async move { PostgresStore::connect(&url, options).await })
        })
        .collect();
    for start in starts {
        let store = start.await.unwrap().expect("every instance starts");
        store.ready().await.expect("and finds the schema current");
        store.close().await.unwrap();
    }
    let mut connection = sql_connection(&schema).await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    assert_eq!(versions, (1..=LATEST_VERSION).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_not_migrated_or_from_a_newer_build_is_not_ready() {
    let schema = Schema::new();
    let unmigrated = schema.connect(false).await;
    let result = unmigrated.ready().await;
    assert!(
        matches!(result, Err(StoreError::SchemaMismatch { found: 0, .. })),
        "{result:?}"
    );
    unmigrated.close().await.unwrap();

    let store = schema.connect(true).await;
    store.ready().await.unwrap();
    let mut connection = sql_connection(&schema).await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    assert!(matches!(
        store.ready().await,
        Err(StoreError::SchemaMismatch { found: 999, .. })
    ));
    let newer = PostgresStore::connect(&schema.url, schema.options(true)).await;
    assert!(
        matches!(newer, Err(StoreError::SchemaMismatch { found: 999, .. })),
        "an older build refuses to run on a newer schema"
    );
    store.close().await.unwrap();
}

fn job(object: &ObjectRef, next_at: i64) -> OutboxJob {
    let run_id = RunId::new();
    OutboxJob {
        idempotency_key: format!("{run_id}:steps[0]"),
        run_id,
        rule_id: "lead-gone-cold".into(),
        action: "create_task".into(),
        connector: "hubspot".into(),
        object: object.clone(),
        params: json!({ "subject": "Call" }),
        created_at: Timestamp(1),
        next_at: Timestamp(next_at),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_several_instances_never_share_a_job() {
    let schema = Schema::new();
    let stores = instances(&schema, 3).await;
    let object = ObjectRef::new("hubspot", "contact", "1");
    let jobs: Vec<OutboxJob> = (0..120).map(|i| job(&object, i)).collect();
    stores[0]
        .apply(UnitOfWork {
            outbox: jobs,
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    // Each instance runs four workers that claim five at a time until nothing is left.
    let workers: Vec<_> = stores
        .iter()
        .flat_map(|store| (0..4).map(move |_| Arc::clone(store)))
        .map(|store| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                loop {
                    let claimed = store
                        .claim_jobs("hubspot", Timestamp(1_000), Timestamp(9_000), 5)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return seqs;
                    }
                    seqs.extend(claimed.iter().map(|c| c.seq));
                }
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for worker in workers {
        seqs.extend(worker.await.unwrap());
    }
    let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "a job was claimed twice");
    assert_eq!(seqs.len(), 120, "every job was claimed");
    for store in &stores {
        store.close().await.unwrap();
    }
}

fn active_run(rule: &str, key: &str) -> RunRecord {
    RunRecord {
        run_id: RunId::new(),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        key: key.into(),
        object: ObjectRef::new("hubspot", "contact", key),
        status: "waiting".into(),
        parallel: false,
        reason: None,
        state: json!({}).to_string(),
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        revision: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_the_same_run_at_once_start_it_once() {
    let schema = Schema::new();
    let stores = instances(&schema, 2).await;
    for round in 0..10 {
        let key = format!("k{round}");
        let attempts: Vec<_> = (0..6)
            .map(|i| {
                let store = Arc::clone(&stores[i % stores.len()]);
                let run = active_run("lead-gone-cold", &key);
                tokio::spawn(async move {
                    store
                        .apply(UnitOfWork {
                            runs: vec![run],
                            ..UnitOfWork::default()
                        })
                        .await
                })
            })
            .collect();
        let mut started = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => started += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(started, 1, "round {round}");
        let active = stores[0].active_runs("lead-gone-cold", &key).await.unwrap();
        assert_eq!(active.len(), 1);
    }
    for store in &stores {
        store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_gives_one_turn_per_job_across_instances() {
    let schema = Schema::new();
    let stores = instances(&schema, 2).await;
    // Every instance asks for each job's turn several times at once (retries).
    let asks: Vec<_> = (0..40)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let key = format!("job-{}", i % 10);
            tokio::spawn(async move {
                let turn = store.next_in_rotation("owners:team", 1_000, &key).await;
                (key, turn.unwrap())
            })
        })
        .collect();
    let mut turns = std::collections::BTreeMap::new();
    for ask in asks {
        let (key, turn) = ask.await.unwrap();
        let first = *turns.entry(key.clone()).or_insert(turn);
        assert_eq!(first, turn, "{key} got two turns");
    }
    let distinct: BTreeSet<u32> = turns.values().copied().collect();
    assert_eq!(
        distinct,
        (0..10).collect(),
        "ten jobs took the first ten turns, none skipped"
    );
    for store in &stores {
        store.close().await.unwrap();
    }
}

fn event(object: &ObjectRef, dedup: &str, at: i64) -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: dedup.into(),
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

fn webhook(events: Vec<Event>) -> InboxBatch {
    InboxBatch {
        events,
        journal: JournalEntry {
            at: Timestamp(0),
            object: None,
            kind: JournalKind::Webhook,
            summary: "hubspot webhook accepted".into(),
            detail: json!({ "request_id": "req_1" }),
        },
    }
}

/// Redeliveries of one webhook with its events in another order lock the inbox's keys in
/// opposite orders: PostgreSQL breaks such deadlocks by failing one transaction, which the
/// store runs again, so every delivery still succeeds and each event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_in_any_order_all_succeed_and_store_each_event_once() {
    // Enough events that two deliveries' inserts overlap in time.
    const EVENTS: i64 = 2_000;
    let schema = Schema::new();
    let stores = instances(&schema, 2).await;
    let object = ObjectRef::new("hubspot", "contact", "7");
    let events: Vec<Event> = (0..EVENTS)
        .map(|i| event(&object, &format!("e{i}"), i))
        .collect();
    let deliveries: Vec<_> = (0..12)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let mut batch = events.clone();
            if i % 2 == 1 {
                batch.reverse();
            }
            tokio::spawn(async move { store.append_inbox(webhook(batch)).await })
        })
        .collect();
    let mut inserted = 0;
    for delivery in deliveries {
        let outcome = delivery.await.unwrap().expect("every delivery succeeds");
        assert_eq!(outcome.inserted + outcome.duplicates, EVENTS as usize);
        inserted += outcome.inserted;
    }
    assert_eq!(inserted, EVENTS as usize);
    assert_eq!(
        stores[0].received_events(&object).await.unwrap().len(),
        EVENTS as usize
    );
    for store in &stores {
        store.close().await.unwrap();
    }
}

/// JSON is kept as text: a value PostgreSQL's JSONB would refuse (a NUL character in a
/// string) round-trips like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_json_value_round_trips() {
    let schema = Schema::new();
    let store = schema.connect(true).await;
    let object = ObjectRef::new("hubspot", "contact", "9");
    let value = json!({ "nul": "a\u{0}b", "big": u64::MAX, "float": 0.1, "nested": [1, [2]] });
    store
        .apply(UnitOfWork {
            property_writes: vec![PropertyWrite {
                object: object.clone(),
                name: "notes".into(),
                value: value.clone(),
                occurred_at: Timestamp(5),
                event_id: EventId::new(),
            }],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let state = store.object(&object).await.unwrap().unwrap();
    assert_eq!(state.properties["notes"].value, value);
    store.close().await.unwrap();
}
