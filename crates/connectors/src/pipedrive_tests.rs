//! `PipedriveConnector` against the fake Pipedrive: request shapes, every answer
//! classified.

use std::time::Duration;

use followthrough_core::ObjectRef;
use followthrough_fakes::{FakePipedrive, PipedriveFailure};
use secrecy::SecretString;
use serde_json::{Value as Json, json};

use super::{PipedriveConfig, PipedriveConnector};
use crate::{ActionJob, Connector, Outcome, Repeat};

fn connector_with(fake: &FakePipedrive, timeout: Duration) -> PipedriveConnector {
    let mut config = PipedriveConfig::new(fake.base_url(), SecretString::from(fake.token()));
    config.timeout = timeout;
    PipedriveConnector::new(config).unwrap()
}

fn connector(fake: &FakePipedrive) -> PipedriveConnector {
    connector_with(fake, Duration::from_secs(5))
}

fn job(action: &str, object: &str, params: Json) -> ActionJob {
    ActionJob {
        key: "run_1:0".into(),
        action: action.into(),
        object: object.parse::<ObjectRef>().unwrap(),
        params,
        attempt: 1,
        after_indeterminate: false,
    }
}

fn task(object: &str) -> ActionJob {
    job(
        "create_task",
        object,
        json!({
            "subject": "Call back",
            "body": "They asked for pricing",
            "priority": "HIGH",
            "type": "CALL",
            "owner_id": "17",
            "associations": [object],
            "due_at": "2024-05-01T09:30:00+02:00",
            "due_at_ms": 1_714_548_600_000_i64,
        }),
    )
}

fn message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry(f) | Outcome::Terminal(f) | Outcome::Indeterminate(f) => f.message.clone(),
        Outcome::Success(s) => s.summary.clone(),
    }
}

#[tokio::test]
async fn create_task_posts_an_activity_linked_to_the_deal() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(42, json!({"title": "Big deal"}));
    let outcome = connector(&fake).execute(&task("pipedrive:deal:42")).await;

    let Outcome::Success(success) = outcome else {
        panic!("expected success, got {outcome:?}");
    };
    assert_eq!(success.status, Some(201));
    let activities = fake.activities();
    assert_eq!(success.result["activity_id"], activities[0]["id"]);
    let request = &fake.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/activities")
    );
    assert_eq!(
        request.query, None,
        "the token goes in a header, not the query"
    );
    assert_eq!(
        request.body,
        Some(json!({
            "subject": "Call back",
            "type": "call",
            "deal_id": 42,
            "note": "They asked for pricing",
            "user_id": 17,
            "due_date": "2024-05-01",
            "due_time": "07:30",
        }))
    );
}

#[tokio::test]
async fn create_task_on_a_person_links_person_id() {
    let fake = FakePipedrive::start().await;
    fake.set_person(7, json!({"name": "Ada"}));
    let mut job = task("pipedrive:person:7");
    job.params["type"] = json!("TODO");
    job.params["owner_id"] = Json::Null;
    assert_eq!(connector(&fake).execute(&job).await.class(), "success");
    let body = fake.requests()[0].body.clone().unwrap();
    assert_eq!(body["person_id"], 7);
    assert_eq!(body["type"], "task");
    assert!(body.get("deal_id").is_none() && body.get("user_id").is_none());
}

#[tokio::test]
async fn update_patches_v2_with_typed_fields() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(42, json!({"title": "Big deal", "stage_id": 1}));
    let custom = "a".repeat(40);
    let job = job(
        "update",
        "pipedrive:deal:42",
        json!({"properties": {"stage_id": "3", "title": "Bigger deal", custom.clone(): "gold"}}),
    );
    let pipedrive = connector(&fake);
    assert_eq!(pipedrive.execute(&job).await.class(), "success");

    let request = &fake.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PATCH", "/v2/deals/42")
    );
    assert_eq!(
        request.body,
        Some(
            json!({"stage_id": 3, "title": "Bigger deal", "custom_fields": {custom.clone(): "gold"}})
        )
    );
    let deal = fake.deal(42).unwrap();
    assert_eq!(deal["stage_id"], 3);
    assert_eq!(deal["custom_fields"][&custom], "gold");
    assert_eq!(pipedrive.on_indeterminate(&job), Repeat::Safe);
}

