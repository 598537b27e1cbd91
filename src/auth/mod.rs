//! Bearer token (JWT) verification: which database role a request runs as.
//!
//! [`AuthConfig`] contains the validated `auth:` settings. [`Authenticator`] loads the keys once at
//! startup and checks each request's token: the signature (HS256 with the shared secret, RS256
//! or ES256 with the public keys), `exp` and `nbf` with the allowed clock skew, `iss` and `aud`
//! when configured, and the role claim. It returns the [`Identity`] whose role and claims the
//! request runs with. A request without a token runs as the anonymous role when one is set.
//!
//! The algorithm is taken from the configuration, never from the token alone: HS256 is accepted
//! only when a secret is set, and RS256 or ES256 only when a public key of that type is loaded.
//! So an unsigned token (`"alg": "none"`) or an HS256 token signed with a public key as the
//! HMAC secret is rejected.

mod bearer;
mod claims;
mod error;
mod keys;
mod settings;
mod token;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

pub use bearer::bearer_token;
pub use error::{AuthError, AuthSetupError};
pub use keys::{MAX_RSA_BITS, MIN_RSA_BITS};
pub use settings::{AuthConfig, AuthFile, MAX_LEEWAY_SECS, MAX_ROLE_BYTES, MIN_SECRET_BYTES};
pub use token::MAX_TOKEN_BYTES;

use keys::{SkippedKey, VerificationKey};

/// The role and claims that a request runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The database role: the token's role claim, the default role, or the anonymous role.
    pub role: String,
    /// The verified claims as the JSON text of the token's payload object, keys in the order
    /// sent (`{}` for anonymous requests). This is the value for
    /// `set_config('request.jwt.claims', ..., true)`.
    pub claims_json: String,
    /// The `sub` claim when it is a string.
    pub subject: Option<String>,
    /// True when the request had no token and runs as the anonymous role.
    pub anonymous: bool,
}

/// Verifies bearer tokens. Built once at startup; cloning shares the loaded keys.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthConfig,
    secret: Option<DecodingKey>,
    jwks_keys: Vec<VerificationKey>,
    jwks_skipped: Vec<SkippedKey>,
    pem_key: Option<VerificationKey>,
    /// The algorithms that the keys above verify, in the order HS256, RS256, ES256.
    algorithms: Vec<Algorithm>,
}

impl Authenticator {
    /// Validates `config` and reads the key files.
    ///
    /// Fails when a setting breaks a rule of [`AuthConfig::validate`], or when a key file is
    /// missing, unreadable or contains no usable key; the error names the path and the problem.
    /// JWKS entries that cannot be used (encryption keys, other algorithms) are skipped with a
    /// warning.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, AuthSetupError> {
        config.validate()?;
        let secret = config.jwt_secret.as_ref().map(|secret| {
            DecodingKey::from_secret(secret.as_bytes()).expect("validate() rejects an empty secret")
        });
        let (jwks_keys, jwks_skipped) = match &config.jwks_file {
            Some(path) => {
                let loaded = keys::load_jwks(path)?;
                (loaded.keys, loaded.skipped)
            }
            None => (Vec::new(), Vec::new()),
        };
        let pem_key = match &config.public_key_file {
            Some(path) => Some(keys::load_pem(path)?),
            None => None,
        };

        let mut algorithms = Vec::new();
        if secret.is_some() {
            algorithms.push(Algorithm::HS256);
        }
        for algorithm in [Algorithm::RS256, Algorithm::ES256] {
            let loaded = jwks_keys
                .iter()
                .chain(&pem_key)
                .any(|key| key.algorithm == algorithm);
            if loaded {
                algorithms.push(algorithm);
            }
        }

