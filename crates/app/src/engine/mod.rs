//! The engine: takes inbox events and applies them. For now it keeps object state and
//! history and journals each event; rules, runs and timers build on the same loop.

mod applier;

pub use applier::Applier;
