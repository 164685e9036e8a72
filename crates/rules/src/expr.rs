//! CEL conditions: compiled once at load with limits, checked for unknown root
//! variables, evaluated against a prepared [`CelVars`](crate::context::CelVars).
//!
//! The evaluator journals what a condition decided on, so at load we also record which
//! paths of the context it reads (`object.lead_score`, `owner.teams`), and after an
//! evaluation [`Condition::inputs`] reports their values.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::parser::Parser;
use cel::{Context, Env, Program, Value};

use crate::context::{CelVars, EvalContext};

/// The variables a condition or template may start from.
pub const ROOTS: [&str; 7] = [
    "event",
    "object",
    "previous",
    "owner",
    "associated",
    "vars",
    "now",
];

/// Longer expressions are rejected at load: conditions are meant to be read in review.
pub const MAX_EXPRESSION_LEN: usize = 2_000;
/// Parser recursion depth (nested parentheses, operators, calls).
pub const MAX_NESTING: u16 = 32;
/// Nested comprehensions (`all`, `exists`, `map`, `filter`) cost multiplicatively.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// A compiled CEL condition.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    program: Arc<Program>,
    /// Dotted paths the condition reads, e.g. `object.lead_score`; for the journal.
    pub reads: Vec<String>,
    /// Property names read as `object.X` / `previous.X`, which read as "" when absent.
    pub(crate) properties: BTreeSet<String>,
}

/// A problem found compiling a condition; the offset (in characters, 0-based line and
/// column within the expression) lets the loader point inside the YAML value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConditionError {
    pub message: String,
    pub line: u64,
    pub column: u64,
}

impl ConditionError {
    fn at_start(message: String) -> Self {
        Self {
            message,
            line: 0,
            column: 0,
        }
    }
}

/// A failure while evaluating: the rule fails with this text, other rules go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expression}`: {message}")]
pub struct EvalError {
    pub expression: String,
    pub message: String,
}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        if source.trim().is_empty() {
            return Err(ConditionError::at_start("empty condition".into()));
        }
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(ConditionError::at_start(format!(
                "condition is {} characters long; the maximum is {MAX_EXPRESSION_LEN}",
                source.len()
            )));
        }
        let parser = Parser::new().max_recursion_depth(MAX_NESTING);
        let expression = parser.parse(source).map_err(|errors| {
            let first = errors.errors.first();
            let message = first
                .map(|e| e.msg.clone())
                .unwrap_or_else(|| errors.to_string());
            let (line, column) = first
                .map(|e| (e.pos.0.max(1) as u64 - 1, e.pos.1.max(0) as u64))
                .unwrap_or((0, 0));
            ConditionError {
                message: format!("CEL syntax error: {message}"),
                line,
                column,
            }
        })?;
        let mut walk = Walk::default();
        walk.visit(&expression, &mut Vec::new(), 0);
        if walk.max_comprehension_depth > MAX_COMPREHENSION_NESTING {
            return Err(ConditionError::at_start(format!(
                "comprehensions nested {} deep; the maximum is {MAX_COMPREHENSION_NESTING}",
                walk.max_comprehension_depth
            )));
        }
        if let Some(unknown) = walk
            .free
            .iter()
            .find(|name| !ROOTS.contains(&name.as_str()))
        {
            return Err(ConditionError::at_start(format!(
                "unknown variable `{unknown}`: a condition can use {}",
                ROOTS.join(", ")
            )));
        }
        let program = env()
            .compile(source)
            .map_err(|e| ConditionError::at_start(format!("CEL syntax error: {e}")))?;
        Ok(Condition {
            source: source.to_owned(),
            program: Arc::new(program),
            reads: walk.reads.into_iter().collect(),
            properties: walk.properties,
        })
    }

    /// Evaluates to a boolean; anything else (or a CEL error) is an [`EvalError`].
    pub fn eval_bool(&self, vars: &CelVars<'_>) -> Result<bool, EvalError> {
        match self.eval(vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.error(format!(
                "evaluated to {} where true or false was expected",
                type_name(&other)
            ))),
        }
    }

    pub fn eval(&self, vars: &CelVars<'_>) -> Result<Value, EvalError> {
        let mut context = Context::with_env(Arc::clone(env()));
        context.set_variable_resolver(vars);
        self.program
            .execute(&context)
            .map_err(|e| self.error(e.to_string()))
    }

    /// The values of the paths this condition reads, for the journal. Paths that do not
    /// resolve (a missing association) are reported as null.
    pub fn inputs(&self, ctx: &EvalContext) -> serde_json::Map<String, serde_json::Value> {
        self.reads
            .iter()
            .map(|path| (path.clone(), ctx.lookup_path(path)))
            .collect()
    }

    fn error(&self, message: String) -> EvalError {
        EvalError {
            expression: self.source.clone(),
            message,
        }
    }
}

