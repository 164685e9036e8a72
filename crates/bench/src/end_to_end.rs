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

use crate::load::{Latencies, drive, ms};
use crate::mix::{FIRST_OWNER_ID, workflow_batch};
use crate::server::{EXAMPLE_RULES, Server};

pub struct Options {
    pub connections: usize,
    pub batch: usize,
    pub duration: Duration,
    pub objects: u64,
    pub owners: u64,
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
    cpu_load: Duration,
    cpu_total: Duration,
    peak_rss: u64,
}

pub async fn run(binary: &Path, options: Options) -> anyhow::Result<Report> {
    let hubspot = FakeHubSpot::start().await;
    for i in 0..options.owners {
        let id = FIRST_OWNER_ID + i;
        hubspot.add_owner(FakeOwner {
            id: id.to_string(),
            email: format!("rep{id}@example.com"),
            first_name: "Rep".into(),
            last_name: id.to_string(),
            teams: vec![("1".into(), "hunters".into())],
        });
    }
    let server = Server::start_with_rules(
        binary,
        &EXAMPLE_RULES,
        &[
            (
                "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__BASE_URL",
                hubspot.base_url(),
            ),
            ("FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TOKEN", hubspot.token()),
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu_before = server.cpu_time();
    let watcher = Watcher::start(server.open_db()?, server.open_db()?);

    let (batch, objects, owners) = (options.batch, options.objects, options.owners);
    let driven = drive(
        &server.url("/webhooks/hubspot"),
        options.connections,
        options.duration,
        Arc::new(move |i| workflow_batch(i, batch, objects, owners)),
    )
    .await?;
    let cpu_load = server.cpu_time().saturating_sub(cpu_before);
    let db = server.open_db()?;
    let applied_during_load: i64 =
        db.query_row("SELECT COUNT(*) FROM inbox_applied", [], |r| r.get(0))?;
    let outbox_during_load: i64 = db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
    let backlog_at_end = server.pending_events()?;
    let draining = Instant::now();
    while server.pending_events()? > 0 && draining.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = draining.elapsed();
    let cpu_total = server.cpu_time().saturating_sub(cpu_before);
    let peak_rss = server.peak_rss();
    // One more poll after the last commit, then the watcher stops.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (polls, curve) = watcher.stop();

    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0));
    let outbox_rows = count("SELECT COUNT(*) FROM outbox")?;
    let runs = count("SELECT COUNT(*) FROM runs")?;
    let timers = count("SELECT COUNT(*) FROM timers")?;
    let deferred = count("SELECT COUNT(*) FROM inbox_deferred")?;
    let outbox_by_action = db
        .prepare("SELECT action, COUNT(*) FROM outbox GROUP BY action ORDER BY action")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, i64)>, _>>()?;
    let (decided, visible, matched_rows) = latencies(&db, &polls)?;
    let owner_fetches = hubspot.request_count("/crm/v3/owners");
    drop(db);
    server.stop()?;
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
        cpu_load,
        cpu_total,
        peak_rss,
        options,
    })
}

/// From each outbox row to the event that started its run: `created_at - received_at`
/// (the engine stamps `created_at` when its pass begins, before it commits) and the
/// first poll that saw the row minus `received_at` (at most one poll interval late).
fn latencies(
    db: &rusqlite::Connection,
    polls: &[Poll],
) -> anyhow::Result<(Latencies, Latencies, usize)> {
    let outbox: Vec<(i64, String, i64)> = db
        .prepare("SELECT seq, run_id, created_at FROM outbox")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let wanted: HashSet<&str> = outbox.iter().map(|(_, run, _)| run.as_str()).collect();
    let mut started_by: HashMap<String, String> = HashMap::new();
    let mut starts = db.prepare(
        "SELECT json_extract(detail_json, '$.run_id'), json_extract(detail_json, '$.event_id')
         FROM journal WHERE kind = 'run' AND json_extract(detail_json, '$.outcome') = 'started'",
    )?;
    let mut rows = starts.query([])?;
    while let Some(row) = rows.next()? {
        let run: String = row.get(0)?;
        if wanted.contains(run.as_str()) {
            started_by.insert(run, row.get(1)?);
        }
    }
    let events: HashSet<&str> = started_by.values().map(String::as_str).collect();
    let mut received: HashMap<String, i64> = HashMap::new();
    let mut inbox = db.prepare("SELECT id, received_at FROM inbox")?;
    let mut rows = inbox.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        if events.contains(id.as_str()) {
            received.insert(id, row.get(1)?);
        }
    }
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

/// Polls the server's database from its own thread.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Poll>, Vec<Counts>)>,
}

impl Watcher {
    fn start(fast: rusqlite::Connection, slow: rusqlite::Connection) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut polls, mut curve) = (Vec::new(), Vec::new());
            let mut tick = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let max_seq = fast
                    .query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))
                    .unwrap_or(0);
                polls.push(Poll {
                    at_ms: SystemClock.now().as_millis(),
                    outbox_max_seq: max_seq,
                });
                if tick.is_multiple_of(10)
                    && let Ok(applied) =
                        slow.query_row("SELECT COUNT(*) FROM inbox_applied", [], |r| r.get(0))
                {
                    curve.push(Counts {
                        at: started.elapsed(),
                        applied,
                    });
                }
                tick += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            (polls, curve)
        });
        Watcher { stop, thread }
    }

    fn stop(self) -> (Vec<Poll>, Vec<Counts>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl Report {
    fn events(&self) -> u64 {
        self.requests * self.options.batch as u64
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
        let rows = [
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
                    ms(self.cpu_load) * 1000.0 / events,
                    ms(self.cpu_total) * 1000.0 / events
                ),
            ),
            (
                "server peak RSS",
                format!("{:.1} MiB", self.peak_rss as f64 / 1048576.0),
            ),
        ];
        let mut out = String::from("end-to-end\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<30} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "end-to-end",
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
            "cpu_load_s": self.cpu_load.as_secs_f64(),
            "cpu_total_s": self.cpu_total.as_secs_f64(),
            "peak_rss_bytes": self.peak_rss,
        })
    }
}
