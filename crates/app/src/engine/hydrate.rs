//! Context hydration: before a batch is evaluated, what its candidate rules read of
//! owners and linked objects must be in the store and fresh. What is missing or older
//! than `engine.context_max_age_ms` is fetched read-only through the CRM connector,
//! outside any transaction; the results go into the batch's unit (so they are cached
//! and journaled with it). An event whose context cannot be fetched is deferred: it is
//! never evaluated against a guess.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use followthrough_core::{EventId, EventKind, ObjectRef, Timestamp};
use followthrough_rules::{Rule, RuleSet, RunState, Subject};
use followthrough_store::{
    AssociationSync, CachedOwner, JournalEntry, ObjectMark, ObjectsView, PendingEvent,
    PropertyWrite,
};
use serde_json::Value as Json;

use futures_util::{StreamExt, stream};

use super::batch::{OWNER_PROPERTY, owner_id};

/// Most CRM reads in flight at once (HubSpot allows 100-190 per 10 s per account).
const FETCH_CONCURRENCY: usize = 8;
use super::record;
use followthrough_connectors::{CrmReader, FetchError};

/// What the batch's rules need: owners by id, and link lists by (object, linked type).
#[derive(Debug, Default)]
pub struct Needs {
    /// Owner id -> the objects whose evaluation needs it.
    pub owners: BTreeMap<String, BTreeSet<ObjectRef>>,
    /// (object, linked type) pairs.
    pub links: BTreeSet<(ObjectRef, String)>,
    /// Object a context is about -> the objects whose events wait if it cannot be had
    /// (an engagement's event waits for its contacts' context).
    pub dependents: BTreeMap<ObjectRef, BTreeSet<ObjectRef>>,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty() && self.links.is_empty()
    }

    /// The event objects that must wait because these context objects failed.
    pub fn blocked(&self, failed: &BTreeMap<ObjectRef, String>) -> BTreeMap<ObjectRef, String> {
        let mut blocked = failed.clone();
        for (object, why) in failed {
            for dependent in self.dependents.get(object).into_iter().flatten() {
                blocked
                    .entry(dependent.clone())
                    .or_insert_with(|| why.clone());
            }
        }
        blocked
    }
}

/// Adds what `rule` reads about `object` (whose owner ids are `owner_ids`), for an
/// event of `event_object`.
fn add_rule(
    needs: &mut Needs,
    rule: &Rule,
    object: &ObjectRef,
    owner_ids: &BTreeSet<String>,
    event_object: &ObjectRef,
) {
    let reads = rule.reads();
    if reads.is_empty() {
        return;
    }
    if object != event_object {
        needs
            .dependents
            .entry(object.clone())
            .or_default()
            .insert(event_object.clone());
    }
    if reads.owner {
        for id in owner_ids {
            needs
                .owners
                .entry(id.clone())
                .or_default()
                .insert(object.clone());
        }
    }
    for linked_type in &reads.associated {
        needs.links.insert((object.clone(), linked_type.clone()));
    }
}

