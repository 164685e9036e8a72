//! The engine end to end: signed webhooks in through the real HTTP ingest, the rules in
//! `examples/rules/`, runs and timers in the store, actions in the outbox. The clock is
//! a `ManualClock`, so "14 days" takes a call to `advance`.

use std::collections::BTreeMap;
use std::time::Duration;

use followthrough_core::{Clock as _, ObjectRef};
use followthrough_fakes::FakeOwner;
use followthrough_store::{OutboxJob, Store as _};
use serde_json::{Value, json};

use crate::helpers::{TestApp, example_rule, property_change, spawn_app_with_rules};

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

fn contact(id: u64) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", id.to_string())
}

fn deal(id: u64) -> ObjectRef {
    ObjectRef::new("hubspot", "deal", id.to_string())
}

/// Sends property changes of one object, each its own event, all at the clock's time.
async fn set(app: &TestApp, next_id: &mut u64, object_type: &str, id: u64, props: &[(&str, &str)]) {
    let at = app.clock.now().as_millis();
    let events: Vec<Value> = props
        .iter()
        .map(|(name, value)| {
            *next_id += 1;
            property_change(*next_id, object_type, id, at, name, value)
        })
        .collect();
    let response = app.post_hubspot(&Value::Array(events).to_string()).await;
    assert_eq!(response.status(), 200);
}

async fn outbox(app: &TestApp, object: &ObjectRef) -> Vec<OutboxJob> {
    app.store.outbox_for(object).await.unwrap()
}

fn actions(jobs: &[OutboxJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.action.as_str()).collect()
}

async fn journal_kinds(app: &TestApp, object: &ObjectRef) -> Vec<(String, String)> {
    app.store
        .journal_for(object)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.kind.as_str().to_owned(),
                e.detail["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn owner(id: &str, email: &str, first: &str, last: &str) -> FakeOwner {
    FakeOwner {
        id: id.into(),
        email: email.into(),
        first_name: first.into(),
        last_name: last.into(),
        teams: vec![],
    }
}

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
    let kinds = journal_kinds(&app, &contact(501)).await;
    for expected in [
        ("rule", "matched"),
        ("run", "started"),
        ("action", "queued"),
        ("run", "completed"),
    ] {
        assert!(
            kinds.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {kinds:?}"
        );
    }
    // Nothing asked the CRM: this rule reads only the owner's id.
    assert_eq!(app.hubspot.requests().len(), 0);
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

    let kinds = journal_kinds(&app, &contact(603)).await;
    for expected in [
        ("run", "cancelled"),
        ("timer", "cancelled"),
        ("timer", "fired"),
        ("timer", "scheduled"),
    ] {
        assert!(
            kinds.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {kinds:?}"
        );
    }
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

const WON_DEAL_RULE: &str = r##"id: won-deal-thanks
description: A won deal -> tell the channel who won it and how many contacts it has.
on: { object: deal, change: dealstage, to: closedwon }
when: size(associated.contacts) > 0 && owner.email != ""
steps:
  - slack_message:
      channel: "#wins"
      text: "{{ object.dealname }} won by {{ owner.email }} with {{ associated.contacts | length }} contact(s), first {{ associated.contacts[0].firstname }}"
"##;

#[tokio::test]
async fn a_rule_reading_linked_contacts_and_the_owner_fetches_them_once_then_uses_the_store() {
    let rule = ("won-deal-thanks.yaml".to_owned(), WON_DEAL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "").await;
    let crm = &app.hubspot;
    crm.add_owner(owner("42", "rae@example.com", "Rae", "Rep"));
    crm.set_object(
        "contacts",
        "801",
        BTreeMap::from([("firstname".to_owned(), "Ada".to_owned())]),
    );
    crm.set_object(
        "contacts",
        "802",
        BTreeMap::from([("firstname".to_owned(), "Bo".to_owned())]),
    );
    crm.associate("deals", "700", "contacts", "801");
    crm.associate("deals", "700", "contacts", "802");

    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[("dealname", "Acme"), ("hubspot_owner_id", "42")],
    )
    .await;
    app.settle().await;
    set(&app, &mut id, "deal", 700, &[("dealstage", "closedwon")]).await;
    app.settle().await;
    let jobs = outbox(&app, &deal(700)).await;
    assert_eq!(actions(&jobs), vec!["slack_message"]);
    let text = jobs[0].params["text"].as_str().unwrap();
    assert!(
        text.starts_with("Acme won by rae@example.com with 2 contact(s), first "),
        "{text}"
    );
    let owner_reads = crm.request_count("/crm/v3/owners/42");
    let link_reads = crm.request_count("/crm/v4/objects/");
    let object_reads = crm.request_count("/crm/v3/objects/");
    assert_eq!((owner_reads, link_reads, object_reads), (1, 1, 2));

    // Again (reopened and won again): everything comes from the store now.
    app.clock.advance(Duration::from_secs(60));
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[("dealstage", "appointmentscheduled")],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    set(&app, &mut id, "deal", 700, &[("dealstage", "closedwon")]).await;
    app.settle().await;
    assert_eq!(
        actions(&outbox(&app, &deal(700)).await),
        vec!["slack_message", "slack_message"]
    );
    assert_eq!(crm.request_count("/crm/v3/owners/42"), owner_reads);
    assert_eq!(crm.request_count("/crm/v4/objects/"), link_reads);
    assert_eq!(crm.request_count("/crm/v3/objects/"), object_reads);
    let fetched = app
        .store
        .journal_for(&deal(700))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail["outcome"] == "fetched")
        .count();
    assert_eq!(fetched, 2, "the owner and the links, journaled once each");
}

