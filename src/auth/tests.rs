//! Unit tests of token verification, key loading and the settings. Tokens are signed with
//! jsonwebtoken and the key pairs in `tests/fixtures/auth` (see `generate.sh` there).

use std::path::{Path, PathBuf};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "test-only-hs256-secret-of-at-least-32-bytes";

/// 2023-11-14T22:13:20Z, a fixed clock for boundary tests.
const T: i64 = 1_700_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture exists")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn authenticator(file: AuthFile) -> Authenticator {
    let config = AuthConfig::resolve(file, &no_env).expect("valid settings");
    Authenticator::new(&config).expect("keys load")
}

fn hs256_file() -> AuthFile {
    AuthFile {
        jwt_secret: Some(SECRET.into()),
        ..Default::default()
    }
}

fn hs256_auth() -> Authenticator {
    authenticator(hs256_file())
}

fn jwks_auth() -> Authenticator {
    authenticator(AuthFile {
        jwks_file: Some(fixture("jwks.json")),
        ..Default::default()
    })
}

fn pem_auth(name: &str) -> Authenticator {
    authenticator(AuthFile {
        public_key_file: Some(fixture(name)),
        ..Default::default()
    })
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("token encodes")
}

fn secret_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).expect("non-empty secret")
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &secret_key(SECRET.as_bytes()),
    )
}

fn rs256(private_key: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read_fixture(private_key)).expect("RSA private key");
    sign(Algorithm::RS256, kid, claims, &key)
}

fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).expect("EC private key");
    sign(Algorithm::ES256, kid, claims, &key)
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// Signs a header and a payload given as JSON text, for payloads that `encode` cannot produce.
fn hs256_raw(header: &str, payload: &str) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &secret_key(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HMAC signs");
    format!("{message}.{signature}")
}

fn now() -> i64 {
    unix_now()
}

fn user_claims() -> Value {
    json!({"sub": "user-1", "role": "app_user", "exp": now() + 3600})
}

fn rejection(auth: &Authenticator, token: &str) -> AuthError {
    auth.authenticate(Some(token))
        .expect_err("the token is rejected")
}

fn assert_error(error: &AuthError, code: &str, fragment: &str) {
    assert_eq!(error.code(), code, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(fragment),
        "message {message:?} lacks {fragment:?}"
    );
}

// --- HS256 -------------------------------------------------------------------------------

#[test]
fn hs256_token_yields_role_and_claims() {
    let exp = now() + 3600;
    let token = hs256(&json!({"sub": "user-1", "role": "app_user", "exp": exp, "team": {"id": 7}}));
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "app_user");
    assert_eq!(
        identity.claims_json,
        format!(r#"{{"sub":"user-1","role":"app_user","exp":{exp},"team":{{"id":7}}}}"#)
    );
    assert_eq!(identity.subject.as_deref(), Some("user-1"));
    assert!(!identity.anonymous);
}

#[test]
fn claims_json_keeps_payload_text() {
    let payload = format!(
        r#"{{"role":"app_user","exp":{},"big":123456789012345678901234567890,"price":1.50,"name":"Zoë","sub":42}}"#,
        now() + 60
    );
    let token = hs256_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.claims_json, payload);
    assert_eq!(identity.subject, None, "a numeric sub is not a subject");
}

