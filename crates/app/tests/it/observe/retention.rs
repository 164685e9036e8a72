//! Retention: the running server deletes journal rows and applied payloads older than
//! `privacy.retention_days`, and keeps what is younger and every object's state.

use std::time::Duration;

use crate::engine::{DAY, contact, set};
use crate::helpers::spawn_app_with;

#[tokio::test]
async fn old_journal_rows_and_payloads_are_pruned_and_state_is_kept() {
    let app = spawn_app_with("[privacy]\nretention_days = 30\nprune_interval_ms = 50\n").await;
    let mut id = 0;
    set(&app, &mut id, "contact", 901, &[("firstname", "Old")]).await;
    app.settle().await;
    let old_rows = app.count("SELECT COUNT(*) FROM journal");
    assert!(old_rows > 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox"), 1);

    // Thirty-one days later a new event comes; the old one is past retention.
    app.advance(31 * DAY).await;
    set(&app, &mut id, "contact", 902, &[("firstname", "New")]).await;
    app.settle().await;
    let mut pruned = false;
    for _ in 0..200 {
        if app.count("SELECT COUNT(*) FROM inbox") == 1
            && app.count("SELECT COUNT(*) FROM journal WHERE summary LIKE '%1 event%'") == 1
        {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        pruned,
        "inbox {} rows, journal {} rows",
        app.count("SELECT COUNT(*) FROM inbox"),
        app.count("SELECT COUNT(*) FROM journal")
    );
    // The old object's state stays; only the story of it went.
    let old = app.store.object(&contact(901)).await.unwrap().unwrap();
    assert_eq!(old.properties["firstname"].value, "Old");
    assert!(
        app.store
            .received_events(&contact(901))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.store
            .received_events(&contact(902))
            .await
            .unwrap()
            .len(),
        1
    );
    // Counted in the metrics.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("followthrough_pruned_total{table=\"inbox\"} 1"),
        "{metrics}"
    );
}
