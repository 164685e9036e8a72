//! Conformance checks of the outbox workers' side of the store: claims under a lease,
//! recorded outcomes, dead letters and their replay, and durable rotations.

use std::collections::BTreeSet;
use std::sync::Arc;

use followthrough_core::{ObjectRef, RunId, Timestamp};
use serde_json::json;

use super::contact;
use crate::{
    AttemptRecord, AttemptResult, ClaimedJob, DeadLetterReason, JobStatus, JournalEntry,
    JournalKind, OutboxJob, Store, TimerRecord, UnitOfWork,
};

/// A job of `connector` about `object`, due at `next_at`.
fn job(connector: &str, object: &ObjectRef, next_at: i64) -> OutboxJob {
    let run_id = RunId::new();
    OutboxJob {
        idempotency_key: format!("{run_id}:steps[0]"),
        run_id,
        rule_id: "lead-gone-cold".into(),
        action: if connector == "slack" {
            "slack_dm"
        } else {
            "create_task"
        }
        .into(),
        connector: connector.into(),
        object: object.clone(),
        params: json!({ "subject": "Call" }),
        created_at: Timestamp(1),
        next_at: Timestamp(next_at),
    }
}

async fn queue(store: &dyn Store, jobs: Vec<OutboxJob>) {
    store
        .apply(UnitOfWork {
            outbox: jobs,
            ..UnitOfWork::default()
        })
        .await
        .unwrap();
}

async fn claim(store: &dyn Store, connector: &str, now: i64, until: i64) -> Vec<ClaimedJob> {
    store
        .claim_jobs(connector, Timestamp(now), Timestamp(until), 100)
        .await
        .unwrap()
}

/// Claims exactly one job of `connector`.
async fn claim_one(store: &dyn Store, connector: &str, now: i64, until: i64) -> ClaimedJob {
    let mut claimed = claim(store, connector, now, until).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    claimed.remove(0)
}

fn attempt_journal(object: &ObjectRef, at: i64, summary: &str) -> JournalEntry {
    JournalEntry {
        at: Timestamp(at),
        object: Some(object.clone()),
        kind: JournalKind::Attempt,
        summary: summary.into(),
        detail: json!({ "attempt": summary }),
    }
}

async fn record(
    store: &dyn Store,
    claimed: &ClaimedJob,
    at: i64,
    result: AttemptResult,
    journal: Vec<JournalEntry>,
) -> bool {
    store
        .record_attempt(AttemptRecord {
            seq: claimed.seq,
            lease: claimed.lease.clone(),
            at: Timestamp(at),
            result,
            journal,
            timers: vec![],
        })
        .await
        .unwrap()
}

fn dead(kind: &str) -> AttemptResult {
    AttemptResult::Dead(DeadLetterReason {
        kind: kind.into(),
        message: "Property values were not valid".into(),
        last_status: Some(400),
        last_response: Some(r#"{"status":"error","category":"VALIDATION_ERROR"}"#.into()),
    })
}

fn retry(next_at: i64, indeterminate: bool) -> AttemptResult {
    AttemptResult::Retry {
        next_at: Timestamp(next_at),
        indeterminate,
    }
}

pub async fn a_claim_leases_a_job_until_the_lease_expires(store: Arc<dyn Store>) {
    let object = contact("60");
    let queued = job("hubspot", &object, 5);
    queue(store.as_ref(), vec![queued.clone()]).await;
    let entries = store.outbox_for(&object).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].job, queued, "the job reads back as queued");
    assert_eq!(
        (entries[0].status, entries[0].attempts, &entries[0].result),
        (JobStatus::Pending, 0, &None)
    );

    let first = claim_one(store.as_ref(), "hubspot", 10, 100).await;
    assert_eq!(first.job, queued);
    assert_eq!(first.seq, entries[0].seq);
    assert_eq!((first.attempt, first.lease_until), (1, Timestamp(100)));
    assert!(
        !first.after_indeterminate,
        "a first attempt has nothing to check"
    );
    assert!(!first.lease.is_empty());

    assert!(
        claim(store.as_ref(), "hubspot", 99, 200).await.is_empty(),
        "leased: nobody else may claim it before the lease expires"
    );
    let entries = store.outbox_for(&object).await.unwrap();
    assert_eq!(
        (entries[0].status, entries[0].attempts),
        (JobStatus::Pending, 1)
    );

    // Its worker never recorded an outcome: the next claim counts a second attempt and
    // must assume the first may have acted.
    let second = claim_one(store.as_ref(), "hubspot", 100, 200).await;
    assert_eq!(second.attempt, 2);
    assert!(second.after_indeterminate);
    assert_ne!(second.lease, first.lease, "each claim gets its own lease");
    assert_eq!(store.outbox_for(&object).await.unwrap()[0].attempts, 2);
}

