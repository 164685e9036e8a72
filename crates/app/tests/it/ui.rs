//! The web console over plain HTTP: sign-in, the session cookie, CSRF, and the pages'
//! answers to bad input. What a browser shows is in `ui_browser`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::helpers::{TestApp, example_rule, spawn_app_with, spawn_app_with_rules};

pub const ADMIN_TOKEN: &str = "ft_console-test-token-0123456789";

/// The console's config: one admin token (in clear: a test), a fixed session key, and
/// `extra` (which starts inside `[api]`).
pub fn console_config(extra: &str) -> String {
    console_config_keyed("test-session-key", extra)
}

fn console_config_keyed(key: &str, extra: &str) -> String {
    format!("[api]\ntokens = [\"{ADMIN_TOKEN}\"]\nsession_secret = \"{key}\"\n{extra}")
}

/// A client that shows us redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `.form()` without reqwest's `form` feature (the app does not need it).
trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// The `Set-Cookie` line for `name`, if the response sets it.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value part of a `Set-Cookie` line.
fn value_of(line: &str) -> String {
    let (_, rest) = line.split_once('=').unwrap();
    rest.split(';').next().unwrap().to_owned()
}

/// The hidden CSRF field of the page's first form.
fn csrf_field(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

/// The login form's nonce cookie and CSRF token.
async fn login_form(app: &TestApp) -> (String, String) {
    let response = client().get(app.url("/ui/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let nonce = value_of(&set_cookie(&response, "ft_login").expect("a login cookie"));
    let csrf = csrf_field(&response.text().await.unwrap());
    (nonce, csrf)
}

async fn post_login(app: &TestApp, nonce: &str, csrf: &str, token: &str) -> reqwest::Response {
    client()
        .post(app.url("/ui/login"))
        .header(COOKIE, format!("ft_login={nonce}"))
        .form_body(&[("csrf", csrf), ("token", token), ("next", "/ui/rules")])
        .send()
        .await
        .unwrap()
}

/// Signs in; returns the `Set-Cookie` line of the session.
async fn sign_in(app: &TestApp) -> String {
    let (nonce, csrf) = login_form(app).await;
    let response = post_login(app, &nonce, &csrf, ADMIN_TOKEN).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/ui/rules");
    set_cookie(&response, "ft_session").expect("a session cookie")
}

async fn get(app: &TestApp, path: &str, session: Option<&str>) -> reqwest::Response {
    let mut request = client().get(app.url(path));
    if let Some(session) = session {
        request = request.header(COOKIE, format!("ft_session={session}"));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_console_page_sends_a_visitor_without_a_session_to_the_login_form() {
    let app = spawn_app_with(&console_config("")).await;
    for path in [
        "/ui/",
        "/ui/rules",
        "/ui/dead-letters",
        "/ui/dead-letters/1",
        "/ui/search?q=jo%40example.com",
        "/ui/objects/hubspot:contact:501",
        "/ui/no-such-page",
    ] {
        let response = get(&app, path, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()[LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("/ui/login?next=%2Fui%2F"),
            "{path}: {location}"
        );
    }
    let replay = client()
        .post(app.url("/ui/dead-letters/1/replay"))
        .form_body(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(replay.headers()[LOCATION], "/ui/login");
    let login = get(&app, "/ui/login", None).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.text().await.unwrap().contains(r#"type="password""#));
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_shown_back() {
    let app = spawn_app_with(&console_config("")).await;
    let (nonce, csrf) = login_form(&app).await;
    let wrong = "ft_not-the-right-token";
    let response = post_login(&app, &nonce, &csrf, wrong).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&response, "ft_session").is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("not one this server accepts"), "{page}");
    assert!(!page.contains(wrong), "the token is not echoed");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_scoped_to_the_console_and_holds_no_token() {
    let app = spawn_app_with(&console_config("")).await;
    let line = sign_in(&app).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(line.contains(flag), "{flag} in {line}");
    }
    assert!(!line.contains("Secure"), "plain http public URL: {line}");
    assert!(!line.contains(ADMIN_TOKEN));
    let session = value_of(&line);
    let page = get(&app, "/ui/", Some(&session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("Overview") && !html.contains(ADMIN_TOKEN));

    // Served over https, the cookies are Secure.
    let https = spawn_app_with(&console_config(
        "[server]\npublic_url = \"https://followthrough.example.com\"\n",
    ))
    .await;
    let line = sign_in(&https).await;
    assert!(line.contains("; Secure"), "{line}");
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused() {
    let app = spawn_app_with(&console_config("")).await;
    let (nonce, csrf) = login_form(&app).await;
    // Sign-in: no token, a wrong one, or the right one without its nonce cookie.
    for (cookie, field) in [(&nonce, ""), (&nonce, "forged"), (&String::new(), &csrf)] {
        let response = post_login(&app, cookie, field, ADMIN_TOKEN).await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{cookie:?} {field:?}"
        );
        assert!(set_cookie(&response, "ft_session").is_none());
    }
    // The right token from another site's page.
    let response = client()
        .post(app.url("/ui/login"))
        .header(COOKIE, format!("ft_login={nonce}"))
        .header("origin", "https://evil.example")
        .form_body(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Signed in: replay and logout need the session's token.
    let session = value_of(&sign_in(&app).await);
    let token = csrf_field(
        &get(&app, "/ui/", Some(&session))
            .await
            .text()
            .await
            .unwrap(),
    );
    for (path, field) in [
        ("/ui/dead-letters/1/replay", ""),
        ("/ui/dead-letters/1/replay", "forged"),
        ("/ui/logout", ""),
        ("/ui/logout", csrf.as_str()),
    ] {
        let response = client()
            .post(app.url(path))
            .header(COOKIE, format!("ft_session={session}"))
            .form_body(&[("csrf", field)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {field:?}");
        assert!(response.text().await.unwrap().contains("security token"));
    }
    let cross = client()
        .post(app.url("/ui/logout"))
        .header(COOKIE, format!("ft_session={session}"))
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // With it, logout works and clears the cookie.
    let out = client()
        .post(app.url("/ui/logout"))
        .header(COOKIE, format!("ft_session={session}"))
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&out, "ft_session")
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn forged_and_expired_session_cookies_are_refused() {
    let app = spawn_app_with(&console_config("session_ms = 60000\n")).await;
    let session = value_of(&sign_in(&app).await);
    assert_eq!(
        get(&app, "/ui/", Some(&session)).await.status(),
        StatusCode::OK
    );

    // A later expiry, a changed token id, a bare payload, garbage: all refused.
    let (payload, signature) = session.rsplit_once('.').unwrap();
    let fields: Vec<&str> = payload.split('.').collect();
    let later = format!("{}.{}.{}.{signature}", fields[0], fields[1], i64::MAX);
    let other_id = format!("{}.aaaaaaaaaaaa.{}.{signature}", fields[0], fields[2]);
    for forged in [later.as_str(), other_id.as_str(), payload, "v1.x.1.abc", ""] {
        let response = get(&app, "/ui/", Some(forged)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{forged}");
    }
    // Signed under another server's key.
    let other = spawn_app_with(&console_config_keyed("another-key", "")).await;
    assert_eq!(
        get(&other, "/ui/", Some(&session)).await.status(),
        StatusCode::SEE_OTHER
    );

    // Past its lifetime (the server's clock, so the test does not wait a minute).
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(
        get(&app, "/ui/", Some(&session)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn bad_references_get_400_and_unknown_things_404_as_pages() {
    let app = spawn_app_with(&console_config("")).await;
    let session = value_of(&sign_in(&app).await);
    for (path, status, says) in [
        ("/ui/objects/not-a-reference", 400, "source:type:id"),
        (
            "/ui/objects/hubspot:contact:999",
            404,
            "never heard of hubspot:contact:999",
        ),
        ("/ui/dead-letters/abc", 400, "not a dead letter id"),
        ("/ui/dead-letters/999", 404, "no dead letter 999"),
        ("/ui/no-such-page", 404, "no console page"),
    ] {
        let response = get(&app, path, Some(&session)).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = response.text().await.unwrap();
        assert!(html.contains(says), "{path}: {html}");
    }
    // A search with no match is a page saying so, not an error.
    let none = get(&app, "/ui/search?q=nobody%40example.com", Some(&session)).await;
    assert_eq!(none.status(), StatusCode::OK);
    assert!(none.text().await.unwrap().contains("No lead matches"));
}

#[tokio::test]
async fn page_text_is_escaped() {
    let app = spawn_app_with(&console_config("")).await;
    let session = value_of(&sign_in(&app).await);
    let page = get(
        &app,
        "/ui/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        Some(&session),
    )
    .await;
    let html = page.text().await.unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
}

#[tokio::test]
async fn a_replay_is_journaled_once_and_a_second_press_changes_nothing() {
    let rules = [example_rule("new-sql-gets-a-call.yaml")];
    let app = spawn_app_with_rules(&rules, &console_config("")).await;
    crate::ui_browser::lead_with_a_dead_letter(&app).await;
    let letter = app.store.dead_letters(false).await.unwrap().remove(0);
    let session = value_of(&sign_in(&app).await);
    let page = get(
        &app,
        &format!("/ui/dead-letters/{}", letter.id),
        Some(&session),
    )
    .await;
    let csrf = csrf_field(&page.text().await.unwrap());
    let press = || async {
        client()
            .post(app.url(&format!("/ui/dead-letters/{}/replay", letter.id)))
            .header(COOKIE, format!("ft_session={session}"))
            .form_body(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap()
    };
    let first = press().await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let flash = set_cookie(&first, "ft_flash").unwrap();
    assert!(
        flash.starts_with(&format!("ft_flash=replayed-{};", letter.id)),
        "{flash}"
    );
    let second = press().await;
    let flash = set_cookie(&second, "ft_flash").unwrap();
    assert!(
        flash.starts_with(&format!("ft_flash=already-{};", letter.id)),
        "{flash}"
    );

    let replays = app
        .store
        .journal_for(&letter.job.object)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.detail["outcome"] == "replayed")
        .count();
    assert_eq!(replays, 1);
    // The page the redirect leads to shows the message once, then clears it.
    let shown = client()
        .get(app.url(&format!("/ui/dead-letters/{}", letter.id)))
        .header(
            COOKIE,
            format!("ft_session={session}; ft_flash=replayed-{}", letter.id),
        )
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie(&shown, "ft_flash")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(shown.text().await.unwrap().contains("was replayed"));
}

#[tokio::test]
async fn without_a_configured_token_the_login_form_says_the_console_is_closed() {
    let app = spawn_app_with("").await;
    let (nonce, csrf) = login_form(&app).await;
    let page = get(&app, "/ui/login", None).await.text().await.unwrap();
    assert!(page.contains("No admin token is configured"), "{page}");
    let response = post_login(&app, &nonce, &csrf, "anything").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&response, "ft_session").is_none());
}
