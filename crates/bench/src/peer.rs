//! The peer comparison: the same workflow on followthrough and on a general workflow tool
//! (n8n). A CRM event arrives by webhook, a condition checks the property, and an HTTP
//! request goes to a local sink. Every event here meets the condition, so each one
//! costs one webhook in and one HTTP call out on either side.
//!
//! The sink runs in this process on 127.0.0.1:9999 (the address the n8n workflow in
//! `bench/peers/n8n/workflow.json` calls). It counts arrivals and matches each one to
//! the moment its event was sent, which gives the latency from event to action.
//! Throughput is counted at the sink, not at the webhook: a tool that answers the
//! webhook and then falls behind has not done the work.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::load::{Latencies, ms};
use crate::server::Server;

pub const SINK_ADDR: &str = "127.0.0.1:9999";

/// followthrough's side of the workflow: the same condition and the same request.
pub const RULE: (&str, &str) = (
    "sql-to-sink.yaml",
    r#"id: sql-to-sink
description: A contact becomes "sql" -> tell the sink (the n8n peer workflow's work).
on: { object: contact, change: lifecyclestage, to: sql }
key: object
on_retrigger: parallel
steps:
  - http:
      url: "http://127.0.0.1:9999/create-task"
      body: { objectId: "{{ event.object.id }}", propertyValue: "sql", title: "Follow up SQL lead" }
"#,
);

pub enum Target<'a> {
    /// Start `followthrough serve` (this binary) with [`RULE`].
    Followthrough { binary: &'a Path },
    /// A running n8n whose workflow listens at `url`; `pid` for its CPU and RSS.
    N8n { url: String, pid: Option<u32> },
}

pub struct Options {
    pub connections: usize,
    pub duration: Duration,
    /// How long to wait after the load for the sink to receive what was accepted.
    pub drain: Duration,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub target: String,
    pub connections: usize,
    pub seconds: f64,
    /// Webhooks answered 2xx during the load.
    pub accepted: u64,
    pub failed: u64,
    /// Requests that reached the sink (by the end of the drain).
    pub delivered: u64,
    /// Sink arrivals per second, over the load plus the drain it needed.
    pub delivered_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub cpu_ms_per_event: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

#[derive(Default)]
struct Sink {
    sent: Mutex<HashMap<u64, Instant>>,
    latencies: Mutex<Vec<Duration>>,
    hits: AtomicU64,
}

async fn create_task(State(sink): State<Arc<Sink>>, body: axum::body::Bytes) -> &'static str {
    sink.hits.fetch_add(1, Ordering::Relaxed);
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| match &v["objectId"] {
            Value::String(text) => text.parse().ok(),
            other => other.as_u64(),
        });
    if let Some(id) = id {
        let sent = sink.sent.lock().unwrap().remove(&id);
        if let Some(sent) = sent {
            sink.latencies.lock().unwrap().push(sent.elapsed());
        }
    }
    "{\"ok\":true}"
}

/// One HubSpot-shaped property change, `lifecyclestage` -> `sql`, of its own contact.
fn event(id: u64, now_ms: i64) -> Value {
    json!({
        "eventId": id, "subscriptionId": 2101, "portalId": 62515, "appId": 54321,
        "occurredAt": now_ms, "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0, "objectId": id, "propertyName": "lifecyclestage",
        "propertyValue": "sql", "changeSource": "CRM_UI"
    })
}