#[tokio::test]
async fn an_event_whose_context_cannot_be_fetched_waits_and_is_retried() {
    let rule = ("won-deal-thanks.yaml".to_owned(), WON_DEAL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "[engine]\nfetch_retry_ms = 60000\n").await;
    let crm = &app.hubspot;
    crm.add_owner(owner("42", "rae@example.com", "Rae", "Rep"));
    crm.set_object(
        "contacts",
        "801",
        BTreeMap::from([("firstname".to_owned(), "Ada".to_owned())]),
    );
    crm.associate("deals", "700", "contacts", "801");
    // The owner and the links reads fail: the CRM is down.
    crm.fail_next(2, 503);

    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[
            ("dealname", "Acme"),
            ("hubspot_owner_id", "42"),
            ("dealstage", "closedwon"),
        ],
    )
    .await;
    set(&app, &mut id, "deal", 701, &[("dealname", "Other")]).await;
    // The other deal is applied; 700 waits, with nothing evaluated against a guess.
    for _ in 0..200 {
        if app.store.object(&deal(701)).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.store.object(&deal(701)).await.unwrap().is_some());
    assert!(outbox(&app, &deal(700)).await.is_empty());
    assert_eq!(
        app.store.pending_count().await.unwrap(),
        3,
        "deal 700's events wait"
    );
    let deferred = app
        .store
        .journal_for(&deal(700))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail["outcome"] == "deferred")
        .count();
    assert_eq!(deferred, 1);

    // The CRM is back; after the retry delay the events are applied, in order.
    app.advance(Duration::from_secs(61)).await;
    let jobs = outbox(&app, &deal(700)).await;
    assert_eq!(actions(&jobs), vec!["slack_message"]);
    assert_eq!(app.store.pending_count().await.unwrap(), 0);
}

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
            "SELECT COUNT(*) FROM (SELECT object FROM outbox GROUP BY object HAVING COUNT(*) > 1)"
        ),
        0,
        "and fired once"
    );
    // Oldest first: the late contact's timer (due first) fired before those of 22-41.
    let order: Vec<String> = {
        let connection = rusqlite::Connection::open(&app.db_path).unwrap();
        let mut statement = connection
            .prepare("SELECT object FROM outbox ORDER BY seq LIMIT 1 OFFSET 20")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(order, vec!["hubspot:contact:21".to_owned()]);

    // A restart after more downtime than the catch-up limit skips (and says so).
    set(&app, &mut id, "contact", 50, &[("demo_requested", "yes")]).await;
    app.settle().await;
    let app = app.restart_after(5 * HOUR, None).await;
    app.settle().await;
    assert!(
        outbox(&app, &contact(50)).await.is_empty(),
        "overdue beyond the limit: skipped"
    );
    let kinds = journal_kinds(&app, &contact(50)).await;
    assert!(
        kinds.contains(&("timer".into(), "skipped".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("run".into(), "cancelled".into())),
        "{kinds:?}"
    );
    let reason = app.count("SELECT COUNT(*) FROM runs WHERE object = 'hubspot:contact:50' AND status = 'cancelled' AND reason LIKE '%catch-up limit%'");
    assert_eq!(reason, 1);
}

#[tokio::test]
async fn events_of_a_thousand_objects_from_concurrent_requests_apply_in_each_objects_order() {
    let app = std::sync::Arc::new(spawn_app_with_rules(&[], "").await);
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
    let connection = rusqlite::Connection::open(&app.db_path).unwrap();
    let mut history = connection
        .prepare("SELECT object, value_json FROM property_history WHERE name = 'step' ORDER BY object, seq")
        .unwrap();
    let mut applied: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in history
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .unwrap()
    {
        let (object, value) = row.unwrap();
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

const LOGGED_CALL_RULE: &str = r#"id: tell-owner-about-calls
description: A call logged on a contact -> its owner hears of it.
on: { object: contact, event: activity }
when: owner.email != ""
steps:
  - slack_dm: { to: owner, text: "A call was logged on {{ object.firstname }}." }
"#;

#[tokio::test]
async fn an_engagement_waits_for_the_context_of_the_contacts_it_is_linked_to() {
    let rule = ("calls.yaml".to_owned(), LOGGED_CALL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "[engine]\nfetch_retry_ms = 60000\n").await;
    app.hubspot
        .add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    let mut id = 0;
    set(
        &app,
        &mut id,
        "contact",
        620,
        &[("firstname", "Jo"), ("hubspot_owner_id", "7")],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    // The call is linked to the contact, then created; the owner cannot be read yet.
    app.hubspot.fail_next(1, 503);
    let body = json!([
        { "eventId": 800, "subscriptionId": 7, "portalId": 62515, "occurredAt": at,
          "subscriptionType": "call.associationChange", "associationType": "CALL_TO_CONTACT",
          "fromObjectId": 9100, "toObjectId": 620, "associationRemoved": false },
        { "eventId": 801, "subscriptionId": 8, "portalId": 62515, "occurredAt": at + 1,
          "subscriptionType": "call.creation", "objectId": 9100 }
    ]);
    assert_eq!(app.post_hubspot(&body.to_string()).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = ObjectRef::new("hubspot", "call", "9100");
    let deferred = journal_kinds(&app, &call).await;
    assert!(
        deferred.contains(&("event".into(), "deferred".into())),
        "{deferred:?}"
    );
    assert!(
        outbox(&app, &contact(620)).await.is_empty(),
        "not evaluated against a guess"
    );

    app.advance(Duration::from_secs(61)).await;
    let jobs = outbox(&app, &contact(620)).await;
    assert_eq!(actions(&jobs), vec!["slack_dm"]);
    assert_eq!(jobs[0].params["to"], "sam@example.com");
}
