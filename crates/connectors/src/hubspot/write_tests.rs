//! `HubSpotConnector` against the fake HubSpot: what each action sends, and how each
//! answer is classified. Tasks and notes here; record changes, lists and sequences in
//! `records_tests.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use followthrough_core::{ManualClock, Timestamp};
use followthrough_fakes::{Failure, FakeHubSpot, FakeOwner};
use secrecy::SecretString;
use serde_json::{Value as Json, json};

use super::{HubSpotConnector, HubSpotConnectorConfig};
use crate::{ActionJob, Connector, Outcome, Repeat};

const KEY_PROPERTY: &str = "followthrough_key";
/// 2025-01-01T00:00:00Z.
const NOW_MS: i64 = 1_735_689_600_000;

fn config(fake: &FakeHubSpot) -> HubSpotConnectorConfig {
    HubSpotConnectorConfig {
        base_url: fake.base_url(),
        token: SecretString::from(fake.token()),
        timeout: Duration::from_secs(5),
        idempotency_property: None,
        idempotency_upsert: false,
        search_settle: Duration::ZERO,
    }
}

fn connector(config: HubSpotConnectorConfig) -> HubSpotConnector {
    let clock = ManualClock::new(Timestamp::from_millis(NOW_MS));
    HubSpotConnector::new(config, Arc::new(clock)).unwrap()
}

fn keyed(fake: &FakeHubSpot, upsert: bool) -> HubSpotConnector {
    fake.add_unique_property("task", KEY_PROPERTY);
    fake.add_unique_property("note", KEY_PROPERTY);
    connector(HubSpotConnectorConfig {
        idempotency_property: Some(KEY_PROPERTY.into()),
        idempotency_upsert: upsert,
        ..config(fake)
    })
}

fn job(action: &str, object: &str, params: Json) -> ActionJob {
    ActionJob {
        key: "run_01JTEST:0".into(),
        action: action.into(),
        object: object.parse().unwrap(),
        params,
        attempt: 1,
        after_indeterminate: false,
    }
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn with_contact(fake: &FakeHubSpot) {
    fake.set_object("contact", "501", props(&[("email", "lead@example.com")]));
    fake.add_owner(FakeOwner {
        id: "42".into(),
        email: "ada@example.com".into(),
        ..FakeOwner::default()
    });
}

fn task_job() -> ActionJob {
    job(
        "create_task",
        "hubspot:contact:501",
        json!({
            "subject": "Call Jo", "body": "About the demo", "priority": "HIGH", "type": "CALL",
            "owner_id": "42", "associations": ["hubspot:contact:501"],
            "due_at": "2025-01-02T00:00:00Z", "due_at_ms": NOW_MS + 86_400_000,
        }),
    )
}

fn success(outcome: Outcome) -> crate::Success {
    match outcome {
        Outcome::Success(success) => success,
        other => panic!("expected success, got {other:?}"),
    }
}

#[tokio::test]
async fn create_task_sends_hubspots_shape() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let connector = connector(config(&fake));
    let done = success(connector.execute(&task_job()).await);
    assert_eq!(done.status, Some(201));

    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/crm/v3/objects/tasks")
    );
    let body = sent.body.unwrap();
    assert_eq!(
        body["properties"],
        json!({
            "hs_timestamp": "2025-01-02T00:00:00Z", "hs_task_subject": "Call Jo",
            "hs_task_body": "About the demo", "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH", "hs_task_type": "CALL", "hubspot_owner_id": "42",
        })
    );
    assert_eq!(
        body["associations"],
        json!([{"to": {"id": "501"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}])
    );
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(done.result, json!({ "task_id": tasks[0].id }));
    assert_eq!(tasks[0].associations[0].type_id, 204);
    assert_eq!(connector.on_indeterminate(&task_job()), Repeat::Never);
}

#[tokio::test]
async fn tasks_on_deals_and_notes_use_their_association_types() {
    let fake = FakeHubSpot::start().await;
    fake.set_object("deal", "9001", props(&[("dealname", "Big")]));
    fake.set_object("company", "7", props(&[("name", "Acme")]));
    let connector = connector(config(&fake));
    let task = job(
        "create_task",
        "hubspot:deal:9001",
        json!({"subject": "x", "priority": "LOW"}),
    );
    success(connector.execute(&task).await);
    let sent = fake.requests().pop().unwrap().body.unwrap();
    assert_eq!(
        sent["associations"][0]["types"][0]["associationTypeId"],
        216
    );
    assert_eq!(
        sent["properties"]["hs_timestamp"], "2025-01-01T00:00:00Z",
        "now when no due time"
    );

    let note = job(
        "create_note",
        "hubspot:company:7",
        json!({"body": "Met them", "associations": ["hubspot:deal:9001"]}),
    );
    success(connector.execute(&note).await);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.path, "/crm/v3/objects/notes");
    let body = sent.body.unwrap();
    assert_eq!(body["properties"]["hs_note_body"], "Met them");
    let types: Vec<&Json> = body["associations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["types"][0]["associationTypeId"])
        .collect();
    assert_eq!(types, [&json!(190), &json!(214)]);
    assert_eq!(fake.notes()[0].associations.len(), 2);
}

