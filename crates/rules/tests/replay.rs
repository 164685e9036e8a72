//! Replaying a generated recording through the example rules: the counts of actions
//! match a hand computation, and the events and runs stay in memory only.

use std::path::Path;

use followthrough_core::{Event, EventId, EventKind, ObjectRef, Timestamp};
use followthrough_rules::{Calendar, Outcome, Owner, RuleSet, Simulator};
use serde_json::json;

const T0: i64 = 1_764_324_000_000;
const HOUR: i64 = 3_600_000;

fn event(object: ObjectRef, property: &str, value: &str, at: i64) -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: format!("{object}:{property}:{at}"),
        subscription: format!("{}.propertyChange", object.object_type),
        object,
        kind: EventKind::PropertyChange {
            property: property.into(),
            value: json!(value),
        },
        occurred_at: Timestamp(at),
        received_at: Timestamp(at),
        change_source: None,
        source_id: None,
        raw: followthrough_core::RawJson::null(),
    }
}

#[test]
fn replay_counts_match_a_hand_computation() {
    let rules = RuleSet::load_dir(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/rules"
    )))
    .unwrap();
    let mut sim = Simulator::new(rules, Calendar::default(), Timestamp(T0));
    sim.add_owner(Owner {
        id: "1".into(),
        email: "rep@example.com".into(),
        name: "Rep".into(),
        teams: vec![],
    });
    let mut events = Vec::new();
    // 3,000 contacts: every one gets an owner; every third becomes an SQL (one task each).
    for i in 0..3_000 {
        let contact = ObjectRef::new("hubspot", "contact", i.to_string());
        events.push(event(contact.clone(), "hubspot_owner_id", "1", T0 + i));
        if i % 3 == 0 {
            events.push(event(
                contact,
                "lifecyclestage",
                "salesqualifiedlead",
                T0 + HOUR + i,
            ));
        }
    }
    // 2,000 deals move to negotiation; even ones already have a next step (nothing); of the
    // odd ones (1,000: DM + revert each), those with i % 4 == 1 fill it 3 h later (500:
    // escalation cancelled), the other 500 are escalated 24 h later.
    for i in 0..2_000 {
        let deal = ObjectRef::new("hubspot", "deal", i.to_string());
        events.push(event(deal.clone(), "hubspot_owner_id", "1", T0 + i));
        if i % 2 == 0 {
            events.push(event(deal.clone(), "next_step", "Call", T0 + 10 + i));
        }
        events.push(event(
            deal.clone(),
            "dealstage",
            "negotiation",
            T0 + 2 * HOUR + i,
        ));
        if i % 4 == 1 {
            events.push(event(deal, "next_step", "Quote", T0 + 5 * HOUR + i));
        }
    }
    // Shuffle the recording a little: replay orders by event time.
    events.reverse();
    let total = events.len();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let summary = sim.replay(events, Some(Timestamp(T0 + 48 * HOUR)), &mut |taken| {
        let name = match &taken.outcome {
            Outcome::Action(a) => a.action.clone(),
            Outcome::Failed { why, .. } => panic!("failure: {why}"),
        };
        *counts.entry(name).or_default() += 1;
    });
    assert_eq!(summary.events, total);
    assert_eq!(counts.get("create_task"), Some(&1_000));
    assert_eq!(counts.get("slack_dm"), Some(&1_000));
    assert_eq!(counts.get("revert"), Some(&1_000));
    assert_eq!(counts.get("slack_message"), Some(&500));
    assert_eq!(summary.actions, 3_500);
    // Activity rule: the owner and next_step changes are not activity, so nothing waits.
    assert_eq!(summary.active_runs, 0);
}
