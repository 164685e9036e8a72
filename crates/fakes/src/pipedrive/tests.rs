//! The fake against Pipedrive's documented behaviour, through a real HTTP client.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{FakePipedrive, PipedriveFailure};

async fn send(fake: &FakePipedrive, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .header("x-api-token", fake.token())
        .json(&body)
        .send()
        .await
        .expect("the fake answers");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn activities_are_created_and_validated() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(42, json!({"title": "Deal"}));
    let activity = json!({"subject": "Call", "type": "call", "due_date": "2024-05-01", "due_time": "09:30", "deal_id": 42, "user_id": 7});
    let (status, body) = send(&fake, "POST", "/v1/activities", activity).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["success"], true);
    assert!(body["data"]["id"].is_u64());
    assert_eq!(body["data"]["deal_id"], 42);
    assert_eq!(fake.activities().len(), 1);

    for (bad, error) in [
        (json!({"due_date": "01/05/2024", "deal_id": 42}), "due_date"),
        (json!({"due_time": "9:30", "deal_id": 42}), "due_time"),
        (json!({"type": "pigeon", "deal_id": 42}), "type"),
        (json!({"deal_id": 43}), "Deal with id 43 not found"),
    ] {
        let (status, body) = send(&fake, "POST", "/v1/activities", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["success"], false);
        assert!(body["error"].as_str().unwrap().contains(error), "{body}");
        assert!(body["error_info"].is_string());
    }
    assert_eq!(fake.activities().len(), 1);
}

#[tokio::test]
async fn patch_updates_deals_and_persons_or_answers_404() {
    let fake = FakePipedrive::start().await;
    fake.set_person(5, json!({"name": "Ada"}));
    let (status, body) = send(&fake, "PATCH", "/v2/persons/5", json!({"name": "Ada L."})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["name"], "Ada L.");
    assert_eq!(fake.person(5).unwrap()["name"], "Ada L.");
    let (status, body) = send(&fake, "PATCH", "/v2/deals/9", json!({"title": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "Deal not found");
}

#[tokio::test]
async fn auth_accepts_the_header_or_the_legacy_query_parameter() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(1, json!({}));
    let client = reqwest::Client::new();
    let url = format!("{}/v2/deals/1", fake.base_url());
    let by_query = client
        .patch(format!("{url}?api_token={}", fake.token()))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    let wrong = client
        .patch(&url)
        .header("x-api-token", "nope")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let none = client
        .patch(&url)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failures_and_hangs_can_be_injected() {
    let fake = FakePipedrive::start().await;
    fake.set_deal(1, json!({}));
    fake.fail_next(1, PipedriveFailure::status(429).retry_after("2"));
    let response = reqwest::Client::new()
        .patch(format!("{}/v2/deals/1", fake.base_url()))
        .header("x-api-token", fake.token())
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");

    fake.fail_next(
        1,
        PipedriveFailure::applied_then_hang(Duration::from_secs(10)),
    );
    let result = reqwest::Client::new()
        .patch(format!("{}/v2/deals/1", fake.base_url()))
        .header("x-api-token", fake.token())
        .json(&json!({"title": "applied"}))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(fake.deal(1).unwrap()["title"], "applied");
    assert_eq!(fake.request_count("/v2/deals/1"), 2);
}
