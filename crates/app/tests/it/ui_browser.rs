//! The web console in a real headless Chromium, driven over WebDriver (chromedriver):
//! sign in, see the overview, find a lead by email, read its timeline, look at the
//! rules, and replay a dead letter. With `FOLLOWTHROUGH_SCREENSHOTS=1` each page is
//! saved as a PNG in `docs/screenshots/`.
//!
//! Chromedriver is required, not optional: without it this test fails and says how to
//! install it (`scripts/install-browser.sh`), so a machine without a browser cannot
//! pass the suite by skipping the console's only end-to-end check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use followthrough_core::Clock as _;
use followthrough_fakes::FakeOwner;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, example_rule, property_change, spawn_app_with_rules};
use crate::ui::{ADMIN_TOKEN, console_config};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver of our own on a free port, killed when dropped.
struct Driver {
    _process: Child,
    url: String,
}

async fn start_chromedriver() -> Driver {
    let binary = std::env::var("FOLLOWTHROUGH_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into());
    assert!(
        Path::new(&binary).exists(),
        "chromedriver not found at {binary}: the console's browser test needs Chromium and \
         ChromeDriver. Install them with scripts/install-browser.sh (Debian packages \
         chromium and chromium-driver), or point FOLLOWTHROUGH_CHROMEDRIVER at one."
    );
    // Take a free port from the OS, then hand it to chromedriver.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        _process: process,
        url,
    }
}

/// A headless Chromium session with the flags this machine needs (no sandbox as root;
/// no background networking, which the closed network would refuse) and a fresh
/// profile.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let binary = std::env::var("FOLLOWTHROUGH_CHROMIUM").unwrap_or(CHROMIUM.into());
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1300",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": binary, "args": args }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("starting Chromium through chromedriver: {e}"))
}