#[test]
fn duplicate_claim_keeps_last_value() {
    let exp = now() + 60;
    let payload = format!(r#"{{"role":"admin","exp":{exp},"role":"app_user"}}"#);
    let token = hs256_raw(r#"{"alg":"HS256"}"#, &payload);
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "app_user");
    assert_eq!(
        identity.claims_json,
        format!(r#"{{"role":"app_user","exp":{exp}}}"#)
    );
}

#[test]
fn wrong_secret_is_rejected() {
    let token = sign(
        Algorithm::HS256,
        None,
        &user_claims(),
        &secret_key(b"another-secret-that-is-also-32-bytes-long"),
    );
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        "invalid token: the token signature does not match the HS256 secret; the token was \
         signed with another key or altered",
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let token = hs256(&user_claims());
    let segments: Vec<&str> = token.split('.').collect();
    let forged_payload =
        b64(&json!({"sub": "user-1", "role": "admin", "exp": now() + 3600}).to_string());
    let forged = format!("{}.{}.{}", segments[0], forged_payload, segments[2]);
    let error = rejection(&hs256_auth(), &forged);
    assert_error(
        &error,
        "invalid_token",
        "signature does not match the HS256 secret",
    );
}

#[test]
fn messages_never_contain_secret_or_token() {
    let auth = hs256_auth();
    let expired = hs256(&json!({"role": "app_user", "exp": now() - 3600}));
    let forged = sign(
        Algorithm::HS256,
        None,
        &user_claims(),
        &secret_key(b"another-secret-that-is-also-32-bytes-long"),
    );
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
    for token in [expired, forged, unsigned] {
        let message = rejection(&auth, &token).to_string();
        assert!(!message.contains(&token), "{message}");
        assert!(!message.contains(SECRET), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn hs512_is_unsupported() {
    let token = sign(
        Algorithm::HS512,
        None,
        &user_claims(),
        &secret_key(SECRET.as_bytes()),
    );
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "unsupported_algorithm",
        r#"token algorithm "HS512" is not accepted; this server accepts HS256"#,
    );
}

// --- exp and nbf ---------------------------------------------------------------------------

#[test]
fn expired_token_is_rejected() {
    let exp = now() - 3600;
    let error = rejection(&hs256_auth(), &hs256(&json!({"role": "r", "exp": exp})));
    assert_error(&error, "token_expired", "token expired at ");
    // The seconds that follow depend on the clock, which expired_message_names_time_and_skew
    // fixes.
    assert_error(&error, "token_expired", &format!("(exp {exp}), "));
}

#[test]
fn expired_message_names_time_and_skew() {
    let token = hs256(&json!({"role": "r", "exp": T}));
    let error = hs256_auth()
        .authenticate_at(Some(&token), T + 3600)
        .unwrap_err();
    assert_eq!(error.code(), "token_expired");
    assert_eq!(
        error.to_string(),
        "token expired at 2023-11-14T22:13:20Z (exp 1700000000), 3600 seconds ago, beyond the \
         allowed clock skew of 30 seconds; request a new token"
    );
}

#[test]
fn exp_boundary_honours_leeway() {
    let auth = hs256_auth();
    let token = hs256(&json!({"role": "r", "exp": T}));
    let identity = auth.authenticate_at(Some(&token), T + 29).unwrap();
    assert_eq!(identity.role, "r");
    let error = auth.authenticate_at(Some(&token), T + 30).unwrap_err();
    assert_eq!(error.code(), "token_expired");
}

#[test]
fn nbf_boundary_honours_leeway() {
    let auth = hs256_auth();
    let token = hs256(&json!({"role": "r", "exp": T + 3600, "nbf": T}));
    let identity = auth.authenticate_at(Some(&token), T - 30).unwrap();
    assert_eq!(identity.role, "r");
    let error = auth.authenticate_at(Some(&token), T - 31).unwrap_err();
    assert_eq!(error.code(), "token_not_yet_valid");
    assert_eq!(
        error.to_string(),
        "token is not valid before 2023-11-14T22:13:20Z (nbf 1700000000), 31 seconds from now, \
         beyond the allowed clock skew of 30 seconds; check the clocks of the token issuer and \
         of this server"
    );
}

#[test]
fn future_nbf_is_rejected() {
    let nbf = now() + 3600;
    let token = hs256(&json!({"role": "r", "exp": nbf + 3600, "nbf": nbf}));
    let error = rejection(&hs256_auth(), &token);
    assert_error(&error, "token_not_yet_valid", "token is not valid before ");
    assert_error(&error, "token_not_yet_valid", &format!("(nbf {nbf})"));
}

#[test]
fn skew_within_leeway_is_accepted() {
    let token = hs256(&json!({"role": "r", "exp": now() - 10, "nbf": now() + 10}));
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "r");
}

#[test]
fn zero_leeway_rejects_past_exp() {
    let auth = authenticator(AuthFile {
        leeway_secs: Some(0),
        ..hs256_file()
    });
    let token = hs256(&json!({"role": "r", "exp": T}));
    let error = auth.authenticate_at(Some(&token), T).unwrap_err();
    assert_eq!(error.code(), "token_expired");
}

#[test]
fn missing_exp_is_rejected_when_required() {
    let token = hs256(&json!({"role": "r"}));
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        r#"the token has no "exp" claim, and this server requires an expiry time"#,
    );
}

#[test]
fn missing_exp_is_accepted_when_optional() {
    let auth = authenticator(AuthFile {
        require_exp: Some(false),
        ..hs256_file()
    });
    let identity = auth
        .authenticate(Some(&hs256(&json!({"role": "r"}))))
        .unwrap();
    assert_eq!(identity.role, "r");
}

#[test]
fn non_numeric_exp_is_rejected() {
    let token = hs256(&json!({"role": "r", "exp": "tomorrow"}));
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        r#"the "exp" claim must be a number of seconds since 1970-01-01T00:00:00Z, but it is a string"#,
    );
}

#[test]
fn fractional_exp_is_accepted() {
    let token = hs256(&json!({"role": "r", "exp": (now() + 60) as f64 + 0.5}));
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "r");
}

// --- iss and aud ---------------------------------------------------------------------------

fn issuer_audience_auth() -> Authenticator {
    authenticator(AuthFile {
        issuer: Some("https://issuer.example".into()),
        audience: Some("walgate".into()),
        ..hs256_file()
    })
}

