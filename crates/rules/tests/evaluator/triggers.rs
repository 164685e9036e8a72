//! Triggers, guards and run-time errors.

use super::support::*;

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
