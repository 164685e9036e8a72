//! Prometheus metrics at `/metrics`.
//!
//! Counters are counted from the journal rows a commit wrote ([`Tally`]), after the
//! commit: every decision is journaled with its `kind` and `outcome`, so counting those
//! rows makes the metrics agree with the journal by construction, and one place counts
//! instead of a counter call beside every decision. Gauges (backlogs, pending timers,
//! dead letters, circuits) are read from the store and the outbox at scrape time, so
//! they are right after a restart and across instances sharing a store.
//!
//! The `metrics` facade with its Prometheus exporter (DEPENDENCIES.md's pick); the
//! exporter's own HTTP listener is off: `/metrics` is a route of our server.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use followthrough_store::{JournalEntry, JournalKind};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::api_error::ApiError;
use crate::server::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder (once per process), so counts from the first request on are
/// kept.
pub fn install() {
    handle();
}

/// The process's recorder, installed once (tests start several servers in a process).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed, which this binary never does.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "followthrough_webhooks_total",
        "Webhook requests, by source and outcome (accepted, rejected)."
    );
    describe_counter!(
        "followthrough_webhook_events_total",
        "Events in accepted webhooks, by source and outcome (inserted, duplicate)."
    );
    describe_counter!(
        "followthrough_events_total",
        "Events handled by the engine, by outcome (applied, deferred, echo_ignored)."
    );
    describe_counter!(
        "followthrough_rule_evaluations_total",
        "Rule evaluations, by rule and outcome (matched, no_match, failed)."
    );
    describe_counter!(
        "followthrough_runs_total",
        "Run transitions, by rule and outcome (started, completed, failed, cancelled...)."
    );
    describe_counter!(
        "followthrough_timers_total",
        "Timer transitions, by outcome (scheduled, cancelled, fired, skipped)."
    );
    describe_counter!(
        "followthrough_actions_total",
        "Actions, by action and outcome (queued, skipped, done, dead_letter, replayed)."
    );
    describe_counter!(
        "followthrough_action_attempts_total",
        "Outbox attempts, by connector and classification (success, retry, terminal, indeterminate...)."
    );
    describe_histogram!(
        "followthrough_action_attempt_duration_seconds",
        Unit::Seconds,
        "Latency of outbox attempts' API calls, by connector."
    );
    describe_counter!(
        "followthrough_circuit_transitions_total",
        "Connector circuit changes, by connector and new state."
    );
    describe_histogram!(
        "followthrough_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by route, method and status."
    );
    describe_counter!(
        "followthrough_alerts_total",
        "Alerts, by kind and outcome (sent, suppressed, failed)."
    );
    describe_counter!(
        "followthrough_pruned_total",
        "Rows deleted by retention, by table (journal, inbox)."
    );
    describe_gauge!(
        "followthrough_inbox_pending",
        "Events received and not yet applied."
    );
    describe_gauge!(
        "followthrough_runs_active",
        "Active runs, by rule and status (new, running, waiting)."
    );
    describe_gauge!(
        "followthrough_timers_pending",
        "Timers scheduled and not yet fired."
    );
    describe_gauge!(
        "followthrough_outbox_backlog",
        "Pending outbox jobs, by connector."
    );
    describe_gauge!(
        "followthrough_outbox_oldest_job_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending outbox job, by connector."
    );
    describe_gauge!(
        "followthrough_dead_letters",
        "Dead letters waiting for a person."
    );
    describe_gauge!(
        "followthrough_circuit_state",
        "Connector circuit: 0 closed, 1 half open, 2 open."
    );
    describe_gauge!("followthrough_rules_loaded", "Rules in force.");
    describe_gauge!(
        "followthrough_uptime_seconds",
        Unit::Seconds,
        "Seconds since this process started serving."
    );
}

/// A series' labels, as (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// A series while rows are being counted: its labels borrow from the rows, so counting
/// allocates once per distinct series, not once per row.
type BorrowedSeries<'a> = (&'static str, [(&'static str, &'a str); 2]);

