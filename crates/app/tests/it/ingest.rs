//! `POST /webhooks/hubspot` from the outside: what is accepted, what is refused, and that
//! a refusal stores nothing.

use followthrough_core::Clock as _;
use serde_json::{Value, json};

use crate::helpers::{
    SECRET, error_body, fixture, property_change, signed_headers, spawn_app, spawn_app_with,
};

const URI: &str = "http://127.0.0.1:8080/webhooks/hubspot";

#[tokio::test]
async fn a_signed_batch_is_stored_once_and_a_redelivery_adds_nothing() {
    let app = spawn_app().await;
    let body = fixture("hubspot/property-change-batch.json");

    let response = app.post_hubspot(&body).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox"), 3);

    let again: Value = app.post_hubspot(&body).await.json().await.unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbox"),
        3,
        "a redelivery adds no row"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal WHERE kind = 'webhook' AND detail_json LIKE '%\"duplicates\":3%'"),
        1,
        "the redelivery is journaled with its duplicate count"
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_stale_and_missing_signatures_get_401_and_store_nothing() {
    let app = spawn_app().await;
    let body = fixture("hubspot/property-change-batch.json");
    let now = app.clock.now().as_millis();

    let forged = signed_headers("not-the-secret", URI, &body, now);
    let stale = signed_headers(SECRET, URI, &body, now - 301_000);
    let wrong_uri = signed_headers(SECRET, "http://evil.example/webhooks/hubspot", &body, now);
    let missing = vec![("content-type".to_owned(), "application/json".to_owned())];
    for (headers, code) in [
        (forged, "signature_mismatch"),
        (stale, "signature_stale"),
        (wrong_uri, "signature_mismatch"),
        (missing, "signature_missing"),
    ] {
        let response = app.post_with(&body, &headers).await;
        assert_eq!(error_body(response).await, (401, code.to_owned()));
    }
    // v1 is not accepted unless configured.
    let v1 = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-hubspot-signature".to_owned(), "00".repeat(32)),
        ("x-hubspot-signature-version".to_owned(), "v1".to_owned()),
    ];
    assert_eq!(
        error_body(app.post_with(&body, &v1).await).await,
        (401, "signature_version_not_accepted".into())
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM inbox"), 0, "nothing stored");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal WHERE kind = 'webhook' AND detail_json LIKE '%\"outcome\":\"rejected\"%'"),
        5,
        "each rejection is journaled"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_413_415_with_json_errors() {
    let app = spawn_app_with("[server]\nmax_body_bytes = 4096\n").await;
    let now = app.clock.now().as_millis();

    let not_json = "[{\"eventId\": 1,";
    let response = app
        .post_with(not_json, &signed_headers(SECRET, URI, not_json, now))
        .await;
    assert_eq!(error_body(response).await, (400, "invalid_payload".into()));

    let not_array = "{\"eventId\": 1}";
    let response = app
        .post_with(not_array, &signed_headers(SECRET, URI, not_array, now))
        .await;
    assert_eq!(error_body(response).await, (400, "invalid_payload".into()));

    let missing_field = json!([{"eventId": 1, "subscriptionId": 2}]).to_string();
    let response = app
        .post_with(
            &missing_field,
            &signed_headers(SECRET, URI, &missing_field, now),
        )
        .await;
    let text = response.text().await.unwrap();
    assert!(
        text.contains("event 0") && text.contains("portalId"),
        "says which event and field: {text}"
    );

    let events: Vec<Value> = (0..100)
        .map(|i| property_change(i, "contact", i, now, "firstname", "x"))
        .collect();
    let oversize = Value::from(events).to_string();
    assert!(oversize.len() > 4096);
    let response = app
        .post_with(&oversize, &signed_headers(SECRET, URI, &oversize, now))
        .await;
    assert_eq!(
        error_body(response).await,
        (413, "payload_too_large".into())
    );

    let body = fixture("hubspot/property-change-batch.json");
    let mut headers = signed_headers(SECRET, URI, &body, now);
    headers[0].1 = "text/plain".into();
    assert_eq!(
        error_body(app.post_with(&body, &headers).await).await,
        (415, "unsupported_media_type".into())
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM inbox"), 0, "nothing stored");
    let response = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_body(response).await, (404, "not_found".into()));
    let response = app
        .client
        .get(app.url("/webhooks/hubspot"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_body(response).await,
        (405, "method_not_allowed".into())
    );
    app.stop().await;
}

#[tokio::test]
async fn oversize_body_without_content_length_is_cut_off_at_the_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with("[server]\nmax_body_bytes = 4096\n").await;
    // A chunked body declares no length; the limit must hold while reading.
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = "POST /webhooks/hubspot HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..8 {
        let chunk = "x".repeat(1024);
        if stream
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break; // the server may answer and close before we finish
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn without_a_configured_secret_every_webhook_is_refused() {
    let app = spawn_app_with("[sources.hubspot]\nclient_secret = \"\"\n").await;
    let body = fixture("hubspot/property-change-batch.json");
    // Signed with the empty key, which anyone could compute.
    let headers = signed_headers("", URI, &body, app.clock.now().as_millis());
    assert_eq!(
        error_body(app.post_with(&body, &headers).await).await,
        (401, "source_not_configured".into())
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox"), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with("[server]\nheader_read_timeout_ms = 300\n").await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // Headers started but never ended, as a slow-loris client does.
    stream
        .write_all(b"POST /webhooks/hubspot HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the server must close the connection, not wait forever");
    // An error is a reset by the server: also a disconnect.
    if let Ok(n) = read {
        let answer = String::from_utf8_lossy(&buffer[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    app.stop().await;
}
