//! Timers across downtime, per-object order under concurrency, rule versions.

use std::collections::BTreeMap;
use std::time::Duration;

use followthrough_core::Clock as _;
use followthrough_store::OutboxJob;
use serde_json::Value;

use super::*;
use crate::helpers::{example_rule, property_change, spawn_app_with_rules};

const WAIT_RULE: &str = r#"id: follow-up-in-an-hour
description: A demo request gets a follow-up task an hour later.
on: { object: contact, change: demo_requested, to: "yes" }
steps:
  - wait: 1h
  - create_task: { subject: "Follow up the demo request", priority: MEDIUM, owner: owner }
"#;

#[tokio::test]
async fn timers_that_came_due_while_the_service_was_down_fire_once_each_on_start() {
    let rule = ("follow-up.yaml".to_owned(), WAIT_RULE.to_owned());
    // Catch up at most 3 hours of downtime.
    let extra = "[engine]\ntimer_catch_up_limit_ms = 10800000\n";
    let app = spawn_app_with_rules(&[rule], extra).await;
    let mut id = 0;
    for contact_id in 1..=20 {
        set(
            &app,
            &mut id,
            "contact",
            contact_id,
            &[("demo_requested", "yes")],
        )
        .await;
    }
    app.settle().await;
    // One more, 3 hours later: its timer will be overdue by less than the others'.
    app.clock.advance(3 * HOUR);
    set(&app, &mut id, "contact", 21, &[("demo_requested", "yes")]).await;
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM timers"),
        20 + 1 - 20,
        "the first 20 fired meanwhile"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox"), 20);

    // 20 more a minute later, then the service goes down for 2 hours: their timers come
    // due meanwhile.
    app.clock.advance(Duration::from_secs(60));
    for contact_id in 22..=41 {
        set(
            &app,
            &mut id,
            "contact",
            contact_id,
            &[("demo_requested", "yes")],
        )
        .await;
    }
    app.settle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM timers"), 21);
    let app = app.restart_after(2 * HOUR, None).await;
    app.settle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM timers"), 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox"),
        41,
        "each due timer fired"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM (SELECT object FROM outbox GROUP BY object HAVING COUNT(*) > 1) AS twice"
        ),
        0,
        "and fired once"
    );
    // Oldest first: the late contact's timer (due first) fired before those of 22-41.
    let order: Vec<(String,)> = app
        .db
        .rows("SELECT object FROM outbox ORDER BY seq LIMIT 1 OFFSET 20");
    assert_eq!(order, vec![("hubspot:contact:21".to_owned(),)]);

    // A restart after more downtime than the catch-up limit skips (and says so).
    set(&app, &mut id, "contact", 50, &[("demo_requested", "yes")]).await;
    app.settle().await;
    let app = app.restart_after(5 * HOUR, None).await;
    app.settle().await;
    assert!(
        outbox(&app, &contact(50)).await.is_empty(),
        "overdue beyond the limit: skipped"
    );
    assert_journal_has(
        &app,
        &contact(50),
        &[("timer", "skipped"), ("run", "cancelled")],
    )
    .await;
    let reason = app.count("SELECT COUNT(*) FROM runs WHERE object = 'hubspot:contact:50' AND status = 'cancelled' AND reason LIKE '%catch-up limit%'");
    assert_eq!(reason, 1);
}

#[tokio::test]
async fn events_of_a_thousand_objects_from_concurrent_requests_apply_in_each_objects_order() {
    thousand_objects_apply_in_each_objects_order("").await;
}

/// The same with batches of 50: a backlog all along, so every batch is prepared while
/// others commit, and an object's events are spread over many batches.
#[tokio::test]
async fn the_same_in_batches_of_fifty_with_many_in_flight() {
    thousand_objects_apply_in_each_objects_order("[engine]\nbatch_size = 50\n").await;
}

