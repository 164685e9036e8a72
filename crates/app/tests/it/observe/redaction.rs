//! A canary email address and phone number sent in webhooks reach the store and the CRM
//! (where they belong) but never the journal or the logs of the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use followthrough_core::{Clock as _, SystemClock};
use followthrough_fakes::FakeHubSpot;
use serde_json::json;

use crate::backend::TestDb;
use crate::crash::{free_port, wait_ready};
use crate::engine::owner;
use crate::helpers::{SECRET, example_rule, property_change, signed_headers};

const CANARY_EMAIL: &str = "canary.7f3a@leak-test.example";
const CANARY_PHONE: &str = "+1 (555) 013-7788";
/// The phone number as HubSpot may store it, and the digits that must not appear either.
const CANARY_PHONE_E164: &str = "+15550137788";
const CANARY_DIGITS: &str = "5550137788";

#[tokio::test]
async fn canary_email_and_phone_reach_neither_the_journal_nor_the_logs() {
    let hubspot = FakeHubSpot::start().await;
    hubspot.add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    hubspot.set_object(
        "contact",
        "801",
        [("firstname".to_owned(), "Ada".to_owned())].into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("followthrough.db"));
    let rules = db.file().with_extension("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let (name, text) = example_rule("new-sql-gets-a-call.yaml");
    std::fs::write(rules.join(name), text).unwrap();
    let log_path = dir.path().join("server.log");
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_followthrough"))
        .arg("serve")
        .env_remove("RUST_LOG")
        .env("FOLLOWTHROUGH__RULES__DIR", rules.display().to_string())
        .env("FOLLOWTHROUGH__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FOLLOWTHROUGH__SERVER__PUBLIC_URL", "http://127.0.0.1:8080")
        .env("FOLLOWTHROUGH__SERVER__PID_FILE", "")
        .envs(db.env())
        .env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", SECRET)
        .env(
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__BASE_URL",
            hubspot.base_url(),
        )
        .env("FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TOKEN", hubspot.token())
        .env("FOLLOWTHROUGH__LOG__FORMAT", "json")
        // Everything followthrough logs, down to debug.
        .env("FOLLOWTHROUGH__LOG__LEVEL", "followthrough=trace,info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;

    let post = |body: String| {
        let client = client.clone();
        async move {
            let now = SystemClock.now().as_millis();
            let headers =
                signed_headers(SECRET, "http://127.0.0.1:8080/webhooks/hubspot", &body, now);
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/webhooks/hubspot"))
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    let now = SystemClock.now().as_millis();
    let note = format!("Asked to be called on {CANARY_PHONE} or written to at {CANARY_EMAIL}.");
    let changes = [
        ("firstname", "Ada"),
        ("email", CANARY_EMAIL),
        ("phone", CANARY_PHONE_E164),
        ("message", note.as_str()),
        ("hubspot_owner_id", "7"),
        ("lifecyclestage", "salesqualifiedlead"),
    ];
    let events: Vec<_> = changes
        .iter()
        .enumerate()
        .map(|(i, (property, value))| {
            property_change(
                9000 + i as u64,
                "contact",
                801,
                now + i as i64,
                property,
                value,
            )
        })
        .collect();
    let accepted = post(json!(events).to_string()).await;
    assert_eq!(accepted.status(), 200);
    // A malformed delivery whose error quotes the bad value back.
    let mut bad = property_change(9100, "contact", 802, now, "email", "x");
    bad["occurredAt"] = json!(CANARY_EMAIL);
    let rejected = post(json!([bad]).to_string()).await;
    assert_eq!(rejected.status(), 400);
    let answer = rejected.text().await.unwrap();
    assert!(
        answer.contains("objectId") || answer.contains("invalid"),
        "{answer}"
    );

    // The rule's task (its body quotes the email) reaches the CRM.
    let mut created = false;
    for _ in 0..300 {
        if !hubspot.tasks().is_empty() {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        created,
        "the call task was created; server log:\n{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    let task = &hubspot.tasks()[0];
    let body = task
        .properties
        .get("hs_task_body")
        .cloned()
        .unwrap_or_default();
    assert!(
        body.contains(CANARY_EMAIL),
        "actions keep the data they need: {body}"
    );
    // Let the outbox journal the attempt, then stop the server so every log line is out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    server.wait().unwrap();

    // The store has the data (so the test could fail), the journal does not.
    assert!(
        db.count(&format!(
            "SELECT COUNT(*) FROM inbox WHERE event_json LIKE '%{CANARY_EMAIL}%'"
        )) > 0
    );
    let journal_rows = db.count("SELECT COUNT(*) FROM journal");
    assert!(journal_rows >= 6, "the journal was written: {journal_rows}");
    let journal: Vec<String> = db
        .rows::<(String,)>("SELECT summary || ' ' || detail_json FROM journal")
        .into_iter()
        .map(|(row,)| row)
        .collect();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("hubspot webhook rejected"),
        "logs were captured:\n{logs}"
    );
    assert!(
        journal.iter().any(|row| row.contains("[email]")),
        "the rejected webhook's quoted value was scrubbed in the journal"
    );
    // The lead's trace (properties and timeline) shows neither either.
    let trace = Command::new(env!("CARGO_BIN_EXE_followthrough"))
        .args(["trace", "hubspot:contact:801", "--json"])
        .envs(db.env())
        .output()
        .unwrap();
    assert!(
        trace.status.success(),
        "{}",
        String::from_utf8_lossy(&trace.stderr)
    );
    let trace = String::from_utf8(trace.stdout).unwrap();
    assert!(
        trace.contains("[redacted]") && trace.contains("[phone]"),
        "{trace}"
    );
    // Secrets neither: the webhook signing secret and the CRM token.
    let token = hubspot.token();
    for secret in [SECRET, token.as_str()] {
        assert!(!logs.contains(secret), "a secret in the logs");
        assert!(
            journal.iter().all(|row| !row.contains(secret)),
            "a secret in the journal"
        );
    }
    for canary in [
        CANARY_EMAIL,
        CANARY_PHONE,
        CANARY_PHONE_E164,
        CANARY_DIGITS,
        "leak-test.example",
    ] {
        for row in &journal {
            assert!(!row.contains(canary), "{canary} in the journal: {row}");
        }
        assert!(!logs.contains(canary), "{canary} in the logs:\n{logs}");
        assert!(!trace.contains(canary), "{canary} in the trace:\n{trace}");
    }
}
