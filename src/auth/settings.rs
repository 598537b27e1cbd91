//! The `auth:` section of the settings and its environment overrides.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// The shortest HS256 secret accepted, in bytes. RFC 7518, section 3.2, requires a key at least
/// as long as the 256-bit hash output.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest PostgreSQL identifier, in bytes (`NAMEDATALEN - 1`), and so the longest role name.
pub const MAX_ROLE_BYTES: usize = 63;

/// The largest accepted `leeway_secs`, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// The `auth:` section of the YAML config as written. Every field is optional. Environment
/// variables override some of them in [`AuthConfig::resolve`].
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// HS256 shared secret, at least 32 bytes. `WALGATE_JWT_SECRET` overrides it.
    pub jwt_secret: Option<String>,
    /// JWKS JSON file with RS256 and ES256 public keys. `WALGATE_JWKS_FILE` overrides it.
    pub jwks_file: Option<PathBuf>,
    /// One PEM public key: RSA for RS256, or EC P-256 for ES256.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required member of the `aud` claim (a string or an array of strings), when set.
    pub audience: Option<String>,
    /// Role of requests without a token. An empty string disables anonymous access, as does
    /// leaving it unset. `WALGATE_ANON_ROLE` overrides it.
    pub anon_role: Option<String>,
    /// Role of a valid token that has no role claim.
    pub default_role: Option<String>,
    /// Name of the top-level claim that contains the role; `role` when unset.
    pub role_claim: Option<String>,
    /// Whether tokens without an `exp` claim are rejected; true when unset.
    pub require_exp: Option<bool>,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds; 30 when unset, at most 300.
    pub leeway_secs: Option<u64>,
    /// Whether `GET /ws` accepts the token as `?access_token=`; false when unset.
    pub websocket_query_token: Option<bool>,
}

impl fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFile")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_file", &self.jwks_file)
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("anon_role", &self.anon_role)
            .field("default_role", &self.default_role)
            .field("role_claim", &self.role_claim)
            .field("require_exp", &self.require_exp)
            .field("leeway_secs", &self.leeway_secs)
            .field("websocket_query_token", &self.websocket_query_token)
            .finish()
    }
}

/// Validated authentication settings. `Debug` prints the secret as `<redacted>`.
#[derive(Clone)]
pub struct AuthConfig {
    /// HS256 shared secret; None disables HS256.
    pub jwt_secret: Option<String>,
    /// JWKS file with RS256 and ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// PEM file with one RS256 or ES256 public key.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    pub issuer: Option<String>,
    /// Required member of the `aud` claim.
    pub audience: Option<String>,
    /// Role of requests without a token; None rejects them.
    pub anon_role: Option<String>,
    /// Role of tokens without a role claim; None rejects them.
    pub default_role: Option<String>,
    /// Name of the top-level claim that contains the role.
    pub role_claim: String,
    /// Whether tokens without `exp` are rejected.
    pub require_exp: bool,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Whether `GET /ws` accepts `?access_token=`.
    pub websocket_query_token: bool,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_file", &self.jwks_file)
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("anon_role", &self.anon_role)
            .field("default_role", &self.default_role)
            .field("role_claim", &self.role_claim)
            .field("require_exp", &self.require_exp)
            .field("leeway_secs", &self.leeway_secs)
            .field("websocket_query_token", &self.websocket_query_token)
            .finish()
    }
}

impl Default for AuthConfig {
    /// No keys and no anonymous role: every request is rejected.
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            jwks_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            anon_role: None,
            default_role: None,
            role_claim: "role".into(),
            require_exp: true,
            leeway_secs: 30,
            websocket_query_token: false,
        }
    }
}

/// The setting names that errors report, which depend on where each value came from.
struct SettingNames {
    jwt_secret: &'static str,
    jwks_file: &'static str,
    anon_role: &'static str,
}

