//! The pure evaluator: does a rule start a run for this event, and what does a run do
//! when woken. No I/O, no clock, no randomness: the same inputs give the same
//! decisions, so the engine, rule tests and the dry-run agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::actions::render_action;
use crate::context::{CelVars, EvalContext};
use crate::expr::{Condition, EvalError};
use crate::model::{Action, KeySpec, Mode, OnRetrigger, Rule, Step};
use crate::run::*;
use crate::template::Text;
use crate::trigger::{matches, value_text};

/// Steps one wake may execute before the run is failed: rules have no loops, so only a
/// pathological rule gets near it.
const MAX_STEPS_PER_WAKE: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum TriggerDecision {
    /// Start a run for `key` (subject to `on_retrigger`).
    Start {
        key: String,
        guard: Option<ConditionTrace>,
    },
    NoMatch {
        reason: String,
        guard: Option<ConditionTrace>,
    },
    /// The rule could not be evaluated (e.g. a CEL type error); other rules go on.
    Failed {
        why: String,
        guard: Option<ConditionTrace>,
    },
}

fn cel_vars<'a>(rule: &'a Rule, ctx: &'a EvalContext, vars: &'a Map<String, Json>) -> CelVars<'a> {
    CelVars::new(ctx, &rule.fill, vars)
}

fn eval_condition(
    condition: &Condition,
    vars: &CelVars,
    ctx: &EvalContext,
) -> (Result<bool, EvalError>, ConditionTrace) {
    let result = condition.eval_bool(vars);
    let trace = ConditionTrace {
        expression: condition.source.clone(),
        inputs: condition.inputs(ctx),
        result: result.as_ref().ok().copied(),
    };
    (result, trace)
}

/// Does `event` (in `ctx`) start a run of `rule`? Checks the trigger, then the guard.
pub fn evaluate_trigger(rule: &Rule, ctx: &EvalContext) -> TriggerDecision {
    if !rule.enabled {
        return TriggerDecision::NoMatch {
            reason: "rule disabled".into(),
            guard: None,
        };
    }
    if let Err(reason) = matches(&rule.trigger.pattern, &rule.trigger.object, ctx) {
        return TriggerDecision::NoMatch {
            reason,
            guard: None,
        };
    }
    let no_vars = Map::new();
    let vars = cel_vars(rule, ctx, &no_vars);
    let guard = match &rule.guard {
        None => None,
        Some(condition) => {
            let (result, trace) = eval_condition(condition, &vars, ctx);
            match result {
                Ok(true) => Some(trace),
                Ok(false) => {
                    return TriggerDecision::NoMatch {
                        reason: format!("`when` is false: {}", condition.source),
                        guard: Some(trace),
                    };
                }
                Err(e) => {
                    return TriggerDecision::Failed {
                        why: e.to_string(),
                        guard: Some(trace),
                    };
                }
            }
        }
    };
    match key_of(rule, ctx, &vars) {
        Ok(key) => TriggerDecision::Start { key, guard },
        Err(why) => TriggerDecision::Failed { why, guard },
    }
}

/// Only the guard: what the benchmark measures, and what `evaluate_trigger` spends most
/// of its time on once the index has picked the candidates.
pub fn evaluate_guard(rule: &Rule, ctx: &EvalContext) -> Result<bool, EvalError> {
    match &rule.guard {
        None => Ok(true),
        Some(condition) => condition.eval_bool(&cel_vars(rule, ctx, &Map::new())),
    }
}

