//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! A receiver checks `webhook-signature` against HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, so any Standard Webhooks library can verify
//! walgate's deliveries.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of secrets in the Standard Webhooks format: `whsec_` followed by base64.
const SECRET_PREFIX: &str = "whsec_";

/// Error from parsing a signing secret. The text never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error(
        "secret is empty; set it to a random value, such as whsec_ followed by 32 random bytes \
         in base64"
    )]
    Empty,
    #[error(
        "secret starts with whsec_ but the rest is not valid base64; copy the whole whsec_ \
         secret again, or drop the prefix to use the text itself as the key"
    )]
    InvalidBase64,
}

/// An HMAC-SHA256 key for signing webhook requests.
#[derive(Clone)]
pub struct SigningKey {
    key: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses a secret. `whsec_<base64>` is decoded with the standard base64 alphabet and
    /// padding, as the Standard Webhooks libraries do. Any other non-empty string is used as
    /// its raw UTF-8 bytes.
    ///
    /// # Errors
    /// [`SigningError::Empty`] for an empty secret or an empty decoded key, and
    /// [`SigningError::InvalidBase64`] for a `whsec_` secret that does not decode.
    pub fn parse(secret: &str) -> Result<SigningKey, SigningError> {
        let key = match secret.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => STANDARD
                .decode(encoded)
                .map_err(|_| SigningError::InvalidBase64)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SigningError::Empty);
        }
        Ok(SigningKey { key })
    }

    /// Signs one delivery: returns `v1,` followed by the base64 HMAC-SHA256 of
    /// `{msg_id}.{timestamp}.{body}`, the value of the `webhook-signature` header.
    /// `timestamp` is in seconds since the Unix epoch, as sent in `webhook-timestamp`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vector from the `test_sign` test of the Standard Webhooks reference Rust
    // library, github.com/standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs.
    #[test]
    fn sign_matches_reference_library() {
        let key = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let signature = key.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn raw_secret_signs_its_utf8_bytes() {
        // The base64 text of the vector's key, used without the prefix, is a different key.
        let raw = SigningKey::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(raw.key, b"C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let decoded = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(decoded.key.len(), 24);
        assert_ne!(raw.sign("m", 1, b"{}"), decoded.sign("m", 1, b"{}"));
    }

    #[test]
    fn empty_secrets_are_rejected() {
        assert_eq!(SigningKey::parse("").unwrap_err(), SigningError::Empty);
        assert_eq!(
            SigningKey::parse("whsec_").unwrap_err(),
            SigningError::Empty
        );
    }

    #[test]
    fn invalid_base64_is_rejected() {
        let err = SigningKey::parse("whsec_not base64!").unwrap_err();
        assert_eq!(err, SigningError::InvalidBase64);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SigningKey::parse("super-secret-value").unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    }
}