fn claims_with(extra: Value) -> Value {
    let mut claims = json!({"role": "r", "exp": now() + 3600});
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

#[test]
fn matching_issuer_and_audience_are_accepted() {
    let auth = issuer_audience_auth();
    let single = hs256(&claims_with(
        json!({"iss": "https://issuer.example", "aud": "walgate"}),
    ));
    assert_eq!(auth.authenticate(Some(&single)).unwrap().role, "r");
    let array = hs256(&claims_with(
        json!({"iss": "https://issuer.example", "aud": ["other", "walgate"]}),
    ));
    assert_eq!(auth.authenticate(Some(&array)).unwrap().role, "r");
}

#[test]
fn wrong_issuer_is_rejected() {
    let token = hs256(&claims_with(
        json!({"iss": "https://evil.example", "aud": "walgate"}),
    ));
    let error = rejection(&issuer_audience_auth(), &token);
    assert_error(
        &error,
        "invalid_issuer",
        r#"token issuer "https://evil.example" is not the expected issuer "https://issuer.example""#,
    );
}

#[test]
fn missing_issuer_is_rejected() {
    let token = hs256(&claims_with(json!({"aud": "walgate"})));
    let error = rejection(&issuer_audience_auth(), &token);
    assert_error(
        &error,
        "invalid_issuer",
        r#"the token has no "iss" claim; the expected issuer is "https://issuer.example""#,
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let token = hs256(&claims_with(
        json!({"iss": "https://issuer.example", "aud": ["other", "more"]}),
    ));
    let error = rejection(&issuer_audience_auth(), &token);
    assert_error(
        &error,
        "invalid_audience",
        r#"token audience ["other", "more"] does not include the expected audience "walgate""#,
    );
}

#[test]
fn missing_audience_is_rejected() {
    let token = hs256(&claims_with(json!({"iss": "https://issuer.example"})));
    let error = rejection(&issuer_audience_auth(), &token);
    assert_error(
        &error,
        "invalid_audience",
        r#"the token has no "aud" claim; the expected audience is "walgate""#,
    );
}

#[test]
fn non_string_audience_is_rejected() {
    let token = hs256(&claims_with(
        json!({"iss": "https://issuer.example", "aud": [1, 2]}),
    ));
    let error = rejection(&issuer_audience_auth(), &token);
    assert_error(
        &error,
        "invalid_audience",
        r#"the token's "aud" claim must be a string or an array of strings, but it is an array"#,
    );
}

#[test]
fn unchecked_iss_and_aud_are_ignored() {
    let token = hs256(&claims_with(
        json!({"iss": "anyone", "aud": ["authenticated"]}),
    ));
    let identity = hs256_auth().authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "r");
}

// --- algorithms ----------------------------------------------------------------------------

#[test]
fn unsigned_token_is_rejected() {
    let payload = b64(&user_claims().to_string());
    let token = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "unsupported_algorithm",
        r#"token algorithm "none" marks an unsigned token, and unsigned tokens are never accepted; sign the token with HS256"#,
    );
    let error = rejection(&jwks_auth(), &token);
    assert_error(
        &error,
        "unsupported_algorithm",
        r#"sign the token with RS256 or ES256"#,
    );
}

