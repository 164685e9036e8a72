//! The batch's objects in memory: applying an event's change to them, taking in what
//! was fetched from the CRM, and building what a rule sees.

use std::collections::BTreeMap;

use followthrough_core::{Event, EventKind, ObjectRef, Timestamp};
use followthrough_rules::{EvalContext, ObjectState, Owner};
use followthrough_store::{AssociationWrite, ObjectMark, PropertyWrite};
use serde_json::Value as Json;

use super::Batch;

/// An object's properties in memory, each with the time of the value, so an older
/// event leaves a newer value current here exactly as the store does.
#[derive(Debug, Clone, Default)]
pub(super) struct Props(pub(super) BTreeMap<String, (Json, Timestamp)>);

impl Props {
    pub(super) fn values(&self) -> BTreeMap<String, Json> {
        self.0
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
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
            let props = self.objects.entry(write.object.clone()).or_default();
            let newer = props
                .0
                .get(&write.name)
                .is_none_or(|(_, t)| write.occurred_at >= *t);
            if newer {
                props
                    .0
                    .insert(write.name.clone(), (write.value.clone(), write.occurred_at));
            }
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
                let newer = props.0.get(property).is_none_or(|(_, t)| at >= *t);
                if newer {
                    props.0.insert(property.clone(), (value.clone(), at));
                }
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
        previous: BTreeMap<String, Json>,
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
