//! The console's pages, one module each; what they share is here.

pub mod dead_letters;
pub mod object;
pub mod overview;
pub mod rules;
pub mod search;

use axum::http::{HeaderMap, header};
use followthrough_core::ObjectRef;

use super::csrf;
use super::page::{Chrome, UiError};
use super::session::{self, Session};
use crate::server::AppState;

/// The frame of a signed-in page.
pub fn chrome(state: &AppState, session: &Session) -> Chrome {
    Chrome {
        token_id: session.token_id.0.clone(),
        until: session.expires_at.to_rfc3339(),
        csrf: csrf::session_token(&state.admin, session),
    }
}

/// The console's link to an object's timeline. The reference goes in one path segment,
/// percent-encoded where needed (CRM ids are not ours to trust); `:` and `@` stay as
/// they are, so the address reads like the reference.
pub fn object_href(object: &ObjectRef) -> String {
    let mut href = String::from("/ui/objects/");
    for byte in object.to_string().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@".contains(&byte) {
            href.push(char::from(byte));
        } else {
            href.push_str(&format!("%{byte:02X}"));
        }
    }
    href
}

/// The one-time message a POST left for the page it redirected to (a cookie, read and
/// cleared by that page), and the `Set-Cookie` that clears it.
pub fn take_flash(
    state: &AppState,
    headers: &HeaderMap,
) -> (Option<String>, Option<header::HeaderValue>) {
    match session::cookie(headers, FLASH_COOKIE) {
        Some(code) if !code.is_empty() => (
            flash_text(code),
            Some(session::set_cookie(
                FLASH_COOKIE,
                "",
                0,
                session::secure(state),
            )),
        ),
        _ => (None, None),
    }
}

pub const FLASH_COOKIE: &str = "ft_flash";

/// The flash cookie holds a code, not text, so nothing a visitor can set ends up
/// rendered as a message of ours.
fn flash_text(code: &str) -> Option<String> {
    let (what, id) = code.split_once('-')?;
    let id: i64 = id.parse().ok()?;
    match what {
        "replayed" => Some(format!(
            "Dead letter {id} was replayed: its action is back in the outbox, due now."
        )),
        "already" => Some(format!(
            "Dead letter {id} had already been replayed; nothing was changed."
        )),
        _ => None,
    }
}

/// `GET /ui/{anything else}`.
pub async fn not_found(_session: Session) -> UiError {
    UiError::not_found("There is no console page at this address.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_links_keep_the_reference_readable_and_encode_the_rest() {
        let object = ObjectRef::new("hubspot", "contact", "501");
        assert_eq!(object_href(&object), "/ui/objects/hubspot:contact:501");
        let odd = ObjectRef::new("generic", "lead", "a/b c");
        assert_eq!(object_href(&odd), "/ui/objects/generic:lead:a%2Fb%20c");
    }

    #[test]
    fn flash_codes_become_fixed_messages() {
        assert!(
            flash_text("replayed-3")
                .unwrap()
                .contains("Dead letter 3 was replayed")
        );
        assert!(flash_text("already-3").is_some());
        assert_eq!(flash_text("<script>-3"), None);
        assert_eq!(flash_text("replayed-x"), None);
    }
}
