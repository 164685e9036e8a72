//! From signed webhook to the fake APIs: what HubSpot and Slack receive for the example
//! scenarios, and a terminal error's way through the dead letters and back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, ObjectRef};
use followthrough_fakes::FakeOwner;
use followthrough_store::{JobStatus, OutboxEntry};
use serde_json::json;

use crate::engine::{contact, deal, set};
use crate::helpers::{TestApp, example_rule, property_change, spawn_app_with_rules};

/// Waits until no job about `object` is pending (done or dead), and returns them.
async fn delivered(app: &TestApp, object: &ObjectRef, jobs: usize) -> Vec<OutboxEntry> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = app.store.outbox_for(object).await.unwrap();
        if entries.len() == jobs && entries.iter().all(|e| e.status != JobStatus::Pending) {
            return entries;
        }
        assert!(Instant::now() < deadline, "not delivered: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn sql_contact(app: &TestApp) {
    let mut id = 0;
    set(
        app,
        &mut id,
        "contact",
        501,
        &[
            ("firstname", "Jo"),
            ("hubspot_owner_id", "882761034"),
            ("lifecyclestage", "lead"),
        ],
    )
    .await;
    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    let sql = json!([property_change(
        100,
        "contact",
        501,
        at,
        "lifecyclestage",
        "salesqualifiedlead"
    )]);
    assert_eq!(app.post_hubspot(&sql.to_string()).await.status(), 200);
    app.settle().await;
}

fn sales_owner() -> FakeOwner {
    FakeOwner {
        id: "882761034".into(),
        email: "sam@example.com".into(),
        first_name: "Sam".into(),
        last_name: "Field".into(),
        teams: vec![],
    }
}

#[tokio::test]
async fn the_sql_task_reaches_hubspot_with_its_owner_and_contact_association() {
    let app = spawn_app_with_rules(&[example_rule("new-sql-gets-a-call.yaml")], "").await;
    app.hubspot.add_owner(sales_owner());
    app.hubspot
        .set_object("contact", "501", props(&[("firstname", "Jo")]));
    sql_contact(&app).await;

    let jobs = delivered(&app, &contact(501), 1).await;
    assert_eq!(jobs[0].status, JobStatus::Done, "{jobs:#?}");
    let tasks = app.hubspot.tasks();
    assert_eq!(tasks.len(), 1, "exactly one task");
    let task = &tasks[0];
    assert_eq!(task.properties["hubspot_owner_id"], "882761034");
    assert_eq!(task.properties["hs_task_priority"], "HIGH");
    assert_eq!(task.properties["hs_task_type"], "CALL");
    assert_eq!(task.properties["hs_task_status"], "NOT_STARTED");
    assert_eq!(task.properties["hs_task_subject"], "Initial outreach call");
    assert!(task.properties["hs_task_body"].starts_with("Jo "));
    let association = &task.associations[0];
    assert_eq!(
        (
            association.object_type.as_str(),
            association.id.as_str(),
            association.type_id
        ),
        ("contact", "501", 204)
    );
    // What was created is kept with the job and told in the journal.
    assert!(jobs[0].result.is_some());
    crate::engine::assert_journal_has(
        &app,
        &contact(501),
        &[
            ("action", "queued"),
            ("attempt", "success"),
            ("action", "done"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_negotiation_revert_reaches_hubspot_and_the_dm_reaches_the_owner_on_slack() {
    let app = spawn_app_with_rules(&[example_rule("negotiation-needs-next-step.yaml")], "").await;
    app.hubspot.add_owner(FakeOwner {
        id: "42".into(),
        email: "rep@example.com".into(),
        first_name: "Rae".into(),
        last_name: "Rep".into(),
        teams: vec![],
    });
    app.slack.add_user("rep@example.com", "U0000042");
    // HubSpot already holds the change the webhook tells us about.
    app.hubspot.set_object(
        "deal",
        "9001",
        props(&[("dealname", "Acme renewal"), ("dealstage", "negotiation")]),
    );
    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        9001,
        &[
            ("dealname", "Acme renewal"),
            ("dealstage", "proposal"),
            ("hubspot_owner_id", "42"),
        ],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    set(&app, &mut id, "deal", 9001, &[("dealstage", "negotiation")]).await;
    app.settle().await;

    let jobs = delivered(&app, &deal(9001), 2).await;
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Done),
        "{jobs:#?}"
    );
    assert_eq!(
        app.hubspot.object("deal", "9001").unwrap()["dealstage"],
        "proposal",
        "the stage is put back"
    );
    let patches: Vec<_> = app
        .hubspot
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path, "/crm/v3/objects/deals/9001");
    assert_eq!(
        patches[0].body.as_ref().unwrap()["properties"]["dealstage"],
        "proposal"
    );
    let messages = app.slack.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].channel, "U0000042",
        "a DM to the owner's Slack user"
    );
    assert_eq!(
        messages[0].text,
        "Deal Acme renewal moved to Negotiation but Next Step is empty. Update the record."
    );
    assert_eq!(app.slack.request_count("/users.lookupByEmail"), 1);
}

