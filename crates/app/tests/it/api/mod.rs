//! The admin API under `/api/v1`, against the real server: bearer auth on every route,
//! the OpenAPI document checked against the official 3.1 schema and against what each
//! route really answers, and real data (a rule run, dead letters, a trace) read and
//! replayed through it.

mod auth;
mod errors;
mod flow;
mod openapi;

use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, ObjectRef};
use followthrough_fakes::FakeOwner;
use serde_json::{Value, json};

use crate::engine::{contact, set};
use crate::helpers::{TestApp, example_rule, property_change, spawn_app_with_rules};

/// A server with the SQL and lead-gone-cold rules, an admin token, and two contacts
/// (501, 502) that became SQLs while HubSpot did not know them: each one's task was
/// refused, so each left a dead letter. 501 also had an activity, so a lead-gone-cold
/// run waits 14 days for it.
pub struct Seeded {
    pub app: TestApp,
    pub token: String,
    /// The dead letters of 501's and 502's tasks.
    pub letters: [i64; 2],
    /// 501's lead-gone-cold run, waiting.
    pub waiting_run: String,
}

pub const EMAIL: &str = "jo@example.com";

pub fn with_token(extra: &str) -> (String, String) {
    let (token, digest) = followthrough::auth::new_token();
    (token, format!("[api]\ntokens = [\"{digest}\"]\n{extra}"))
}

pub async fn seeded() -> Seeded {
    let (token, config) = with_token("");
    let app = spawn_app_with_rules(
        &[
            example_rule("new-sql-gets-a-call.yaml"),
            example_rule("lead-gone-cold.yaml"),
        ],
        &config,
    )
    .await;
    app.hubspot.add_owner(FakeOwner {
        id: "882761034".into(),
        email: "sam@example.com".into(),
        first_name: "Sam".into(),
        last_name: "Field".into(),
        teams: vec![],
    });
    let mut id = 0;
    for (object_id, email) in [(501, EMAIL), (502, "kim@example.com")] {
        set(
            &app,
            &mut id,
            "contact",
            object_id,
            &[
                ("firstname", "Jo"),
                ("email", email),
                ("hubspot_owner_id", "882761034"),
                ("lifecyclestage", "lead"),
            ],
        )
        .await;
    }
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    // One contact after the other, so 501's letter comes first in the list (by id): the
    // outbox works both tasks at once, and which refusal lands first would be a race.
    let events_501 = json!([
        property_change(
            100,
            "contact",
            501,
            at,
            "lifecyclestage",
            "salesqualifiedlead"
        ),
        property_change(
            101,
            "contact",
            501,
            at,
            "notes_last_contacted",
            &at.to_string()
        ),
    ]);
    let events_502 = json!([property_change(
        102,
        "contact",
        502,
        at,
        "lifecyclestage",
        "salesqualifiedlead"
    )]);
    let mut letters = [0; 2];
    for (letter, (object_id, events)) in letters
        .iter_mut()
        .zip([(501, events_501), (502, events_502)])
    {
        assert_eq!(app.post_hubspot(&events.to_string()).await.status(), 200);
        app.settle().await;
        *letter = dead_letter_of(&app, &contact(object_id)).await;
    }
    let waiting_run = app
        .store
        .runs_for(&contact(501))
        .await
        .unwrap()
        .into_iter()
        .find(|run| run.rule_id == "lead-gone-cold" && run.status == "waiting")
        .expect("a waiting lead-gone-cold run")
        .run_id
        .to_string();
    Seeded {
        app,
        token,
        letters,
        waiting_run,
    }
}

/// Waits for the object's task to land in the dead letters; its id.
async fn dead_letter_of(app: &TestApp, object: &ObjectRef) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let letters = app.store.dead_letters(false).await.unwrap();
        if let Some(letter) = letters.iter().find(|letter| &letter.job.object == object) {
            return letter.id;
        }
        assert!(Instant::now() < deadline, "no dead letter for {object}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Seeded {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// GETs `path` and returns its JSON body, asserting a 200.
    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}
