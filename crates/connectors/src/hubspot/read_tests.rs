//! `HubSpotReader` against the fake HubSpot: each answer maps to the right result.

use std::collections::BTreeMap;
use std::time::Duration;

use followthrough_core::ObjectRef;
use followthrough_fakes::{Failure, FakeHubSpot, FakeOwner};
use secrecy::SecretString;
use serde_json::{Value as Json, json};

use super::{HubSpotConfigError, HubSpotReader};
use crate::read::{CrmReader, FetchError};

fn reader(fake: &FakeHubSpot) -> HubSpotReader {
    reader_with(&fake.base_url(), &fake.token(), Duration::from_secs(5))
}

fn reader_with(base_url: &str, token: &str, timeout: Duration) -> HubSpotReader {
    HubSpotReader::new(base_url, SecretString::from(token.to_owned()), timeout).unwrap()
}

fn contact(id: &str) -> ObjectRef {
    ObjectRef::new("hubspot", "contact", id)
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn owner_found_maps_name_email_and_teams() {
    let fake = FakeHubSpot::start().await;
    fake.add_owner(FakeOwner {
        id: "41629779".into(),
        email: "ada@example.com".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        teams: vec![
            ("1".into(), "West".into()),
            ("2".into(), "Enterprise".into()),
        ],
    });
    fake.add_owner(FakeOwner {
        id: "8".into(),
        first_name: "Solo".into(),
        ..FakeOwner::default()
    });
    let reader = reader(&fake);

    let owner = reader.owner("41629779").await.unwrap().unwrap();
    assert_eq!(owner.id, "41629779");
    assert_eq!(owner.email, "ada@example.com");
    assert_eq!(owner.name, "Ada Lovelace");
    assert_eq!(owner.teams, ["West", "Enterprise"]);

    let solo = reader.owner("8").await.unwrap().unwrap();
    assert_eq!(solo.name, "Solo", "trimmed when the last name is empty");
    assert!(solo.teams.is_empty());
    assert_eq!(fake.request_count("/crm/v3/owners/41629779"), 1);
}

#[tokio::test]
async fn owner_404_is_none() {
    let fake = FakeHubSpot::start().await;
    assert!(reader(&fake).owner("404").await.unwrap().is_none());
}

#[tokio::test]
async fn object_returns_requested_properties_as_json() {
    let fake = FakeHubSpot::start().await;
    fake.set_object(
        "contacts",
        "501",
        props(&[("email", "lead@example.com"), ("lifecyclestage", "lead")]),
    );
    let reader = reader(&fake);

    let wanted = names(&["email", "lifecyclestage", "phone"]);
    let properties = reader
        .object(&contact("501"), &wanted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(properties["email"], json!("lead@example.com"));
    assert_eq!(properties["lifecyclestage"], json!("lead"));
    assert_eq!(properties["phone"], Json::Null);
    assert_eq!(properties["hs_object_id"], json!("501"));

    let request = fake.requests().pop().unwrap();
    assert_eq!(request.path, "/crm/v3/objects/contacts/501");
    assert_eq!(
        request.query_param("properties").as_deref(),
        Some("email,lifecyclestage,phone")
    );
}

#[tokio::test]
async fn object_without_properties_asks_for_the_defaults() {
    let fake = FakeHubSpot::start().await;
    fake.set_object("deal", "9", props(&[("dealname", "Big")]));
    let deal = ObjectRef::new("hubspot", "deal", "9");
    let properties = reader(&fake).object(&deal, &[]).await.unwrap().unwrap();
    assert_eq!(properties["dealname"], json!("Big"));
    assert_eq!(fake.requests()[0].query, None);
}

#[tokio::test]
async fn object_404_is_none() {
    let fake = FakeHubSpot::start().await;
    let found = reader(&fake)
        .object(&contact("1"), &names(&["email"]))
        .await;
    assert!(found.unwrap().is_none());
}

#[tokio::test]
async fn associations_follow_every_page() {
    let fake = FakeHubSpot::start().await;
    let deals: Vec<String> = (1..=7).map(|n| format!("90{n}")).collect();
    for deal in &deals {
        fake.associate("contact", "501", "deal", deal);
    }
    fake.set_max_page_size(3);

    let found = reader(&fake)
        .associations(&contact("501"), "deal")
        .await
        .unwrap();
    let expected: Vec<ObjectRef> = deals
        .iter()
        .map(|id| ObjectRef::new("hubspot", "deal", id.as_str()))
        .collect();
    assert_eq!(found, expected);

    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "7 associations in pages of 3");
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/crm/v4/objects/contacts/501/associations/deals")
    );
    let cursors: Vec<Option<String>> = requests.iter().map(|r| r.query_param("after")).collect();
    assert_eq!(cursors, [None, Some("3".into()), Some("6".into())]);
}

#[tokio::test]
async fn associations_of_an_unassociated_object_are_empty() {
    let fake = FakeHubSpot::start().await;
    let found = reader(&fake)
        .associations(&contact("1"), "company")
        .await
        .unwrap();
    assert!(found.is_empty());
}