pub async fn an_outcome_under_a_stale_lease_is_not_recorded(store: Arc<dyn Store>) {
    let object = contact("61");
    queue(store.as_ref(), vec![job("hubspot", &object, 5)]).await;
    let stale = claim_one(store.as_ref(), "hubspot", 10, 20).await;
    let current = claim_one(store.as_ref(), "hubspot", 20, 40).await;

    let late = AttemptResult::Done {
        result: json!({ "task_id": "stale" }),
    };
    let journal = vec![attempt_journal(&object, 25, "stale worker succeeded")];
    assert!(
        !record(store.as_ref(), &stale, 25, late, journal).await,
        "another worker holds the job now"
    );
    let entries = store.outbox_for(&object).await.unwrap();
    assert_eq!(
        (entries[0].status, &entries[0].result),
        (JobStatus::Pending, &None)
    );
    assert!(
        store.journal_for(&object).await.unwrap().is_empty(),
        "nothing of the refused record was written"
    );

    let done = AttemptResult::Done {
        result: json!({ "task_id": "9001" }),
    };
    let journal = vec![
        attempt_journal(&object, 30, "attempt 2 succeeded"),
        attempt_journal(&object, 30, "action done"),
    ];
    assert!(record(store.as_ref(), &current, 30, done, journal.clone()).await);
    let entries = store.outbox_for(&object).await.unwrap();
    assert_eq!(entries[0].status, JobStatus::Done);
    assert_eq!(entries[0].result, Some(json!({ "task_id": "9001" })));
    assert_eq!(
        store.journal_for(&object).await.unwrap(),
        journal,
        "the attempt's journal rows are the object's, in order"
    );
    assert!(
        !record(store.as_ref(), &current, 31, retry(40, false), vec![]).await,
        "an outcome is recorded once per claim"
    );
    assert_eq!(
        store.outbox_for(&object).await.unwrap()[0].status,
        JobStatus::Done
    );
}

pub async fn a_retry_hides_the_job_until_its_next_at(store: Arc<dyn Store>) {
    let object = contact("62");
    queue(store.as_ref(), vec![job("hubspot", &object, 5)]).await;
    let claimed = claim_one(store.as_ref(), "hubspot", 10, 20).await;
    // Recorded after its lease expired, but nobody claimed the job since: it counts.
    assert!(record(store.as_ref(), &claimed, 30, retry(200, false), vec![]).await);

    assert!(claim(store.as_ref(), "hubspot", 199, 300).await.is_empty());
    assert_eq!(
        store.next_job_at("hubspot").await.unwrap(),
        Some(Timestamp(200))
    );
    let again = claim_one(store.as_ref(), "hubspot", 200, 300).await;
    assert_eq!(again.attempt, 2);
    assert!(
        !again.after_indeterminate,
        "the first attempt was known not to act"
    );
    assert_eq!(again.job.next_at, Timestamp(200));
}

pub async fn done_and_dead_jobs_are_never_claimed_again(store: Arc<dyn Store>) {
    let object = contact("63");
    queue(
        store.as_ref(),
        vec![job("hubspot", &object, 5), job("hubspot", &object, 6)],
    )
    .await;
    let claimed = claim(store.as_ref(), "hubspot", 10, 20).await;
    assert_eq!(claimed.len(), 2);
    let done = AttemptResult::Done { result: json!({}) };
    assert!(record(store.as_ref(), &claimed[0], 11, done, vec![]).await);
    assert!(record(store.as_ref(), &claimed[1], 11, dead("terminal"), vec![]).await);

    assert!(
        claim(store.as_ref(), "hubspot", 1_000_000, 2_000_000)
            .await
            .is_empty()
    );
    assert_eq!(store.next_job_at("hubspot").await.unwrap(), None);
    let states: Vec<(JobStatus, u32)> = store
        .outbox_for(&object)
        .await
        .unwrap()
        .iter()
        .map(|entry| (entry.status, entry.attempts))
        .collect();
    assert_eq!(states, vec![(JobStatus::Done, 1), (JobStatus::Dead, 1)]);
}

