//! Loading a folder of rules into a [`RuleSet`], and finding the rules an event may
//! trigger without looking at the others.
//!
//! The index key is (object type, event kind, property): a property change of
//! `dealstage` looks at the rules on `deal` changes of `dealstage` (and the activity
//! rules that list `dealstage`), so the cost of matching does not grow with rules that
//! cannot match.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use followthrough_core::{Event, EventKind};

use crate::compile::compile_rule;
use crate::diagnostic::{Diagnostic, Pos, Sink};
use crate::model::{EventPattern, Rule};

/// All enabled and disabled rules of a folder, indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    index: HashMap<IndexKey, Vec<(usize, Subject)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IndexKey {
    object_type: String,
    kind: &'static str,
    property: Option<String>,
}

/// Which object a candidate rule is about, given the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The event's own object.
    EventObject,
    /// Each object of the rule's type associated with the event's object: the creation of
    /// an engagement is activity on the contacts (deals, ...) it is linked to.
    Associated,
}

/// A rule that may match an event, and the object to evaluate it for.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub rule: &'a Rule,
    pub subject: Subject,
}

/// What changed between two loads of a rules folder, by rule id (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSetDiff {
    /// In the newer set only.
    pub added: Vec<String>,
    /// In both, with another version (file hash), and not in `disabled`.
    pub changed: Vec<String>,
    /// In the older set only.
    pub removed: Vec<String>,
    /// Enabled in the older set, disabled in the newer one. Disabling a rule edits its
    /// file, so these also have a new version; they are not repeated in `changed`.
    pub disabled: Vec<String>,
}

impl RuleSetDiff {
    /// The two sets hold the same rules, in the same versions.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.disabled.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl RuleSet {
    /// Builds a set from loaded rules. Every rule's CEL context then fills the properties
    /// any rule reads, so one context per event serves all rules.
    pub fn new(mut rules: Vec<Rule>) -> RuleSet {
        let fill: BTreeSet<String> = rules.iter().flat_map(|r| r.fill.iter().cloned()).collect();
        let fill = Arc::new(fill);
        for rule in &mut rules {
            rule.fill = Arc::clone(&fill);
        }
        let mut index: HashMap<IndexKey, Vec<(usize, Subject)>> = HashMap::new();
        let mut add = |object_type: &str,
                       kind: &'static str,
                       property: Option<&str>,
                       i: usize,
                       subject: Subject| {
            let key = IndexKey {
                object_type: object_type.to_owned(),
                kind,
                property: property.map(str::to_owned),
            };
            index.entry(key).or_default().push((i, subject));
        };
        for (i, rule) in rules.iter().enumerate() {
            if !rule.enabled {
                continue;
            }
            let object = rule.trigger.object.as_str();
            match &rule.trigger.pattern {
                EventPattern::Created => add(object, "created", None, i, Subject::EventObject),
                EventPattern::Deleted => add(object, "deleted", None, i, Subject::EventObject),
                EventPattern::Change { property, .. } => add(
                    object,
                    "property_change",
                    Some(property),
                    i,
                    Subject::EventObject,
                ),
                EventPattern::Association { .. } => {
                    add(object, "association_change", None, i, Subject::EventObject)
                }
                EventPattern::Activity {
                    properties,
                    engagements,
                } => {
                    for property in properties {
                        add(
                            object,
                            "property_change",
                            Some(property),
                            i,
                            Subject::EventObject,
                        );
                    }
                    add(object, "association_change", None, i, Subject::EventObject);
                    for engagement in engagements {
                        add(engagement, "created", None, i, Subject::Associated);
                    }
                }
            }
        }
        let by_id = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        RuleSet {
            rules,
            by_id,
            index,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|&i| &self.rules[i])
    }

