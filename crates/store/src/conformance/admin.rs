//! Conformance checks of what the people running followthrough read: counts, finding a
//! lead by email, listing runs, and retention pruning.

use super::engine::{job, run};
use super::*;
use crate::{AttemptRecord, AttemptResult, DeadLetterReason, RunFilter};

pub async fn stats_count_pending_work_per_rule_and_connector(store: Arc<dyn Store>) {
    assert_eq!(store.stats().await.unwrap(), crate::StoreStats::default());

    let object = contact("40");
    store
        .append_inbox(batch(vec![
            property_event(&object, "s-1", 10, "firstname", "Ada"),
            property_event(&object, "s-2", 11, "lastname", "L"),
        ]))
        .await
        .unwrap();
    let waiting = run("lead-gone-cold", "40", "waiting", false);
    let other = run("lead-gone-cold", "41", "running", false);
    let done = run("new-sql-gets-a-call", "40", "completed", false);
    let mut slack_job = job("k-slack", &done.run_id, &object, "DM");
    slack_job.connector = "slack".into();
    slack_job.created_at = Timestamp(3);
    store
        .apply(UnitOfWork {
            runs: vec![waiting.clone(), other, done.clone()],
            timers_scheduled: vec![TimerRecord {
                run_id: waiting.run_id.clone(),
                due_at: Timestamp(500),
                kind: "wait".into(),
            }],
            outbox: vec![
                job("k-1", &done.run_id, &object, "Call"),
                job("k-2", &done.run_id, &object, "Email"),
                slack_job,
            ],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    // One job dies: it leaves the backlog and waits as a dead letter.
    let claimed = store
        .claim_jobs("hubspot", Timestamp(10), Timestamp(100), 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let recorded = store
        .record_attempt(AttemptRecord {
            seq: claimed[0].seq,
            lease: claimed[0].lease.clone(),
            at: Timestamp(11),
            result: AttemptResult::Dead(DeadLetterReason {
                kind: "terminal".into(),
                message: "rejected".into(),
                last_status: Some(400),
                last_response: None,
            }),
            journal: vec![],
            timers: vec![],
        })
        .await
        .unwrap();
    assert!(recorded);

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.inbox_pending, 2);
    assert_eq!(stats.timers_pending, 1);
    assert_eq!(stats.next_timer_at, Some(Timestamp(500)));
    assert_eq!(stats.dead_letters, 1);
    assert_eq!(
        stats.active_runs,
        vec![
            crate::ActiveRunCount {
                rule_id: "lead-gone-cold".into(),
                status: "running".into(),
                count: 1
            },
            crate::ActiveRunCount {
                rule_id: "lead-gone-cold".into(),
                status: "waiting".into(),
                count: 1
            },
        ],
        "finished runs are not counted here"
    );
    assert_eq!(
        stats.outbox_pending,
        vec![
            crate::ConnectorBacklog {
                connector: "hubspot".into(),
                pending: 1,
                oldest_created_at: Some(Timestamp(5)),
            },
            crate::ConnectorBacklog {
                connector: "slack".into(),
                pending: 1,
                oldest_created_at: Some(Timestamp(3)),
            },
        ]
    );
    assert_eq!(stats.oldest_pending_at(), Some(Timestamp(3)));
}

pub async fn a_lead_is_found_by_email_in_any_case(store: Arc<dyn Store>) {
    let ada = contact("50");
    let bob = contact("51");
    store
        .append_inbox(batch(vec![
            property_event(&ada, "e-1", 10, "email", "Ada.Lovelace@Example.com"),
            property_event(&bob, "e-2", 11, "email", "bob@example.com"),
            // Another property holding the same text is not an email match.
            property_event(&bob, "e-3", 12, "notes", "ada.lovelace@example.com"),
        ]))
        .await
        .unwrap();
    apply_all(store.as_ref()).await;
    let found = store
        .objects_by_email(" ada.lovelace@EXAMPLE.com ", 10)
        .await
        .unwrap();
    assert_eq!(found, vec![ada]);
    assert!(
        store
            .objects_by_email("nobody@example.com", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn runs_are_listed_newest_first_by_rule_and_status(store: Arc<dyn Store>) {
    // Run ids are ULIDs, so creation order is id order; a short pause makes it strict.
    let mut runs = Vec::new();
    for (rule, key, status) in [
        ("lead-gone-cold", "60", "completed"),
        ("lead-gone-cold", "61", "waiting"),
        ("new-sql-gets-a-call", "60", "completed"),
        ("lead-gone-cold", "62", "cancelled"),
    ] {
        runs.push(run(rule, key, status, false));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    store
        .apply(UnitOfWork {
            runs: runs.clone(),
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let ids = |listed: Vec<RunRecord>| listed.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let filter = |rule: Option<&str>, status: Option<&str>, before: Option<RunId>| RunFilter {
        rule_id: rule.map(str::to_owned),
        status: status.map(str::to_owned),
        before,
        limit: 10,
    };
    let all = store.list_runs(filter(None, None, None)).await.unwrap();
    assert_eq!(
        ids(all),
        runs.iter()
            .rev()
            .map(|r| r.run_id.clone())
            .collect::<Vec<_>>()
    );
    let cold = store
        .list_runs(filter(Some("lead-gone-cold"), None, None))
        .await
        .unwrap();
    assert_eq!(
        ids(cold),
        vec![
            runs[3].run_id.clone(),
            runs[1].run_id.clone(),
            runs[0].run_id.clone()
        ]
    );
    let active = store
        .list_runs(filter(None, Some("active"), None))
        .await
        .unwrap();
    assert_eq!(ids(active), vec![runs[1].run_id.clone()]);
    let completed = store
        .list_runs(filter(None, Some("completed"), None))
        .await
        .unwrap();
    assert_eq!(
        ids(completed),
        vec![runs[2].run_id.clone(), runs[0].run_id.clone()]
    );
    // The next page starts after the previous page's last run.
    let mut page = filter(None, None, Some(runs[2].run_id.clone()));
    page.limit = 1;
    assert_eq!(
        ids(store.list_runs(page).await.unwrap()),
        vec![runs[1].run_id.clone()]
    );
}

pub async fn prune_removes_old_journal_rows_and_applied_payloads_only(store: Arc<dyn Store>) {
    let object = contact("70");
    let old = property_event(&object, "p-1", 10, "firstname", "Ada");
    let mut unapplied = property_event(&contact("71"), "p-2", 12, "firstname", "Bob");
    unapplied.received_at = Timestamp(13);
    store.append_inbox(batch(vec![old])).await.unwrap();
    apply_all(store.as_ref()).await;
    store.append_inbox(batch(vec![unapplied])).await.unwrap();
    let entry = |at: i64, summary: &str| JournalEntry {
        at: Timestamp(at),
        object: Some(object.clone()),
        kind: JournalKind::Rule,
        summary: summary.into(),
        detail: json!({}),
    };
    store
        .journal(vec![
            entry(5, "old"),
            entry(6, "old too"),
            entry(500, "recent"),
        ])
        .await
        .unwrap();

    // Small chunks: a prune is repeated until it finds nothing.
    let mut total = crate::Pruned::default();
    loop {
        let pruned = store.prune(Timestamp(100), 1).await.unwrap();
        if pruned.total() == 0 {
            break;
        }
        assert!(pruned.journal_rows <= 1 && pruned.inbox_rows <= 1);
        total.journal_rows += pruned.journal_rows;
        total.inbox_rows += pruned.inbox_rows;
    }
    assert_eq!(total.inbox_rows, 1, "only the applied event's payload goes");
    // The two old rows, and the webhook rows (at 0) the batches wrote.
    assert!(total.journal_rows >= 2, "{total:?}");
    let summaries: Vec<String> = store
        .journal_for(&object)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.summary)
        .collect();
    assert_eq!(summaries, vec!["recent".to_owned()]);
    assert!(store.received_events(&object).await.unwrap().is_empty());
    // What the event wrote stays: the object's state is not a payload.
    let state = store.object(&object).await.unwrap().expect("object kept");
    assert_eq!(state.properties["firstname"].value, json!("Ada"));
    // The unapplied event is still there to be applied.
    assert_eq!(store.pending_count().await.unwrap(), 1);
}

/// What a trace reads of one object (events received, journal, outbox rows, property
/// history) is whole and in order however the store keeps its per-object indexes: rows
/// written before a restart, rows written after it, and rows written after a prune took
/// every journal row.
pub async fn an_objects_trace_reads_whole_across_restarts_and_prunes(
    store: Arc<dyn Store>,
    reopen: impl Fn() -> Arc<dyn Store>,
) {
    let (lead, other) = (contact("80"), contact("81"));
    let note = |at: i64, object: &ObjectRef, summary: &str| JournalEntry {
        at: Timestamp(at),
        object: Some(object.clone()),
        kind: JournalKind::Rule,
        summary: summary.into(),
        detail: json!({}),
    };
    let done = run("new-sql-gets-a-call", "80", "completed", false);
    // Written in the same order before and after the restart, each object's rows
    // interleaved with the other's.
    let write = |store: Arc<dyn Store>, round: &'static str, at: i64| {
        let done = done.clone();
        let (lead, other) = (lead.clone(), other.clone());
        async move {
            store
                .append_inbox(batch(vec![
                    property_event(&lead, &format!("{round}-1"), at, "firstname", round),
                    property_event(&other, &format!("{round}-2"), at, "firstname", "x"),
                    property_event(&lead, &format!("{round}-3"), at + 1, "lastname", round),
                ]))
                .await
                .unwrap();
            apply_all(store.as_ref()).await;
            store
                .journal(vec![
                    note(at, &lead, &format!("{round} a")),
                    note(at, &other, "elsewhere"),
                    note(at + 1, &lead, &format!("{round} b")),
                ])
                .await
                .unwrap();
            store
                .apply(UnitOfWork {
                    runs: vec![done.clone()],
                    outbox: vec![
                        job(&format!("{round}-call"), &done.run_id, &lead, "Call"),
                        job(&format!("{round}-other"), &done.run_id, &other, "Other"),
                    ],
                    ..UnitOfWork::default()
                })
                .await
                .unwrap();
        }
    };
    let journal = |store: Arc<dyn Store>, object: ObjectRef| async move {
        let entries = store.journal_for(&object).await.unwrap();
        entries.into_iter().map(|e| e.summary).collect::<Vec<_>>()
    };

    write(Arc::clone(&store), "before", 10).await;
    store.close().await.unwrap();
    drop(store);
    let store = reopen();
    write(Arc::clone(&store), "after", 20).await;

    let received: Vec<String> = store
        .received_events(&lead)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.dedup_key)
        .collect();
    assert_eq!(received, ["before-1", "before-3", "after-1", "after-3"]);
    assert_eq!(
        journal(Arc::clone(&store), lead.clone()).await,
        ["before a", "before b", "after a", "after b"]
    );
    assert_eq!(
        journal(Arc::clone(&store), other.clone()).await,
        ["elsewhere", "elsewhere"]
    );
    let keys: Vec<String> = store
        .outbox_for(&lead)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.job.idempotency_key)
        .collect();
    assert_eq!(keys, ["before-call", "after-call"]);
    let history: Vec<(String, Value)> = store
        .property_history(&lead)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    assert_eq!(
        history,
        [
            ("firstname".to_owned(), json!("before")),
            ("firstname".to_owned(), json!("after")),
            ("lastname".to_owned(), json!("before")),
            ("lastname".to_owned(), json!("after")),
        ]
    );

    // A prune that takes the whole journal, newest rows too: the rows written after it
    // are found all the same.
    while store.prune(Timestamp(1_000), 100).await.unwrap().total() > 0 {}
    assert!(journal(Arc::clone(&store), lead.clone()).await.is_empty());
    store
        .journal(vec![note(30, &lead, "after the prune")])
        .await
        .unwrap();
    assert_eq!(
        journal(Arc::clone(&store), lead.clone()).await,
        ["after the prune"]
    );
    store.close().await.unwrap();
    drop(store);
    let store = reopen();
    assert_eq!(journal(store, lead).await, ["after the prune"]);
}
