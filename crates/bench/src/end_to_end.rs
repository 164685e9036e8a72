//! The `end-to-end` scenario: signed webhooks in, outbox rows out, with the example rules
//! loaded and a fake HubSpot answering the engine's owner look-ups.
//!
//! While the load runs, a watcher thread polls the server's database (read-only, WAL)
//! every 25 ms for the newest outbox row and every 250 ms for the applied-event count, so the
//! report can say when each outbox row became visible, not only the time the engine
//! stamped on it. Latency is measured per outbox row, exactly: the row's run was started
//! by one event (the `run started` journal row names it), whose inbox row says when the
//! server received it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, SystemClock};
use followthrough_fakes::{FakeHubSpot, FakeOwner};
use serde_json::json;

use crate::db::{Db, DbTarget};
use crate::fleet::{
    ActivitySampler, CpuSnapshot, CpuSplit, Fleet, StoreArg, describe_activity, mib, sum_max,
};
use crate::load::{Latencies, drive, ms};
use crate::mix::{FIRST_OWNER_ID, plan, workflow_batch};
use crate::server::EXAMPLE_RULES;

pub struct Options {
    pub connections: usize,
    pub batch: usize,
    pub duration: Duration,
    pub objects: u64,
    pub owners: u64,
    pub store: StoreArg,
    pub instances: usize,
}

/// One poll of the server's database.
#[derive(Debug, Clone, Copy)]
struct Poll {
    at_ms: i64,
    outbox_max_seq: i64,
}

/// Inbox counts at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    at: Duration,
    applied: i64,
}

pub struct Report {
    options: Options,
    requests: u64,
    failures: u64,
    elapsed: Duration,
    drain: Duration,
    backlog_at_end: i64,
    applied_during_load: i64,
    outbox_during_load: i64,
    outbox_rows: i64,
    outbox_by_action: Vec<(String, i64)>,
    runs: i64,
    timers: i64,
    deferred: i64,
    owner_fetches: usize,
    decided: Latencies,
    visible: Latencies,
    matched_rows: usize,
    curve: Vec<Counts>,
    /// Per instance.
    cpu_load: Vec<Duration>,
    cpu_total: Vec<Duration>,
    peak_rss: Vec<u64>,
    split_load: CpuSplit,
    split_total: CpuSplit,
    activity: Vec<(String, f64)>,
    activity_catch_up: Vec<(String, f64)>,
}

/// A fake HubSpot knowing `owners` owners, and the servers with the example rules and
/// their HubSpot connector pointed at it (also what `soak` runs on).
pub async fn start_with_example_rules(
    binary: &Path,
    store: &StoreArg,
    instances: usize,
    owners: u64,
) -> anyhow::Result<(FakeHubSpot, Fleet)> {
    let hubspot = FakeHubSpot::start().await;
    for i in 0..owners {
        let id = FIRST_OWNER_ID + i;
        hubspot.add_owner(FakeOwner {
            id: id.to_string(),
            email: format!("rep{id}@example.com"),
            first_name: "Rep".into(),
            last_name: id.to_string(),
            teams: vec![("1".into(), "hunters".into())],
        });
    }
    let env = [
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__BASE_URL",
            hubspot.base_url(),
        ),
        ("FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TOKEN", hubspot.token()),
    ];
    let fleet = Fleet::start(binary, store, instances, &EXAMPLE_RULES, &env).await?;
    Ok((hubspot, fleet))
}

