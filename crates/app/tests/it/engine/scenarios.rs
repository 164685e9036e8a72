//! The three scenarios of `examples/rules/`, end to end.

use std::time::Duration;

use followthrough_core::Clock as _;
use serde_json::json;

use super::*;
use crate::helpers::{example_rule, property_change, spawn_app_with_rules};

#[tokio::test]
async fn a_new_sql_gets_exactly_one_call_task_for_its_owner() {
    let app = spawn_app_with_rules(&[example_rule("new-sql-gets-a-call.yaml")], "").await;
    let mut id = 0;
    set(
        &app,
        &mut id,
        "contact",
        501,
        &[
            ("firstname", "Jo"),
            ("lastname", "Doe"),
            ("email", "jo@acme.test"),
            ("hubspot_owner_id", "882761034"),
            ("lifecyclestage", "lead"),
        ],
    )
    .await;
    app.settle().await;
    assert!(
        outbox(&app, &contact(501)).await.is_empty(),
        "a lead is not an SQL"
    );

    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    let sql = json!([property_change(
        100,
        "contact",
        501,
        at,
        "lifecyclestage",
        "salesqualifiedlead"
    )])
    .to_string();
    assert_eq!(app.post_hubspot(&sql).await.status(), 200);
    app.settle().await;
    // HubSpot redelivers the same webhook: no second task.
    assert_eq!(app.post_hubspot(&sql).await.status(), 200);
    app.settle().await;

    let jobs = outbox(&app, &contact(501)).await;
    assert_eq!(actions(&jobs), vec!["create_task"]);
    let params = &jobs[0].params;
    assert_eq!(params["owner_id"], "882761034");
    assert_eq!(params["priority"], "HIGH");
    assert_eq!(params["type"], "CALL");
    assert_eq!(params["subject"], "Initial outreach call");
    assert_eq!(params["body"], "Jo Doe (jo@acme.test) just became an SQL.");
    assert!(
        jobs[0].idempotency_key.ends_with(":steps[0]"),
        "{}",
        jobs[0].idempotency_key
    );

    // The journal says why, with the guard's inputs, and keeps the email out.
    let journal = app.store.journal_for(&contact(501)).await.unwrap();
    let matched = journal
        .iter()
        .find(|e| e.detail["outcome"] == "matched")
        .expect("a matched rule row");
    // Guard inputs are shown as the condition saw them: numeric text as a number.
    assert_eq!(
        matched.detail["guard"]["inputs"]["object.hubspot_owner_id"],
        882761034
    );
    assert_eq!(matched.detail["guard"]["result"], true);
    let text = serde_json::to_string(&journal).unwrap();
    assert!(
        !text.contains("jo@acme.test"),
        "the journal holds no email: {text}"
    );
    let expected = [
        ("rule", "matched"),
        ("run", "started"),
        ("action", "queued"),
        ("run", "completed"),
    ];
    assert_journal_has(&app, &contact(501), &expected).await;
    // Nothing read from the CRM: this rule reads only the owner's id.
    let reads: Vec<_> = app
        .hubspot
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
}

