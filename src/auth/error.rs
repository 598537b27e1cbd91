//! Errors of token verification and of loading the keys.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Reason a request was not authenticated. The message is one line meant for the client: it names
/// the value at fault and what to do, and never contains the secret or the whole token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request had no token and anonymous access is disabled.
    #[error(
        "missing bearer token: send `Authorization: Bearer <JWT>`; this server has no \
         anonymous role, so every request needs a token"
    )]
    MissingToken,
    /// The Authorization header is present but does not hold one bearer token.
    #[error("invalid Authorization header: {0}")]
    InvalidAuthorizationHeader(String),
    /// The request has a token, but no secret or public key is configured to verify it.
    #[error(
        "bearer token cannot be verified: this server has no WALGATE_JWT_SECRET, \
         WALGATE_JWKS_FILE or auth.public_key_file set; configure one of them to accept tokens"
    )]
    NoVerificationKey,
    /// The token is malformed, its signature does not match, or a claim has the wrong type.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The `exp` claim is past, beyond the allowed clock skew.
    #[error("{0}")]
    TokenExpired(String),
    /// The `nbf` claim is in the future, beyond the allowed clock skew.
    #[error("{0}")]
    TokenNotYetValid(String),
    /// The `iss` claim is missing or is not the configured issuer.
    #[error("{0}")]
    InvalidIssuer(String),
    /// The `aud` claim is missing or does not contain the configured audience.
    #[error("{0}")]
    InvalidAudience(String),
    /// The token's `alg` is not one that the configured keys verify.
    #[error("{0}")]
    UnsupportedAlgorithm(String),
    /// No configured public key matches the token's `kid`, or the key is ambiguous.
    #[error("{0}")]
    UnknownKey(String),
    /// The token has no role claim and no default role is configured.
    #[error("{0}")]
    MissingRole(String),
}

impl AuthError {
    /// Returns a stable snake_case code for JSON error bodies, one for each variant: `missing_token`,
    /// `invalid_authorization_header`, `no_verification_key`, `invalid_token`,
    /// `token_expired`, `token_not_yet_valid`, `invalid_issuer`, `invalid_audience`,
    /// `unsupported_algorithm`, `unknown_key` or `missing_role`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidAuthorizationHeader(_) => "invalid_authorization_header",
            AuthError::NoVerificationKey => "no_verification_key",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokenExpired(_) => "token_expired",
            AuthError::TokenNotYetValid(_) => "token_not_yet_valid",
            AuthError::InvalidIssuer(_) => "invalid_issuer",
            AuthError::InvalidAudience(_) => "invalid_audience",
            AuthError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::MissingRole(_) => "missing_role",
        }
    }
}

/// Failure of [`Authenticator::new`](super::Authenticator::new) to load the settings or keys.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The settings break a rule of [`AuthConfig::validate`](super::AuthConfig::validate).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file could not be read.
    #[error("cannot read {kind} file {}: {source}", path.display())]
    Read {
        /// `JWKS` or `public key`.
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file was read but contains no usable key.
    #[error("invalid {kind} file {}: {message}", path.display())]
    Invalid {
        /// `JWKS` or `public key`.
        kind: &'static str,
        path: PathBuf,
        message: String,
    },
}
