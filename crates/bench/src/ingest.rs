//! The `ingest` scenario: how many events per second the server acknowledges durably.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{Latencies, drive, hubspot_batch, ms};
use crate::server::Server;

pub struct Options {
    pub connections: usize,
    pub batch: usize,
    pub duration: Duration,
    pub objects: u64,
}

pub struct Report {
    options: Options,
    requests: u64,
    failures: u64,
    elapsed: Duration,
    latencies: Latencies,
    startup: Duration,
    backlog_at_end: i64,
    drain: Duration,
    idle_rss: u64,
    peak_rss: u64,
    cpu: Duration,
}

pub async fn run(
    binary: &Path,
    external: Option<&str>,
    options: Options,
) -> anyhow::Result<Report> {
    let server = match external {
        Some(_) => None,
        None => Some(Server::start(binary, &[]).await?),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let startup = server.as_ref().map(|s| s.startup).unwrap_or_default();
    let idle_rss = server.as_ref().map(Server::rss).unwrap_or_default();
    let cpu_before = server.as_ref().map(Server::cpu_time).unwrap_or_default();
    let url = match (&server, external) {
        (Some(server), _) => server.url("/webhooks/hubspot"),
        (None, Some(base)) => format!("{}/webhooks/hubspot", base.trim_end_matches('/')),
        (None, None) => unreachable!("either a server was started or a URL given"),
    };
    let (batch, objects) = (options.batch as u64, options.objects);
    let driven = drive(
        &url,
        options.connections,
        options.duration,
        Arc::new(move |i| hubspot_batch(1 + i * batch, batch as usize, objects)),
    )
    .await?;
    let elapsed = driven.elapsed;
    let cpu = server
        .as_ref()
        .map(Server::cpu_time)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    // The engine applies events behind ingest; how long it needs to catch up tells
    // whether the ingest rate is one the whole pipeline can sustain.
    let mut backlog_at_end = 0;
    let mut drain = Duration::ZERO;
    if let Some(server) = &server {
        backlog_at_end = server.pending_events()?;
        let draining = Instant::now();
        while server.pending_events()? > 0 && draining.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drain = draining.elapsed();
    }
    let peak_rss = server.as_ref().map(Server::peak_rss).unwrap_or_default();
    if let Some(server) = server {
        server.stop()?;
    }
    Ok(Report {
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

    pub fn table(&self) -> String {
        let o = &self.options;
        let events = self.requests * o.batch as u64;
        let rows = [
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
            (
                "not yet applied at the end",
                format!("{} events", self.backlog_at_end),
            ),
            (
                "applied, incl. catch-up",
                format!("{:.0} events/s", self.applied_per_second()),
            ),
            (
                "server CPU per 1k events",
                format!("{:.2} ms", ms(self.cpu) * 1000.0 / events.max(1) as f64),
            ),
            (
                "server start-up to ready",
                format!("{:.0} ms", ms(self.startup)),
            ),
            (
                "server idle RSS",
                format!("{:.1} MiB", self.idle_rss as f64 / 1048576.0),
            ),
            (
                "server peak RSS",
                format!("{:.1} MiB", self.peak_rss as f64 / 1048576.0),
            ),
        ];
        let mut out = String::from("ingest\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<28} {value}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "ingest",
            "connections": self.options.connections,
            "batch": self.options.batch,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": self.requests,
            "failures": self.failures,
            "events_per_s": self.events_per_second(),
            "p50_ms": ms(self.latencies.percentile(50.0)),
            "p99_ms": ms(self.latencies.percentile(99.0)),
            "p999_ms": ms(self.latencies.percentile(99.9)),
            "cpu_s": self.cpu.as_secs_f64(),
            "backlog_at_end": self.backlog_at_end,
            "applied_per_s": self.applied_per_second(),
            "startup_ms": ms(self.startup),
            "idle_rss_bytes": self.idle_rss,
            "peak_rss_bytes": self.peak_rss,
        })
    }
}