        Ok(Authenticator {
            inner: Arc::new(Inner {
                config: config.clone(),
                secret,
                jwks_keys,
                jwks_skipped,
                pem_key,
                algorithms,
            }),
        })
    }

    /// True when any of a secret, a key file or an anonymous role is configured. When false,
    /// every request fails, with `missing_token` or `no_verification_key`.
    pub fn is_configured(&self) -> bool {
        let config = &self.inner.config;
        config.jwt_secret.is_some()
            || config.jwks_file.is_some()
            || config.public_key_file.is_some()
            || config.anon_role.is_some()
    }

    /// Returns whether `GET /ws` accepts the token as the `access_token` query parameter.
    pub fn websocket_query_token(&self) -> bool {
        self.inner.config.websocket_query_token
    }

    /// Describes the accepted algorithms, the key ids and the anonymous role in one line for
    /// the startup log. The line never contains the secret.
    pub fn summary(&self) -> String {
        let inner = &self.inner;
        let mut parts = Vec::new();
        if inner.algorithms.is_empty() {
            parts.push("no token verification key".to_string());
        } else {
            parts.push(format!("accepts {}", algorithm_list(&inner.algorithms)));
        }
        if !inner.jwks_keys.is_empty() {
            let kids: Vec<String> = inner
                .jwks_keys
                .iter()
                .map(|key| key.kid.as_deref().map(quote).unwrap_or("(no kid)".into()))
                .collect();
            parts.push(format!("JWKS keys {}", kids.join(", ")));
        }
        match &inner.config.anon_role {
            Some(role) => parts.push(format!("anonymous role {}", quote(role))),
            None => parts.push("no anonymous access".to_string()),
        }
        parts.join("; ")
    }

    /// Returns the identity of a request.
    ///
    /// `token` is the bearer token without the `Bearer ` prefix, or None when the request had
    /// none. Without a token the request runs as the anonymous role, or fails with
    /// `missing_token` when none is set. A token is verified as the module documentation
    /// describes, and its role is the role claim, else the default role, else `missing_role`.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        self.authenticate_at(token, unix_now())
    }

    /// [`Authenticator::authenticate`] with the current time given in Unix seconds.
    fn authenticate_at(&self, token: Option<&str>, now: i64) -> Result<Identity, AuthError> {
        let inner = &self.inner;
        let config = &inner.config;
        let Some(token) = token else {
            return match &config.anon_role {
                Some(role) => Ok(Identity {
                    role: role.clone(),
                    claims_json: "{}".into(),
                    subject: None,
                    anonymous: true,
                }),
                None => Err(AuthError::MissingToken),
            };
        };
        if inner.algorithms.is_empty() {
            return Err(AuthError::NoVerificationKey);
        }

        let header = token::read_header(token)?;
        let algorithm = self.accepted_algorithm(&header.alg)?;
        let (key, key_name) = match algorithm {
            Algorithm::HS256 => (
                inner
                    .secret
                    .as_ref()
                    .expect("HS256 is accepted only with a secret"),
                "the HS256 secret".to_string(),
            ),
            _ => {
                let key = self.select_public_key(algorithm, header.kid.as_deref())?;
                (&key.key, key.describe())
            }
        };
        // jsonwebtoken checks `crit` and `b64` in its own header parser.
        serde_json::from_value::<jsonwebtoken::Header>(header.header).map_err(|err| {
            AuthError::InvalidToken(format!("the token header is not valid ({err})"))
        })?;
        let claims = verify_signature(token, key, algorithm, &key_name)?;

        claims::check_times(&claims, now, config.leeway_secs, config.require_exp)?;
        if let Some(issuer) = &config.issuer {
            claims::check_issuer(&claims, issuer)?;
        }
        if let Some(audience) = &config.audience {
            claims::check_audience(&claims, audience)?;
        }
        let role = claims::role(&claims, &config.role_claim, config.default_role.as_deref())?;
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let claims_json = serde_json::to_string(&claims).expect("a JSON object always serializes");
        Ok(Identity {
            role,
            claims_json,
            subject,
            anonymous: false,
        })
    }

    /// Maps the header's `alg` to an algorithm that the configured keys verify.
    fn accepted_algorithm(&self, alg: &str) -> Result<Algorithm, AuthError> {
        let accepted = &self.inner.algorithms;
        let algorithm = match alg {
            "HS256" => Some(Algorithm::HS256),
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        };
        if let Some(algorithm) = algorithm.filter(|a| accepted.contains(a)) {
            return Ok(algorithm);
        }
        let accepted = algorithm_list(accepted);
        let message = if alg.eq_ignore_ascii_case("none") {
            format!(
                "token algorithm {} marks an unsigned token, and unsigned tokens are never \
                 accepted; sign the token with {accepted}",
                quote(alg)
            )
        } else if alg.starts_with("HS") && self.inner.secret.is_none() {
            format!(
                "token algorithm {} (HMAC) is not accepted, because this server verifies tokens \
                 with public keys only; sign the token with {accepted}",
                quote(alg)
            )
        } else {
            format!(
                "token algorithm {} is not accepted; this server accepts {accepted}",
                quote(alg)
            )
        };
        Err(AuthError::UnsupportedAlgorithm(message))
    }

    /// Picks the public key for an RS256 or ES256 token.
    ///
    /// A `kid` selects the JWKS key with that id. Otherwise, or when no JWKS key has that id,
    /// the PEM key is used if it verifies `algorithm`, and then the only JWKS key for
    /// `algorithm` when the token has no `kid`.
    fn select_public_key(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<&VerificationKey, AuthError> {
        let inner = &self.inner;
        if let Some(kid) = kid {
            if let Some(key) = inner
                .jwks_keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
            {
                if key.algorithm != algorithm {
                    return Err(AuthError::InvalidToken(format!(
                        "the token header names algorithm {algorithm:?}, but {} is an {:?} key",
                        key.describe(),
                        key.algorithm
                    )));
                }
                return Ok(key);
            }
        }
        if let Some(key) = inner.pem_key.as_ref().filter(|k| k.algorithm == algorithm) {
            return Ok(key);
        }

        let Some(kid) = kid else {
            let candidates: Vec<&VerificationKey> = inner
                .jwks_keys
                .iter()
                .filter(|k| k.algorithm == algorithm)
                .collect();
            return match candidates.as_slice() {
                [key] => Ok(key),
                _ => Err(AuthError::UnknownKey(format!(
                    "the token header has no \"kid\", and the JWKS file has {} {algorithm:?} \
                     keys, so the key is ambiguous; issue tokens with a \"kid\" header",
                    candidates.len()
                ))),
            };
        };
        if let Some(skipped) = inner
            .jwks_skipped
            .iter()
            .find(|s| s.kid.as_deref() == Some(kid))
        {
            return Err(AuthError::UnknownKey(format!(
                "key {} of the JWKS file was skipped at startup because {}",
                quote(kid),
                skipped.reason
            )));
        }
        const SHOWN: usize = 5;
        let known: Vec<String> = inner
            .jwks_keys
            .iter()
            .filter_map(|k| k.kid.as_deref())
            .take(SHOWN)
            .map(quote)
            .collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        Err(AuthError::UnknownKey(format!(
            "no configured {algorithm:?} key has kid {} (known kids: {known}); if the issuer \
             rotated its keys, update the JWKS file and restart walgate",
            quote(kid)
        )))
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("summary", &self.summary())
            .finish_non_exhaustive()
    }
}

