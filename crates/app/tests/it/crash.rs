//! Crash safety with a real process: SIGKILL `followthrough serve` while several clients
//! send signed batches; after a restart, every batch that got a 200 is there exactly once.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, SystemClock};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::backend::{Backend, TestDb};
use crate::helpers::{SECRET, example_rule, property_change, signed_headers};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `followthrough serve` on `db`, with the rules in the folder named after it
/// (`NAME.rules`) and its pid file beside it.
pub(crate) fn start_server(db: &TestDb, port: u16) -> Child {
    start_server_with(db, port, &[])
}

/// `start_server` with more `FOLLOWTHROUGH__*` settings.
/// Settings for a server that is killed while it holds outbox jobs: a short lease, so
/// another start (or instance) retries them soon, and connector timeouts short enough
/// that the lease outlasts three of every connector's.
pub(crate) fn short_outbox_lease() -> [(&'static str, String); 5] {
    [
        ("FOLLOWTHROUGH__OUTBOX__LEASE_MS", "4000".into()),
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TIMEOUT_MS",
            "1000".into(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__SLACK__TIMEOUT_MS",
            "1000".into(),
        ),
        (
            "FOLLOWTHROUGH__CONNECTORS__PIPEDRIVE__TIMEOUT_MS",
            "1000".into(),
        ),
        ("FOLLOWTHROUGH__CONNECTORS__HTTP__TIMEOUT_MS", "1000".into()),
    ]
}

pub(crate) fn start_server_with(db: &TestDb, port: u16, env: &[(&str, String)]) -> Child {
    let rules = db.file().with_extension("rules");
    Command::new(env!("CARGO_BIN_EXE_followthrough"))
        .arg("serve")
        .envs(db.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // Absent unless a test creates it: no rules.
        .env("FOLLOWTHROUGH__RULES__DIR", rules.display().to_string())
        .env("FOLLOWTHROUGH__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FOLLOWTHROUGH__SERVER__PUBLIC_URL", "http://127.0.0.1:8080")
        .env(
            "FOLLOWTHROUGH__SERVER__PID_FILE",
            db.file().with_extension("pid").display().to_string(),
        )
        .env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", SECRET)
        .env("FOLLOWTHROUGH__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A webhook POST of `body` to the server on `port`, signed v3 now for the public URL
/// the servers are started with, as HubSpot would send it.
pub(crate) fn signed_webhook(
    client: &reqwest::Client,
    port: u16,
    body: &str,
) -> reqwest::RequestBuilder {
    let now = SystemClock.now().as_millis();
    let mut request = client
        .post(format!("http://127.0.0.1:{port}/webhooks/hubspot"))
        .body(body.to_owned());
    for (name, value) in signed_headers(SECRET, "http://127.0.0.1:8080/webhooks/hubspot", body, now)
    {
        request = request.header(name, value);
    }
    request
}

pub(crate) async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not become ready");
}

fn batch(client_no: u64, batch_no: u64) -> String {
    let now = SystemClock.now().as_millis();
    let events: Vec<Value> = (0..100)
        .map(|i| {
            let event_id = client_no * 1_000_000 + batch_no * 1_000 + i;
            property_change(
                event_id,
                "contact",
                client_no * 100 + i % 10,
                now,
                "hs_lead_status",
                &format!("b{batch_no}"),
            )
        })
        .collect();
    Value::from(events).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("crash.db"));
    let port = free_port();
    let mut server = start_server(&db, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_ready(&client, port).await;

    let acknowledged: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client_no in 1..=6u64 {
        let (client, acknowledged, stop) = (client.clone(), acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut batch_no = 0;
            while !stop.load(Ordering::Relaxed) {
                batch_no += 1;
                let body = batch(client_no, batch_no);
                match signed_webhook(&client, port, &body).send().await {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.lock().await.push((client_no, batch_no))
                    }
                    Ok(response) => panic!("unexpected status {}", response.status()),
                    Err(_) => {} // the server died under us: not acknowledged
                }
            }
        }));
    }
    // Let traffic flow, then kill without warning.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() >= 10,
        "too little traffic before the kill: {}",
        acknowledged.len()
    );

    // Restart on the same store: it must come up and still hold every acknowledged batch.
    let mut server = start_server(&db, port);
    wait_ready(&client, port).await;
    for (client_no, batch_no) in &acknowledged {
        let first = client_no * 1_000_000 + batch_no * 1_000;
        let present = db.count(&format!(
            "SELECT COUNT(*) FROM inbox WHERE dedup_key IN ({})",
            (first..first + 100)
                .map(|id| format!("'62515:2101:{id}'"))
                .collect::<Vec<_>>()
                .join(",")
        ));
        assert_eq!(
            present, 100,
            "batch {client_no}/{batch_no} was acknowledged but is incomplete"
        );
    }
    let duplicates = db.count("SELECT COUNT(*) - COUNT(DISTINCT dedup_key) FROM inbox");
    assert_eq!(duplicates, 0);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_closes_the_store() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("graceful.db"));
    let port = free_port();
    let mut server = start_server(&db, port);
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;

    // Send the headers and half the body, then signal.
    let body = batch(9, 1);
    let now = SystemClock.now().as_millis();
    let headers = signed_headers(SECRET, "http://127.0.0.1:8080/webhooks/hubspot", &body, now);
    let mut head = format!(
        "POST /webhooks/hubspot HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.try_wait().unwrap().is_none(),
        "the server must wait for the request in flight"
    );

    stream.write_all(rest).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stream);

    let exit = tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
    assert_eq!(db.count("SELECT COUNT(*) FROM inbox"), 100);
    // On SQLite, closed cleanly: the WAL was checkpointed into the database file and
    // truncated. (PostgreSQL has no file of ours to look at.)
    if db.backend() == Backend::Sqlite {
        let wal = std::fs::metadata(dir.path().join("graceful.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert_eq!(wal, 0, "WAL left with {wal} bytes");
    }
}

const FOLLOW_UP_RULE: &str = r#"id: demo-follow-up
description: A demo request gets a follow-up task a second later.
on: { object: contact, change: demo_requested, to: "yes" }
steps:
  - wait: 1s
  - create_task: { subject: "Follow up the demo request", owner: owner }
"#;

/// The 4 events of one contact, in order: owner, lead, demo request, SQL.
fn contact_events(contact: u64, base: i64) -> Vec<Value> {
    let steps = [
        ("hubspot_owner_id", "7"),
        ("lifecyclestage", "lead"),
        ("demo_requested", "yes"),
        ("lifecyclestage", "salesqualifiedlead"),
    ];
    steps
        .iter()
        .enumerate()
        .map(|(step, (name, value))| {
            let event_id = contact * 10 + step as u64;
            property_change(
                event_id,
                "contact",
                contact,
                base + step as i64,
                name,
                value,
            )
        })
        .collect()
}

/// A pseudo-random number of milliseconds in `range`, from the clock's nanoseconds.
fn jitter(range: std::ops::Range<u64>) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    range.start + nanos % (range.end - range.start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_points_loses_no_event_and_queues_no_action_twice() {
    const CONTACTS: u64 = 5_000; // x 4 events = 20,000
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("engine.db"));
    let rules = db.file().with_extension("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let (name, text) = example_rule("new-sql-gets-a-call.yaml");
    std::fs::write(rules.join(name), text).unwrap();
    std::fs::write(rules.join("demo-follow-up.yaml"), FOLLOW_UP_RULE).unwrap();

    let port = free_port();
    let server = Arc::new(Mutex::new(start_server(&db, port)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_ready(&client, port).await;

    // 200 webhooks of 25 contacts x 4 events, sent by 4 concurrent senders; each retries
    // a webhook until it gets a 200, as HubSpot does.
    let base = SystemClock.now().as_millis();
    let batches: Vec<String> = (0..CONTACTS / 25)
        .map(|b| {
            let events: Vec<Value> = (b * 25..(b + 1) * 25)
                .flat_map(|c| contact_events(1 + c, base))
                .collect();
            Value::from(events).to_string()
        })
        .collect();
    let batches = Arc::new(batches);
    let mut senders = Vec::new();
    for sender in 0..4usize {
        let (client, batches) = (client.clone(), Arc::clone(&batches));
        senders.push(tokio::spawn(async move {
            for body in batches.iter().skip(sender).step_by(4) {
                loop {
                    match signed_webhook(&client, port, body).send().await {
                        Ok(response) if response.status() == 200 => break,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    // Kill the server without warning at random moments, while it ingests, applies and
    // fires timers; restart it at once each time.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(jitter(200..1_200))).await;
        let mut running = server.lock().await;
        running.kill().unwrap(); // SIGKILL
        running.wait().unwrap();
        *running = start_server(&db, port);
        drop(running);
        wait_ready(&client, port).await;
    }
    for sender in senders {
        sender.await.unwrap();
    }

    // Everything applied, every timer fired, every action queued.
    let expected_actions = (CONTACTS * 2) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = db.count("SELECT COUNT(*) FROM inbox_pending");
        let timers = db.count("SELECT COUNT(*) FROM timers");
        let queued = db.count("SELECT COUNT(*) FROM outbox");
        if pending == 0 && timers == 0 && queued >= expected_actions {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done: {pending} events pending, {timers} timers, {queued} actions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = (CONTACTS * 4) as i64;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM inbox"),
        events,
        "each event stored once"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM inbox_applied"),
        events,
        "and applied once"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM outbox"), expected_actions);
    assert_eq!(
        db.count("SELECT COUNT(DISTINCT idempotency_key) FROM outbox"),
        expected_actions
    );
    // Exactly one of each task per contact: no action lost, none queued twice.
    for subject in ["Initial outreach call", "Follow up the demo request"] {
        // params_json is compact JSON as serde_json wrote it, on both backends.
        let per_contact = db.count(&format!(
            "SELECT COUNT(*) FROM (SELECT object FROM outbox
             WHERE params_json LIKE '%\"subject\":\"{subject}\"%'
             GROUP BY object HAVING COUNT(*) = 1) AS once"
        ));
        assert_eq!(per_contact, CONTACTS as i64, "{subject}");
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM runs WHERE status != 'completed'"),
        0,
        "every run completed"
    );
    let mut running = server.lock().await;
    running.kill().unwrap();
    running.wait().unwrap();
}
