//! The `outbox` scenario, in process: queue `count` `create_task` jobs in a SQLite store,
//! then let the real outbox workers ([`Outbox::run`], the loop `serve` runs: claim,
//! call, record, lanes kept full) perform them through the real HubSpot connector
//! against a local fake HubSpot that answers at once.
//!
//! The fake runs on the bench's own tokio runtime, so the process CPU time per action
//! includes the fake server's share (its HTTP parsing, validation and bookkeeping); the
//! per-thread split in the report shows what the SQLite writer took apart from the
//! tokio workers (connector, workers and fake together).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use followthrough::config::connectors::Pace;
use followthrough::outbox::{Lane, Outbox, OutboxParts, Teams};
use followthrough_connectors::RetryPolicy;
use followthrough_connectors::circuit::Circuit;
use followthrough_connectors::hubspot::{HubSpotConnector, HubSpotConnectorConfig};
use followthrough_connectors::limit::{Limit, RateLimiter};
use followthrough_core::{Clock as _, ObjectRef, RunId, SystemClock};
use followthrough_fakes::FakeHubSpot;
use followthrough_store::{OutboxJob, Store, UnitOfWork};
use followthrough_store_sqlite::SqliteStore;
use serde_json::json;

use crate::proc::{self, ThreadCpu};

pub struct Options {
    pub count: u64,
    pub concurrency: usize,
    pub claim_batch: usize,
    pub chunk: usize,
}

pub struct Report {
    options: Options,
    contacts: u64,
    queue: Duration,
    wall: Duration,
    performed: usize,
    cpu: Duration,
    threads: Vec<ThreadCpu>,
    rss_before_kib: u64,
    peak_rss_kib: u64,
    peak_reset: bool,
    db_bytes: u64,
    checks: Checks,
}

#[derive(Debug)]
struct Checks {
    fake_tasks: usize,
    task_requests: usize,
    done: i64,
    not_done: i64,
    distinct_task_ids: i64,
    max_attempts: i64,
}

pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.count > 0, "--count must be at least 1");
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("outbox.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path, true)?);
    let clock = Arc::new(SystemClock);

    // The fake validates associations: every task's contact must exist.
    let hubspot = FakeHubSpot::start().await;
    let contacts = (options.count / 100).max(1);
    for id in 1..=contacts {
        let email = format!("lead{id}@example.com");
        hubspot.set_object(
            "contact",
            &id.to_string(),
            BTreeMap::from([("email".to_owned(), email)]),
        );
    }

    let queueing = Instant::now();
    let now = clock.now();
    let mut next = 0u64;
    while next < options.count {
        let end = (next + options.chunk as u64).min(options.count);
        let outbox = (next..end).map(|i| job(i, contacts, now)).collect();
        store
            .apply(UnitOfWork {
                outbox,
                ..UnitOfWork::default()
            })
            .await?;
        next = end;
    }
    let queue = queueing.elapsed();

    let connector = HubSpotConnector::new(
        HubSpotConnectorConfig {
            base_url: hubspot.base_url(),
            token: hubspot.token().into(),
            timeout: Duration::from_secs(10),
            idempotency_property: None,
            idempotency_upsert: false,
            search_settle: Duration::from_secs(10),
        },
        clock.clone(),
    )?;
    let pace = Pace {
        concurrency: options.concurrency,
        // High enough never to bind: this measures the workers, not the limiter.
        limit: Limit::new(1_000_000, Duration::from_secs(1)),
        timeout: Duration::from_secs(10),
    };
    let outbox = Outbox::new(OutboxParts {
        store: Arc::clone(&store),
        clock,
        lanes: vec![Lane::new(
            Arc::new(connector),
            pace,
            Circuit::new(5, Duration::from_secs(30)),
        )],
        policy: RetryPolicy::default(),
        limiter: RateLimiter::default(),
        teams: Teams::default(),
        redactor: followthrough::journal::Redactor::new([], true),
        lease: Duration::from_secs(60),
        claim_batch: options.claim_batch,
        poll: Duration::from_millis(500),
        engine_wake: Arc::default(),
    });

    // Peak RSS of the run itself: VmHWM is reset to the current RSS first (if the
    // kernel lets us), so queueing's peak does not count.
    let peak_reset = proc::reset_peak_rss();
    let rss_before_kib = proc::status_kib("VmRSS:");
    let threads_before = proc::thread_cpu();
    let cpu_before = proc::process_cpu();
    let started = Instant::now();
    // The loop `serve` runs: lanes kept full, claiming as slots free. Done when the
    // store says every job is.
    let stop = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(
        outbox
            .clone()
            .run(Arc::new(tokio::sync::Notify::new()), stop.clone()),
    );
    let watcher = rusqlite::Connection::open_with_flags(
        &db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let performed = loop {
        let done: i64 = watcher.query_row(
            "SELECT COUNT(*) FROM outbox WHERE status <> 'pending'",
            [],
            |row| row.get(0),
        )?;
        if done >= options.count as i64 {
            break done as usize;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    stop.cancel();
    workers.await?;
    let cpu = proc::process_cpu().saturating_sub(cpu_before);
    let threads = proc::thread_cpu_delta(&threads_before, &proc::thread_cpu());
    let peak_rss_kib = proc::status_kib("VmHWM:");
    drop(outbox);

    let checks = check(&hubspot, &db_path)?;
    drop(store);
    let db_bytes = ["outbox.db", "outbox.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let want = options.count as i64;
    anyhow::ensure!(
        checks.fake_tasks as i64 == want
            && checks.done == want
            && checks.not_done == 0
            && checks.distinct_task_ids == want,
        "after performing {want} create_task jobs: {checks:?}"
    );
    Ok(Report {
        options,
        contacts,
        queue,
        wall,
        performed,
        cpu,
        threads,
        rss_before_kib,
        peak_rss_kib,
        peak_reset,
        db_bytes,
        checks,
    })
}

/// Job `i`: a task on contact `i % contacts + 1`, shaped as the rules' `create_task`
/// makes it (owner unset: the fake checks owner ids against its owners).
fn job(i: u64, contacts: u64, now: followthrough_core::Timestamp) -> OutboxJob {
    let object = ObjectRef::new("hubspot", "contact", (i % contacts + 1).to_string());
    let run_id = RunId::new();
    OutboxJob {
        idempotency_key: format!("{run_id}:1"),
        run_id,
        rule_id: "bench-outbox".into(),
        action: "create_task".into(),
        connector: "hubspot".into(),
        params: json!({
            "subject": format!("Follow up #{i}"),
            "priority": "HIGH",
            "owner_id": null,
            "associations": [object.to_string()],
            "due_at_ms": now.as_millis() + 86_400_000,
        }),
        object,
        created_at: now,
        next_at: now,
    }
}

fn check(hubspot: &FakeHubSpot, db_path: &std::path::Path) -> anyhow::Result<Checks> {
    let db =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0));
    Ok(Checks {
        // Not `tasks()`: it gathers each task's associations by scanning them all.
        fake_tasks: hubspot.count_with_property("task", "hs_task_status", "NOT_STARTED"),
        task_requests: hubspot.request_count("/crm/v3/objects/tasks"),
        done: count("SELECT COUNT(*) FROM outbox WHERE status = 'done'")?,
        not_done: count("SELECT COUNT(*) FROM outbox WHERE status <> 'done'")?,
        distinct_task_ids: count(
            "SELECT COUNT(DISTINCT json_extract(result_json, '$.task_id')) FROM outbox",
        )?,
        max_attempts: count("SELECT COALESCE(MAX(attempts), 0) FROM outbox")?,
    })
}

impl Report {
    fn per_second(&self) -> f64 {
        self.performed as f64 / self.wall.as_secs_f64()
    }

    fn cpu_ms_per_action(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.performed.max(1) as f64
    }

    /// Most jobs one claim takes: the workers cap it at four per concurrent call.
    fn claim_size(&self) -> usize {
        self.options
            .claim_batch
            .min(self.options.concurrency * 4)
            .max(1)
    }

    pub fn table(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let o = &self.options;
        let mut rows = vec![
            (
                "jobs".to_owned(),
                format!("{} create_task on {} contacts", o.count, self.contacts),
            ),
            (
                "workers".to_owned(),
                format!(
                    "1 HubSpot lane, concurrency {}, claims of up to {} (claim_batch {}), no rate limit",
                    o.concurrency,
                    self.claim_size(),
                    o.claim_batch
                ),
            ),
            (
                "queued in".to_owned(),
                format!("{:.2} s (units of {})", self.queue.as_secs_f64(), o.chunk),
            ),
            (
                "wall".to_owned(),
                format!("{:.2} s", self.wall.as_secs_f64()),
            ),
            ("actions/s".to_owned(), format!("{:.0}", self.per_second())),
            (
                "CPU per action".to_owned(),
                format!(
                    "{:.3} ms (whole process: workers, connector, SQLite and the fake HubSpot; {:.1} s CPU = {:.2} cores)",
                    self.cpu_ms_per_action(),
                    self.cpu.as_secs_f64(),
                    self.cpu.as_secs_f64() / self.wall.as_secs_f64()
                ),
            ),
        ];
        for thread in &self.threads {
            rows.push((
                format!("  CPU in {}", thread.name),
                format!(
                    "{:.1} s ({:.0}%, {} thread(s))",
                    thread.cpu.as_secs_f64(),
                    100.0 * thread.cpu.as_secs_f64() / self.cpu.as_secs_f64().max(1e-9),
                    thread.threads
                ),
            ));
        }
        rows.push((
            "RSS before".to_owned(),
            format!("{:.1} MiB", mib(self.rss_before_kib)),
        ));
        rows.push((
            "peak RSS".to_owned(),
            format!(
                "{:.1} MiB ({})",
                mib(self.peak_rss_kib),
                if self.peak_reset {
                    "during the run"
                } else {
                    "whole process: reset refused"
                }
            ),
        ));
        rows.push((
            "database + WAL at end".to_owned(),
            format!("{:.0} MiB", self.db_bytes as f64 / 1_048_576.0),
        ));
        let c = &self.checks;
        rows.push((
            "check".to_owned(),
            format!(
                "fake holds {} tasks from {} requests; {} done, {} not, {} distinct task ids, max attempts {}",
                c.fake_tasks, c.task_requests, c.done, c.not_done, c.distinct_task_ids, c.max_attempts
            ),
        ));
        let mut out = String::from(
            "outbox (the fake HubSpot runs on the bench's tokio runtime: its CPU is counted)\n",
        );
        for (name, value) in rows {
            out.push_str(&format!("  {name:<28} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let o = &self.options;
        json!({
            "scenario": "outbox",
            "count": o.count,
            "contacts": self.contacts,
            "concurrency": o.concurrency,
            "claim_batch": o.claim_batch,
            "claim_size": self.claim_size(),
            "queue_s": self.queue.as_secs_f64(),
            "wall_s": self.wall.as_secs_f64(),
            "performed": self.performed,
            "actions_per_s": self.per_second(),
            "cpu_s": self.cpu.as_secs_f64(),
            "cpu_ms_per_action": self.cpu_ms_per_action(),
            "cpu_includes_fake": true,
            "threads": self.threads.iter().map(|t| json!({"name": t.name, "threads": t.threads, "cpu_s": t.cpu.as_secs_f64()})).collect::<Vec<_>>(),
            "rss_before_kib": self.rss_before_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "peak_rss_reset": self.peak_reset,
            "db_bytes": self.db_bytes,
            "fake_tasks": self.checks.fake_tasks,
            "task_requests": self.checks.task_requests,
            "done": self.checks.done,
            "not_done": self.checks.not_done,
            "distinct_task_ids": self.checks.distinct_task_ids,
            "max_attempts": self.checks.max_attempts,
        })
    }
}
