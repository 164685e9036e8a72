//! The `timers` scenario, in process: schedule many waiting runs with their timers in a
//! SQLite store, then let the real [`Engine`] fire them all, on a manual clock.
//!
//! Scheduling writes what the engine itself would write when the rule's trigger fires
//! (each run is started with the rule evaluator, so its state is a real serialized
//! `RunState` waiting on its timer), in units of `chunk` runs, without the journal rows
//! of the trigger. Firing is the engine's normal path: `due_timers`, the runs read back,
//! `advance`, and one unit per batch with the outbox rows, the completed runs, the
//! deleted timers and the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use followthrough_core::{Clock as _, ManualClock, ObjectRef, RunId, SystemClock, Timestamp};
use followthrough_rules::{
    Decision, EvalContext, ObjectState, RuleSet, RunState, RunStatus, Wake, advance,
};
use followthrough_store::{RunRecord, Store, TimerRecord, UnitOfWork};
use followthrough_store_sqlite::SqliteStore;
use serde_json::json;

use crate::in_process::{self, Spent};
use crate::load::ms;
use crate::proc::status_kib as vm_kib;

const RULE: &str = r#"id: bench-timer
description: Waits an hour, then marks the contact.
on: { object: contact, change: bench }
steps:
  - wait: 1h
  - update: { bench_done: "yes" }
"#;

pub struct Options {
    pub count: u64,
    pub chunk: usize,
    pub batch_size: usize,
}