/// What the events and the runs woken by timers will read.
pub fn needs(
    rules: &RuleSet,
    view: &ObjectsView,
    events: &[PendingEvent],
    timer_runs: &HashMap<String, RunState>,
) -> Needs {
    // Every owner id an object has or gets in this batch.
    let mut owner_ids: HashMap<&ObjectRef, BTreeSet<String>> = HashMap::new();
    for state in &view.objects {
        if let Some(p) = state.properties.get(OWNER_PROPERTY) {
            owner_ids
                .entry(&state.object)
                .or_default()
                .insert(owner_id(&p.value));
        }
    }
    for pending in events {
        if let Some((OWNER_PROPERTY, value)) = pending.event.property_change() {
            owner_ids
                .entry(&pending.event.object)
                .or_default()
                .insert(owner_id(value));
        }
    }
    for ids in owner_ids.values_mut() {
        ids.remove("");
    }
    let none = BTreeSet::new();
    let ids_of = |object: &ObjectRef| owner_ids.get(object).unwrap_or(&none);

    let mut needs = Needs::default();
    let mut runs_by_object: HashMap<&ObjectRef, Vec<&str>> = HashMap::new();
    for run in &view.runs {
        runs_by_object
            .entry(&run.object)
            .or_default()
            .push(run.rule_id.as_str());
    }
    let linked_to = |object: &ObjectRef| -> Vec<&ObjectRef> {
        view.links
            .iter()
            .filter(|(from, _)| from == object)
            .map(|(_, to)| to)
            .collect()
    };
    for pending in events {
        let event = &pending.event;
        let here = &event.object;
        // The creation of an engagement concerns the objects it is linked to: their
        // rules and waiting runs read their context.
        let subjects: Vec<&ObjectRef> = if matches!(event.kind, EventKind::Created) {
            std::iter::once(here).chain(linked_to(here)).collect()
        } else {
            vec![here]
        };
        for candidate in rules.matching(event) {
            match candidate.subject {
                Subject::EventObject => {
                    add_rule(&mut needs, candidate.rule, here, ids_of(here), here)
                }
                Subject::Associated => {
                    for linked in subjects.iter().skip(1) {
                        if linked.object_type == candidate.rule.trigger.object {
                            add_rule(&mut needs, candidate.rule, linked, ids_of(linked), here);
                        }
                    }
                }
            }
        }
        for subject in &subjects {
            for rule_id in runs_by_object.get(subject).into_iter().flatten() {
                if let Some(rule) = rules.get(rule_id) {
                    add_rule(&mut needs, rule, subject, ids_of(subject), here);
                }
            }
        }
    }
    for run in timer_runs.values() {
        if let Some(rule) = rules.get(&run.rule_id) {
            add_rule(
                &mut needs,
                rule,
                &run.object,
                ids_of(&run.object),
                &run.object,
            );
        }
    }
    needs
}

/// The outcome of fetching: rows for the unit, and the objects that must wait.
#[derive(Default)]
pub struct Fetched {
    pub owners: Vec<CachedOwner>,
    pub syncs: Vec<AssociationSync>,
    pub property_writes: Vec<PropertyWrite>,
    pub marks: Vec<ObjectMark>,
    pub journal: Vec<JournalEntry>,
    /// Objects whose context could not be fetched, and why.
    pub failed: BTreeMap<ObjectRef, String>,
}

pub struct Hydrator {
    pub crm: Option<Arc<dyn CrmReader>>,
    pub max_age_ms: i64,
    pub timeout: Duration,
}

