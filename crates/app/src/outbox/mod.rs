//! The outbox workers: each action a run decided is performed once by its connector.
//!
//! Claim, then call, then record: a worker leases a batch of due jobs in one short
//! transaction ([`Store::claim_jobs`]), calls the connector outside any transaction,
//! and records each outcome with its journal rows in another
//! ([`Store::record_attempt`]). A worker that dies mid-call leaves its lease to expire;
//! the next claim of that job knows the call may have happened
//! (`after_indeterminate`), and the connector checks before it creates anything again,
//! or the job is parked for a person.
//!
//! One lane per configured connector, each with its own concurrency, rate limit
//! ([`RateLimiter`], per bucket) and circuit ([`Circuit`]). `run_once` is one claim
//! batch of one lane, so tests drive the workers step by step with a `ManualClock`;
//! `run` is the loop around it.

mod assign;
mod attempt;
pub mod lanes;
mod record;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use followthrough_connectors::circuit::{Admission, Circuit};
use followthrough_connectors::limit::RateLimiter;
use followthrough_connectors::{Connector, RetryPolicy};
use followthrough_core::Clock;
use followthrough_store::{ClaimedJob, Store, StoreError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::connectors::Pace;
pub use assign::Teams;

/// One connector and how hard its workers may push it.
pub struct Lane {
    pub connector: Arc<dyn Connector>,
    pub pace: Pace,
    circuit: Mutex<Circuit>,
}

impl Lane {
    pub fn new(connector: Arc<dyn Connector>, pace: Pace, circuit: Circuit) -> Self {
        Self {
            connector,
            pace,
            circuit: Mutex::new(circuit),
        }
    }

    fn circuit(&self) -> std::sync::MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connector's circuit, as [`Outbox::health`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorHealth {
    pub connector: &'static str,
    /// `closed` (healthy), `open` (not sending: the API looked down) or `half_open`
    /// (one probe in flight).
    pub circuit: &'static str,
    pub consecutive_failures: u32,
}

/// What the workers need.
pub struct OutboxParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub lanes: Vec<Lane>,
    pub policy: RetryPolicy,
    pub limiter: RateLimiter,
    pub teams: Teams,
    /// Scrubs the journal rows of attempts (an API error may quote a contact's email).
    pub redactor: crate::journal::Redactor,
    pub lease: Duration,
    pub claim_batch: usize,
    pub poll: Duration,
    /// Poked when an outcome woke a run (a lookup's), so the engine does not wait for
    /// its next poll.
    pub engine_wake: Arc<Notify>,
}

#[derive(Clone)]
pub struct Outbox {
    parts: Arc<OutboxParts>,
}

impl Outbox {
    pub fn new(parts: OutboxParts) -> Self {
        Self {
            parts: Arc::new(parts),
        }
    }

