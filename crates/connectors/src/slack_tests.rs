//! `SlackConnector` against the fake Slack: request shapes, every answer classified.

use std::collections::BTreeMap;
use std::time::Duration;

use followthrough_core::ObjectRef;
use followthrough_fakes::{FakeSlack, SlackFailure};
use secrecy::SecretString;
use serde_json::{Value as Json, json};

use super::{SlackConfig, SlackConnector};
use crate::{ActionJob, Connector, Outcome, Repeat};

fn config(fake: &FakeSlack) -> SlackConfig {
    let mut config = SlackConfig::new(SecretString::from(fake.token()));
    config.base_url = fake.base_url();
    config.timeout = Duration::from_secs(5);
    config
}

fn connector(fake: &FakeSlack) -> SlackConnector {
    SlackConnector::new(config(fake)).unwrap()
}

fn job(action: &str, params: Json) -> ActionJob {
    ActionJob {
        key: "run_1:0".into(),
        action: action.into(),
        object: ObjectRef::new("hubspot", "deal", "9001"),
        params,
        attempt: 1,
        after_indeterminate: false,
    }
}

fn message(channel: &str, text: &str) -> ActionJob {
    job("slack_message", json!({"channel": channel, "text": text}))
}

fn dm(to: &str, text: &str) -> ActionJob {
    job("slack_dm", json!({"to": to, "text": text}))
}

fn failure(outcome: &Outcome) -> &crate::Failure {
    match outcome {
        Outcome::Retry(f) | Outcome::Terminal(f) | Outcome::Indeterminate(f) => f,
        Outcome::Success(s) => panic!("expected a failure, got {s:?}"),
    }
}

#[tokio::test]
async fn posts_a_channel_message_with_slacks_shape() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C0SALES");
    let outcome = connector(&fake)
        .execute(&message("C0SALES", "Deal stalled"))
        .await;

    let Outcome::Success(success) = outcome else {
        panic!("expected success, got {outcome:?}");
    };
    assert_eq!(success.status, Some(200));
    assert_eq!(success.result["channel"], "C0SALES");
    assert!(success.result["ts"].as_str().unwrap().contains('.'));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/chat.postMessage");
    assert_eq!(
        requests[0].body,
        Some(json!({"channel": "C0SALES", "text": "Deal stalled"}))
    );
    let posted = fake.messages();
    assert_eq!(
        (posted[0].channel.as_str(), posted[0].text.as_str()),
        ("C0SALES", "Deal stalled")
    );
}

#[tokio::test]
async fn ok_false_answers_are_failures_classified_by_code() {
    let fake = FakeSlack::start().await;
    fake.add_channel_without_bot("C0PRIVATE");
    fake.add_channel("C0SALES");
    let slack = connector(&fake);

    let unknown = slack.execute(&message("C0NOPE", "x")).await;
    assert_eq!(unknown.class(), "terminal");
    assert!(
        failure(&unknown).message.contains("channel_not_found"),
        "{unknown:?}"
    );
    let outside = slack.execute(&message("C0PRIVATE", "x")).await;
    assert_eq!(outside.class(), "terminal");
    assert!(failure(&outside).message.contains("not_in_channel"));

    fake.fail_next(1, SlackFailure::error("ratelimited"));
    let limited = slack.execute(&message("C0SALES", "x")).await;
    assert_eq!(limited.class(), "retry");
    assert_eq!(failure(&limited).retry_after, Some(Duration::from_secs(1)));

    fake.fail_next(1, SlackFailure::status(429).retry_after("7"));
    let too_many = slack.execute(&message("C0SALES", "x")).await;
    assert_eq!(too_many.class(), "retry");
    assert_eq!(too_many.status(), Some(429));
    assert_eq!(failure(&too_many).retry_after, Some(Duration::from_secs(7)));

    fake.fail_next(1, SlackFailure::status(503));
    assert_eq!(
        slack.execute(&message("C0SALES", "x")).await.class(),
        "retry"
    );
    fake.fail_next(1, SlackFailure::error("internal_error"));
    assert_eq!(
        slack.execute(&message("C0SALES", "x")).await.class(),
        "indeterminate"
    );
    fake.fail_next(1, SlackFailure::error("no_text"));
    assert_eq!(
        slack.execute(&message("C0SALES", "x")).await.class(),
        "terminal"
    );
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_terminal_and_never_echoed() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C0SALES");
    let mut config = config(&fake);
    config.token = SecretString::from("xoxb-wrong-token-123".to_owned());
    let outcome = SlackConnector::new(config)
        .unwrap()
        .execute(&message("C0SALES", "x"))
        .await;
    assert_eq!(outcome.class(), "terminal");
    let failure = failure(&outcome);
    assert!(failure.message.contains("invalid_auth"));
    assert!(!format!("{failure:?}").contains("wrong-token"));
}

