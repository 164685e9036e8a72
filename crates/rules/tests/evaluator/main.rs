//! The pure evaluator through its public API: every trigger and step kind, every
//! action, debounce, wait_for hit and timeout, both if branches, run-time errors.

mod steps;
mod support;
mod triggers;