#[tokio::test]
async fn rate_limit_429_is_rate_limited() {
    let fake = FakeHubSpot::start().await;
    let reader = reader(&fake);
    fake.fail_next(1, 429);
    assert!(matches!(
        reader.owner("1").await,
        Err(FetchError::RateLimited {
            retry_after_ms: None
        })
    ));
    fake.fail_next_with(1, Failure::status(429).retry_after("3"));
    assert!(matches!(
        reader.object(&contact("1"), &[]).await,
        Err(FetchError::RateLimited {
            retry_after_ms: Some(3_000)
        })
    ));
    // 423 (locked): HubSpot asks for at least 2 s.
    fake.fail_next(1, 423);
    assert!(matches!(
        reader.owner("1").await,
        Err(FetchError::RateLimited {
            retry_after_ms: Some(2_000)
        })
    ));
    fake.set_rate_limit(1);
    reader.owner("1").await.unwrap();
    assert!(matches!(
        reader.associations(&contact("1"), "deal").await,
        Err(FetchError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn server_errors_and_timeouts_are_unavailable() {
    let fake = FakeHubSpot::start().await;
    let reader = reader(&fake);
    for status in [500, 502, 503, 504] {
        fake.fail_next(1, status);
        let error = reader.owner("1").await.unwrap_err();
        assert!(
            matches!(error, FetchError::Unavailable(_)),
            "{status}: {error:?}"
        );
    }

    fake.set_delay(Duration::from_millis(500));
    let impatient = reader_with(&fake.base_url(), &fake.token(), Duration::from_millis(50));
    let error = impatient.owner("1").await.unwrap_err();
    let FetchError::Unavailable(message) = &error else {
        panic!("a timeout is Unavailable, got {error:?}");
    };
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn a_failure_on_a_later_page_fails_the_whole_call() {
    let fake = FakeHubSpot::start().await;
    for deal in ["1", "2", "3"] {
        fake.associate("contact", "501", "deal", deal);
    }
    fake.set_max_page_size(2);
    // The first page is let through, the second is rate limited: no partial list.
    fake.set_rate_limit(1);
    let result = reader(&fake).associations(&contact("501"), "deal").await;
    assert!(
        matches!(result, Err(FetchError::RateLimited { .. })),
        "{result:?}"
    );
    assert_eq!(fake.request_count("/crm/v4/"), 2);
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let reader = reader_with(
        &format!("http://{address}"),
        "pat-na1-x",
        Duration::from_secs(2),
    );
    let error = reader.owner("1").await.unwrap_err();
    assert!(matches!(error, FetchError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn bad_token_is_refused_with_hubspots_message() {
    let fake = FakeHubSpot::start().await;
    let wrong_token = reader_with(&fake.base_url(), "pat-na1-wrong", Duration::from_secs(5));
    let error = wrong_token.owner("1").await.unwrap_err();
    let FetchError::Refused { status, message } = &error else {
        panic!("a 401 is Refused, got {error:?}");
    };
    assert_eq!(*status, 401);
    assert!(
        message.starts_with("Authentication credentials not found"),
        "{message}"
    );

    fake.fail_next(1, 403);
    let forbidden = reader(&fake).owner("1").await.unwrap_err();
    assert!(matches!(forbidden, FetchError::Refused { status: 403, .. }));
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let fake = FakeHubSpot::start().await;
    let token = fake.token();
    let reader = reader(&fake);
    let mut errors = Vec::new();
    for status in [400, 401, 403, 429, 500, 503] {
        fake.fail_next(1, status);
        errors.push(reader.owner("1").await.unwrap_err());
    }
    fake.set_delay(Duration::from_millis(300));
    let impatient = reader_with(&fake.base_url(), &token, Duration::from_millis(20));
    errors.push(impatient.owner("1").await.unwrap_err());
    for error in &errors {
        assert!(!error.to_string().contains(&token), "{error}");
        assert!(!format!("{error:?}").contains(&token), "{error:?}");
    }
    assert!(!format!("{reader:?}").contains(&token));
}

#[test]
fn rejects_bad_configuration_without_echoing_the_token() {
    let build = |url: &str, token: &str| {
        HubSpotReader::new(
            url,
            SecretString::from(token.to_owned()),
            Duration::from_secs(1),
        )
    };
    assert!(matches!(
        build("not a url", "t"),
        Err(HubSpotConfigError::BaseUrl { .. })
    ));
    assert!(matches!(
        build("ftp://x", "t"),
        Err(HubSpotConfigError::BaseUrl { .. })
    ));
    assert!(matches!(
        build("http://x", ""),
        Err(HubSpotConfigError::EmptyToken)
    ));
    let error = build("http://x", "secret\nvalue").unwrap_err();
    assert!(matches!(error, HubSpotConfigError::InvalidToken));
    assert!(!error.to_string().contains("secret"));
}

#[test]
fn base_url_may_carry_a_path_prefix() {
    let reader = reader_with("http://proxy.test/hubspot/", "t", Duration::from_secs(1));
    let url = reader.url(&["crm", "v3", "owners", "a b/c"]);
    assert_eq!(
        url.as_str(),
        "http://proxy.test/hubspot/crm/v3/owners/a%20b%2Fc"
    );
}
