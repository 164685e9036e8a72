//! From the YAML file to a [`Rule`]: shape checks, conditions, templates, durations.
//! Every problem becomes a [`Diagnostic`](crate::Diagnostic) at the offending value; the
//! whole file is checked even after the first problem.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::context::plural;
use crate::diagnostic::{Pos, Sink};
use crate::duration::Delay;
use crate::expr::Condition;
use crate::model::*;
use crate::raw::{RawRule, RawStep, RawSteps, RawTrigger, S};
use crate::template::{TemplateBuilder, Text};

pub(crate) fn pos<T>(s: &S<T>) -> Pos {
    Pos::of(&s.referenced)
}

/// Parses and compiles one rule file; `None` if it has any problem (all reported).
pub(crate) fn compile_rule(file: &Path, source: &str, sink: &mut Sink) -> Option<Rule> {
    let raw: RawRule = match serde_saphyr::from_str(source) {
        Ok(raw) => raw,
        Err(error) => {
            sink.diagnostics
                .push(crate::diagnostic::from_yaml_error(file, &error));
            return None;
        }
    };
    let before = sink.diagnostics.len();
    let mut c = Compiler {
        sink,
        templates: TemplateBuilder::new(),
        properties: BTreeSet::new(),
        paths: BTreeSet::new(),
        sends_to_owner: false,
        reverts: Vec::new(),
    };
    let id = raw.id.value.trim().to_owned();
    if id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
    {
        c.sink.error(
            pos(&raw.id),
            format!("rule id `{id}` must be non-empty and use only letters, digits, `-`, `_`, `.`"),
        );
    }
    let mode = match raw.mode.as_ref().map(|m| m.value.as_str()) {
        None | Some("warn") => Mode::Warn,
        Some("enforce") => Mode::Enforce,
        Some(other) => {
            c.sink.error(
                pos(raw.mode.as_ref().unwrap()),
                format!("unknown mode `{other}`, expected `warn` or `enforce`"),
            );
            Mode::Warn
        }
    };
    let on_retrigger = match raw.on_retrigger.as_ref().map(|m| m.value.as_str()) {
        None | Some("ignore") => OnRetrigger::Ignore,
        Some("restart") => OnRetrigger::Restart,
        Some("parallel") => OnRetrigger::Parallel,
        Some(other) => {
            c.sink.error(
                pos(raw.on_retrigger.as_ref().unwrap()),
                format!(
                    "unknown on_retrigger `{other}`, expected `restart`, `ignore` or `parallel`"
                ),
            );
            OnRetrigger::Ignore
        }
    };
    let object = match &raw.on.value.object {
        Some(object) if !object.value.trim().is_empty() => object.value.trim().to_owned(),
        Some(object) => {
            c.sink.error(
                pos(object),
                "`object` must name an object type, e.g. contact or deal",
            );
            String::new()
        }
        None => {
            c.sink.error(
                pos(&raw.on),
                "`on` needs `object`: the object type the rule is about, e.g. `object: contact`",
            );
            String::new()
        }
    };
    let pattern = c.pattern(&raw.on, false);
    let guard = raw.when.as_ref().and_then(|w| c.condition(w));
    let key = match &raw.key {
        None => KeySpec::Object,
        Some(k) if k.value == "object" || k.value == object => KeySpec::Object,
        Some(k) => c
            .condition(k)
            .map(KeySpec::Expression)
            .unwrap_or(KeySpec::Object),
    };
    if raw.steps.value.is_empty() {
        c.sink
            .error(pos(&raw.steps), "a rule needs at least one step");
    }
    let steps = c.steps(&raw.steps);
    if c.sink.diagnostics.len() > before {
        return None;
    }
    let reads = reads_of(
        c.paths
            .iter()
            .chain(c.templates.reads())
            .map(String::as_str),
        c.sends_to_owner,
    );
    Some(Rule {
        id,
        description: raw.description.unwrap_or_default(),
        enabled: raw.enabled.unwrap_or(true),
        mode,
        trigger: Trigger {
            object,
            pattern: pattern?,
        },
        guard,
        key,
        on_retrigger,
        steps,
        version: version_of(source),
        file: file.to_owned(),
        templates: c.templates.finish(),
        reverts: c.reverts,
        fill: Arc::new(c.properties),
        reads,
    })
}