/// What a set of journal rows adds to the counters, summed per series so a batch of
/// 2,000 events costs a few dozen counter updates, not thousands.
#[derive(Debug, Default)]
pub struct Tally {
    counts: HashMap<(&'static str, Labels), u64>,
    latencies: Vec<(String, f64)>,
}

impl Tally {
    pub fn of(entries: &[JournalEntry]) -> Self {
        // foldhash, not SipHash: every journal row of a batch is hashed here, on the
        // commit's path (SipHash made this 1% of firing timers).
        let mut counts: foldhash::HashMap<BorrowedSeries<'_>, u64> = foldhash::HashMap::default();
        let mut latencies = Vec::new();
        for entry in entries {
            if let Some(series) = series_of(entry) {
                *counts.entry(series).or_default() += 1;
            }
            if entry.kind == JournalKind::Attempt
                && let Some(ms) = entry.detail["latency_ms"].as_u64()
            {
                let connector = entry.detail["connector"].as_str().unwrap_or("").to_owned();
                latencies.push((connector, ms as f64 / 1000.0));
            }
        }
        let counts = counts
            .into_iter()
            .map(|((name, labels), count)| {
                let labels = labels
                    .iter()
                    .filter(|(key, _)| !key.is_empty())
                    .map(|(key, value)| (*key, (*value).to_owned()))
                    .collect();
                ((name, labels), count)
            })
            .collect();
        Self { counts, latencies }
    }

    /// Events applied: the inbox marks them, no journal row is written per event (the
    /// trace renders one from the inbox row).
    pub fn applied(mut self, events: usize) -> Self {
        if events > 0 {
            let key = (
                "followthrough_events_total",
                vec![("outcome", "applied".to_owned())],
            );
            *self.counts.entry(key).or_default() += events as u64;
        }
        self
    }

    /// Adds the tally to the counters: call it once the rows are committed.
    pub fn record(self) {
        handle();
        for ((name, labels), count) in self.counts {
            counter!(name, labels_of(labels)).increment(count);
        }
        for (connector, seconds) in self.latencies {
            histogram!("followthrough_action_attempt_duration_seconds", "connector" => connector)
                .record(seconds);
        }
    }
}

/// The counter a journal row adds one to, by its kind and outcome (`None` for rows no
/// counter counts, such as an association seen from the other end).
fn series_of(entry: &JournalEntry) -> Option<BorrowedSeries<'_>> {
    let detail = &entry.detail;
    let text = |key: &str| detail[key].as_str().unwrap_or("");
    let outcome = text("outcome");
    let one = |name, key, value| Some((name, [(key, value), ("", "")]));
    let two = |name, key, value| Some((name, [(key, value), ("outcome", outcome)]));
    match entry.kind {
        JournalKind::Webhook => two("followthrough_webhooks_total", "source", text("source")),
        JournalKind::Event if matches!(outcome, "applied" | "deferred" | "echo_ignored") => {
            one("followthrough_events_total", "outcome", outcome)
        }
        JournalKind::Event => None,
        JournalKind::Rule => two(
            "followthrough_rule_evaluations_total",
            "rule",
            text("rule_id"),
        ),
        JournalKind::Run => two("followthrough_runs_total", "rule", text("rule_id")),
        JournalKind::Timer => one("followthrough_timers_total", "outcome", outcome),
        JournalKind::Action => two("followthrough_actions_total", "action", text("action")),
        JournalKind::Attempt if outcome == "circuit" => Some((
            "followthrough_circuit_transitions_total",
            [("connector", text("connector")), ("to", text("to"))],
        )),
        JournalKind::Attempt => Some((
            "followthrough_action_attempts_total",
            [("connector", text("connector")), ("class", outcome)],
        )),
    }
}

fn labels_of(labels: Labels) -> Vec<metrics::Label> {
    labels
        .into_iter()
        .map(|(key, value)| metrics::Label::new(key, value))
        .collect()
}

/// Counts a webhook request (the ingest counts these itself: its journal row is written
/// by the store together with the events).
pub fn webhook(source: &'static str, outcome: &'static str) {
    handle();
    counter!("followthrough_webhooks_total", "source" => source, "outcome" => outcome).increment(1);
}

/// Counts what retention deleted.
pub fn pruned(pruned: followthrough_store::Pruned) {
    handle();
    counter!("followthrough_pruned_total", "table" => "journal").increment(pruned.journal_rows);
    counter!("followthrough_pruned_total", "table" => "inbox").increment(pruned.inbox_rows);
}

