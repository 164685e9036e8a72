//! Owners and linked objects: fetched from the CRM when missing, kept after, and
//! events waiting when they cannot be fetched.

use std::collections::BTreeMap;
use std::time::Duration;

use followthrough_core::{Clock as _, ObjectRef};
use serde_json::json;

use super::*;
use crate::helpers::{property_change, spawn_app_with_rules};

const WON_DEAL_RULE: &str = r##"id: won-deal-thanks
description: A won deal -> tell the channel who won it and how many contacts it has.
on: { object: deal, change: dealstage, to: closedwon }
when: size(associated.contacts) > 0 && owner.email != ""
steps:
  - slack_message:
      channel: "#wins"
      text: "{{ object.dealname }} won by {{ owner.email }} with {{ associated.contacts | length }} contact(s), first {{ associated.contacts[0].firstname }}"
"##;

#[tokio::test]
async fn a_rule_reading_linked_contacts_and_the_owner_fetches_them_once_then_uses_the_store() {
    let rule = ("won-deal-thanks.yaml".to_owned(), WON_DEAL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "").await;
    let crm = &app.hubspot;
    crm.add_owner(owner("42", "rae@example.com", "Rae", "Rep"));
    crm.set_object(
        "contacts",
        "801",
        BTreeMap::from([("firstname".to_owned(), "Ada".to_owned())]),
    );
    crm.set_object(
        "contacts",
        "802",
        BTreeMap::from([("firstname".to_owned(), "Bo".to_owned())]),
    );
    crm.associate("deals", "700", "contacts", "801");
    crm.associate("deals", "700", "contacts", "802");

    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[("dealname", "Acme"), ("hubspot_owner_id", "42")],
    )
    .await;
    app.settle().await;
    set(&app, &mut id, "deal", 700, &[("dealstage", "closedwon")]).await;
    app.settle().await;
    let jobs = outbox(&app, &deal(700)).await;
    assert_eq!(actions(&jobs), vec!["slack_message"]);
    let text = jobs[0].params["text"].as_str().unwrap();
    assert!(
        text.starts_with("Acme won by rae@example.com with 2 contact(s), first "),
        "{text}"
    );
    let owner_reads = crm.request_count("/crm/v3/owners/42");
    let link_reads = crm.request_count("/crm/v4/objects/");
    let object_reads = crm.request_count("/crm/v3/objects/");
    assert_eq!((owner_reads, link_reads, object_reads), (1, 1, 2));

    // Again (reopened and won again): everything comes from the store now.
    app.clock.advance(Duration::from_secs(60));
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[("dealstage", "appointmentscheduled")],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    set(&app, &mut id, "deal", 700, &[("dealstage", "closedwon")]).await;
    app.settle().await;
    assert_eq!(
        actions(&outbox(&app, &deal(700)).await),
        vec!["slack_message", "slack_message"]
    );
    assert_eq!(crm.request_count("/crm/v3/owners/42"), owner_reads);
    assert_eq!(crm.request_count("/crm/v4/objects/"), link_reads);
    assert_eq!(crm.request_count("/crm/v3/objects/"), object_reads);
    let fetched = app
        .store
        .journal_for(&deal(700))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail["outcome"] == "fetched")
        .count();
    assert_eq!(fetched, 2, "the owner and the links, journaled once each");
}

#[tokio::test]
async fn an_event_whose_context_cannot_be_fetched_waits_and_is_retried() {
    let rule = ("won-deal-thanks.yaml".to_owned(), WON_DEAL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "[engine]\nfetch_retry_ms = 60000\n").await;
    let crm = &app.hubspot;
    crm.add_owner(owner("42", "rae@example.com", "Rae", "Rep"));
    crm.set_object(
        "contacts",
        "801",
        BTreeMap::from([("firstname".to_owned(), "Ada".to_owned())]),
    );
    crm.associate("deals", "700", "contacts", "801");
    // The owner and the links reads fail: the CRM is down.
    crm.fail_next(2, 503);

    let mut id = 0;
    set(
        &app,
        &mut id,
        "deal",
        700,
        &[
            ("dealname", "Acme"),
            ("hubspot_owner_id", "42"),
            ("dealstage", "closedwon"),
        ],
    )
    .await;
    set(&app, &mut id, "deal", 701, &[("dealname", "Other")]).await;
    // The other deal is applied; 700 waits, with nothing evaluated against a guess.
    for _ in 0..200 {
        if app.store.object(&deal(701)).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.store.object(&deal(701)).await.unwrap().is_some());
    assert!(outbox(&app, &deal(700)).await.is_empty());
    assert_eq!(
        app.store.pending_count().await.unwrap(),
        3,
        "deal 700's events wait"
    );
    let deferred = app
        .store
        .journal_for(&deal(700))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail["outcome"] == "deferred")
        .count();
    assert_eq!(deferred, 1);

    // The CRM is back; after the retry delay the events are applied, in order.
    app.advance(Duration::from_secs(61)).await;
    let jobs = outbox(&app, &deal(700)).await;
    assert_eq!(actions(&jobs), vec!["slack_message"]);
    assert_eq!(app.store.pending_count().await.unwrap(), 0);
}