#[test]
fn hmac_signed_with_public_key_is_rejected() {
    // The key-confusion attack: a verifier that let the token pick the algorithm would check
    // this HMAC with the public key bytes as the secret, and accept it.
    let public_pem = read_fixture("rsa_public.pem");
    let token = sign(
        Algorithm::HS256,
        None,
        &user_claims(),
        &secret_key(&public_pem),
    );
    let error = rejection(&pem_auth("rsa_public.pem"), &token);
    assert_error(
        &error,
        "unsupported_algorithm",
        r#"token algorithm "HS256" (HMAC) is not accepted, because this server verifies tokens with public keys only; sign the token with RS256"#,
    );
    let error = rejection(&jwks_auth(), &token);
    assert_error(&error, "unsupported_algorithm", r#""HS256" (HMAC)"#);
}

#[test]
fn es256_is_rejected_with_only_rsa_key() {
    let token = es256(None, &user_claims());
    let error = rejection(&pem_auth("rsa_public.pem"), &token);
    assert_error(
        &error,
        "unsupported_algorithm",
        r#"token algorithm "ES256" is not accepted; this server accepts RS256"#,
    );
}

#[test]
fn secret_and_keys_accept_all_three() {
    let auth = authenticator(AuthFile {
        jwks_file: Some(fixture("jwks.json")),
        ..hs256_file()
    });
    let hs = hs256(&user_claims());
    assert_eq!(auth.authenticate(Some(&hs)).unwrap().role, "app_user");
    let rs = rs256("rsa_private.pem", Some("rsa-1"), &user_claims());
    assert_eq!(auth.authenticate(Some(&rs)).unwrap().role, "app_user");
    let es = es256(Some("ec-1"), &user_claims());
    assert_eq!(auth.authenticate(Some(&es)).unwrap().role, "app_user");
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
    let error = rejection(&auth, &unsigned);
    assert_error(&error, "unsupported_algorithm", "HS256, RS256 or ES256");
}

// --- RS256 and ES256 -------------------------------------------------------------------------

#[test]
fn rs256_pem_key_verifies() {
    let token = rs256("rsa_private.pem", None, &user_claims());
    let identity = pem_auth("rsa_public.pem")
        .authenticate(Some(&token))
        .unwrap();
    assert_eq!(identity.role, "app_user");
    assert_eq!(identity.subject.as_deref(), Some("user-1"));
}

#[test]
fn rs256_pkcs1_pem_key_verifies() {
    let token = rs256("rsa_private.pem", None, &user_claims());
    let auth = pem_auth("rsa_public_pkcs1.pem");
    assert_eq!(auth.authenticate(Some(&token)).unwrap().role, "app_user");
}

#[test]
fn rs256_pem_ignores_kid() {
    let token = rs256("rsa_private.pem", Some("whatever"), &user_claims());
    let identity = pem_auth("rsa_public.pem")
        .authenticate(Some(&token))
        .unwrap();
    assert_eq!(identity.role, "app_user");
}

#[test]
fn rs256_from_other_key_is_rejected() {
    let token = rs256("rsa2_private.pem", None, &user_claims());
    let error = rejection(&pem_auth("rsa_public.pem"), &token);
    assert_error(
        &error,
        "invalid_token",
        "the token signature does not match the key of auth.public_key_file",
    );
}

#[test]
fn es256_pem_key_verifies() {
    let token = es256(None, &user_claims());
    let identity = pem_auth("ec_public.pem")
        .authenticate(Some(&token))
        .unwrap();
    assert_eq!(identity.role, "app_user");
}

#[test]
fn rs256_jwks_key_selected_by_kid() {
    let auth = jwks_auth();
    let first = rs256("rsa_private.pem", Some("rsa-1"), &user_claims());
    assert_eq!(auth.authenticate(Some(&first)).unwrap().role, "app_user");
    let second = rs256("rsa2_private.pem", Some("rsa-2"), &user_claims());
    assert_eq!(auth.authenticate(Some(&second)).unwrap().role, "app_user");
}

#[test]
fn rs256_with_wrong_kid_is_rejected() {
    let token = rs256("rsa_private.pem", Some("rsa-2"), &user_claims());
    let error = rejection(&jwks_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        r#"the token signature does not match key "rsa-2" of the JWKS file"#,
    );
}

#[test]
fn es256_jwks_key_verifies() {
    let auth = jwks_auth();
    let with_kid = es256(Some("ec-1"), &user_claims());
    assert_eq!(auth.authenticate(Some(&with_kid)).unwrap().role, "app_user");
    // The set has one ES256 key, so a token without kid uses it.
    let without_kid = es256(None, &user_claims());
    assert_eq!(
        auth.authenticate(Some(&without_kid)).unwrap().role,
        "app_user"
    );
}

#[test]
fn unknown_kid_is_rejected() {
    let token = rs256("rsa_private.pem", Some("rsa-9"), &user_claims());
    let error = rejection(&jwks_auth(), &token);
    assert_error(
        &error,
        "unknown_key",
        r#"no configured RS256 key has kid "rsa-9" (known kids: "rsa-1", "rsa-2", "ec-1")"#,
    );
}

#[test]
fn missing_kid_with_several_keys_is_rejected() {
    let token = rs256("rsa_private.pem", None, &user_claims());
    let error = rejection(&jwks_auth(), &token);
    assert_error(
        &error,
        "unknown_key",
        r#"the token header has no "kid", and the JWKS file has 2 RS256 keys, so the key is ambiguous"#,
    );
}

#[test]
fn missing_kid_with_one_key_uses_it() {
    let auth = authenticator(AuthFile {
        jwks_file: Some(fixture("jwks_single.json")),
        ..Default::default()
    });
    let token = rs256("rsa_private.pem", None, &user_claims());
    assert_eq!(auth.authenticate(Some(&token)).unwrap().role, "app_user");
    let with_kid = rs256("rsa_private.pem", Some("rsa-1"), &user_claims());
    let error = rejection(&auth, &with_kid);
    assert_error(
        &error,
        "unknown_key",
        r#"no configured RS256 key has kid "rsa-1" (known kids: none)"#,
    );
}

#[test]
fn kid_of_other_key_type_is_rejected() {
    let token = rs256("rsa_private.pem", Some("ec-1"), &user_claims());
    let error = rejection(&jwks_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        r#"the token header names algorithm RS256, but key "ec-1" of the JWKS file is an ES256 key"#,
    );
}

#[test]
fn pem_key_backs_up_jwks() {
    let auth = authenticator(AuthFile {
        jwks_file: Some(fixture("jwks_single.json")),
        public_key_file: Some(fixture("ec_public.pem")),
        ..Default::default()
    });
    let es = es256(Some("not-in-jwks"), &user_claims());
    assert_eq!(auth.authenticate(Some(&es)).unwrap().role, "app_user");
    let rs = rs256("rsa_private.pem", None, &user_claims());
    assert_eq!(auth.authenticate(Some(&rs)).unwrap().role, "app_user");
}

// --- roles ---------------------------------------------------------------------------------

#[test]
fn default_role_applies_without_claim() {
    let auth = authenticator(AuthFile {
        default_role: Some("authenticated".into()),
        ..hs256_file()
    });
    let token = hs256(&json!({"sub": "user-1", "exp": now() + 60}));
    let identity = auth.authenticate(Some(&token)).unwrap();
    assert_eq!(identity.role, "authenticated");
    let explicit = hs256(&json!({"role": "app_user", "exp": now() + 60}));
    assert_eq!(auth.authenticate(Some(&explicit)).unwrap().role, "app_user");
}

#[test]
fn missing_role_is_rejected() {
    let token = hs256(&json!({"sub": "user-1", "exp": now() + 60}));
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "missing_role",
        r#"the token has no "role" claim and this server has no default role"#,
    );
}

