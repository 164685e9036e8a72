//! 2,000 actions against a HubSpot that answers 30% of calls 429 (Retry-After 1-3 s),
//! 5% 503 and 5% "applied, then no answer": each task is created exactly once, no retry
//! comes before its Retry-After, the fake never sees more than the configured rate; and
//! the same with the server SIGKILLed mid-run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use followthrough_connectors::limit::Limit;
use followthrough_core::{Clock, SystemClock};
use followthrough_fakes::Failure;
use followthrough_fakes::FakeHubSpot;
use followthrough_fakes::hubspot::Chaos;
use followthrough_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    KEY_PROPERTY, contact_of, done, fake_hubspot, hubspot_outbox, hubspot_outbox_with, key, now,
    queue_tasks, statuses,
};
use crate::backend::TestDb;
use crate::crash::{free_port, short_outbox_lease, start_server_with, wait_ready};

const ACTIONS: usize = 2_000;
/// Requests per second the workers may send; the fake checks it was never exceeded.
const RATE: u32 = 1_000;

fn chaos() -> Chaos {
    Chaos {
        rate_limited: 0.30,
        retry_after_secs: 1..=3,
        unavailable: 0.05,
        applied_then_timeout: 0.05,
        // Longer than the connector's 1 s timeout: the client gives up first.
        timeout: Duration::from_secs(3),
        ..Chaos::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_every_action_happens_once_no_retry_comes_early_and_the_rate_holds() {
    let hubspot = fake_hubspot().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("chaos.db"));
    let store = db.open(true).await;
    queue_tasks(store.as_ref(), ACTIONS, now()).await;
    hubspot.set_chaos(chaos());

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let limit = Limit::new(RATE, Duration::from_secs(1));
    let outbox = hubspot_outbox(&hubspot, store.clone(), clock, limit);
    let stop = CancellationToken::new();
    let workers = tokio::spawn(outbox.run(Arc::new(Notify::new()), stop.clone()));
    wait_until_all_done(&db, Duration::from_secs(180)).await;
    stop.cancel();
    workers.await.unwrap();

    assert_each_task_created_once(&hubspot);
    assert_rate_never_exceeded(&hubspot, RATE, Duration::from_secs(1));
    assert_no_retry_before_retry_after(&hubspot, store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_chaos_loses_no_action_and_duplicates_none() {
    let hubspot = fake_hubspot().await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("killed.db"));
    {
        let store = db.open(true).await;
        queue_tasks(store.as_ref(), ACTIONS, now()).await;
        store.close().await.unwrap();
    }
    hubspot.set_chaos(chaos());
    let env: Vec<(&str, String)> = [
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__BASE_URL",
            hubspot.base_url(),
        ),
        ("FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TOKEN", hubspot.token()),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__IDEMPOTENCY_PROPERTY",
            KEY_PROPERTY.into(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__IDEMPOTENCY_UPSERT",
            "true".into(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__CONCURRENCY",
            "32".into(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__RATE_LIMIT",
            RATE.to_string(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__RATE_LIMIT_WINDOW_MS",
            "1000".into(),
        ),
        ("FOLLOWTHROUGH__OUTBOX__RETRY_BASE_MS", "200".into()),
        // Up to 40% of calls fail: without a low cap, the unluckiest jobs back off for
        // minutes, which is right in production and too slow for a test.
        ("FOLLOWTHROUGH__OUTBOX__RETRY_CAP_MS", "3000".into()),
        ("FOLLOWTHROUGH__OUTBOX__MAX_ATTEMPTS", "50".into()),
        ("FOLLOWTHROUGH__OUTBOX__CIRCUIT_OPEN_MS", "1000".into()),
        ("FOLLOWTHROUGH__OUTBOX__POLL_MS", "50".into()),
    ]
    .into_iter()
    .chain(short_outbox_lease())
    .collect();
    let client = reqwest::Client::new();
    // Killed twice while calls are in flight, then left to finish.
    for run_for in [Duration::from_millis(1_500), Duration::from_millis(2_500)] {
        let port = free_port();
        let mut server = start_server_with(&db, port, &env);
        wait_ready(&client, port).await;
        tokio::time::sleep(run_for).await;
        server.kill().unwrap();
        server.wait().unwrap();
    }
    let done_before = done(&statuses(&db));
    assert!(
        done_before < ACTIONS as i64,
        "the kills came too late to test anything ({done_before} done)"
    );
    let port = free_port();
    let mut server = start_server_with(&db, port, &env);
    wait_ready(&client, port).await;
    wait_until_all_done(&db, Duration::from_secs(180)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    // (The rate is not checked across the kills: the limiter lives in the process, so
    // a new one does not know what the killed one sent in the last window. HubSpot's
    // 429 covers that moment, and the outbox honours it.)
    assert_each_task_created_once(&hubspot);
}

async fn wait_until_all_done(db: &TestDb, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = statuses(db);
        if done(&status) == ACTIONS as i64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every action was done in time: {status:?}; pending: {:?}",
            pending_jobs(db)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (key, attempts, next_at, lease_until, indeterminate) of the jobs still pending.
fn pending_jobs(db: &TestDb) -> Vec<(String, i64, i64, Option<i64>, bool)> {
    db.rows("SELECT idempotency_key, attempts, next_at, lease_until, indeterminate FROM outbox WHERE status = 'pending' LIMIT 5")
}

fn assert_each_task_created_once(hubspot: &FakeHubSpot) {
    let tasks = hubspot.tasks();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for task in &tasks {
        *by_key
            .entry(
                task.properties
                    .get(KEY_PROPERTY)
                    .cloned()
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    for i in 0..ACTIONS {
        assert_eq!(
            by_key.get(&key(i)),
            Some(&1),
            "task of {} created once",
            key(i)
        );
    }
    assert_eq!(tasks.len(), ACTIONS, "no task without a key");
}

/// Slides a window over the fake's arrival times: never more than `max` in any `per`.
fn assert_rate_never_exceeded(hubspot: &FakeHubSpot, max: u32, per: Duration) {
    let mut arrivals: Vec<Instant> = hubspot.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    let mut first = 0;
    let mut most = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= per {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    assert!(
        most <= max as usize,
        "{most} requests within {per:?}, more than the configured {max}"
    );
}

/// Every attempt that was told to wait (a 429's Retry-After) was followed by the next
/// attempt of the same action no sooner: the upsert that carries the key arrives at the
/// fake at least that long after the one before it.
async fn assert_no_retry_before_retry_after(hubspot: &FakeHubSpot, store: &dyn Store) {
    let mut upserts: HashMap<String, Vec<Instant>> = HashMap::new();
    for request in hubspot.requests() {
        if !request.path.ends_with("/batch/upsert") {
            continue;
        }
        let Some(key) = request
            .body
            .as_ref()
            .and_then(|b| b["inputs"][0]["id"].as_str().map(str::to_owned))
        else {
            continue;
        };
        upserts.entry(key).or_default().push(request.at);
    }
    let mut checked = 0;
    for object in 0..100 {
        let journal = store.journal_for(&contact_of(object)).await.unwrap();
        let mut attempts: HashMap<String, Vec<Option<u64>>> = HashMap::new();
        for entry in journal.iter().filter(|e| e.kind.as_str() == "attempt") {
            let key = entry.detail["key"].as_str().unwrap().to_owned();
            attempts
                .entry(key)
                .or_default()
                .push(entry.detail["retry_after_ms"].as_u64());
        }
        for (key, waits) in attempts {
            let mut sent = upserts.remove(&key).unwrap_or_default();
            sent.sort();
            assert_eq!(sent.len(), waits.len(), "one upsert per attempt of {key}");
            for (k, wait) in waits.iter().enumerate().take(waits.len() - 1) {
                if let Some(wait_ms) = wait {
                    let gap = sent[k + 1].duration_since(sent[k]);
                    assert!(
                        gap + Duration::from_millis(5) >= Duration::from_millis(*wait_ms),
                        "{key}: attempt {} came {gap:?} after one told to wait {wait_ms} ms",
                        k + 2
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} Retry-After waits were seen");
}

/// The create's answer is lost, then the search that should tell whether it happened is
/// itself refused (429): the attempt after that must still search, not create again.
/// The key property here is not unique at HubSpot, so nothing else would stop a second
/// task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unknown_outcome_every_attempt_checks_first_even_if_a_check_was_refused() {
    let hubspot = FakeHubSpot::start().await;
    hubspot.set_object("contact", "0", std::collections::BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("check-first.db"));
    let store = db.open(true).await;
    queue_tasks(store.as_ref(), 1, now()).await;
    hubspot.fail_next_with(1, Failure::applied_then_timeout(Duration::from_secs(2)));
    hubspot.fail_next_with(1, Failure::status(429).retry_after("1"));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let limit = Limit::new(100, Duration::from_secs(1));
    let outbox = hubspot_outbox_with(&hubspot, store.clone(), clock, limit, false);
    let stop = CancellationToken::new();
    let workers = tokio::spawn(outbox.run(Arc::new(Notify::new()), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while done(&statuses(&db)) < 1 {
        assert!(Instant::now() < deadline, "not done: {:?}", statuses(&db));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    workers.await.unwrap();

    let creates = hubspot
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/crm/v3/objects/tasks")
        .count();
    assert_eq!(creates, 1, "created once, found by the search after that");
    assert_eq!(
        hubspot.count_with_property("task", KEY_PROPERTY, &key(0)),
        1
    );
    let searches = hubspot.request_count("/crm/v3/objects/tasks/search");
    assert!(
        searches >= 2,
        "the refused search was tried again ({searches})"
    );
}
