//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): headers
//! `webhook-id`, `webhook-timestamp` (seconds) and `webhook-signature`, a space-separated
//! list of `v1,<base64>` entries (several during a secret rotation). The signed content is
//! `id.timestamp.body`, the key the base64-decoded secret after `whsec_`, and the
//! timestamp must be within five minutes either way.
//!
//! Written by hand rather than with the `svix` crate, which is a whole API client: this
//! is a few dozen lines over the HMAC crates the HubSpot verifier already uses.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use followthrough_core::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandardSignatureError {
    #[error("the configured secret is not `whsec_` followed by base64")]
    BadSecret,
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the allowed window of {TOLERANCE_S} s")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Proof that a request's Standard Webhooks signature was checked.
#[derive(Debug)]
pub struct Verified;

pub struct Headers<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

pub fn verify(
    secret: &str,
    headers: Headers<'_>,
    body: &[u8],
    now: Timestamp,
) -> Result<Verified, StandardSignatureError> {
    let key = decode_secret(secret)?;
    let id = headers
        .id
        .ok_or(StandardSignatureError::Missing("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(StandardSignatureError::Missing("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(StandardSignatureError::Missing("webhook-signature"))?;
    let sent_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| StandardSignatureError::BadTimestamp)?;
    if (now.as_millis() / 1000 - sent_at).abs() > TOLERANCE_S {
        return Err(StandardSignatureError::Stale);
    }
    let expected = mac(&key, id, timestamp.trim(), body);
    let matched = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|given| given.len() == expected.len() && bool::from(given.ct_eq(&expected)));
    matched
        .then_some(Verified)
        .ok_or(StandardSignatureError::Mismatch)
}

/// The `webhook-signature` value for a request (one `v1,` entry).
pub fn sign(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<String, StandardSignatureError> {
    Ok(format!(
        "v1,{}",
        BASE64.encode(mac(&decode_secret(secret)?, id, timestamp, body))
    ))
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, StandardSignatureError> {
    BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| StandardSignatureError::BadSecret)
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../../../../tests/fixtures/signature-vectors.json");

    struct Vector {
        secret: String,
        id: String,
        timestamp: String,
        body: String,
        signature: String,
    }

    fn vector() -> Vector {
        let all: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let v = &all["standard_webhooks_v1"];
        let text = |key: &str| v[key].as_str().unwrap().to_owned();
        Vector {
            secret: text("secret"),
            id: text("webhook_id"),
            timestamp: text("webhook_timestamp"),
            body: text("body"),
            signature: text("signature"),
        }
    }

    fn check(v: &Vector) -> Result<Verified, StandardSignatureError> {
        let now = Timestamp(1_649_367_553_000 + 10_000);
        let headers = Headers {
            id: Some(&v.id),
            timestamp: Some(&v.timestamp),
            signature: Some(&v.signature),
        };
        verify(&v.secret, headers, v.body.as_bytes(), now)
    }

    /// Changes one byte of the text, keeping it ASCII (and base64 where it was).
    fn one_byte_off(text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_known_answer_vector_verifies_and_signs() {
        let v = vector();
        assert!(check(&v).is_ok());
        assert_eq!(
            sign(&v.secret, &v.id, &v.timestamp, v.body.as_bytes()).unwrap(),
            v.signature
        );
    }

    #[test]
    fn a_one_byte_change_to_any_input_fails() {
        let v = vector();
        for changed in [
            Vector {
                body: one_byte_off(&v.body),
                ..vector()
            },
            Vector {
                secret: one_byte_off(&v.secret),
                ..vector()
            },
            Vector {
                id: one_byte_off(&v.id),
                ..vector()
            },
            Vector {
                timestamp: (v.timestamp.parse::<i64>().unwrap() + 1).to_string(),
                ..vector()
            },
            Vector {
                signature: one_byte_off(&v.signature),
                ..vector()
            },
        ] {
            assert_eq!(
                check(&changed).unwrap_err(),
                StandardSignatureError::Mismatch
            );
        }
    }

    #[test]
    fn any_entry_of_a_rotation_list_may_match_and_stale_requests_fail() {
        let v = vector();
        let rotated = Vector {
            signature: format!("v1,{} {}", BASE64.encode([0u8; 32]), v.signature),
            ..vector()
        };
        assert!(check(&rotated).is_ok());
        let headers = Headers {
            id: Some(&v.id),
            timestamp: Some(&v.timestamp),
            signature: Some(&v.signature),
        };
        let late = Timestamp((1_649_367_553 + TOLERANCE_S + 1) * 1000);
        assert_eq!(
            verify(&v.secret, headers, v.body.as_bytes(), late).unwrap_err(),
            StandardSignatureError::Stale
        );
    }
}