impl Hydrator {
    /// Fetches what `needs` lists and the store does not have fresh. `cached_owners` and
    /// `view` are what the store has.
    pub async fn fetch(
        &self,
        needs: &Needs,
        cached_owners: &[CachedOwner],
        view: &ObjectsView,
        now: Timestamp,
    ) -> Fetched {
        let mut fetched = Fetched::default();
        let fresh = |at: Timestamp| now.as_millis() - at.as_millis() <= self.max_age_ms;

        let owners_to_fetch: Vec<(&String, &BTreeSet<ObjectRef>)> = needs
            .owners
            .iter()
            .filter(|(id, _)| {
                !cached_owners
                    .iter()
                    .any(|o| &o.id == *id && fresh(o.fetched_at))
            })
            .collect();
        let syncs_to_fetch: Vec<&(ObjectRef, String)> = needs
            .links
            .iter()
            .filter(|(object, linked_type)| {
                !view
                    .syncs
                    .iter()
                    .any(|(o, t, at)| o == object && t == linked_type && fresh(*at))
            })
            .collect();
        if owners_to_fetch.is_empty() && syncs_to_fetch.is_empty() {
            return fetched;
        }
        let Some(crm) = &self.crm else {
            for (_, objects) in &owners_to_fetch {
                for object in *objects {
                    fetched
                        .failed
                        .insert(object.clone(), "connectors.hubspot.token is not set".into());
                }
            }
            for (object, _) in &syncs_to_fetch {
                fetched
                    .failed
                    .insert(object.clone(), "connectors.hubspot.token is not set".into());
            }
            return fetched;
        };

        // Different owners and objects are fetched concurrently, a few at a time, so a
        // slow CRM costs one round trip per batch rather than one per object.
        // (Owned values in the futures: borrowed ones trip the compiler's Send check
        // for the spawned engine task.)
        let timeout = self.timeout;
        let owner_reads: Vec<_> = owners_to_fetch
            .into_iter()
            .map(|(id, objects)| {
                let (crm, id, objects) = (Arc::clone(crm), id.clone(), objects.clone());
                async move {
                    let result = timed(timeout, crm.owner(&id)).await;
                    (id, objects, result)
                }
            })
            .collect();
        let owners: Vec<_> = stream::iter(owner_reads)
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (id, objects, result) in owners {
            let (id, objects) = (&id, &objects);
            match result {
                Ok(Some(owner)) => {
                    for object in objects {
                        fetched.journal.push(record::context_fetched(
                            now,
                            object,
                            &format!("owner {id}"),
                        ));
                    }
                    fetched.owners.push(CachedOwner {
                        id: owner.id,
                        email: owner.email,
                        name: owner.name,
                        teams: owner.teams,
                        fetched_at: now,
                    });
                }
                // The CRM has no such owner: remember that (empty), so rules see an
                // owner without email rather than waiting forever.
                Ok(None) => fetched.owners.push(CachedOwner {
                    id: id.clone(),
                    email: String::new(),
                    name: String::new(),
                    teams: Vec::new(),
                    fetched_at: now,
                }),
                Err(error) => {
                    for object in objects {
                        fetched
                            .failed
                            .insert(object.clone(), format!("owner {id}: {error}"));
                    }
                }
            }
        }

        let known: BTreeSet<&ObjectRef> = view.objects.iter().map(|o| &o.object).collect();
        let list_reads: Vec<_> = syncs_to_fetch
            .into_iter()
            .map(|(object, linked_type)| {
                let (crm, object, linked_type) =
                    (Arc::clone(crm), object.clone(), linked_type.clone());
                async move {
                    let result = timed(timeout, crm.associations(&object, &linked_type)).await;
                    (object, linked_type, result)
                }
            })
            .collect();
        let lists: Vec<_> = stream::iter(list_reads)
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (object, linked_type, result) in lists {
            let (object, linked_type) = (&object, &linked_type);
            let linked = match result {
                Ok(linked) => linked,
                Err(error) => {
                    fetched
                        .failed
                        .insert(object.clone(), format!("{linked_type} links: {error}"));
                    continue;
                }
            };
            // Linked objects the store has never heard of are read once; after that
            // their webhooks keep them current.
            let mut complete = true;
            for other in linked.iter().filter(|o| !known.contains(o)) {
                match self.timed(crm.object(other, &[])).await {
                    Ok(Some(properties)) => {
                        let event_id = EventId::new();
                        fetched.marks.push(ObjectMark::Seen {
                            object: other.clone(),
                            at: now,
                        });
                        for (name, value) in properties {
                            fetched.property_writes.push(PropertyWrite {
                                object: other.clone(),
                                name,
                                value: value_or_empty(value),
                                // As of the fetch: any webhook about a later change wins.
                                occurred_at: now,
                                event_id: event_id.clone(),
                            });
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        fetched
                            .failed
                            .insert(object.clone(), format!("linked {other}: {error}"));
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                fetched.journal.push(record::context_fetched(
                    now,
                    object,
                    &format!("{} linked {linked_type}(s)", linked.len()),
                ));
                fetched.syncs.push(AssociationSync {
                    object: object.clone(),
                    to_type: linked_type.clone(),
                    linked,
                    at: now,
                });
            }
        }
        fetched
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        timed(self.timeout, call).await
    }
}

async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(FetchError::Unavailable("timed out".into())))
}

fn value_or_empty(value: Json) -> Json {
    if value.is_null() {
        Json::String(String::new())
    } else {
        value
    }
}
