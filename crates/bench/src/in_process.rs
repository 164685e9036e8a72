//! What the in-process scenarios (`engine`, `timers`) share: the engine built as the
//! server builds it, and the time and CPU (by thread) its work took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use followthrough::engine::{Engine, EngineParts, Hydrator};
use followthrough::journal::Redactor;
use followthrough::rules_handle::RulesHandle;
use followthrough_core::ManualClock;
use followthrough_rules::{Calendar, RuleSet};
use followthrough_store::Store;
use serde_json::json;

use crate::proc::{self, ThreadCpu};

/// The real engine on `store` and `clock`, with no CRM to call (what the rules read must
/// be in the store already) and the server's defaults otherwise.
pub fn engine(
    store: Arc<dyn Store>,
    clock: ManualClock,
    rules: RuleSet,
    batch_size: usize,
) -> Engine {
    Engine::new(EngineParts {
        store,
        clock: Arc::new(clock),
        rules: Arc::new(RulesHandle::from_set(rules)),
        calendar: Calendar::default(),
        redactor: Redactor::default(),
        hydrator: Hydrator {
            crm: None,
            max_age_ms: 3_600_000,
            timeout: Duration::from_secs(10),
        },
        batch_size,
        catch_up_limit_ms: 30 * 86_400_000,
        fetch_retry_ms: 30_000,
        own_source_ids: Arc::default(),
        outbox_wake: Arc::default(),
        holder: "bench".into(),
        lease_ms: 10_000,
        store_wide: Arc::default(),
    })
}

/// The time and CPU a piece of work took: the whole process's, and each thread name's.
/// CPU drifts far less than the wall-clock rate on a shared machine, and by thread it
/// says which side (the SQLite writer, or reading and evaluating) costs what.
pub struct Spent {
    pub wall: Duration,
    pub cpu: Duration,
    pub threads: Vec<ThreadCpu>,
}

impl Spent {
    pub async fn measure<T>(work: impl Future<Output = T>) -> (T, Spent) {
        let threads_before = proc::thread_cpu();
        let cpu_before = proc::process_cpu();
        let started = Instant::now();
        let output = work.await;
        let spent = Spent {
            wall: started.elapsed(),
            cpu: proc::process_cpu().saturating_sub(cpu_before),
            threads: proc::thread_cpu_delta(&threads_before, &proc::thread_cpu()),
        };
        (output, spent)
    }

    /// CPU per `unit` (of `count`), in microseconds.
    pub fn cpu_per_us(&self, count: u64) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / count.max(1) as f64
    }

    /// The report rows: `label` with the CPU per `unit` (of `count`) and in cores, then one
    /// row per thread name with its share.
    pub fn rows(&self, label: &str, count: u64, unit: &str) -> Vec<(String, String)> {
        let total = (
            label.to_owned(),
            format!(
                "{:.1} us ({:.1} s CPU = {:.2} cores)",
                self.cpu_per_us(count),
                self.cpu.as_secs_f64(),
                self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
            ),
        );
        let threads = self.threads.iter().map(|thread| {
            (
                format!("  CPU in {}", thread.name),
                format!(
                    "{:.1} us per {unit} ({:.0}%, {} thread(s))",
                    thread.cpu.as_secs_f64() * 1e6 / count.max(1) as f64,
                    100.0 * thread.cpu.as_secs_f64() / self.cpu.as_secs_f64().max(1e-9),
                    thread.threads
                ),
            )
        });
        std::iter::once(total).chain(threads).collect()
    }

    /// Each thread name's CPU, as JSON.
    pub fn threads_json(&self) -> serde_json::Value {
        self.threads
            .iter()
            .map(|t| json!({"name": t.name, "threads": t.threads, "cpu_s": t.cpu.as_secs_f64()}))
            .collect()
    }
}
