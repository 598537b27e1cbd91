//! Reading the bearer token from the `Authorization` header (RFC 6750, section 2.1).

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::AuthError;

/// Returns the token of an `Authorization: Bearer <token>` header, or None when the request has
/// no Authorization header.
///
/// The scheme is matched case-insensitively, and spaces around the token are ignored. Any other
/// Authorization header is an [`AuthError::InvalidAuthorizationHeader`]: another scheme, no
/// token, a token containing whitespace, bytes that are not visible ASCII, or more than one
/// Authorization header. The error never repeats the header value.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let invalid = |message: &str| Err(AuthError::InvalidAuthorizationHeader(message.into()));
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };

    if values.next().is_some() {
        return invalid("the request has more than one Authorization header; send exactly one");
    }
    let Ok(value) = value.to_str() else {
        return invalid(
            "the header contains bytes that are not visible ASCII; send `Authorization: \
             Bearer <JWT>`",
        );
    };

    let value = value.trim_matches(is_space);
    let (scheme, token) = value.split_once(is_space).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // The scheme is shown only when it looks like one, so a bare token is not echoed.
        let looks_like_scheme = scheme.len() <= 20
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let message = if looks_like_scheme && !scheme.is_empty() {
            format!("the header uses the {scheme:?} scheme; send `Authorization: Bearer <JWT>`")
        } else {
            "the header does not start with the Bearer scheme; send `Authorization: Bearer \
             <JWT>`"
                .to_string()
        };
        return Err(AuthError::InvalidAuthorizationHeader(message));
    }

    let token = token.trim_matches(is_space);
    if token.is_empty() {
        return invalid(
            "the header has the Bearer scheme but no token; send `Authorization: Bearer <JWT>`",
        );
    }
    if token.contains(is_space) {
        return invalid("the bearer token contains whitespace; send a single JWT after `Bearer `");
    }
    Ok(Some(token))
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}
