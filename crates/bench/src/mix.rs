//! The end-to-end event mix: HubSpot webhooks that make the three example rules fire.
//!
//! Events are spread over `slots` objects so that, in each block of `slots` consecutive
//! events, every slot gets exactly one (a permutation, as in the ingest mix): event `i`
//! is the `i / slots`-th event of its slot. Each slot plays a script:
//!
//! - 70% of slots are contacts: created, given an owner, then a cycle of four changes:
//!   `lifecyclestage` to `marketingqualifiedlead` (no rule), to `salesqualifiedlead`
//!   (new-sql-gets-a-call: a run and a `create_task` outbox row), and two
//!   `notes_last_contacted` changes (lead-gone-cold: its 14-day wait is started or
//!   restarted, so a run and a timer each, the previous run cancelled).
//! - 30% are deals, each slot walking through fresh deals: created, given an owner,
//!   `dealstage` to `proposal`, then to `negotiation` without a next step
//!   (negotiation-needs-next-step: a run, `slack_dm` and `revert` outbox rows and a
//!   24-hour timer). A deal enters negotiation once, as in a real pipeline, so the rule's
//!   `on_retrigger: ignore` never swallows the trigger.
//!
//! In the steady state a third of the events queue an outbox row.

use followthrough_core::{Clock as _, SystemClock};

/// HubSpot owner ids the objects are given (`FIRST_OWNER_ID ..`).
pub const FIRST_OWNER_ID: u64 = 1001;

/// What the event with this number (from 0) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub object_type: &'static str,
    pub object_id: u64,
    /// `None` for a creation.
    pub change: Option<(&'static str, String)>,
}

pub fn plan(i: u64, slots: u64, owners: u64) -> Planned {
    let (block, rest) = (i / slots, i % slots);
    // 7919 is prime: a permutation of the slots unless `slots` is a multiple of it.
    let slot = (rest * 7919) % slots;
    let owner = (FIRST_OWNER_ID + slot % owners).to_string();
    if slot % 10 < 7 {
        let change = match block {
            0 => None,
            1 => Some(("hubspot_owner_id", owner)),
            n => Some(match (n - 2) % 4 {
                0 => ("lifecyclestage", "marketingqualifiedlead".to_owned()),
                1 => ("lifecyclestage", "salesqualifiedlead".to_owned()),
                // An activity timestamp (ms); its value does not matter to the rule.
                _ => ("notes_last_contacted", (1_764_324_000_000 + n).to_string()),
            }),
        };
        Planned {
            object_type: "contact",
            object_id: slot + 1,
            change,
        }
    } else {
        let change = match block % 4 {
            0 => None,
            1 => Some(("hubspot_owner_id", owner)),
            2 => Some(("dealstage", "proposal".to_owned())),
            _ => Some(("dealstage", "negotiation".to_owned())),
        };
        Planned {
            object_type: "deal",
            object_id: slot + 1 + (block / 4) * slots,
            change,
        }
    }
}

/// Batch number `index` (from 0) of `size` events.
pub fn workflow_batch(index: u64, size: usize, slots: u64, owners: u64) -> String {
    let now = SystemClock.now().as_millis();
    let mut body = String::with_capacity(size * 260);
    body.push('[');
    for k in 0..size as u64 {
        let i = index * size as u64 + k;
        let event = plan(i, slots, owners);
        if k > 0 {
            body.push(',');
        }
        let (object_type, object_id) = (event.object_type, event.object_id);
        let action = if event.change.is_some() {
            "propertyChange"
        } else {
            "creation"
        };
        body.push_str(&format!(
            r#"{{"eventId":{},"subscriptionId":2101,"portalId":62515,"appId":54321,"occurredAt":{now},"subscriptionType":"{object_type}.{action}","attemptNumber":0,"objectId":{object_id},"changeSource":"CRM_UI","sourceId":"userId:882761034""#,
            i + 1
        ));
        if let Some((name, value)) = event.change {
            body.push_str(&format!(
                r#","propertyName":"{name}","propertyValue":"{value}""#
            ));
        }
        body.push('}');
    }
    body.push(']');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_gets_one_event_per_block_in_script_order() {
        let slots = 1000;
        let mut seen = std::collections::HashSet::new();
        for i in 0..slots {
            let p = plan(i, slots, 10);
            assert!(seen.insert((p.object_type, p.object_id)));
            assert_eq!(p.change, None);
        }
        // Block 1 gives every object its owner before any stage change.
        for i in slots..2 * slots {
            assert_eq!(plan(i, slots, 10).change.unwrap().0, "hubspot_owner_id");
        }
        let negotiations = (0..40 * slots)
            .filter(|i| {
                plan(*i, slots, 10)
                    .change
                    .is_some_and(|c| c.1 == "negotiation")
            })
            .count();
        let deals = (0..40 * slots)
            .map(|i| plan(i, slots, 10))
            .filter(|p| p.object_type == "deal")
            .map(|p| p.object_id)
            .collect::<std::collections::HashSet<_>>();
        // Each deal reaches negotiation exactly once.
        assert_eq!(negotiations, deals.len());
    }

    #[test]
    fn batches_are_json_arrays() {
        let body = workflow_batch(3, 100, 1000, 10);
        let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(events.len(), 100);
        assert_eq!(events[0]["eventId"], 301);
    }
}