#[test]
fn invalid_role_claims_are_rejected() {
    let auth = hs256_auth();
    let cases = [
        (
            json!(7),
            r#"the "role" claim must be a role name string, but it is a number"#,
        ),
        (
            json!(null),
            r#"the "role" claim must be a role name string, but it is null"#,
        ),
        (json!(""), r#"the "role" claim is an empty string"#),
        (
            json!("x".repeat(64)),
            r#"the "role" claim is 64 bytes long"#,
        ),
        (
            json!("a\u{0}b"),
            r#"the "role" claim is a string with a NUL character"#,
        ),
    ];
    for (role, expected) in cases {
        let token = hs256(&json!({"role": role, "exp": now() + 60}));
        let error = rejection(&auth, &token);
        assert_error(&error, "invalid_token", expected);
    }
    let longest = hs256(&json!({"role": "x".repeat(63), "exp": now() + 60}));
    assert_eq!(
        auth.authenticate(Some(&longest)).unwrap().role,
        "x".repeat(63)
    );
}

#[test]
fn custom_role_claim_is_read() {
    let auth = authenticator(AuthFile {
        role_claim: Some("app_role".into()),
        ..hs256_file()
    });
    let token = hs256(&json!({"role": "admin", "app_role": "reader", "exp": now() + 60}));
    assert_eq!(auth.authenticate(Some(&token)).unwrap().role, "reader");
    let without = hs256(&json!({"role": "admin", "exp": now() + 60}));
    let error = rejection(&auth, &without);
    assert_error(
        &error,
        "missing_role",
        r#"the token has no "app_role" claim"#,
    );
}

// --- anonymous requests and missing keys ---------------------------------------------------

#[test]
fn anonymous_request_gets_anon_role() {
    let auth = authenticator(AuthFile {
        anon_role: Some("web_anon".into()),
        ..hs256_file()
    });
    let identity = auth.authenticate(None).unwrap();
    assert_eq!(identity.role, "web_anon");
    assert_eq!(identity.claims_json, "{}");
    assert_eq!(identity.subject, None);
    assert!(identity.anonymous);
}

#[test]
fn anonymous_request_without_anon_role_is_rejected() {
    let error = hs256_auth().authenticate(None).unwrap_err();
    assert_error(
        &error,
        "missing_token",
        "missing bearer token: send `Authorization: Bearer <JWT>`; this server has no anonymous \
         role",
    );
}

#[test]
fn token_without_keys_is_rejected() {
    let auth = authenticator(AuthFile {
        anon_role: Some("web_anon".into()),
        ..Default::default()
    });
    assert_eq!(auth.authenticate(None).unwrap().role, "web_anon");
    let error = rejection(&auth, &hs256(&user_claims()));
    assert_error(
        &error,
        "no_verification_key",
        "this server has no WALGATE_JWT_SECRET, WALGATE_JWKS_FILE or auth.public_key_file set",
    );
}

#[test]
fn is_configured_reports_any_setting() {
    assert!(!authenticator(AuthFile::default()).is_configured());
    assert!(hs256_auth().is_configured());
    assert!(jwks_auth().is_configured());
    let anonymous_only = authenticator(AuthFile {
        anon_role: Some("web_anon".into()),
        ..Default::default()
    });
    assert!(anonymous_only.is_configured());
}

#[test]
fn websocket_query_token_follows_setting() {
    assert!(!hs256_auth().websocket_query_token());
    let auth = authenticator(AuthFile {
        websocket_query_token: Some(true),
        ..hs256_file()
    });
    assert!(auth.websocket_query_token());
}

#[test]
fn summary_lists_algorithms_and_kids() {
    let auth = authenticator(AuthFile {
        jwks_file: Some(fixture("jwks.json")),
        anon_role: Some("web_anon".into()),
        ..hs256_file()
    });
    assert_eq!(
        auth.summary(),
        r#"accepts HS256, RS256 or ES256; JWKS keys "rsa-1", "rsa-2", "ec-1"; anonymous role "web_anon""#
    );
    assert!(!format!("{auth:?}").contains(SECRET));
}

// --- malformed tokens ----------------------------------------------------------------------

#[test]
fn malformed_tokens_are_rejected() {
    let auth = hs256_auth();
    let header = b64(r#"{"alg":"HS256"}"#);
    let cases = [
        ("", "the token is empty".to_string()),
        (
            "abc",
            "the token is not a JWT, which has three dot-separated segments (header, payload \
             and signature); this one has 1"
                .to_string(),
        ),
        (
            "a.b.c.d.e",
            "the token is an encrypted JWT (JWE, five segments)".to_string(),
        ),
        (
            "e30=.e30.",
            "the token header is not unpadded base64url".to_string(),
        ),
        (
            &*format!("{}.e30.", b64("[1]")),
            "the token header is not a JSON object".to_string(),
        ),
        (
            &*format!("{}.e30.", b64(r#"{"typ":"JWT"}"#)),
            r#"the token header has no "alg""#.to_string(),
        ),
        (
            &*format!("{header}.e30.!"),
            "the token signature is not unpadded base64url".to_string(),
        ),
    ];
    for (token, expected) in cases {
        let error = rejection(&auth, token);
        assert_error(&error, "invalid_token", &expected);
    }
}

#[test]
fn oversized_token_is_rejected() {
    let token = "a".repeat(MAX_TOKEN_BYTES + 1);
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        "the token is 32769 bytes, more than the 32768 this server accepts",
    );
}

#[test]
fn non_object_payload_is_rejected() {
    let token = hs256_raw(r#"{"alg":"HS256"}"#, "[1,2]");
    let error = rejection(&hs256_auth(), &token);
    assert_error(
        &error,
        "invalid_token",
        "the token payload is not a JSON object",
    );
}

// --- Authorization header ------------------------------------------------------------------

fn headers(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    headers
}

#[test]
fn bearer_token_is_extracted() {
    assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
    let cases = [
        "Bearer abc.def.ghi",
        "bearer abc.def.ghi",
        "BEARER  abc.def.ghi ",
    ];
    for value in cases {
        let map = headers(&[value]);
        assert_eq!(bearer_token(&map).unwrap(), Some("abc.def.ghi"), "{value}");
    }
}

#[test]
fn malformed_authorization_is_rejected() {
    let cases = [
        (
            vec!["Basic dXNlcjpwYXNz"],
            r#"invalid Authorization header: the header uses the "Basic" scheme; send `Authorization: Bearer <JWT>`"#,
        ),
        (
            vec!["Bearer"],
            "the header has the Bearer scheme but no token",
        ),
        (
            vec!["Bearer   "],
            "the header has the Bearer scheme but no token",
        ),
        (
            vec!["Bearer abc def"],
            "the bearer token contains whitespace",
        ),
        (
            vec!["eyJhbGciOiJIUzI1NiJ9.e30.sig"],
            "the header does not start with the Bearer scheme",
        ),
        (
            vec!["Bearer a.b.c", "Bearer d.e.f"],
            "the request has more than one Authorization header",
        ),
    ];
    for (values, expected) in cases {
        let error = bearer_token(&headers(&values)).unwrap_err();
        assert_error(&error, "invalid_authorization_header", expected);
        assert!(
            !error.to_string().contains("eyJhbGciOiJIUzI1NiJ9"),
            "{error}"
        );
    }
}

#[test]
fn non_ascii_authorization_is_rejected() {
    let mut map = HeaderMap::new();
    map.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer caf\xc3\xa9").unwrap(),
    );
    let error = bearer_token(&map).unwrap_err();
    assert_error(
        &error,
        "invalid_authorization_header",
        "the header contains bytes that are not visible ASCII",
    );
}

// --- settings ------------------------------------------------------------------------------

#[test]
fn resolve_applies_defaults() {
    let config = AuthConfig::resolve(AuthFile::default(), &no_env).unwrap();
    assert_eq!(config.jwt_secret, None);
    assert_eq!(config.anon_role, None);
    assert_eq!(config.role_claim, "role");
    assert!(config.require_exp);
    assert_eq!(config.leeway_secs, 30);
    assert!(!config.websocket_query_token);
}

#[test]
fn environment_overrides_file() {
    let env = |name: &str| match name {
        "WALGATE_JWT_SECRET" => Some("e".repeat(40)),
        "WALGATE_JWKS_FILE" => Some("/etc/walgate/jwks.json".to_string()),
        "WALGATE_ANON_ROLE" => Some("env_anon".to_string()),
        _ => None,
    };
    let file = AuthFile {
        jwt_secret: Some("f".repeat(40)),
        jwks_file: Some("file.json".into()),
        anon_role: Some("file_anon".into()),
        ..Default::default()
    };
    let config = AuthConfig::resolve(file, &env).unwrap();
    assert_eq!(config.jwt_secret, Some("e".repeat(40)));
    assert_eq!(
        config.jwks_file,
        Some(PathBuf::from("/etc/walgate/jwks.json"))
    );
    assert_eq!(config.anon_role.as_deref(), Some("env_anon"));
}

#[test]
fn empty_anon_role_env_disables_anonymous() {
    let env = |name: &str| (name == "WALGATE_ANON_ROLE").then(String::new);
    let file = AuthFile {
        anon_role: Some("web_anon".into()),
        ..Default::default()
    };
    let config = AuthConfig::resolve(file, &env).unwrap();
    assert_eq!(config.anon_role, None);
    let file_empty = AuthFile {
        anon_role: Some(String::new()),
        ..Default::default()
    };
    let config = AuthConfig::resolve(file_empty, &no_env).unwrap();
    assert_eq!(config.anon_role, None);
}

#[test]
fn empty_secret_env_keeps_file_value() {
    let env = |name: &str| (name == "WALGATE_JWT_SECRET").then(String::new);
    let config = AuthConfig::resolve(hs256_file(), &env).unwrap();
    assert_eq!(config.jwt_secret.as_deref(), Some(SECRET));
}

#[test]
fn short_secret_is_rejected() {
    let env = |name: &str| (name == "WALGATE_JWT_SECRET").then(|| "short-secret".to_string());
    let error = AuthConfig::resolve(AuthFile::default(), &env).unwrap_err();
    let message = error.to_string();
    assert_eq!(
        message,
        "invalid setting WALGATE_JWT_SECRET: the HS256 secret is 12 bytes, but at least 32 are \
         required; generate one with `openssl rand -base64 48`"
    );
    assert!(!message.contains("short-secret"), "{message}");

    let file = AuthFile {
        jwt_secret: Some("x".repeat(31)),
        ..Default::default()
    };
    let error = AuthConfig::resolve(file, &no_env).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid setting auth.jwt_secret: the HS256 secret is 31 bytes"),
        "{error}"
    );
}

#[test]
fn invalid_settings_are_rejected() {
    let cases: Vec<(AuthFile, &str)> = vec![
        (
            AuthFile {
                anon_role: Some("r".repeat(64)),
                ..Default::default()
            },
            "invalid setting auth.anon_role: role name",
        ),
        (
            AuthFile {
                default_role: Some("a\0b".into()),
                ..Default::default()
            },
            r#"invalid setting auth.default_role: role name "a\0b" contains a NUL character; a role name is 1 to 63 bytes without NUL"#,
        ),
        (
            AuthFile {
                default_role: Some(String::new()),
                ..Default::default()
            },
            r#"invalid setting auth.default_role: role name "" is empty"#,
        ),
        (
            AuthFile {
                leeway_secs: Some(301),
                ..Default::default()
            },
            "invalid setting auth.leeway_secs: 301 is out of range; use 0 to 300 seconds",
        ),
        (
            AuthFile {
                role_claim: Some(String::new()),
                ..Default::default()
            },
            "invalid setting auth.role_claim: the value is empty",
        ),
        (
            AuthFile {
                issuer: Some(String::new()),
                ..Default::default()
            },
            "invalid setting auth.issuer: the value is empty",
        ),
        (
            AuthFile {
                public_key_file: Some(PathBuf::new()),
                ..Default::default()
            },
            "invalid setting auth.public_key_file: the path is empty",
        ),
    ];
    for (file, expected) in cases {
        let error = AuthConfig::resolve(file, &no_env).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(expected),
            "{message:?} lacks {expected:?}"
        );
    }
}

#[test]
fn long_anon_role_env_is_named() {
    let env = |name: &str| (name == "WALGATE_ANON_ROLE").then(|| "r".repeat(64));
    let error = AuthConfig::resolve(AuthFile::default(), &env).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid setting WALGATE_ANON_ROLE: role name"),
        "{error}"
    );
    assert!(error.to_string().contains("is 64 bytes long"), "{error}");
}