#[tokio::test]
async fn fourteen_quiet_days_take_the_branch_of_the_lead_score_and_activity_restarts_the_wait() {
    let app = spawn_app_with_rules(&[example_rule("lead-gone-cold.yaml")], "").await;
    app.hubspot
        .add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    let mut id = 0;
    for (contact_id, score) in [(601, "72"), (602, "12"), (603, "80")] {
        set(
            &app,
            &mut id,
            "contact",
            contact_id,
            &[
                ("firstname", "Jo"),
                ("lead_score", score),
                ("hubspot_owner_id", "7"),
            ],
        )
        .await;
    }
    app.settle().await;
    // Day 0: activity on all three.
    for contact_id in [601, 602, 603] {
        set(
            &app,
            &mut id,
            "contact",
            contact_id,
            &[("notes_last_contacted", "1764324000000")],
        )
        .await;
    }
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM timers"),
        3,
        "one 14-day wait each"
    );
    // The rule reads the owner's email (sequence sender): fetched once for all three,
    // then read from the store until it is older than engine.context_max_age_ms.
    assert_eq!(app.hubspot.request_count("/crm/v3/owners/7"), 1);

    // Day 13: an email is logged on 603 (an association of an engagement).
    app.advance(13 * DAY).await;
    let at = app.clock.now().as_millis();
    let linked = json!([{
        "eventId": 900, "subscriptionId": 7, "portalId": 62515, "occurredAt": at,
        "subscriptionType": "contact.associationChange", "associationType": "CONTACT_TO_EMAIL",
        "fromObjectId": 603, "toObjectId": 77, "associationRemoved": false, "attemptNumber": 0
    }]);
    assert_eq!(app.post_hubspot(&linked.to_string()).await.status(), 200);
    app.settle().await;

    // Day 14: the two quiet leads go their ways; 603 waits on.
    app.advance(DAY).await;
    let hot = outbox(&app, &contact(601)).await;
    assert_eq!(actions(&hot), vec!["assign_owner", "create_task"]);
    assert_eq!(hot[0].params["team"], "hunters");
    assert_eq!(hot[1].params["priority"], "HIGH");
    let cold = outbox(&app, &contact(602)).await;
    assert_eq!(actions(&cold), vec!["enroll_sequence", "update"]);
    assert_eq!(
        cold[0].params["sender"]["email"], "sam@example.com",
        "fetched from the CRM"
    );
    assert_eq!(
        cold[1].params["properties"]["hs_lead_status"],
        "hibernating"
    );
    assert!(
        outbox(&app, &contact(603)).await.is_empty(),
        "day-13 activity restarted the wait"
    );

    // Day 27: 14 days after its last activity, 603 goes to the hunters.
    app.advance(12 * DAY).await;
    assert!(outbox(&app, &contact(603)).await.is_empty());
    app.advance(DAY + HOUR).await;
    assert_eq!(
        actions(&outbox(&app, &contact(603)).await),
        vec!["assign_owner", "create_task"]
    );

    let expected = [
        ("run", "cancelled"),
        ("timer", "cancelled"),
        ("timer", "fired"),
        ("timer", "scheduled"),
    ];
    assert_journal_has(&app, &contact(603), &expected).await;
}

#[tokio::test]
async fn negotiation_without_next_step_is_reverted_and_escalated_unless_filled() {
    let app = spawn_app_with_rules(&[example_rule("negotiation-needs-next-step.yaml")], "").await;
    app.hubspot
        .add_owner(owner("42", "rep@example.com", "Rae", "Rep"));
    let mut id = 0;
    for deal_id in [9001, 9002] {
        set(
            &app,
            &mut id,
            "deal",
            deal_id,
            &[
                (
                    "dealname",
                    if deal_id == 9001 {
                        "Acme renewal"
                    } else {
                        "Beta"
                    },
                ),
                ("dealstage", "proposal"),
                ("hubspot_owner_id", "42"),
            ],
        )
        .await;
    }
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    for deal_id in [9001, 9002] {
        set(
            &app,
            &mut id,
            "deal",
            deal_id,
            &[("dealstage", "negotiation")],
        )
        .await;
    }
    app.settle().await;
    for deal_id in [9001, 9002] {
        let jobs = outbox(&app, &deal(deal_id)).await;
        assert_eq!(actions(&jobs), vec!["slack_dm", "revert"], "deal {deal_id}");
        assert_eq!(jobs[0].params["to"], "rep@example.com");
        assert_eq!(jobs[1].params["property"], "dealstage");
        assert_eq!(jobs[1].params["value"], "proposal");
    }
    // The trace tells the story so far and what comes next.
    let trace = followthrough::trace::build(app.store.as_ref(), &deal(9001), &Default::default())
        .await
        .unwrap()
        .unwrap();
    let text = trace.render();
    for line in [
        "rule negotiation-needs-next-step matched",
        "slack_dm queued by run",
        "revert queued by run",
        "scheduled at",
        "\nnext:\n",
        "of rule negotiation-needs-next-step gives up waiting (on_timeout)",
    ] {
        assert!(text.contains(line), "`{line}` in:\n{text}");
    }
    let first = outbox(&app, &deal(9001)).await;
    assert_eq!(
        first[0].params["text"],
        "Deal Acme renewal moved to Negotiation but Next Step is empty. Update the record."
    );

    // 3 hours later the rep fills in 9002's next step: its escalation is cancelled.
    app.advance(3 * HOUR).await;
    set(
        &app,
        &mut id,
        "deal",
        9002,
        &[("next_step", "Send the revised quote")],
    )
    .await;
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM timers"),
        1,
        "only 9001 still waits"
    );

    app.advance(DAY).await;
    let escalated = outbox(&app, &deal(9001)).await;
    assert_eq!(
        actions(&escalated),
        vec!["slack_dm", "revert", "slack_message"]
    );
    assert_eq!(escalated[2].params["channel"], "#sales-managers");
    assert_eq!(
        escalated[2].params["text"],
        "Acme renewal still has no next step (Rae Rep)."
    );
    assert_eq!(
        actions(&outbox(&app, &deal(9002)).await),
        vec!["slack_dm", "revert"]
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM timers"), 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'completed'"),
        2
    );
}