/// What the dotted `paths` a rule's conditions and templates read ask the engine to
/// fetch; `sends_to_owner` when an action needs the owner's email (`slack_dm to: owner`).
pub(crate) fn reads_of<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    sends_to_owner: bool,
) -> Reads {
    let mut reads = Reads {
        owner: sends_to_owner,
        associated: BTreeSet::new(),
    };
    for path in paths {
        let mut parts = path.split('.');
        match (parts.next(), parts.next()) {
            // The id is the object's `hubspot_owner_id`: known without a fetch.
            (Some("owner"), Some("id")) => {}
            (Some("owner"), _) => reads.owner = true,
            (Some("associated"), Some(kind)) if !kind.is_empty() => {
                reads.associated.insert(singular(kind));
            }
            _ => {}
        }
    }
    reads
}

/// The type name behind a key of `associated`: `contacts` (the list) and `contact`
/// (its first object) both mean `contact`; the inverse of [`plural`].
fn singular(kind: &str) -> String {
    if let Some(stem) = kind.strip_suffix("ies") {
        let candidate = format!("{stem}y");
        if plural(&candidate) == kind {
            return candidate;
        }
    }
    match kind.strip_suffix('s') {
        Some(stem) if plural(stem) == kind => stem.to_owned(),
        _ => kind.to_owned(),
    }
}

/// FNV-1a of the file: stable across builds and platforms, unlike `DefaultHasher`, since
/// runs persist it.
pub(crate) fn version_of(source: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) struct Compiler<'a> {
    pub(crate) sink: &'a mut Sink,
    pub(crate) templates: TemplateBuilder,
    properties: BTreeSet<String>,
    /// Dotted paths the conditions read (`owner.email`, `associated.contacts`).
    paths: BTreeSet<String>,
    /// An action sends to or as the owner, so it needs the owner's email.
    pub(crate) sends_to_owner: bool,
    pub(crate) reverts: Vec<String>,
}

const STEP_KINDS: [&str; 14] = [
    "wait",
    "wait_for",
    "if",
    "lookup",
    "create_task",
    "update",
    "revert",
    "assign_owner",
    "enroll_sequence",
    "add_to_list",
    "create_note",
    "slack_dm",
    "slack_message",
    "http",
];