#[test]
fn auth_file_parses_yaml() {
    let yaml = "jwt_secret: abcdefghijklmnopqrstuvwxyz0123456789\n\
                anon_role: web_anon\n\
                leeway_secs: 5\n\
                websocket_query_token: true\n";
    let file: AuthFile = serde_yaml_ng::from_str(yaml).unwrap();
    let config = AuthConfig::resolve(file, &no_env).unwrap();
    assert_eq!(config.anon_role.as_deref(), Some("web_anon"));
    assert_eq!(config.leeway_secs, 5);
    assert!(config.websocket_query_token);
    let error = serde_yaml_ng::from_str::<AuthFile>("jwt_secrets: x").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `jwt_secrets`"),
        "{error}"
    );
}

#[test]
fn debug_output_redacts_secret() {
    let config = AuthConfig::resolve(hs256_file(), &no_env).unwrap();
    let text = format!("{config:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    let file_text = format!("{:?}", hs256_file());
    assert!(!file_text.contains(SECRET), "{file_text}");
}

#[test]
fn hand_built_short_secret_is_rejected() {
    let config = AuthConfig {
        jwt_secret: Some("short".into()),
        ..AuthConfig::default()
    };
    let error = Authenticator::new(&config).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid setting auth.jwt_secret: the HS256 secret is 5 bytes"),
        "{error}"
    );
}

