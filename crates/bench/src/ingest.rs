//! The `ingest` scenario: how many events per second the server acknowledges durably.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fleet::{
    ActivitySampler, CpuSnapshot, CpuSplit, Fleet, StoreArg, describe_activity, mib, sum_max,
};
use crate::load::{Latencies, drive, hubspot_batch, ms};

pub struct Options {
    pub connections: usize,
    pub batch: usize,
    pub duration: Duration,
    pub objects: u64,
    pub store: StoreArg,
    pub instances: usize,
}

pub struct Report {
    options: Options,
    /// Whether the bench started the servers (no `--url`).
    started: bool,
    requests: u64,
    failures: u64,
    elapsed: Duration,
    latencies: Latencies,
    /// Per instance, in start order (the first one migrated).
    startup: Vec<Duration>,
    backlog_at_end: i64,
    drain: Duration,
    idle_rss: Vec<u64>,
    peak_rss: Vec<u64>,
    cpu: Vec<Duration>,
    split: Option<CpuSplit>,
    activity: Vec<(String, f64)>,
}

pub async fn run(
    binary: &Path,
    external: Option<&str>,
    options: Options,
) -> anyhow::Result<Report> {
    let fleet = match external {
        Some(_) => None,
        None => Some(Fleet::start(binary, &options.store, options.instances, &[], &[]).await?),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let startup = fleet
        .as_ref()
        .map(|f| f.servers.iter().map(|s| s.startup).collect())
        .unwrap_or_default();
    let idle_rss = fleet.as_ref().map(Fleet::rss).unwrap_or_default();
    let urls = match (&fleet, external) {
        (Some(fleet), _) => fleet.urls("/webhooks/hubspot"),
        (None, Some(base)) => vec![format!("{}/webhooks/hubspot", base.trim_end_matches('/'))],
        (None, None) => unreachable!("either a server was started or a URL given"),
    };
    let before = fleet.as_ref().map(CpuSnapshot::take);
    let sampler = match &fleet {
        Some(fleet) => ActivitySampler::start(fleet).await?,
        None => None,
    };
    let (batch, objects) = (options.batch as u64, options.objects);
    let driven = drive(
        &urls,
        options.connections,
        options.duration,
        Arc::new(move |i| hubspot_batch(1 + i * batch, batch as usize, objects)),
    )
    .await?;
    let elapsed = driven.elapsed;
    let activity = match sampler {
        Some(sampler) => sampler.stop().await,
        None => Vec::new(),
    };
    let split = fleet
        .as_ref()
        .zip(before)
        .map(|(fleet, before)| CpuSnapshot::take(fleet).split_since(&before, elapsed));
    let cpu = split
        .as_ref()
        .map(|s| s.servers.clone())
        .unwrap_or_default();
    // The engine applies events behind ingest; how long it needs to catch up tells
    // whether the ingest rate is one the whole pipeline can sustain.
    let mut backlog_at_end = 0;
    let mut drain = Duration::ZERO;
    if let Some(fleet) = &fleet {
        let mut db = fleet.db().await?;
        backlog_at_end = db.pending_events().await?;
        let poll = match options.store {
            StoreArg::Sqlite => Duration::from_millis(50),
            StoreArg::Postgres(_) => Duration::from_millis(200),
        };
        let draining = Instant::now();
        while db.any_pending().await? && draining.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(poll).await;
        }
        drain = draining.elapsed();
    }
    let peak_rss = fleet.as_ref().map(Fleet::peak_rss).unwrap_or_default();
    if let Some(fleet) = fleet {
        fleet.stop().await?;
    }
    Ok(Report {
        started: external.is_none(),
        requests: driven.samples.len() as u64,
        failures: driven.failures,
        latencies: Latencies::new(driven.samples),
        elapsed,
        startup,
        backlog_at_end,
        drain,
        idle_rss,
        peak_rss,
        cpu,
        split,
        activity,
        options,
    })
}

impl Report {
    fn events_per_second(&self) -> f64 {
        (self.requests * self.options.batch as u64) as f64 / self.elapsed.as_secs_f64()
    }

