//! Several `followthrough serve` processes on one PostgreSQL, working as one: a client
//! spreads signed events over all of them while one is SIGKILLed and restarted (or all
//! are restarted in turn); every event is applied once and in its object's order, and
//! every action reaches the fake HubSpot exactly once.
//!
//! These need PostgreSQL on 127.0.0.1:5432 (database `test`; `scripts/test.sh` starts
//! it); `FOLLOWTHROUGH_TEST_POSTGRES_URL` points them elsewhere. Each test works in a
//! schema of its own, dropped at the end.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, SystemClock};
use followthrough_fakes::FakeHubSpot;
use followthrough_fakes::FakeOwner;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

use crate::crash::{free_port, short_outbox_lease, signed_webhook, wait_ready};
use crate::helpers::{SECRET, example_rule, property_change};

const OWNER: &str = "7";
/// The unique task property the connector creates tasks through (batch upsert by it).
const KEY_PROPERTY: &str = "followthrough_key";

const LAST_STEP_RULE: &str = r#"id: last-step-follow-up
description: A contact at its last step gets a follow-up task a second later.
on: { object: contact, change: step, to: "20" }
steps:
  - wait: 1s
  - create_task: { subject: "Last step follow-up", owner: owner }
"#;

fn postgres_url() -> String {
    std::env::var("FOLLOWTHROUGH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of the test database that the instances share, dropped at the end.
struct SharedSchema {
    name: String,
}

impl SharedSchema {
    async fn new(label: &str) -> Self {
        let name = format!(
            "it_{label}_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut connection = PgConnection::connect(&postgres_url())
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is needed on 127.0.0.1:5432 (scripts/test.sh starts it): {e}")
            });
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut connection)
            .await
            .unwrap();
        Self { name }
    }

    async fn connection(&self) -> PgConnection {
        let mut connection = PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(&format!("SET search_path TO {}", self.name))
            .execute(&mut connection)
            .await
            .unwrap();
        connection
    }

    async fn count(&self, sql: &str) -> i64 {
        let mut connection = self.connection().await;
        let count = sqlx::query_scalar(sql)
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        // Closed at once: the instances' pools and parallel tests share the server's
        // connection limit.
        connection.close().await.unwrap();
        count
    }

    async fn drop_it(self) {
        let mut connection = PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut connection)
            .await
            .unwrap();
    }
}

/// What every instance shares: the schema, the rules and the fake CRM.
struct Cluster {
    schema: SharedSchema,
    rules: tempfile::TempDir,
    hubspot: FakeHubSpot,
    ports: Vec<u16>,
    instances: Vec<Mutex<Child>>,
    client: reqwest::Client,
}