// --- key files -----------------------------------------------------------------------------

fn setup_error(file: AuthFile) -> String {
    let config = AuthConfig::resolve(file, &no_env).expect("valid settings");
    Authenticator::new(&config)
        .expect_err("the key files are rejected")
        .to_string()
}

fn jwks_setup_error(document: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, document).unwrap();
    setup_error(AuthFile {
        jwks_file: Some(path),
        ..Default::default()
    })
}

fn pem_setup_error(path: PathBuf) -> String {
    setup_error(AuthFile {
        public_key_file: Some(path),
        ..Default::default()
    })
}

/// Returns the modulus `n` of a fixture RSA public key, base64url-encoded as a JWK has it.
fn rsa_modulus(public_pem: &str) -> String {
    let key = DecodingKey::from_rsa_pem(&read_fixture(public_pem)).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, None).unwrap();
    match jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => rsa.n,
        _ => unreachable!("an RSA key"),
    }
}

#[test]
fn missing_key_file_names_path() {
    let path = fixture("absent.json");
    let message = setup_error(AuthFile {
        jwks_file: Some(path.clone()),
        ..Default::default()
    });
    assert!(
        message.starts_with(&format!("cannot read JWKS file {}: ", path.display())),
        "{message}"
    );
    let message = pem_setup_error(fixture("absent.pem"));
    assert!(
        message.starts_with(&format!(
            "cannot read public key file {}: ",
            fixture("absent.pem").display()
        )),
        "{message}"
    );
}

