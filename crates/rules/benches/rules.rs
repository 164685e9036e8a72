//! Guard evaluation and event-to-rule matching with 200 loaded rules.
//!
//! `cargo bench -p followthrough-rules --bench rules -- --min-time 1`

use std::collections::BTreeMap;
use std::path::Path;

use divan::{Bencher, black_box};
use followthrough_core::{Event, EventId, EventKind, ObjectRef, Timestamp};
use followthrough_rules::{
    Calendar, EvalContext, ObjectState, Owner, Rule, RuleSet, evaluate_guard, evaluate_trigger,
};
use serde_json::json;

fn main() {
    divan::main();
}

/// 200 rules: 1 on `deal.dealstage`, the rest on other properties and objects.
fn rules(total: usize) -> RuleSet {
    let mut rules = vec![rule(
        "id: target\non: { object: deal, change: dealstage, to: negotiation }\nwhen: object.next_step == \"\" && object.amount >= 10000 && 'closers' in owner.teams\nsteps: [ { create_note: { body: x } } ]",
    )];
    for i in 1..total {
        let object = ["contact", "company", "deal", "ticket"][i % 4];
        rules.push(rule(&format!(
            "id: rule-{i}\non: {{ object: {object}, change: prop_{i} }}\nwhen: object.lead_score >= {i} && object.lifecyclestage == 'lead'\nsteps: [ {{ create_note: {{ body: x }} }} ]"
        )));
    }
    RuleSet::new(rules)
}

fn rule(yaml: &str) -> Rule {
    RuleSet::parse_rule(Path::new("bench.yaml"), yaml).unwrap()
}

fn deal_event() -> Event {
    Event {
        id: EventId::new(),
        source: "hubspot".into(),
        dedup_key: "1".into(),
        object: ObjectRef::new("hubspot", "deal", "9001"),
        kind: EventKind::PropertyChange {
            property: "dealstage".into(),
            value: json!("negotiation"),
        },
        occurred_at: Timestamp(1_764_324_000_000),
        received_at: Timestamp(1_764_324_000_000),
        subscription: "deal.propertyChange".into(),
        change_source: None,
        source_id: None,
        raw: followthrough_core::RawJson::null(),
    }
}

fn context(event: Event) -> EvalContext {
    let properties: BTreeMap<_, _> = [
        ("dealname", "Acme"),
        ("amount", "25000"),
        ("dealstage", "negotiation"),
        ("hubspot_owner_id", "42"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), json!(v)))
    .collect();
    let owner = Owner {
        id: "42".into(),
        email: "rep@example.com".into(),
        name: "Rae".into(),
        teams: vec!["closers".into()],
    };
    EvalContext::new(
        Some(event.clone()),
        ObjectState {
            object: event.object.clone(),
            properties: properties.into(),
        },
        Default::default(),
        Some(owner),
        BTreeMap::new(),
        event.occurred_at,
        Calendar::default(),
    )
}

const GUARDS: [&str; 3] = [
    "object.amount >= 10000",
    "object.next_step == \"\" && object.amount >= 10000",
    "object.next_step == \"\" && object.amount >= 10000 && 'closers' in owner.teams",
];

/// One guard on a context built once per event (as the engine does): the per-rule cost,
/// for guards of one, two and three clauses, in a set of 200 rules.
#[divan::bench(args = GUARDS)]
fn guard_evaluation(bencher: Bencher, guard: &str) {
    let mut set: Vec<Rule> = rules(200)
        .rules()
        .iter()
        .filter(|r| r.id != "target")
        .cloned()
        .collect();
    set.push(rule(&format!("id: target\non: {{ object: deal, change: dealstage }}\nwhen: {guard}\nsteps: [ {{ create_note: {{ body: x }} }} ]")));
    let set = RuleSet::new(set);
    let rule = set.get("target").unwrap();
    let ctx = context(deal_event());
    assert!(evaluate_guard(rule, &ctx).unwrap());
    bencher.bench_local(|| evaluate_guard(black_box(rule), black_box(&ctx)));
}

/// Trigger check + guard + key for the matching rule.
#[divan::bench]
fn evaluate_trigger_one_rule(bencher: Bencher) {
    let set = rules(200);
    let rule = set.get("target").unwrap();
    let ctx = context(deal_event());
    bencher.bench_local(|| evaluate_trigger(black_box(rule), black_box(&ctx)));
}

/// Finding the candidate rules for an event, with N rules loaded that cannot match.
#[divan::bench(args = [200, 2000, 20000])]
fn matching(bencher: Bencher, loaded: usize) {
    let set = rules(loaded);
    let event = deal_event();
    assert_eq!(set.matching(&event).count(), 1);
    bencher.bench_local(|| black_box(&set).matching(black_box(&event)).count());
}

/// What one event costs end to end in the evaluator: build the context, match, evaluate.
#[divan::bench]
fn event_end_to_end_200_rules(bencher: Bencher) {
    let set = rules(200);
    let event = deal_event();
    bencher.bench_local(|| {
        let ctx = context(black_box(event.clone()));
        set.matching(&event)
            .map(|c| evaluate_trigger(c.rule, &ctx))
            .collect::<Vec<_>>()
    });
}
