//! The `soak` scenario (issue #8): a steady rate of signed webhooks for a fixed time
//! against a server with the example rules loaded, sampling the server's RSS and the
//! request latency every few seconds, to tell whether either drifts.
//!
//! The load is open loop: request `k` is due at `k * batch / rate` seconds from the
//! start, whether or not earlier ones were answered, so a server that slows down shows
//! it in the latency instead of in a lower rate (no coordinated omission). At most
//! `MAX_IN_FLIGHT` requests are outstanding; a request due while that many are waiting
//! is counted as skipped, not sent.
//!
//! The events are the end-to-end scenario's (`mix.rs`): contacts and deals walking
//! through the example rules' triggers, so runs, timers and outbox rows accumulate as
//! they would in production. A fake HubSpot answers the owner look-ups and the actions.
//!
//! "Flat" compares the first third of the run with the last third: RSS (the mean of the
//! samples taken in each third) and p99 latency (over every request sent in each third).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use crate::fleet::{StoreArg, mib};
use crate::load::{Latencies, ms, signature_headers};
use crate::mix::workflow_batch;

const MAX_IN_FLIGHT: usize = 512;
/// RSS counts as flat if the last third's mean is within this ratio of the first's.
const RSS_FLAT_RATIO: f64 = 1.10;
/// p99 counts as flat if the last third's is within this ratio of the first's, or
/// within `P99_FLAT_SLACK` of it (a few ms either way is noise at these latencies).
const P99_FLAT_RATIO: f64 = 1.5;
const P99_FLAT_SLACK: Duration = Duration::from_millis(5);

pub struct Options {
    pub rate: u64,
    pub batch: usize,
    pub duration: Duration,
    pub sample_every: Duration,
    pub objects: u64,
    pub owners: u64,
    pub store: StoreArg,
    pub instances: usize,
}

/// One request: when it was sent (from the start of the load), how long the answer
/// took, whether it was a 200.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Duration,
    latency: Duration,
    ok: bool,
}

/// One sample of the server, taken every `sample_every`.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    /// VmRSS of each instance.
    rss: Vec<u64>,
    /// Events accepted but not yet applied.
    pending: i64,
    /// Server CPU (all instances) since the previous sample, in cores.
    cpu_cores: f64,
}

/// Latency over one window of the run.
#[derive(Debug, Clone)]
struct Window {
    from: Duration,
    to: Duration,
    requests: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
    rss: u64,
    pending: i64,
    cpu_cores: f64,
}

pub struct Report {
    options: Options,
    elapsed: Duration,
    sent: usize,
    ok: usize,
    failed: usize,
    skipped: u64,
    latencies: Latencies,
    windows: Vec<Window>,
    idle_rss: u64,
    peak_rss: u64,
    drain: Duration,
    backlog_at_end: i64,
    rss_first: f64,
    rss_last: f64,
    p99_first: Duration,
    p99_last: Duration,
    outbox_rows: i64,
    outbox_by_status: Vec<(String, i64)>,
    hubspot_requests: usize,
    /// Dead letters by action, kind and the start of the message (the commonest few).
    /// The fake HubSpot knows the owners, not the contacts and deals the webhooks
    /// name, so tasks associated with them and deal updates die there.
    dead_letters: Vec<(String, i64)>,
    runs: i64,
    timers: i64,
}

