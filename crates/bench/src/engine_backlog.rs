//! The `engine` scenario, in process: the end-to-end mix's events stored in a SQLite
//! inbox first, then applied by the real [`Engine`] with the example rules loaded, with
//! nothing else running.
//!
//! End to end, the engine shares the two cores with ingest, the HTTP load and the
//! watcher, so its rate moves with all of them (single runs vary by 10% and more on a
//! shared machine). Here the engine is alone and its CPU per event is reported by
//! thread, so a change to the engine's path can be compared on its own; with a small
//! `--events`, under `valgrind --tool=callgrind`, its instruction count is the same
//! from run to run. The owners the rules read are in the store beforehand (fresh), so
//! no CRM is called.

use std::sync::Arc;
use std::time::{Duration, Instant};

use followthrough::ingest::hubspot::payload::parse_batch;
use followthrough::journal::webhook_accepted;
use followthrough_core::{Clock as _, ManualClock, SystemClock, Timestamp};
use followthrough_rules::RuleSet;
use followthrough_store::{CachedOwner, InboxBatch, Store, UnitOfWork};
use followthrough_store_sqlite::SqliteStore;
use serde_json::json;

use crate::in_process::{self, Spent};
use crate::load::ms;
use crate::mix::{FIRST_OWNER_ID, plan, workflow_batch};
use crate::proc::status_kib as vm_kib;
use crate::server::EXAMPLE_RULES;

/// Events per stored webhook, as HubSpot sends them.
const WEBHOOK_EVENTS: usize = 100;

pub struct Options {
    pub events: u64,
    pub objects: u64,
    pub owners: u64,
    pub batch_size: usize,
}

pub struct Report {
    options: Options,
    store_time: Duration,
    applied: u64,
    spent: Spent,
    peak_rss_kib: u64,
    outbox_rows: i64,
    expected_outbox_rows: i64,
}

pub async fn run(options: Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("engine.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path, true)?);
    let now = SystemClock.now();

    // The owners the rules read, fetched "just now".
    store
        .apply(UnitOfWork {
            owners: (0..options.owners)
                .map(|i| {
                    let id = FIRST_OWNER_ID + i;
                    CachedOwner {
                        id: id.to_string(),
                        email: format!("rep{id}@example.com"),
                        name: format!("Rep {id}"),
                        teams: vec!["hunters".into()],
                        fetched_at: now,
                    }
                })
                .collect(),
            ..UnitOfWork::default()
        })
        .await?;

    // The backlog: the first `events` of the mix, stored as ingest stores them.
    let storing = Instant::now();
    let webhooks = options.events.div_ceil(WEBHOOK_EVENTS as u64);
    for index in 0..webhooks {
        let body = workflow_batch(index, WEBHOOK_EVENTS, options.objects, options.owners);
        let mut events = parse_batch(body.as_bytes(), now)?;
        let keep = options.events - index * WEBHOOK_EVENTS as u64;
        events.truncate(keep.min(WEBHOOK_EVENTS as u64) as usize);
        let journal = webhook_accepted(now, "hubspot", &format!("bench-{index}"), events.len());
        store.append_inbox(InboxBatch { events, journal }).await?;
    }
    let store_time = storing.elapsed();

    let mut rules = Vec::new();
    for (file, source) in EXAMPLE_RULES {
        let rule = RuleSet::parse_rule(std::path::Path::new(file), source)
            .map_err(|d| anyhow::anyhow!("example rule {file} does not parse: {d:?}"))?;
        rules.push(rule);
    }
    // Past every event's time (they occurred at the wall clock's now while being built).
    let clock = ManualClock::new(Timestamp(SystemClock.now().as_millis() + 1_000));
    let mut engine = in_process::engine(
        Arc::clone(&store),
        clock,
        RuleSet::new(rules),
        options.batch_size,
    );
    let (total, spent) = Spent::measure(engine.run_until_idle()).await;
    let total = total?;
    let peak_rss_kib = vm_kib("VmHWM:");
    drop(engine);
    drop(store);

    let db = rusqlite::Connection::open_with_flags(
        &db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let outbox_rows: i64 = db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
    // Each contact's `salesqualifiedlead` queues one row, each deal's `negotiation` two.
    let expected_outbox_rows = (0..options.events)
        .map(|i| match plan(i, options.objects, options.owners).change {
            Some((_, value)) if value == "salesqualifiedlead" => 1,
            Some((_, value)) if value == "negotiation" => 2,
            _ => 0,
        })
        .sum();
    anyhow::ensure!(
        total.events as u64 == options.events && outbox_rows == expected_outbox_rows,
        "applied {} of {} events, {outbox_rows} outbox rows of {expected_outbox_rows}",
        total.events,
        options.events
    );
    Ok(Report {
        applied: total.events as u64,
        options,
        store_time,
        spent,
        peak_rss_kib,
        outbox_rows,
        expected_outbox_rows,
    })
}

impl Report {
    fn applied_per_second(&self) -> f64 {
        self.applied as f64 / self.spent.wall.as_secs_f64()
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let mut rows = vec![
            (
                "events / objects / owners".to_owned(),
                format!("{} / {} / {}", o.events, o.objects, o.owners),
            ),
            (
                "stored first".to_owned(),
                format!("{:.1} s", self.store_time.as_secs_f64()),
            ),
            (
                "applied".to_owned(),
                format!(
                    "{} in {:.1} s, {:.0} events/s (batches of up to {})",
                    self.applied,
                    self.spent.wall.as_secs_f64(),
                    self.applied_per_second(),
                    o.batch_size
                ),
            ),
            (
                "per event".to_owned(),
                format!(
                    "{:.1} us",
                    ms(self.spent.wall) * 1000.0 / self.applied.max(1) as f64
                ),
            ),
        ];
        rows.extend(self.spent.rows("CPU per event", self.applied, "event"));
        rows.push((
            "peak RSS".to_owned(),
            format!("{:.1} MiB", self.peak_rss_kib as f64 / 1024.0),
        ));
        rows.push((
            "outbox rows".to_owned(),
            format!(
                "{} ({} expected from the mix)",
                self.outbox_rows, self.expected_outbox_rows
            ),
        ));
        let mut out = String::from("engine (backlog, in process)\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<28} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "engine",
            "events": self.options.events,
            "objects": self.options.objects,
            "owners": self.options.owners,
            "batch_size": self.options.batch_size,
            "store_s": self.store_time.as_secs_f64(),
            "apply_s": self.spent.wall.as_secs_f64(),
            "applied": self.applied,
            "applied_per_s": self.applied_per_second(),
            "cpu_s": self.spent.cpu.as_secs_f64(),
            "cpu_per_event_us": self.spent.cpu_per_us(self.applied),
            "threads": self.spent.threads_json(),
            "peak_rss_kib": self.peak_rss_kib,
            "outbox_rows": self.outbox_rows,
            "expected_outbox_rows": self.expected_outbox_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario checks its own result (every event applied, every outbox row the mix
    /// calls for): a small backlog keeps it, and the engine's path it measures, working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_backlog_is_applied_whole_with_every_expected_outbox_row() {
        let report = run(Options {
            events: 5_000,
            objects: 500,
            owners: 5,
            batch_size: 500,
        })
        .await
        .unwrap();
        assert_eq!(report.applied, 5_000);
        assert!(report.expected_outbox_rows > 0);
        assert_eq!(report.outbox_rows, report.expected_outbox_rows);
    }
}
