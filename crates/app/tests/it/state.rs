//! Object state and history, and `followthrough trace`.

use std::process::Command;

use followthrough_core::{Clock as _, ObjectRef};
use serde_json::{Value, json};

use crate::backend::TestDb;
use crate::helpers::{fixture, property_change, spawn_app};

#[tokio::test]
async fn out_of_order_changes_leave_the_newest_value_current_and_history_in_order() {
    let app = spawn_app().await;
    let t = app.clock.now().as_millis() - 60_000;
    // Sent newest first, in separate deliveries, as HubSpot's retries can do.
    for (event_id, offset, stage) in [
        (3, 30, "customer"),
        (1, 10, "lead"),
        (2, 20, "salesqualifiedlead"),
    ] {
        let body = json!([property_change(
            event_id,
            "contact",
            777,
            t + offset,
            "lifecyclestage",
            stage
        )])
        .to_string();
        assert_eq!(app.post_hubspot(&body).await.status(), 200);
        app.settle().await;
    }
    let contact = ObjectRef::new("hubspot", "contact", "777");
    let state = app.store.object(&contact).await.unwrap().unwrap();
    assert_eq!(state.properties["lifecyclestage"].value, "customer");
    let history: Vec<Value> = app
        .store
        .property_history(&contact)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.value)
        .collect();
    assert_eq!(
        history,
        vec![
            json!("lead"),
            json!("salesqualifiedlead"),
            json!("customer")
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn trace_prints_the_objects_properties_and_timeline() {
    let app = spawn_app().await;
    let body = fixture("hubspot/property-change-batch.json");
    assert_eq!(app.post_hubspot(&body).await.status(), 200);
    app.settle().await;
    let stopped = app.stop().await;

    let trace = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .args(["trace"])
            .args(args)
            .envs(stopped.db.env())
            .output()
            .unwrap()
    };
    let output = trace(&["hubspot:contact:501", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["object"]["type"], "contact");
    assert_eq!(json["object"]["id"], "501");
    assert_eq!(
        json["object"]["properties"]["lifecyclestage"],
        "salesqualifiedlead"
    );
    let kinds: Vec<&str> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["webhook", "event"], "received, then applied");
    assert!(json["timeline"][0]["at"].as_str().unwrap().ends_with('Z'));

    let text = trace(&["hubspot:deal:9001"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("dealstage") && text.contains("negotiation") && text.contains("timeline:"),
        "{text}"
    );

    let unknown = trace(&["hubspot:contact:404"]);
    assert_eq!(unknown.status.code(), Some(1));
    let bad = trace(&["not-an-object"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("<source>:<type>:<id>"));
}

#[test]
fn migrate_creates_the_schema_once_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("fresh.db"));
    let latest = db.backend().latest_version();
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .args(["migrate", "--store", &db.url()])
            // `--store` names the store; the environment adds only the rest of its
            // settings (a PostgreSQL schema).
            .envs(
                db.env()
                    .into_iter()
                    .filter(|(name, _)| *name != "FOLLOWTHROUGH__STORE__URL"),
            )
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let output = migrate();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr)
                .contains(&format!("schema at version {latest}"))
        );
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM schema_migrations"),
        latest,
        "each migration applied once"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM inbox"), 0, "tables exist");
}