pub async fn run(binary: &Path, options: Options) -> anyhow::Result<Report> {
    let (hubspot, fleet) =
        start_with_example_rules(binary, &options.store, options.instances, options.owners).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = CpuSnapshot::take(&fleet);
    let watcher = Watcher::start(fleet.db_target());
    let sampler = ActivitySampler::start(&fleet).await?;

    let (batch, objects, owners) = (options.batch, options.objects, options.owners);
    let driven = drive(
        &fleet.urls("/webhooks/hubspot"),
        options.connections,
        options.duration,
        Arc::new(move |i| workflow_batch(i, batch, objects, owners)),
    )
    .await?;
    let split_load = CpuSnapshot::take(&fleet).split_since(&before, driven.elapsed);
    let activity = sampler
        .as_ref()
        .map(ActivitySampler::take)
        .unwrap_or_default();
    let mut db = fleet.db().await?;
    let applied_during_load = db.scalar("SELECT COUNT(*) FROM inbox_applied").await?;
    let outbox_during_load = db.scalar("SELECT COUNT(*) FROM outbox").await?;
    let backlog_at_end = db.pending_events().await?;
    // Counting a large pending table costs PostgreSQL more than SQLite: poll it less.
    let poll = match options.store {
        StoreArg::Sqlite => Duration::from_millis(50),
        StoreArg::Postgres(_) => Duration::from_millis(200),
    };
    let draining = Instant::now();
    while db.any_pending().await? && draining.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(poll).await;
    }
    let drain = draining.elapsed();
    let activity_catch_up = match sampler {
        Some(sampler) => sampler.stop().await,
        None => Vec::new(),
    };
    let split_total = CpuSnapshot::take(&fleet).split_since(&before, driven.elapsed + drain);
    let peak_rss = fleet.peak_rss();
    // One more poll after the last commit, then the watcher stops.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (polls, curve) = watcher.stop()?;

    let outbox_rows = db.scalar("SELECT COUNT(*) FROM outbox").await?;
    let runs = db.scalar("SELECT COUNT(*) FROM runs").await?;
    let timers = db.scalar("SELECT COUNT(*) FROM timers").await?;
    let deferred = db.scalar("SELECT COUNT(*) FROM inbox_deferred").await?;
    let outbox_by_action = db
        .text_counts("SELECT action, COUNT(*) FROM outbox GROUP BY action ORDER BY action")
        .await?;
    let (decided, visible, matched_rows) = latencies(&mut db, &polls).await?;
    let owner_fetches = hubspot.request_count("/crm/v3/owners");
    drop(db);
    fleet.stop().await?;
    Ok(Report {
        requests: driven.samples.len() as u64,
        failures: driven.failures,
        elapsed: driven.elapsed,
        drain,
        backlog_at_end,
        applied_during_load,
        outbox_during_load,
        outbox_rows,
        outbox_by_action,
        runs,
        timers,
        deferred,
        owner_fetches,
        decided,
        visible,
        matched_rows,
        curve,
        cpu_load: split_load.servers.clone(),
        cpu_total: split_total.servers.clone(),
        peak_rss,
        split_load,
        split_total,
        activity,
        activity_catch_up,
        options,
    })
}

/// From each outbox row to the event that started its run: `created_at - received_at`
/// (the engine stamps `created_at` when its pass begins, before it commits) and the
/// first poll that saw the row minus `received_at` (at most one poll interval late).
async fn latencies(db: &mut Db, polls: &[Poll]) -> anyhow::Result<(Latencies, Latencies, usize)> {
    let outbox = db.outbox_rows().await?;
    let wanted: HashSet<&str> = outbox.iter().map(|(_, run, _)| run.as_str()).collect();
    let started_by: HashMap<String, String> = db
        .run_starts()
        .await?
        .into_iter()
        .filter(|(run, _)| wanted.contains(run.as_str()))
        .collect();
    let events: HashSet<&str> = started_by.values().map(String::as_str).collect();
    let received: HashMap<String, i64> = db
        .inbox_received()
        .await?
        .into_iter()
        .filter(|(id, _)| events.contains(id.as_str()))
        .collect();
    let mut decided = Vec::new();
    let mut visible = Vec::new();
    for (seq, run, created_at) in &outbox {
        let Some(at) = started_by.get(run).and_then(|e| received.get(e)) else {
            continue;
        };
        decided.push(Duration::from_millis((created_at - at).max(0) as u64));
        let first = polls.partition_point(|p| p.outbox_max_seq < *seq);
        if let Some(poll) = polls.get(first) {
            visible.push(Duration::from_millis((poll.at_ms - at).max(0) as u64));
        }
    }
    let matched = decided.len();
    Ok((Latencies::new(decided), Latencies::new(visible), matched))
}

/// Polls the server's database from its own thread, with a runtime of its own, so the
/// load generator's runtime does not carry it.
///
/// On PostgreSQL with several instances, `seq` is drawn when a row is inserted, not
/// when it commits: a row counts as visible once a higher `seq` is, which may be up to
/// one other instance's commit early.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<(Vec<Poll>, Vec<Counts>)>>,
}

