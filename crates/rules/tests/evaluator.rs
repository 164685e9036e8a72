//! The pure evaluator through its public API: every trigger and step kind, every
//! action, debounce, wait_for hit and timeout, both if branches, run-time errors.

use std::collections::BTreeMap;
use std::path::Path;

use followthrough_core::{Event, EventId, EventKind, ObjectRef, Timestamp};
use followthrough_rules::*;
use serde_json::{Value as Json, json};

const T0: i64 = 1_764_324_000_000; // 2025-11-28T10:00:00Z, a Friday
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn rule(yaml: &str) -> Rule {
    RuleSet::parse_rule(Path::new("test.yaml"), yaml).unwrap_or_else(|d| panic!("{d:#?}"))
}

fn contact() -> ObjectRef {
    ObjectRef::new("hubspot", "contact", "501")
}

fn event(object: ObjectRef, kind: EventKind, at: i64) -> Event {
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

fn change(property: &str, value: &str) -> EventKind {
    EventKind::PropertyChange {
        property: property.into(),
        value: json!(value),
    }
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn ctx(
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
        properties: props(&[("name", "Acme"), ("employees", "250")]),
    };
    let associated = BTreeMap::from([("company".to_string(), vec![company])]);
    EvalContext::new(
        event,
        ObjectState {
            object,
            properties: props(now),
        },
        props(before),
        Some(owner),
        associated,
        Timestamp(at),
        Calendar::default(),
    )
}

fn on_change(
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

fn start(rule: &Rule, ctx: &EvalContext) -> Advance {
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

fn actions(advance: &Advance) -> Vec<(String, Json)> {
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

fn timer_ctx(at: i64) -> EvalContext {
    ctx(None, contact(), &[("lead_score", "70")], &[], at)
}

#[test]
fn change_trigger_checks_property_from_and_to() {
    let r = rule(
        "id: r\non: { object: contact, change: lifecyclestage, from: lead, to: salesqualifiedlead }\nsteps: [ { create_note: { body: x } } ]",
    );
    assert!(matches!(
        evaluate_trigger(
            &r,
            &on_change(
                "lifecyclestage",
                "salesqualifiedlead",
                &[],
                &[("lifecyclestage", "lead")]
            )
        ),
        TriggerDecision::Start { .. }
    ));
    let TriggerDecision::NoMatch { reason, .. } = evaluate_trigger(
        &r,
        &on_change(
            "lifecyclestage",
            "customer",
            &[],
            &[("lifecyclestage", "lead")],
        ),
    ) else {
        panic!()
    };
    assert!(reason.contains("not `salesqualifiedlead`"), "{reason}");
    assert!(matches!(
        evaluate_trigger(
            &r,
            &on_change(
                "lifecyclestage",
                "salesqualifiedlead",
                &[],
                &[("lifecyclestage", "subscriber")]
            )
        ),
        TriggerDecision::NoMatch { .. }
    ));
    assert!(matches!(
        evaluate_trigger(&r, &on_change("firstname", "salesqualifiedlead", &[], &[])),
        TriggerDecision::NoMatch { .. }
    ));
}

#[test]
fn created_deleted_and_association_triggers() {
    let created = rule(
        "id: c\non: { object: contact, event: created }\nsteps: [ { create_note: { body: x } } ]",
    );
    let deleted = rule(
        "id: d\non: { object: contact, event: deleted }\nsteps: [ { create_note: { body: x } } ]",
    );
    let assoc = rule(
        "id: a\non: { object: contact, event: association, with: company }\nsteps: [ { create_note: { body: x } } ]",
    );
    let removed = rule(
        "id: rm\non: { object: contact, event: association, action: removed }\nsteps: [ { create_note: { body: x } } ]",
    );
    let at = |kind| ctx(Some(event(contact(), kind, T0)), contact(), &[], &[], T0);
    let link = |to: &str, removed| EventKind::AssociationChange {
        to: ObjectRef::new("hubspot", to, "1"),
        association_type: "x".into(),
        removed,
    };
    let starts =
        |r: &Rule, c: &EvalContext| matches!(evaluate_trigger(r, c), TriggerDecision::Start { .. });
    assert!(starts(&created, &at(EventKind::Created)));
    assert!(!starts(&created, &at(EventKind::Deleted)));
    assert!(starts(&deleted, &at(EventKind::Deleted)));
    assert!(starts(&assoc, &at(link("company", false))));
    assert!(!starts(&assoc, &at(link("deal", false))));
    assert!(!starts(&assoc, &at(link("company", true))));
    assert!(starts(&removed, &at(link("deal", true))));
    // A deal event never starts a contact rule.
    let deal = ObjectRef::new("hubspot", "deal", "1");
    assert!(!starts(
        &created,
        &ctx(
            Some(event(deal.clone(), EventKind::Created, T0)),
            deal,
            &[],
            &[],
            T0
        )
    ));
}

#[test]
fn activity_is_a_timestamp_change_an_engagement_link_or_an_engagement_created() {
    let r = rule(
        "id: act\non: { object: contact, event: activity }\nsteps: [ { create_note: { body: x } } ]",
    );
    let starts = |c: &EvalContext| matches!(evaluate_trigger(&r, c), TriggerDecision::Start { .. });
    assert!(starts(&on_change("notes_last_contacted", "1", &[], &[])));
    assert!(starts(&on_change(
        "hs_last_sales_activity_timestamp",
        "1",
        &[],
        &[]
    )));
    assert!(!starts(&on_change("phone", "1", &[], &[])));
    let call = ObjectRef::new("hubspot", "call", "9");
    let link = EventKind::AssociationChange {
        to: call.clone(),
        association_type: "contact_to_call".into(),
        removed: false,
    };
    assert!(starts(&ctx(
        Some(event(contact(), link, T0)),
        contact(),
        &[],
        &[],
        T0
    )));
    // The call's creation, evaluated for the contact it is associated with.
    assert!(starts(&ctx(
        Some(event(call.clone(), EventKind::Created, T0)),
        contact(),
        &[],
        &[],
        T0
    )));
    // The index offers the rule for the call's creation, to be evaluated per associated contact.
    let set = RuleSet::new(vec![r.clone()]);
    let candidates: Vec<_> = set.matching(&event(call, EventKind::Created, T0)).collect();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].subject, Subject::Associated);
    // A custom property list replaces the default.
    let custom = rule(
        "id: act2\non: { object: contact, event: activity, properties: [last_touch] }\nsteps: [ { create_note: { body: x } } ]",
    );
    assert!(matches!(
        evaluate_trigger(&custom, &on_change("last_touch", "1", &[], &[])),
        TriggerDecision::Start { .. }
    ));
    assert!(matches!(
        evaluate_trigger(&custom, &on_change("notes_last_contacted", "1", &[], &[])),
        TriggerDecision::NoMatch { .. }
    ));
}

#[test]
fn guard_reads_coerced_numbers_and_reports_its_inputs() {
    let r = rule(
        "id: g\non: { object: contact, change: lead_score }\nwhen: object.lead_score >= 50 && 'hunters' in owner.teams && associated.company.employees > 100\nsteps: [ { create_note: { body: x } } ]",
    );
    let TriggerDecision::Start {
        guard: Some(trace),
        key,
    } = evaluate_trigger(
        &r,
        &on_change("lead_score", "72", &[("lead_score", "72")], &[]),
    )
    else {
        panic!()
    };
    assert_eq!(key, "hubspot:contact:501");
    assert_eq!(trace.result, Some(true));
    assert_eq!(
        json!(trace.inputs),
        json!({"associated.company.employees": 250, "object.lead_score": 72, "owner.teams": ["hunters"]})
    );
    let TriggerDecision::NoMatch {
        guard: Some(trace), ..
    } = evaluate_trigger(
        &r,
        &on_change("lead_score", "12", &[("lead_score", "12")], &[]),
    )
    else {
        panic!()
    };
    assert_eq!(trace.result, Some(false));
}

#[test]
fn absent_properties_read_as_empty_text() {
    let r = rule(
        "id: e\non: { object: deal, change: dealstage, to: negotiation }\nwhen: object.next_step == \"\"\nsteps: [ { create_note: { body: x } } ]",
    );
    let deal = ObjectRef::new("hubspot", "deal", "1");
    let c = |now: &[(&str, &str)]| {
        ctx(
            Some(event(deal.clone(), change("dealstage", "negotiation"), T0)),
            deal.clone(),
            now,
            &[],
            T0,
        )
    };
    assert!(matches!(
        evaluate_trigger(&r, &c(&[])),
        TriggerDecision::Start { .. }
    ));
    assert!(matches!(
        evaluate_trigger(&r, &c(&[("next_step", "")])),
        TriggerDecision::Start { .. }
    ));
    assert!(matches!(
        evaluate_trigger(&r, &c(&[("next_step", "Call")])),
        TriggerDecision::NoMatch { .. }
    ));
}

#[test]
fn a_cel_runtime_error_fails_the_rule_not_the_others() {
    let bad = rule(
        "id: bad\non: { object: contact, change: lead_score }\nwhen: object.firstname > 5\nsteps: [ { create_note: { body: x } } ]",
    );
    let good = rule(
        "id: good\non: { object: contact, change: lead_score }\nsteps: [ { create_note: { body: x } } ]",
    );
    let set = RuleSet::new(vec![bad, good]);
    let c = on_change("lead_score", "1", &[("firstname", "Jo")], &[]);
    let decisions: Vec<_> = set
        .matching(c.event.as_ref().unwrap())
        .map(|cand| (cand.rule.id.clone(), evaluate_trigger(cand.rule, &c)))
        .collect();
    assert_eq!(decisions.len(), 2);
    let TriggerDecision::Failed { why, guard } = &decisions[0].1 else {
        panic!("{decisions:?}")
    };
    assert!(why.contains("object.firstname > 5"), "{why}");
    assert_eq!(guard.as_ref().unwrap().result, None);
    assert!(matches!(decisions[1].1, TriggerDecision::Start { .. }));
    // In a step: the run fails with the reason.
    let r = rule(
        "id: s\non: { object: contact, change: x }\nsteps:\n  - if: object.firstname * 2 > 1\n    then: [ { create_note: { body: x } } ]",
    );
    let out = start(&r, &on_change("x", "1", &[("firstname", "Jo")], &[]));
    assert!(
        matches!(&out.state.status, RunStatus::Failed(why) if why.contains("firstname")),
        "{:?}",
        out.state.status
    );
    assert!(matches!(
        out.decisions.last(),
        Some(Decision::Failed { .. })
    ));
}

#[test]
fn wait_then_if_takes_either_branch_with_vars_from_the_time_it_runs() {
    let r = rule(
        "id: w\non: { object: contact, change: x }\nsteps:\n  - wait: 14d\n  - if: object.lead_score >= 50\n    then: [ { assign_owner: { team: hunters } } ]\n    else: [ { enroll_sequence: { sequence: nurture } } ]\n  - create_note: { body: done }",
    );
    let first = start(&r, &on_change("x", "1", &[], &[]));
    assert_eq!(
        first.decisions,
        vec![Decision::ScheduleTimer {
            at: Timestamp(T0 + 14 * DAY),
            kind: TimerKind::Wait,
            step: "steps[0]".into()
        }]
    );
    assert_eq!(first.state.status, RunStatus::Waiting);
    // A stale timer does nothing.
    let stale = advance(
        &r,
        &first.state,
        Wake::TimerFired {
            due_at: Timestamp(T0 + DAY),
        },
        &timer_ctx(T0 + DAY),
    );
    assert!(stale.decisions.is_empty());
    let hot = advance(
        &r,
        &first.state,
        Wake::TimerFired {
            due_at: Timestamp(T0 + 14 * DAY),
        },
        &timer_ctx(T0 + 14 * DAY),
    );
    assert_eq!(
        actions(&hot)
            .iter()
            .map(|a| a.0.as_str())
            .collect::<Vec<_>>(),
        ["assign_owner", "create_note"]
    );
    assert!(matches!(hot.decisions.last(), Some(Decision::Completed)));
    let cold_ctx = ctx(None, contact(), &[("lead_score", "10")], &[], T0 + 14 * DAY);
    let cold = advance(
        &r,
        &first.state,
        Wake::TimerFired {
            due_at: Timestamp(T0 + 14 * DAY),
        },
        &cold_ctx,
    );
    assert_eq!(
        actions(&cold)
            .iter()
            .map(|a| a.0.as_str())
            .collect::<Vec<_>>(),
        ["enroll_sequence", "create_note"]
    );
    let Some(Decision::Action(a)) = cold
        .decisions
        .iter()
        .find(|d| matches!(d, Decision::Action(_)))
    else {
        panic!()
    };
    assert_eq!(a.step, "steps[1].else[0]");
    assert_eq!(a.idempotency_key, "run_1:steps[1].else[0]");
}

#[test]
fn wait_for_hit_cancels_the_timeout_and_timeout_runs_on_timeout() {
    let r = rule(
        "id: wf\nmode: enforce\non: { object: contact, change: x }\nsteps:\n  - wait_for: { change: next_step, when: 'object.next_step != \"\"', timeout: 24h }\n    on_timeout: [ { slack_message: { channel: '#m', text: late } } ]\n  - create_note: { body: 'filled: {{ object.next_step }}' }",
    );
    let waiting = start(&r, &on_change("x", "1", &[], &[]));
    let timeout = Timestamp(T0 + 24 * HOUR);
    assert_eq!(
        waiting.state.waiting,
        Some(Wait::Event {
            timeout_at: timeout
        })
    );
    // An unrelated change, and a change that leaves it empty, do not end the wait.
    for (p, v) in [("phone", "1"), ("next_step", "")] {
        let c = ctx(
            Some(event(contact(), change(p, v), T0 + HOUR)),
            contact(),
            &[(p, v)],
            &[],
            T0 + HOUR,
        );
        let out = advance(&r, &waiting.state, Wake::EventArrived, &c);
        assert_eq!(out.state.waiting, waiting.state.waiting, "{p}={v}");
    }
    let c = ctx(
        Some(event(contact(), change("next_step", "Quote"), T0 + HOUR)),
        contact(),
        &[("next_step", "Quote")],
        &[],
        T0 + HOUR,
    );
    let hit = advance(&r, &waiting.state, Wake::EventArrived, &c);
    assert!(hit.decisions.contains(&Decision::CancelTimer {
        at: timeout,
        step: "steps[0]".into()
    }));
    assert_eq!(
        actions(&hit),
        vec![(
            "create_note".to_string(),
            json!({"body": "filled: Quote", "associations": ["hubspot:contact:501"]})
        )]
    );
    let late = advance(
        &r,
        &waiting.state,
        Wake::TimerFired { due_at: timeout },
        &timer_ctx(timeout.0),
    );
    assert_eq!(
        actions(&late),
        vec![(
            "slack_message".to_string(),
            json!({"channel": "#m", "text": "late"})
        )]
    );
    assert_eq!(late.state.status, RunStatus::Completed);
}

#[test]
fn lookup_waits_for_its_result_in_vars() {
    let r = rule(
        "id: l\non: { object: contact, change: x }\nsteps:\n  - lookup: { url: 'https://enrich.test/p?email={{ object.email }}', into: person }\n  - if: vars.person.seniority == 'exec'\n    then: [ { update: { seniority: '{{ vars.person.seniority }}' } } ]",
    );
    let first = start(&r, &on_change("x", "1", &[("email", "jo@acme.test")], &[]));
    let Some(Decision::Lookup(lookup)) = first.decisions.first() else {
        panic!("{:?}", first.decisions)
    };
    assert_eq!(lookup.url, "https://enrich.test/p?email=jo@acme.test");
    assert_eq!(first.state.waiting, Some(Wait::Lookup));
    let done = advance(
        &r,
        &first.state,
        Wake::LookupResult(json!({"seniority": "exec"})),
        &timer_ctx(T0 + 1000),
    );
    assert_eq!(
        actions(&done),
        vec![(
            "update".to_string(),
            json!({"properties": {"seniority": "exec"}})
        )]
    );
}

#[test]
fn every_action_renders_its_parameters() {
    let r = rule(
        r##"id: all
mode: enforce
on: { object: contact, change: lifecyclestage }
steps:
  - create_task: { subject: "Call {{ object.firstname }}", priority: high, due_in: 1 business day, type: call }
  - update: { hs_lead_status: "OPEN" }
  - revert: lifecyclestage
  - assign_owner: { team: hunters, strategy: round_robin }
  - assign_owner: { owner: "99" }
  - enroll_sequence: { sequence: nurture }
  - add_to_list: { list: "cold-{{ object.lead_score }}" }
  - create_note: { body: "Note for {{ associated.company.name }}" }
  - slack_dm: { to: owner, text: "Hi {{ owner.name }}" }
  - slack_message: { channel: "#sales", text: "{{ event.property }} -> {{ event.value }}" }
  - http: { url: "https://hooks.test/{{ object.lead_score }}", headers: { x-id: "{{ owner.id }}" }, body: { score: "{{ object.lead_score }}", fixed: [1, true] } }
"##,
    );
    let out = start(
        &r,
        &on_change(
            "lifecyclestage",
            "customer",
            &[
                ("firstname", "Jo"),
                ("lead_score", "50"),
                ("lifecyclestage", "customer"),
            ],
            &[("lifecyclestage", "lead")],
        ),
    );
    let got = actions(&out);
    let expected = vec![
        (
            "create_task",
            json!({"subject": "Call Jo", "priority": "HIGH", "type": "CALL", "owner_id": "42", "associations": ["hubspot:contact:501"], "due_at": "2025-12-01T10:00:00Z", "due_at_ms": T0 + 3 * DAY}),
        ),
        ("update", json!({"properties": {"hs_lead_status": "OPEN"}})),
        (
            "revert",
            json!({"property": "lifecyclestage", "value": "lead", "from": "customer"}),
        ),
        (
            "assign_owner",
            json!({"team": "hunters", "strategy": "round_robin"}),
        ),
        ("assign_owner", json!({"owner_id": "99"})),
        (
            "enroll_sequence",
            json!({"sequence": "nurture", "sender": {"owner_id": "42", "email": "rep@example.com"}}),
        ),
        ("add_to_list", json!({"list": "cold-50"})),
        (
            "create_note",
            json!({"body": "Note for Acme", "associations": ["hubspot:contact:501"]}),
        ),
        (
            "slack_dm",
            json!({"to": "rep@example.com", "text": "Hi Rae"}),
        ),
        (
            "slack_message",
            json!({"channel": "#sales", "text": "lifecyclestage -> customer"}),
        ),
        (
            "http",
            json!({"method": "POST", "url": "https://hooks.test/50", "headers": {"x-id": "42"}, "body": {"score": "50", "fixed": [1, true]}}),
        ),
    ];
    assert_eq!(got.len(), expected.len());
    for ((name, params), (want_name, want)) in got.iter().zip(expected) {
        assert_eq!((name.as_str(), params), (want_name, &want));
    }
}

#[test]
fn warn_mode_skips_revert() {
    let r = rule(
        "id: w\non: { object: deal, change: dealstage }\nsteps: [ { revert: dealstage }, { create_note: { body: x } } ]",
    );
    let deal = ObjectRef::new("hubspot", "deal", "1");
    let c = ctx(
        Some(event(deal.clone(), change("dealstage", "negotiation"), T0)),
        deal,
        &[("dealstage", "negotiation")],
        &[("dealstage", "proposal")],
        T0,
    );
    let out = start(&r, &c);
    assert!(matches!(&out.decisions[0], Decision::Skipped { action, .. } if action == "revert"));
    assert_eq!(actions(&out).len(), 1);
}

#[test]
fn retrigger_restart_cancels_ignore_keeps_parallel_adds() {
    let make = |mode: &str| {
        rule(&format!(
            "id: rt\non: {{ object: contact, event: activity }}\non_retrigger: {mode}\nsteps: [ {{ wait: 14d }} ]"
        ))
    };
    let restart = make("restart");
    let waiting = start(&restart, &on_change("notes_last_contacted", "1", &[], &[])).state;
    assert_eq!(
        on_retrigger(&restart, &[&waiting]),
        RetriggerDecision::Start {
            cancel: vec!["run_1".into()]
        }
    );
    assert_eq!(
        on_retrigger(&make("ignore"), &[&waiting]),
        RetriggerDecision::Ignore {
            active: "run_1".into()
        }
    );
    assert_eq!(
        on_retrigger(&make("parallel"), &[&waiting]),
        RetriggerDecision::Start { cancel: vec![] }
    );
    assert_eq!(
        on_retrigger(&restart, &[]),
        RetriggerDecision::Start { cancel: vec![] }
    );
    let cancelled = cancel_run(&waiting, "restarted");
    assert_eq!(
        cancelled.decisions[0],
        Decision::CancelTimer {
            at: Timestamp(T0 + 14 * DAY),
            step: "steps[0]".into()
        }
    );
    assert!(!cancelled.state.status.is_active());
    // A cancelled run ignores its timer.
    assert!(
        advance(
            &restart,
            &cancelled.state,
            Wake::TimerFired {
                due_at: Timestamp(T0 + 14 * DAY)
            },
            &timer_ctx(T0 + 14 * DAY)
        )
        .decisions
        .is_empty()
    );
}

#[test]
fn run_state_round_trips_through_json() {
    let r = rule(
        "id: p\non: { object: contact, change: x }\nsteps:\n  - if: 'true'\n    then: [ { wait: 2h 30m } ]",
    );
    let out = start(&r, &on_change("x", "1", &[], &[]));
    let json = serde_json::to_string(&out.state).unwrap();
    let back: RunState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out.state);
    assert_eq!(back.cursor.to_string(), "steps[0].then[0]");
    assert_eq!(back.timer(), Some(Timestamp(T0 + 150 * 60_000)));
}

#[test]
fn matching_looks_only_at_rules_for_the_event() {
    let mut rules = vec![rule(
        "id: target\non: { object: deal, change: dealstage }\nsteps: [ { create_note: { body: x } } ]",
    )];
    for i in 0..50 {
        rules.push(rule(&format!("id: other-{i}\non: {{ object: contact, change: prop_{i} }}\nsteps: [ {{ create_note: {{ body: x }} }} ]")));
    }
    let set = RuleSet::new(rules);
    let deal = ObjectRef::new("hubspot", "deal", "1");
    let ids: Vec<_> = set
        .matching(&event(deal.clone(), change("dealstage", "x"), T0))
        .map(|c| c.rule.id.clone())
        .collect();
    assert_eq!(ids, ["target"]);
    assert_eq!(
        set.matching(&event(deal, change("amount", "1"), T0))
            .count(),
        0
    );
    assert_eq!(
        set.matching(&event(contact(), change("prop_7", "1"), T0))
            .count(),
        1
    );
}
