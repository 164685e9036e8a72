//! What the HubSpot reader and connector share: the base URL and how paths are built on
//! it, the bearer token (only ever in a sensitive header value), one request with its
//! whole answer, and making HubSpot's error text safe to journal (scrubbed of the
//! token, shortened, with the `errors[].message` details).

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value as Json;
use url::Url;

/// Error text from HubSpot is cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a HubSpot client could not be built (a configuration mistake).
#[derive(Debug, thiserror::Error)]
pub enum HubSpotConfigError {
    #[error("invalid HubSpot base URL `{url}`: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the HubSpot token is empty")]
    EmptyToken,
    #[error("the HubSpot token contains characters not allowed in an HTTP header")]
    InvalidToken,
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    #[error("invalid HubSpot idempotency settings: {0}")]
    Idempotency(String),
}

/// HubSpot's whole answer to one request.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
}

/// A request that got no answer, and whether it can have reached HubSpot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// No connection was made (refused, DNS, TLS): nothing was sent.
    NotSent(String),
    /// Sent (or maybe sent), then no complete answer: a timeout, a reset, a body cut
    /// short. It may have taken effect.
    NoAnswer(String),
}

impl SendError {
    pub(crate) fn message(&self) -> &str {
        match self {
            SendError::NotSent(message) | SendError::NoAnswer(message) => message,
        }
    }
}

/// An authenticated HTTP client for one HubSpot account.
pub(crate) struct HubSpotClient {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <token>`, marked sensitive so `Debug` of a request never shows it.
    auth: HeaderValue,
    token: SecretString,
}

impl fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl HubSpotClient {
    /// A client for the API at `base_url` (which may carry a path prefix, e.g. behind a
    /// proxy), authenticating with a private-app or OAuth access `token`. `timeout`
    /// bounds each request, connection included.
    pub(crate) fn new(
        base_url: &str,
        token: SecretString,
        timeout: Duration,
    ) -> Result<Self, HubSpotConfigError> {
        let base_error = |reason: &str| HubSpotConfigError::BaseUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|error| base_error(&error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(base_error("expected an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(base_error("expected no query or fragment"));
        }
        if token.expose_secret().is_empty() {
            return Err(HubSpotConfigError::EmptyToken);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| HubSpotConfigError::InvalidToken)?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("followthrough/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| HubSpotConfigError::Client(error.to_string()))?;
        Ok(Self {
            http,
            base,
            auth,
            token,
        })
    }

    /// The base URL plus `segments`, each percent-encoded (ids come from webhooks).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` checked that the base can be a base, so this cannot fail.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one request (with a JSON body if given) and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Json>,
    ) -> Result<Answer, SendError> {
        let what = format!("{method} {}", url.path());
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&what, &error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&what, &error))?;
        Ok(Answer {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    /// HubSpot's `message` and each `errors[].message` of a JSON error body, scrubbed
    /// and shortened; `None` when the body is not HubSpot's error shape.
    pub(crate) fn error_message(&self, body: &[u8]) -> Option<String> {
        let error: ErrorBody = serde_json::from_slice(body).ok()?;
        let mut parts: Vec<String> = error.message.into_iter().collect();
        let details = error.errors.into_iter().flatten();
        parts.extend(details.filter_map(|detail| detail.message));
        if parts.is_empty() {
            return None;
        }
        Some(self.scrub(&parts.join("; ")))
    }

    /// The start of a body, scrubbed: what a person reads in a dead letter.
    pub(crate) fn body_start(&self, body: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        (!text.is_empty()).then(|| self.scrub(text))
    }

    /// Text from outside, made safe to journal: without the token, and short.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        let text = if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "[redacted]")
        };
        text.chars().take(MAX_MESSAGE_CHARS).collect()
    }

    fn transport_error(&self, what: &str, error: &reqwest::Error) -> SendError {
        let reason = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else if error.is_body() || error.is_decode() {
            "could not read the response"
        } else {
            "the request failed"
        };
        // The causes say why (e.g. "Connection refused"); reqwest's own text adds the URL.
        let mut message = format!("{what}: {reason}");
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            cause = inner.source();
        }
        let message = self.scrub(&message);
        // A connect error means nothing left this process (a connect timeout included).
        if error.is_connect() {
            SendError::NotSent(message)
        } else {
            SendError::NoAnswer(message)
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    errors: Option<Vec<ErrorDetail>>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}