pub async fn timers_come_due_with_an_outcome_only_under_the_lease(store: Arc<dyn Store>) {
    let object = contact("68");
    queue(store.as_ref(), vec![job("http", &object, 5)]).await;
    let stale = claim_one(store.as_ref(), "http", 10, 20).await;
    let current = claim_one(store.as_ref(), "http", 20, 40).await;
    let wake = |due_at: i64, kind: &str| TimerRecord {
        run_id: current.job.run_id.clone(),
        due_at: Timestamp(due_at),
        kind: kind.into(),
    };
    let with_timer = |claimed: &ClaimedJob, at: i64, timer: TimerRecord| AttemptRecord {
        seq: claimed.seq,
        lease: claimed.lease.clone(),
        at: Timestamp(at),
        result: AttemptResult::Done {
            result: json!({ "value": 1 }),
        },
        journal: vec![],
        timers: vec![timer],
    };
    let refused = with_timer(&stale, 25, wake(25, "stale"));
    assert!(!store.record_attempt(refused).await.unwrap());
    assert!(
        store
            .due_timers(Timestamp(1_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "a refused outcome schedules nothing"
    );
    let recorded = with_timer(&current, 30, wake(30, "lookup"));
    assert!(store.record_attempt(recorded).await.unwrap());
    let due: Vec<TimerRecord> = store
        .due_timers(Timestamp(1_000), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|due| due.timer)
        .collect();
    assert_eq!(due, vec![wake(30, "lookup")]);
}

pub async fn a_job_found_by_key_says_why_it_died(store: Arc<dyn Store>) {
    let object = contact("69");
    let queued = job("http", &object, 5);
    queue(store.as_ref(), vec![queued.clone()]).await;
    let found = store.job_by_key(&queued.idempotency_key).await.unwrap();
    let found = found.expect("the job is found by its key");
    assert_eq!(
        (&found.entry.job, found.entry.status, &found.dead),
        (&queued, JobStatus::Pending, &None)
    );
    assert_eq!(
        store.job_by_key("run_unknown:steps[0]").await.unwrap(),
        None
    );

    let claimed = claim_one(store.as_ref(), "http", 10, 20).await;
    assert!(record(store.as_ref(), &claimed, 11, dead("terminal"), vec![]).await);
    let found = store.job_by_key(&queued.idempotency_key).await.unwrap();
    let found = found.unwrap();
    assert_eq!(found.entry.status, JobStatus::Dead);
    let AttemptResult::Dead(reason) = dead("terminal") else {
        unreachable!()
    };
    assert_eq!(found.dead, Some(reason));

    let letter = store.dead_letters(false).await.unwrap();
    let ids: Vec<i64> = letter
        .iter()
        .filter(|l| l.job.idempotency_key == queued.idempotency_key)
        .map(|l| l.id)
        .collect();
    store
        .replay_dead_letters(&ids, Timestamp(50), vec![])
        .await
        .unwrap();
    let found = store.job_by_key(&queued.idempotency_key).await.unwrap();
    let found = found.unwrap();
    assert_eq!(
        (found.entry.status, &found.dead),
        (JobStatus::Pending, &None),
        "a replayed job is not dead, whatever its old letters say"
    );
}

pub async fn a_dead_letter_is_replayed_once(store: Arc<dyn Store>) {
    let object = contact("64");
    let queued = job("hubspot", &object, 5);
    queue(store.as_ref(), vec![queued.clone()]).await;
    let claimed = claim_one(store.as_ref(), "hubspot", 10, 20).await;
    let journal = vec![attempt_journal(&object, 12, "dead: terminal")];
    assert!(record(store.as_ref(), &claimed, 12, dead("terminal"), journal).await);

    let letters = store.dead_letters(false).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.seq, &letter.job), (claimed.seq, &queued));
    let AttemptResult::Dead(reason) = dead("terminal") else {
        unreachable!()
    };
    assert_eq!(letter.reason, reason);
    assert_eq!(
        (letter.attempts, letter.dead_at, letter.replayed_at),
        (1, Timestamp(12), None)
    );
    assert_eq!(
        store.dead_letter(letter.id).await.unwrap().as_ref(),
        Some(letter)
    );
    assert_eq!(store.dead_letter(letter.id + 1000).await.unwrap(), None);

    let id = letter.id;
    let journal = vec![attempt_journal(&object, 500, "replayed")];
    let replayed = store
        .replay_dead_letters(&[id, id + 1000], Timestamp(500), journal)
        .await
        .unwrap();
    assert_eq!(replayed, vec![id], "unknown ids are skipped");
    assert!(store.dead_letters(false).await.unwrap().is_empty());
    let kept = store.dead_letters(true).await.unwrap();
    assert_eq!(kept.len(), 1, "a replayed letter is kept");
    assert_eq!(kept[0].replayed_at, Some(Timestamp(500)));
    let entries = store.outbox_for(&object).await.unwrap();
    assert_eq!(
        (entries[0].status, entries[0].attempts),
        (JobStatus::Pending, 0)
    );
    let summaries: Vec<String> = store
        .journal_for(&object)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.summary)
        .collect();
    assert_eq!(summaries, vec!["dead: terminal", "replayed"]);

    assert!(claim(store.as_ref(), "hubspot", 499, 600).await.is_empty());
    let again = claim_one(store.as_ref(), "hubspot", 500, 10_000).await;
    assert_eq!((again.attempt, again.after_indeterminate), (1, false));
    assert_eq!(
        store
            .replay_dead_letters(&[id], Timestamp(700), vec![])
            .await
            .unwrap(),
        Vec::<i64>::new(),
        "a letter is replayed once"
    );
    assert!(
        claim(store.as_ref(), "hubspot", 700, 800).await.is_empty(),
        "the second replay did not put the job back again"
    );
}