#[tokio::test]
async fn a_refused_task_becomes_a_dead_letter_with_the_api_message_and_replays_once_fixed() {
    let app = spawn_app_with_rules(&[example_rule("new-sql-gets-a-call.yaml")], "").await;
    app.hubspot.add_owner(sales_owner());
    // HubSpot does not know contact 501: the association is refused (400).
    sql_contact(&app).await;

    let jobs = delivered(&app, &contact(501), 1).await;
    assert_eq!(jobs[0].status, JobStatus::Dead);
    assert_eq!(jobs[0].attempts, 1, "a terminal error is not retried");
    let letters = app.store.dead_letters(false).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.reason.kind, "terminal");
    assert_eq!(letter.reason.last_status, Some(400));
    assert!(
        letter.reason.message.contains("501"),
        "the API's own message: {}",
        letter.reason.message
    );
    assert!(app.hubspot.tasks().is_empty());

    // Someone fixes the CRM and replays the letter: the task is created, once.
    app.hubspot
        .set_object("contact", "501", props(&[("firstname", "Jo")]));
    let replayed = app
        .store
        .replay_dead_letters(&[letter.id], app.clock.now(), Vec::new())
        .await
        .unwrap();
    assert_eq!(replayed, vec![letter.id]);
    let jobs = delivered(&app, &contact(501), 1).await;
    assert_eq!(jobs[0].status, JobStatus::Done, "{jobs:#?}");
    assert_eq!(app.hubspot.tasks().len(), 1);
    assert!(app.store.dead_letters(false).await.unwrap().is_empty());
}

#[tokio::test]
async fn our_own_write_coming_back_updates_state_but_sets_off_no_rule() {
    let app = spawn_app_with_rules(
        &[example_rule("negotiation-needs-next-step.yaml")],
        "[connectors.hubspot]\napp_id = \"54321\"\n",
    )
    .await;
    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        9005,
        &[
            ("dealname", "Echo"),
            ("dealstage", "proposal"),
            ("hubspot_owner_id", "42"),
        ],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    // The same change a person would make, but made by our app (an `update` action).
    let mut echo = property_change(
        500,
        "deal",
        9005,
        app.clock.now().as_millis(),
        "dealstage",
        "negotiation",
    );
    echo["changeSource"] = json!("INTEGRATION");
    echo["sourceId"] = json!("54321");
    assert_eq!(
        app.post_hubspot(&json!([echo]).to_string()).await.status(),
        200
    );
    app.settle().await;

    assert!(
        app.store.outbox_for(&deal(9005)).await.unwrap().is_empty(),
        "no rule ran on our own write"
    );
    let state = app.store.object(&deal(9005)).await.unwrap().unwrap();
    assert_eq!(state.properties["dealstage"].value, "negotiation");
    let journal = app.store.journal_for(&deal(9005)).await.unwrap();
    let echo_row = journal
        .iter()
        .find(|e| e.detail["outcome"] == "echo_ignored")
        .expect("the journal says why nothing ran");
    assert!(echo_row.summary.contains("made by followthrough itself"));
    assert!(!journal.iter().any(|e| e.detail["outcome"] == "matched"));
}

