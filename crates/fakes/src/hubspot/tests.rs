//! The fake against HubSpot's documented behaviour, through a real HTTP client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Failure, FakeHubSpot, FakeOwner};

async fn get(fake: &FakeHubSpot, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", fake.base_url()))
        .bearer_auth(fake.token())
        .send()
        .await
        .expect("the fake answers")
}

async fn get_json(fake: &FakeHubSpot, path: &str) -> (StatusCode, Value) {
    let response = get(fake, path).await;
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn owner_has_hubspots_shape() {
    let fake = FakeHubSpot::start().await;
    fake.add_owner(FakeOwner {
        id: "41629779".into(),
        email: "ada@example.com".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        teams: vec![
            ("178588".into(), "West".into()),
            ("178590".into(), "East".into()),
        ],
    });
    let (status, owner) = get_json(&fake, "/crm/v3/owners/41629779").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(owner["id"], "41629779");
    assert_eq!(owner["email"], "ada@example.com");
    assert_eq!(owner["firstName"], "Ada");
    assert_eq!(owner["lastName"], "Lovelace");
    assert_eq!(owner["archived"], false);
    assert!(owner["userId"].is_u64());
    assert!(owner["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(owner["updatedAt"].is_string());
    assert_eq!(
        owner["teams"],
        json!([
            {"id": "178588", "name": "West", "primary": true},
            {"id": "178590", "name": "East", "primary": false},
        ])
    );
}

#[tokio::test]
async fn unknown_owner_and_object_are_404_with_the_error_shape() {
    let fake = FakeHubSpot::start().await;
    for path in ["/crm/v3/owners/1", "/crm/v3/objects/contacts/1"] {
        let (status, body) = get_json(&fake, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "OBJECT_NOT_FOUND");
        assert!(body["message"].is_string());
        assert!(body["correlationId"].as_str().unwrap().len() == 36);
    }
}

#[tokio::test]
async fn object_returns_requested_properties_plus_the_defaults() {
    let fake = FakeHubSpot::start().await;
    fake.set_object(
        "contact",
        "501",
        props(&[
            ("email", "lead@example.com"),
            ("lifecyclestage", "lead"),
            ("city", "Oslo"),
        ]),
    );
    for kind in ["contacts", "contact", "0-1"] {
        let path = format!("/crm/v3/objects/{kind}/501?properties=email,lifecyclestage,phone");
        let (status, body) = get_json(&fake, &path).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(body["id"], "501");
        assert_eq!(body["archived"], false);
        let properties = body["properties"].as_object().unwrap();
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "createdate",
                "email",
                "hs_object_id",
                "lastmodifieddate",
                "lifecyclestage",
                "phone"
            ]
        );
        assert_eq!(properties["email"], "lead@example.com");
        assert_eq!(properties["phone"], Value::Null);
        assert_eq!(properties["hs_object_id"], "501");
        assert_eq!(properties["createdate"], body["createdAt"]);
    }
}

#[tokio::test]
async fn object_without_properties_param_returns_the_type_defaults() {
    let fake = FakeHubSpot::start().await;
    fake.set_object("deals", "9", props(&[("dealname", "Big"), ("custom", "x")]));
    let (_, body) = get_json(&fake, "/crm/v3/objects/deals/9").await;
    let properties = body["properties"].as_object().unwrap();
    assert_eq!(properties["dealname"], "Big");
    assert_eq!(properties["amount"], Value::Null);
    assert!(properties.contains_key("hs_lastmodifieddate"));
    assert!(!properties.contains_key("custom"));
}

#[tokio::test]
async fn unknown_object_type_and_unimplemented_features_are_refused() {
    let fake = FakeHubSpot::start().await;
    let (status, body) = get_json(&fake, "/crm/v3/objects/widgets/1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let with_associations = "/crm/v3/objects/deals/1?associations=contacts";
    assert_eq!(
        get(&fake, with_associations).await.status(),
        StatusCode::NOT_IMPLEMENTED
    );
    let unknown_route = "/crm/v3/objects/deals/1/extra";
    assert_eq!(
        get(&fake, unknown_route).await.status(),
        StatusCode::NOT_IMPLEMENTED
    );
}

#[tokio::test]
async fn associations_paginate_and_are_stored_both_ways() {
    let fake = FakeHubSpot::start().await;
    for deal in ["11", "12", "13", "14", "15"] {
        fake.associate("contact", "501", "deal", deal);
    }
    fake.associate("contact", "501", "deal", "12"); // a repeat changes nothing
    fake.set_max_page_size(2);

    let mut seen = Vec::new();
    let mut path = "/crm/v4/objects/contacts/501/associations/deals".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = get_json(&fake, &path).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        for result in body["results"].as_array().unwrap() {
            seen.push(result["toObjectId"].as_u64().unwrap());
            assert_eq!(
                result["associationTypes"],
                json!([{"category": "HUBSPOT_DEFINED", "typeId": 4, "label": null}])
            );
        }
        let Some(next) = body["paging"]["next"].as_object() else {
            break;
        };
        let link = next["link"].as_str().unwrap();
        assert!(link.starts_with(&fake.base_url()), "{link}");
        path = format!(
            "/crm/v4/objects/contacts/501/associations/deals?after={}",
            next["after"].as_str().unwrap()
        );
    }
    assert_eq!(seen, [11, 12, 13, 14, 15]);
    assert_eq!(pages, 3);

    let (_, back) = get_json(&fake, "/crm/v4/objects/deal/13/associations/contact").await;
    assert_eq!(back["results"][0]["toObjectId"], 501);
    assert_eq!(back["results"][0]["associationTypes"][0]["typeId"], 3);
    assert!(back.get("paging").is_none());
}

#[tokio::test]
async fn associations_honour_limit_and_answer_empty_for_unknown_objects() {
    let fake = FakeHubSpot::start().await;
    for company in ["1", "2", "3"] {
        fake.associate("contacts", "7", "companies", company);
    }
    let path = "/crm/v4/objects/contacts/7/associations/companies?limit=2";
    let (_, body) = get_json(&fake, path).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(body["paging"]["next"]["after"], "2");

    let (status, empty) =
        get_json(&fake, "/crm/v4/objects/contacts/8/associations/companies").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({"results": []}));
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let fake = FakeHubSpot::start().await;
    fake.add_owner(FakeOwner {
        id: "1".into(),
        ..FakeOwner::default()
    });
    let url = format!("{}/crm/v3/owners/1", fake.base_url());
    let client = reqwest::Client::new();
    let missing = client.get(&url).send().await.unwrap();
    let wrong = client
        .get(&url)
        .bearer_auth("pat-na1-wrong")
        .send()
        .await
        .unwrap();
    for response in [missing, wrong] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    }
    assert_eq!(fake.request_count("/crm/v3/owners/"), 2);
}