    /// The enabled rules whose trigger may match `event`; each still needs
    /// [`evaluate_trigger`](crate::evaluate_trigger) (from/to values, guard).
    pub fn matching<'a>(&'a self, event: &Event) -> impl Iterator<Item = Candidate<'a>> + 'a {
        let property = match &event.kind {
            EventKind::PropertyChange { property, .. } => Some(property.clone()),
            _ => None,
        };
        let key = IndexKey {
            object_type: event.object.object_type.clone(),
            kind: event.kind.name(),
            property,
        };
        self.index
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&(i, subject)| Candidate {
                rule: &self.rules[i],
                subject,
            })
    }

    /// Loads every `*.yaml`/`*.yml` rule file under `dir` (recursively, in name order),
    /// except `*.test.yaml`. All problems of all files are returned, not only the first.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<Diagnostic>> {
        let mut diagnostics = Vec::new();
        let mut rules = Vec::new();
        let files = match rule_files(dir) {
            Ok(files) => files,
            Err(e) => {
                return Err(vec![Diagnostic::new(
                    &e.path,
                    Pos::START,
                    e.source.to_string(),
                )]);
            }
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(source) => {
                    let mut sink = Sink::new(&file);
                    if let Some(rule) = compile_rule(&file, &source, &mut sink) {
                        rules.push(rule);
                    }
                    diagnostics.extend(sink.diagnostics);
                }
                Err(e) => diagnostics.push(Diagnostic::new(
                    &file,
                    Pos::START,
                    format!("cannot read: {e}"),
                )),
            }
        }
        let mut first: BTreeMap<&str, &Rule> = BTreeMap::new();
        for rule in &rules {
            if let Some(other) = first.insert(&rule.id, rule) {
                first.insert(&other.id, other);
                diagnostics.push(Diagnostic::new(
                    &rule.file,
                    id_position(&rule.file),
                    format!(
                        "duplicate rule id `{}`: also defined in {}",
                        rule.id,
                        other.file.display()
                    ),
                ));
            }
        }
        if diagnostics.is_empty() {
            Ok(RuleSet::new(rules))
        } else {
            Err(diagnostics)
        }
    }

    /// What `newer` adds, changes, removes and disables relative to this set: after a
    /// reload, the engine cancels the runs of removed and disabled rules.
    pub fn diff(&self, newer: &RuleSet) -> RuleSetDiff {
        let mut diff = RuleSetDiff::default();
        for rule in &newer.rules {
            match self.get(&rule.id) {
                None => diff.added.push(rule.id.clone()),
                Some(old) if old.enabled && !rule.enabled => diff.disabled.push(rule.id.clone()),
                Some(old) if old.version != rule.version => diff.changed.push(rule.id.clone()),
                Some(_) => {}
            }
        }
        diff.removed = self
            .rules
            .iter()
            .filter(|rule| newer.get(&rule.id).is_none())
            .map(|rule| rule.id.clone())
            .collect();
        for list in [
            &mut diff.added,
            &mut diff.changed,
            &mut diff.removed,
            &mut diff.disabled,
        ] {
            list.sort();
        }
        diff
    }

    /// Parses one rule from text (tests, the API's "validate this rule").
    pub fn parse_rule(file: &Path, source: &str) -> Result<Rule, Vec<Diagnostic>> {
        let mut sink = Sink::new(file);
        compile_rule(file, source, &mut sink).ok_or(sink.diagnostics)
    }
}

/// Every problem in the rules under `dir`: what `followthrough check DIR` prints.
pub fn check_dir(dir: &Path) -> Vec<Diagnostic> {
    let mut diagnostics = match RuleSet::load_dir(dir) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    };
    // Test files are checked too: a broken test is a problem `check` should show.
    if let Ok(files) = crate::testing::test_files(dir) {
        for file in files {
            if let Err(d) = crate::testfile::TestFile::load(&file) {
                diagnostics.push(d);
            }
        }
    }
    diagnostics
}

/// Where `id:` is in a file (for the duplicate-id diagnostic, found after compiling).
fn id_position(file: &Path) -> Pos {
    let source = std::fs::read_to_string(file).unwrap_or_default();
    for (i, line) in source.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("id:") {
            let column = line.len() - rest.trim_start().len() + 1;
            return Pos {
                line: i as u64 + 1,
                column: column as u64,
            };
        }
    }
    Pos::START
}

pub(crate) fn yaml_files(
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, ReadError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|source| ReadError {
            path: current.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ReadError {
                path: current.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && keep(name)
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    yaml_files(dir, &|name| {
        (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.ends_with(".test.yaml")
            && !name.ends_with(".test.yml")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, enabled: bool, text: &str) -> Rule {
        let source = format!(
            "id: {id}\nenabled: {enabled}\non: {{ object: deal, event: created }}\nsteps:\n  - slack_message: {{ channel: '#x', text: '{text}' }}\n"
        );
        RuleSet::parse_rule(Path::new(&format!("{id}.yaml")), &source).unwrap()
    }

    #[test]
    fn diff_names_added_changed_removed_and_disabled_rules() {
        let older = RuleSet::new(vec![
            rule("same", true, "a"),
            rule("edited", true, "a"),
            rule("gone", true, "a"),
            rule("switched-off", true, "a"),
            rule("still-off", false, "a"),
            rule("switched-on", false, "a"),
        ]);
        let newer = RuleSet::new(vec![
            rule("same", true, "a"),
            rule("edited", true, "b"),
            rule("switched-off", false, "a"),
            rule("still-off", false, "a"),
            rule("switched-on", true, "a"),
            rule("new-b", true, "a"),
            rule("new-a", true, "a"),
        ]);
        let diff = older.diff(&newer);
        assert_eq!(
            diff,
            RuleSetDiff {
                added: vec!["new-a".into(), "new-b".into()],
                changed: vec!["edited".into(), "switched-on".into()],
                removed: vec!["gone".into()],
                disabled: vec!["switched-off".into()],
            }
        );
        assert!(!diff.is_empty());
        assert!(newer.diff(&newer).is_empty());
        assert!(RuleSet::default().diff(&RuleSet::default()).is_empty());
    }
}
