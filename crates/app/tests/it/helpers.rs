//! Spawning the app and talking to it like HubSpot does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use followthrough::config::Config;
use followthrough::ingest::hubspot::signature::{SignedParts, sign_v3};
use followthrough::rules_handle::RulesHandle;
use followthrough::server::{self, RunningServer, Services};
use followthrough_connectors::CrmReader;
use followthrough_connectors::hubspot::HubSpotReader;
use followthrough_core::{Clock, ManualClock, SystemClock};
use followthrough_fakes::{FakeHubSpot, FakeSlack};
use followthrough_store::Store;
use serde_json::{Value, json};

use crate::backend::TestDb;

pub const SECRET: &str = "test-client-secret";

pub struct TestApp {
    pub base_url: String,
    /// The store, on the backend the tests run on (see `crate::backend`).
    pub db: TestDb,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub client: reqwest::Client,
    /// The fake HubSpot API the engine reads owners and linked objects from.
    pub hubspot: FakeHubSpot,
    /// The fake Slack API the outbox posts messages to.
    pub slack: FakeSlack,
    /// The rules the server runs; a test may edit the files and `reload()`.
    pub rules: Arc<RulesHandle>,
    pub rules_dir: PathBuf,
    extra: String,
    running: RunningServer,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Spawns the server in this process with the defaults, a temporary store, the test
/// secret, no rules, and `extra` TOML merged over them.
pub async fn spawn_app_with(extra: &str) -> TestApp {
    spawn_app_with_rules(&[], extra).await
}

/// The text of a rule file in `examples/rules/`.
pub fn example_rule(file: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/rules")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (file.to_owned(), text)
}

/// Spawns the server with these rule files (name, text), a fake HubSpot API behind the
/// CRM connector, and a manual clock.
pub async fn spawn_app_with_rules(rules: &[(String, String)], extra: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for (name, text) in rules {
        std::fs::write(rules_dir.join(name), text).unwrap();
    }
    let hubspot = FakeHubSpot::start().await;
    let slack = FakeSlack::start().await;
    let clock = ManualClock::new(SystemClock.now());
    let db = TestDb::new(dir.path().join("followthrough.db"));
    spawn_in(dir, db, hubspot, slack, clock, extra).await
}

/// Spawns the server on `db` and the rules already in `dir`.
async fn spawn_in(
    dir: tempfile::TempDir,
    db: TestDb,
    hubspot: FakeHubSpot,
    slack: FakeSlack,
    clock: ManualClock,
    extra: &str,
) -> TestApp {
    let rules_dir = dir.path().join("rules");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npid_file = \"\"\n{}[rules]\ndir = \"{}\"\n[sources.hubspot]\nclient_secret = \"{SECRET}\"\n[connectors.hubspot]\nbase_url = \"{}\"\ntoken = \"{}\"\n[connectors.slack]\nbase_url = \"{}\"\ntoken = \"{}\"\n",
        db.config_toml(),
        rules_dir.display(),
        hubspot.base_url(),
        hubspot.token(),
        slack.base_url(),
        slack.token(),
    );
    let config = Config::from_defaults_and(&[&toml, extra])
        .unwrap()
        .validate()
        .unwrap();
    let store = db.open(true).await;
    let rules =
        Arc::new(RulesHandle::load(&config.config.rules.dir).expect("test rules are valid"));
    let crm = HubSpotReader::new(
        &hubspot.base_url(),
        hubspot.token().into(),
        Duration::from_secs(5),
    )
    .unwrap();
    let running = server::spawn(
        config.clone(),
        Services {
            store: Arc::clone(&store),
            clock: Arc::new(clock.clone()),
            rules: Arc::clone(&rules),
            crm: Some(Arc::new(crm) as Arc<dyn CrmReader>),
        },
    )
    .await
    .unwrap();
    let base_url = format!("http://{}", running.addr);
    TestApp {
        base_url,
        db,
        store,
        clock,
        client: reqwest::Client::new(),
        hubspot,
        slack,
        rules,
        rules_dir,
        extra: extra.to_owned(),
        running,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs `body` to the HubSpot webhook, signed v3 for the configured public URL
    /// (the default, `http://127.0.0.1:8080`, not the bound port: as behind a proxy).
    pub async fn post_hubspot(&self, body: &str) -> reqwest::Response {
        let headers = signed_headers(
            SECRET,
            "http://127.0.0.1:8080/webhooks/hubspot",
            body,
            self.clock.now().as_millis(),
        );
        self.post_with(body, &headers).await
    }

    pub async fn post_with(&self, body: &str, headers: &[(String, String)]) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/webhooks/hubspot"))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }

    /// Waits until the engine has applied every accepted event and fired every due timer.
    pub async fn settle(&self) {
        for _ in 0..1000 {
            let pending = self.store.pending_count().await.unwrap();
            let due = self.store.due_timers(self.clock.now(), 1).await.unwrap();
            if pending == 0 && due.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("events were not applied (or timers not fired) within 10 s");
    }

    /// Moves the manual clock forward and waits for the timers that came due.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.settle().await;
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db.count(sql)
    }

    /// Shuts down gracefully; what it returns keeps the store alive.
    pub async fn stop(self) -> Stopped {
        self.running.shutdown.cancel();
        self.running.handle.await.unwrap().unwrap();
        Stopped {
            db: self.db,
            _dir: self._dir,
        }
    }

    /// Stops the server, lets `down` pass on the clock, and starts it again on the same
    /// store, rules and fake CRM (with `extra` config in place of the first one's).
    pub async fn restart_after(self, down: Duration, extra: Option<&str>) -> TestApp {
        let TestApp {
            db,
            clock,
            hubspot,
            slack,
            extra: first_extra,
            running,
            _dir: dir,
            ..
        } = self;
        running.shutdown.cancel();
        running.handle.await.unwrap().unwrap();
        clock.advance(down);
        let extra = extra.unwrap_or(&first_extra);
        spawn_in(dir, db, hubspot, slack, clock, extra).await
    }
}

/// A stopped app's store, kept until this is dropped (with the folder of its rules).
pub struct Stopped {
    pub db: TestDb,
    _dir: tempfile::TempDir,
}

/// The headers HubSpot sends with a v3 signature.
pub fn signed_headers(
    secret: &str,
    uri: &str,
    body: &str,
    timestamp_ms: i64,
) -> Vec<(String, String)> {
    let timestamp = timestamp_ms.to_string();
    let signature = sign_v3(
        secret.as_bytes(),
        SignedParts {
            method: "POST",
            uri,
            body: body.as_bytes(),
        },
        &timestamp,
    );
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-hubspot-signature-v3".into(), signature),
        ("x-hubspot-request-timestamp".into(), timestamp),
    ]
}

/// One HubSpot property-change event.
pub fn property_change(
    event_id: u64,
    object_type: &str,
    object_id: u64,
    at: i64,
    property: &str,
    value: &str,
) -> Value {
    json!({
        "eventId": event_id, "subscriptionId": 2101, "portalId": 62515, "appId": 54321,
        "occurredAt": at, "subscriptionType": format!("{object_type}.propertyChange"),
        "attemptNumber": 0, "objectId": object_id, "propertyName": property,
        "propertyValue": value, "changeSource": "CRM_UI", "sourceId": "userId:882761034"
    })
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub async fn error_body(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("every error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {body}"
    );
    (status, code)
}
