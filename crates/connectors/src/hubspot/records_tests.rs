//! Record changes (update, assign_owner, revert), lists, sequences and the owner-load
//! search, against the fake HubSpot.

use serde_json::json;

use super::{config, connector, job, props, success, with_contact};
use crate::{Connector, Outcome, Repeat};
use followthrough_core::ObjectRef;
use followthrough_fakes::FakeHubSpot;

#[tokio::test]
async fn update_and_assign_owner_patch_the_record() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    fake.set_object("deal", "9001", props(&[("dealstage", "proposal")]));
    let connector = connector(config(&fake));
    let update = job(
        "update",
        "hubspot:deal:9001",
        json!({"properties": {"dealstage": "closedwon", "amount": 1200}}),
    );
    assert_eq!(connector.on_indeterminate(&update), Repeat::Safe);
    success(connector.execute(&update).await);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("PATCH", "/crm/v3/objects/deals/9001")
    );
    assert_eq!(
        sent.body.unwrap(),
        json!({"properties": {"dealstage": "closedwon", "amount": "1200"}})
    );
    assert_eq!(
        fake.object("deal", "9001").unwrap()["dealstage"],
        "closedwon"
    );

    let assign = job(
        "assign_owner",
        "hubspot:deal:9001",
        json!({"owner_id": "42"}),
    );
    success(connector.execute(&assign).await);
    assert_eq!(
        fake.object("deal", "9001").unwrap()["hubspot_owner_id"],
        "42"
    );

    let team_only = job(
        "assign_owner",
        "hubspot:deal:9001",
        json!({"team": "West", "strategy": "round_robin"}),
    );
    assert_eq!(connector.execute(&team_only).await.class(), "terminal");
    let unknown = job(
        "update",
        "hubspot:deal:404",
        json!({"properties": {"dealstage": "x"}}),
    );
    let outcome = connector.execute(&unknown).await;
    assert!(
        matches!(&outcome, Outcome::Terminal(f) if f.status == Some(404)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn revert_takes_the_value_before_the_current_one_from_history() {
    let fake = FakeHubSpot::start().await;
    for stage in ["qualified", "proposal", "closedlost"] {
        fake.set_object("deal", "9001", props(&[("dealstage", stage)]));
    }
    let connector = connector(config(&fake));
    let revert = job(
        "revert",
        "hubspot:deal:9001",
        json!({"property": "dealstage", "value": null, "from": "closedlost"}),
    );
    let done = success(connector.execute(&revert).await);
    assert!(
        done.summary.contains("from `closedlost` to `proposal`"),
        "{}",
        done.summary
    );
    let read = &fake.requests()[0];
    assert_eq!(
        read.query_param("propertiesWithHistory").as_deref(),
        Some("dealstage")
    );
    assert_eq!(
        fake.object("deal", "9001").unwrap()["dealstage"],
        "proposal"
    );

    // Repeating it changes nothing: the stage is no longer what the rule saw.
    let again = success(connector.execute(&revert).await);
    assert_eq!(again.result["changed"], false);
    assert_eq!(
        fake.object("deal", "9001").unwrap()["dealstage"],
        "proposal"
    );

    fake.set_object("deal", "1", props(&[("dealstage", "new")]));
    let nothing_before = job(
        "revert",
        "hubspot:deal:1",
        json!({"property": "dealstage", "value": null, "from": "new"}),
    );
    let Outcome::Terminal(failure) = connector.execute(&nothing_before).await else {
        panic!("no earlier value is terminal");
    };
    assert!(
        failure.message.contains("no value before"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn add_to_list_and_enroll_sequence() {
    let fake = FakeHubSpot::start().await;
    with_contact(&fake);
    fake.add_list("12", "contact");
    fake.add_sequence("88");
    let connector = connector(config(&fake));
    let add = job("add_to_list", "hubspot:contact:501", json!({"list": "12"}));
    success(connector.execute(&add).await);
    success(connector.execute(&add).await);
    assert_eq!(fake.list_members("12"), ["501"]);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("PUT", "/crm/v3/lists/12/memberships/add")
    );
    assert_eq!(sent.body.unwrap(), json!(["501"]));

    let enroll = job(
        "enroll_sequence",
        "hubspot:contact:501",
        json!({"sequence": "88", "sender": {"owner_id": "42", "email": "ada@example.com"}}),
    );
    assert_eq!(connector.on_indeterminate(&enroll), Repeat::Safe);
    success(connector.execute(&enroll).await);
    let enrollments = fake.enrollments();
    assert_eq!(enrollments.len(), 1);
    assert_eq!(enrollments[0].sequence_id, "88");
    assert_eq!(enrollments[0].sender_email, "ada@example.com");
    assert_eq!(
        Some(&enrollments[0].user_id),
        fake.user_id_of("42").as_ref()
    );

    // A repeat: refused as terminal, unless an earlier attempt was indeterminate.
    assert_eq!(connector.execute(&enroll).await.class(), "terminal");
    let mut repeat = enroll.clone();
    repeat.after_indeterminate = true;
    let found = success(connector.execute(&repeat).await);
    assert!(
        found.summary.contains("earlier attempt"),
        "{}",
        found.summary
    );

    let by_email = job(
        "enroll_sequence",
        "hubspot:contact:501",
        json!({"sequence": "88", "sender": {"email": "ada@example.com"}}),
    );
    fake.set_object("contact", "502", props(&[("email", "b@example.com")]));
    let mut other = by_email.clone();
    other.object = ObjectRef::new("hubspot", "contact", "502");
    success(connector.execute(&other).await);
    let no_sender = job(
        "enroll_sequence",
        "hubspot:contact:501",
        json!({"sequence": "88", "sender": {"owner_id": "42", "email": ""}}),
    );
    assert_eq!(connector.execute(&no_sender).await.class(), "terminal");
}

#[tokio::test]
async fn open_records_owned_counts_by_search() {
    let fake = FakeHubSpot::start().await;
    for id in ["1", "2", "3"] {
        fake.set_object(
            "deal",
            id,
            props(&[("hubspot_owner_id", if id == "3" { "7" } else { "42" })]),
        );
    }
    let connector = connector(config(&fake));
    assert_eq!(connector.open_records_owned("deal", "42").await.unwrap(), 2);
    assert_eq!(connector.open_records_owned("deal", "8").await.unwrap(), 0);
    let sent = fake.requests().pop().unwrap().body.unwrap();
    assert_eq!(sent["limit"], 1);
    fake.fail_next(1, 429);
    let failure = connector
        .open_records_owned("deal", "42")
        .await
        .unwrap_err();
    assert_eq!(failure.status, Some(429));
}
