//! What the Slack, Pipedrive and HTTP connectors share about a call on the wire:
//! reading `Retry-After`, reading a bounded body, telling "never sent" from "sent, no
//! answer", and making outside text safe to journal.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::{Failure, Outcome};

/// Text from outside is cut to this many characters before it is journaled.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// `Retry-After` in whole seconds. HTTP dates are ignored: reading them needs the wall
/// clock, and none of the APIs we call sends one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// At most `cap` bytes of the body; the rest is never read.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// A request that failed without an HTTP answer. A connection that was never made
/// (refused, DNS, connect timeout) sent nothing, so it is a plain retry; anything after
/// that (a timeout waiting for the answer, a reset) may have taken effect.
pub(crate) fn transport_outcome(what: &str, error: &reqwest::Error, scrub: &Scrub) -> Outcome {
    let failure = |why: &str| {
        let message = format!("{what}: {why}{}", causes(error));
        Failure::new(None, scrub.text(&message))
    };
    if error.is_builder() {
        // Found before anything went out, and sending it again will not fix it.
        Outcome::Terminal(failure("could not build the request"))
    } else if error.is_connect() {
        Outcome::Retry(failure("could not connect"))
    } else if error.is_timeout() {
        Outcome::Indeterminate(failure("timed out waiting for the answer"))
    } else if error.is_body() || error.is_decode() {
        Outcome::Indeterminate(failure("could not read the answer"))
    } else {
        Outcome::Indeterminate(failure("the connection failed"))
    }
}

/// `": cause: inner cause"`: reqwest's own text names the URL (which may hold secrets),
/// its sources say why.
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let line = inner.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = inner.source();
    }
    text
}

/// Removes known secrets (tokens, webhook URLs, header values) from text and shortens it.
#[derive(Default)]
pub(crate) struct Scrub {
    secrets: Vec<String>,
}

impl Scrub {
    /// Secrets shorter than 6 characters are skipped: replacing them would mangle
    /// ordinary words and protect little.
    pub(crate) fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| s.len() >= 6)
            .collect();
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub(crate) fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        shorten(&text)
    }

    /// The start of a response body, scrubbed: for [`Failure::response`].
    pub(crate) fn body(&self, body: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        (!text.is_empty()).then(|| self.text(text))
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    short.push('…');
    short
}

/// A failure with the answer's status, a message, `Retry-After` and the body's start.
pub(crate) fn answered(
    status: u16,
    message: String,
    headers: &HeaderMap,
    body: &[u8],
    scrub: &Scrub,
) -> Failure {
    Failure {
        status: Some(status),
        message: scrub.text(&message),
        retry_after: retry_after(headers),
        response: scrub.body(body),
    }
}
