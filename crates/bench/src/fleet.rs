//! The servers a scenario drives: one `followthrough serve` on a fresh SQLite file, or
//! N instances sharing a fresh schema of a PostgreSQL database (`--store postgres://...
//! --instances N`). The schema (`bench_<ulid>`) is created by the first instance's
//! migration (the others start after it is ready) and dropped when the fleet stops, or
//! when it is dropped after a failure.
//!
//! Also here: where the machine's CPU went during a measurement (the instances,
//! PostgreSQL's processes, the bench itself, everything else), and what PostgreSQL's
//! backends were waiting on (`pg_stat_activity`, sampled).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::db::{Db, DbTarget, pg_connect};
use crate::server::{Server, StoreChoice};

/// The store the scenario runs on, as `--store` gives it.
#[derive(Debug, Clone)]
pub enum StoreArg {
    Sqlite,
    /// A PostgreSQL URL; each run gets a fresh schema in that database.
    Postgres(String),
}

impl StoreArg {
    pub fn parse(text: &str) -> Result<StoreArg, String> {
        if text == "sqlite" {
            Ok(StoreArg::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreArg::Postgres(text.to_owned()))
        } else {
            Err(format!(
                "`{text}`: expected `sqlite` or a postgres://USER@HOST:PORT/DATABASE url"
            ))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StoreArg::Sqlite => "sqlite",
            StoreArg::Postgres(_) => "postgres",
        }
    }
}

pub struct Fleet {
    pub servers: Vec<Server>,
    /// The PostgreSQL URL and schema to drop at the end.
    schema: Option<(String, String)>,
}

impl Fleet {
    /// Starts `instances` servers on `store`. On PostgreSQL the first one migrates the
    /// fresh schema; the others start once it is ready, all at once.
    pub async fn start(
        binary: &Path,
        store: &StoreArg,
        instances: usize,
        rules: &[(&str, &str)],
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Fleet> {
        anyhow::ensure!(instances >= 1, "--instances must be at least 1");
        match store {
            StoreArg::Sqlite => {
                anyhow::ensure!(
                    instances == 1,
                    "SQLite is one instance's store: --instances needs --store postgres://..."
                );
                let server =
                    Server::start_on(binary, &StoreChoice::Sqlite, rules, extra_env).await?;
                Ok(Fleet {
                    servers: vec![server],
                    schema: None,
                })
            }
            StoreArg::Postgres(url) => {
                let schema = format!("bench_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut fleet = Fleet {
                    servers: Vec::new(),
                    schema: Some((url.clone(), schema.clone())),
                };
                let choice = StoreChoice::Postgres {
                    url: url.clone(),
                    schema,
                };
                // One after the other: the first migrates, the others find the schema
                // current. (If this fails half-way, dropping the fleet cleans up.)
                for _ in 0..instances {
                    let server = Server::start_on(binary, &choice, rules, extra_env).await?;
                    fleet.servers.push(server);
                }
                Ok(fleet)
            }
        }
    }

    /// `path` on every instance, in instance order.
    pub fn urls(&self, path: &str) -> Vec<String> {
        self.servers.iter().map(|s| s.url(path)).collect()
    }

    pub fn db_target(&self) -> DbTarget {
        self.servers[0].db_target().clone()
    }

    pub async fn db(&self) -> anyhow::Result<Db> {
        Db::open(&self.db_target()).await
    }

    pub fn cpu_times(&self) -> Vec<Duration> {
        self.servers.iter().map(Server::cpu_time).collect()
    }

    pub fn peak_rss(&self) -> Vec<u64> {
        self.servers.iter().map(Server::peak_rss).collect()
    }

    pub fn rss(&self) -> Vec<u64> {
        self.servers.iter().map(Server::rss).collect()
    }

    /// Stops every instance (SIGTERM, clean exit), then drops the bench schema.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for server in std::mem::take(&mut self.servers) {
            if let Err(e) = server.stop() {
                result = Err(e);
            }
        }
        if let Some((url, schema)) = self.schema.take() {
            drop_schema(&url, &schema).await?;
        }
        result
    }
}

impl Drop for Fleet {
    /// After a failure: kill the instances, then drop the schema from a thread of its
    /// own (this may run inside the bench's runtime, which cannot be blocked on).
    fn drop(&mut self) {
        self.servers.clear();
        if let Some((url, schema)) = self.schema.take() {
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(drop_schema(&url, &schema))
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop a bench schema: drop the bench_* schemas by hand");
            }
        }
    }
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let mut connection = pg_connect(url, None).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut connection)
        .await?;
    Ok(())
}

/// Cumulative CPU counters at one moment, to be subtracted.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    /// Machine-wide busy and total time (all cores), from /proc/stat.
    busy: Duration,
    total: Duration,
    servers: Vec<Duration>,
    postgres: Duration,
    bench: Duration,
}

/// Where the machine's CPU went between two snapshots, in core-seconds.
#[derive(Debug, Clone, Default)]
pub struct CpuSplit {
    pub wall: Duration,
    pub idle: Duration,
    pub servers: Vec<Duration>,
    pub postgres: Duration,
    pub bench: Duration,
    pub other: Duration,
}

