//! HubSpot webhook bodies: a JSON array of events, parsed leniently (unknown fields are
//! ignored, `eventType` is accepted for `subscriptionType`) and normalized into
//! followthrough's [`Event`].

use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

pub const SOURCE: &str = "hubspot";

/// One element of the array, as HubSpot sends it. Only what normalization needs is named.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    event_id: Id,
    subscription_id: Id,
    portal_id: Id,
    occurred_at: i64,
    #[serde(alias = "eventType")]
    subscription_type: String,
    object_id: Option<Id>,
    object_type_id: Option<String>,
    property_name: Option<String>,
    property_value: Option<Value>,
    change_source: Option<String>,
    source_id: Option<String>,
    // Merges
    primary_object_id: Option<Id>,
    #[serde(default)]
    merged_object_ids: Vec<Id>,
    new_object_id: Option<Id>,
    // Association changes
    association_type: Option<String>,
    from_object_id: Option<Id>,
    to_object_id: Option<Id>,
    association_removed: Option<bool>,
}

/// HubSpot ids are numbers in webhooks but strings in the API; accept either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(t) => t.clone(),
        }
    }
}

/// Why a body is not a batch of HubSpot events. Shown to the sender as is.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON array of HubSpot events, got {0}")]
    NotArray(&'static str),
    #[error("event {index}: {message}")]
    BadEvent { index: usize, message: String },
}

/// Parses and normalizes a whole body. Fails on the first bad event: a batch is accepted
/// whole or not at all, so HubSpot's retry carries the same events again.
pub fn parse_batch(body: &[u8], received_at: Timestamp) -> Result<Vec<Event>, PayloadError> {
    // Each element is kept as raw text: it is stored verbatim, and only the fields
    // normalization needs are parsed out of it.
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|error| {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => PayloadError::NotArray(json_type(&value)),
            Err(_) => PayloadError::NotJson(error.to_string()),
        }
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let bad = |message: String| PayloadError::BadEvent { index, message };
            let wire: WireEvent =
                serde_json::from_str(raw.get()).map_err(|e| bad(strip_position(e)))?;
            normalize(wire, RawJson::from(raw.to_owned()), received_at).map_err(bad)
        })
        .collect()
}