impl Watcher {
    fn start(target: DbTarget) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        // The applied count scans a table that grows: on PostgreSQL once a second (the
        // curve is per second anyway), on SQLite every 250 ms as before.
        let count_every = match target {
            DbTarget::Sqlite(_) => 10,
            DbTarget::Postgres { .. } => 40,
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut fast = Db::open(&target).await?;
                let mut slow = Db::open(&target).await?;
                let started = Instant::now();
                let (mut polls, mut curve) = (Vec::new(), Vec::new());
                let mut tick = 0u64;
                while !stopping.load(Ordering::Relaxed) {
                    let max_seq = fast
                        .scalar("SELECT COALESCE(MAX(seq), 0) FROM outbox")
                        .await
                        .unwrap_or(0);
                    polls.push(Poll {
                        at_ms: SystemClock.now().as_millis(),
                        outbox_max_seq: max_seq,
                    });
                    if tick.is_multiple_of(count_every)
                        && let Ok(applied) = slow.scalar("SELECT COUNT(*) FROM inbox_applied").await
                    {
                        curve.push(Counts {
                            at: started.elapsed(),
                            applied,
                        });
                    }
                    tick += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Ok((polls, curve))
            })
        });
        Watcher { stop, thread }
    }

    fn stop(self) -> anyhow::Result<(Vec<Poll>, Vec<Counts>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the database watcher panicked"))?
    }
}

impl Report {
    fn events(&self) -> u64 {
        self.requests * self.options.batch as u64
    }

    /// The outbox rows the accepted events must queue: the events accepted are the
    /// first `events()` of the mix (bodies are taken in order and none failed), and each
    /// contact's `salesqualifiedlead` queues one row, each deal's `negotiation` two.
    fn expected_outbox_rows(&self) -> Option<u64> {
        if self.failures > 0 {
            return None;
        }
        let o = &self.options;
        Some(
            (0..self.events())
                .map(|i| match plan(i, o.objects, o.owners).change {
                    Some((_, value)) if value == "salesqualifiedlead" => 1,
                    Some((_, value)) if value == "negotiation" => 2,
                    _ => 0,
                })
                .sum(),
        )
    }

    fn accepted_per_second(&self) -> f64 {
        self.events() as f64 / self.elapsed.as_secs_f64()
    }

    fn applied_during_load_per_second(&self) -> f64 {
        self.applied_during_load as f64 / self.elapsed.as_secs_f64()
    }

    /// Everything accepted, over the load time plus the engine's catch-up.
    fn applied_per_second(&self) -> f64 {
        self.events() as f64 / (self.elapsed + self.drain).as_secs_f64()
    }

    fn outbox_per_second(&self) -> f64 {
        self.outbox_rows as f64 / (self.elapsed + self.drain).as_secs_f64()
    }