impl CpuSnapshot {
    pub fn take(fleet: &Fleet) -> CpuSnapshot {
        let (busy, total) = machine_cpu();
        CpuSnapshot {
            busy,
            total,
            servers: fleet.cpu_times(),
            postgres: postgres_cpu(),
            bench: crate::proc::process_cpu(),
        }
    }

    pub fn split_since(&self, earlier: &CpuSnapshot, wall: Duration) -> CpuSplit {
        let servers: Vec<Duration> = self
            .servers
            .iter()
            .zip(&earlier.servers)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let busy = self.busy.saturating_sub(earlier.busy);
        let total = self.total.saturating_sub(earlier.total);
        let postgres = self.postgres.saturating_sub(earlier.postgres);
        let bench = self.bench.saturating_sub(earlier.bench);
        let known = servers.iter().sum::<Duration>() + postgres + bench;
        CpuSplit {
            wall,
            idle: total.saturating_sub(busy),
            servers,
            postgres,
            bench,
            other: busy.saturating_sub(known),
        }
    }
}

impl CpuSplit {
    /// "instances 1.21 + postgres 0.52 + bench 0.20 + other 0.05 + idle 0.02 cores".
    pub fn describe(&self) -> String {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let cores = |d: Duration| d.as_secs_f64() / wall;
        format!(
            "instances {:.2} + postgres {:.2} + load generator {:.2} + other {:.2} + idle {:.2} cores",
            cores(self.servers.iter().sum()),
            cores(self.postgres),
            cores(self.bench),
            cores(self.other),
            cores(self.idle),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let cores = |d: Duration| d.as_secs_f64() / wall;
        serde_json::json!({
            "wall_s": self.wall.as_secs_f64(),
            "instances_cores": self.servers.iter().map(|d| cores(*d)).collect::<Vec<_>>(),
            "postgres_cores": cores(self.postgres),
            "load_generator_cores": cores(self.bench),
            "other_cores": cores(self.other),
            "idle_cores": cores(self.idle),
        })
    }
}

/// Machine-wide (busy, total) CPU time since boot, from the first line of /proc/stat.
fn machine_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let total: u64 = (0..8).map(get).sum();
    let ticks = |t: u64| Duration::from_millis(t * 10);
    (ticks(total - idle), ticks(total))
}

/// CPU time of every process named `postgres` (the server and all its backends,
/// whoever they serve), so far; backends that ended in between are not counted.
fn postgres_cpu() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .map(crate::server::cpu_time_of)
        .sum()
}

/// What the instances' PostgreSQL backends were doing, sampled every 200 ms:
/// `state / wait_event_type:wait_event` with the number of times a backend was seen so.
pub struct ActivitySampler {
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<(u64, BTreeMap<String, u64>)>>,
    task: tokio::task::JoinHandle<()>,
}

impl ActivitySampler {
    /// None on SQLite.
    pub async fn start(fleet: &Fleet) -> anyhow::Result<Option<ActivitySampler>> {
        let Some((url, _)) = &fleet.schema else {
            return Ok(None);
        };
        let mut connection = pg_connect(url, None).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new((0u64, BTreeMap::new())));
        let (stopping, counts) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT CASE WHEN state = 'active'
                                 THEN 'active ' || COALESCE(wait_event_type || ':' || wait_event, 'on CPU')
                                 ELSE COALESCE(state, '?') END,
                            COUNT(*)
                     FROM pg_stat_activity
                     WHERE application_name = 'followthrough' AND datname = current_database()
                     GROUP BY 1",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap_or_default();
                {
                    let mut counts = counts.lock().unwrap();
                    counts.0 += 1;
                    for (what, count) in rows {
                        *counts.1.entry(what).or_default() += count as u64;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Some(ActivitySampler { stop, seen, task }))
    }

    /// Mean backends per sample in each state since the start or the last `take`, most
    /// frequent first; sampling goes on.
    pub fn take(&self) -> Vec<(String, f64)> {
        let (samples, seen) = std::mem::take(&mut *self.seen.lock().unwrap());
        let mut out: Vec<(String, f64)> = seen
            .into_iter()
            .map(|(what, n)| (what, n as f64 / samples.max(1) as f64))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// As [`ActivitySampler::take`], and stops sampling.
    pub async fn stop(mut self) -> Vec<(String, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
        self.take()
    }
}

/// "active on CPU 2.1, active IO:WALSync 0.8, idle 14.0" (mean backends per sample;
/// states seen less than once in 20 samples are left out).
pub fn describe_activity(activity: &[(String, f64)]) -> String {
    if activity.is_empty() {
        return "-".to_owned();
    }
    activity
        .iter()
        .filter(|(_, mean)| *mean >= 0.05)
        .map(|(what, mean)| format!("{what} {mean:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sum and max of per-instance figures, for the tables.
pub fn sum_max(values: &[u64]) -> (u64, u64) {
    (
        values.iter().sum(),
        values.iter().copied().max().unwrap_or(0),
    )
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}
