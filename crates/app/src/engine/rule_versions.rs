//! A run keeps the rule version it started with. Every version the engine loads is
//! saved in the store (its file's text); when a run of an older version wakes, that
//! version is compiled again from the saved text, so a changed rule applies to new runs
//! only, across restarts too.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use followthrough_core::Timestamp;
use followthrough_rules::{Rule, RuleSet};
use followthrough_store::{RuleVersion, RunRecord, Store, StoreError};

pub struct RuleVersions {
    store: Arc<dyn Store>,
    saved: HashSet<(String, String)>,
    compiled: HashMap<(String, String), Option<Arc<Rule>>>,
}

/// The older rule versions one batch's runs need.
#[derive(Default)]
pub struct Pinned(HashMap<(String, String), Arc<Rule>>);

impl Pinned {
    pub fn get(&self, rule_id: &str, version: &str) -> Option<Arc<Rule>> {
        self.0
            .get(&(rule_id.to_owned(), version.to_owned()))
            .cloned()
    }
}

impl RuleVersions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            saved: HashSet::new(),
            compiled: HashMap::new(),
        }
    }

    /// Saves the text of every loaded rule version not saved yet.
    pub async fn remember(&mut self, rules: &RuleSet, now: Timestamp) -> Result<(), StoreError> {
        let mut new = Vec::new();
        for rule in rules.rules() {
            let id = (rule.id.clone(), rule.version.clone());
            if self.saved.contains(&id) {
                continue;
            }
            // The file may have changed again since it was loaded: keep its text only
            // if it is the loaded version.
            if let Some(source) = source_of(&rule.file, &rule.version) {
                new.push(RuleVersion {
                    rule_id: rule.id.clone(),
                    version: rule.version.clone(),
                    file: rule.file.display().to_string(),
                    source,
                    loaded_at: now,
                });
            }
            self.saved.insert(id);
        }
        if !new.is_empty() {
            self.store.save_rule_versions(new).await?;
        }
        Ok(())
    }

    /// Compiles (once) the versions these runs started with, where they differ from the
    /// loaded rules.
    pub async fn pinned_for(
        &mut self,
        rules: &RuleSet,
        runs: impl Iterator<Item = &RunRecord>,
    ) -> Result<Pinned, StoreError> {
        let mut pinned = Pinned::default();
        for run in runs {
            let current = rules.get(&run.rule_id).map(|r| r.version.as_str());
            if current.is_none_or(|v| v == run.rule_version) {
                continue;
            }
            let id = (run.rule_id.clone(), run.rule_version.clone());
            if !self.compiled.contains_key(&id) {
                let rule = self
                    .store
                    .rule_version(&run.rule_id, &run.rule_version)
                    .await?
                    .and_then(|saved| {
                        RuleSet::parse_rule(Path::new(&saved.file), &saved.source)
                            .ok()
                            .map(Arc::new)
                    });
                if rule.is_none() {
                    tracing::warn!(rule = %run.rule_id, version = %run.rule_version,
                        "a run's rule version is not kept; the loaded version decides");
                }
                self.compiled.insert(id.clone(), rule);
            }
            if let Some(Some(rule)) = self.compiled.get(&id) {
                pinned.0.insert(id, Arc::clone(rule));
            }
        }
        Ok(pinned)
    }
}

fn source_of(file: &Path, version: &str) -> Option<String> {
    let source = std::fs::read_to_string(file).ok()?;
    let rule = RuleSet::parse_rule(file, &source).ok()?;
    (rule.version == version).then_some(source)
}
