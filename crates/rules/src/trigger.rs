//! Does an event match a trigger (or a `wait_for`)? Pure, over the [`EvalContext`].
//!
//! "Activity" on an object is any of: a change of one of its activity timestamp
//! properties; an association added from it to an engagement (call, email, meeting,
//! note, task, communication); or the creation of an engagement associated with it. In
//! the last case the event is about the engagement and the context's `object` is the
//! associated object the rule is about (the engine builds one context per such object).

use followthrough_core::EventKind;
use serde_json::Value as Json;

use crate::context::EvalContext;
use crate::model::{AssociationAction, EventPattern};

/// Why an event did not match, for the journal.
pub type Mismatch = String;

/// Text of a property value as HubSpot compares it: null reads as "".
pub(crate) fn value_text(value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn matches(
    pattern: &EventPattern,
    object_type: &str,
    ctx: &EvalContext,
) -> Result<(), Mismatch> {
    let Some(event) = &ctx.event else {
        return Err("no event".into());
    };
    let subject = &ctx.object.object;
    if subject.object_type != object_type {
        return Err(format!(
            "object is a {}, the rule is about {object_type}",
            subject.object_type
        ));
    }
    let on_subject = event.object == *subject;
    match (pattern, &event.kind) {
        (EventPattern::Created, EventKind::Created) if on_subject => Ok(()),
        (EventPattern::Deleted, EventKind::Deleted) if on_subject => Ok(()),
        (
            EventPattern::Change { property, from, to },
            EventKind::PropertyChange {
                property: changed,
                value,
            },
        ) if on_subject => {
            if changed != property {
                return Err(format!("changed `{changed}`, not `{property}`"));
            }
            let new = value_text(Some(value));
            if let Some(to) = to.as_ref().filter(|to| **to != new) {
                return Err(format!("`{property}` changed to `{new}`, not `{to}`"));
            }
            let old = value_text(ctx.previous.get(property));
            if let Some(from) = from.as_ref().filter(|from| **from != old) {
                return Err(format!("`{property}` changed from `{old}`, not `{from}`"));
            }
            Ok(())
        }
        (EventPattern::Activity { properties, .. }, EventKind::PropertyChange { property, .. })
            if on_subject =>
        {
            if properties.contains(property) {
                Ok(())
            } else {
                Err(format!("`{property}` is not an activity property"))
            }
        }
        (
            EventPattern::Activity { engagements, .. },
            EventKind::AssociationChange { to, removed, .. },
        ) if on_subject => {
            if *removed {
                Err("an association was removed".into())
            } else if engagements.contains(&to.object_type) {
                Ok(())
            } else {
                Err(format!(
                    "associated a {}, not an engagement",
                    to.object_type
                ))
            }
        }
        (EventPattern::Activity { engagements, .. }, EventKind::Created) if !on_subject => {
            if engagements.contains(&event.object.object_type) {
                Ok(())
            } else {
                Err(format!(
                    "created a {}, not an engagement",
                    event.object.object_type
                ))
            }
        }
        (
            EventPattern::Association { with, action },
            EventKind::AssociationChange { to, removed, .. },
        ) if on_subject => {
            if with.as_ref().is_some_and(|with| *with != to.object_type) {
                return Err(format!(
                    "associated a {}, not a {}",
                    to.object_type,
                    with.as_deref().unwrap_or_default()
                ));
            }
            match (action, removed) {
                (AssociationAction::Any, _)
                | (AssociationAction::Added, false)
                | (AssociationAction::Removed, true) => Ok(()),
                _ => Err(format!(
                    "association {}",
                    if *removed { "removed" } else { "added" }
                )),
            }
        }
        _ => Err(format!(
            "a {} event is not `{}`",
            event.kind.name(),
            pattern.name()
        )),
    }
}
