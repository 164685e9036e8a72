//! Signed HubSpot batches, and latency statistics.

use std::time::Duration;

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