impl Compiler<'_> {
    pub(crate) fn condition(&mut self, source: &S<String>) -> Option<Condition> {
        match Condition::compile(&source.value) {
            Ok(condition) => {
                self.properties.extend(condition.properties.iter().cloned());
                self.paths.extend(condition.reads.iter().cloned());
                Some(condition)
            }
            Err(e) => {
                // Point inside the expression when it is on the value's first line
                // (CEL columns are 1-based).
                let at = if e.line == 0 && e.column > 0 {
                    pos(source).shifted(0, e.column - 1)
                } else {
                    pos(source)
                };
                self.sink.error(at, e.message);
                None
            }
        }
    }

    pub(crate) fn text(&mut self, source: &S<String>) -> Option<Text> {
        match self.templates.add(&source.value) {
            Ok(text) => Some(text),
            Err(e) => {
                self.sink.error(pos(source), e.message);
                None
            }
        }
    }

    pub(crate) fn delay(&mut self, source: &S<String>) -> Option<Delay> {
        Delay::parse(&source.value)
            .map_err(|e| self.sink.error(pos(source), e.to_string()))
            .ok()
    }

    pub(crate) fn recipient(&mut self, source: Option<&S<String>>) -> Option<Recipient> {
        match source {
            None => Some(Recipient::Owner),
            Some(s) if s.value == "owner" => Some(Recipient::Owner),
            Some(s) => self.text(s).map(Recipient::Text),
        }
    }

    fn pattern(&mut self, raw: &S<RawTrigger>, in_wait_for: bool) -> Option<EventPattern> {
        let t = &raw.value;
        let at = pos(raw);
        if in_wait_for {
            if let Some(object) = &t.object {
                self.sink.error(
                    pos(object),
                    "`wait_for` waits for an event on the run's own object: remove `object`",
                );
            }
        } else {
            for (name, field) in [("when", &t.when), ("timeout", &t.timeout)] {
                if let Some(field) = field {
                    self.sink.error(pos(field), format!("`{name}` belongs beside `on` (a rule's `when`) or in `wait_for`, not inside `on`"));
                }
            }
        }
        let event = match (&t.event, &t.change) {
            (Some(e), _) => e.value.as_str(),
            (None, Some(_)) => "change",
            (None, None) => {
                self.sink.error(at, "say what to wait for: `event: created|deleted|activity|association` or `change: <property>`");
                return None;
            }
        };
        let misplaced = |sink: &mut Sink, allowed: &[&str]| {
            let fields: [(&str, Option<Pos>); 7] = [
                ("change", t.change.as_ref().map(pos)),
                ("from", t.from.as_ref().map(pos)),
                ("to", t.to.as_ref().map(pos)),
                ("properties", t.properties.as_ref().map(pos)),
                ("engagements", t.engagements.as_ref().map(pos)),
                ("with", t.with.as_ref().map(pos)),
                ("action", t.action.as_ref().map(pos)),
            ];
            for (name, field) in fields {
                if let Some(field) = field.filter(|_| !allowed.contains(&name)) {
                    sink.error(
                        field,
                        format!("`{name}` does not apply to `event: {event}`"),
                    );
                }
            }
        };
        let pattern = match event {
            "created" => Some(EventPattern::Created),
            "deleted" => Some(EventPattern::Deleted),
            "change" => {
                misplaced(self.sink, &["change", "from", "to"]);
                match &t.change {
                    Some(p) if !p.value.trim().is_empty() => Some(EventPattern::Change {
                        property: p.value.trim().to_owned(),
                        from: t.from.as_ref().map(|v| v.value.clone()),
                        to: t.to.as_ref().map(|v| v.value.clone()),
                    }),
                    _ => {
                        self.sink
                            .error(at, "`event: change` needs `change: <property>`");
                        None
                    }
                }
            }
            "activity" => {
                misplaced(self.sink, &["properties", "engagements"]);
                let list = |v: &Option<S<Vec<String>>>, default: &[&str]| {
                    v.as_ref()
                        .map(|v| v.value.clone())
                        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
                };
                Some(EventPattern::Activity {
                    properties: list(&t.properties, &DEFAULT_ACTIVITY_PROPERTIES),
                    engagements: list(&t.engagements, &DEFAULT_ENGAGEMENTS),
                })
            }
            "association" => {
                misplaced(self.sink, &["with", "action"]);
                let action = match t.action.as_ref().map(|a| a.value.as_str()) {
                    None | Some("added") => AssociationAction::Added,
                    Some("removed") => AssociationAction::Removed,
                    Some("any") => AssociationAction::Any,
                    Some(other) => {
                        self.sink.error(pos(t.action.as_ref().unwrap()), format!("unknown association action `{other}`, expected added, removed or any"));
                        AssociationAction::Added
                    }
                };
                Some(EventPattern::Association {
                    with: t.with.as_ref().map(|w| w.value.clone()),
                    action,
                })
            }
            other => {
                let at = t.event.as_ref().map(pos).unwrap_or(at);
                self.sink.error(at, format!("unknown event `{other}`, expected one of created, deleted, change, activity, association"));
                None
            }
        };
        if matches!(event, "created" | "deleted") {
            misplaced(self.sink, &[]);
        }
        pattern
    }

    fn steps(&mut self, raw: &RawSteps) -> Vec<Step> {
        raw.value
            .iter()
            .filter_map(|step| self.step(step))
            .collect()
    }

    fn step(&mut self, raw: &S<RawStep>) -> Option<Step> {
        let at = pos(raw);
        let s = &raw.value;
        let present: Vec<&str> = STEP_KINDS
            .iter()
            .copied()
            .zip([
                s.wait.is_some(),
                s.wait_for.is_some(),
                s.if_.is_some(),
                s.lookup.is_some(),
                s.create_task.is_some(),
                s.update.is_some(),
                s.revert.is_some(),
                s.assign_owner.is_some(),
                s.enroll_sequence.is_some(),
                s.add_to_list.is_some(),
                s.create_note.is_some(),
                s.slack_dm.is_some(),
                s.slack_message.is_some(),
                s.http.is_some(),
            ])
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
        match present.as_slice() {
            [] => {
                self.sink.error(
                    at,
                    format!("empty step: expected one of {}", STEP_KINDS.join(", ")),
                );
                return None;
            }
            [_] => {}
            [first, second, ..] => {
                self.sink.error(at, format!("a step does one thing: found both `{first}` and `{second}`; split them into two steps"));
                return None;
            }
        }
        if let Some(t) = &s.on_timeout
            && s.wait_for.is_none()
        {
            self.sink
                .error(pos(t), "`on_timeout` belongs beside `wait_for`");
        }
        for (name, branch) in [("then", &s.then), ("else", &s.else_)] {
            if let (Some(b), None) = (branch, &s.if_) {
                self.sink
                    .error(pos(b), format!("`{name}` belongs beside `if`"));
            }
        }
        if let Some(w) = &s.wait {
            return self.delay(w).map(Step::Wait);
        }
        if let Some(w) = &s.wait_for {
            let pattern = self.pattern(w, true);
            let when = w.value.when.as_ref().and_then(|c| self.condition(c));
            let timeout = match &w.value.timeout {
                Some(t) => self.delay(t),
                None => {
                    self.sink
                        .error(pos(w), "`wait_for` needs a `timeout`, e.g. `timeout: 24h`");
                    None
                }
            };
            let on_timeout = s
                .on_timeout
                .as_ref()
                .map(|t| self.steps(t))
                .unwrap_or_default();
            return Some(Step::WaitFor(WaitFor {
                pattern: pattern?,
                when,
                timeout: timeout?,
                on_timeout,
            }));
        }
        if let Some(cond) = &s.if_ {
            let condition = self.condition(cond);
            if s.then.is_none() {
                self.sink.error(pos(cond), "`if` needs `then:` steps");
            }
            let then = s.then.as_ref().map(|t| self.steps(t)).unwrap_or_default();
            let otherwise = s.else_.as_ref().map(|t| self.steps(t)).unwrap_or_default();
            return Some(Step::If {
                condition: condition?,
                then,
                otherwise,
            });
        }
        if let Some(l) = &s.lookup {
            let url = self.text(&l.value.url);
            let headers = self.headers(l.value.headers.as_ref());
            let into = l.value.into.value.trim().to_owned();
            if into.is_empty() || !into.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.sink.error(
                    pos(&l.value.into),
                    "`into` names a variable: letters, digits and `_`",
                );
            }
            return Some(Step::Lookup {
                url: url?,
                headers: headers?,
                into,
            });
        }
        self.action(s, at).map(Step::Action)
    }
}

/// `Option<Option<T>>` from an optional field that failed to compile: the outer `None`
/// means "invalid", so `?` propagates it.
pub(crate) trait TransposeAll<T> {
    fn transpose_all(self) -> Option<Option<T>>;
}

impl<T> TransposeAll<T> for Option<Option<T>> {
    fn transpose_all(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(v)) => Some(Some(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_keys_map_back_to_type_names() {
        for (key, kind) in [
            ("contacts", "contact"),
            ("contact", "contact"),
            ("companies", "company"),
            ("company", "company"),
            ("deals", "deal"),
            ("line_items", "line_item"),
            ("journeys", "journey"),
        ] {
            assert_eq!(singular(key), kind, "{key}");
            assert_eq!(singular(&plural(kind)), kind, "{kind}");
        }
    }

    #[test]
    fn owner_id_alone_needs_no_fetch() {
        let reads = reads_of(["owner.id", "object.x", "associated"], false);
        assert_eq!(reads, Reads::default());
        assert!(reads_of(["owner.teams"], false).owner);
        assert!(reads_of(["owner"], false).owner);
        assert!(reads_of([], true).owner);
    }
}
