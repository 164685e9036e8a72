//! HubSpot request signatures, v1, v2 and v3, checked on the raw body before anything
//! else looks at it.
//!
//! - v1: `hex(sha256(secret + body))`
//! - v2: `hex(sha256(secret + method + uri + body))`
//! - v3: `base64(hmac_sha256(secret, method + uri + body + timestamp))`, where the URI has
//!   a few percent-escapes decoded first and the timestamp must be recent.
//!
//! Comparisons are constant-time. The only way to get a [`Verified`] is [`verify`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use followthrough_core::Timestamp;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const HEADER_V3: &str = "x-hubspot-signature-v3";
pub const HEADER_TIMESTAMP: &str = "x-hubspot-request-timestamp";
pub const HEADER_V1_V2: &str = "x-hubspot-signature";
pub const HEADER_VERSION: &str = "x-hubspot-signature-version";

/// The parts of a request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    pub method: &'a str,
    /// The full URL the sender called: scheme, host, path and query.
    pub uri: &'a str,
    pub body: &'a [u8],
}

/// The signature headers as received (absent ones are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    pub v3: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub v1_v2: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// Which signature versions are accepted, and how old a v3 timestamp may be.
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    pub accept_v1: bool,
    pub accept_v2: bool,
    pub accept_v3: bool,
    pub max_skew_ms: i64,
}

/// Proof that a request's signature was checked.
#[derive(Debug)]
pub struct Verified {
    pub version: &'static str,
}

/// Why a signature was refused. The text goes to the sender, so it says what is wrong
/// without echoing anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature: expected X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp")]
    Missing,
    #[error("signature version {0} is not accepted here")]
    VersionNotAccepted(String),
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("request timestamp is outside the allowed window of {window_s} s (off by {off_s} s)")]
    Stale { off_s: i64, window_s: i64 },
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A short, stable reason for the journal and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::VersionNotAccepted(_) => "signature_version_not_accepted",
            SignatureError::Malformed(_) => "signature_malformed",
            SignatureError::Stale { .. } => "signature_stale",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks the request's signature against `secret` under `policy`.
pub fn verify(
    secret: &[u8],
    parts: SignedParts<'_>,
    headers: SignatureHeaders<'_>,
    policy: &SignaturePolicy,
    now: Timestamp,
) -> Result<Verified, SignatureError> {
    if let Some(signature) = headers.v3 {
        if !policy.accept_v3 {
            return Err(SignatureError::VersionNotAccepted("v3".into()));
        }
        let timestamp = headers.timestamp.ok_or(SignatureError::Missing)?;
        let sent_at: i64 = timestamp.trim().parse().map_err(|_| {
            SignatureError::Malformed("X-HubSpot-Request-Timestamp is not epoch milliseconds")
        })?;
        let off = now.as_millis().saturating_sub(sent_at);
        if off.abs() > policy.max_skew_ms {
            return Err(SignatureError::Stale {
                off_s: off / 1000,
                window_s: policy.max_skew_ms / 1000,
            });
        }
        let given = BASE64
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed("X-HubSpot-Signature-v3 is not base64"))?;
        let expected = v3_mac(secret, parts, timestamp.trim());
        return matches(&given, &expected)
            .then_some(Verified { version: "v3" })
            .ok_or(SignatureError::Mismatch);
    }
    let Some(signature) = headers.v1_v2 else {
        return Err(SignatureError::Missing);
    };
    let version = headers.version.map(str::trim).unwrap_or("v1");
    let (accepted, expected, name) = match version.to_ascii_lowercase().as_str() {
        "v1" => (policy.accept_v1, v1_digest(secret, parts.body), "v1"),
        "v2" => (policy.accept_v2, v2_digest(secret, parts), "v2"),
        _ => {
            return Err(SignatureError::VersionNotAccepted(
                version.chars().take(8).collect(),
            ));
        }
    };
    if !accepted {
        return Err(SignatureError::VersionNotAccepted(name.into()));
    }
    let given = hex::decode(signature.trim())
        .map_err(|_| SignatureError::Malformed("X-HubSpot-Signature is not hex"))?;
    matches(&given, &expected)
        .then_some(Verified { version: name })
        .ok_or(SignatureError::Mismatch)
}

/// Signs a request the way HubSpot does for v3: the value of `X-HubSpot-Signature-v3`.
/// Used by tests, the benchmark's load generator and the curl example in the README.
pub fn sign_v3(secret: &[u8], parts: SignedParts<'_>, timestamp_ms: &str) -> String {
    BASE64.encode(v3_mac(secret, parts, timestamp_ms))
}

/// The value of `X-HubSpot-Signature` for v1 (`v2 == false`) or v2.
pub fn sign_v1_v2(secret: &[u8], parts: SignedParts<'_>, v2: bool) -> String {
    hex::encode(if v2 {
        v2_digest(secret, parts)
    } else {
        v1_digest(secret, parts.body)
    })
}

fn v3_mac(secret: &[u8], parts: SignedParts<'_>, timestamp: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(parts.method.as_bytes());
    mac.update(v3_uri(parts.uri).as_bytes());
    mac.update(parts.body);
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn v1_digest(secret: &[u8], body: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(secret)
        .chain_update(body)
        .finalize()
        .to_vec()
}

fn v2_digest(secret: &[u8], parts: SignedParts<'_>) -> Vec<u8> {
    Sha256::new()
        .chain_update(secret)
        .chain_update(parts.method.as_bytes())
        .chain_update(parts.uri.as_bytes())
        .chain_update(parts.body)
        .finalize()
        .to_vec()
}

fn matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// HubSpot decodes exactly these escapes in the URI before signing v3 (and no others).
fn v3_uri(uri: &str) -> String {
    const DECODED: &[(&str, char)] = &[
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        let decoded = escape.and_then(|hex| {
            DECODED
                .iter()
                .find(|(code, _)| code.eq_ignore_ascii_case(hex))
                .map(|(_, ch)| *ch)
        });
        match decoded {
            Some(ch) => {
                out.push(ch);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