impl AuthConfig {
    /// Applies the environment on top of `file` and validates the result.
    ///
    /// `WALGATE_JWT_SECRET` and `WALGATE_JWKS_FILE` replace the file's values when set to a
    /// non-empty string. `WALGATE_ANON_ROLE` replaces `anon_role` whenever it is set, and an
    /// empty value disables anonymous access. `env` returns None for an unset variable and
    /// `Some("")` for one set to the empty string.
    ///
    /// Errors name the setting at fault: the HS256 secret must be at least 32 bytes, role
    /// names 1 to 63 bytes without NUL, `role_claim` non-empty, `leeway_secs` at most 300, and
    /// the optional strings and paths non-empty.
    pub fn resolve(
        file: AuthFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AuthConfig, ConfigError> {
        let non_empty_env = |name: &str| env(name).filter(|value| !value.is_empty());
        let mut names = SettingNames {
            jwt_secret: "auth.jwt_secret",
            jwks_file: "auth.jwks_file",
            anon_role: "auth.anon_role",
        };

        let jwt_secret = match non_empty_env("WALGATE_JWT_SECRET") {
            Some(secret) => {
                names.jwt_secret = "WALGATE_JWT_SECRET";
                Some(secret)
            }
            None => file.jwt_secret,
        };
        let jwks_file = match non_empty_env("WALGATE_JWKS_FILE") {
            Some(path) => {
                names.jwks_file = "WALGATE_JWKS_FILE";
                Some(PathBuf::from(path))
            }
            None => file.jwks_file,
        };
        let anon_role = match env("WALGATE_ANON_ROLE") {
            Some(role) => {
                names.anon_role = "WALGATE_ANON_ROLE";
                Some(role)
            }
            None => file.anon_role,
        };

        let config = AuthConfig {
            jwt_secret,
            jwks_file,
            public_key_file: file.public_key_file,
            issuer: file.issuer,
            audience: file.audience,
            anon_role: anon_role.filter(|role| !role.is_empty()),
            default_role: file.default_role,
            role_claim: file.role_claim.unwrap_or_else(|| "role".into()),
            require_exp: file.require_exp.unwrap_or(true),
            leeway_secs: file.leeway_secs.unwrap_or(30),
            websocket_query_token: file.websocket_query_token.unwrap_or(false),
        };
        config.validate_with(&names)?;
        Ok(config)
    }

    /// Checks the rules that [`AuthConfig::resolve`] enforces, for settings built by hand.
    /// Errors name the settings by their `auth.` keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(&SettingNames {
            jwt_secret: "auth.jwt_secret",
            jwks_file: "auth.jwks_file",
            anon_role: "auth.anon_role",
        })
    }

    fn validate_with(&self, names: &SettingNames) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            validate_secret(secret, names.jwt_secret)?;
        }
        if let Some(path) = &self.jwks_file {
            validate_path(path, names.jwks_file, "a JWKS file")?;
        }
        if let Some(path) = &self.public_key_file {
            validate_path(path, "auth.public_key_file", "a PEM public key file")?;
        }
        if let Some(issuer) = &self.issuer {
            validate_non_empty(
                issuer,
                "auth.issuer",
                "the expected iss claim or remove the setting",
            )?;
        }
        if let Some(audience) = &self.audience {
            validate_non_empty(
                audience,
                "auth.audience",
                "the expected aud claim or remove the setting",
            )?;
        }
        if let Some(role) = &self.anon_role {
            validate_role(role, names.anon_role)?;
        }
        if let Some(role) = &self.default_role {
            validate_role(role, "auth.default_role")?;
        }
        validate_non_empty(
            &self.role_claim,
            "auth.role_claim",
            "the name of the claim that holds the role, or remove the setting to use \"role\"",
        )?;
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::Invalid {
                name: "auth.leeway_secs",
                message: format!(
                    "{} is out of range; use 0 to {MAX_LEEWAY_SECS} seconds",
                    self.leeway_secs
                ),
            });
        }
        Ok(())
    }
}

/// Returns whether `role` can name a PostgreSQL role: 1 to 63 bytes and no NUL.
pub(crate) fn is_valid_role(role: &str) -> bool {
    !role.is_empty() && role.len() <= MAX_ROLE_BYTES && !role.contains('\0')
}

fn validate_secret(secret: &str, name: &'static str) -> Result<(), ConfigError> {
    if secret.len() >= MIN_SECRET_BYTES {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name,
        message: format!(
            "the HS256 secret is {} bytes, but at least {MIN_SECRET_BYTES} are required; \
             generate one with `openssl rand -base64 48`",
            secret.len()
        ),
    })
}

fn validate_role(role: &str, name: &'static str) -> Result<(), ConfigError> {
    if is_valid_role(role) {
        return Ok(());
    }
    let problem = if role.is_empty() {
        "is empty".to_string()
    } else if role.contains('\0') {
        "contains a NUL character".to_string()
    } else {
        format!("is {} bytes long", role.len())
    };
    Err(ConfigError::Invalid {
        name,
        message: format!(
            "role name {} {problem}; a role name is 1 to {MAX_ROLE_BYTES} bytes without NUL",
            super::quote(role)
        ),
    })
}

fn validate_path(
    path: &std::path::Path,
    name: &'static str,
    expected: &str,
) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::Invalid {
            name,
            message: format!(
                "the path is empty; give the path of {expected} or remove the setting"
            ),
        });
    }
    Ok(())
}

fn validate_non_empty(value: &str, name: &'static str, hint: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            name,
            message: format!("the value is empty; set {hint}"),
        });
    }
    Ok(())
}
