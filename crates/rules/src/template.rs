//! Text templates (minijinja) for message texts, subjects, URLs and bodies.
//!
//! Each rule owns one minijinja environment with its templates compiled at load, with
//! fuel so a template cannot loop without end, and lenient undefined values so a
//! missing property prints as an empty string, like an empty HubSpot field.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::Environment;

use crate::expr::ROOTS;

/// Instructions one rendering may execute; plenty for messages, small enough to stop a
/// runaway loop within microseconds.
const FUEL: u64 = 50_000;

/// A text field: either constant, or a template compiled into the rule's environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Literal(String),
    Template { name: String, source: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// 0-based line within the template, when known.
    pub line: u64,
}

/// The templates of one rule.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    /// The context's roots the templates read: only these are converted to render.
    roots: Arc<[&'static str]>,
}

/// Collects templates while a rule compiles, then freezes into [`Templates`].
pub(crate) struct TemplateBuilder {
    env: Environment<'static>,
    next: usize,
    /// Dotted paths of the context the templates read (`owner.name`, `associated.deals`).
    reads: BTreeSet<String>,
}

impl TemplateBuilder {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        // Messages are plain text (Slack, CRM fields): no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Self {
            env,
            next: 0,
            reads: BTreeSet::new(),
        }
    }

    /// Compiles `source`, checking syntax and that it only uses the context's roots.
    pub fn add(&mut self, source: &str) -> Result<Text, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Ok(Text::Literal(source.to_owned()));
        }
        let name = format!("t{}", self.next);
        self.next += 1;
        self.env
            .add_template_owned(name.clone(), source.to_owned())
            .map_err(|e| TemplateError {
                message: format!(
                    "template syntax error: {}",
                    e.detail().unwrap_or("invalid template")
                ),
                line: e.line().map(|l| l.saturating_sub(1) as u64).unwrap_or(0),
            })?;
        let template = self.env.get_template(&name).map_err(|e| TemplateError {
            message: e.to_string(),
            line: 0,
        })?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !ROOTS.contains(&v.as_str()) && !is_builtin(v))
            .collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            return Err(TemplateError {
                message: format!(
                    "unknown variable `{first}` in template: a template can use {}",
                    ROOTS.join(", ")
                ),
                line: 0,
            });
        }
        // Attribute chains from a root, as far as they are written: `{{ owner.name }}`
        // reads `owner.name`, `{{ owner['name'] }}` reads all of `owner`.
        self.reads.extend(
            template
                .undeclared_variables(true)
                .into_iter()
                .filter(|path| ROOTS.contains(&path.split('.').next().unwrap_or_default())),
        );
        Ok(Text::Template {
            name,
            source: source.to_owned(),
        })
    }

    /// The dotted paths read by the templates added so far.
    pub fn reads(&self) -> &BTreeSet<String> {
        &self.reads
    }

    pub fn finish(self) -> Templates {
        let roots = ROOTS
            .into_iter()
            .filter(|root| {
                self.reads
                    .iter()
                    .any(|path| path.split('.').next() == Some(*root))
            })
            .collect();
        Templates {
            env: Arc::new(self.env),
            roots,
        }
    }
}

fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "range" | "dict" | "namespace" | "loop" | "true" | "false" | "none"
    )
}

impl Templates {
    /// The roots of the context (`object`, `owner`, ...) the templates read.
    pub fn roots(&self) -> &[&'static str] {
        &self.roots
    }

    /// Renders `text` with `context` (the JSON form of the evaluation context).
    pub fn render(&self, text: &Text, context: &minijinja::Value) -> Result<String, String> {
        match text {
            Text::Literal(s) => Ok(s.clone()),
            Text::Template { name, source } => {
                let template = self.env.get_template(name).map_err(|e| e.to_string())?;
                template.render(context).map_err(|e| {
                    format!(
                        "template `{source}`: {}",
                        e.detail().unwrap_or(&e.to_string())
                    )
                })
            }
        }
    }
}

impl Text {
    pub fn source(&self) -> &str {
        match self {
            Text::Literal(s) => s,
            Text::Template { source, .. } => source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_bad_templates() {
        let mut b = TemplateBuilder::new();
        let t = b.add("Deal {{ object.dealname }} <b>").unwrap();
        assert!(
            b.add("{{ object.dealname ")
                .unwrap_err()
                .message
                .contains("syntax error")
        );
        assert!(
            b.add("{{ deal.name }}")
                .unwrap_err()
                .message
                .contains("unknown variable `deal`")
        );
        let templates = b.finish();
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"object": {"dealname": "Acme"}}),
        ));
        assert_eq!(templates.render(&t, &ctx).unwrap(), "Deal Acme <b>");
    }

    #[test]
    fn records_the_paths_templates_read() {
        let mut b = TemplateBuilder::new();
        b.add("plain text, no template").unwrap();
        b.add("{{ owner.name }} {% for c in associated.contacts %}{{ c.email }} {{ loop.index }}{% endfor %}")
            .unwrap();
        b.add("{{ owner['teams'] | join(',') }} {{ object.dealname | upper }}")
            .unwrap();
        let reads: Vec<&str> = b.reads().iter().map(String::as_str).collect();
        assert_eq!(
            reads,
            [
                "associated.contacts",
                "object.dealname",
                "owner",
                "owner.name"
            ]
        );
    }

    #[test]
    fn fuel_stops_runaway_templates() {
        let mut b = TemplateBuilder::new();
        let t = b
            .add(
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            )
            .unwrap();
        let templates = b.finish();
        let err = templates
            .render(&t, &minijinja::Value::from(()))
            .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
    }
}
