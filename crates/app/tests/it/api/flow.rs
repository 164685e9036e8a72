//! Real data through the API: contacts through the SQL rule, their refused tasks in the
//! dead letters, listed, shown and replayed through the API, and seen replayed in the
//! store and on the object's timeline; the trace with personal data redacted; runs,
//! rules and health.

use std::time::{Duration, Instant};

use followthrough_store::JobStatus;
use serde_json::{Value, json};

use super::{EMAIL, seeded};
use crate::engine::contact;
use crate::helpers::error_body;

#[tokio::test]
async fn a_dead_letter_is_listed_shown_and_replayed_through_the_api_and_then_delivered() {
    let seeded = seeded().await;
    let [first, second] = seeded.letters;

    let page = seeded.json("/api/v1/dead-letters").await;
    let listed: Vec<i64> = ids(&page["dead_letters"]);
    assert_eq!(listed, vec![first, second]);
    let item = &page["dead_letters"][0];
    assert_eq!(item["status"], "waiting");
    assert_eq!(item["kind"], "terminal");
    assert_eq!(item["last_status"], 400);
    assert_eq!(item["object"], "hubspot:contact:501");
    assert!(
        item.get("params").is_none(),
        "lists leave params out: {item}"
    );
    // One per page: the cursor walks them.
    let one = seeded.json("/api/v1/dead-letters?limit=1").await;
    assert_eq!(ids(&one["dead_letters"]), vec![first]);
    let next = one["next_after"].as_i64().expect("a next page");
    let rest = seeded
        .json(&format!("/api/v1/dead-letters?limit=1&after={next}"))
        .await;
    assert_eq!(ids(&rest["dead_letters"]), vec![second]);
    assert_eq!(rest["next_after"], Value::Null);

    let shown = seeded.json(&format!("/api/v1/dead-letters/{first}")).await;
    assert_eq!(shown["action"], "create_task");
    assert_eq!(
        shown["params"]["subject"], "Initial outreach call",
        "{shown}"
    );

    // HubSpot learns the contact; the letter is replayed through the API and delivered
    // by the running outbox, with no other nudge.
    seeded.app.hubspot.set_object(
        "contact",
        "501",
        [("firstname".to_owned(), "Jo".to_owned())].into(),
    );
    let response = seeded
        .post(&format!("/api/v1/dead-letters/{first}/replay"), None)
        .await;
    assert_eq!(response.status(), 200);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed["status"], "replayed");
    assert!(replayed["replayed_at_ms"].is_i64());
    let letter = seeded.app.store.dead_letter(first).await.unwrap().unwrap();
    assert!(letter.replayed_at.is_some(), "replayed in the store");
    wait_done(&seeded.app, 501).await;
    assert_eq!(seeded.app.hubspot.tasks().len(), 1);

    // Twice is a conflict; an unknown id is not found.
    let again = seeded
        .post(&format!("/api/v1/dead-letters/{first}/replay"), None)
        .await;
    assert_eq!(error_body(again).await, (409, "conflict".to_owned()));
    let unknown = seeded
        .post("/api/v1/dead-letters/999999/replay", None)
        .await;
    assert_eq!(error_body(unknown).await, (404, "not_found".to_owned()));

    // In bulk: what is done and what is skipped, and why.
    let bulk = seeded
        .post(
            "/api/v1/dead-letters/replay",
            Some(json!({ "ids": [second, first, 999999, second] })),
        )
        .await;
    assert_eq!(bulk.status(), 200);
    let outcome: Value = bulk.json().await.unwrap();
    assert_eq!(outcome["replayed"], json!([second]));
    assert_eq!(
        outcome["skipped"],
        json!([{ "id": first, "reason": "already_replayed" }, { "id": 999999, "reason": "not_found" }])
    );
    assert!(
        seeded
            .app
            .store
            .dead_letters(false)
            .await
            .unwrap()
            .is_empty()
    );
    let waiting = seeded.json("/api/v1/dead-letters").await;
    assert_eq!(waiting["dead_letters"], json!([]));
    let all = seeded
        .json("/api/v1/dead-letters?include_replayed=true")
        .await;
    assert_eq!(ids(&all["dead_letters"]), vec![first, second]);

    // The object's timeline says who replayed it: the token's id, never the token.
    let trace = seeded.json("/api/v1/objects/hubspot:contact:501").await;
    let row = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["detail"]["outcome"] == "replayed")
        .unwrap_or_else(|| panic!("no replay on the timeline: {trace:#}"));
    let summary = row["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("dead letter {first}"))
            && summary.contains("the admin API (token "),
        "{summary}"
    );
    assert!(!summary.contains(&seeded.token));
}