fn key_of(rule: &Rule, ctx: &EvalContext, vars: &CelVars) -> Result<String, String> {
    match &rule.key {
        KeySpec::Object => Ok(ctx.object.object.to_string()),
        KeySpec::Expression(condition) => match condition.eval(vars) {
            Ok(cel::Value::String(s)) => Ok(s.to_string()),
            Ok(cel::Value::Int(i)) => Ok(i.to_string()),
            Ok(cel::Value::UInt(u)) => Ok(u.to_string()),
            Ok(other) => Err(format!(
                "`key` evaluated to {:?}, expected text or a number",
                other.type_of().to_string()
            )),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// What a new trigger does to the active runs of the same rule and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RetriggerDecision {
    /// Start a new run after cancelling these (restart = debounce).
    Start { cancel: Vec<String> },
    /// Start nothing: a run for this key is active and the rule says `ignore`.
    Ignore { active: String },
}

/// `active`: the runs of this rule with the same key that are still active.
pub fn on_retrigger(rule: &Rule, active: &[&RunState]) -> RetriggerDecision {
    let active: Vec<&&RunState> = active
        .iter()
        .filter(|r| r.rule_id == rule.id && r.status.is_active())
        .collect();
    match (rule.on_retrigger, active.first()) {
        (_, None) | (OnRetrigger::Parallel, _) => RetriggerDecision::Start { cancel: vec![] },
        (OnRetrigger::Restart, _) => RetriggerDecision::Start {
            cancel: active.iter().map(|r| r.run_id.clone()).collect(),
        },
        (OnRetrigger::Ignore, Some(run)) => RetriggerDecision::Ignore {
            active: run.run_id.clone(),
        },
    }
}

/// Cancels an active run: its pending timer is cancelled and it ends.
pub fn cancel_run(state: &RunState, why: &str) -> Advance {
    let mut state = state.clone();
    let mut decisions = Vec::new();
    if let Some(at) = state.timer() {
        decisions.push(Decision::CancelTimer {
            at,
            step: state.cursor.to_string(),
        });
    }
    state.waiting = None;
    state.status = RunStatus::Cancelled(why.to_owned());
    decisions.push(Decision::Cancelled {
        why: why.to_owned(),
    });
    Advance { state, decisions }
}

/// Fails an active run from outside the evaluator (its lookup could not be done): its
/// pending timer is cancelled and it ends as failed, which says more than cancelled.
pub fn fail_run(state: &RunState, why: &str) -> Advance {
    let mut result = cancel_run(state, why);
    result.state.status = RunStatus::Failed(why.to_owned());
    if let Some(last) = result.decisions.last_mut() {
        *last = Decision::Failed {
            why: why.to_owned(),
        };
    }
    result
}

/// Moves a run forward after `wake`, until it waits, completes or fails.
pub fn advance(rule: &Rule, state: &RunState, wake: Wake, ctx: &EvalContext) -> Advance {
    let mut run = Runner {
        rule,
        ctx,
        state: state.clone(),
        decisions: Vec::new(),
    };
    if !run.state.status.is_active() {
        return run.finish();
    }
    if run.state.rule_version != rule.version && run.state.cursor.list(rule).is_none() {
        return run.fail(
            "the rule changed since this run started and its position no longer exists".into(),
        );
    }
    let resume = match (wake, run.state.waiting.clone()) {
        (Wake::Start, None) if run.state.status == RunStatus::New => {
            run.state.reverts = rule
                .reverts
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        ctx.previous.get(p).cloned().unwrap_or(Json::Null),
                    )
                })
                .collect();
            true
        }
        (Wake::TimerFired { due_at }, Some(Wait::Timer { due_at: expected }))
            if due_at == expected =>
        {
            run.state.cursor.next();
            true
        }
        (Wake::TimerFired { due_at }, Some(Wait::Event { timeout_at })) if due_at == timeout_at => {
            run.state.cursor.enter(Branch::OnTimeout);
            true
        }
        (Wake::EventArrived, Some(Wait::Event { timeout_at })) => {
            if !run.wait_for_hit(timeout_at) {
                return run.finish();
            }
            true
        }
        (Wake::LookupResult(result), Some(Wait::Lookup)) => {
            if let Some(Step::Lookup { into, .. }) = run.state.cursor.step(rule) {
                run.state.vars.insert(into.clone(), result);
            }
            run.state.cursor.next();
            true
        }
        // A stale timer, an event while not waiting for one, a repeated start: nothing.
        _ => false,
    };
    if resume {
        run.state.waiting = None;
        run.state.status = RunStatus::Waiting;
        run.run();
    }
    run.finish()
}

struct Runner<'a> {
    rule: &'a Rule,
    ctx: &'a EvalContext,
    state: RunState,
    decisions: Vec<Decision>,
}

