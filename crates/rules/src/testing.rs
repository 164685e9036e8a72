//! `followthrough test`: runs the cases of `*.test.yaml` files through the
//! [`Simulator`] and compares the actions taken with those expected.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use followthrough_core::{EventKind, Timestamp};
use serde_json::Value as Json;

use crate::context::ObjectState;
use crate::diagnostic::Diagnostic;
use crate::ruleset::{RuleSet, yaml_files};
use crate::simulator::{Outcome, Simulator, Taken};
use crate::testfile::{Case, Expect, Expected, TestFile, event, parse_time};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// `None` if it passed; else a readable explanation with the diff.
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
    /// Rule or test files that could not be loaded (each also counts as a failure).
    pub diagnostics: Vec<Diagnostic>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed() + self.diagnostics.len()
    }

    pub fn success(&self) -> bool {
        self.failed() == 0
    }

    /// Prints each case as `ok`/`FAILED` with its diff, then exactly `N passed, M failed`.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for diagnostic in &self.diagnostics {
            writeln!(out, "error: {diagnostic}")?;
        }
        for case in &self.cases {
            let file = case
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            match &case.failure {
                None => writeln!(out, "ok      {file}: {}", case.name)?,
                Some(why) => {
                    writeln!(out, "FAILED  {file}: {}", case.name)?;
                    for line in why.lines() {
                        writeln!(out, "        {line}")?;
                    }
                }
            }
        }
        writeln!(out, "{} passed, {} failed", self.passed(), self.failed())
    }
}

pub(crate) fn test_files(dir: &Path) -> Result<Vec<PathBuf>, crate::ruleset::ReadError> {
    yaml_files(dir, &|name| {
        name.ends_with(".test.yaml") || name.ends_with(".test.yml")
    })
}

/// Runs every `*.test.yaml` under `dir` against the rules beside it.
pub fn run_tests(dir: &Path) -> TestReport {
    let mut report = TestReport::default();
    let files = match test_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.diagnostics.push(Diagnostic::new(
                &e.path,
                crate::Pos::START,
                e.source.to_string(),
            ));
            return report;
        }
    };
    for path in files {
        match TestFile::load(&path) {
            Ok(file) => run_file(&file, &mut report),
            Err(d) => report.diagnostics.push(d),
        }
    }
    report
}

fn load_rules(file: &TestFile) -> Result<RuleSet, Vec<Diagnostic>> {
    let dir = file.path.parent().unwrap_or(Path::new("."));
    if file.rules.is_empty() {
        return RuleSet::load_dir(dir);
    }
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for name in &file.rules {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(source) => match RuleSet::parse_rule(&path, &source) {
                Ok(rule) => rules.push(rule),
                Err(d) => problems.extend(d),
            },
            Err(e) => problems.push(Diagnostic::new(
                &file.path,
                crate::Pos::START,
                format!("rule file {}: {e}", path.display()),
            )),
        }
    }
    if problems.is_empty() {
        Ok(RuleSet::new(rules))
    } else {
        Err(problems)
    }
}

fn run_file(file: &TestFile, report: &mut TestReport) {
    let rules = match load_rules(file) {
        Ok(rules) => rules,
        Err(d) => return report.diagnostics.extend(d),
    };
    for case in &file.cases {
        let failure = run_case(file, &rules, case).err();
        report.cases.push(CaseResult {
            file: file.path.clone(),
            name: case.name.clone(),
            failure,
        });
    }
}

/// Runs one case; `Err` holds the explanation of a failure.
pub fn run_case(file: &TestFile, rules: &RuleSet, case: &Case) -> Result<(), String> {
    let calendar = file.calendar()?;
    let start = file.start()?;
    let mut sim = Simulator::new(rules.clone(), calendar.clone(), start);
    for owner in &file.owners {
        sim.add_owner(owner.clone());
    }
    let subject = case.object.reference();
    sim.set_object(ObjectState::with_properties(
        subject.clone(),
        case.object.properties.clone(),
    ));
    for other in &case.associated {
        sim.set_object(ObjectState::with_properties(
            other.reference(),
            other.properties.clone(),
        ));
        sim.associate(&subject, &other.reference());
    }
    for (url, result) in &case.lookups {
        sim.set_lookup_result(url.clone(), result.clone());
    }
    let mut taken: Vec<Taken> = Vec::new();
    let mut at = start;
    let mut seq = 0;
    for step in &case.events {
        if let Some(time) = &step.at {
            at = parse_time(time, start, &calendar)?;
        }
        let mut next = |kind: EventKind, object| {
            seq += 1;
            event(object, kind, at, step.change_source.clone(), seq)
        };
        let mut events = Vec::new();
        if step.created == Some(true) {
            events.push(next(EventKind::Created, subject.clone()));
        }
        for (property, value) in step.change.iter().flatten() {
            events.push(next(
                EventKind::PropertyChange {
                    property: property.clone(),
                    value: value.clone(),
                },
                subject.clone(),
            ));
        }
        for (spec, removed) in [(&step.associate, false), (&step.dissociate, true)] {
            if let Some(other) = spec {
                sim.set_object(ObjectState::with_properties(
                    other.reference(),
                    other.properties.clone(),
                ));
                let kind = EventKind::AssociationChange {
                    to: other.reference(),
                    association_type: format!("{}_to_{}", subject.object_type, other.object_type),
                    removed,
                };
                events.push(next(kind, subject.clone()));
            }
        }
        if let Some(engagement) = &step.engagement {
            let reference = engagement.reference();
            sim.set_object(ObjectState::with_properties(
                reference.clone(),
                engagement.properties.clone(),
            ));
            sim.associate(&reference, &subject);
            events.push(next(EventKind::Created, reference));
        }
        if step.deleted == Some(true) {
            events.push(next(EventKind::Deleted, subject.clone()));
        }
        for e in &events {
            taken.extend(sim.apply(e));
        }
        if let Some(until) = &step.advance {
            taken.extend(sim.advance_to(parse_time(until, start, &calendar)?));
        }
    }
    compare(&case.expect, &taken, start, &calendar)
}