async fn thousand_objects_apply_in_each_objects_order(config: &str) {
    let app = std::sync::Arc::new(spawn_app_with_rules(&[], config).await);
    const OBJECTS: u64 = 1_000;
    const STEPS: u64 = 10;
    const SENDERS: u64 = 20;
    let start = app.clock.now().as_millis();
    // Each sender owns 50 objects and sends their events in order, interleaved: one
    // request holds step n of several objects. The 20 senders run concurrently.
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let app = std::sync::Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            let objects: Vec<u64> = (0..OBJECTS).filter(|o| o % SENDERS == sender).collect();
            for step in 1..=STEPS {
                for chunk in objects.chunks(25) {
                    let events: Vec<Value> = chunk
                        .iter()
                        .map(|o| {
                            let event_id = o * 100 + step;
                            property_change(
                                event_id,
                                "contact",
                                10_000 + o,
                                start + step as i64,
                                "step",
                                &step.to_string(),
                            )
                        })
                        .collect();
                    let response = app.post_hubspot(&Value::Array(events).to_string()).await;
                    assert_eq!(response.status(), 200);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbox_applied"),
        (OBJECTS * STEPS) as i64
    );
    let history: Vec<(String, String)> = app.db.rows(
        "SELECT object, value_json FROM property_history WHERE name = 'step' ORDER BY object, seq",
    );
    let mut applied: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (object, value) in history {
        let value: String = serde_json::from_str(&value).unwrap();
        applied
            .entry(object)
            .or_default()
            .push(value.parse().unwrap());
    }
    assert_eq!(applied.len(), OBJECTS as usize);
    let in_order: Vec<u64> = (1..=STEPS).collect();
    for (object, steps) in &applied {
        assert_eq!(steps, &in_order, "{object} applied out of order");
    }
    let last = app.count(
        "SELECT COUNT(*) FROM object_properties WHERE name = 'step' AND value_json = '\"10\"'",
    );
    assert_eq!(last, OBJECTS as i64, "every object ends at its last step");
}

#[tokio::test]
async fn a_run_keeps_the_rule_version_it_started_with_across_edits_and_restarts() {
    let version = |subject: &str| WAIT_RULE.replace("Follow up the demo request", subject);
    let rule = ("follow-up.yaml".to_owned(), version("Follow up (v1)"));
    let app = spawn_app_with_rules(&[rule], "").await;
    let mut id = 0;
    set(&app, &mut id, "contact", 1, &[("demo_requested", "yes")]).await;
    app.settle().await;

    // The rule changes while contact 1's run waits; contact 2 starts under the new one.
    std::fs::write(
        app.rules_dir.join("follow-up.yaml"),
        version("Follow up (v2)"),
    )
    .unwrap();
    let diff = app.rules.reload().unwrap();
    assert_eq!(diff.changed, vec!["follow-up-in-an-hour".to_owned()]);
    set(&app, &mut id, "contact", 2, &[("demo_requested", "yes")]).await;
    app.settle().await;

    // Across a restart (which loads only v2 from the folder) each run finishes with its own.
    let app = app.restart_after(2 * HOUR, None).await;
    app.settle().await;
    let subject = |jobs: Vec<OutboxJob>| jobs[0].params["subject"].as_str().unwrap().to_owned();
    assert_eq!(subject(outbox(&app, &contact(1)).await), "Follow up (v1)");
    assert_eq!(subject(outbox(&app, &contact(2)).await), "Follow up (v2)");
}

#[tokio::test]
async fn a_restart_within_one_batch_leaves_one_waiting_run() {
    let app = spawn_app_with_rules(&[example_rule("lead-gone-cold.yaml")], "").await;
    app.hubspot
        .add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    let mut id = 0;
    // Three activities of one contact in one webhook: each restarts the wait.
    set(
        &app,
        &mut id,
        "contact",
        610,
        &[
            ("hubspot_owner_id", "7"),
            ("notes_last_contacted", "1"),
            ("hs_last_sales_activity_timestamp", "2"),
            ("notes_last_contacted", "3"),
        ],
    )
    .await;
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'waiting'"),
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'cancelled'"),
        2
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM timers"), 1);
}

/// A rule keyed by a property (one run per company), restarted by each contact's demo
/// request: runs of one key belong to many objects, so they cross the engine's batches,
/// several of which commit at once. Small batches make that happen often.
const ONE_PER_COMPANY: &str = r#"id: one-follow-up-per-company
description: One follow-up per company, for its latest demo request.
on: { object: contact, change: demo_requested, to: "yes" }
key: object.company_id
on_retrigger: restart
steps:
  - wait: 1h
  - create_task: { subject: "Follow up the company's demo request", priority: MEDIUM }
"#;

#[tokio::test]
async fn runs_keyed_across_objects_follow_event_order_across_batches_in_flight() {
    let rule = (
        "one-per-company.yaml".to_owned(),
        ONE_PER_COMPANY.to_owned(),
    );
    let app = spawn_app_with_rules(&[rule], "[engine]\nbatch_size = 20\n").await;
    const CONTACTS: u64 = 300;
    const COMPANIES: u64 = 7;
    let start = app.clock.now().as_millis();
    // Contact i asks at start + i ms: within a company, the latest contact's run must be
    // the one left waiting, whatever batches the requests landed in.
    for chunk in (0..CONTACTS).collect::<Vec<_>>().chunks(30) {
        let events: Vec<Value> = chunk
            .iter()
            .flat_map(|i| {
                let (contact, at) = (1_000 + i, start + *i as i64);
                let company = (i % COMPANIES).to_string();
                [
                    property_change(i * 2 + 1, "contact", contact, at, "company_id", &company),
                    property_change(i * 2 + 2, "contact", contact, at, "demo_requested", "yes"),
                ]
            })
            .collect();
        let response = app.post_hubspot(&Value::Array(events).to_string()).await;
        assert_eq!(response.status(), 200);
    }
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbox_applied"),
        (CONTACTS * 2) as i64
    );
    let waiting: Vec<(String, String)> = app
        .db
        .rows("SELECT run_key, object FROM runs WHERE status = 'waiting' ORDER BY run_key");
    let expected: Vec<(String, String)> = (0..COMPANIES)
        .map(|company| {
            let last = (0..CONTACTS)
                .filter(|i| i % COMPANIES == company)
                .max()
                .unwrap();
            (
                company.to_string(),
                format!("hubspot:contact:{}", 1_000 + last),
            )
        })
        .collect();
    assert_eq!(
        waiting, expected,
        "the latest request of each company waits"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'cancelled'"),
        (CONTACTS - COMPANIES) as i64,
        "every other run was restarted away"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM timers"), COMPANIES as i64);

    app.advance(Duration::from_secs(3_600)).await;
    let tasks = app.count("SELECT COUNT(*) FROM outbox WHERE action = 'create_task'");
    assert_eq!(tasks, COMPANIES as i64, "one task per company");
}