pub async fn an_unrecorded_attempt_makes_later_ones_check_first(store: Arc<dyn Store>) {
    let object = contact("65");
    queue(store.as_ref(), vec![job("hubspot", &object, 5)]).await;
    let _lost = claim_one(store.as_ref(), "hubspot", 10, 20).await;
    let taken_over = claim_one(store.as_ref(), "hubspot", 20, 30).await;
    assert!(taken_over.after_indeterminate);
    assert!(record(store.as_ref(), &taken_over, 21, dead("terminal"), vec![]).await);

    // The doubt was kept with the job: its replay checks first too.
    let id = store.dead_letters(false).await.unwrap()[0].id;
    store
        .replay_dead_letters(&[id], Timestamp(100), vec![])
        .await
        .unwrap();
    let replayed = claim_one(store.as_ref(), "hubspot", 100, 110).await;
    assert_eq!((replayed.attempt, replayed.after_indeterminate), (1, true));

    // A retry whose attempt is known not to have acted clears it; one that may have
    // acted sets it.
    assert!(record(store.as_ref(), &replayed, 101, retry(200, false), vec![]).await);
    let clean = claim_one(store.as_ref(), "hubspot", 200, 210).await;
    assert!(!clean.after_indeterminate);
    assert!(record(store.as_ref(), &clean, 201, retry(300, true), vec![]).await);
    let doubtful = claim_one(store.as_ref(), "hubspot", 300, 310).await;
    assert!(doubtful.after_indeterminate);
    let done = AttemptResult::Done { result: json!({}) };
    assert!(record(store.as_ref(), &doubtful, 301, done, vec![]).await);

    // A job parked because nobody can tell if it acted is replayed to check first.
    let other = contact("66");
    queue(store.as_ref(), vec![job("hubspot", &other, 400)]).await;
    let parked = claim_one(store.as_ref(), "hubspot", 400, 410).await;
    assert!(!parked.after_indeterminate);
    assert!(record(store.as_ref(), &parked, 401, dead("indeterminate"), vec![]).await);
    let id = store.dead_letters(false).await.unwrap()[0].id;
    store
        .replay_dead_letters(&[id], Timestamp(500), vec![])
        .await
        .unwrap();
    let replayed = claim_one(store.as_ref(), "hubspot", 500, 510).await;
    assert_eq!(replayed.seq, parked.seq);
    assert!(replayed.after_indeterminate);
}

