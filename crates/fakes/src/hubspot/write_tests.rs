//! The fake's write side against HubSpot's documented behaviour, through a real client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Chaos, Failure, FakeHubSpot, FakeOwner};

async fn send(fake: &FakeHubSpot, method: &str, path: &str, body: Value) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .bearer_auth(fake.token())
        .json(&body)
        .send()
        .await
        .expect("the fake answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn task(extra: Value) -> Value {
    let mut body = json!({
        "properties": {"hs_timestamp": "2025-01-01T00:00:00Z", "hs_task_subject": "Call", "hs_task_priority": "HIGH"},
        "associations": [{"to": {"id": "501"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}],
    });
    if let (Some(base), Some(extra)) = (body["properties"].as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    body
}

async fn fake_with_contact() -> FakeHubSpot {
    let fake = FakeHubSpot::start().await;
    fake.set_object("contact", "501", props(&[("email", "jo@example.com")]));
    fake.add_owner(FakeOwner {
        id: "42".into(),
        email: "ada@example.com".into(),
        ..FakeOwner::default()
    });
    fake
}

#[tokio::test]
async fn task_create_answers_201_and_stores_the_associations() {
    let fake = fake_with_contact().await;
    let (status, body) = send(
        &fake,
        "POST",
        "/crm/v3/objects/tasks",
        task(json!({"hubspot_owner_id": "42"})),
    )
    .await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["properties"]["hs_task_subject"], "Call");
    assert!(body["createdAt"].is_string());
    let tasks = fake.tasks();
    assert_eq!(tasks[0].id, id);
    assert_eq!(tasks[0].associations[0].object_type, "contact");
    assert_eq!(tasks[0].associations[0].type_id, 204);
    let (_, back) = send(
        &fake,
        "GET",
        "/crm/v4/objects/contacts/501/associations/tasks",
        Value::Null,
    )
    .await;
    assert_eq!(back["results"][0]["associationTypes"][0]["typeId"], 203);
}

#[tokio::test]
async fn malformed_tasks_are_400_validation_errors() {
    let fake = fake_with_contact().await;
    let mut no_timestamp = task(json!({}));
    no_timestamp["properties"]
        .as_object_mut()
        .unwrap()
        .remove("hs_timestamp");
    let wrong_type_id = {
        let mut body = task(json!({}));
        body["associations"][0]["types"][0]["associationTypeId"] = json!(202);
        body
    };
    for body in [
        no_timestamp,
        task(json!({"hs_task_priority": "URGENT"})),
        task(json!({"hs_task_type": "MEETING"})),
        task(json!({"hubspot_owner_id": "999"})),
        wrong_type_id,
        json!({"properties": "nope"}),
    ] {
        let (status, error) = send(&fake, "POST", "/crm/v3/objects/tasks", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["status"], "error");
        assert_eq!(error["category"], "VALIDATION_ERROR");
        assert!(error["correlationId"].is_string());
        assert!(error["message"].is_string());
    }
    assert!(fake.tasks().is_empty());
}

#[tokio::test]
async fn upsert_by_a_unique_property_updates_instead_of_duplicating() {
    let fake = fake_with_contact().await;
    let upsert = |subject: &str| json!({"inputs": [{"id": "key-1", "idProperty": "ft_key", "properties": {"hs_timestamp": "1735689600000", "hs_task_subject": subject}}]});
    let (status, _) = send(
        &fake,
        "POST",
        "/crm/v3/objects/tasks/batch/upsert",
        upsert("a"),
    )
    .await;
    assert_eq!(status, 400, "ft_key is not declared unique yet");
    fake.add_unique_property("tasks", "ft_key");
    let (status, first) = send(
        &fake,
        "POST",
        "/crm/v3/objects/tasks/batch/upsert",
        upsert("a"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first["results"][0]["new"], true);
    let (_, second) = send(
        &fake,
        "POST",
        "/crm/v3/objects/tasks/batch/upsert",
        upsert("b"),
    )
    .await;
    assert_eq!(second["results"][0]["new"], false);
    assert_eq!(first["results"][0]["id"], second["results"][0]["id"]);
    assert_eq!(fake.count_with_property("task", "ft_key", "key-1"), 1);
    assert_eq!(fake.tasks()[0].properties["hs_task_subject"], "b");

    // A plain create reusing the unique value is a conflict.
    let (status, error) = send(
        &fake,
        "POST",
        "/crm/v3/objects/tasks",
        task(json!({"ft_key": "key-1"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(error["category"], "CONFLICT");
}

#[tokio::test]
async fn search_filters_pages_and_lags() {
    let fake = FakeHubSpot::start().await;
    for id in 1..=5 {
        let owner = if id % 2 == 0 { "8" } else { "7" };
        fake.set_object(
            "deal",
            &id.to_string(),
            props(&[("hubspot_owner_id", owner)]),
        );
    }
    let query = |after: Option<&str>| json!({"filterGroups": [{"filters": [{"propertyName": "hubspot_owner_id", "operator": "EQ", "value": "7"}]}], "limit": 2, "after": after});
    let (status, page) = send(&fake, "POST", "/crm/v3/objects/deals/search", query(None)).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 3);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["paging"]["next"]["after"], "2");
    let (_, last) = send(
        &fake,
        "POST",
        "/crm/v3/objects/deals/search",
        query(Some("2")),
    )
    .await;
    assert_eq!(last["results"][0]["id"], "5");
    assert!(last.get("paging").is_none());

    let (status, _) = send(&fake, "POST", "/crm/v3/objects/deals/search", json!({"filterGroups": [{"filters": [{"propertyName": "a", "operator": "GT", "value": "1"}]}]})).await;
    assert_eq!(status, 501, "unimplemented operators fail loudly");

    fake.set_search_lag(Duration::from_secs(60));
    let (_, lagging) = send(&fake, "POST", "/crm/v3/objects/deals/search", query(None)).await;
    assert_eq!(lagging["total"], 0);
}

#[tokio::test]
async fn patch_updates_and_history_comes_newest_first() {
    let fake = fake_with_contact().await;
    fake.set_object("deal", "9", props(&[("dealstage", "qualified")]));
    let (status, _) = send(
        &fake,
        "PATCH",
        "/crm/v3/objects/deals/9",
        json!({"properties": {"dealstage": "proposal"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &fake,
        "PATCH",
        "/crm/v3/objects/deals/404",
        json!({"properties": {"dealstage": "x"}}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &fake,
        "PATCH",
        "/crm/v3/objects/deals/9",
        json!({"properties": {"hubspot_owner_id": "999"}}),
    )
    .await;
    assert_eq!(status, 400);
    let (_, deal) = send(
        &fake,
        "GET",
        "/crm/v3/objects/deals/9?properties=dealstage&propertiesWithHistory=dealstage",
        Value::Null,
    )
    .await;
    assert_eq!(deal["properties"]["dealstage"], "proposal");
    let history = deal["propertiesWithHistory"]["dealstage"]
        .as_array()
        .unwrap();
    let values: Vec<&str> = history
        .iter()
        .map(|h| h["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["proposal", "qualified"]);
    assert_eq!(history[0]["sourceType"], "INTEGRATION");
    assert_eq!(history[1]["sourceType"], "CRM_UI");
    assert!(history[0]["timestamp"].is_string());
}

#[tokio::test]
async fn lists_and_enrollments_validate_like_hubspot() {
    let fake = fake_with_contact().await;
    let (status, _) = send(
        &fake,
        "PUT",
        "/crm/v3/lists/1/memberships/add",
        json!(["501"]),
    )
    .await;
    assert_eq!(status, 404);
    fake.add_list("1", "contact");
    let (_, added) = send(
        &fake,
        "PUT",
        "/crm/v3/lists/1/memberships/add",
        json!(["501", "777"]),
    )
    .await;
    assert_eq!(
        added,
        json!({"recordsIdsAdded": ["501"], "recordIdsMissing": ["777"]})
    );
    assert_eq!(fake.list_members("1"), ["501"]);

    fake.add_sequence("88");
    let user = fake.user_id_of("42").unwrap();
    let body = json!({"contactId": "501", "sequenceId": "88", "senderEmail": "ada@example.com"});
    let path = format!("/automation/v4/sequences/enrollments?userId={user}");
    let (status, _) = send(
        &fake,
        "POST",
        "/automation/v4/sequences/enrollments",
        body.clone(),
    )
    .await;
    assert_eq!(status, 400, "userId is required");
    let (status, _) = send(
        &fake,
        "POST",
        &path,
        json!({"contactId": "501", "sequenceId": "88"}),
    )
    .await;
    assert_eq!(status, 400, "senderEmail is required");
    let (status, enrolled) = send(&fake, "POST", &path, body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(enrolled["toEmail"], "jo@example.com");
    let (status, again) = send(&fake, "POST", &path, body).await;
    assert_eq!(status, 400);
    assert_eq!(again["subCategory"], "ALREADY_ENROLLED");
    assert_eq!(fake.enrollments().len(), 1);
}

#[tokio::test]
async fn applied_then_timeout_writes_and_holds_the_answer() {
    let fake = fake_with_contact().await;
    fake.fail_next_with(1, Failure::applied_then_timeout(Duration::from_secs(5)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let result = client
        .post(format!("{}/crm/v3/objects/tasks", fake.base_url()))
        .bearer_auth(fake.token())
        .json(&task(json!({})))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(fake.tasks().len(), 1, "the write took effect");
}

#[tokio::test]
async fn chaos_fails_some_requests_and_records_all() {
    let fake = fake_with_contact().await;
    fake.set_chaos(Chaos {
        rate_limited: 0.5,
        retry_after_secs: 1..=3,
        unavailable: 0.2,
        ..Chaos::default()
    });
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = reqwest::Client::new()
            .get(format!("{}/crm/v3/objects/contacts/501", fake.base_url()))
            .bearer_auth(fake.token())
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let wait: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&wait));
        }
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&200));
    let requests = fake.requests();
    assert_eq!(requests.len(), 40);
    assert!(requests.iter().all(|r| r.at >= started));
    fake.clear_chaos();
}
