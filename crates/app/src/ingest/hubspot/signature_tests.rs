//! Known-answer vectors from `tests/fixtures/signature-vectors.json`, and a one-byte
//! change to each input failing each.

use super::*;

const VECTORS: &str = include_str!("../../../../../tests/fixtures/signature-vectors.json");

fn vectors() -> serde_json::Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn all_versions() -> SignaturePolicy {
    SignaturePolicy {
        accept_v1: true,
        accept_v2: true,
        accept_v3: true,
        max_skew_ms: 300_000,
    }
}

fn text<'a>(vector: &'a serde_json::Value, key: &str) -> &'a str {
    vector[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key}"))
}

/// Flips the last byte of a string (keeps it ASCII).
fn one_byte_off(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let last = bytes.last_mut().unwrap();
    *last = if *last == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

fn check_v3(
    secret: &str,
    uri: &str,
    body: &str,
    timestamp: &str,
    signature: &str,
) -> Result<Verified, SignatureError> {
    let now = Timestamp(timestamp.parse::<i64>().unwrap_or(0) + 1_000);
    verify(
        secret.as_bytes(),
        SignedParts {
            method: "POST",
            uri,
            body: body.as_bytes(),
        },
        SignatureHeaders {
            v3: Some(signature),
            timestamp: Some(timestamp),
            ..Default::default()
        },
        &all_versions(),
        now,
    )
}

#[test]
fn v3_vector_verifies_and_each_one_byte_change_fails() {
    let all = vectors();
    let v = &all["hubspot_v3"];
    let (secret, uri, body, ts, sig) = (
        text(v, "client_secret"),
        text(v, "uri"),
        text(v, "body"),
        text(v, "timestamp_ms"),
        text(v, "signature"),
    );
    assert_eq!(check_v3(secret, uri, body, ts, sig).unwrap().version, "v3");
    assert_eq!(
        sign_v3(
            secret.as_bytes(),
            SignedParts {
                method: "POST",
                uri,
                body: body.as_bytes()
            },
            ts
        ),
        sig
    );

    assert_eq!(
        check_v3(&one_byte_off(secret), uri, body, ts, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v3(secret, &one_byte_off(uri), body, ts, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v3(secret, uri, &one_byte_off(body), ts, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    // The timestamp is signed: a changed one fails even while it is inside the window.
    let later = (ts.parse::<i64>().unwrap() + 1).to_string();
    let now = Timestamp(ts.parse::<i64>().unwrap());
    let result = verify(
        secret.as_bytes(),
        SignedParts {
            method: "POST",
            uri,
            body: body.as_bytes(),
        },
        SignatureHeaders {
            v3: Some(sig),
            timestamp: Some(&later),
            ..Default::default()
        },
        &all_versions(),
        now,
    );
    assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
}

#[test]
fn v3_rejects_stale_and_future_timestamps() {
    let all = vectors();
    let v = &all["hubspot_v3"];
    let ts: i64 = text(v, "timestamp_ms").parse().unwrap();
    let parts = SignedParts {
        method: "POST",
        uri: text(v, "uri"),
        body: text(v, "body").as_bytes(),
    };
    let headers = SignatureHeaders {
        v3: Some(text(v, "signature")),
        timestamp: Some(text(v, "timestamp_ms")),
        ..Default::default()
    };
    let secret = text(v, "client_secret").as_bytes();
    for now in [ts + 300_001, ts - 300_001] {
        let error = verify(secret, parts, headers, &all_versions(), Timestamp(now)).unwrap_err();
        assert!(matches!(error, SignatureError::Stale { .. }), "{error:?}");
    }
    assert!(
        verify(
            secret,
            parts,
            headers,
            &all_versions(),
            Timestamp(ts + 300_000)
        )
        .is_ok()
    );
}

#[test]
fn v3_decodes_only_the_documented_escapes_of_the_uri() {
    assert_eq!(
        v3_uri("https://x.io/a%3Ab%2fc?d=%40e%20f"),
        "https://x.io/a:b/c?d=@e%20f"
    );
    assert_eq!(v3_uri("https://x.io/%"), "https://x.io/%");
}

fn check_v1_v2(
    version: &str,
    secret: &str,
    uri: &str,
    body: &str,
    signature: &str,
) -> Result<Verified, SignatureError> {
    verify(
        secret.as_bytes(),
        SignedParts {
            method: "POST",
            uri,
            body: body.as_bytes(),
        },
        SignatureHeaders {
            v1_v2: Some(signature),
            version: Some(version),
            ..Default::default()
        },
        &all_versions(),
        Timestamp(0),
    )
}

#[test]
fn v1_vector_verifies_and_each_one_byte_change_fails() {
    let all = vectors();
    let v = &all["hubspot_v1"];
    let (secret, body, sig) = (
        text(v, "client_secret"),
        text(v, "body"),
        text(v, "signature"),
    );
    let uri = "https://ignored.example/by-v1";
    assert_eq!(
        check_v1_v2("v1", secret, uri, body, sig).unwrap().version,
        "v1"
    );
    assert_eq!(
        check_v1_v2("v1", &one_byte_off(secret), uri, body, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v1_v2("v1", secret, uri, &one_byte_off(body), sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v1_v2("v1", secret, uri, body, &one_byte_off(sig)).unwrap_err(),
        SignatureError::Mismatch
    );
}

#[test]
fn v2_vector_verifies_and_each_one_byte_change_fails() {
    let all = vectors();
    let v = &all["hubspot_v2"];
    let (secret, uri, body, sig) = (
        text(v, "client_secret"),
        text(v, "uri"),
        text(v, "body"),
        text(v, "signature"),
    );
    assert_eq!(
        check_v1_v2("v2", secret, uri, body, sig).unwrap().version,
        "v2"
    );
    assert_eq!(
        sign_v1_v2(
            secret.as_bytes(),
            SignedParts {
                method: "POST",
                uri,
                body: body.as_bytes()
            },
            true
        ),
        sig
    );
    assert_eq!(
        check_v1_v2("v2", &one_byte_off(secret), uri, body, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v1_v2("v2", secret, &one_byte_off(uri), body, sig).unwrap_err(),
        SignatureError::Mismatch
    );
    assert_eq!(
        check_v1_v2("v2", secret, uri, &one_byte_off(body), sig).unwrap_err(),
        SignatureError::Mismatch
    );
}

#[test]
fn versions_are_accepted_only_where_configured() {
    let all = vectors();
    let v = &all["hubspot_v1"];
    let policy = SignaturePolicy {
        accept_v1: false,
        accept_v2: false,
        accept_v3: true,
        max_skew_ms: 300_000,
    };
    let result = verify(
        text(v, "client_secret").as_bytes(),
        SignedParts {
            method: "POST",
            uri: "https://x/",
            body: text(v, "body").as_bytes(),
        },
        SignatureHeaders {
            v1_v2: Some(text(v, "signature")),
            version: Some("v1"),
            ..Default::default()
        },
        &policy,
        Timestamp(0),
    );
    assert_eq!(
        result.unwrap_err(),
        SignatureError::VersionNotAccepted("v1".into())
    );
    let missing = verify(
        b"s",
        SignedParts {
            method: "POST",
            uri: "https://x/",
            body: b"[]",
        },
        SignatureHeaders::default(),
        &policy,
        Timestamp(0),
    );
    assert_eq!(missing.unwrap_err(), SignatureError::Missing);
}