#[tokio::test]
async fn validation_400_is_terminal_with_hubspots_message() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let connector = connector(config(&fake));
    let mut bad = task_job();
    bad.params["owner_id"] = json!("999");
    let Outcome::Terminal(failure) = connector.execute(&bad).await else {
        panic!("an unknown owner is terminal");
    };
    assert_eq!(failure.status, Some(400));
    assert!(
        failure.message.contains("999 is not a valid owner id"),
        "{}",
        failure.message
    );
    assert!(failure.response.unwrap().contains("VALIDATION_ERROR"));

    let missing = job(
        "create_task",
        "hubspot:contact:404",
        json!({"subject": "x"}),
    );
    let Outcome::Terminal(failure) = connector.execute(&missing).await else {
        panic!("an association to a missing record is terminal");
    };
    assert!(
        failure.message.contains("No contact with id 404 exists"),
        "{}",
        failure.message
    );
    assert!(fake.tasks().is_empty());
}

#[tokio::test]
async fn rate_limits_and_gateway_errors_are_retries() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let connector = connector(config(&fake));
    fake.fail_next_with(1, Failure::status(429).retry_after("3"));
    let Outcome::Retry(failure) = connector.execute(&task_job()).await else {
        panic!("429 is a retry");
    };
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
    assert!(
        failure.message.contains("ten_secondly_rolling"),
        "{}",
        failure.message
    );

    fake.fail_next(1, 423);
    let Outcome::Retry(failure) = connector.execute(&task_job()).await else {
        panic!("423 is a retry");
    };
    assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));

    for status in [502, 503, 504, 524] {
        fake.fail_next(1, status);
        let outcome = connector.execute(&task_job()).await;
        assert!(
            matches!(&outcome, Outcome::Retry(f) if f.status == Some(status)),
            "{outcome:?}"
        );
    }
    fake.fail_next(1, 500);
    let outcome = connector.execute(&task_job()).await;
    assert_eq!(outcome.class(), "indeterminate");
    assert!(fake.tasks().is_empty());
}

#[tokio::test]
async fn connection_refused_is_a_retry_and_a_timeout_is_indeterminate() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let fake = FakeHubSpot::start().await;
    let refused = connector(HubSpotConnectorConfig {
        base_url: format!("http://{address}"),
        ..config(&fake)
    });
    let outcome = refused.execute(&task_job()).await;
    assert_eq!(outcome.class(), "retry", "{outcome:?}");

    with_contact(&fake);
    let impatient = connector(HubSpotConnectorConfig {
        timeout: Duration::from_millis(200),
        ..config(&fake)
    });
    fake.fail_next_with(1, Failure::applied_then_timeout(Duration::from_secs(2)));
    let outcome = impatient.execute(&task_job()).await;
    assert_eq!(outcome.class(), "indeterminate", "{outcome:?}");
    assert_eq!(fake.tasks().len(), 1, "the write took effect");
}

#[tokio::test]
async fn after_an_applied_then_timed_out_create_the_check_finds_the_task() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    fake.add_unique_property("task", KEY_PROPERTY);
    fake.set_search_lag(Duration::from_millis(300));
    let connector = connector(HubSpotConnectorConfig {
        timeout: Duration::from_millis(200),
        idempotency_property: Some(KEY_PROPERTY.into()),
        search_settle: Duration::from_millis(400),
        ..config(&fake)
    });
    let mut job = task_job();
    assert_eq!(connector.on_indeterminate(&job), Repeat::CheckFirst);
    fake.fail_next_with(1, Failure::applied_then_timeout(Duration::from_secs(1)));
    assert_eq!(connector.execute(&job).await.class(), "indeterminate");

    // Retried at once: the index has not caught up, the settle wait covers it.
    job.after_indeterminate = true;
    job.attempt = 2;
    let found = success(connector.execute(&job).await);
    assert!(
        found.summary.contains("found by its key"),
        "{}",
        found.summary
    );
    assert_eq!(found.result["task_id"], json!(fake.tasks()[0].id));
    assert_eq!(fake.count_with_property("task", KEY_PROPERTY, &job.key), 1);
    assert_eq!(fake.request_count("/crm/v3/objects/tasks/search"), 2);
    let creates = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/tasks")
        .count();
    assert_eq!(creates, 1, "no second create");
}