#[tokio::test]
async fn after_fourteen_quiet_days_hubspot_sees_the_reassignment_task_enrollment_and_update() {
    let app = spawn_app_with_rules(
        &[example_rule("lead-gone-cold.yaml")],
        "[connectors.hubspot.teams]\nhunters = [\"111\", \"222\"]\n",
    )
    .await;
    for (id, first) in [("7", "Sam"), ("111", "Hana"), ("222", "Hugo")] {
        app.hubspot.add_owner(FakeOwner {
            id: id.into(),
            email: format!("{}@example.com", first.to_lowercase()),
            first_name: first.into(),
            last_name: "Field".into(),
            teams: vec![],
        });
    }
    app.hubspot.add_sequence("long-term-nurture");
    let mut id = 0;
    for (contact_id, score) in [(601, "72"), (602, "12")] {
        app.hubspot.set_object(
            "contact",
            &contact_id.to_string(),
            props(&[("firstname", "Jo"), ("hubspot_owner_id", "7")]),
        );
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
    app.advance(Duration::from_secs(14 * 24 * 3600)).await;

    for contact_id in [601, 602] {
        let jobs = delivered(&app, &contact(contact_id), 2).await;
        assert!(
            jobs.iter().all(|j| j.status == JobStatus::Done),
            "{jobs:#?}"
        );
    }
    // The hot lead: to the first hunter in the rotation, with a task to re-engage.
    assert_eq!(
        app.hubspot.object("contact", "601").unwrap()["hubspot_owner_id"],
        "111"
    );
    let tasks = app.hubspot.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].properties["hs_task_subject"], "Re-engage Jo");
    assert_eq!(tasks[0].associations[0].id, "601");
    // The cold one: into the nurture sequence (sent as its owner) and hibernating.
    let enrollments = app.hubspot.enrollments();
    assert_eq!(enrollments.len(), 1);
    assert_eq!(enrollments[0].contact_id, "602");
    assert_eq!(enrollments[0].sequence_id, "long-term-nurture");
    assert_eq!(enrollments[0].sender_email, "sam@example.com");
    assert_eq!(
        app.hubspot.object("contact", "602").unwrap()["hs_lead_status"],
        "hibernating"
    );
}

#[tokio::test]
async fn least_loaded_assignment_goes_to_the_owner_with_the_fewest_records() {
    let rule = (
        "spread-new-leads.yaml".to_owned(),
        "id: spread-new-leads\non:\n  object: contact\n  event: created\nsteps:\n  - assign_owner: { team: closers, strategy: least_loaded }\n".to_owned(),
    );
    let app = spawn_app_with_rules(
        &[rule],
        "[connectors.hubspot.teams]\nclosers = [\"111\", \"222\"]\n",
    )
    .await;
    for id in ["111", "222"] {
        app.hubspot.add_owner(FakeOwner {
            id: id.into(),
            email: format!("closer{id}@example.com"),
            ..FakeOwner::default()
        });
    }
    // 111 owns two contacts, 222 one: the new lead goes to 222.
    for (id, owner) in [("1", "111"), ("2", "111"), ("3", "222"), ("700", "")] {
        app.hubspot
            .set_object("contact", id, props(&[("hubspot_owner_id", owner)]));
    }
    let created = json!([{
        "eventId": 1, "subscriptionId": 1, "portalId": 62515, "attemptNumber": 0,
        "occurredAt": app.clock.now().as_millis(), "subscriptionType": "contact.creation",
        "objectId": 700, "changeSource": "CRM_UI"
    }]);
    assert_eq!(app.post_hubspot(&created.to_string()).await.status(), 200);
    app.settle().await;

    let jobs = delivered(&app, &contact(700), 1).await;
    assert_eq!(
        jobs[0].status,
        JobStatus::Done,
        "{:#?}",
        app.store.dead_letters(false).await.unwrap()
    );
    assert_eq!(
        app.hubspot.object("contact", "700").unwrap()["hubspot_owner_id"],
        "222"
    );
    let searches = app.hubspot.request_count("/crm/v3/objects/contacts/search");
    assert_eq!(searches, 2, "one count per team member");
}
