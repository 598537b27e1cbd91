//! Checks of the registered claims (RFC 7519, section 4.1) and of the role claim, run after the
//! signature has been verified.

use serde_json::{Map, Value};

use super::settings::{is_valid_role, MAX_ROLE_BYTES};
use super::{json_kind, quote, AuthError};

/// Checks `exp` and `nbf` against `now` (Unix seconds), allowing `leeway_secs` of clock skew.
///
/// The token is expired once `now >= exp + leeway` and not yet valid while
/// `now + leeway < nbf`. Both claims are NumericDates: JSON numbers of seconds since the epoch,
/// possibly fractional. A missing `exp` fails when `require_exp` is set.
pub(super) fn check_times(
    claims: &Map<String, Value>,
    now: i64,
    leeway_secs: u64,
    require_exp: bool,
) -> Result<(), AuthError> {
    let now = now as f64;
    let leeway = leeway_secs as f64;
    match numeric_date(claims, "exp")? {
        Some((exp, text)) if now >= exp + leeway => {
            return Err(AuthError::TokenExpired(format!(
                "token expired at {} (exp {text}), {} seconds ago, beyond the allowed clock \
                 skew of {leeway_secs} seconds; request a new token",
                format_time(exp),
                (now - exp).floor()
            )));
        }
        Some(_) => {}
        None if require_exp => {
            return Err(AuthError::InvalidToken(
                "the token has no \"exp\" claim, and this server requires an expiry time; \
                 issue tokens with \"exp\" (or set auth.require_exp: false)"
                    .into(),
            ));
        }
        None => {}
    }
    if let Some((nbf, text)) = numeric_date(claims, "nbf")? {
        if now + leeway < nbf {
            return Err(AuthError::TokenNotYetValid(format!(
                "token is not valid before {} (nbf {text}), {} seconds from now, beyond the \
                 allowed clock skew of {leeway_secs} seconds; check the clocks of the token \
                 issuer and of this server",
                format_time(nbf),
                (nbf - now).ceil()
            )));
        }
    }
    Ok(())
}

/// Reads a NumericDate claim as seconds, with its JSON text for messages.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<(f64, String)>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(number) => number.as_f64().filter(|seconds| seconds.is_finite()),
        _ => None,
    };
    match seconds {
        Some(seconds) => Ok(Some((seconds, value.to_string()))),
        None => Err(AuthError::InvalidToken(format!(
            "the \"{name}\" claim must be a number of seconds since 1970-01-01T00:00:00Z, but it \
             is {}",
            json_kind(value)
        ))),
    }
}

/// Formats Unix seconds as RFC 3339 in UTC, or as the bare number when out of chrono's range.
fn format_time(seconds: f64) -> String {
    match chrono::DateTime::from_timestamp(seconds.floor() as i64, 0) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => format!("{seconds} seconds after 1970-01-01T00:00:00Z"),
    }
}

/// Requires the `iss` claim to be the string `expected`.
pub(super) fn check_issuer(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    match claims.get("iss") {
        Some(Value::String(issuer)) if issuer == expected => Ok(()),
        Some(Value::String(issuer)) => Err(AuthError::InvalidIssuer(format!(
            "token issuer {} is not the expected issuer {}; get a token from {}",
            quote(issuer),
            quote(expected),
            quote(expected)
        ))),
        Some(other) => Err(AuthError::InvalidIssuer(format!(
            "the token's \"iss\" claim must be a string, but it is {}; the expected issuer is {}",
            json_kind(other),
            quote(expected)
        ))),
        None => Err(AuthError::InvalidIssuer(format!(
            "the token has no \"iss\" claim; the expected issuer is {}",
            quote(expected)
        ))),
    }
}

/// Requires the `aud` claim to be the string `expected` or an array of strings containing it.
pub(super) fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    let wrong_type = |value: &Value| {
        AuthError::InvalidAudience(format!(
            "the token's \"aud\" claim must be a string or an array of strings, but it is {}; \
             the expected audience is {}",
            json_kind(value),
            quote(expected)
        ))
    };
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(audience)) => vec![audience.as_str()],
        Some(value @ Value::Array(items)) => {
            let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            strings.ok_or_else(|| wrong_type(value))?
        }
        Some(other) => return Err(wrong_type(other)),
        None => {
            return Err(AuthError::InvalidAudience(format!(
                "the token has no \"aud\" claim; the expected audience is {}",
                quote(expected)
            )))
        }
    };
    if audiences.contains(&expected) {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let mut listed: Vec<String> = audiences.iter().take(SHOWN).map(|a| quote(a)).collect();
    if audiences.len() > SHOWN {
        listed.push(format!("and {} more", audiences.len() - SHOWN));
    }
    Err(AuthError::InvalidAudience(format!(
        "token audience [{}] does not include the expected audience {}",
        listed.join(", "),
        quote(expected)
    )))
}

/// Returns the role of a verified token: the string claim `claim`, else `default_role`.
pub(super) fn role(
    claims: &Map<String, Value>,
    claim: &str,
    default_role: Option<&str>,
) -> Result<String, AuthError> {
    match claims.get(claim) {
        Some(Value::String(role)) if is_valid_role(role) => Ok(role.clone()),
        Some(Value::String(role)) => {
            let problem = if role.is_empty() {
                "an empty string".to_string()
            } else if role.contains('\0') {
                "a string with a NUL character".to_string()
            } else {
                format!("{} bytes long", role.len())
            };
            Err(AuthError::InvalidToken(format!(
                "the {} claim is {problem}, but a role name is 1 to {MAX_ROLE_BYTES} bytes \
                 without NUL",
                quote(claim)
            )))
        }
        Some(other) => Err(AuthError::InvalidToken(format!(
            "the {} claim must be a role name string, but it is {}",
            quote(claim),
            json_kind(other)
        ))),
        None => match default_role {
            Some(role) => Ok(role.to_string()),
            None => Err(AuthError::MissingRole(format!(
                "the token has no {} claim and this server has no default role; issue tokens \
                 with a {} claim naming a database role (or set auth.default_role)",
                quote(claim),
                quote(claim)
            ))),
        },
    }
}