#[tokio::test]
async fn a_missing_deal_is_terminal_with_pipedrives_error() {
    let fake = FakePipedrive::start().await;
    let job = job(
        "update",
        "pipedrive:deal:404",
        json!({"properties": {"title": "x"}}),
    );
    let outcome = connector(&fake).execute(&job).await;
    assert_eq!(outcome.class(), "terminal");
    assert_eq!(outcome.status(), Some(404));
    assert!(message(&outcome).contains("Deal not found"), "{outcome:?}");
}

#[tokio::test]
async fn validation_errors_are_terminal_and_limits_retried() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(42, json!({}));
    let pipedrive = connector(&fake);
    let mut bad = task("pipedrive:deal:42");
    bad.params["type"] = json!("carrier_pigeon");
    let refused = pipedrive.execute(&bad).await;
    assert_eq!((refused.class(), refused.status()), ("terminal", Some(400)));
    assert!(message(&refused).contains("Activity type is not valid"));

    fake.fail_next(1, PipedriveFailure::status(429).retry_after("4"));
    let limited = pipedrive.execute(&task("pipedrive:deal:42")).await;
    let Outcome::Retry(failure) = &limited else {
        panic!("expected a retry, got {limited:?}");
    };
    assert_eq!(failure.retry_after, Some(Duration::from_secs(4)));
    fake.fail_next(1, PipedriveFailure::status(503));
    assert_eq!(
        pipedrive.execute(&task("pipedrive:deal:42")).await.class(),
        "retry"
    );
    fake.fail_next(1, PipedriveFailure::status(401));
    assert_eq!(
        pipedrive.execute(&task("pipedrive:deal:42")).await.class(),
        "terminal"
    );
    assert!(fake.activities().is_empty());
}

#[tokio::test]
async fn a_create_that_times_out_after_sending_is_indeterminate_and_never_repeated() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(42, json!({}));
    fake.fail_next(
        1,
        PipedriveFailure::applied_then_hang(Duration::from_secs(5)),
    );
    let pipedrive = connector_with(&fake, Duration::from_millis(300));
    let job = task("pipedrive:deal:42");
    let outcome = pipedrive.execute(&job).await;
    assert_eq!(outcome.class(), "indeterminate", "{outcome:?}");
    assert_eq!(fake.activities().len(), 1);
    assert_eq!(pipedrive.on_indeterminate(&job), Repeat::Never);
}

#[tokio::test]
async fn create_note_posts_content_linked_to_the_object() {
    let fake = FakePipedrive::start().await;
    fake.set_person(7, json!({}));
    let job = job(
        "create_note",
        "pipedrive:person:7",
        json!({"body": "Met at the fair", "associations": []}),
    );
    let outcome = connector(&fake).execute(&job).await;
    assert_eq!(outcome.class(), "success", "{outcome:?}");
    assert_eq!(
        fake.requests()[0].body,
        Some(json!({"content": "Met at the fair", "person_id": 7}))
    );
    assert_eq!(fake.notes().len(), 1);
}

#[tokio::test]
async fn refuses_what_it_cannot_express_without_calling() {
    let fake = FakePipedrive::start().await;
    let pipedrive = connector(&fake);
    let mut owner = task("pipedrive:deal:42");
    owner.params["owner_id"] = json!("ada@example.com");
    assert_eq!(pipedrive.execute(&owner).await.class(), "terminal");
    assert_eq!(
        pipedrive.execute(&task("hubspot:deal:42")).await.class(),
        "terminal"
    );
    assert_eq!(
        pipedrive.execute(&task("pipedrive:lead:42")).await.class(),
        "terminal"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_terminal_and_never_echoed() {
    let fake = FakePipedrive::start().await;
    let config = PipedriveConfig::new(
        fake.base_url(),
        SecretString::from("0123456789abcdef".to_owned()),
    );
    let outcome = PipedriveConnector::new(config)
        .unwrap()
        .execute(&task("pipedrive:deal:1"))
        .await;
    assert_eq!((outcome.class(), outcome.status()), ("terminal", Some(401)));
    assert!(!format!("{outcome:?}").contains("0123456789abcdef"));
}
