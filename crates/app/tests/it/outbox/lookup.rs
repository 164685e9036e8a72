//! `lookup` steps end to end: the engine queues the GET, the HTTP connector performs it
//! against a local server, and the outcome wakes the run: its value flows into a later
//! step, or the run fails with why the lookup was dead-lettered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use followthrough_core::{Clock as _, ObjectRef};
use followthrough_fakes::FakeOwner;
use followthrough_store::{JobStatus, OutboxEntry};
use serde_json::json;

use crate::engine::{assert_journal_has, contact};
use crate::helpers::{TestApp, property_change, spawn_app_with_rules};

/// An enrichment API: `/people/Jo` knows Jo (given the right key); anyone else is a 404.
async fn person(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("k1") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match name.as_str() {
        "Jo" => axum::Json(json!({"seniority": "exec", "title": "VP Sales"})).into_response(),
        _ => (StatusCode::NOT_FOUND, "no such person").into_response(),
    }
}

async fn enrichment_server() -> String {
    let app = Router::new().route("/people/{name}", get(person));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn rule(base: &str) -> (String, String) {
    let text = format!(
        r#"id: enrich-then-call
on: {{ object: contact, change: lifecyclestage, to: salesqualifiedlead }}
steps:
  - lookup:
      url: "{base}/people/{{{{ object.firstname }}}}"
      headers: {{ x-api-key: k1 }}
      into: person
  - if: vars.person.seniority == "exec"
    then:
      - create_task:
          subject: "Call the {{{{ vars.person.title }}}}"
          priority: HIGH
"#
    );
    ("enrich-then-call.yaml".to_owned(), text)
}

async fn app_with_lookups() -> TestApp {
    let base = enrichment_server().await;
    let app = spawn_app_with_rules(
        &[rule(&base)],
        "[connectors.http]\nallowed_hosts = [\"127.0.0.1\"]\n",
    )
    .await;
    app.hubspot.add_owner(FakeOwner {
        id: "882761034".into(),
        email: "sam@example.com".into(),
        first_name: "Sam".into(),
        last_name: "Field".into(),
        teams: vec![],
    });
    app
}

/// Contact `id`, named `firstname`, becomes an SQL.
async fn sql(app: &TestApp, id: u64, firstname: &str) {
    let props = BTreeMap::from([
        ("firstname".to_owned(), firstname.to_owned()),
        ("hubspot_owner_id".to_owned(), "882761034".to_owned()),
    ]);
    app.hubspot.set_object("contact", &id.to_string(), props);
    let at = app.clock.now().as_millis();
    let events = json!([
        property_change(1, "contact", id, at, "firstname", firstname),
        property_change(2, "contact", id, at, "hubspot_owner_id", "882761034"),
        property_change(3, "contact", id, at, "lifecyclestage", "salesqualifiedlead"),
    ]);
    assert_eq!(app.post_hubspot(&events.to_string()).await.status(), 200);
    app.settle().await;
}

/// The run of contact `id`: (status, reason), once it has ended.
async fn ended_run(app: &TestApp, object: &ObjectRef) -> (String, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run: (String, Option<String>) = app
            .db
            .rows(&format!(
                "SELECT status, reason FROM runs WHERE object = '{object}'"
            ))
            .pop()
            .expect("a run of the object");
        if !matches!(run.0.as_str(), "new" | "waiting") {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn jobs(app: &TestApp, object: &ObjectRef) -> Vec<OutboxEntry> {
    app.store.outbox_for(object).await.unwrap()
}

#[tokio::test]
async fn a_looked_up_value_reaches_the_next_steps_and_the_run_completes() {
    let app = app_with_lookups().await;
    sql(&app, 601, "Jo").await;

    assert_eq!(
        ended_run(&app, &contact(601)).await,
        ("completed".into(), None)
    );
    let jobs = jobs(&app, &contact(601)).await;
    let actions: Vec<&str> = jobs.iter().map(|j| j.job.action.as_str()).collect();
    assert_eq!(actions, vec!["lookup", "create_task"], "{jobs:#?}");
    let lookup = &jobs[0];
    assert_eq!(
        (lookup.status, &lookup.job.connector),
        (JobStatus::Done, &"http".to_owned())
    );
    assert_eq!(
        lookup.job.idempotency_key,
        format!("{}:steps[0]", lookup.job.run_id)
    );
    assert_eq!(lookup.job.params["into"], "person");
    assert_eq!(
        lookup.result,
        Some(json!({"value": {"seniority": "exec", "title": "VP Sales"}}))
    );
    assert_eq!(jobs[1].job.params["subject"], "Call the VP Sales");
    assert_journal_has(
        &app,
        &contact(601),
        &[
            ("run", "lookup"),
            ("attempt", "success"),
            ("timer", "fired"),
            ("run", "lookup_done"),
            ("action", "queued"),
            ("run", "completed"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_dead_lettered_lookup_fails_its_run_with_the_reason() {
    let app = app_with_lookups().await;
    sql(&app, 602, "Nobody").await;

    let (status, reason) = ended_run(&app, &contact(602)).await;
    assert_eq!(status, "failed");
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("lookup failed: ") && reason.contains("404"),
        "{reason}"
    );
    let jobs = jobs(&app, &contact(602)).await;
    assert_eq!(jobs.len(), 1, "nothing after the lookup: {jobs:#?}");
    assert_eq!((jobs[0].status, jobs[0].attempts), (JobStatus::Dead, 1));
    let letters = app.store.dead_letters(false).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].reason.kind.as_str(),
            letters[0].reason.last_status
        ),
        ("terminal", Some(404))
    );
    let journal = app.store.journal_for(&contact(602)).await.unwrap();
    let failed = journal
        .iter()
        .find(|e| e.detail["outcome"] == "failed")
        .expect("the run's end is journaled");
    assert!(failed.summary.contains(&reason), "{}", failed.summary);
    assert_journal_has(&app, &contact(602), &[("run", "lookup_failed")]).await;
}