fn compare(
    expect: &Expect,
    taken: &[Taken],
    start: Timestamp,
    calendar: &crate::Calendar,
) -> Result<(), String> {
    let expected: &[Expected] = match expect {
        Expect::Text(_) => &[],
        Expect::Actions(list) => list,
    };
    let mut problem = None;
    for (i, exp) in expected.iter().enumerate() {
        let Some(actual) = taken.get(i) else {
            problem = Some(format!(
                "expected {} action(s), got {}",
                expected.len(),
                taken.len()
            ));
            break;
        };
        if let Err(why) = matches_one(exp, actual, start, calendar) {
            problem = Some(format!("action #{}: {why}", i + 1));
            break;
        }
    }
    if problem.is_none() && taken.len() > expected.len() {
        problem = Some(format!(
            "expected {} action(s), got {}",
            expected.len(),
            taken.len()
        ));
    }
    let Some(problem) = problem else {
        return Ok(());
    };
    let mut text = format!("{problem}\n--- expected\n");
    if expected.is_empty() {
        text.push_str("  (no actions)\n");
    }
    for (i, exp) in expected.iter().enumerate() {
        let params = exp
            .params
            .as_ref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default();
        let at = exp
            .at
            .as_ref()
            .map(|a| format!(" at {a}"))
            .unwrap_or_default();
        let _ = writeln!(text, "- {}. {}{at}{params}", i + 1, exp.action);
    }
    text.push_str("+++ actual\n");
    if taken.is_empty() {
        text.push_str("  (no actions)\n");
    }
    for (i, t) in taken.iter().enumerate() {
        let since = relative(t.at, start);
        let _ = match &t.outcome {
            Outcome::Action(a) => writeln!(
                text,
                "+ {}. {} at {since} ({}) [{}] {}",
                i + 1,
                a.action,
                t.at,
                t.rule_id,
                a.params
            ),
            Outcome::Failed { why, .. } => writeln!(
                text,
                "+ {}. failed at {since} ({}) [{}] {why}",
                i + 1,
                t.at,
                t.rule_id
            ),
        };
    }
    Err(text)
}

fn relative(at: Timestamp, start: Timestamp) -> String {
    let minutes = at.since(start).as_secs() / 60;
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let mut out = String::from("+");
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    if out == "+" { "+0".into() } else { out }
}

fn matches_one(
    exp: &Expected,
    actual: &Taken,
    start: Timestamp,
    calendar: &crate::Calendar,
) -> Result<(), String> {
    let (name, params) = match &actual.outcome {
        Outcome::Action(a) => (a.action.as_str(), a.params.clone()),
        Outcome::Failed { why, .. } => ("failed", serde_json::json!({ "why": why })),
    };
    if exp.action != name {
        return Err(format!("expected `{}`, got `{name}`", exp.action));
    }
    if let Some(rule) = exp.rule.as_ref().filter(|r| **r != actual.rule_id) {
        return Err(format!("expected rule `{rule}`, got `{}`", actual.rule_id));
    }
    if let Some(at) = &exp.at {
        let want = parse_time(at, start, calendar)?;
        if want != actual.at {
            return Err(format!(
                "`{name}` expected at {at} ({want}), happened at {}",
                actual.at
            ));
        }
    }
    if let Some(want) = &exp.params {
        subset(want, &params, "params")?;
    }
    Ok(())
}

/// `want` is contained in `got`: objects key by key, everything else equal. Strings
/// also match numbers and booleans with the same text, as YAML authors write `50`.
fn subset(want: &Json, got: &Json, path: &str) -> Result<(), String> {
    match (want, got) {
        (Json::Object(w), Json::Object(g)) => {
            for (key, value) in w {
                let here = format!("{path}.{key}");
                match g.get(key) {
                    Some(actual) => subset(value, actual, &here)?,
                    None => return Err(format!("{here} is missing (expected {value})")),
                }
            }
            Ok(())
        }
        (w, g) if w == g => Ok(()),
        (Json::String(w), g) if !g.is_string() && w.as_str() == g.to_string().as_str() => Ok(()),
        (w, Json::String(g)) if !w.is_string() && w.to_string().as_str() == g.as_str() => Ok(()),
        (w, g) => Err(format!("{path} expected {w}, got {g}")),
    }
}