/// serde_json's messages end with "at line 1 column 57" relative to the element; that
/// position means nothing to the sender, who sees the whole body.
fn strip_position(error: serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn normalize(wire: WireEvent, raw: RawJson, received_at: Timestamp) -> Result<Event, String> {
    let (prefix, action) = wire.subscription_type.split_once('.').ok_or_else(|| {
        format!(
            "subscriptionType `{}` is not <object>.<action>",
            wire.subscription_type
        )
    })?;
    let object_type = match prefix {
        "object" => object_type_name(
            wire.object_type_id
                .as_deref()
                .ok_or("object.* events need objectTypeId")?,
        ),
        other => other.to_owned(),
    };
    let object_id = match action {
        // Merges name the surviving record; fall back to objectId.
        "merge" => wire.primary_object_id.as_ref().or(wire.object_id.as_ref()),
        "associationChange" => wire.from_object_id.as_ref().or(wire.object_id.as_ref()),
        _ => wire.object_id.as_ref(),
    }
    .ok_or("missing field `objectId`")?
    .text();
    let kind = match action {
        "creation" => EventKind::Created,
        "deletion" => EventKind::Deleted,
        "restore" => EventKind::Restored,
        "privacyDeletion" => EventKind::Deleted,
        "propertyChange" => EventKind::PropertyChange {
            property: wire
                .property_name
                .clone()
                .ok_or("propertyChange events need propertyName")?,
            value: match wire.property_value.clone() {
                None | Some(Value::Null) => Value::Null,
                Some(value) => value,
            },
        },
        "merge" => EventKind::Merged {
            merged_ids: wire.merged_object_ids.iter().map(Id::text).collect(),
            new_id: wire.new_object_id.as_ref().map(Id::text),
        },
        "associationChange" => {
            let association_type = wire.association_type.clone().unwrap_or_default();
            let to_id = wire
                .to_object_id
                .as_ref()
                .ok_or("associationChange events need toObjectId")?
                .text();
            EventKind::AssociationChange {
                to: ObjectRef::new(
                    SOURCE,
                    associated_type(&association_type, &object_type),
                    to_id,
                ),
                association_type,
                removed: wire.association_removed.unwrap_or(false),
            }
        }
        other => {
            return Err(format!(
                "unknown subscription action `{other}` in `{}`",
                wire.subscription_type
            ));
        }
    };
    Ok(Event {
        id: EventId::new(),
        source: SOURCE.to_owned(),
        dedup_key: format!(
            "{}:{}:{}",
            wire.portal_id.text(),
            wire.subscription_id.text(),
            wire.event_id.text()
        ),
        object: ObjectRef::new(SOURCE, object_type, object_id),
        kind,
        occurred_at: Timestamp(wire.occurred_at),
        received_at,
        subscription: wire.subscription_type,
        change_source: wire.change_source,
        source_id: wire.source_id,
        raw,
    })
}

/// HubSpot's ids for its standard object types; custom objects keep their id (`2-1234`).
fn object_type_name(type_id: &str) -> String {
    match type_id {
        "0-1" => "contact",
        "0-2" => "company",
        "0-3" => "deal",
        "0-5" => "ticket",
        "0-7" => "product",
        "0-8" => "line_item",
        "0-27" => "task",
        "0-46" => "note",
        "0-47" => "meeting",
        "0-48" => "call",
        "0-49" => "email",
        "0-18" => "communication",
        other => other,
    }
    .to_owned()
}

/// `CONTACT_TO_COMPANY` -> `company`; the other end of an association, by its type name.
fn associated_type(association_type: &str, from_type: &str) -> String {
    association_type
        .split_once("_TO_")
        .map(|(_, to)| to.to_ascii_lowercase())
        .filter(|to| !to.is_empty())
        .unwrap_or_else(|| from_type.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        include_str!("../../../../../tests/fixtures/hubspot/property-change-batch.json");

    #[test]
    fn normalizes_the_documented_sample() {
        let events = parse_batch(SAMPLE.as_bytes(), Timestamp(7)).unwrap();
        assert_eq!(events.len(), 3);
        let first = &events[0];
        assert_eq!(first.object.to_string(), "hubspot:contact:501");
        assert_eq!(first.dedup_key, "62515:2101:1001");
        assert_eq!(
            first.property_change(),
            Some(("lifecyclestage", &Value::from("salesqualifiedlead")))
        );
        assert_eq!(first.occurred_at, Timestamp(1_764_324_000_000));
        assert_eq!(first.change_source.as_deref(), Some("CRM_UI"));
        assert_eq!(first.raw.to_value()["eventId"], 1001);
        assert_eq!(events[1].object.to_string(), "hubspot:deal:9001");
        assert_eq!(events[2].kind, EventKind::Created);
    }

    #[test]
    fn accepts_event_type_unknown_fields_and_generic_object_events() {
        let body = br#"[{"eventId":"5","subscriptionId":1,"portalId":2,"occurredAt":10,
            "eventType":"object.propertyChange","objectTypeId":"0-3","objectId":77,
            "propertyName":"amount","propertyValue":"100","isSensitive":false,"futureField":{"x":1}}]"#;
        let events = parse_batch(body, Timestamp(0)).unwrap();
        assert_eq!(events[0].object.to_string(), "hubspot:deal:77");
        assert_eq!(events[0].subscription, "object.propertyChange");
    }

    #[test]
    fn merges_and_associations_keep_their_data() {
        let body = br#"[
            {"eventId":1,"subscriptionId":1,"portalId":2,"occurredAt":10,"subscriptionType":"contact.merge",
             "objectId":10,"primaryObjectId":10,"mergedObjectIds":[11,12],"newObjectId":10},
            {"eventId":2,"subscriptionId":1,"portalId":2,"occurredAt":10,"subscriptionType":"contact.associationChange",
             "associationType":"CONTACT_TO_COMPANY","fromObjectId":10,"toObjectId":99,"associationRemoved":false}]"#;
        let events = parse_batch(body, Timestamp(0)).unwrap();
        assert_eq!(
            events[0].kind,
            EventKind::Merged {
                merged_ids: vec!["11".into(), "12".into()],
                new_id: Some("10".into())
            }
        );
        match &events[1].kind {
            EventKind::AssociationChange { to, removed, .. } => {
                assert_eq!(to.to_string(), "hubspot:company:99");
                assert!(!removed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn says_what_is_wrong() {
        let cases: [(&[u8], &str); 5] = [
            (b"{\"eventId\":1}", "JSON array"),
            (b"[{\"eventId\":1", "not valid JSON"),
            (b"[{\"eventId\":1,\"subscriptionId\":1,\"portalId\":2,\"occurredAt\":1,\"subscriptionType\":\"contact.creation\"}]", "objectId"),
            (b"[{\"subscriptionId\":1}]", "event 0: missing field `eventId`"),
            (b"[{\"eventId\":1,\"subscriptionId\":1,\"portalId\":2,\"occurredAt\":1,\"subscriptionType\":\"contact.propertyChange\",\"objectId\":1}]", "propertyName"),
        ];
        for (body, expected) in cases {
            let error = parse_batch(body, Timestamp(0)).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }
}
