//! Signed HubSpot batches, the connections that post them, and latency statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use followthrough::ingest::hubspot::signature::{SignedParts, sign_v3};
use followthrough_core::{Clock as _, SystemClock};

use crate::server::{PUBLIC_URL, SECRET};

/// A realistic mix: mostly property changes on contacts and deals, some creations.
pub fn hubspot_batch(first_event_id: u64, size: usize, objects: u64) -> String {
    let now = SystemClock.now().as_millis();
    let mut body = String::with_capacity(size * 260);
    body.push('[');
    for i in 0..size as u64 {
        let event_id = first_event_id + i;
        let object_id = (event_id * 7919) % objects + 1;
        if i > 0 {
            body.push(',');
        }
        let (subscription, property) = match event_id % 10 {
            0 => ("contact.creation", None),
            1..=5 => (
                "contact.propertyChange",
                Some(("lifecyclestage", "salesqualifiedlead")),
            ),
            6 => (
                "contact.propertyChange",
                Some(("notes_last_contacted", "1764324000000")),
            ),
            _ => ("deal.propertyChange", Some(("dealstage", "negotiation"))),
        };
        body.push_str(&format!(
            r#"{{"eventId":{event_id},"subscriptionId":2101,"portalId":62515,"appId":54321,"occurredAt":{now},"subscriptionType":"{subscription}","attemptNumber":0,"objectId":{object_id},"changeSource":"CRM_UI","sourceId":"userId:882761034""#
        ));
        if let Some((name, value)) = property {
            body.push_str(&format!(
                r#","propertyName":"{name}","propertyValue":"{value}""#
            ));
        }
        body.push('}');
    }
    body.push(']');
    body
}

/// The v3 signature headers for `body` posted to `/webhooks/hubspot`.
pub fn signature_headers(body: &[u8]) -> [(&'static str, String); 3] {
    let timestamp = SystemClock.now().as_millis().to_string();
    let uri = format!("{PUBLIC_URL}/webhooks/hubspot");
    let signature = sign_v3(
        SECRET.as_bytes(),
        SignedParts {
            method: "POST",
            uri: &uri,
            body,
        },
        &timestamp,
    );
    [
        ("content-type", "application/json".to_owned()),
        ("x-hubspot-signature-v3", signature),
        ("x-hubspot-request-timestamp", timestamp),
    ]
}

/// Builds the body of batch number `index` (from 0).
pub type BodyFn = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// What [`drive`] measured: one latency per 200 answer.
pub struct Driven {
    pub samples: Vec<Duration>,
    pub failures: u64,
    pub elapsed: Duration,
}

/// Keeps `connections` connections busy for `duration`, each posting one batch at a
/// time with a fresh v3 signature, and counts only 200 answers ("committed and
/// fsynced"). Connection `i` posts to `urls[i % urls.len()]`: with several instances,
/// the connections are dealt round robin.
///
/// Bodies are generated before the clock starts, so the load generator's own CPU use
/// (it shares the machine with the server) stays small during the measurement. Only
/// the signature, which carries a timestamp, is computed per request. Should the
/// server outrun the plan (1,000 batches/s), further bodies are built on the fly.
pub async fn drive(
    urls: &[String],
    connections: usize,
    duration: Duration,
    body: BodyFn,
) -> anyhow::Result<Driven> {
    let planned = (duration.as_secs_f64() * 1_000.0).ceil() as u64 + connections as u64;
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..planned).map(|i| Bytes::from(body(i))).collect());
    let next_body = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    anyhow::ensure!(!urls.is_empty(), "no server to drive");
    let mut workers = Vec::new();
    for connection in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, bodies, next_body, failures, body) = (
            urls[connection % urls.len()].clone(),
            bodies.clone(),
            next_body.clone(),
            failures.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let index = next_body.fetch_add(1, Ordering::Relaxed);
                let body = match bodies.get(index as usize) {
                    Some(body) => body.clone(),
                    None => Bytes::from(body(index)),
                };
                let mut request = client.post(&url);
                for (name, value) in signature_headers(&body) {
                    request = request.header(name, value);
                }
                let sent = Instant::now();
                let ok = matches!(request.body(body).send().await, Ok(response) if response.status() == 200);
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await?);
    }
    Ok(Driven {
        samples,
        failures: failures.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// Percentiles of a set of latencies.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank.min(self.0.len() - 1)]
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