pub async fn run(target: Target<'_>, options: Options) -> anyhow::Result<Report> {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind(SINK_ADDR).await?;
    let app = Router::new()
        .route("/create-task", post(create_task))
        .with_state(Arc::clone(&sink));
    let sink_server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (name, url, signed, server, pid) = match target {
        Target::Followthrough { binary } => {
            let env = [
                (
                    "FOLLOWTHROUGH__CONNECTORS__HTTP__ALLOWED_HOSTS",
                    "[\"127.0.0.1\"]".to_owned(),
                ),
                (
                    "FOLLOWTHROUGH__CONNECTORS__HTTP__CONCURRENCY",
                    "64".to_owned(),
                ),
                (
                    "FOLLOWTHROUGH__CONNECTORS__HTTP__RATE_LIMIT",
                    "1000000".to_owned(),
                ),
            ];
            let server = Server::start_with_rules(binary, &[RULE], &env).await?;
            let url = server.url("/webhooks/hubspot");
            ("followthrough".to_owned(), url, true, Some(server), None)
        }
        Target::N8n { url, pid } => ("n8n".to_owned(), url, false, None, pid),
    };
    let cpu_before = cpu_of(server.as_ref(), pid);

    let next_id = Arc::new(AtomicU64::new(1));
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for _ in 0..options.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let (url, sink, next_id, accepted, failed) = (
            url.clone(),
            Arc::clone(&sink),
            Arc::clone(&next_id),
            Arc::clone(&accepted),
            Arc::clone(&failed),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let now_ms = jiff::Timestamp::now().as_millisecond();
                // HubSpot sends arrays; n8n's webhook node gets the event object itself.
                let body = if signed {
                    json!([event(id, now_ms)]).to_string()
                } else {
                    event(id, now_ms).to_string()
                };
                let mut request = client.post(&url);
                if signed {
                    for (name, value) in crate::load::signature_headers(body.as_bytes()) {
                        request = request.header(name, value);
                    }
                } else {
                    request = request.header("content-type", "application/json");
                }
                sink.sent.lock().unwrap().insert(id, Instant::now());
                match request.body(body).send().await {
                    Ok(response) if response.status().is_success() => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        sink.sent.lock().unwrap().remove(&id);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let accepted = accepted.load(Ordering::Relaxed);
    let drain_until = Instant::now() + options.drain;
    while sink.hits.load(Ordering::Relaxed) < accepted && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let delivered = sink.hits.load(Ordering::Relaxed);
    let cpu = cpu_of(server.as_ref(), pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let peak = match (&server, pid) {
        (Some(server), _) => Some(server.peak_rss()),
        (None, Some(pid)) => Some(crate::server::status_kib(pid, "VmHWM:") * 1024),
        _ => None,
    };
    if let Some(server) = server {
        server.stop()?;
    }
    sink_server.abort();
    let latencies = Latencies::new(std::mem::take(&mut *sink.latencies.lock().unwrap()));
    Ok(Report {
        target: name,
        connections: options.connections,
        seconds,
        accepted,
        failed: failed.load(Ordering::Relaxed),
        delivered,
        delivered_per_second: delivered as f64 / seconds,
        latency_p50_ms: ms(latencies.percentile(50.0)),
        latency_p99_ms: ms(latencies.percentile(99.0)),
        cpu_ms_per_event: cpu
            .filter(|_| delivered > 0)
            .map(|c| ms(c) / delivered as f64),
        peak_rss_mib: peak.map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
    })
}

fn cpu_of(server: Option<&Server>, pid: Option<u32>) -> Option<Duration> {
    match (server, pid) {
        (Some(server), _) => Some(server.cpu_time()),
        (None, Some(pid)) => Some(crate::server::cpu_time_of(pid)),
        _ => None,
    }
}

impl Report {
    pub fn table(&self) -> String {
        let optional =
            |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.2} {unit}"));
        format!(
            "| target | conn | accepted | failed | delivered | delivered/s | event->action p50 | p99 | CPU/event | peak RSS |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {} | {:.1} | {:.1} ms | {:.1} ms | {} | {} |",
            self.target,
            self.connections,
            self.accepted,
            self.failed,
            self.delivered,
            self.delivered_per_second,
            self.latency_p50_ms,
            self.latency_p99_ms,
            optional(self.cpu_ms_per_event, "ms"),
            optional(self.peak_rss_mib, "MiB"),
        )
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