impl Runner<'_> {
    fn finish(self) -> Advance {
        Advance {
            state: self.state,
            decisions: self.decisions,
        }
    }

    fn fail(mut self, why: String) -> Advance {
        self.fail_in_place(why);
        self.finish()
    }

    fn fail_in_place(&mut self, why: String) {
        self.state.status = RunStatus::Failed(why.clone());
        self.state.waiting = None;
        self.decisions.push(Decision::Failed { why });
    }

    fn step_id(&self) -> String {
        self.state.cursor.to_string()
    }

    /// An event arrived while waiting in `wait_for`: true if it is the awaited one.
    fn wait_for_hit(&mut self, timeout_at: followthrough_core::Timestamp) -> bool {
        let Some(Step::WaitFor(wait_for)) = self.state.cursor.step(self.rule) else {
            return false;
        };
        if matches(&wait_for.pattern, &self.rule.trigger.object, self.ctx).is_err() {
            return false;
        }
        if let Some(condition) = &wait_for.when {
            let vars = cel_vars(self.rule, self.ctx, &self.state.vars);
            let (result, trace) = eval_condition(condition, &vars, self.ctx);
            self.decisions.push(Decision::Condition {
                step: self.step_id(),
                trace,
            });
            match result {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    self.fail_in_place(e.to_string());
                    self.decisions.push(Decision::CancelTimer {
                        at: timeout_at,
                        step: self.step_id(),
                    });
                    return false;
                }
            }
        }
        self.decisions.push(Decision::CancelTimer {
            at: timeout_at,
            step: self.step_id(),
        });
        self.state.cursor.next();
        true
    }

    fn run(&mut self) {
        for _ in 0..MAX_STEPS_PER_WAKE {
            let Some(list) = self.state.cursor.list(self.rule) else {
                return self.fail_in_place(
                    "the rule changed since this run started and its position no longer exists"
                        .into(),
                );
            };
            let index = self.state.cursor.0.last().map(|f| f.index).unwrap_or(0);
            let Some(step) = list.get(index) else {
                // End of a list: back to the parent; the end of `on_timeout` or of the
                // top-level steps ends the run.
                let finished = self.state.cursor.0.pop();
                let on_timeout = finished.is_some_and(|f| f.branch == Branch::OnTimeout);
                if self.state.cursor.0.is_empty() || on_timeout {
                    self.state.status = RunStatus::Completed;
                    self.decisions.push(Decision::Completed);
                    return;
                }
                self.state.cursor.next();
                continue;
            };
            let step_id = self.step_id();
            let now = self.ctx.now;
            match step {
                Step::Wait(delay) => {
                    let at = self.ctx.calendar.add(now, delay);
                    self.state.waiting = Some(Wait::Timer { due_at: at });
                    self.decisions.push(Decision::ScheduleTimer {
                        at,
                        kind: TimerKind::Wait,
                        step: step_id,
                    });
                    return;
                }
                Step::WaitFor(wait_for) => {
                    let at = self.ctx.calendar.add(now, &wait_for.timeout);
                    self.state.waiting = Some(Wait::Event { timeout_at: at });
                    self.decisions.push(Decision::ScheduleTimer {
                        at,
                        kind: TimerKind::WaitForTimeout,
                        step: step_id,
                    });
                    return;
                }
                Step::If { condition, .. } => {
                    let vars = cel_vars(self.rule, self.ctx, &self.state.vars);
                    let (result, trace) = eval_condition(condition, &vars, self.ctx);
                    self.decisions.push(Decision::Condition {
                        step: step_id,
                        trace,
                    });
                    match result {
                        Ok(taken) => {
                            self.state
                                .cursor
                                .enter(if taken { Branch::Then } else { Branch::Else })
                        }
                        Err(e) => return self.fail_in_place(e.to_string()),
                    }
                }
                Step::Lookup { url, headers, into } => {
                    let tpl = self
                        .ctx
                        .template_value(self.rule.templates.roots(), &self.state.vars);
                    let render = |t: &Text| self.rule.templates.render(t, &tpl);
                    let rendered = render(url).and_then(|url| {
                        let headers = headers
                            .iter()
                            .map(|(k, v)| render(v).map(|v| (k.clone(), v)))
                            .collect::<Result<BTreeMap<_, _>, _>>()?;
                        Ok((url, headers))
                    });
                    match rendered {
                        Ok((url, headers)) => {
                            self.state.waiting = Some(Wait::Lookup);
                            self.decisions.push(Decision::Lookup(LookupDecision {
                                url,
                                headers,
                                into: into.clone(),
                                step: step_id,
                            }));
                            return;
                        }
                        Err(e) => return self.fail_in_place(e),
                    }
                }
                Step::Action(action) => {
                    if let (Action::Revert { property }, Mode::Warn) = (action, self.rule.mode) {
                        let why = format!(
                            "mode is warn: `{property}` left at `{}`",
                            value_text(self.ctx.object.properties.get(property))
                        );
                        self.decisions.push(Decision::Skipped {
                            action: action.name().into(),
                            step: step_id,
                            why,
                        });
                    } else {
                        match render_action(self.rule, action, &self.state, self.ctx) {
                            Ok(params) => self.decisions.push(Decision::Action(ActionDecision {
                                action: action.name().into(),
                                object: self.state.object.clone(),
                                params,
                                idempotency_key: format!("{}:{step_id}", self.state.run_id),
                                step: step_id,
                            })),
                            Err(e) => return self.fail_in_place(format!("{}: {e}", action.name())),
                        }
                    }
                    self.state.cursor.next();
                }
            }
        }
        self.fail_in_place(format!("more than {MAX_STEPS_PER_WAKE} steps in one go"));
    }
}
