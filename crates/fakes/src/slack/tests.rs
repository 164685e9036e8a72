//! The fake against Slack's documented behaviour, through a real HTTP client.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ChannelRateLimit, FakeSlack, SlackChaos, SlackFailure};

async fn post(fake: &FakeSlack, body: Value) -> (StatusCode, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", fake.base_url()))
        .bearer_auth(fake.token())
        .json(&body)
        .send()
        .await
        .expect("the fake answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn post_message_answers_ok_with_channel_and_ts() {
    let fake = FakeSlack::start().await;
    fake.add_channel("#sales");
    let (status, _, body) = post(&fake, json!({"channel": "#sales", "text": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true);
    assert_eq!(body["channel"], "#sales");
    assert!(body["ts"].is_string());
    assert_eq!(fake.messages()[0].text, "hi");

    let (status, _, body) = post(&fake, json!({"channel": "#sales"})).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": false, "error": "no_text"}))
    );
    let (_, _, body) = post(&fake, json!({"channel": "C0NONE", "text": "x"})).await;
    assert_eq!(body["error"], "channel_not_found");
}

#[tokio::test]
async fn bad_tokens_are_ok_false_not_401() {
    let fake = FakeSlack::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/users.lookupByEmail?email=a@b.c", fake.base_url());
    let missing: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(missing["error"], "not_authed");
    let wrong = client
        .get(&url)
        .bearer_auth("xoxb-nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::OK);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_auth"
    );
}

#[tokio::test]
async fn lookup_by_email_finds_users_case_insensitively() {
    let fake = FakeSlack::start().await;
    fake.add_user("Ada@Example.com", "U0ADA");
    let client = reqwest::Client::new();
    let lookup = |email: &str| {
        client
            .get(format!(
                "{}/users.lookupByEmail?email={}",
                fake.base_url(),
                email.replace('@', "%40")
            ))
            .bearer_auth(fake.token())
            .send()
    };
    let found: Value = lookup("ada@example.COM")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["user"]["id"], "U0ADA");
    let missing: Value = lookup("bob@example.com")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing, json!({"ok": false, "error": "users_not_found"}));
}

#[tokio::test]
async fn webhooks_answer_plain_text() {
    let fake = FakeSlack::start().await;
    let hook = fake.add_webhook("#alerts");
    let client = reqwest::Client::new();
    let send = |body: Value| client.post(&hook).json(&body).send();
    let ok = send(json!({"text": "hi"})).await.unwrap();
    assert_eq!(
        (ok.status(), ok.text().await.unwrap().as_str()),
        (StatusCode::OK, "ok")
    );
    assert!(fake.messages()[0].via_webhook);

    fake.fail_next(1, SlackFailure::error("action_prohibited"));
    let prohibited = send(json!({"text": "hi"})).await.unwrap();
    assert_eq!(prohibited.status(), StatusCode::FORBIDDEN);
    assert_eq!(prohibited.text().await.unwrap(), "action_prohibited");
    let bad = client.post(&hook).body("{").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.text().await.unwrap(), "invalid_payload");
    fake.archive_channel("alerts");
    let archived = send(json!({"text": "hi"})).await.unwrap();
    assert_eq!(archived.status(), StatusCode::GONE);
    fake.remove_channel("alerts");
    let gone = send(json!({"text": "hi"})).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(gone.text().await.unwrap(), "channel_not_found");
}

#[tokio::test]
async fn the_per_channel_rate_limit_tolerates_a_burst_then_answers_429() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C1");
    fake.add_channel("C2");
    fake.set_rate_limit(Some(ChannelRateLimit {
        per_second: 1.0,
        burst: 2,
    }));
    for _ in 0..2 {
        let (status, _, _) = post(&fake, json!({"channel": "C1", "text": "x"})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, retry_after, body) = post(&fake, json!({"channel": "C1", "text": "x"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"], "ratelimited");
    // Another channel has its own bucket.
    let (status, _, _) = post(&fake, json!({"channel": "C2", "text": "x"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.messages().len(), 3);
}

#[tokio::test]
async fn applied_then_hang_posts_before_holding_the_answer() {
    let fake = FakeSlack::start().await;
    fake.add_channel("C1");
    fake.fail_next(1, SlackFailure::applied_then_hang(Duration::from_secs(10)));
    let result = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", fake.base_url()))
        .bearer_auth(fake.token())
        .json(&json!({"channel": "C1", "text": "x"}))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn chaos_is_seeded_and_replays() {
    async fn run() -> Vec<u16> {
        let fake = FakeSlack::start().await;
        fake.add_channel("C1");
        fake.set_chaos(Some(SlackChaos {
            rate_limited: 0.3,
            error: 0.3,
            seed: 7,
            ..SlackChaos::default()
        }));
        let mut seen = Vec::new();
        for _ in 0..20 {
            let (status, _, body) = post(&fake, json!({"channel": "C1", "text": "x"})).await;
            seen.push(if body["ok"] == true {
                200
            } else {
                status.as_u16() + 1
            });
        }
        seen
    }
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.contains(&200) && first.contains(&430) && first.contains(&201));
}