#[test]
fn invalid_jwks_documents_are_rejected() {
    let message = jwks_setup_error("{not json");
    assert!(message.contains("the file is not valid JSON"), "{message}");
    assert!(message.starts_with("invalid JWKS file "), "{message}");
    let message = jwks_setup_error(r#"{"kty": "RSA"}"#);
    assert!(
        message.contains(r#"expected a JSON object with a "keys" array"#),
        "{message}"
    );
    let message = jwks_setup_error(r#"{"keys": []}"#);
    assert!(
        message.ends_with(r#"no usable RS256 or ES256 signing key: the "keys" array is empty"#),
        "{message}"
    );
}

#[test]
fn jwks_without_signing_keys_is_rejected() {
    let document = json!({"keys": [
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": rsa_modulus("rsa_public.pem"), "e": "AQAB"},
        {"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "RSA", "kid": "ps-1", "alg": "PS256", "n": rsa_modulus("rsa_public.pem"), "e": "AQAB"},
    ]});
    let message = jwks_setup_error(&document.to_string());
    let expected = [
        r#"no usable RS256 or ES256 signing key: every key was skipped ("enc-1": it is an encryption key ("use": "enc")"#,
        r#""hmac-1": it is a symmetric ("oct") key"#,
        r#""ed-1": its key type "OKP" is not supported"#,
        r#""ps-1": its "alg" "PS256" is not supported; walgate verifies RS256 and ES256"#,
    ];
    for fragment in expected {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}

#[test]
fn skipped_jwks_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let document = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "n": rsa_modulus("rsa_public.pem"), "e": "AQAB"},
        {"kty": "RSA", "kid": "old", "n": rsa_modulus("rsa1024_public.pem"), "e": "AQAB"},
    ]});
    std::fs::write(&path, document.to_string()).unwrap();
    let auth = authenticator(AuthFile {
        jwks_file: Some(path),
        ..Default::default()
    });
    let good = rs256("rsa_private.pem", Some("rsa-1"), &user_claims());
    assert_eq!(auth.authenticate(Some(&good)).unwrap().role, "app_user");
    let token = rs256("rsa_private.pem", Some("old"), &user_claims());
    let error = rejection(&auth, &token);
    assert_error(
        &error,
        "unknown_key",
        r#"key "old" of the JWKS file was skipped at startup because the RSA key is 1024 bits, but at least 2048 are required"#,
    );
}

#[test]
fn duplicate_jwks_kid_is_rejected() {
    let key = json!({"kty": "RSA", "kid": "same", "n": rsa_modulus("rsa_public.pem"), "e": "AQAB"});
    let message = jwks_setup_error(&json!({"keys": [key, key]}).to_string());
    assert!(
        message.ends_with(r#"two keys have kid "same"; give every key its own kid"#),
        "{message}"
    );
}

#[test]
fn invalid_ec_point_is_skipped() {
    let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
    let document =
        json!({"keys": [{"kty": "EC", "kid": "bad", "crv": "P-256", "x": zero, "y": zero}]});
    let message = jwks_setup_error(&document.to_string());
    assert!(
        message.contains(r#""bad": the EC key is not a valid point on the P-256 curve"#),
        "{message}"
    );
}

#[test]
fn private_key_file_is_rejected() {
    let path = fixture("rsa_private.pem");
    let message = pem_setup_error(path.clone());
    assert!(
        message.contains("the file holds a private key (-----BEGIN PRIVATE KEY-----)"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "`openssl pkey -in {} -pubout -out public.pem`",
            path.display()
        )),
        "{message}"
    );
}

#[test]
fn unsupported_pem_keys_are_rejected() {
    let message = pem_setup_error(fixture("ec384_public.pem"));
    assert!(
        message.ends_with(
            "the key is on curve P-384, but walgate verifies ES256, which needs a P-256 key"
        ),
        "{message}"
    );
    let message = pem_setup_error(fixture("rsa1024_public.pem"));
    assert!(
        message.ends_with("the RSA key is 1024 bits, but at least 2048 are required"),
        "{message}"
    );
    let message = pem_setup_error(fixture("jwks.json"));
    assert!(
        message.contains("the file is not in PEM format (it has no -----BEGIN line)"),
        "{message}"
    );
}

#[test]
fn pem_file_with_two_keys_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.pem");
    let mut text = read_fixture("rsa_public.pem");
    text.extend(read_fixture("rsa2_public.pem"));
    std::fs::write(&path, text).unwrap();
    let message = pem_setup_error(path);
    assert!(
        message.contains("the file has 2 PEM blocks; put exactly one public key in it"),
        "{message}"
    );
}