/// Counts an alert sent, suppressed by the rate limit, or failed.
pub fn alert(kind: &'static str, outcome: &'static str) {
    handle();
    counter!("followthrough_alerts_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// Counts an accepted webhook's events (the journal row holds the request, not them).
pub fn webhook_events(source: &'static str, inserted: usize, duplicates: usize) {
    handle();
    counter!("followthrough_webhook_events_total", "source" => source, "outcome" => "inserted")
        .increment(inserted as u64);
    counter!("followthrough_webhook_events_total", "source" => source, "outcome" => "duplicate")
        .increment(duplicates as u64);
}

/// Middleware: every request's latency, by the route that matched (never the raw path,
/// which would make a series per object id).
pub async fn observe_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    handle();
    histogram!(
        "followthrough_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the gauges refreshed from the store and the outbox, then everything
/// in Prometheus text format.
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = handle();
    let stats = state.store.stats().await.map_err(ApiError::unavailable)?;
    let now = state.clock.now();
    gauge!("followthrough_inbox_pending").set(stats.inbox_pending as f64);
    gauge!("followthrough_timers_pending").set(stats.timers_pending as f64);
    gauge!("followthrough_dead_letters").set(stats.dead_letters as f64);
    gauge!("followthrough_rules_loaded").set(state.rules.current().rules().len() as f64);
    gauge!("followthrough_uptime_seconds").set(now.since(state.started_at).as_secs_f64());

    let mut runs = Vec::new();
    for count in &stats.active_runs {
        let labels = vec![
            ("rule", count.rule_id.clone()),
            ("status", count.status.clone()),
        ];
        gauge!("followthrough_runs_active", labels_of(labels.clone())).set(count.count as f64);
        runs.push(labels);
    }
    zero_the_rest("followthrough_runs_active", runs);

    let mut connectors = Vec::new();
    for backlog in &stats.outbox_pending {
        let labels = vec![("connector", backlog.connector.clone())];
        gauge!("followthrough_outbox_backlog", labels_of(labels.clone()))
            .set(backlog.pending as f64);
        let age = backlog
            .oldest_created_at
            .map_or(Duration::ZERO, |at| now.since(at));
        gauge!(
            "followthrough_outbox_oldest_job_age_seconds",
            labels_of(labels.clone())
        )
        .set(age.as_secs_f64());
        connectors.push(labels);
    }
    zero_the_rest("followthrough_outbox_backlog", connectors.clone());
    zero_the_rest("followthrough_outbox_oldest_job_age_seconds", connectors);

    for health in state.outbox.health() {
        let state = match health.circuit {
            "closed" => 0.0,
            "half_open" => 1.0,
            _ => 2.0,
        };
        gauge!("followthrough_circuit_state", "connector" => health.connector).set(state);
    }

    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Sets to 0 the series of `name` that were set at an earlier scrape but are absent now
/// (a rule whose last waiting run ended), so a gauge never shows a stale count.
fn zero_the_rest(name: &'static str, present: Vec<Labels>) {
    static SEEN: OnceLock<Mutex<HashMap<&'static str, BTreeSet<Labels>>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let known = seen.entry(name).or_default();
    let present: BTreeSet<_> = present.into_iter().collect();
    for gone in known.difference(&present) {
        gauge!(name, labels_of(gone.clone())).set(0.0);
    }
    known.extend(present);
}

#[cfg(test)]
mod tests {
    use super::*;
    use followthrough_core::Timestamp;
    use serde_json::json;

    fn row(kind: JournalKind, summary: &str, detail: serde_json::Value) -> JournalEntry {
        JournalEntry {
            at: Timestamp(0),
            object: None,
            kind,
            summary: summary.into(),
            detail,
        }
    }

    #[test]
    fn a_tally_sums_rows_per_series() {
        let rule = |outcome: &str| {
            row(
                JournalKind::Rule,
                "rule",
                json!({ "rule_id": "r", "outcome": outcome }),
            )
        };
        let tally = Tally::of(&[
            rule("matched"),
            rule("matched"),
            rule("no_match"),
            row(
                JournalKind::Event,
                "applied contact.creation",
                json!({ "outcome": "applied" }),
            ),
            row(JournalKind::Event, "association with x changed", json!({})),
            row(
                JournalKind::Attempt,
                "attempt",
                json!({ "connector": "hubspot", "outcome": "success", "latency_ms": 12 }),
            ),
        ]);
        let count = |name: &'static str, labels: &[(&'static str, &str)]| {
            let key = (
                name,
                labels
                    .iter()
                    .map(|(k, v)| (*k, (*v).to_owned()))
                    .collect::<Vec<_>>(),
            );
            tally.counts.get(&key).copied().unwrap_or(0)
        };
        let matched = [("rule", "r"), ("outcome", "matched")];
        assert_eq!(count("followthrough_rule_evaluations_total", &matched), 2);
        let no_match = [("rule", "r"), ("outcome", "no_match")];
        assert_eq!(count("followthrough_rule_evaluations_total", &no_match), 1);
        assert_eq!(
            count("followthrough_events_total", &[("outcome", "applied")]),
            1
        );
        let success = [("connector", "hubspot"), ("class", "success")];
        assert_eq!(count("followthrough_action_attempts_total", &success), 1);
        assert_eq!(tally.latencies, vec![("hubspot".to_owned(), 0.012)]);
    }
}
