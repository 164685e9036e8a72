//! `HttpConnector` against a small local server: request shapes, classification, and
//! the SSRF guard (IP literals, names that resolve inward, redirects).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use followthrough_core::ObjectRef;
use serde_json::{Value as Json, json};

use super::{HttpConfig, HttpConnector, LookupFailure};
use crate::{ActionJob, Connector, Outcome, Repeat};

/// What the local server saw: (method, path, headers, body).
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap, String)>>>;

struct Server {
    base: String,
    port: u16,
    seen: Seen,
}

impl Server {
    async fn start() -> Self {
        let seen: Seen = Arc::default();
        let app = Router::new()
            .route("/echo", any(echo))
            .route(
                "/json",
                get(|| async { axum::Json(json!({"plan": "gold", "seats": 3})) }),
            )
            .route("/text", get(|| async { "not json" }))
            .route("/status/{code}", any(status))
            .route("/redirect", any(redirect))
            .route("/slow", any(slow))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            seen,
        }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn echo(State(seen): State<Seen>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    let record = (
        parts.method.to_string(),
        parts.uri.path().to_owned(),
        parts.headers,
        body,
    );
    seen.lock().unwrap().push(record);
    (StatusCode::CREATED, "created").into_response()
}

async fn status(State(seen): State<Seen>, Path(code): Path<u16>, request: Request) -> Response {
    let record = (
        request.method().to_string(),
        request.uri().path().to_owned(),
        HeaderMap::new(),
        String::new(),
    );
    seen.lock().unwrap().push(record);
    let status = StatusCode::from_u16(code).unwrap();
    (
        status,
        [(header::RETRY_AFTER, "3")],
        "nope: secret-in-the-answer",
    )
        .into_response()
}

async fn redirect(State(seen): State<Seen>) -> Response {
    let record = (
        "GET".to_owned(),
        "/redirect".to_owned(),
        HeaderMap::new(),
        String::new(),
    );
    seen.lock().unwrap().push(record);
    let location = [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")];
    (StatusCode::FOUND, location).into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

fn connector(allowed: &[&str]) -> HttpConnector {
    HttpConnector::new(HttpConfig {
        timeout: Duration::from_millis(500),
        allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
        ..HttpConfig::default()
    })
    .unwrap()
}

fn job(method: &str, url: &str) -> ActionJob {
    ActionJob {
        key: "run_1:0".into(),
        action: "http".into(),
        object: ObjectRef::new("hubspot", "deal", "9001"),
        params: json!({"method": method, "url": url, "headers": {}, "body": null}),
        attempt: 1,
        after_indeterminate: false,
    }
}

fn message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry(f) | Outcome::Terminal(f) | Outcome::Indeterminate(f) => f.message.clone(),
        Outcome::Success(s) => s.summary.clone(),
    }
}

#[tokio::test]
async fn sends_method_headers_and_json_body_to_an_allowed_host() {
    let server = Server::start().await;
    let mut job = job("post", &format!("{}/echo?token=abc", server.base));
    job.params["headers"] = json!({"Authorization": "Bearer s3cret-value", "X-Deal": "9001"});
    job.params["body"] = json!({"deal": "9001", "stage": "won"});

    let outcome = connector(&["127.0.0.1"]).execute(&job).await;
    let Outcome::Success(success) = outcome else {
        panic!("expected success, got {outcome:?}");
    };
    assert_eq!(success.status, Some(201));
    assert_eq!(success.result, json!({"status": 201}));
    let seen = server.seen.lock().unwrap();
    let (method, path, headers, body) = &seen[0];
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/echo"));
    assert_eq!(headers["authorization"], "Bearer s3cret-value");
    assert_eq!(headers["x-deal"], "9001");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Json>(body).unwrap(),
        json!({"deal": "9001", "stage": "won"})
    );
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let server = Server::start().await;
    let outcome = connector(&[])
        .execute(&job("POST", &format!("{}/echo", server.base)))
        .await;
    assert_eq!(outcome.class(), "terminal");
    assert!(
        message(&outcome).contains("127.0.0.1 is a loopback address"),
        "{outcome:?}"
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn internal_ip_literals_are_refused_without_a_connection() {
    let http = connector(&["127.0.0.1"]);
    for (url, reason) in [
        ("http://10.1.2.3/hook?token=topsecret", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:127.0.0.1]:8080/", "loopback"),
        ("http://[fd00:ec2::254]/", "unique-local"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://0.0.0.0:80/", "unspecified"),
    ] {
        let outcome = http.execute(&job("GET", url)).await;
        assert_eq!(outcome.class(), "terminal", "{url}");
        let text = message(&outcome);
        assert!(
            text.contains("refused") && text.contains(reason),
            "{url}: {text}"
        );
        assert!(
            !text.contains("topsecret") && !text.contains("meta-data"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_even_with_its_ip_allowed() {
    let server = Server::start().await;
    let url = format!("http://localhost:{}/echo", server.port);
    let outcome = connector(&["127.0.0.1", "[::1]"])
        .execute(&job("POST", &url))
        .await;
    assert_eq!(outcome.class(), "terminal", "{outcome:?}");
    let text = message(&outcome);
    assert!(
        text.contains("refused to connect to localhost: it resolves to"),
        "{text}"
    );
    assert_eq!(server.hits(), 0);

    // Allowed by name, it goes through.
    let allowed = connector(&["localhost"]).execute(&job("POST", &url)).await;
    assert_eq!(allowed.class(), "success", "{allowed:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = Server::start().await;
    let outcome = connector(&["127.0.0.1"])
        .execute(&job("GET", &format!("{}/redirect", server.base)))
        .await;
    assert_eq!((outcome.class(), outcome.status()), ("terminal", Some(302)));
    assert!(
        message(&outcome).contains("redirect not followed: 169.254.169.254"),
        "{outcome:?}"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn answers_are_classified_with_retry_after() {
    let server = Server::start().await;
    let http = connector(&["127.0.0.1"]);
    for (code, class) in [
        (503, "retry"),
        (429, "retry"),
        (408, "retry"),
        (425, "retry"),
        (404, "terminal"),
        (400, "terminal"),
    ] {
        let outcome = http
            .execute(&job("POST", &format!("{}/status/{code}", server.base)))
            .await;
        assert_eq!(
            (outcome.class(), outcome.status()),
            (class, Some(code)),
            "{outcome:?}"
        );
        if let Outcome::Retry(failure) = &outcome {
            assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        }
    }
}

#[tokio::test]
async fn header_secrets_are_scrubbed_from_failures() {
    let server = Server::start().await;
    let mut job = job("POST", &format!("{}/status/400", server.base));
    job.params["headers"] = json!({"X-Api-Key": "secret-in-the-answer"});
    let outcome = connector(&["127.0.0.1"]).execute(&job).await;
    let Outcome::Terminal(failure) = &outcome else {
        panic!("expected terminal, got {outcome:?}");
    };
    assert_eq!(failure.response.as_deref(), Some("nope: [redacted]"));
}

#[tokio::test]
async fn a_timeout_after_sending_is_indeterminate() {
    let server = Server::start().await;
    let http = connector(&["127.0.0.1"]);
    let post = job("POST", &format!("{}/slow", server.base));
    assert_eq!(http.execute(&post).await.class(), "indeterminate");
    assert_eq!(http.on_indeterminate(&post), Repeat::Never);
    assert_eq!(
        http.on_indeterminate(&job("patch", "http://x")),
        Repeat::Never
    );
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        assert_eq!(
            http.on_indeterminate(&job(method, "http://x")),
            Repeat::Safe
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_plain_retry() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let outcome = connector(&["127.0.0.1"])
        .execute(&job("POST", &format!("http://127.0.0.1:{port}/")))
        .await;
    assert_eq!(outcome.class(), "retry", "{outcome:?}");
}

#[tokio::test]
async fn bad_params_are_terminal() {
    let http = connector(&[]);
    for (method, url) in [
        ("GET", "ftp://example.com/x"),
        ("GET", "not a url"),
        ("TRACE", "https://example.com"),
    ] {
        assert_eq!(
            http.execute(&job(method, url)).await.class(),
            "terminal",
            "{method} {url}"
        );
    }
}

#[tokio::test]
async fn get_json_reads_json_through_the_guard() {
    let server = Server::start().await;
    let http = connector(&["127.0.0.1"]);
    let found = http
        .get_json(&format!("{}/json", server.base), &BTreeMap::new())
        .await;
    assert_eq!(found, Ok(json!({"plan": "gold", "seats": 3})));

    let not_json = http
        .get_json(&format!("{}/text", server.base), &BTreeMap::new())
        .await;
    assert!(
        matches!(not_json, Err(LookupFailure::Terminal(_))),
        "{not_json:?}"
    );
    let busy = http
        .get_json(&format!("{}/status/503", server.base), &BTreeMap::new())
        .await;
    assert!(matches!(busy, Err(LookupFailure::Retry(_))), "{busy:?}");
    let slow = http
        .get_json(&format!("{}/slow", server.base), &BTreeMap::new())
        .await;
    assert!(matches!(slow, Err(LookupFailure::Retry(_))), "{slow:?}");
    let inward = http.get_json("http://10.0.0.1/x", &BTreeMap::new()).await;
    assert!(
        matches!(inward, Err(LookupFailure::Terminal(_))),
        "{inward:?}"
    );
}

#[tokio::test]
async fn a_lookup_job_keeps_the_answer_as_its_value() {
    let server = Server::start().await;
    let http = connector(&["127.0.0.1"]);
    let lookup = |url: String| ActionJob {
        action: "lookup".into(),
        params: json!({"url": url, "headers": {"x-api-key": "k1"}, "into": "plan"}),
        ..job("GET", "")
    };
    let found = lookup(format!("{}/json", server.base));
    assert_eq!(http.on_indeterminate(&found), Repeat::Safe);
    let Outcome::Success(success) = http.execute(&found).await else {
        panic!("the lookup succeeds");
    };
    assert_eq!(
        success.result,
        json!({"value": {"plan": "gold", "seats": 3}})
    );
    let missing = http
        .execute(&lookup(format!("{}/status/404", server.base)))
        .await;
    assert_eq!(missing.class(), "terminal", "{missing:?}");
    let (method, path, _, _) = server.seen.lock().unwrap()[0].clone();
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/status/404"));
    let inward = http.execute(&lookup("http://10.0.0.1/x".into())).await;
    assert_eq!(inward.class(), "terminal", "the guard holds: {inward:?}");
}

#[tokio::test]
async fn buckets_are_per_host() {
    let http = connector(&[]);
    assert_eq!(
        http.bucket(&job("POST", "https://api.example.com/x?y=1")),
        "http:api.example.com"
    );
}

#[tokio::test]
async fn https_urls_are_spoken_with_tls() {
    // A listener that accepts and hangs up: the TLS handshake fails. Without a TLS
    // backend compiled in, the client would refuse the scheme before connecting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        drop(socket);
    });
    let url = format!("https://127.0.0.1:{port}/hook");
    let outcome = connector(&["127.0.0.1"]).execute(&job("GET", &url)).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), accepted)
        .await
        .expect("the client connected")
        .unwrap();
    assert!(
        matches!(outcome.class(), "retry" | "indeterminate"),
        "a connection was made and the handshake failed: {outcome:?}"
    );
}