const LOGGED_CALL_RULE: &str = r#"id: tell-owner-about-calls
description: A call logged on a contact -> its owner hears of it.
on: { object: contact, event: activity }
when: owner.email != ""
steps:
  - slack_dm: { to: owner, text: "A call was logged on {{ object.firstname }}." }
"#;

#[tokio::test]
async fn an_engagement_waits_for_the_context_of_the_contacts_it_is_linked_to() {
    let rule = ("calls.yaml".to_owned(), LOGGED_CALL_RULE.to_owned());
    let app = spawn_app_with_rules(&[rule], "[engine]\nfetch_retry_ms = 60000\n").await;
    app.hubspot
        .add_owner(owner("7", "sam@example.com", "Sam", "Field"));
    let mut id = 0;
    set(
        &app,
        &mut id,
        "contact",
        620,
        &[("firstname", "Jo"), ("hubspot_owner_id", "7")],
    )
    .await;
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    // The call is linked to the contact, then created; the owner cannot be read yet.
    app.hubspot.fail_next(1, 503);
    let body = json!([
        { "eventId": 800, "subscriptionId": 7, "portalId": 62515, "occurredAt": at,
          "subscriptionType": "call.associationChange", "associationType": "CALL_TO_CONTACT",
          "fromObjectId": 9100, "toObjectId": 620, "associationRemoved": false },
        { "eventId": 801, "subscriptionId": 8, "portalId": 62515, "occurredAt": at + 1,
          "subscriptionType": "call.creation", "objectId": 9100 }
    ]);
    assert_eq!(app.post_hubspot(&body.to_string()).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = ObjectRef::new("hubspot", "call", "9100");
    assert_journal_has(&app, &call, &[("event", "deferred")]).await;
    assert!(
        outbox(&app, &contact(620)).await.is_empty(),
        "not evaluated against a guess"
    );

    app.advance(Duration::from_secs(61)).await;
    let jobs = outbox(&app, &contact(620)).await;
    assert_eq!(actions(&jobs), vec!["slack_dm"]);
    assert_eq!(jobs[0].params["to"], "sam@example.com");
}

const WON_DEAL_NAMES_ITS_CONTACT: &str = r##"id: won-deal-names-its-contact
description: A won deal -> tell the channel which contact it was won with.
on: { object: deal, change: dealstage, to: closedwon }
when: size(associated.contacts) > 0
steps:
  - slack_message: { channel: "#wins", text: "{{ object.dealname }} with {{ associated.contacts[0].firstname }}" }
"##;

/// A hundred deals won in one webhook, so in one batch of the engine: each deal is
/// evaluated with its own contact, fetched from the CRM the first time and read from
/// the store the second.
#[tokio::test]
async fn deals_won_together_are_each_evaluated_with_their_own_contact() {
    const DEALS: u64 = 100;
    let rule = (
        "won-deal-names-its-contact.yaml".to_owned(),
        WON_DEAL_NAMES_ITS_CONTACT.to_owned(),
    );
    let app = spawn_app_with_rules(&[rule], "").await;
    let crm = &app.hubspot;
    for i in 0..DEALS {
        let contact_id = (5000 + i).to_string();
        let firstname = format!("Contact{i}");
        crm.set_object(
            "contacts",
            &contact_id,
            BTreeMap::from([("firstname".to_owned(), firstname)]),
        );
        crm.associate("deals", &(3000 + i).to_string(), "contacts", &contact_id);
    }
    let mut next_id = 0;
    let mut win_all = |stages: &[&str]| {
        let at = app.clock.now().as_millis();
        let mut events = Vec::new();
        for i in 0..DEALS {
            next_id += 1;
            let name = format!("Deal{i}");
            events.push(property_change(
                next_id,
                "deal",
                3000 + i,
                at,
                "dealname",
                &name,
            ));
            for (n, stage) in stages.iter().enumerate() {
                next_id += 1;
                let when = at + 1 + n as i64;
                events.push(property_change(
                    next_id,
                    "deal",
                    3000 + i,
                    when,
                    "dealstage",
                    stage,
                ));
            }
        }
        Value::Array(events).to_string()
    };

    let first = win_all(&["closedwon"]);
    assert_eq!(app.post_hubspot(&first).await.status(), 200);
    app.settle().await;
    let reads = crm.request_count("/crm/");
    assert!(
        reads >= DEALS as usize,
        "the links were fetched: {reads} reads"
    );

    app.clock.advance(Duration::from_secs(60));
    let again = win_all(&["appointmentscheduled", "closedwon"]);
    assert_eq!(app.post_hubspot(&again).await.status(), 200);
    app.settle().await;
    assert_eq!(crm.request_count("/crm/"), reads, "all from the store");
    for i in 0..DEALS {
        let jobs = outbox(&app, &deal(3000 + i)).await;
        let texts: Vec<&str> = jobs
            .iter()
            .map(|j| j.params["text"].as_str().unwrap())
            .collect();
        let expected = format!("Deal{i} with Contact{i}");
        assert_eq!(texts, vec![expected.as_str(); 2], "deal {i}");
    }
}
