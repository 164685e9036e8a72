//! Alerts: dead letters, an open circuit and an old backlog each reach the ops channel
//! once, and the rate limit holds back repeats.

use std::time::Duration;

use followthrough_core::{Clock as _, ObjectRef, RunId};
use followthrough_fakes::PostedMessage;
use followthrough_store::{OutboxJob, UnitOfWork};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

const ALERTS: &str = "[alerts]\nslack_channel = \"#ops\"\ncheck_interval_ms = 40\nrepeat_after_ms = 600000\noutbox_age_ms = 3600000\n";

/// Queues an update of a HubSpot contact; the fake answers 404 for one it does not hold.
async fn queue_update(app: &TestApp, contact: &str) {
    let now = app.clock.now();
    let job = OutboxJob {
        idempotency_key: format!("alert-test:{contact}"),
        run_id: RunId::new(),
        rule_id: "test".into(),
        action: "update".into(),
        connector: "hubspot".into(),
        object: ObjectRef::new("hubspot", "contact", contact),
        params: json!({ "properties": { "hs_lead_status": "OPEN" } }),
        created_at: now,
        next_at: now,
    };
    let unit = UnitOfWork {
        outbox: vec![job],
        ..UnitOfWork::default()
    };
    app.store.apply(unit).await.unwrap();
}

async fn ops_messages(app: &TestApp, at_least: usize) -> Vec<PostedMessage> {
    for _ in 0..250 {
        let messages: Vec<_> = app
            .slack
            .messages()
            .into_iter()
            .filter(|m| m.channel == "#ops")
            .collect();
        if messages.len() >= at_least {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "fewer than {at_least} alert(s) in #ops: {:?}",
        app.slack.messages()
    );
}

#[tokio::test]
async fn a_dead_letter_alerts_the_ops_channel_once_within_the_repeat_interval() {
    let app = spawn_app_with(ALERTS).await;
    app.slack.add_channel("#ops");
    queue_update(&app, "991").await;
    let messages = ops_messages(&app, 1).await;
    assert!(
        messages[0].text.contains("1 new dead letter (1 waiting)"),
        "{}",
        messages[0].text
    );
    assert!(messages[0].text.contains("dlq list"));

    // A second one soon after: counted, not sent (one message per kind per interval).
    queue_update(&app, "992").await;
    for _ in 0..250 {
        if app.store.stats().await.unwrap().dead_letters == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ops_messages(&app, 1).await.len(), 1, "rate limited");

    // Past the interval, the next one is told.
    app.clock.advance(Duration::from_secs(601));
    queue_update(&app, "993").await;
    let messages = ops_messages(&app, 2).await;
    assert!(
        messages[1].text.contains("1 new dead letter (3 waiting)"),
        "{}",
        messages[1].text
    );
}

#[tokio::test]
async fn an_open_circuit_and_an_old_backlog_are_told() {
    let extra = format!("{ALERTS}[outbox]\ncircuit_failures = 2\ncircuit_open_ms = 600000\n");
    let app = spawn_app_with(&extra).await;
    app.slack.add_channel("#ops");
    app.hubspot.fail_next(50, 503);
    for contact in ["995", "996", "997"] {
        queue_update(&app, contact).await;
    }
    let messages = ops_messages(&app, 1).await;
    assert!(
        messages
            .iter()
            .any(|m| m.text.contains("hubspot API looks down")),
        "{messages:?}"
    );
    // The jobs wait for the circuit; an hour later the backlog itself is an alert.
    app.clock.advance(Duration::from_secs(3601));
    let messages = ops_messages(&app, 2).await;
    assert!(
        messages
            .iter()
            .any(|m| m.text.contains("oldest pending action has waited 60 min")),
        "{messages:?}"
    );
}
