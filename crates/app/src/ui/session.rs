//! The console session: a stateless cookie `v1.<token id>.<expiry ms>.<signature>`,
//! signed with HMAC-SHA256 under `AdminAccess.session_key`.
//!
//! It names the admin token by its id (a digest prefix), never the token itself, so a
//! stolen cookie gives away nothing beyond its own remaining lifetime. Stateless means a
//! logout only drops the browser's copy; to end every session at once, change
//! `api.session_secret` (or restart, when it is left empty and so random per process).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use followthrough_core::Timestamp;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::Sha256;

use crate::auth::TokenId;
use crate::server::{AdminAccess, AppState};

pub const SESSION_COOKIE: &str = "ft_session";
const VERSION: &str = "v1";

/// A signed-in visitor.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_id: TokenId,
    pub expires_at: Timestamp,
    /// The cookie as sent: the CSRF token is derived from it.
    pub value: String,
}

/// HMAC-SHA256 of `purpose` and `data` under the session key. The purpose keeps a
/// signature made for one use (a session) from being replayed as another (a CSRF token).
pub fn mac(admin: &AdminAccess, purpose: &str, data: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(admin.session_key.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(data.as_bytes());
    mac
}

/// A new session cookie value for `token_id`, valid for `admin.session` from `now`.
pub fn issue(admin: &AdminAccess, token_id: &TokenId, now: Timestamp) -> String {
    let expires_at = now.saturating_add(admin.session);
    let payload = format!("{VERSION}.{}.{}", token_id.0, expires_at.as_millis());
    let signature = mac(admin, "session", &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The session in `value` if its signature is ours, it has not expired at `now`, and its
/// token is still configured.
pub fn verify(admin: &AdminAccess, value: &str, now: Timestamp) -> Option<Session> {
    let (payload, signature) = value.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    // Checked before anything in the payload is trusted; `verify_slice` compares in
    // constant time.
    mac(admin, "session", payload)
        .verify_slice(&signature)
        .ok()?;
    let mut fields = payload.split('.');
    let (version, token_id, expires_at) = (fields.next()?, fields.next()?, fields.next()?);
    if version != VERSION || fields.next().is_some() {
        return None;
    }
    let expires_at = Timestamp::from_millis(expires_at.parse().ok()?);
    let token_id = TokenId(token_id.to_owned());
    if !admin.tokens.knows(&token_id) {
        return None;
    }
    (now < expires_at).then(|| Session {
        token_id,
        expires_at,
        value: value.to_owned(),
    })
}

/// The value of cookie `name`, from every `Cookie` header of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` for a console cookie. `HttpOnly`: no script may read it (none runs,
/// but a future one must not be able to). `SameSite=Strict`: no request from another
/// site carries it, not even a link — a console that can replay actions is worth one
/// extra login when arriving from elsewhere; the login brings the visitor back to the
/// page they asked for. `Path=/ui`: the webhooks and the API never see it. `Secure`
/// whenever the public URL is https. `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie values are base64url, digits and dots")
}

/// Whether cookies must be `Secure`: the service is reached over https.
pub fn secure(state: &AppState) -> bool {
    state.hubspot.public_url.scheme() == "https"
}

/// Without a valid session, a page answers 303 to the login form, which brings the
/// visitor back here once signed in.
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let now = state.clock.now();
        cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|value| verify(&state.admin, value, now))
            .ok_or_else(|| {
                // Only a page can be come back to: a POST's address has no GET.
                if parts.method != Method::GET {
                    return Redirect::to("/ui/login").into_response();
                }
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/ui/");
                let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Redirect::to(&format!("/ui/login?next={next}")).into_response()
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;

    /// The id of the one token [`access`] knows.
    fn known() -> TokenId {
        access("any").tokens.verify("dev-token").unwrap()
    }

    fn access(key: &str) -> AdminAccess {
        let (tokens, _) =
            crate::auth::AdminTokens::from_config(&[SecretString::from("dev-token")]).unwrap();
        AdminAccess {
            tokens,
            session: Duration::from_secs(60),
            session_key: SecretString::from(key),
        }
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_key() {
        let admin = access("key-one");
        let now = Timestamp::from_millis(1_000_000);
        let value = issue(&admin, &known(), now);
        let session = verify(&admin, &value, now).expect("fresh session");
        assert_eq!(session.token_id, known());
        assert!(verify(&admin, &value, Timestamp::from_millis(1_059_999)).is_some());
        assert!(verify(&admin, &value, Timestamp::from_millis(1_060_000)).is_none());
        assert!(verify(&access("key-two"), &value, now).is_none());
    }

    #[test]
    fn a_session_ends_when_its_token_is_removed_from_the_configuration() {
        let now = Timestamp::from_millis(0);
        let value = issue(&access("key"), &known(), now);
        let (others, _) =
            crate::auth::AdminTokens::from_config(&[SecretString::from("another-token")]).unwrap();
        let reconfigured = AdminAccess {
            tokens: others,
            ..access("key")
        };
        assert!(verify(&reconfigured, &value, now).is_none());
    }

    #[test]
    fn a_changed_payload_or_signature_is_refused() {
        let admin = access("key");
        let now = Timestamp::from_millis(0);
        let value = issue(&admin, &known(), now);
        let (payload, signature) = value.rsplit_once('.').unwrap();
        let longer = payload.replace(".60000", ".99999999");
        assert!(verify(&admin, &format!("{longer}.{signature}"), now).is_none());
        assert!(verify(&admin, &format!("{payload}.AAAA"), now).is_none());
        assert!(verify(&admin, payload, now).is_none());
        assert!(verify(&admin, "", now).is_none());
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; ft_x=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("ft_session=v1.x"));
        assert_eq!(cookie(&headers, "ft_x"), Some("2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("v1.x"));
        assert_eq!(cookie(&headers, "b"), None);
    }
}
