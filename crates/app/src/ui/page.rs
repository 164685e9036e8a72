//! Rendering: the embedded templates, the headers every console page carries, and the
//! error page.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, UndefinedBehavior};

/// The templates, compiled once. A constant built from `include_str!`, not state: a
/// static keeps `UiError` renderable without threading the environment through every
/// handler.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Printing a value the handler did not pass is a bug, not an empty cell; `if` tests
    // on optional values (`flash`, `chrome`) still work.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // The `.html` names turn on minijinja's HTML auto-escaping for every value.
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("error.html", include_str!("templates/error.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("search.html", include_str!("templates/search.html")),
        ("object.html", include_str!("templates/object.html")),
        ("rules.html", include_str!("templates/rules.html")),
        (
            "dead_letters.html",
            include_str!("templates/dead_letters.html"),
        ),
        (
            "dead_letter.html",
            include_str!("templates/dead_letter.html"),
        ),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|error| panic!("console template {name}: {error}"));
    }
    env
});

/// What the page frame shows: who is signed in, and the token the logout form posts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Chrome {
    pub token_id: String,
    /// When the session ends, RFC 3339.
    pub until: String,
    pub csrf: String,
}

/// A rendered page with the console's security headers.
pub fn render(status: StatusCode, template: &str, context: minijinja::Value) -> Response {
    let html = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(context));
    match html {
        Ok(html) => with_headers((status, Html(html)).into_response()),
        Err(error) => {
            // A template bug, not the visitor's fault: log it, answer plainly.
            tracing::error!(%error, template, "console template failed to render");
            with_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered; the server log says why",
                )
                    .into_response(),
            )
        }
    }
}

/// Pages are private and change with every visit: never cached, never framed, and
/// the browser may load nothing but our own style sheet (no script runs at all).
pub fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page that says what went wrong, with the status that fits.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl UiError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    /// A POST we cannot tell from a forged one.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Refused", message)
    }

    /// The store failed: logged in full, shown opaquely (its text may name SQL).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "console: store call failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not read or write its store. The server log has the details; \
             try again in a moment.",
        )
    }
}

impl From<followthrough_store::StoreError> for UiError {
    fn from(error: followthrough_store::StoreError) -> Self {
        Self::internal(error)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        render(
            self.status,
            "error.html",
            minijinja::context! {
                title => self.title,
                status => self.status.as_u16(),
                message => self.message,
            },
        )
    }
}
