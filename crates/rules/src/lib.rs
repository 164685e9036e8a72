//! followthrough's rule language: rules as YAML files, parsed and validated at load
//! ([`RuleSet::load_dir`], [`check_dir`]), evaluated by pure functions
//! ([`evaluate_trigger`], [`advance`], [`on_retrigger`]) into [`Decision`]s that the
//! engine persists and executes. The [`Simulator`] runs the same functions in memory
//! for rule tests ([`run_tests`]) and the dry-run replay.
//!
//! The language itself is documented for users in `docs/rules.md`.

mod actions;
mod compile;
mod compile_actions;
mod context;
mod diagnostic;
mod duration;
mod eval;
mod expr;
mod model;
mod raw;
mod ruleset;
mod run;
mod simulator;
mod template;
mod testfile;
mod testing;
mod trigger;

pub use context::{EvalContext, ObjectState, Owner, Properties, plural};
pub use diagnostic::{Diagnostic, Pos, print_diagnostics};
pub use duration::{Calendar, CalendarError, Delay, DurationError};
pub use eval::{
    RetriggerDecision, TriggerDecision, advance, cancel_run, evaluate_guard, evaluate_trigger,
    fail_run, on_retrigger,
};
pub use expr::{
    Condition, ConditionError, EvalError, MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_LEN,
    MAX_NESTING, ROOTS,
};
pub use model::{
    Action, AssociationAction, Body, DEFAULT_ACTIVITY_PROPERTIES, DEFAULT_ENGAGEMENTS,
    EventPattern, KeySpec, Mode, OnRetrigger, Priority, Reads, Recipient, Rule, Step, Trigger,
    WaitFor,
};
pub use ruleset::{Candidate, ReadError, RuleSet, RuleSetDiff, Subject, check_dir};
pub use run::{
    ActionDecision, Advance, Branch, ConditionTrace, Cursor, Decision, Frame, LookupDecision,
    RunState, RunStatus, TimerKind, Wait, Wake,
};
pub use simulator::{OWNER_PROPERTY, Outcome, ReplaySummary, Simulator, Taken};
pub use template::Text;
pub use testfile::{Case, Expect, Expected, ObjectSpec, TestFile};
pub use testing::{CaseResult, TestReport, run_case, run_tests};
