//! Who may use the admin API and the web console: bearer tokens, kept as SHA-256 digests.
//!
//! Tokens are random (`followthrough token` makes 32 random bytes), so a plain
//! SHA-256 is the right hash: a slow password hash (argon2) protects guessable secrets,
//! and these are not guessable. The config holds `sha256:<hex>` digests, so a leaked
//! config file does not hand out access. A token written in clear is still accepted (and
//! hashed at load), with a warning at start-up.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const DIGEST_PREFIX: &str = "sha256:";

/// The tokens this server accepts.
#[derive(Clone, Default)]
pub struct AdminTokens {
    digests: Vec<[u8; 32]>,
}

/// Shows how many, never the digests.
impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminTokens({} configured)", self.digests.len())
    }
}

/// A token that was recognised: its digest's first 12 hex digits name it in the
/// journal and logs (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId(pub String);

/// Why a configured token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenConfigError {
    #[error("api.tokens[{0}] is empty")]
    Empty(usize),
    #[error("api.tokens[{0}] starts with `sha256:` but is not 64 hex digits after it")]
    BadDigest(usize),
}

impl AdminTokens {
    /// From `api.tokens`: `sha256:<hex>` digests, or tokens in clear (counted in
    /// `plain`, so the caller can warn).
    pub fn from_config(entries: &[SecretString]) -> Result<(Self, usize), TokenConfigError> {
        let mut digests = Vec::with_capacity(entries.len());
        let mut plain = 0;
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.expose_secret().trim();
            if text.is_empty() {
                return Err(TokenConfigError::Empty(index));
            }
            match text.strip_prefix(DIGEST_PREFIX) {
                Some(hex_digest) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest, &mut digest)
                        .map_err(|_| TokenConfigError::BadDigest(index))?;
                    digests.push(digest);
                }
                None => {
                    plain += 1;
                    digests.push(Sha256::digest(text.as_bytes()).into());
                }
            }
        }
        Ok((Self { digests }, plain))
    }

    /// No token configured: the API and console refuse everyone.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The token's id if it is one of ours. Every configured digest is compared, in
    /// constant time, so timing tells nothing about which one nearly matched.
    pub fn verify(&self, presented: &str) -> Option<TokenId> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for known in &self.digests {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(TokenId(hex::encode(&known[..6])));
            }
        }
        found
    }

    /// Whether `id` names a token still configured: a console session of a token since
    /// removed from `api.tokens` ends at the next restart, whatever its expiry.
    pub fn knows(&self, id: &TokenId) -> bool {
        self.digests
            .iter()
            .any(|digest| hex::encode(&digest[..6]) == id.0)
    }

    /// The token from an `Authorization: Bearer ...` header value, if it is ours.
    pub fn verify_bearer(&self, header: &str) -> Option<TokenId> {
        let (scheme, token) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.verify(token)
    }
}

/// A new random token and the digest to put in `api.tokens`.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("ft_{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = digest_of(&token);
    (token, digest)
}

/// `sha256:<hex>` of a token, the form `api.tokens` keeps.
pub fn digest_of(token: &str) -> String {
    format!(
        "{DIGEST_PREFIX}{}",
        hex::encode(Sha256::digest(token.trim().as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(entries: &[&str]) -> Vec<SecretString> {
        entries.iter().map(|e| SecretString::from(*e)).collect()
    }

    #[test]
    fn a_token_is_accepted_by_its_digest_or_in_clear() {
        let (token, digest) = new_token();
        let (tokens, plain) = AdminTokens::from_config(&secrets(&[&digest, "dev-token"])).unwrap();
        assert_eq!(plain, 1);
        assert!(tokens.verify(&token).is_some());
        assert!(tokens.verify("dev-token").is_some());
        assert_eq!(tokens.verify("dev-token-2"), None);
        assert_eq!(tokens.verify(""), None);
        assert!(tokens.verify_bearer(&format!("Bearer {token}")).is_some());
        assert!(tokens.verify_bearer(&format!("bearer {token}")).is_some());
        assert_eq!(tokens.verify_bearer(&format!("Basic {token}")), None);
        assert_eq!(tokens.verify_bearer(&token), None);
    }

    #[test]
    fn the_id_names_the_digest_not_the_token() {
        let (token, digest) = new_token();
        let (tokens, _) = AdminTokens::from_config(&secrets(&[&digest])).unwrap();
        let id = tokens.verify(&token).unwrap();
        assert_eq!(id.0.len(), 12);
        assert!(digest.contains(&id.0));
        assert!(!token.contains(&id.0));
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        assert_eq!(
            AdminTokens::from_config(&secrets(&["ok", " "])).err(),
            Some(TokenConfigError::Empty(1))
        );
        assert_eq!(
            AdminTokens::from_config(&secrets(&["sha256:abc"])).err(),
            Some(TokenConfigError::BadDigest(0))
        );
    }
}
