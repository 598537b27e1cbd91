//! Splitting a compact JWS (RFC 7515, section 7.1) and reading its header before the signature
//! is checked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::{json_kind, AuthError};

/// The maximum token length accepted, in bytes. Real tokens are a few kilobytes at most, and
/// the limit bounds the work spent on a request before its signature is checked.
pub const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// The header fields that select the key, read from a token whose signature is not checked yet.
#[derive(Debug)]
pub(super) struct UnverifiedHeader {
    /// `alg` exactly as written.
    pub alg: String,
    pub kid: Option<String>,
    /// The whole header, for jsonwebtoken's own header checks.
    pub header: Value,
}

/// Checks the token's shape and returns its header. Fails with `invalid_token` unless the
/// token has three base64url segments and a JSON object header with a string `alg`.
pub(super) fn read_header(token: &str) -> Result<UnverifiedHeader, AuthError> {
    if token.is_empty() {
        return Err(AuthError::InvalidToken("the token is empty".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::InvalidToken(format!(
            "the token is {} bytes, more than the {MAX_TOKEN_BYTES} this server accepts",
            token.len()
        )));
    }
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() == 5 {
        return Err(AuthError::InvalidToken(
            "the token is an encrypted JWT (JWE, five segments); send a signed JWT (JWS)".into(),
        ));
    }
    if segments.len() != 3 {
        return Err(AuthError::InvalidToken(format!(
            "the token is not a JWT, which has three dot-separated segments (header, payload \
             and signature); this one has {}",
            segments.len()
        )));
    }
    for (segment, name) in segments.iter().zip(["header", "payload", "signature"]) {
        if URL_SAFE_NO_PAD.decode(segment).is_err() {
            return Err(AuthError::InvalidToken(format!(
                "the token {name} is not unpadded base64url"
            )));
        }
    }

    let header_bytes = URL_SAFE_NO_PAD
        .decode(segments[0])
        .expect("checked to be base64url above");
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes).map_err(|err| {
        AuthError::InvalidToken(format!("the token header is not a JSON object ({err})"))
    })?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(other) => {
            return Err(AuthError::InvalidToken(format!(
                "the token header \"alg\" must be a string, but it is {}",
                json_kind(other)
            )))
        }
        None => {
            return Err(AuthError::InvalidToken(
                "the token header has no \"alg\"".into(),
            ))
        }
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        None => None,
        Some(other) => {
            return Err(AuthError::InvalidToken(format!(
                "the token header \"kid\" must be a string, but it is {}",
                json_kind(other)
            )))
        }
    };
    Ok(UnverifiedHeader {
        alg,
        kid,
        header: Value::Object(header),
    })
}
