//! Steps, actions, retriggering and run state.

use super::support::*;

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
    assert_eq!(
        lookup.step,
        first.state.cursor.to_string(),
        "the step it waits on"
    );

    let failed = fail_run(&first.state, "lookup failed: GET enrich.test answered 404");
    assert_eq!(
        failed.state.status,
        RunStatus::Failed("lookup failed: GET enrich.test answered 404".into())
    );
    assert_eq!(failed.state.waiting, None);
    assert_eq!(
        failed.decisions,
        vec![Decision::Failed {
            why: "lookup failed: GET enrich.test answered 404".into()
        }]
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