pub struct Report {
    options: Options,
    schedule: Duration,
    /// Firing's time and CPU, the whole process's and by thread.
    fire: Spent,
    fired: u64,
    passes: u64,
    rss: [(&'static str, u64, u64); 3],
    db_bytes: u64,
    checks: Checks,
}

#[derive(Debug)]
struct Checks {
    timers_left: i64,
    update_rows: i64,
    completed_runs: i64,
}

pub async fn run(options: Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let rule_path = dir.path().join("bench-timer.yaml");
    std::fs::write(&rule_path, RULE)?;
    let rule = RuleSet::parse_rule(&rule_path, RULE)
        .map_err(|d| anyhow::anyhow!("the bench rule does not parse: {d:?}"))?;
    let db_path = dir.path().join("timers.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path, true)?);
    let start = SystemClock.now();
    let clock = ManualClock::new(start);
    let rss_start = (vm_kib("VmRSS:"), vm_kib("VmHWM:"));

    // Schedule: run i starts at start + i ms, so due times are distinct, an hour later.
    let scheduling = Instant::now();
    let rule = Arc::new(rule);
    let mut next = 0u64;
    while next < options.count {
        let end = (next + options.chunk as u64).min(options.count);
        let rule_for_chunk = Arc::clone(&rule);
        let unit =
            tokio::task::spawn_blocking(move || chunk(&rule_for_chunk, start, next..end)).await??;
        store.apply(unit).await?;
        next = end;
    }
    let schedule = scheduling.elapsed();
    let rss_scheduled = (vm_kib("VmRSS:"), vm_kib("VmHWM:"));

    // Fire: past every due time, then batches until nothing is due.
    clock.set(Timestamp(
        start.as_millis() + options.count as i64 + 2 * 3_600_000,
    ));
    let rules = RuleSet::new(vec![Arc::unwrap_or_clone(rule)]);
    let mut engine = in_process::engine(Arc::clone(&store), clock, rules, options.batch_size);
    // The engine's own loop: each batch is read and evaluated while the one before it
    // commits.
    let (total, fire) = Spent::measure(engine.run_until_idle()).await;
    let fired = total?.timers as u64;
    let passes = fired.div_ceil(options.batch_size.max(1) as u64);
    let rss_fired = (vm_kib("VmRSS:"), vm_kib("VmHWM:"));
    drop(engine);
    drop(store);

    let db = rusqlite::Connection::open_with_flags(
        &db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0));
    let checks = Checks {
        timers_left: count("SELECT COUNT(*) FROM timers")?,
        update_rows: count("SELECT COUNT(*) FROM outbox WHERE action = 'update'")?,
        completed_runs: count("SELECT COUNT(*) FROM runs WHERE status = 'completed'")?,
    };
    let db_bytes = ["timers.db", "timers.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let want = options.count as i64;
    anyhow::ensure!(
        checks.timers_left == 0 && checks.update_rows == want && checks.completed_runs == want,
        "after firing {want} timers the store holds {checks:?}"
    );
    Ok(Report {
        rss: [
            ("before scheduling", rss_start.0, rss_start.1),
            ("after scheduling", rss_scheduled.0, rss_scheduled.1),
            ("after firing", rss_fired.0, rss_fired.1),
        ],
        schedule,
        fire,
        fired,
        passes,
        db_bytes,
        checks,
        options,
    })
}

/// The runs numbered `range`, started by the evaluator and waiting on their timers.
fn chunk(
    rule: &followthrough_rules::Rule,
    start: Timestamp,
    range: std::ops::Range<u64>,
) -> anyhow::Result<UnitOfWork> {
    let mut unit = UnitOfWork::default();
    for i in range {
        let at = Timestamp(start.as_millis() + i as i64);
        let object = ObjectRef::new("hubspot", "contact", (i + 1).to_string());
        let run_id = RunId::new();
        let state = RunState::new(
            rule,
            run_id.to_string(),
            object.to_string(),
            object.clone(),
            at,
        );
        let ctx = EvalContext::for_object(ObjectState::new(object.clone()), at);
        let started = advance(rule, &state, Wake::Start, &ctx);
        let Some((due_at, kind)) = started.decisions.iter().find_map(|d| match d {
            Decision::ScheduleTimer { at, kind, .. } => Some((*at, *kind)),
            _ => None,
        }) else {
            anyhow::bail!("the bench rule did not schedule a timer");
        };
        anyhow::ensure!(started.state.status == RunStatus::Waiting);
        unit.timers_scheduled.push(TimerRecord {
            run_id: run_id.clone(),
            due_at,
            kind: serde_json::to_value(kind)?
                .as_str()
                .context("timer kind")?
                .to_owned(),
        });
        unit.runs.push(RunRecord {
            run_id,
            rule_id: rule.id.clone(),
            rule_version: rule.version.clone(),
            key: started.state.key.clone(),
            object,
            status: "waiting".into(),
            parallel: false,
            reason: None,
            state: started.state.to_json(),
            created_at: at,
            updated_at: at,
            revision: 0,
        });
    }
    Ok(unit)
}

impl Report {
    fn scheduled_per_second(&self) -> f64 {
        self.options.count as f64 / self.schedule.as_secs_f64()
    }

    fn fired_per_second(&self) -> f64 {
        self.fired as f64 / self.fire.wall.as_secs_f64()
    }

    pub fn table(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut rows = vec![
            ("timers".to_owned(), format!("{}", self.options.count)),
            (
                "scheduled".to_owned(),
                format!(
                    "{:.1} s, {:.0} runs+timers/s (units of {})",
                    self.schedule.as_secs_f64(),
                    self.scheduled_per_second(),
                    self.options.chunk
                ),
            ),
            (
                "fired".to_owned(),
                format!(
                    "{} in {:.1} s, {:.0} timers/s ({} passes of up to {})",
                    self.fired,
                    self.fire.wall.as_secs_f64(),
                    self.fired_per_second(),
                    self.passes,
                    self.options.batch_size
                ),
            ),
            (
                "per fired timer".to_owned(),
                format!(
                    "{:.1} us",
                    ms(self.fire.wall) * 1000.0 / self.fired.max(1) as f64
                ),
            ),
        ];
        rows.extend(self.fire.rows("CPU per fired timer", self.fired, "timer"));
        for (when, rss, hwm) in self.rss {
            rows.push((
                format!("RSS {when}"),
                format!("{:.1} MiB (peak so far {:.1} MiB)", mib(rss), mib(hwm)),
            ));
        }
        rows.push((
            "database + WAL at end".to_owned(),
            format!("{:.0} MiB", self.db_bytes as f64 / 1048576.0),
        ));
        rows.push((
            "check".to_owned(),
            format!(
                "{} timers left, {} update rows, {} runs completed",
                self.checks.timers_left, self.checks.update_rows, self.checks.completed_runs
            ),
        ));
        let mut out = String::from("timers\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<28} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "timers",
            "count": self.options.count,
            "chunk": self.options.chunk,
            "batch_size": self.options.batch_size,
            "schedule_s": self.schedule.as_secs_f64(),
            "scheduled_per_s": self.scheduled_per_second(),
            "fire_s": self.fire.wall.as_secs_f64(),
            "fired": self.fired,
            "fired_per_s": self.fired_per_second(),
            "passes": self.passes,
            "fire_cpu_s": self.fire.cpu.as_secs_f64(),
            "fire_threads": self.fire.threads_json(),
            "rss_kib": self.rss.iter().map(|(when, rss, hwm)| json!({"when": when, "rss": rss, "peak": hwm})).collect::<Vec<_>>(),
            "db_bytes": self.db_bytes,
            "timers_left": self.checks.timers_left,
            "update_rows": self.checks.update_rows,
            "completed_runs": self.checks.completed_runs,
        })
    }
}