#[tokio::test]
async fn injected_failures_come_first_then_normal_answers() {
    let fake = FakeHubSpot::start().await;
    fake.add_owner(FakeOwner {
        id: "1".into(),
        ..FakeOwner::default()
    });
    fake.fail_next(2, 503);
    fake.fail_next(1, 429);
    fake.fail_next_with(1, Failure::status(429).retry_after("3"));
    fake.fail_next(1, 500);

    let first = get(&fake, "/crm/v3/owners/1").await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&fake, "/crm/v3/owners/1").await.status(), 503);

    let limited = get(&fake, "/crm/v3/owners/1").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_none());
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");

    let with_retry_after = get(&fake, "/crm/v3/owners/1").await;
    assert_eq!(with_retry_after.status(), 429);
    assert_eq!(with_retry_after.headers()["retry-after"], "3");

    let (status, body) = get_json(&fake, "/crm/v3/owners/1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["status"], "error");

    assert_eq!(
        get(&fake, "/crm/v3/owners/1").await.status(),
        StatusCode::OK
    );
    assert_eq!(fake.request_count("/crm/v3/owners/1"), 6);
}

#[tokio::test]
async fn rate_limit_answers_429_with_hubspot_headers_once_exceeded() {
    let fake = FakeHubSpot::start().await;
    fake.add_owner(FakeOwner {
        id: "1".into(),
        ..FakeOwner::default()
    });
    fake.set_rate_limit(3);
    for expected_remaining in ["2", "1", "0"] {
        let response = get(&fake, "/crm/v3/owners/1").await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["x-hubspot-ratelimit-max"], "3");
        assert_eq!(headers["x-hubspot-ratelimit-remaining"], expected_remaining);
        assert_eq!(
            headers["x-hubspot-ratelimit-interval-milliseconds"],
            "10000"
        );
    }
    let refused = get(&fake, "/crm/v3/owners/1").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["x-hubspot-ratelimit-remaining"], "0");
    assert!(refused.headers().get("retry-after").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errorType"], "RATE_LIMIT");

    fake.clear_rate_limit();
    assert_eq!(
        get(&fake, "/crm/v3/owners/1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn delay_slows_every_answer() {
    let fake = FakeHubSpot::start().await;
    fake.set_delay(Duration::from_millis(150));
    let started = Instant::now();
    get(&fake, "/crm/v3/owners/1").await;
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn requests_are_recorded_and_can_be_reset() {
    let fake = FakeHubSpot::start().await;
    get(
        &fake,
        "/crm/v3/objects/contacts/5?properties=email,firstname",
    )
    .await;
    reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/tasks", fake.base_url()))
        .bearer_auth(fake.token())
        .json(&json!({"properties": {"hs_task_subject": "Call"}}))
        .send()
        .await
        .unwrap();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/crm/v3/objects/contacts/5");
    assert_eq!(
        requests[0].query.as_deref(),
        Some("properties=email,firstname")
    );
    assert_eq!(
        requests[0].query_param("properties").as_deref(),
        Some("email,firstname")
    );
    assert_eq!(requests[0].body, None);
    assert_eq!(
        requests[1].body,
        Some(json!({"properties": {"hs_task_subject": "Call"}}))
    );
    assert_eq!(fake.request_count("/crm/v3/objects/"), 2);
    fake.reset_requests();
    assert!(fake.requests().is_empty());
}