pub async fn run(binary: &Path, options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.rate > 0, "--rate must be more than 0");
    anyhow::ensure!(options.batch > 0, "--batch must be more than 0");
    let (hubspot, fleet) = crate::end_to_end::start_with_example_rules(
        binary,
        &options.store,
        options.instances,
        options.owners,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = fleet.rss().iter().sum();
    let urls = fleet.urls("/webhooks/hubspot");
    let mut db = fleet.db().await?;

    // One client with a connection pool: open loop needs as many connections as
    // requests in flight.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let interval = Duration::from_secs_f64(options.batch as f64 / options.rate as f64);
    let total = (options.duration.as_secs_f64() / interval.as_secs_f64()).round() as u64;
    let results: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let (batch, objects, owners) = (options.batch, options.objects, options.owners);
    let generator = {
        let (results, in_flight) = (results.clone(), in_flight.clone());
        tokio::spawn(async move {
            let mut skipped = 0u64;
            let mut tasks = tokio::task::JoinSet::new();
            for k in 0..total {
                tokio::time::sleep_until((started + interval.mul_f64(k as f64)).into()).await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let body = workflow_batch(k, batch, objects, owners);
                let mut request = client.post(&urls[k as usize % urls.len()]);
                for (name, value) in signature_headers(body.as_bytes()) {
                    request = request.header(name, value);
                }
                let results = results.clone();
                tasks.spawn(async move {
                    let at = started.elapsed();
                    let sent = Instant::now();
                    let ok = matches!(request.body(body).send().await,
                        Ok(response) if response.status() == 200);
                    let latency = sent.elapsed();
                    drop(permit);
                    results.lock().unwrap().push(Sent { at, latency, ok });
                });
                // Reap finished tasks as we go so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            skipped
        })
    };

    let mut samples = Vec::new();
    let mut last_cpu: Duration = fleet.cpu_times().iter().sum();
    let mut last_at = Duration::ZERO;
    let mut next = options.sample_every;
    while next <= options.duration {
        tokio::time::sleep_until((started + next).into()).await;
        let at = started.elapsed();
        let cpu: Duration = fleet.cpu_times().iter().sum();
        samples.push(Sample {
            at,
            rss: fleet.rss(),
            pending: db.pending_events().await?,
            cpu_cores: (cpu - last_cpu).as_secs_f64() / (at - last_at).as_secs_f64(),
        });
        (last_cpu, last_at) = (cpu, at);
        next += options.sample_every;
    }
    let skipped = generator.await?;
    let elapsed = started.elapsed();
    let backlog_at_end = db.pending_events().await?;
    let draining = Instant::now();
    while db.any_pending().await? && draining.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = draining.elapsed();
    let peak_rss = fleet.peak_rss().iter().sum();
    let outbox_rows = db.scalar("SELECT COUNT(*) FROM outbox").await?;
    let outbox_by_status = db
        .text_counts("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
        .await?;
    let hubspot_requests = hubspot.request_count("/");
    let dead_letters = db
        .text_counts(
            "SELECT o.action || ' ' || d.kind || ': ' || substr(d.message, 1, 48), COUNT(*)
             FROM dead_letters d JOIN outbox o ON o.seq = d.seq
             GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        )
        .await?;
    let runs = db.scalar("SELECT COUNT(*) FROM runs").await?;
    let timers = db.scalar("SELECT COUNT(*) FROM timers").await?;
    drop(db);
    fleet.stop().await?;

    let mut sent = std::mem::take(&mut *results.lock().unwrap());
    sent.sort_by_key(|s| s.at);
    let windows = windows(&sent, &samples);
    let third = options.duration / 3;
    let rss_mean = |keep: &dyn Fn(Duration) -> bool| {
        let picked: Vec<f64> = samples
            .iter()
            .filter(|s| keep(s.at))
            .map(|s| s.rss.iter().sum::<u64>() as f64)
            .collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    let p99_of = |keep: &dyn Fn(Duration) -> bool| {
        Latencies::new(
            sent.iter()
                .filter(|s| s.ok && keep(s.at))
                .map(|s| s.latency)
                .collect(),
        )
        .percentile(99.0)
    };
    let first = |at: Duration| at <= third;
    let last = |at: Duration| at > options.duration - third;
    Ok(Report {
        elapsed,
        sent: sent.len(),
        ok: sent.iter().filter(|s| s.ok).count(),
        failed: sent.iter().filter(|s| !s.ok).count(),
        skipped,
        latencies: Latencies::new(sent.iter().filter(|s| s.ok).map(|s| s.latency).collect()),
        windows,
        idle_rss,
        peak_rss,
        drain,
        backlog_at_end,
        rss_first: rss_mean(&first),
        rss_last: rss_mean(&last),
        p99_first: p99_of(&first),
        p99_last: p99_of(&last),
        outbox_rows,
        outbox_by_status,
        hubspot_requests,
        dead_letters,
        runs,
        timers,
        options,
    })
}

/// Latency per sampling window (requests by the time they were sent), with the sample
/// taken at the window's end.
fn windows(sent: &[Sent], samples: &[Sample]) -> Vec<Window> {
    let mut out = Vec::new();
    let mut from = Duration::ZERO;
    for sample in samples {
        let inside: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.at >= from && s.at < sample.at)
            .collect();
        let latencies = Latencies::new(inside.iter().filter(|s| s.ok).map(|s| s.latency).collect());
        out.push(Window {
            from,
            to: sample.at,
            requests: inside.len(),
            failed: inside.iter().filter(|s| !s.ok).count(),
            p50: latencies.percentile(50.0),
            p99: latencies.percentile(99.0),
            rss: sample.rss.iter().sum(),
            pending: sample.pending,
            cpu_cores: sample.cpu_cores,
        });
        from = sample.at;
    }
    out
}

impl Window {
    fn json(&self) -> serde_json::Value {
        json!({
            "from_s": self.from.as_secs_f64(),
            "to_s": self.to.as_secs_f64(),
            "requests": self.requests,
            "failed": self.failed,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "rss_bytes": self.rss,
            "pending_events": self.pending,
            "server_cpu_cores": self.cpu_cores,
        })
    }
}

impl Report {
    fn events_per_second(&self) -> f64 {
        (self.ok * self.options.batch) as f64 / self.elapsed.as_secs_f64()
    }

    fn rss_flat(&self) -> bool {
        self.rss_last <= self.rss_first * RSS_FLAT_RATIO
    }

    fn p99_flat(&self) -> bool {
        self.p99_last.as_secs_f64() <= self.p99_first.as_secs_f64() * P99_FLAT_RATIO
            || self.p99_last <= self.p99_first + P99_FLAT_SLACK
    }

    fn verdict(flat: bool) -> &'static str {
        if flat { "flat" } else { "GROWING" }
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let statuses = self
            .outbox_by_status
            .iter()
            .map(|(status, n)| format!("{status} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = [
            (
                "store x instances",
                format!("{} x {}", o.store.name(), o.instances),
            ),
            (
                "target rate",
                format!(
                    "{} events/s ({} events per request, {:.0} requests/s)",
                    o.rate,
                    o.batch,
                    o.rate as f64 / o.batch as f64
                ),
            ),
            ("duration", format!("{:.1} s", self.elapsed.as_secs_f64())),
            (
                "requests ok / failed / skipped",
                format!("{} / {} / {}", self.ok, self.failed, self.skipped),
            ),
            (
                "events/s accepted",
                format!("{:.0}", self.events_per_second()),
            ),
            (
                "latency p50 / p99 / max",
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    ms(self.latencies.percentile(50.0)),
                    ms(self.latencies.percentile(99.0)),
                    ms(self.latencies.percentile(100.0))
                ),
            ),
            (
                "RSS idle -> peak",
                format!("{:.1} -> {:.1} MiB", mib(self.idle_rss), mib(self.peak_rss)),
            ),
            (
                "RSS first -> last third",
                format!(
                    "{:.1} -> {:.1} MiB ({:+.1}%): {}",
                    self.rss_first / 1048576.0,
                    self.rss_last / 1048576.0,
                    (self.rss_last / self.rss_first.max(1.0) - 1.0) * 100.0,
                    Self::verdict(self.rss_flat())
                ),
            ),
            (
                "p99 first -> last third",
                format!(
                    "{:.2} -> {:.2} ms: {}",
                    ms(self.p99_first),
                    ms(self.p99_last),
                    Self::verdict(self.p99_flat())
                ),
            ),
            (
                "not yet applied at the end",
                format!(
                    "{} events (caught up in {:.1} s)",
                    self.backlog_at_end,
                    self.drain.as_secs_f64()
                ),
            ),
            (
                "outbox rows (by status) / runs / timers",
                format!(
                    "{} ({}) / {} / {}",
                    self.outbox_rows, statuses, self.runs, self.timers
                ),
            ),
            (
                "requests to the fake HubSpot",
                self.hubspot_requests.to_string(),
            ),
            (
                "dead letters",
                self.dead_letters
                    .iter()
                    .map(|(what, n)| format!("{n} x {what}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ];
        let mut out = String::from("soak\n");
        for (name, value) in rows {
            out.push_str(&format!("  {name:<34} {value}\n"));
        }
        out.push_str(
            "  window        requests  failed   p50 ms   p99 ms   RSS MiB  pending  server cores\n",
        );
        for w in &self.windows {
            out.push_str(&format!(
                "  {:>5.1}-{:<5.1}s  {:>8}  {:>6}  {:>7.2}  {:>7.2}  {:>8.1}  {:>7}  {:>12.2}\n",
                w.from.as_secs_f64(),
                w.to.as_secs_f64(),
                w.requests,
                w.failed,
                ms(w.p50),
                ms(w.p99),
                mib(w.rss),
                w.pending,
                w.cpu_cores
            ));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let o = &self.options;
        json!({
            "scenario": "soak",
            "store": o.store.name(),
            "instances": o.instances,
            "rate_target_events_per_s": o.rate,
            "batch": o.batch,
            "duration_s": self.elapsed.as_secs_f64(),
            "sample_every_s": o.sample_every.as_secs_f64(),
            "requests_sent": self.sent,
            "requests_ok": self.ok,
            "requests_failed": self.failed,
            "requests_skipped": self.skipped,
            "events_per_s": self.events_per_second(),
            "p50_ms": ms(self.latencies.percentile(50.0)),
            "p99_ms": ms(self.latencies.percentile(99.0)),
            "max_ms": ms(self.latencies.percentile(100.0)),
            "idle_rss_bytes": self.idle_rss,
            "peak_rss_bytes": self.peak_rss,
            "rss_first_third_bytes": self.rss_first,
            "rss_last_third_bytes": self.rss_last,
            "rss_flat": self.rss_flat(),
            "p99_first_third_ms": ms(self.p99_first),
            "p99_last_third_ms": ms(self.p99_last),
            "p99_flat": self.p99_flat(),
            "backlog_at_end": self.backlog_at_end,
            "drain_s": self.drain.as_secs_f64(),
            "outbox_rows": self.outbox_rows,
            "outbox_by_status": self.outbox_by_status,
            "hubspot_requests": self.hubspot_requests,
            "dead_letters": self.dead_letters,
            "runs": self.runs,
            "timers": self.timers,
            "series": self.windows.iter().map(Window::json).collect::<Vec<_>>(),
        })
    }
}
