//! Builders shared by the evaluator tests.
#![allow(dead_code)]
pub use std::collections::BTreeMap;
pub use std::path::Path;

pub use followthrough_core::{Event, EventId, EventKind, ObjectRef, Timestamp};
pub use followthrough_rules::*;
pub use serde_json::{Value as Json, json};

pub const T0: i64 = 1_764_324_000_000; // 2025-11-28T10:00:00Z, a Friday
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

pub fn rule(yaml: &str) -> Rule {
    RuleSet::parse_rule(Path::new("test.yaml"), yaml).unwrap_or_else(|d| panic!("{d:#?}"))
}

pub fn contact() -> ObjectRef {
    ObjectRef::new("hubspot", "contact", "501")
}

pub fn event(object: ObjectRef, kind: EventKind, at: i64) -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: "k".into(),
        subscription: "test".into(),
        object,
        kind,
        occurred_at: Timestamp(at),
        received_at: Timestamp(at),
        change_source: Some("CRM_UI".into()),
        source_id: None,
        raw: followthrough_core::RawJson::null(),
    }
}

pub fn change(property: &str, value: &str) -> EventKind {
    EventKind::PropertyChange {
        property: property.into(),
        value: json!(value),
    }
}

pub fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

pub fn ctx(
    event: Option<Event>,
    object: ObjectRef,
    now: &[(&str, &str)],
    before: &[(&str, &str)],
    at: i64,
) -> EvalContext {
    let owner = Owner {
        id: "42".into(),
        email: "rep@example.com".into(),
        name: "Rae".into(),
        teams: vec!["hunters".into()],
    };
    let company = ObjectState {
        object: ObjectRef::new("hubspot", "company", "7"),
        properties: props(&[("name", "Acme"), ("employees", "250")]).into(),
    };
    let associated = BTreeMap::from([("company".to_string(), vec![company])]);
    EvalContext::new(
        event,
        ObjectState {
            object,
            properties: props(now).into(),
        },
        props(before).into(),
        Some(owner),
        associated,
        Timestamp(at),
        Calendar::default(),
    )
}

pub fn on_change(
    property: &str,
    value: &str,
    now: &[(&str, &str)],
    before: &[(&str, &str)],
) -> EvalContext {
    ctx(
        Some(event(contact(), change(property, value), T0)),
        contact(),
        now,
        before,
        T0,
    )
}

pub fn start(rule: &Rule, ctx: &EvalContext) -> Advance {
    let TriggerDecision::Start { key, .. } = evaluate_trigger(rule, ctx) else {
        panic!("no start: {:?}", evaluate_trigger(rule, ctx))
    };
    advance(
        rule,
        &RunState::new(rule, "run_1", key, ctx.object.object.clone(), ctx.now),
        Wake::Start,
        ctx,
    )
}

pub fn actions(advance: &Advance) -> Vec<(String, Json)> {
    advance
        .decisions
        .iter()
        .filter_map(|d| {
            if let Decision::Action(a) = d {
                Some((a.action.clone(), a.params.clone()))
            } else {
                None
            }
        })
        .collect()
}

pub fn timer_ctx(at: i64) -> EvalContext {
    ctx(None, contact(), &[("lead_score", "70")], &[], at)
}