/// Saves the page as `docs/screenshots/<name>.png` when asked to.
async fn screenshot(browser: &Client, name: &str) {
    if std::env::var("FOLLOWTHROUGH_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits until the browser shows `path`: a submit returns when the click is done, which
/// may be before the next page has loaded.
async fn wait_for_path(browser: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "still at {url}, expected {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// A contact that became an SQL while HubSpot does not know it: the task's association
/// is refused (400), so the action lands in the dead letters. Its activity also starts
/// a lead-gone-cold wait.
pub async fn lead_with_a_dead_letter(app: &TestApp) {
    app.hubspot.add_owner(FakeOwner {
        id: "882761034".into(),
        email: "sam@example.com".into(),
        first_name: "Sam".into(),
        last_name: "Field".into(),
        teams: vec![],
    });
    let at = app.clock.now().as_millis();
    let first = json!([
        property_change(1, "contact", 501, at, "firstname", "Jo"),
        property_change(2, "contact", 501, at, "email", "jo@example.com"),
        property_change(3, "contact", 501, at, "hubspot_owner_id", "882761034"),
        property_change(4, "contact", 501, at, "lifecyclestage", "lead"),
        // Activity: lead-gone-cold starts its 14-day wait (a timer on the page).
        property_change(
            6,
            "contact",
            501,
            at,
            "notes_last_contacted",
            &at.to_string()
        ),
    ]);
    assert_eq!(app.post_hubspot(&first.to_string()).await.status(), 200);
    app.settle().await;
    app.clock.advance(Duration::from_secs(60));
    let at = app.clock.now().as_millis();
    let sql = json!([property_change(
        5,
        "contact",
        501,
        at,
        "lifecyclestage",
        "salesqualifiedlead"
    )]);
    assert_eq!(app.post_hubspot(&sql.to_string()).await.status(), 200);
    app.settle().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.store.dead_letters(false).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no dead letter within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn in_a_browser_an_operator_signs_in_finds_a_lead_and_replays_its_dead_letter() {
    let driver = start_chromedriver().await;
    let rules = [
        example_rule("new-sql-gets-a-call.yaml"),
        example_rule("lead-gone-cold.yaml"),
        example_rule("negotiation-needs-next-step.yaml"),
    ];
    let app = spawn_app_with_rules(&rules, &console_config("")).await;
    lead_with_a_dead_letter(&app).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = browser(&driver, profile.path()).await;

    // Asking for the overview lands on the login form.
    browser.goto(&app.url("/ui/")).await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/ui/login");
    screenshot(&browser, "login").await;
    let form = browser.form(Locator::Css("form.login")).await.unwrap();
    form.set_by_name("token", ADMIN_TOKEN).await.unwrap();
    form.submit().await.unwrap();

    // The overview: one dead letter waiting, three rules loaded.
    wait_for_path(&browser, "/ui/").await;
    let glance = text_of(&browser, "table.figures").await;
    assert!(glance.contains("Dead letters waiting 1"), "{glance}");
    assert!(
        glance.contains("Rules loaded 3, 1 run under way"),
        "{glance}"
    );
    assert!(glance.contains("Timers pending 1"), "{glance}");
    assert!(
        glance.contains("Webhook events accepted, last 15 minutes 6"),
        "{glance}"
    );
    screenshot(&browser, "overview").await;

    // Searching by email goes straight to the one lead's timeline.
    let search = browser.form(Locator::Css("form.search")).await.unwrap();
    search.set_by_name("q", "jo@example.com").await.unwrap();
    search.submit().await.unwrap();
    wait_for_path(&browser, "/ui/objects/hubspot:contact:501").await;
    assert_eq!(text_of(&browser, "h1").await, "hubspot:contact:501");
    let properties = text_of(&browser, "section[aria-labelledby=props]").await;
    assert!(
        properties.contains("lifecyclestage salesqualifiedlead"),
        "{properties}"
    );
    assert!(properties.contains("email [redacted]"), "{properties}");
    let timeline = text_of(&browser, "table.timeline").await;
    for expected in [
        "webhook",
        "lifecyclestage = \"salesqualifiedlead\"",
        "action",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }
    let next = text_of(&browser, "section[aria-labelledby=next]").await;
    assert!(
        next.contains("lead-gone-cold") && next.contains("wakes up"),
        "{next}"
    );
    screenshot(&browser, "timeline").await;

    browser.goto(&app.url("/ui/rules")).await.unwrap();
    let rules = text_of(&browser, "main table").await;
    for id in [
        "new-sql-gets-a-call",
        "lead-gone-cold",
        "negotiation-needs-next-step",
    ] {
        assert!(rules.contains(id), "{id} in {rules}");
    }
    screenshot(&browser, "rules").await;

    // The dead letters: one, refused by HubSpot; open it and replay it.
    browser.goto(&app.url("/ui/dead-letters")).await.unwrap();
    let list = text_of(&browser, "main table").await;
    assert!(
        list.contains("hubspot:contact:501") && list.contains("terminal"),
        "{list}"
    );
    screenshot(&browser, "dead-letters").await;
    let letter = app.store.dead_letters(false).await.unwrap().remove(0);
    browser
        .find(Locator::LinkText(&letter.id.to_string()))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, &format!("/ui/dead-letters/{}", letter.id)).await;
    assert!(text_of(&browser, "main").await.contains("Last status 400"));
    screenshot(&browser, "dead-letter").await;
    // Some minutes later, the operator fixes the cause (HubSpot now knows the
    // contact), then replays.
    app.clock.advance(Duration::from_secs(300));
    app.hubspot.set_object(
        "contact",
        "501",
        [("firstname".to_owned(), "Jo".to_owned())].into(),
    );
    browser
        .form(Locator::Css("form.replay"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    // Back on the same address: wait for the message instead.
    let flash = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.flash"))
        .await
        .expect("a message after the replay")
        .text()
        .await
        .unwrap();
    assert!(
        flash.contains(&format!("Dead letter {} was replayed", letter.id)),
        "{flash}"
    );
    screenshot(&browser, "dead-letter-replayed").await;

    // The store agrees, and the lead's journal says who replayed it.
    let replayed = app.store.dead_letter(letter.id).await.unwrap().unwrap();
    assert!(replayed.replayed_at.is_some());
    let journal = app.store.journal_for(&letter.job.object).await.unwrap();
    let row = journal
        .iter()
        .find(|entry| entry.detail["outcome"] == "replayed")
        .expect("a replay row in the journal");
    let by = row.detail["by"].as_str().unwrap();
    assert!(by.starts_with("the web console (token "), "{by}");
    assert!(!by.contains(ADMIN_TOKEN));
    // ...and the action, back in the outbox, reaches HubSpot this time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.hubspot.tasks().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the replayed task never reached HubSpot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser
        .goto(&app.url("/ui/dead-letters?all=true"))
        .await
        .unwrap();
    let list = text_of(&browser, "main table").await;
    assert!(list.contains("Replayed"), "{list}");
    screenshot(&browser, "dead-letters-after").await;

    browser.close().await.unwrap();
}