    /// Events per second through the engine's apply step: everything accepted, over the
    /// load time plus the time the engine needed to catch up.
    fn applied_per_second(&self) -> f64 {
        (self.requests * self.options.batch as u64) as f64
            / (self.elapsed + self.drain).as_secs_f64()
    }

    fn cpu_sum(&self) -> Duration {
        self.cpu.iter().sum()
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let events = self.requests * o.batch as u64;
        let per_1k = |cpu: Duration| format!("{:.2} ms", ms(cpu) * 1000.0 / events.max(1) as f64);
        let (idle_sum, idle_max) = sum_max(&self.idle_rss);
        let (peak_sum, peak_max) = sum_max(&self.peak_rss);
        let startups: Vec<String> = self
            .startup
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect();
        let mut rows = vec![
            (
                "store x instances",
                format!("{} x {}", o.store.name(), o.instances),
            ),
            (
                "connections x batch",
                format!("{} x {}", o.connections, o.batch),
            ),
            ("duration", format!("{:.1} s", self.elapsed.as_secs_f64())),
            (
                "requests ok / failed",
                format!("{} / {}", self.requests, self.failures),
            ),
            (
                "events/s (durable)",
                format!("{:.0}", self.events_per_second()),
            ),
            (
                "latency p50",
                format!("{:.2} ms", ms(self.latencies.percentile(50.0))),
            ),
            (
                "latency p99",
                format!("{:.2} ms", ms(self.latencies.percentile(99.0))),
            ),
            (
                "latency p99.9",
                format!("{:.2} ms", ms(self.latencies.percentile(99.9))),
            ),
        ];
        if self.started {
            rows.extend([
                (
                    "not yet applied at the end",
                    format!("{} events", self.backlog_at_end),
                ),
                (
                    "applied, incl. catch-up",
                    format!("{:.0} events/s", self.applied_per_second()),
                ),
                ("server CPU per 1k events", per_1k(self.cpu_sum())),
                (
                    "server start-up to ready",
                    format!("{} ms", startups.join(" / ")),
                ),
                (
                    "server idle RSS",
                    format!("{:.1} MiB (max {:.1})", mib(idle_sum), mib(idle_max)),
                ),
                (
                    "server peak RSS",
                    format!("{:.1} MiB (max {:.1})", mib(peak_sum), mib(peak_max)),
                ),
            ]);
        }
        if let Some(split) = &self.split {
            rows.push(("CPU during load", split.describe()));
            if matches!(o.store, StoreArg::Postgres(_)) {
                rows.push(("postgres CPU per 1k events", per_1k(split.postgres)));
                rows.push((
                    "postgres backends (mean)",
                    describe_activity(&self.activity),
                ));
            }
        }
        let mut out = String::from("ingest\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<28} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let (idle_sum, idle_max) = sum_max(&self.idle_rss);
        let (peak_sum, peak_max) = sum_max(&self.peak_rss);
        json!({
            "scenario": "ingest",
            "store": self.options.store.name(),
            "instances": self.options.instances,
            "connections": self.options.connections,
            "batch": self.options.batch,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "failures": self.failures,
            "events_per_s": self.events_per_second(),
            "p50_ms": ms(self.latencies.percentile(50.0)),
            "p99_ms": ms(self.latencies.percentile(99.0)),
            "p999_ms": ms(self.latencies.percentile(99.9)),
            "cpu_s": self.cpu_sum().as_secs_f64(),
            "cpu_s_per_instance": self.cpu.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "cpu_split": self.split.as_ref().map(CpuSplit::json),
            "postgres_activity": self.activity,
            "backlog_at_end": self.backlog_at_end,
            "applied_per_s": self.applied_per_second(),
            "startup_ms": self.startup.first().map(|d| ms(*d)),
            "startup_ms_per_instance": self.startup.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "idle_rss_bytes": idle_sum,
            "idle_rss_bytes_max": idle_max,
            "peak_rss_bytes": peak_sum,
            "peak_rss_bytes_max": peak_max,
            "peak_rss_bytes_per_instance": self.peak_rss,
        })
    }
}
