//! The write side's test handles: what a test sets up (unique-value properties, lists,
//! sequences, search lag, chaos) and what it inspects afterwards (tasks and notes with
//! their associations, objects' current values and history, list members,
//! enrollments).

use std::collections::BTreeMap;
use std::time::Duration;

use super::FakeHubSpot;
use super::chaos::{Chaos, ChaosState};
use super::known_type;
use super::object_type::{ObjectType, association_type_id};
use super::state::{State, StoredList};

/// A task or note as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: String,
    pub properties: BTreeMap<String, String>,
    /// What it is associated with, in the order the associations were made.
    pub associations: Vec<FakeAssociation>,
}

/// One association of a record: the other record and HubSpot's type id from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAssociation {
    /// Singular: `contact`, `deal`, `company`.
    pub object_type: String,
    pub id: String,
    /// E.g. 204 for task -> contact.
    pub type_id: u32,
}

/// A contact's enrollment in a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEnrollment {
    pub id: String,
    pub contact_id: String,
    pub sequence_id: String,
    pub sender_email: String,
    /// The enrolling user's id (`userId`, not the owner id).
    pub user_id: String,
}

impl FakeHubSpot {
    /// Declares a unique-value property (`hasUniqueValue`): creates that reuse a value
    /// get a 409, and batch upserts may use it as `idProperty`.
    ///
    /// # Panics
    /// On an unknown object type.
    pub fn add_unique_property(&self, object_type: &str, name: &str) {
        let kind = known_type(object_type);
        let mut state = self.shared.state();
        state.unique_properties.insert((kind, name.to_owned()));
    }

    /// Creates an empty MANUAL list of records of `object_type`.
    ///
    /// # Panics
    /// On an unknown object type.
    pub fn add_list(&self, list_id: &str, object_type: &str) {
        let list = StoredList {
            object_type: known_type(object_type),
            members: Vec::new(),
        };
        self.shared.state().lists.insert(list_id.to_owned(), list);
    }

    /// Creates a sequence contacts can be enrolled in.
    pub fn add_sequence(&self, sequence_id: &str) {
        let mut state = self.shared.state();
        state.sequences.insert(sequence_id.to_owned());
    }

    /// Records created less than `lag` ago are not found by search (HubSpot's index
    /// lags writes by seconds).
    pub fn set_search_lag(&self, lag: Duration) {
        self.shared.state().search_lag = lag;
    }

    /// Fails requests at random from now on (see [`Chaos`]).
    pub fn set_chaos(&self, chaos: Chaos) {
        self.shared.state().chaos = Some(ChaosState::new(chaos));
    }

    /// Stops the chaos.
    pub fn clear_chaos(&self) {
        self.shared.state().chaos = None;
    }

    /// The tasks created so far, oldest first.
    pub fn tasks(&self) -> Vec<FakeRecord> {
        records(&self.shared.state(), ObjectType::Task)
    }

    /// The notes created so far, oldest first.
    pub fn notes(&self) -> Vec<FakeRecord> {
        records(&self.shared.state(), ObjectType::Note)
    }

    /// The object's current property values, if it exists.
    ///
    /// # Panics
    /// On an unknown object type.
    pub fn object(&self, object_type: &str, id: &str) -> Option<BTreeMap<String, String>> {
        let kind = known_type(object_type);
        let state = self.shared.state();
        let object = state.objects.get(&(kind, id.to_owned()))?;
        Some(object.properties.clone())
    }

    /// Every value `property` had, newest first (what `propertiesWithHistory` answers).
    ///
    /// # Panics
    /// On an unknown object type.
    pub fn property_history(&self, object_type: &str, id: &str, property: &str) -> Vec<String> {
        let kind = known_type(object_type);
        let state = self.shared.state();
        let Some(object) = state.objects.get(&(kind, id.to_owned())) else {
            return Vec::new();
        };
        let history = object.history.get(property).into_iter().flatten();
        history.rev().map(|entry| entry.value.clone()).collect()
    }

    /// How many records of `object_type` hold `value` in `property`: e.g. how many
    /// tasks carry one action key.
    ///
    /// # Panics
    /// On an unknown object type.
    pub fn count_with_property(&self, object_type: &str, property: &str, value: &str) -> usize {
        let kind = known_type(object_type);
        let state = self.shared.state();
        let objects = state.objects.iter().filter(|((k, _), _)| *k == kind);
        objects
            .filter(|(_, o)| o.properties.get(property).is_some_and(|v| v == value))
            .count()
    }

    /// The list's members in the order they were added (empty for an unknown list).
    pub fn list_members(&self, list_id: &str) -> Vec<String> {
        let state = self.shared.state();
        let list = state.lists.get(list_id);
        list.map(|list| list.members.clone()).unwrap_or_default()
    }

    /// Every enrollment made so far, oldest first.
    pub fn enrollments(&self) -> Vec<FakeEnrollment> {
        let state = self.shared.state();
        let enrollments = state.enrollments.iter();
        enrollments
            .map(|e| FakeEnrollment {
                id: e.id.clone(),
                contact_id: e.contact_id.clone(),
                sequence_id: e.sequence_id.clone(),
                sender_email: e.sender_email.clone(),
                user_id: e.user_id.clone(),
            })
            .collect()
    }

    /// The HubSpot `userId` of an owner (what sequence enrollment asks for).
    pub fn user_id_of(&self, owner_id: &str) -> Option<String> {
        let state = self.shared.state();
        let owner = state.owners.get(owner_id)?;
        Some(owner.user_id.to_string())
    }
}

fn records(state: &State, kind: ObjectType) -> Vec<FakeRecord> {
    let mut found: Vec<_> = state
        .objects
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .collect();
    found.sort_by(|a, b| a.1.created.cmp(&b.1.created).then_with(|| a.0.cmp(b.0)));
    found
        .into_iter()
        .map(|((_, id), object)| FakeRecord {
            id: id.clone(),
            properties: object.properties.clone(),
            associations: associations(state, kind, id),
        })
        .collect()
}

fn associations(state: &State, kind: ObjectType, id: &str) -> Vec<FakeAssociation> {
    let mut found = Vec::new();
    for ((from, from_id, to), targets) in &state.associations {
        if *from != kind || from_id != id {
            continue;
        }
        let Some(type_id) = association_type_id(kind, *to) else {
            continue;
        };
        found.extend(targets.iter().map(|target| FakeAssociation {
            object_type: to.singular().to_owned(),
            id: target.clone(),
            type_id,
        }));
    }
    found
}
