//! `/metrics`: valid Prometheus exposition (parsed with a real parser), and counters
//! and gauges that move as events flow.

use std::collections::BTreeMap;

use followthrough_core::Clock as _;
use prometheus_parse::{Scrape, Value as Sample};

use crate::engine::set;
use crate::helpers::{TestApp, example_rule, spawn_app_with_rules};

/// The scrape, parsed: fails the test if the text is not valid exposition.
async fn scrape(app: &TestApp) -> Scrape {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    if std::env::var_os("SHOW_METRICS").is_some() {
        eprintln!("{text}");
    }
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // name{labels} value: the parser below skips lines it cannot read, so check
        // every sample line has a name and a number first.
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        assert!(!series.is_empty(), "bad line: {line}");
        assert!(value.parse::<f64>().is_ok(), "bad value in: {line}");
    }
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

/// Scrapes until `ready` holds (at most 5 s), and returns that scrape.
async fn scrape_until(app: &TestApp, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..250 {
        let scraped = scrape(app).await;
        if ready(&scraped) {
            return scraped;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    scrape(app).await
}

/// The value of one series (counters, gauges; histograms by their count), 0 if absent.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Sample::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_as_events_flow() {
    let app = spawn_app_with_rules(&[example_rule("lead-gone-cold.yaml")], "").await;
    let before = scrape(&app).await;
    let docs: BTreeMap<_, _> = before.docs.clone().into_iter().collect();
    for described in [
        "followthrough_inbox_pending",
        "followthrough_timers_pending",
        "followthrough_dead_letters",
        "followthrough_circuit_state",
    ] {
        assert!(
            docs.contains_key(described),
            "HELP for {described}: {docs:?}"
        );
    }
    assert_eq!(value(&before, "followthrough_timers_pending", &[]), 0.0);
    assert_eq!(
        value(
            &before,
            "followthrough_circuit_state",
            &[("connector", "hubspot")]
        ),
        0.0
    );

    let mut id = 0;
    for contact in [701, 702, 703] {
        set(&app, &mut id, "contact", contact, &[("lead_score", "60")]).await;
        set(
            &app,
            &mut id,
            "contact",
            contact,
            &[("notes_last_contacted", "1764324000000")],
        )
        .await;
    }
    // A forged delivery is refused and counted.
    let forged = app
        .post_with(
            "[]",
            &[
                ("Content-Type".into(), "application/json".into()),
                ("X-HubSpot-Signature-v3".into(), "AAAA".into()),
            ],
        )
        .await;
    assert_eq!(forged.status(), 401);
    app.settle().await;

    // Counters move right after the commit they count (a few microseconds after the
    // rows are visible): wait for the last of them.
    let after = scrape_until(&app, |s| {
        value(s, "followthrough_timers_total", &[("outcome", "scheduled")]) >= 3.0
    })
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let accepted = [("source", "hubspot"), ("outcome", "accepted")];
    assert_eq!(moved("followthrough_webhooks_total", &accepted), 6.0);
    let rejected = [("source", "hubspot"), ("outcome", "rejected")];
    assert_eq!(moved("followthrough_webhooks_total", &rejected), 1.0);
    let inserted = [("source", "hubspot"), ("outcome", "inserted")];
    assert_eq!(moved("followthrough_webhook_events_total", &inserted), 6.0);
    assert_eq!(
        moved("followthrough_events_total", &[("outcome", "applied")]),
        6.0
    );
    let matched = [("rule", "lead-gone-cold"), ("outcome", "matched")];
    assert_eq!(moved("followthrough_rule_evaluations_total", &matched), 3.0);
    let started = [("rule", "lead-gone-cold"), ("outcome", "started")];
    assert_eq!(moved("followthrough_runs_total", &started), 3.0);
    assert_eq!(
        moved("followthrough_timers_total", &[("outcome", "scheduled")]),
        3.0
    );
    // Gauges read from the store: three runs waiting, three timers pending.
    let waiting = [("rule", "lead-gone-cold"), ("status", "waiting")];
    assert_eq!(value(&after, "followthrough_runs_active", &waiting), 3.0);
    assert_eq!(value(&after, "followthrough_timers_pending", &[]), 3.0);
    assert_eq!(value(&after, "followthrough_inbox_pending", &[]), 0.0);
    assert_eq!(value(&after, "followthrough_rules_loaded", &[]), 1.0);
    // Request latency, by route (never by raw path), as a histogram.
    let webhook_route = [
        ("route", "/webhooks/hubspot"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(
        moved(
            "followthrough_http_request_duration_seconds",
            &webhook_route
        ),
        6.0
    );
    assert!(
        after.samples.iter().any(
            |s| s.metric == "followthrough_http_request_duration_seconds"
                && matches!(s.value, Sample::Histogram(_))
        ),
        "latency is a histogram"
    );

    // Fourteen days on: the timers fire, the hot leads' actions go out, and the gauges
    // come back down.
    app.advance(std::time::Duration::from_secs(15 * 24 * 3600))
        .await;
    let fired_before = value(
        &after,
        "followthrough_timers_total",
        &[("outcome", "fired")],
    );
    let later = scrape_until(&app, |s| {
        value(s, "followthrough_timers_total", &[("outcome", "fired")]) >= fired_before + 3.0
    })
    .await;
    assert_eq!(
        value(&later, "followthrough_runs_active", &waiting),
        0.0,
        "a stale gauge is reset"
    );
    assert_eq!(value(&later, "followthrough_timers_pending", &[]), 0.0);
    let fired = value(
        &later,
        "followthrough_timers_total",
        &[("outcome", "fired")],
    ) - value(
        &after,
        "followthrough_timers_total",
        &[("outcome", "fired")],
    );
    assert_eq!(fired, 3.0);
    let queued = value(
        &later,
        "followthrough_actions_total",
        &[("outcome", "queued")],
    );
    assert!(
        queued >= 6.0,
        "assign_owner + create_task for each: {queued}"
    );
    assert!(app.clock.now().as_millis() > 0);
}
