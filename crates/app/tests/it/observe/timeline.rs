//! Scenario 2 (a lead gone cold) told by its trace: every kind of journal row, in order,
//! with the values that decided each step.

use std::time::Duration;

use followthrough::journal::Redactor;
use followthrough::trace;
use followthrough_core::Clock as _;
use followthrough_store::JobStatus;
use serde_json::{Value, json};

use crate::engine::{DAY, contact, owner, set};
use crate::helpers::{TestApp, example_rule, property_change, spawn_app_with_rules};

/// Waits until the outbox has no pending job about the object.
async fn outbox_settled(app: &TestApp, object: &followthrough_core::ObjectRef) {
    for _ in 0..500 {
        let entries = app.store.outbox_for(object).await.unwrap();
        if !entries.is_empty() && entries.iter().all(|e| e.status != JobStatus::Pending) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the outbox did not finish the jobs of {object}");
}

#[tokio::test]
async fn a_lead_gone_cold_is_traced_step_by_step_with_the_values_that_decided() {
    let app = spawn_app_with_rules(
        &[
            example_rule("lead-gone-cold.yaml"),
            example_rule("new-sql-gets-a-call.yaml"),
        ],
        "[connectors.hubspot]\napp_id = \"54321\"\n",
    )
    .await;
    app.hubspot
        .add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    // No sequence `long-term-nurture` in this portal: the enrollment fails for good and
    // is dead-lettered; the update beside it succeeds.
    let lead = contact(602);
    app.hubspot.set_object(
        "contact",
        "602",
        [("firstname".to_owned(), "Jo".to_owned())].into(),
    );
    let mut id = 0;
    set(
        &app,
        &mut id,
        "contact",
        602,
        &[
            ("firstname", "Jo"),
            ("lead_score", "12"),
            ("hubspot_owner_id", "7"),
        ],
    )
    .await;
    app.settle().await;
    // Day 0, then day 5: activity; the second restarts the 14-day wait.
    set(
        &app,
        &mut id,
        "contact",
        602,
        &[("notes_last_contacted", "1764324000000")],
    )
    .await;
    app.settle().await;
    app.advance(5 * DAY).await;
    set(
        &app,
        &mut id,
        "contact",
        602,
        &[("notes_last_contacted", "1764756000000")],
    )
    .await;
    app.settle().await;
    // Day 19: the wait is over; lead score 12 takes the nurture branch.
    app.advance(14 * DAY).await;
    outbox_settled(&app, &lead).await;
    // A minute later, HubSpot tells us of the change we made ourselves: not a new
    // activity.
    app.clock.advance(Duration::from_secs(60));
    let mut echo = property_change(
        500,
        "contact",
        602,
        app.clock.now().as_millis(),
        "hs_lead_status",
        "hibernating",
    );
    echo["changeSource"] = json!("INTEGRATION");
    echo["sourceId"] = json!("54321");
    assert_eq!(
        app.post_hubspot(&json!([echo]).to_string()).await.status(),
        200
    );
    app.settle().await;

    let trace = trace::build(app.store.as_ref(), &lead, &Redactor::new([], true))
        .await
        .unwrap()
        .expect("the lead is known");
    let rows: Vec<(String, String)> = trace
        .timeline
        .iter()
        .map(|e| {
            let outcome = e.detail["outcome"]
                .as_str()
                .unwrap_or("received")
                .to_owned();
            (e.kind.clone(), outcome)
        })
        .collect();
    let expected = [
        ("webhook", "received"),
        ("event", "applied"),
        // The first activity starts the run and its wait.
        ("rule", "matched"),
        ("run", "started"),
        ("timer", "scheduled"),
        // The second one restarts it: old run and timer cancelled, a new wait.
        ("rule", "matched"),
        ("timer", "cancelled"),
        ("run", "cancelled"),
        ("run", "started"),
        ("timer", "scheduled"),
        // Fourteen quiet days later.
        ("timer", "fired"),
        ("run", "condition"),
        ("action", "queued"),
        ("action", "queued"),
        ("run", "completed"),
        ("webhook", "received"),
        ("event", "echo_ignored"),
    ];
    assert_in_order(&rows, &expected);
    // The outbox performs the two actions side by side, so each tells its own story
    // after the run queued them: the enrollment fails for good, the update is done.
    let completed = rows
        .iter()
        .position(|r| r == &("run".to_owned(), "completed".to_owned()));
    let after_run = &rows[completed.unwrap()..];
    assert_in_order(
        after_run,
        &[("attempt", "terminal"), ("action", "dead_letter")],
    );
    assert_in_order(after_run, &[("attempt", "success"), ("action", "done")]);

    // The values that decided: the branch's condition with lead_score = 12.
    let condition = trace
        .timeline
        .iter()
        .find(|e| e.detail["outcome"] == "condition")
        .unwrap();
    assert_eq!(
        condition.detail["condition"]["inputs"]["object.lead_score"],
        12
    );
    assert_eq!(condition.detail["condition"]["result"], false);
    assert!(condition.summary.contains("12"), "{}", condition.summary);
    let attempt = trace
        .timeline
        .iter()
        .find(|e| e.kind == "attempt" && e.detail["outcome"] == "terminal")
        .unwrap();
    assert!(
        attempt.detail["message"]
            .as_str()
            .unwrap()
            .contains("Sequence long-term-nurture"),
        "{}",
        attempt.detail
    );
    // An evaluation that does not match is journaled too, with the guard's values: a
    // lead becomes an SQL without an owner, so nobody is asked to call.
    set(
        &app,
        &mut id,
        "contact",
        603,
        &[("lifecyclestage", "salesqualifiedlead")],
    )
    .await;
    app.settle().await;
    let unowned = trace::build(app.store.as_ref(), &contact(603), &Redactor::default())
        .await
        .unwrap()
        .unwrap();
    let no_match = unowned
        .timeline
        .iter()
        .find(|e| e.kind == "rule" && e.detail["outcome"] == "no_match")
        .expect("the guard's refusal is journaled");
    assert_eq!(no_match.detail["rule_id"], "new-sql-gets-a-call");
    assert_eq!(
        no_match.detail["guard"]["inputs"]["object.hubspot_owner_id"],
        ""
    );
    assert!(
        no_match.summary.contains("object.hubspot_owner_id"),
        "{}",
        no_match.summary
    );
    // Each attempt says how it went: status, latency, number, classification.
    let attempt = trace
        .timeline
        .iter()
        .find(|e| e.kind == "attempt" && e.detail["outcome"] == "terminal")
        .unwrap();
    for field in [
        "status",
        "latency_ms",
        "attempt",
        "class",
        "connector",
        "message",
    ] {
        assert_ne!(
            attempt.detail[field],
            Value::Null,
            "{field} in {}",
            attempt.detail
        );
    }
    assert_eq!(attempt.detail["attempt"], 1);
    // Nothing is left to happen: no timer, no pending action.
    assert!(trace.upcoming.is_empty(), "{:?}", trace.upcoming);
    // The text form tells the same story.
    let text = trace.render();
    for needle in [
        "rule lead-gone-cold matched",
        "dead-lettered",
        "made by followthrough itself",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
}

#[tokio::test]
async fn the_trace_says_what_happens_next() {
    let app = spawn_app_with_rules(&[example_rule("lead-gone-cold.yaml")], "").await;
    let mut id = 0;
    set(&app, &mut id, "contact", 610, &[("lead_score", "80")]).await;
    set(
        &app,
        &mut id,
        "contact",
        610,
        &[("notes_last_contacted", "1764324000000")],
    )
    .await;
    app.settle().await;
    let trace = trace::build(app.store.as_ref(), &contact(610), &Redactor::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace.upcoming.len(), 1, "{:?}", trace.upcoming);
    let next = &trace.upcoming[0];
    assert_eq!(next.kind, "wait");
    assert_eq!(next.rule_id, "lead-gone-cold");
    let due = app.clock.now().as_millis() + 14 * 24 * 3600 * 1000;
    assert_eq!(next.due_at_ms.as_millis(), due);
    assert!(trace.render().contains("wakes up"));
}

/// Asserts `expected` appears in `rows` as a subsequence (in order, gaps allowed).
fn assert_in_order(rows: &[(String, String)], expected: &[(&str, &str)]) {
    let mut at = 0;
    for (kind, outcome) in expected {
        match rows[at..]
            .iter()
            .position(|(k, o)| k == kind && o == outcome)
        {
            Some(offset) => at += offset + 1,
            None => panic!(
                "{kind}/{outcome} missing after row {at} in the timeline:\n{}",
                rows.iter()
                    .enumerate()
                    .map(|(i, (k, o))| format!("{i:>3} {k}/{o}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}
