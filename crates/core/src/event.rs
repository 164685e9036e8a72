//! The canonical event: what every source's webhook is normalized into before it is stored.

use serde_json::Value;

use crate::{EventId, ObjectRef, RawJson, Timestamp};

/// What happened to the object. Kind-specific data travels with the variant, so a
/// property change cannot lack its property name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Created,
    PropertyChange {
        property: String,
        /// `null` when the sender cleared the property.
        value: Value,
    },
    Deleted,
    Restored,
    Merged {
        /// The ids that were merged into this object.
        merged_ids: Vec<String>,
        /// The id of the resulting object, when the sender says (HubSpot `newObjectId`).
        new_id: Option<String>,
    },
    AssociationChange {
        to: ObjectRef,
        association_type: String,
        removed: bool,
    },
}

impl EventKind {
    /// The short name stored in the inbox's `kind` column and shown in traces.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::PropertyChange { .. } => "property_change",
            EventKind::Deleted => "deleted",
            EventKind::Restored => "restored",
            EventKind::Merged { .. } => "merged",
            EventKind::AssociationChange { .. } => "association_change",
        }
    }
}

/// One event about one CRM object, in followthrough's own terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub id: EventId,
    /// `hubspot`, `pipedrive`, `salesforce` or `generic:<name>`.
    pub source: String,
    /// What makes a delivery the same event again; unique per source in the inbox.
    /// For HubSpot: `portalId:subscriptionId:eventId`.
    pub dedup_key: String,
    pub object: ObjectRef,
    #[serde(flatten)]
    pub kind: EventKind,
    /// When the change happened at the sender; the order events of one object apply in.
    pub occurred_at: Timestamp,
    /// When followthrough accepted it.
    pub received_at: Timestamp,
    /// The sender's own name for the event, e.g. `contact.propertyChange`.
    pub subscription: String,
    /// Who made the change at the sender (HubSpot `changeSource`, e.g. `CRM_UI`, `API`).
    pub change_source: Option<String>,
    /// Which user or app made it (HubSpot `sourceId`, e.g. `userId:882761034`).
    pub source_id: Option<String>,
    /// The event exactly as the sender sent it (one element of the batch).
    pub raw: RawJson,
}

impl Event {
    /// The property this event sets, if it is a property change.
    pub fn property_change(&self) -> Option<(&str, &Value)> {
        match &self.kind {
            EventKind::PropertyChange { property, value } => Some((property, value)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_kind_flat_with_its_data() {
        let event = Event {
            id: EventId::parse("evt_1").unwrap(),
            source: "hubspot".into(),
            dedup_key: "1:2:3".into(),
            object: ObjectRef::new("hubspot", "contact", "501"),
            kind: EventKind::PropertyChange {
                property: "lifecyclestage".into(),
                value: "lead".into(),
            },
            occurred_at: Timestamp(1),
            received_at: Timestamp(2),
            subscription: "contact.propertyChange".into(),
            change_source: Some("CRM_UI".into()),
            source_id: None,
            raw: RawJson::from_text(r#"{"eventId":3}"#).unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "property_change");
        assert_eq!(json["property"], "lifecyclestage");
        assert_eq!(json["object"]["type"], "contact");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.property_change().unwrap().0, "lifecyclestage");
    }
}