#[tokio::test]
async fn dm_looks_the_email_up_once_then_uses_the_cache() {
    let fake = FakeSlack::start().await;
    fake.add_user("ada@example.com", "U0ADA");
    let slack = connector(&fake);

    let first = slack
        .execute(&dm("Ada@Example.com", "Your deal is stalled"))
        .await;
    let Outcome::Success(success) = first else {
        panic!("expected success, got {first:?}");
    };
    assert_eq!(success.result["user_id"], "U0ADA");
    let second = slack.execute(&dm("ada@example.com", "Still stalled")).await;
    assert_eq!(second.class(), "success");

    assert_eq!(fake.request_count("/users.lookupByEmail"), 1);
    let lookup = &fake.requests()[0];
    assert_eq!(lookup.method, "GET");
    assert_eq!(
        lookup.query_param("email").as_deref(),
        Some("ada@example.com")
    );
    let posts: Vec<_> = fake.messages().into_iter().map(|m| m.channel).collect();
    assert_eq!(posts, ["U0ADA", "U0ADA"]);
}

#[tokio::test]
async fn an_expired_cache_entry_is_looked_up_again() {
    let fake = FakeSlack::start().await;
    fake.add_user("ada@example.com", "U0ADA");
    let mut config = config(&fake);
    config.user_cache_ttl = Duration::ZERO;
    let slack = SlackConnector::new(config).unwrap();
    slack.execute(&dm("ada@example.com", "one")).await;
    slack.execute(&dm("ada@example.com", "two")).await;
    assert_eq!(fake.request_count("/users.lookupByEmail"), 2);
}

#[tokio::test]
async fn dm_to_an_unknown_email_is_terminal_without_the_email() {
    let fake = FakeSlack::start().await;
    let outcome = connector(&fake)
        .execute(&dm("ghost@example.com", "x"))
        .await;
    assert_eq!(outcome.class(), "terminal");
    let failure = failure(&outcome);
    assert!(failure.message.contains("users_not_found"));
    assert!(!failure.message.contains("ghost"));
    assert_eq!(fake.request_count("/chat.postMessage"), 0);
}

#[tokio::test]
async fn a_configured_webhook_is_used_instead_of_the_web_api() {
    let fake = FakeSlack::start().await;
    let hook = fake.add_webhook("#alerts");
    let mut config = config(&fake);
    config.webhooks = BTreeMap::from([("#alerts".to_owned(), SecretString::from(hook.clone()))]);
    let slack = SlackConnector::new(config).unwrap();

    let outcome = slack.execute(&message("alerts", "Heads up")).await;
    assert_eq!(outcome.class(), "success", "{outcome:?}");
    assert_eq!(fake.request_count("/chat.postMessage"), 0);
    let posted = fake.messages();
    assert!(posted[0].via_webhook);
    assert_eq!(posted[0].text, "Heads up");
    assert_eq!(fake.requests()[0].body, Some(json!({"text": "Heads up"})));

    fake.archive_channel("#alerts");
    let archived = slack.execute(&message("#alerts", "again")).await;
    assert_eq!(archived.class(), "terminal");
    assert_eq!(archived.status(), Some(410));
    let failure = failure(&archived);
    assert!(
        failure.message.contains("channel_is_archived"),
        "{failure:?}"
    );
    let secret = hook.rsplit('/').next().unwrap();
    assert!(!format!("{failure:?}").contains(secret));
}

#[tokio::test]
async fn a_post_that_times_out_after_sending_is_indeterminate_and_never_repeated() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C0SALES");
    let mut config = config(&fake);
    config.timeout = Duration::from_millis(300);
    let slack = SlackConnector::new(config).unwrap();
    fake.fail_next(1, SlackFailure::applied_then_hang(Duration::from_secs(5)));

    let job = message("C0SALES", "once");
    let outcome = slack.execute(&job).await;
    assert_eq!(outcome.class(), "indeterminate", "{outcome:?}");
    assert_eq!(fake.messages().len(), 1, "the message was posted");
    assert_eq!(slack.on_indeterminate(&job), Repeat::Never);
}

#[tokio::test]
async fn buckets_are_per_channel_or_recipient() {
    let fake = FakeSlack::start().await;
    let slack = connector(&fake);
    assert_eq!(slack.bucket(&message("#sales", "x")), "slack:sales");
    assert_eq!(slack.bucket(&message("C0SALES", "x")), "slack:C0SALES");
    assert_eq!(
        slack.bucket(&dm("Ada@Example.com", "x")),
        "slack:ada@example.com"
    );
}