pub async fn claims_take_only_their_connectors_jobs_oldest_first(store: Arc<dyn Store>) {
    let object = contact("67");
    let jobs = vec![
        job("hubspot", &object, 30),
        job("slack", &object, 10),
        job("hubspot", &object, 20),
        job("hubspot", &object, 20),
        job("hubspot", &object, 500),
    ];
    queue(store.as_ref(), jobs.clone()).await;
    let keys = |claimed: &[ClaimedJob]| -> Vec<String> {
        claimed
            .iter()
            .map(|c| c.job.idempotency_key.clone())
            .collect()
    };

    let first = store
        .claim_jobs("hubspot", Timestamp(100), Timestamp(200), 2)
        .await
        .unwrap();
    assert_eq!(
        keys(&first),
        vec![
            jobs[2].idempotency_key.clone(),
            jobs[3].idempotency_key.clone()
        ],
        "oldest next_at first, then queue order; the limit holds"
    );
    let rest = claim(store.as_ref(), "hubspot", 100, 200).await;
    assert_eq!(
        keys(&rest),
        vec![jobs[0].idempotency_key.clone()],
        "not the one due later"
    );
    let slack = claim(store.as_ref(), "slack", 100, 200).await;
    assert_eq!(keys(&slack), vec![jobs[1].idempotency_key.clone()]);
    assert!(
        claim(store.as_ref(), "pipedrive", 100, 200)
            .await
            .is_empty()
    );
}

pub async fn concurrent_claims_never_share_a_job(store: Arc<dyn Store>) {
    let object = contact("68");
    let jobs: Vec<OutboxJob> = (0..40).map(|i| job("hubspot", &object, i)).collect();
    queue(store.as_ref(), jobs).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .claim_jobs("hubspot", Timestamp(100), Timestamp(200), 7)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap().into_iter().map(|c| c.seq));
    }
    let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        seqs.len(),
        "a job was claimed twice: {seqs:?}"
    );
    assert_eq!(seqs.len(), 40, "8 claims of 7 take all 40 jobs");
}

pub async fn next_job_at_is_the_soonest_due_job_or_expiring_lease(store: Arc<dyn Store>) {
    let object = contact("69");
    assert_eq!(store.next_job_at("hubspot").await.unwrap(), None);
    queue(
        store.as_ref(),
        vec![
            job("hubspot", &object, 300),
            job("hubspot", &object, 100),
            job("slack", &object, 50),
        ],
    )
    .await;
    let next = |connector: &'static str| {
        let store = Arc::clone(&store);
        async move { store.next_job_at(connector).await.unwrap() }
    };
    assert_eq!(next("hubspot").await, Some(Timestamp(100)));
    assert_eq!(next("slack").await, Some(Timestamp(50)));

    let early = claim_one(store.as_ref(), "hubspot", 100, 400).await;
    assert_eq!(
        next("hubspot").await,
        Some(Timestamp(300)),
        "a leased job counts from its lease's expiry"
    );
    let late = claim_one(store.as_ref(), "hubspot", 300, 350).await;
    assert_eq!(next("hubspot").await, Some(Timestamp(350)));
    let done = AttemptResult::Done { result: json!({}) };
    assert!(record(store.as_ref(), &late, 310, done, vec![]).await);
    assert_eq!(next("hubspot").await, Some(Timestamp(400)));
    assert!(record(store.as_ref(), &early, 320, retry(900, false), vec![]).await);
    assert_eq!(next("hubspot").await, Some(Timestamp(900)));
}

pub async fn rotation_wraps_and_survives_reopening(
    store: Arc<dyn Store>,
    reopen: impl Fn() -> Arc<dyn Store>,
) {
    let mut turns = Vec::new();
    for job in ["a", "b", "c", "d"] {
        turns.push(
            store
                .next_in_rotation("owners:farmers", 3, job)
                .await
                .unwrap(),
        );
    }
    assert_eq!(turns, vec![0, 1, 2, 0]);
    assert_eq!(
        store
            .next_in_rotation("owners:farmers", 3, "b")
            .await
            .unwrap(),
        1,
        "a job asking again (a retry) keeps its turn"
    );
    assert_eq!(
        store
            .next_in_rotation("owners:hunters", 3, "job-2")
            .await
            .unwrap(),
        0,
        "each rotation keeps its own place"
    );
    store.close().await.unwrap();
    drop(store);

    let store = reopen();
    assert_eq!(
        store
            .next_in_rotation("owners:farmers", 3, "job-3")
            .await
            .unwrap(),
        1,
        "a restart goes on where the rotation was"
    );
    assert_eq!(
        store
            .next_in_rotation("owners:hunters", 3, "job-4")
            .await
            .unwrap(),
        1
    );
    store.close().await.unwrap();
}