/// Checks the signature with jsonwebtoken and returns the payload object.
///
/// jsonwebtoken's own claim checks are turned off, because [`claims`] checks `exp`, `nbf`,
/// `iss` and `aud` with messages that name the values.
fn verify_signature(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    key_name: &str,
) -> Result<Map<String, Value>, AuthError> {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(err) => Err(AuthError::InvalidToken(match err.kind() {
            ErrorKind::InvalidSignature => format!(
                "the token signature does not match {key_name}; the token was signed with \
                 another key or altered"
            ),
            ErrorKind::Json(json) => format!("the token payload is not a JSON object ({json})"),
            ErrorKind::Utf8(_) => "the token payload is not UTF-8".to_string(),
            _ => format!("the token cannot be verified with {key_name} ({err})"),
        })),
    }
}

/// Lists algorithms for messages: `HS256`, `RS256 or ES256`, `HS256, RS256 or ES256`.
fn algorithm_list(algorithms: &[Algorithm]) -> String {
    let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
    match names.split_last() {
        None => "no algorithm".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Quotes a value taken from a token or a setting for a message. Debug escaping keeps the
/// message on one line, and values longer than 64 bytes are cut, with `...` after the quote.
pub(crate) fn quote(value: &str) -> String {
    const MAX_BYTES: usize = 64;
    if value.len() <= MAX_BYTES {
        return format!("{value:?}");
    }
    let mut end = MAX_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &value[..end])
}

/// Names the JSON type of a value for messages, with its article: `a number`, `an array`.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}