    /// The connectors that have workers.
    pub fn connectors(&self) -> Vec<&'static str> {
        self.parts
            .lanes
            .iter()
            .map(|l| l.connector.name())
            .collect()
    }

    /// Each connector's circuit as it stands: what health checks, metrics and the
    /// console show as a failing connector.
    pub fn health(&self) -> Vec<ConnectorHealth> {
        self.parts
            .lanes
            .iter()
            .map(|lane| {
                let circuit = lane.circuit();
                ConnectorHealth {
                    connector: lane.connector.name(),
                    circuit: circuit.state().name(),
                    consecutive_failures: circuit.failures(),
                }
            })
            .collect()
    }

    /// Claims one batch of `connector`'s due jobs and performs them (up to the lane's
    /// concurrency at once). Returns how many jobs it claimed; 0 when nothing is due or
    /// the circuit is open. The step tests drive; `run` keeps lanes full instead.
    pub async fn run_once(&self, connector: &str) -> Result<usize, StoreError> {
        let Some(lane) = self.lane(connector) else {
            return Ok(0);
        };
        let limit = self.parts.claim_batch.min(lane.pace.concurrency * 4);
        let jobs = self.claim(lane, limit).await?;
        let claimed = jobs.len();
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(jobs)
            .map(|job| attempt::perform(&self.parts, lane, job))
            .buffer_unordered(lane.pace.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(claimed)
    }

    fn lane(&self, connector: &str) -> Option<&Lane> {
        self.parts
            .lanes
            .iter()
            .find(|lane| lane.connector.name() == connector)
    }

    /// Claims up to `room` due jobs of the lane, as its circuit allows: none while it is
    /// open or its probe is out, one as the probe.
    async fn claim(&self, lane: &Lane, room: usize) -> Result<Vec<ClaimedJob>, StoreError> {
        let parts = &self.parts;
        let connector = lane.connector.name();
        let now = parts.clock.now();
        let (admission, transition) = lane.circuit().admit(now);
        if let Some(transition) = transition {
            let entries = vec![record::circuit(now, connector, &transition)];
            let tally = crate::metrics::Tally::of(&entries);
            parts.store.journal(entries).await?;
            tally.record();
        }
        let limit = match admission {
            Admission::WaitUntil(_) => return Ok(Vec::new()),
            Admission::Probe => 1,
            Admission::Send => room.min(parts.claim_batch),
        };
        let lease_until = now.saturating_add(parts.lease);
        let jobs = parts
            .store
            .claim_jobs(connector, now, lease_until, limit)
            .await?;
        if jobs.is_empty() && admission == Admission::Probe {
            lane.circuit().abandon_probe(now);
        }
        Ok(jobs)
    }

    /// Runs every lane until none has a job due now (by the clock). For tests and tools.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let mut round = 0;
            for connector in self.connectors() {
                round += self.run_once(connector).await?;
            }
            if round == 0 {
                return Ok(total);
            }
            total += round;
        }
    }

    /// One loop per lane until `shutdown`: claim and perform while jobs are due; when
    /// idle, sleep until the next job is due, `wake` is notified (the engine queued
    /// something) or the poll interval passes. Jobs in flight at shutdown finish first.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let loops: Vec<_> = self
            .connectors()
            .into_iter()
            .map(|connector| {
                let outbox = self.clone();
                let wake = Arc::clone(&wake);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { outbox.lane_loop(connector, &wake, &shutdown).await })
            })
            .collect();
        for lane in loops {
            let _ = lane.await;
        }
    }

    /// Keeps the lane full: whenever fewer than `concurrency` calls are in flight, it
    /// claims more, so one slow call never holds back the others (no batch waits for
    /// its slowest job).
    async fn lane_loop(
        &self,
        connector: &'static str,
        wake: &Notify,
        shutdown: &CancellationToken,
    ) {
        let Some(lane) = self.lane(connector) else {
            return;
        };
        let concurrency = lane.pace.concurrency.max(1);
        // Claim again once a quarter of the slots are free: a claim per finished job
        // would cost a write transaction per job.
        let low_water = concurrency - (concurrency / 4).max(1);
        // All calls of the lane are polled by this one task: outcomes that come back
        // together are recorded together, and the SQLite writer commits them as one
        // group (spawning a task per call spreads them out, one fsync each).
        let mut in_flight = FuturesUnordered::new();
        loop {
            if !shutdown.is_cancelled() && in_flight.len() <= low_water {
                // Calls go on while the claim waits for the writer.
                let claim = self.claim(lane, concurrency - in_flight.len());
                tokio::pin!(claim);
                let claimed = loop {
                    tokio::select! {
                        claimed = &mut claim => break claimed,
                        Some(result) = in_flight.next() => log_outcome(connector, result),
                    }
                };
                match claimed {
                    Ok(jobs) => {
                        for job in jobs {
                            in_flight.push(attempt::perform(&self.parts, lane, job));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(connector, %error, "outbox: claiming failed; retrying");
                    }
                }
            }
            if in_flight.is_empty() {
                if shutdown.is_cancelled() {
                    return;
                }
                let pause = self.idle_pause(connector).await;
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            let room = in_flight.len() <= low_water && !shutdown.is_cancelled();
            tokio::select! {
                Some(result) = in_flight.next() => log_outcome(connector, result),
                () = wake.notified(), if room => {}
                () = tokio::time::sleep(self.parts.poll.min(Duration::from_millis(100))), if room => {}
            }
        }
    }

    /// How long an idle lane may sleep: until its next job is due (or its circuit
    /// half-opens), at most the poll interval.
    async fn idle_pause(&self, connector: &str) -> Duration {
        let parts = &self.parts;
        let now = parts.clock.now();
        match parts.store.next_job_at(connector).await {
            Ok(Some(at)) => at.since(now).clamp(Duration::from_millis(5), parts.poll),
            _ => parts.poll,
        }
    }
}

fn log_outcome(connector: &str, result: Result<(), StoreError>) {
    if let Err(error) = result {
        tracing::warn!(connector, %error, "outbox: recording an outcome failed; the lease will expire and the job be retried");
    }
}
