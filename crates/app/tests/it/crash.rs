//! Crash safety with a real process: SIGKILL `followthrough serve` while several clients
//! send signed batches; after a restart, every batch that got a 200 is there exactly once.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use followthrough_core::{Clock as _, SystemClock};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::helpers::{SECRET, count, property_change, signed_headers};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(db: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_followthrough"))
        .arg("serve")
        .env("FOLLOWTHROUGH__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FOLLOWTHROUGH__SERVER__PUBLIC_URL", "http://127.0.0.1:8080")
        .env(
            "FOLLOWTHROUGH__STORE__URL",
            format!("sqlite://{}", db.display()),
        )
        .env(
            "FOLLOWTHROUGH__SERVER__PID_FILE",
            db.with_extension("pid").display().to_string(),
        )
        .env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", SECRET)
        .env("FOLLOWTHROUGH__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
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
    let db = dir.path().join("crash.db");
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
                let now = SystemClock.now().as_millis();
                let mut request = client
                    .post(format!("http://127.0.0.1:{port}/webhooks/hubspot"))
                    .body(body.clone());
                for (name, value) in
                    signed_headers(SECRET, "http://127.0.0.1:8080/webhooks/hubspot", &body, now)
                {
                    request = request.header(name, value);
                }
                match request.send().await {
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

    // Restart on the same file: it must come up and still hold every acknowledged batch.
    let mut server = start_server(&db, port);
    wait_ready(&client, port).await;
    for (client_no, batch_no) in &acknowledged {
        let first = client_no * 1_000_000 + batch_no * 1_000;
        let present = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM inbox WHERE dedup_key IN ({})",
                (first..first + 100)
                    .map(|id| format!("'62515:2101:{id}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        assert_eq!(
            present, 100,
            "batch {client_no}/{batch_no} was acknowledged but is incomplete"
        );
    }
    let duplicates = count(
        &db,
        "SELECT COUNT(*) - COUNT(DISTINCT dedup_key) FROM inbox",
    );
    assert_eq!(duplicates, 0);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_closes_the_store() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("graceful.db");
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
    assert_eq!(count(&db, "SELECT COUNT(*) FROM inbox"), 100);
    // Closed cleanly: the WAL was checkpointed into the database file and truncated.
    let wal = std::fs::metadata(dir.path().join("graceful.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "WAL left with {wal} bytes");
}
