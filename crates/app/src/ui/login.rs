//! Signing in with an admin token, and out.
//!
//! The token travels once, in the login form's POST body; it is checked with
//! [`crate::auth::AdminTokens::verify`] and then only its id is kept (in the signed
//! session cookie and the log line). It is never echoed into a page, a URL or a log.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::csrf::{self, LOGIN_COOKIE, LOGIN_FORM_SECS, Posted, SignedInPost};
use super::page::{render, with_headers};
use super::session::{self, SESSION_COOKIE};
use crate::server::AppState;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`: the form (or straight on, when already signed in).
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    let now = state.clock.now();
    let signed_in = session::cookie(&headers, SESSION_COOKIE)
        .and_then(|value| session::verify(&state.admin, value, now));
    if signed_in.is_some() {
        return Redirect::to(next).into_response();
    }
    login_page(&state, StatusCode::OK, next, None)
}

/// The form with a fresh nonce cookie and its token, and `error` above it if any.
fn login_page(state: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let nonce = csrf::new_nonce();
    let mut response = render(
        status,
        "login.html",
        context! {
            title => "Sign in",
            csrf => csrf::login_token(&state.admin, &nonce),
            next => next,
            error => error,
            closed => state.admin.tokens.is_empty(),
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            LOGIN_COOKIE,
            &nonce,
            LOGIN_FORM_SECS,
            session::secure(state),
        ),
    );
    response
}

/// `POST /ui/login`: checks the form's CSRF token against its nonce cookie, then the
/// admin token; on success sets the session cookie and goes where the visitor was
/// headed.
pub async fn submit(State(state): State<AppState>, form: Posted) -> Response {
    let nonce = session::cookie(&form.headers, LOGIN_COOKIE).unwrap_or_default();
    let expected = if nonce.is_empty() {
        String::new()
    } else {
        csrf::login_token(&state.admin, nonce)
    };
    if let Err(refused) = csrf::check(&expected, form.field(csrf::FIELD)) {
        return refused.into_response();
    }
    let next = safe_next(Some(form.field("next")));
    let Some(token_id) = state.admin.tokens.verify(form.field("token")) else {
        tracing::warn!("console: sign-in refused (unknown token)");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            next,
            Some("That token is not one this server accepts."),
        );
    };
    tracing::info!(token = %token_id.0, "console: signed in");
    let value = session::issue(&state.admin, &token_id, state.clock.now());
    let secure = session::secure(&state);
    let mut response = with_headers(Redirect::to(next).into_response());
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(
            SESSION_COOKIE,
            &value,
            state.admin.session.as_secs(),
            secure,
        ),
    );
    // The nonce has done its job; a new form gets a new one.
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, "", 0, secure),
    );
    response
}

/// `POST /ui/logout`: drops the browser's session cookie.
pub async fn logout(State(state): State<AppState>, post: SignedInPost) -> Response {
    tracing::info!(token = %post.session.token_id.0, "console: signed out");
    let mut response = with_headers(Redirect::to("/ui/login").into_response());
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", 0, session::secure(&state)),
    );
    response
}

/// Where to go after signing in: a console path, or the overview. Anything else (an
/// absolute URL, `//host`, a backslash some browsers read as a slash) would make the
/// login form an open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if (next == "/ui" || next.starts_with("/ui/"))
                && !next.contains("//")
                && !next.contains('\\')
                && next.len() <= 2048
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/ui/",
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/rules")), "/ui/rules");
        assert_eq!(
            safe_next(Some("/ui/search?q=a%40b.c")),
            "/ui/search?q=a%40b.c"
        );
        assert_eq!(safe_next(Some("https://evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/");
        assert_eq!(safe_next(Some("/api/v1/runs")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
