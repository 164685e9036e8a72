//! Conformance checks of the engine's durable state: outbox jobs once per key, one
//! active run per key, timers, deferrals, links, owners.

use super::*;

pub(super) fn run(rule: &str, key: &str, status: &str, parallel: bool) -> RunRecord {
    RunRecord {
        run_id: RunId::new(),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        key: key.into(),
        object: contact(key),
        status: status.into(),
        parallel,
        reason: None,
        state: json!({ "cursor": "steps[0]" }).to_string(),
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        revision: 0,
    }
}

pub(super) fn job(key: &str, run_id: &RunId, object: &ObjectRef, subject: &str) -> OutboxJob {
    OutboxJob {
        idempotency_key: key.into(),
        run_id: run_id.clone(),
        rule_id: "new-sql-gets-a-call".into(),
        action: "create_task".into(),
        connector: "hubspot".into(),
        object: object.clone(),
        params: json!({ "subject": subject }),
        created_at: Timestamp(5),
        next_at: Timestamp(5),
    }
}

pub async fn outbox_jobs_are_queued_once_per_idempotency_key(store: Arc<dyn Store>) {
    let run = run("new-sql-gets-a-call", "20", "completed", false);
    let object = run.object.clone();
    let key = format!("{}:steps[0]", run.run_id);
    let first = UnitOfWork {
        runs: vec![run.clone()],
        outbox: vec![job(&key, &run.run_id, &object, "Call")],
        ..UnitOfWork::default()
    };
    store.apply(first).await.unwrap();
    // The same decision again (a replay after a crash, say) queues nothing new.
    let again = UnitOfWork {
        outbox: vec![job(&key, &run.run_id, &object, "Call again")],
        ..UnitOfWork::default()
    };
    store.apply(again).await.unwrap();
    let queued = store.outbox_for(&object).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].job.params["subject"], "Call",
        "the first queued job is kept"
    );
}