#[tokio::test]
async fn check_first_creates_when_nothing_is_found_and_a_conflict_is_found() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let connector = keyed(&fake, false);
    let mut job = task_job();
    job.after_indeterminate = true;
    let created = success(connector.execute(&job).await);
    assert!(created.summary.ends_with("created"), "{}", created.summary);
    assert_eq!(fake.tasks()[0].properties[KEY_PROPERTY], job.key);

    // Search misses it (index lag) but HubSpot refuses the duplicate key: found.
    fake.set_search_lag(Duration::from_millis(150));
    let mut again = task_job();
    again.key = "run_01JOTHER:0".into();
    success(connector.execute(&again).await);
    again.after_indeterminate = true;
    let outcome = connector.execute(&again).await;
    // Not found by search (too new), the create hits the 409, the search still lags.
    assert_eq!(outcome.class(), "indeterminate", "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let found = success(connector.execute(&again).await);
    assert!(
        found.summary.contains("found by its key"),
        "{}",
        found.summary
    );
    assert_eq!(
        fake.count_with_property("task", KEY_PROPERTY, &again.key),
        1
    );
}

#[tokio::test]
async fn upsert_twice_makes_one_task_associated_once() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let connector = keyed(&fake, true);
    let job = task_job();
    assert_eq!(connector.on_indeterminate(&job), Repeat::Safe);
    let first = success(connector.execute(&job).await);
    let second = success(connector.execute(&job).await);
    assert_eq!(first.result, second.result);
    assert!(
        second.summary.contains("updated by its key"),
        "{}",
        second.summary
    );
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].associations.len(), 1);
    assert_eq!(tasks[0].associations[0].type_id, 204);

    let upsert = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/crm/v3/objects/tasks/batch/upsert")
        .unwrap();
    let input = &upsert.body.unwrap()["inputs"][0];
    assert_eq!(input["id"], json!(job.key));
    assert_eq!(input["idProperty"], KEY_PROPERTY);
    assert_eq!(input["properties"]["hs_task_subject"], "Call Jo");
    assert_eq!(
        fake.request_count("/crm/v4/objects/tasks/"),
        2,
        "the default association, once per attempt"
    );
}

#[tokio::test]
async fn unknown_actions_and_bad_params_are_terminal() {
    let fake = FakeHubSpot::start().await;
    let connector = connector(config(&fake));
    for (action, params) in [
        ("slack_dm", json!({})),
        ("create_note", json!({})),
        ("update", json!({"properties": {}})),
        ("revert", json!({})),
        ("add_to_list", json!({})),
    ] {
        let outcome = connector
            .execute(&job(action, "hubspot:contact:1", params))
            .await;
        assert_eq!(outcome.class(), "terminal", "{action}: {outcome:?}");
    }
    assert_eq!(
        connector.on_indeterminate(&job("slack_dm", "hubspot:contact:1", json!({}))),
        Repeat::Never
    );
    assert!(
        fake.requests().is_empty(),
        "nothing sent for a job that cannot work"
    );
}

#[tokio::test]
async fn the_token_never_appears_in_outcomes() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    let token = fake.token();
    let connector = connector(HubSpotConnectorConfig {
        timeout: Duration::from_millis(100),
        ..config(&fake)
    });
    let mut outcomes = Vec::new();
    for status in [400, 401, 403, 404, 423, 429, 500, 503] {
        fake.fail_next(1, status);
        outcomes.push(connector.execute(&task_job()).await);
    }
    fake.set_delay(Duration::from_millis(300));
    outcomes.push(connector.execute(&task_job()).await);
    let wrong = HubSpotConnector::new(
        HubSpotConnectorConfig {
            token: SecretString::from("pat-na1-wrong".to_owned()),
            ..config(&fake)
        },
        Arc::new(ManualClock::new(Timestamp::from_millis(NOW_MS))),
    )
    .unwrap();
    fake.set_delay(Duration::ZERO);
    outcomes.push(wrong.execute(&task_job()).await);
    for outcome in &outcomes {
        let text = format!("{outcome:?}");
        assert!(!text.contains(&token), "{text}");
    }
    assert!(!format!("{connector:?}").contains(&token));
    assert!(!format!("{:?}", config(&fake)).contains(&token));
}

#[path = "records_tests.rs"]
mod records;