    /// Applied events/s over each second of the run (from the watcher's samples).
    fn applied_curve(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut last = Counts::default();
        for sample in &self.curve {
            if sample.at.as_millis() >= last.at.as_millis() + 1000 || last.at.is_zero() {
                if !last.at.is_zero() {
                    let dt = (sample.at - last.at).as_secs_f64();
                    out.push((sample.applied - last.applied) as f64 / dt);
                }
                last = *sample;
            }
        }
        out
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let events = self.events().max(1) as f64;
        let actions: Vec<String> = self
            .outbox_by_action
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let curve: Vec<String> = self
            .applied_curve()
            .iter()
            .map(|r| format!("{:.0}", r / 1000.0))
            .collect();
        let (peak_sum, peak_max) = sum_max(&self.peak_rss);
        let mut rows = vec![
            (
                "store x instances",
                format!("{} x {}", o.store.name(), o.instances),
            ),
            (
                "connections x batch",
                format!("{} x {}", o.connections, o.batch),
            ),
            ("objects / owners", format!("{} / {}", o.objects, o.owners)),
            ("duration", format!("{:.1} s", self.elapsed.as_secs_f64())),
            (
                "requests ok / failed",
                format!("{} / {}", self.requests, self.failures),
            ),
            (
                "events/s accepted",
                format!("{:.0}", self.accepted_per_second()),
            ),
            (
                "events/s applied during load",
                format!("{:.0}", self.applied_during_load_per_second()),
            ),
            (
                "not yet applied at the end",
                format!("{} events", self.backlog_at_end),
            ),
            ("catch-up", format!("{:.1} s", self.drain.as_secs_f64())),
            (
                "applied, incl. catch-up",
                format!("{:.0} events/s", self.applied_per_second()),
            ),
            ("applied per second (k)", curve.join(" ")),
            (
                "outbox rows",
                format!(
                    "{} ({}); {} during load",
                    self.outbox_rows,
                    actions.join(", "),
                    self.outbox_during_load
                ),
            ),
            (
                "outbox rows expected (mix)",
                match self.expected_outbox_rows() {
                    Some(n) if n == self.outbox_rows as u64 => format!("{n}: all there"),
                    Some(n) => format!("{n}: MISMATCH ({:+})", self.outbox_rows - n as i64),
                    None => "- (some requests failed)".to_owned(),
                },
            ),
            (
                "outbox rows/s, incl. catch-up",
                format!("{:.0}", self.outbox_per_second()),
            ),
            (
                "runs / timers at end",
                format!("{} / {}", self.runs, self.timers),
            ),
            (
                "deferred events / owner GETs",
                format!("{} / {}", self.deferred, self.owner_fetches),
            ),
            (
                "receipt -> outbox created_at",
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} rows)",
                    ms(self.decided.percentile(50.0)),
                    ms(self.decided.percentile(99.0)),
                    ms(self.decided.percentile(100.0)),
                    self.matched_rows
                ),
            ),
            (
                "receipt -> outbox row visible",
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                    ms(self.visible.percentile(50.0)),
                    ms(self.visible.percentile(99.0)),
                    ms(self.visible.percentile(100.0)),
                ),
            ),
            (
                "server CPU per 1k events",
                format!(
                    "{:.2} ms during load, {:.2} ms incl. catch-up",
                    ms(self.cpu_load.iter().sum()) * 1000.0 / events,
                    ms(self.cpu_total.iter().sum()) * 1000.0 / events
                ),
            ),
            (
                "server peak RSS",
                format!("{:.1} MiB (max {:.1})", mib(peak_sum), mib(peak_max)),
            ),
            ("CPU during load", self.split_load.describe()),
            ("CPU incl. catch-up", self.split_total.describe()),
        ];
        if matches!(o.store, StoreArg::Postgres(_)) {
            rows.push((
                "postgres CPU per 1k events",
                format!(
                    "{:.2} ms during load, {:.2} ms incl. catch-up",
                    ms(self.split_load.postgres) * 1000.0 / events,
                    ms(self.split_total.postgres) * 1000.0 / events
                ),
            ));
            rows.push((
                "postgres backends (load, mean)",
                describe_activity(&self.activity),
            ));
            rows.push((
                "postgres backends (catch-up)",
                describe_activity(&self.activity_catch_up),
            ));
        }
        let mut out = String::from("end-to-end\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<30} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "end-to-end",
            "store": self.options.store.name(),
            "instances": self.options.instances,
            "connections": self.options.connections,
            "batch": self.options.batch,
            "objects": self.options.objects,
            "owners": self.options.owners,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "failures": self.failures,
            "accepted_per_s": self.accepted_per_second(),
            "applied_during_load_per_s": self.applied_during_load_per_second(),
            "backlog_at_end": self.backlog_at_end,
            "drain_s": self.drain.as_secs_f64(),
            "applied_per_s": self.applied_per_second(),
            "applied_curve_per_s": self.applied_curve(),
            "outbox_rows": self.outbox_rows,
            "outbox_rows_expected": self.expected_outbox_rows(),
            "outbox_by_action": self.outbox_by_action,
            "outbox_per_s": self.outbox_per_second(),
            "runs": self.runs,
            "timers": self.timers,
            "deferred": self.deferred,
            "owner_fetches": self.owner_fetches,
            "decided_p50_ms": ms(self.decided.percentile(50.0)),
            "decided_p99_ms": ms(self.decided.percentile(99.0)),
            "visible_p50_ms": ms(self.visible.percentile(50.0)),
            "visible_p99_ms": ms(self.visible.percentile(99.0)),
            "visible_max_ms": ms(self.visible.percentile(100.0)),
            "cpu_load_s": self.cpu_load.iter().sum::<Duration>().as_secs_f64(),
            "cpu_total_s": self.cpu_total.iter().sum::<Duration>().as_secs_f64(),
            "cpu_load_s_per_instance": self.cpu_load.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "cpu_total_s_per_instance": self.cpu_total.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "cpu_split_load": self.split_load.json(),
            "cpu_split_total": self.split_total.json(),
            "postgres_activity": self.activity,
            "postgres_activity_catch_up": self.activity_catch_up,
            "peak_rss_bytes": sum_max(&self.peak_rss).0,
            "peak_rss_bytes_max": sum_max(&self.peak_rss).1,
            "peak_rss_bytes_per_instance": self.peak_rss,
        })
    }
}
