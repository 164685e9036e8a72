//! The batch's objects in memory: applying an event's change to them, taking in what
//! was fetched from the CRM, and building what a rule sees.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use followthrough_core::{Event, EventKind, ObjectRef, Timestamp};
use followthrough_rules::{EvalContext, ObjectState, Owner, Properties};
use followthrough_store::{AssociationWrite, ObjectMark, PropertyWrite};
use serde_json::Value as Json;

use super::Batch;

/// An object's properties in memory, each with the time of the value, so an older
/// event leaves a newer value current here exactly as the store does.
///
/// The values are one shared map: an event's `previous`, its context's `object` and
/// every context that links to the object take the map itself, not a copy, and a
/// change copies it only while such a context still holds the old one (once per
/// property change at most, where building contexts used to copy it three or four
/// times per event).
#[derive(Debug, Clone, Default)]
pub(super) struct Props {
    values: Properties,
    times: HashMap<String, Timestamp>,
}

impl Props {
    /// An object's properties as the store loaded them.
    pub(super) fn from_store(
        properties: BTreeMap<String, followthrough_store::PropertyState>,
    ) -> Self {
        let mut values = BTreeMap::new();
        let mut times = HashMap::with_capacity(properties.len());
        for (name, property) in properties {
            times.insert(name.clone(), property.occurred_at);
            values.insert(name, property.value);
        }
        Self {
            values: Arc::new(values),
            times,
        }
    }

    /// The current values, shared.
    pub(super) fn values(&self) -> Properties {
        Arc::clone(&self.values)
    }

    /// Sets `name` to `value` unless the value held is newer than `at` (ties go to the
    /// later arrival, as in the store).
    fn set(&mut self, name: &str, value: &Json, at: Timestamp) {
        let newer = self.times.get(name).is_none_or(|t| at >= *t);
        if newer {
            self.times.insert(name.to_owned(), at);
            Arc::make_mut(&mut self.values).insert(name.to_owned(), value.clone());
        }
    }
}

impl Batch<'_> {
    /// Takes in what was fetched from the CRM: into memory for evaluation, and into
    /// the unit so the store keeps it.
    pub fn absorb(&mut self, fetched: super::super::hydrate::Fetched) {
        for owner in &fetched.owners {
            self.owners.insert(
                owner.id.clone(),
                Owner {
                    id: owner.id.clone(),
                    email: owner.email.clone(),
                    name: owner.name.clone(),
                    teams: owner.teams.clone(),
                },
            );
        }
        for sync in &fetched.syncs {
            let set = self.links.entry(sync.object.clone()).or_default();
            set.retain(|o| o.object_type != sync.to_type);
            set.extend(sync.linked.iter().cloned());
            for other in &sync.linked {
                self.links
                    .entry(other.clone())
                    .or_default()
                    .insert(sync.object.clone());
            }
        }
        for write in &fetched.property_writes {
            self.objects.entry(write.object.clone()).or_default().set(
                &write.name,
                &write.value,
                write.occurred_at,
            );
        }
        self.unit.owners.extend(fetched.owners);
        self.unit.association_syncs.extend(fetched.syncs);
        self.unit.property_writes.extend(fetched.property_writes);
        self.unit.marks.extend(fetched.marks);
        self.unit.journal.extend(fetched.journal);
    }

    pub(super) fn update_state(&mut self, event: &Event) {
        let object = event.object.clone();
        let at = event.occurred_at;
        self.unit.marks.push(ObjectMark::Seen {
            object: object.clone(),
            at,
        });
        let props = self.objects.entry(object.clone()).or_default();
        match &event.kind {
            EventKind::PropertyChange { property, value } => {
                props.set(property, value, at);
                self.unit.property_writes.push(PropertyWrite {
                    object,
                    name: property.clone(),
                    value: value.clone(),
                    occurred_at: at,
                    event_id: event.id.clone(),
                });
            }
            EventKind::Deleted => self.unit.marks.push(ObjectMark::Deleted { object, at }),
            EventKind::Restored => self.unit.marks.push(ObjectMark::Restored { object, at }),
            EventKind::AssociationChange { to, removed, .. } => {
                for (a, b) in [(&object, to), (to, &object)] {
                    let set = self.links.entry(a.clone()).or_default();
                    if *removed {
                        set.remove(b);
                    } else {
                        set.insert(b.clone());
                    }
                }
                self.unit.associations.push(AssociationWrite {
                    from: object.clone(),
                    to: to.clone(),
                    removed: *removed,
                    at,
                });
                self.unit
                    .journal
                    .push(crate::journal::association_seen_from_other_end(
                        self.settings.now,
                        event,
                        to,
                    ));
            }
            EventKind::Created | EventKind::Merged { .. } => {}
        }
    }

    /// What a rule sees: the object after the event, its owner, its linked objects.
    pub(super) fn context(
        &self,
        object: &ObjectRef,
        event: Option<Event>,
        previous: Properties,
        now: Timestamp,
    ) -> EvalContext {
        let properties = self
            .objects
            .get(object)
            .map(Props::values)
            .unwrap_or_default();
        let linked = self
            .links
            .get(object)
            .into_iter()
            .flatten()
            .map(|other| ObjectState {
                object: other.clone(),
                properties: self
                    .objects
                    .get(other)
                    .map(Props::values)
                    .unwrap_or_default(),
            });
        EvalContext::gather(
            event,
            ObjectState {
                object: object.clone(),
                properties,
            },
            previous,
            |id| self.owners.get(id).cloned(),
            linked,
            now,
            self.settings.calendar.clone(),
        )
    }
}
