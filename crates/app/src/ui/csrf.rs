//! CSRF protection for every console POST, in two layers:
//!
//! 1. The request must not come from another origin: an `Origin` header, when present,
//!    must name this server (its `Host`, or the configured public URL), and
//!    `Sec-Fetch-Site`, when present, must say `same-origin` (or `none`: typed by hand).
//! 2. The form must carry a token a foreign page cannot know. Signed in, that token is
//!    an HMAC of the session cookie (so it needs no storage and dies with the session).
//!    At the login form there is no session yet, so a random nonce goes into a short
//!    cookie and the form carries its HMAC (a signed double submit: a page on another
//!    site can neither read our cookie nor sign a nonce of its own).
//!
//! Tokens are compared in constant time. A POST failing either check gets a 403 page.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use super::page::UiError;
use super::session::{Session, mac};
use crate::server::{AdminAccess, AppState};

/// The pre-session cookie holding the login form's nonce.
pub const LOGIN_COOKIE: &str = "ft_login";
/// How long a login form stays usable.
pub const LOGIN_FORM_SECS: u64 = 3600;
/// The hidden field every console form carries.
pub const FIELD: &str = "csrf";

/// The token the forms of a signed-in page carry.
pub fn session_token(admin: &AdminAccess, session: &Session) -> String {
    URL_SAFE_NO_PAD.encode(mac(admin, "csrf", &session.value).finalize().into_bytes())
}

/// A fresh random nonce for the login cookie.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token the login form carries for the nonce in its cookie.
pub fn login_token(admin: &AdminAccess, nonce: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(admin, "login-csrf", nonce).finalize().into_bytes())
}

/// `Ok` when `presented` is `expected`, compared in constant time.
pub fn check(expected: &str, presented: &str) -> Result<(), UiError> {
    if !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        Ok(())
    } else {
        Err(refused())
    }
}

fn refused() -> UiError {
    UiError::forbidden(
        "This form was refused: its security token is missing, wrong or expired. \
         Go back, reload the page and try again.",
    )
}

/// Whether the request's `Origin` and `Sec-Fetch-Site` allow it to change anything.
pub fn same_origin(headers: &HeaderMap, public_url: &url::Url) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    let Some(origin) = header(header::ORIGIN.as_str()) else {
        // Older browsers and non-browser clients send none; the token still guards.
        return true;
    };
    let public = public_url.origin().ascii_serialization();
    let host = header(header::HOST.as_str()).unwrap_or_default();
    // Behind a TLS-terminating proxy the scheme we see is not the visitor's: accept
    // either for our own Host.
    origin == public || (!host.is_empty() && origin.split_once("://").map(|(_, h)| h) == Some(host))
}

/// A console form, from this origin, its fields decoded. The token is checked by the
/// caller (the login form) or by [`SignedInPost`].
pub struct Posted {
    pub fields: BTreeMap<String, String>,
    pub headers: HeaderMap,
}

impl Posted {
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        if !same_origin(request.headers(), &state.hubspot.public_url) {
            tracing::warn!("console: cross-origin POST refused");
            return Err(refused().into_response());
        }
        let headers = request.headers().clone();
        // Any body that is not a form simply lacks the token: refused as such.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| refused().into_response())?;
        let fields = url::form_urlencoded::parse(&body).into_owned().collect();
        Ok(Posted { fields, headers })
    }
}

/// A POST from a signed-in page whose CSRF token matches its session. The console's
/// signed-in forms are buttons: the token is their only field.
pub struct SignedInPost {
    pub session: Session,
}

impl FromRequest<AppState> for SignedInPost {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let form = Posted::from_request(Request::from_parts(parts, body), state).await?;
        check(&session_token(&state.admin, &session), form.field(FIELD))
            .map_err(IntoResponse::into_response)?;
        Ok(SignedInPost { session })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let public = url::Url::parse("https://ft.example.com").unwrap();
        let ours = [("host", "127.0.0.1:8080")];
        assert!(same_origin(&headers(&ours), &public));
        assert!(same_origin(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]),
            &public
        ));
        assert!(same_origin(
            &headers(&[("host", "10.0.0.5"), ("origin", "https://ft.example.com")]),
            &public
        ));
        assert!(!same_origin(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example")
            ]),
            &public
        ));
        assert!(!same_origin(
            &headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            &public
        ));
        assert!(!same_origin(
            &headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            &public
        ));
    }

    #[test]
    fn tokens_must_match_exactly_and_not_be_empty() {
        assert!(check("abc", "abc").is_ok());
        assert!(check("abc", "abd").is_err());
        assert!(check("abc", "").is_err());
        assert!(check("", "").is_err());
    }
}