impl Cluster {
    async fn start(label: &str, size: usize, contacts: u64) -> Self {
        let schema = SharedSchema::new(label).await;
        let rules = tempfile::tempdir().unwrap();
        let (name, text) = example_rule("new-sql-gets-a-call.yaml");
        std::fs::write(rules.path().join(name), text).unwrap();
        std::fs::write(rules.path().join("last-step.yaml"), LAST_STEP_RULE).unwrap();
        let hubspot = FakeHubSpot::start().await;
        hubspot.add_unique_property("task", KEY_PROPERTY);
        hubspot.add_owner(FakeOwner {
            id: OWNER.into(),
            email: "sam@example.com".into(),
            first_name: "Sam".into(),
            last_name: "Field".into(),
            teams: vec![],
        });
        for contact in 1..=contacts {
            hubspot.set_object("contact", &contact.to_string(), BTreeMap::new());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut cluster = Self {
            schema,
            rules,
            hubspot,
            ports: (0..size).map(|_| free_port()).collect(),
            instances: Vec::new(),
            client,
        };
        // All at once, as a deployment starts them: one migrates, the others wait for it.
        let started: Vec<Child> = (0..size).map(|i| cluster.spawn(i)).collect();
        cluster.instances = started.into_iter().map(Mutex::new).collect();
        for port in &cluster.ports {
            wait_ready(&cluster.client, *port).await;
        }
        cluster
    }

    fn spawn(&self, instance: usize) -> Child {
        let hubspot = "FOLLOWTHROUGH__CONNECTORS__HUBSPOT";
        let settings = [
            ("FOLLOWTHROUGH__STORE__URL", postgres_url()),
            ("FOLLOWTHROUGH__STORE__SCHEMA", self.schema.name.clone()),
            ("FOLLOWTHROUGH__STORE__MAX_CONNECTIONS", "6".into()),
            // A killed instance's share of the engine passes on after a second.
            ("FOLLOWTHROUGH__ENGINE__LEASE_MS", "1000".into()),
            (
                "FOLLOWTHROUGH__RULES__DIR",
                self.rules.path().display().to_string(),
            ),
            (
                "FOLLOWTHROUGH__SERVER__LISTEN",
                format!("127.0.0.1:{}", self.ports[instance]),
            ),
            (
                "FOLLOWTHROUGH__SERVER__PUBLIC_URL",
                "http://127.0.0.1:8080".into(),
            ),
            ("FOLLOWTHROUGH__SERVER__PID_FILE", String::new()),
            (
                "FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET",
                SECRET.into(),
            ),
            (&format!("{hubspot}__BASE_URL"), self.hubspot.base_url()),
            (&format!("{hubspot}__TOKEN"), self.hubspot.token()),
            (
                &format!("{hubspot}__IDEMPOTENCY_PROPERTY"),
                KEY_PROPERTY.into(),
            ),
            (&format!("{hubspot}__IDEMPOTENCY_UPSERT"), "true".into()),
            // HubSpot's real limit (100 per 10 s per instance) would make the test wait
            // minutes; claimed jobs would also outwait the short lease (`short_outbox_lease`).
            (&format!("{hubspot}__RATE_LIMIT"), "1000".into()),
            (&format!("{hubspot}__RATE_LIMIT_WINDOW_MS"), "1000".into()),
            ("FOLLOWTHROUGH__OUTBOX__POLL_MS", "100".into()),
            ("FOLLOWTHROUGH__LOG__LEVEL", "warn".into()),
        ];
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .arg("serve")
            .envs(
                settings
                    .iter()
                    .chain(&short_outbox_lease())
                    .map(|(k, v)| (k as &str, v.as_str())),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    /// SIGKILL: no chance to finish anything or give back its leases.
    async fn kill(&self, instance: usize) {
        let mut child = self.instances[instance].lock().await;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and wait for the clean exit.
    async fn stop(&self, instance: usize) {
        let mut child = self.instances[instance].lock().await;
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let exit = tokio::task::block_in_place(|| child.wait().unwrap());
        assert!(exit.success(), "instance {instance} exits cleanly: {exit}");
    }

    async fn restart(&self, instance: usize) {
        let fresh = self.spawn(instance);
        *self.instances[instance].lock().await = fresh;
        wait_ready(&self.client, self.ports[instance]).await;
    }

    async fn shut_down(mut self) {
        for instance in 0..self.instances.len() {
            self.kill(instance).await;
        }
        self.instances.clear();
        let schema = SharedSchema {
            name: std::mem::take(&mut self.schema.name),
        };
        schema.drop_it().await;
    }
}

/// A failed test must not leave its servers running (holding PostgreSQL connections).
impl Drop for Cluster {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            let child = instance.get_mut();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Contact `c`'s events in order: its owner, steps 2-9, the SQL stage, steps 11-20.
fn contact_event(contact: u64, step: u64, base: i64) -> Value {
    let (name, value) = match step {
        1 => ("hubspot_owner_id", OWNER.to_owned()),
        10 => ("lifecyclestage", "salesqualifiedlead".to_owned()),
        _ => ("step", step.to_string()),
    };
    property_change(
        contact * 100 + step,
        "contact",
        contact,
        base + step as i64,
        name,
        &value,
    )
}

const STEPS: u64 = 20;

/// Sends every contact's 20 events through the cluster: 20 senders, each owning a slice
/// of the contacts and sending their step n in one webhook, in step order. Each webhook
/// goes to the next instance in turn and, like HubSpot, is sent again (to the next
/// instance) until one answers 200. `sent` counts acknowledged webhooks.
async fn send_all(cluster: Arc<Cluster>, contacts: u64, sent: Arc<AtomicUsize>) {
    const SENDERS: u64 = 20;
    let base = SystemClock.now().as_millis();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (cluster, sent) = (Arc::clone(&cluster), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            let mine: Vec<u64> = (1..=contacts).filter(|c| c % SENDERS == sender).collect();
            let mut turn = sender as usize;
            for step in 1..=STEPS {
                let events: Vec<Value> =
                    mine.iter().map(|c| contact_event(*c, step, base)).collect();
                let body = Value::Array(events).to_string();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    turn += 1;
                    let port = cluster.ports[turn % cluster.ports.len()];
                    match signed_webhook(&cluster.client, port, &body).send().await {
                        Ok(response) if response.status() == 200 => break,
                        _ => {
                            assert!(Instant::now() < deadline, "no instance took the webhook");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits for every event applied, every timer fired and every action done.
async fn wait_until_settled(cluster: &Cluster, actions: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = cluster
            .schema
            .count("SELECT COUNT(*) FROM inbox_pending")
            .await;
        let timers = cluster.schema.count("SELECT COUNT(*) FROM timers").await;
        let done = cluster
            .schema
            .count("SELECT COUNT(*) FROM outbox WHERE status = 'done'")
            .await;
        if pending == 0 && timers == 0 && done >= actions {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {pending} events pending, {timers} timers, {done} of {actions} actions done"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event stored and applied once, each contact's steps applied in order, and
/// each of the two tasks per contact created exactly once in the fake HubSpot.
async fn assert_all_once_and_in_order(cluster: &Cluster, contacts: u64) {
    let events = (contacts * STEPS) as i64;
    let schema = &cluster.schema;
    assert_eq!(
        schema.count("SELECT COUNT(*) FROM inbox").await,
        events,
        "each event stored once"
    );
    assert_eq!(
        schema.count("SELECT COUNT(*) FROM inbox_applied").await,
        events,
        "each event applied"
    );

    // The history holds each write once, in the order it was applied.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT object, value_json FROM property_history WHERE name = 'step' ORDER BY object, seq",
    )
    .fetch_all(&mut schema.connection().await)
    .await
    .unwrap();
    let mut applied: HashMap<String, Vec<u64>> = HashMap::new();
    for (object, value) in rows {
        let value: String = serde_json::from_str(&value).unwrap();
        applied
            .entry(object)
            .or_default()
            .push(value.parse().unwrap());
    }
    let in_order: Vec<u64> = (2..=STEPS).filter(|s| *s != 10).collect();
    assert_eq!(applied.len(), contacts as usize);
    for (object, steps) in &applied {
        assert_eq!(
            steps, &in_order,
            "{object}: steps applied out of order or twice"
        );
    }

    let actions = (contacts * 2) as i64;
    assert_eq!(schema.count("SELECT COUNT(*) FROM outbox").await, actions);
    assert_eq!(
        schema
            .count("SELECT COUNT(*) FROM outbox WHERE status = 'done'")
            .await,
        actions
    );
    assert_eq!(
        schema
            .count("SELECT COUNT(*) FROM runs WHERE status != 'completed'")
            .await,
        0,
        "every run completed"
    );
    let tasks = cluster.hubspot.tasks();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for task in &tasks {
        let key = task
            .properties
            .get(KEY_PROPERTY)
            .cloned()
            .unwrap_or_default();
        *by_key.entry(key).or_default() += 1;
        let subject = task
            .properties
            .get("hs_task_subject")
            .cloned()
            .unwrap_or_default();
        *by_subject.entry(subject).or_default() += 1;
    }
    assert_eq!(tasks.len() as i64, actions, "{by_subject:?}");
    assert!(
        by_key.values().all(|n| *n == 1),
        "a task created twice: {:?}",
        by_key
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    for subject in ["Initial outreach call", "Last step follow-up"] {
        assert_eq!(
            by_subject.get(subject),
            Some(&(contacts as usize)),
            "{subject}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_with_one_killed_midway_apply_each_event_once_in_order() {
    const CONTACTS: u64 = 1_000; // x 20 events = 20,000
    let cluster = Arc::new(Cluster::start("kill", 3, CONTACTS).await);
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(send_all(Arc::clone(&cluster), CONTACTS, Arc::clone(&sent)));

    // Midway (400 webhooks in all), instance 1 dies without warning: what it had
    // accepted but not applied, the timers of its partitions and the calls it had
    // leased pass to the other two; then it comes back and takes its share again.
    while sent.load(Ordering::Relaxed) < 160 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill(1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cluster.restart(1).await;
    sending.await.unwrap();

    wait_until_settled(&cluster, (CONTACTS * 2) as i64).await;
    assert_all_once_and_in_order(&cluster, CONTACTS).await;
    Arc::into_inner(cluster).unwrap().shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_all_three_during_traffic_loses_nothing() {
    const CONTACTS: u64 = 500; // x 20 events = 10,000
    let cluster = Arc::new(Cluster::start("rolling", 3, CONTACTS).await);
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(send_all(Arc::clone(&cluster), CONTACTS, Arc::clone(&sent)));

    // One at a time, as a deployment does: stop (SIGTERM), start, wait until ready.
    for instance in 0..3 {
        while sent.load(Ordering::Relaxed) < 60 + instance * 80 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.stop(instance).await;
        cluster.restart(instance).await;
    }
    sending.await.unwrap();

    wait_until_settled(&cluster, (CONTACTS * 2) as i64).await;
    assert_all_once_and_in_order(&cluster, CONTACTS).await;

    // The operator's commands read the shared store as `serve` does.
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .args(args)
            .env("FOLLOWTHROUGH__STORE__URL", postgres_url())
            .env("FOLLOWTHROUGH__STORE__SCHEMA", &cluster.schema.name)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (_, migrated) = cli(&["migrate"]);
    assert!(migrated.contains("schema at version"), "{migrated}");
    assert!(
        !migrated.contains("postgres@"),
        "no user or password shown: {migrated}"
    );
    let (trace, _) = cli(&["trace", "hubspot:contact:7"]);
    assert_eq!(
        trace.matches("action create_task done").count(),
        2,
        "both tasks in the lead's trace: {trace}"
    );
    let (letters, _) = cli(&["dlq", "list"]);
    assert!(!letters.contains("error"), "{letters}");
    Arc::into_inner(cluster).unwrap().shut_down().await;
}
