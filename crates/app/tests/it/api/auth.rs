//! Bearer auth: every documented route but the document itself refuses a request
//! without a valid token, says why in JSON, and never repeats the token.

use serde_json::Value;

use super::openapi::{Operation, operations};
use super::{seeded, with_token};
use crate::helpers::{error_body, spawn_app_with};

/// Sends the operation with this `Authorization` header (none if `None`).
async fn call_with(
    app: &crate::helpers::TestApp,
    operation: &Operation,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(operation.method.clone(), app.url(&operation.example_path()));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

async fn assert_refused(
    response: reqwest::Response,
    what: &str,
    presented: Option<&str>,
) -> String {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 401, "{what}: {text}");
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    if let Some(presented) = presented {
        assert!(
            !text.contains(presented),
            "{what}: the token is echoed: {text}"
        );
    }
    let body: Value = serde_json::from_str(&text).expect("a JSON error body");
    assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_documented_route_refuses_a_missing_wrong_or_non_bearer_token() {
    let seeded = seeded().await;
    let document = seeded.json("/api/v1/openapi.json").await;
    let operations = operations(&document);
    let secured: Vec<&Operation> = operations.iter().filter(|op| op.secured).collect();
    assert!(
        secured.len() >= 10,
        "documented secured routes: {}",
        secured.len()
    );
    let wrong = "ft_not-a-token-we-know";
    let non_bearer = format!("Basic {}", seeded.token);
    for operation in &secured {
        let name = &operation.name;
        let message =
            assert_refused(call_with(&seeded.app, operation, None).await, name, None).await;
        assert!(message.contains("Authorization"), "{name}: {message}");
        let bearer = format!("Bearer {wrong}");
        assert_refused(
            call_with(&seeded.app, operation, Some(&bearer)).await,
            name,
            Some(wrong),
        )
        .await;
        let message = assert_refused(
            call_with(&seeded.app, operation, Some(&non_bearer)).await,
            name,
            Some(&seeded.token),
        )
        .await;
        assert!(message.contains("Bearer"), "{name}: {message}");
        // The right token gets past auth (what each route then answers is checked by the
        // OpenAPI test).
        let right = format!("Bearer {}", seeded.token);
        let status = call_with(&seeded.app, operation, Some(&right))
            .await
            .status();
        assert_ne!(status, 401, "{name} with the right token");
    }
    // The document itself is public.
    let public: Vec<&Operation> = operations.iter().filter(|op| !op.secured).collect();
    assert_eq!(public.len(), 1, "only openapi.json is public");
    assert_eq!(call_with(&seeded.app, public[0], None).await.status(), 200);
}

#[tokio::test]
async fn with_no_token_configured_everyone_is_refused_and_told_why() {
    let app = spawn_app_with("").await;
    let (token, _) = with_token("");
    let response = app
        .client
        .get(app.url("/api/v1/health"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let message = assert_refused(response, "no tokens", Some(&token)).await;
    assert!(message.contains("api.tokens"), "{message}");
    // Errors keep their shape.
    let (status, code) = error_body(
        app.client
            .get(app.url("/api/v1/rules"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}