pub async fn one_active_run_per_rule_and_key_unless_parallel(store: Arc<dyn Store>) {
    let first = run("lead-gone-cold", "21", "waiting", false);
    store
        .apply(UnitOfWork {
            runs: vec![first.clone()],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();

    // A second active run for the same key fails, and nothing of its unit is kept.
    let second = run("lead-gone-cold", "21", "waiting", false);
    let object = second.object.clone();
    let unit = UnitOfWork {
        runs: vec![second.clone()],
        outbox: vec![job("k-second", &second.run_id, &object, "x")],
        ..UnitOfWork::default()
    };
    let result = store.apply(unit).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert!(
        store.outbox_for(&object).await.unwrap().is_empty(),
        "the failed unit left nothing"
    );
    assert_eq!(
        store.active_runs("lead-gone-cold", "21").await.unwrap(),
        vec![first.clone()]
    );

    // Once the first is over, a new run may start; other keys and parallel rules are free.
    let finished = RunRecord {
        status: "cancelled".into(),
        reason: Some("restarted".into()),
        ..first
    };
    store
        .apply(UnitOfWork {
            runs: vec![finished, second.clone()],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.active_runs("lead-gone-cold", "21").await.unwrap(),
        vec![second]
    );
    let parallel = vec![
        run("digest", "21", "waiting", true),
        run("digest", "21", "waiting", true),
    ];
    store
        .apply(UnitOfWork {
            runs: parallel,
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    assert_eq!(store.active_runs("digest", "21").await.unwrap().len(), 2);
}

pub async fn timers_come_due_oldest_first_and_can_be_cancelled(store: Arc<dyn Store>) {
    let run_id = RunId::new();
    let timer = |due: i64, kind: &str| TimerRecord {
        run_id: run_id.clone(),
        due_at: Timestamp(due),
        kind: kind.into(),
    };
    let unit = UnitOfWork {
        timers_scheduled: vec![
            timer(300, "wait"),
            timer(100, "wait"),
            timer(200, "wait_for_timeout"),
            timer(900, "wait"),
        ],
        ..UnitOfWork::default()
    };
    store.apply(unit).await.unwrap();
    let due: Vec<i64> = store
        .due_timers(Timestamp(300), 10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.timer.due_at.as_millis())
        .collect();
    assert_eq!(due, vec![100, 200, 300]);
    assert_eq!(
        store.due_timers(Timestamp(300), 2).await.unwrap().len(),
        2,
        "limit is honoured"
    );

    store
        .apply(UnitOfWork {
            timers_cancelled: vec![timer(200, "wait_for_timeout")],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let due: Vec<i64> = store
        .due_timers(Timestamp(1_000), 10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.timer.due_at.as_millis())
        .collect();
    assert_eq!(due, vec![100, 300, 900]);
}

pub async fn a_deferred_event_holds_back_its_object_until_due(store: Arc<dyn Store>) {
    let (a, b) = (contact("31"), contact("32"));
    let events = vec![
        property_event(&a, "d:1", 10, "lead_score", "1"),
        property_event(&b, "d:2", 20, "lead_score", "2"),
        property_event(&a, "d:3", 30, "lead_score", "3"),
    ];
    store.append_inbox(batch(events)).await.unwrap();
    let pending = store.pending_events(Timestamp(0), 10).await.unwrap();
    let first_of_a = pending[0].seq;
    store
        .apply(UnitOfWork {
            deferrals: vec![Deferral {
                seq: first_of_a,
                object: a.clone(),
                not_before: Timestamp(500),
            }],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();

    // While a's first event waits, none of a's events is taken; b's is.
    let waiting: Vec<String> = store
        .pending_events(Timestamp(499), 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.event.dedup_key.clone())
        .collect();
    assert_eq!(waiting, vec!["d:2"]);
    assert_eq!(store.pending_count().await.unwrap(), 3);

    // Once due, a's events come back in order, the deferred one counted.
    let due = store.pending_events(Timestamp(500), 10).await.unwrap();
    let keys: Vec<&str> = due.iter().map(|p| p.event.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["d:1", "d:2", "d:3"]);
    assert_eq!(due[0].deferrals, 1);
    assert_eq!(due[1].deferrals, 0);

    // Applied, it is gone from the pending events and from the deferrals.
    store
        .apply(UnitOfWork {
            applied: due.iter().map(|p| p.seq).collect(),
            applied_at: Some(Timestamp(600)),
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .pending_events(Timestamp(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

pub async fn pending_events_read_past_the_batches_in_flight(store: Arc<dyn Store>) {
    let (a, b) = (contact("35"), contact("36"));
    // a at 10, 20, ...; b at 15, 25, ...: interleaved.
    let events = (1..=5)
        .flat_map(|i| {
            [
                property_event(&a, &format!("a:{i}"), i * 10, "lead_score", "1"),
                property_event(&b, &format!("b:{i}"), i * 10 + 5, "lead_score", "1"),
            ]
        })
        .collect();
    store.append_inbox(batch(events)).await.unwrap();
    let all = store.pending_events(Timestamp(0), 20).await.unwrap();
    let read = |held: crate::HeldBack, limit: usize| {
        let store = Arc::clone(&store);
        async move {
            store
                .pending_events_in(&crate::WorkShare::All, Timestamp(0), limit, Arc::new(held))
                .await
                .unwrap()
                .iter()
                .map(|p| p.event.dedup_key.clone())
                .collect::<Vec<_>>()
        }
    };
    // The first two are in a batch in flight: still pending, but not read again, and
    // the limit counts only the events besides them.
    let in_flight = crate::HeldBack {
        seqs: all[..2].iter().map(|p| p.seq).collect(),
        objects: Vec::new(),
    };
    assert_eq!(read(in_flight, 2).await, vec!["a:2", "b:2"]);
    // A batch in flight holds b: none of b's later events is read, whatever the limit.
    let holding_b = crate::HeldBack {
        seqs: all[..2].iter().map(|p| p.seq).collect(),
        objects: vec![Arc::new([b.to_string()].into())],
    };
    assert_eq!(read(holding_b, 10).await, vec!["a:2", "a:3", "a:4", "a:5"]);
}

pub async fn due_timers_read_past_the_batches_in_flight(store: Arc<dyn Store>) {
    let waiting = run("lead-gone-cold", "36", "waiting", false);
    let timer = |due: i64| TimerRecord {
        run_id: waiting.run_id.clone(),
        due_at: Timestamp(due),
        kind: "wait".into(),
    };
    store
        .apply(UnitOfWork {
            runs: vec![waiting.clone()],
            timers_scheduled: (1..=5).map(|i| timer(i * 10)).collect(),
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    // The first two are in a batch in flight: still in the store, but not read again,
    // and the limit counts only the timers besides them.
    let in_flight: crate::TimerKeys = [10, 20]
        .map(|due| (waiting.run_id.to_string(), Timestamp(due)))
        .into_iter()
        .collect();
    let held = std::sync::Arc::new(crate::HeldTimers {
        batches: vec![std::sync::Arc::new(in_flight)],
    });
    let next = store
        .due_timers_in(&crate::WorkShare::All, Timestamp(100), 2, held)
        .await
        .unwrap();
    let due: Vec<i64> = next.iter().map(|t| t.timer.due_at.as_millis()).collect();
    assert_eq!(due, vec![30, 40]);
    assert!(
        next.iter()
            .all(|t| t.object.as_ref() == Some(&waiting.object)),
        "each comes with its run's object: {next:?}"
    );
}

pub async fn links_go_both_ways_and_a_fetched_list_replaces_them(store: Arc<dyn Store>) {
    let deal = ObjectRef::new("hubspot", "deal", "41");
    let (c1, c2, c3) = (contact("41"), contact("42"), contact("43"));
    let link = |to: &ObjectRef, removed| AssociationWrite {
        from: deal.clone(),
        to: to.clone(),
        removed,
        at: Timestamp(10),
    };
    store
        .apply(UnitOfWork {
            associations: vec![link(&c1, false), link(&c2, false)],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let view = store
        .load_objects(&[deal.clone(), c1.clone()])
        .await
        .unwrap();
    let mut links = view.links.clone();
    links.sort();
    assert_eq!(
        links,
        vec![
            (c1.clone(), deal.clone()),
            (deal.clone(), c1.clone()),
            (deal.clone(), c2.clone())
        ]
    );
    assert!(view.syncs.is_empty());

    store
        .apply(UnitOfWork {
            associations: vec![link(&c2, true)],
            association_syncs: vec![AssociationSync {
                object: deal.clone(),
                to_type: "contact".into(),
                linked: vec![c3.clone()],
                at: Timestamp(20),
            }],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    let view = store
        .load_objects(&[deal.clone(), c3.clone()])
        .await
        .unwrap();
    let mut links = view.links.clone();
    links.sort();
    assert_eq!(
        links,
        vec![(c3.clone(), deal.clone()), (deal.clone(), c3.clone())],
        "the fetched list replaced the deal's contacts"
    );
    assert_eq!(
        view.syncs,
        vec![(deal.clone(), "contact".to_owned(), Timestamp(20))]
    );
}

pub async fn a_batch_loads_its_objects_active_runs_oldest_first(store: Arc<dyn Store>) {
    let at = |created: i64, rule: &str, key: &str| RunRecord {
        created_at: Timestamp(created),
        ..run(rule, key, "waiting", false)
    };
    // Written newest first, on two objects, with a tie on creation broken by run id.
    let runs = vec![
        at(30, "lead-gone-cold", "61"),
        at(20, "new-sql-gets-a-call", "62"),
        at(10, "negotiation-needs-next-step", "61"),
        at(20, "stalled-deal", "61"),
        RunRecord {
            status: "completed".into(),
            ..at(5, "won-deal-thanks", "61")
        },
    ];
    store
        .apply(UnitOfWork {
            runs: runs.clone(),
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    // One object named twice: its runs come once.
    let view = store
        .load_objects(&[contact("62"), contact("61"), contact("62")])
        .await
        .unwrap();
    let mut expected: Vec<RunRecord> = runs.into_iter().filter(|r| r.status == "waiting").collect();
    expected
        .sort_by(|a, b| (a.created_at, a.run_id.as_str()).cmp(&(b.created_at, b.run_id.as_str())));
    assert_eq!(view.runs, expected);
}

pub async fn owners_runs_and_timers_read_back(store: Arc<dyn Store>) {
    let owner = CachedOwner {
        id: "7".into(),
        email: "sam@example.com".into(),
        name: "Sam".into(),
        teams: vec!["farmers".into()],
        fetched_at: Timestamp(5),
    };
    let waiting = run("lead-gone-cold", "51", "waiting", false);
    let done = RunRecord {
        status: "completed".into(),
        ..run("new-sql-gets-a-call", "51", "completed", false)
    };
    let timer = TimerRecord {
        run_id: waiting.run_id.clone(),
        due_at: Timestamp(700),
        kind: "wait".into(),
    };
    store
        .apply(UnitOfWork {
            owners: vec![owner.clone()],
            runs: vec![waiting.clone(), done.clone()],
            timers_scheduled: vec![timer.clone()],
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.owners(&["7".into(), "8".into()]).await.unwrap(),
        vec![owner]
    );
    let object = waiting.object.clone();
    let view = store
        .load_objects(std::slice::from_ref(&object))
        .await
        .unwrap();
    assert_eq!(view.runs, vec![waiting.clone()], "only active runs");
    assert_eq!(store.runs_for(&object).await.unwrap().len(), 2);
    assert_eq!(
        store
            .runs(&[done.run_id.clone(), RunId::new()])
            .await
            .unwrap(),
        vec![done]
    );
    assert_eq!(
        store.active_runs_of_rule("lead-gone-cold").await.unwrap(),
        vec![waiting]
    );
    assert_eq!(
        store.timers_for(&object).await.unwrap(),
        vec![timer.clone()]
    );
    let due = store.due_timers(Timestamp(700), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (&due[0].timer, due[0].object.as_ref()),
        (&timer, Some(&object)),
        "with its run's object"
    );
    assert_eq!(store.next_timer_at().await.unwrap(), Some(Timestamp(700)));
}
