//! A circuit breaker per connector: after `threshold` consecutive failures the circuit
//! opens and no job is sent for `open_for`; then one probe goes out; its success closes
//! the circuit, its failure opens it again.
//!
//! Only failures that say the API is unwell count: retryable and indeterminate
//! outcomes. A terminal outcome (a validation error) is the job's fault, and a 429 is
//! the rate limit doing its work; neither opens the circuit. Time comes from the caller
//! (the injected clock), so tests move it by hand.

use std::time::Duration;

use followthrough_core::Timestamp;

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    /// No job is sent before `until`.
    Open {
        until: Timestamp,
    },
    /// One probe is out; everything else waits for its outcome.
    HalfOpen,
}

impl CircuitState {
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// May a job be sent now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Send,
    /// Yes, as the probe of a half-open circuit.
    Probe,
    /// No: not before this time.
    WaitUntil(Timestamp),
}

/// A change of state, to journal and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
    /// Consecutive failures when it happened.
    pub failures: u32,
}

#[derive(Debug, Clone)]
pub struct Circuit {
    threshold: u32,
    open_for: Duration,
    state: CircuitState,
    failures: u32,
}

impl Circuit {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: CircuitState::Closed,
            failures: 0,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Consecutive failures that said the API is unwell.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Asks to send one job at `now`. An open circuit whose time is up lets this one
    /// through as the probe (and becomes half-open).
    pub fn admit(&mut self, now: Timestamp) -> (Admission, Option<Transition>) {
        match self.state {
            CircuitState::Closed => (Admission::Send, None),
            CircuitState::HalfOpen => (
                Admission::WaitUntil(now.saturating_add(self.open_for)),
                None,
            ),
            CircuitState::Open { until } if now < until => (Admission::WaitUntil(until), None),
            CircuitState::Open { .. } => {
                let transition = self.go(CircuitState::HalfOpen);
                (Admission::Probe, transition)
            }
        }
    }

    /// Records the outcome of a job that was admitted. `unwell`: it failed in a way that
    /// says the API is unwell (see the module docs).
    pub fn record(&mut self, unwell: bool, now: Timestamp) -> Option<Transition> {
        if unwell {
            self.failures = self.failures.saturating_add(1);
            let reopen = matches!(self.state, CircuitState::HalfOpen)
                || (matches!(self.state, CircuitState::Closed) && self.failures >= self.threshold);
            if reopen {
                let until = now.saturating_add(self.open_for);
                return self.go(CircuitState::Open { until });
            }
            None
        } else {
            let transition = match self.state {
                CircuitState::Closed => None,
                _ => self.go(CircuitState::Closed),
            };
            self.failures = 0;
            transition
        }
    }

    /// A probe that was admitted but never sent (the worker stopped): let the next job
    /// probe instead of waiting forever.
    pub fn abandon_probe(&mut self, now: Timestamp) {
        if matches!(self.state, CircuitState::HalfOpen) {
            self.state = CircuitState::Open { until: now };
        }
    }

    fn go(&mut self, to: CircuitState) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        Some(Transition {
            from,
            to,
            failures: self.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn opens_after_consecutive_failures_probes_then_closes() {
        let mut circuit = Circuit::new(3, Duration::from_secs(30));
        assert_eq!(circuit.record(true, at(0)), None);
        assert_eq!(circuit.record(true, at(1)), None);
        // A success in between resets the count.
        assert_eq!(circuit.record(false, at(2)), None);
        circuit.record(true, at(3));
        circuit.record(true, at(4));
        let opened = circuit.record(true, at(5)).expect("opens");
        assert_eq!(opened.to, CircuitState::Open { until: at(35) });
        assert_eq!(opened.failures, 3);

        assert_eq!(circuit.admit(at(20)).0, Admission::WaitUntil(at(35)));
        let (admission, transition) = circuit.admit(at(35));
        assert_eq!(admission, Admission::Probe);
        assert_eq!(transition.map(|t| t.to), Some(CircuitState::HalfOpen));
        // While the probe is out, nothing else goes.
        assert!(matches!(circuit.admit(at(36)).0, Admission::WaitUntil(_)));

        let closed = circuit.record(false, at(37)).expect("closes");
        assert_eq!(closed.to, CircuitState::Closed);
        assert_eq!(circuit.admit(at(38)).0, Admission::Send);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let mut circuit = Circuit::new(1, Duration::from_secs(10));
        circuit.record(true, at(0));
        assert_eq!(circuit.admit(at(10)).0, Admission::Probe);
        let reopened = circuit.record(true, at(11)).expect("reopens");
        assert_eq!(reopened.to, CircuitState::Open { until: at(21) });
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_job_probe() {
        let mut circuit = Circuit::new(1, Duration::from_secs(10));
        circuit.record(true, at(0));
        assert_eq!(circuit.admit(at(10)).0, Admission::Probe);
        circuit.abandon_probe(at(12));
        assert_eq!(circuit.admit(at(12)).0, Admission::Probe);
    }
}