fn type_name(value: &Value) -> String {
    value.type_of().to_string()
}

#[derive(Default)]
struct Walk {
    free: BTreeSet<String>,
    reads: BTreeSet<String>,
    properties: BTreeSet<String>,
    max_comprehension_depth: usize,
}

impl Walk {
    fn visit(&mut self, node: &IdedExpr, bound: &mut Vec<String>, depth: usize) {
        match &node.expr {
            Expr::Ident(name) if !name.starts_with('@') && !bound.contains(name) => {
                self.free.insert(name.clone());
                self.reads.insert(name.clone());
            }
            Expr::Select(select) => {
                if let Some(path) = select_path(node, bound) {
                    let mut parts = path.splitn(3, '.');
                    if let (Some("object" | "previous"), Some(property)) =
                        (parts.next(), parts.next())
                    {
                        self.properties.insert(property.to_owned());
                    }
                    if let Some(root) = path.split('.').next() {
                        self.free.insert(root.to_owned());
                    }
                    self.reads.insert(path);
                } else {
                    self.visit(&select.operand, bound, depth);
                }
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target, bound, depth);
                }
                for arg in &call.args {
                    self.visit(arg, bound, depth);
                }
            }
            Expr::Comprehension(comp) => {
                let depth = depth + 1;
                self.max_comprehension_depth = self.max_comprehension_depth.max(depth);
                self.visit(&comp.iter_range, bound, depth);
                let pushed = 2 + usize::from(comp.iter_var2.is_some());
                bound.push(comp.iter_var.clone());
                bound.push(comp.accu_var.clone());
                if let Some(second) = &comp.iter_var2 {
                    bound.push(second.clone());
                }
                for part in [
                    &comp.accu_init,
                    &comp.loop_cond,
                    &comp.loop_step,
                    &comp.result,
                ] {
                    self.visit(part, bound, depth);
                }
                bound.truncate(bound.len() - pushed);
            }
            Expr::List(list) => list
                .elements
                .iter()
                .for_each(|e| self.visit(e, bound, depth)),
            Expr::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(e) => {
                            self.visit(&e.key, bound, depth);
                            self.visit(&e.value, bound, depth);
                        }
                        EntryExpr::StructField(f) => self.visit(&f.value, bound, depth),
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.visit(&f.value, bound, depth);
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// `a.b.c` for a chain of field selections on a free identifier, else `None`.
fn select_path(node: &IdedExpr, bound: &[String]) -> Option<String> {
    match &node.expr {
        Expr::Ident(name) if !bound.contains(name) && !name.starts_with('@') => Some(name.clone()),
        Expr::Select(select) => {
            select_path(&select.operand, bound).map(|base| format!("{base}.{}", select.field))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_what_a_condition_reads() {
        let c = Condition::compile("object.lead_score >= 50 && 'hunters' in owner.teams && associated.contact.all(c, c.email != '')").unwrap();
        assert_eq!(
            c.reads,
            vec!["associated.contact", "object.lead_score", "owner.teams"]
        );
        assert!(c.properties.contains("lead_score"));
    }

    #[test]
    fn rejects_unknown_roots_deep_nesting_and_syntax_errors() {
        let e = Condition::compile("objet.lead_score > 1").unwrap_err();
        assert!(e.message.contains("unknown variable `objet`"), "{e}");
        assert!(
            Condition::compile("[1].all(x, [2].all(y, [3].all(z, x < y)))")
                .unwrap_err()
                .message
                .contains("nested 3 deep")
        );
        let deep = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert!(Condition::compile(&deep).is_err());
        let e = Condition::compile("object.a == ").unwrap_err();
        assert!(e.message.starts_with("CEL syntax error"), "{e}");
        assert!(
            Condition::compile(&"1 + ".repeat(800).to_string())
                .unwrap_err()
                .message
                .contains("maximum")
        );
    }
}