async fn wait_done(app: &crate::helpers::TestApp, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = app.store.outbox_for(&contact(id)).await.unwrap();
        if jobs
            .iter()
            .any(|job| job.job.action == "create_task" && job.status == JobStatus::Done)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after replay: {jobs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_lead_is_found_and_traced_with_personal_data_redacted() {
    let seeded = seeded().await;
    for q in [EMAIL, "501", "hubspot:contact:501"] {
        let found = seeded
            .json(&format!("/api/v1/objects?q={}", urlencode(q)))
            .await;
        assert_eq!(
            found["objects"][0]["ref"], "hubspot:contact:501",
            "q={q}: {found}"
        );
    }
    let nothing = seeded.json("/api/v1/objects?q=nobody%40example.com").await;
    assert_eq!(nothing["objects"], json!([]));

    let trace = seeded.json("/api/v1/objects/hubspot:contact:501").await;
    let object = &trace["object"];
    assert_eq!(object["ref"], "hubspot:contact:501");
    assert_eq!(object["properties"]["firstname"], "Jo");
    assert_eq!(object["properties"]["email"], "[redacted]", "{object}");
    let text = trace.to_string();
    assert!(!text.contains(EMAIL), "the email leaks: {text}");
    let kinds: Vec<&str> = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "webhook", "event", "rule", "run", "timer", "action", "attempt",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} on the timeline: {kinds:?}"
        );
    }
    let at_ms: Vec<i64> = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at_ms.is_sorted(), "oldest first");
    let upcoming = &trace["upcoming"][0];
    assert_eq!(upcoming["rule_id"], "lead-gone-cold");
    assert_eq!(upcoming["run_id"], seeded.waiting_run.as_str());
    assert!(upcoming["due_at_ms"].is_i64());

    let unknown = seeded.get("/api/v1/objects/hubspot:contact:404404").await;
    assert_eq!(error_body(unknown).await, (404, "not_found".to_owned()));
    let malformed = seeded.get("/api/v1/objects/not-a-reference").await;
    assert_eq!(error_body(malformed).await, (400, "bad_object".to_owned()));
}

fn urlencode(text: &str) -> String {
    text.replace('@', "%40").replace(':', "%3A")
}

#[tokio::test]
async fn runs_rules_and_health_report_what_the_engine_did() {
    let seeded = seeded().await;
    let waiting = seeded
        .json("/api/v1/runs?rule=lead-gone-cold&status=active")
        .await;
    assert_eq!(waiting["runs"][0]["run_id"], seeded.waiting_run.as_str());
    assert_eq!(waiting["runs"][0]["status"], "waiting");
    // Newest first, one per page, walked by `before`.
    let all = seeded.json("/api/v1/runs").await;
    let every: Vec<&str> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap())
        .collect();
    assert!(every.len() >= 3, "two SQL runs and a waiting one: {all}");
    let mut walked = Vec::new();
    let mut path = "/api/v1/runs?limit=1".to_owned();
    loop {
        let page = seeded.json(&path).await;
        walked.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|run| run["run_id"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_str() {
            Some(before) => path = format!("/api/v1/runs?limit=1&before={before}"),
            None => break,
        }
    }
    assert_eq!(walked, every);

    let run = seeded
        .json(&format!("/api/v1/runs/{}", seeded.waiting_run))
        .await;
    assert_eq!(run["run"]["rule_id"], "lead-gone-cold");
    assert_eq!(run["waiting"]["kind"], "timer");
    assert_eq!(run["timers"][0]["due_at_ms"], run["waiting"]["until_ms"]);
    let missing = seeded
        .get("/api/v1/runs/run_01NOSUCHRUN0000000000000000")
        .await;
    assert_eq!(error_body(missing).await, (404, "not_found".to_owned()));

    let rules = seeded.json("/api/v1/rules").await;
    assert_eq!(rules["count"], 2);
    assert_eq!(rules["generation"], 0);
    let cold = &rules["rules"][0];
    assert_eq!(cold["id"], "lead-gone-cold");
    assert_eq!(cold["file"], "lead-gone-cold.yaml");
    assert_eq!(cold["trigger"]["event"], "activity");
    assert_eq!(cold["active_runs"], json!({ "waiting": 1 }));
    let sql = &rules["rules"][1];
    assert_eq!(
        sql["trigger"]["summary"],
        "contact: lifecyclestage changes to salesqualifiedlead"
    );
    assert_eq!(sql["active_runs_total"], 0);

    let health = seeded.json("/api/v1/health").await;
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("2 dead letter")
    );
    assert_eq!(health["store"]["ready"], true);
    assert_eq!(health["work"]["dead_letters"], 2);
    assert_eq!(health["work"]["active_runs"], 1);
    assert_eq!(health["work"]["timers_pending"], 1);
    assert_eq!(health["rules"]["count"], 2);
    let circuits: Vec<&str> = health["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connector"].as_str().unwrap())
        .collect();
    assert!(circuits.contains(&"hubspot"), "{circuits:?}");
}
