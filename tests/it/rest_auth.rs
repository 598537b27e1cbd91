//! REST and WebSocket authentication: row-level security per token subject, rejected tokens,
//! the anonymous role, RS256 keys from a JWKS file, and token checks on `/ws`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::rest_kit::{
    self, assert_error, assert_unauthorized, auth_yaml, claims, hs256, ws_connect, Api,
};
use crate::support;

const NOTES_SCHEMA: &str = "
CREATE ROLE authenticated NOLOGIN;
CREATE TABLE notes (
    id serial PRIMARY KEY,
    owner text NOT NULL DEFAULT current_setting('request.jwt.claims', true)::json->>'sub',
    body text
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes FOR ALL TO authenticated
    USING (owner = current_setting('request.jwt.claims', true)::json->>'sub')
    WITH CHECK (owner = current_setting('request.jwt.claims', true)::json->>'sub');
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
GRANT USAGE ON SEQUENCE notes_id_seq TO authenticated;
INSERT INTO notes (owner, body) VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');
";

fn not_visible(id: &str) -> String {
    format!("no row of public.notes with id \"{id}\" is visible to this request")
}

async fn note_in_db(db: &tokio_postgres::Client, id: i32) -> Option<Value> {
    support::query_json(
        db,
        &format!("SELECT to_jsonb(n) FROM notes n WHERE id = {id}"),
    )
    .await
    .pop()
}

#[tokio::test]
async fn rls_limits_subjects_to_own_rows() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(NOTES_SCHEMA).await.unwrap();
    let config = support::gateway_config_with(&cluster, &auth_yaml());
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr);
    let alice = api.with_token(&hs256(&claims("alice", "authenticated")));
    let bob = api.with_token(&hs256(&claims("bob", "authenticated")));

    let list = alice.get("/api/notes?sort=id").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(
        list.json(),
        json!({
            "data": [
                {"id": 1, "owner": "alice", "body": "a1"},
                {"id": 2, "owner": "alice", "body": "a2"},
            ],
            "count": 2, "limit": 100, "offset": 0,
        })
    );
    let list = bob.get("/api/notes?sort=id").await;
    assert_eq!(
        list.json(),
        json!({
            "data": [{"id": 3, "owner": "bob", "body": "b1"}],
            "count": 1, "limit": 100, "offset": 0,
        })
    );
    let filtered = alice.get("/api/notes?owner=bob").await;
    assert_eq!(
        filtered.json(),
        json!({"data": [], "count": 0, "limit": 100, "offset": 0}),
        "a filter on another subject's rows finds nothing"
    );

    let own = alice.get("/api/notes/1").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(
        own.json(),
        json!({"data": {"id": 1, "owner": "alice", "body": "a1"}})
    );
    let other = alice.get("/api/notes/3").await;
    assert_error(
        &other,
        StatusCode::NOT_FOUND,
        "not_found",
        &not_visible("3"),
    );

    let patched = alice.patch("/api/notes/3", r#"{"body": "hacked"}"#).await;
    assert_error(
        &patched,
        StatusCode::NOT_FOUND,
        "not_found",
        &not_visible("3"),
    );
    assert_eq!(
        note_in_db(&db, 3).await,
        Some(json!({"id": 3, "owner": "bob", "body": "b1"})),
        "bob's row is unchanged after alice's PATCH"
    );
    let deleted = alice.delete("/api/notes/3").await;
    assert_error(
        &deleted,
        StatusCode::NOT_FOUND,
        "not_found",
        &not_visible("3"),
    );
    assert_eq!(
        note_in_db(&db, 3).await,
        Some(json!({"id": 3, "owner": "bob", "body": "b1"})),
        "bob's row is still there after alice's DELETE"
    );
    let deleted = bob.delete("/api/notes/1").await;
    assert_error(
        &deleted,
        StatusCode::NOT_FOUND,
        "not_found",
        &not_visible("1"),
    );
    assert!(note_in_db(&db, 1).await.is_some());

    let patched = alice
        .patch("/api/notes/1", r#"{"body": "a1 edited"}"#)
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        patched.json(),
        json!({"data": {"id": 1, "owner": "alice", "body": "a1 edited"}})
    );
    assert_eq!(
        note_in_db(&db, 1).await,
        Some(json!({"id": 1, "owner": "alice", "body": "a1 edited"}))
    );

    let moved = alice.patch("/api/notes/2", r#"{"owner": "bob"}"#).await;
    assert_error(
        &moved,
        StatusCode::FORBIDDEN,
        "insufficient_privilege",
        "new row violates row-level security policy for table \"notes\"",
    );
    assert_eq!(
        note_in_db(&db, 2).await,
        Some(json!({"id": 2, "owner": "alice", "body": "a2"})),
        "alice cannot hand her row to bob"
    );

    let created = alice.post("/api/notes", r#"{"body": "from alice"}"#).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.json(),
        json!({"data": {"id": 4, "owner": "alice", "body": "from alice"}}),
        "the owner column defaults to the token's sub"
    );
    assert_eq!(
        note_in_db(&db, 4).await,
        Some(json!({"id": 4, "owner": "alice", "body": "from alice"}))
    );
    let forged = alice
        .post("/api/notes", r#"{"owner": "bob", "body": "forged"}"#)
        .await;
    assert_error(
        &forged,
        StatusCode::FORBIDDEN,
        "insufficient_privilege",
        "new row violates row-level security policy for table \"notes\"",
    );
    assert_eq!(forged.json()["details"], json!({"sqlstate": "42501"}));
    assert_eq!(
        support::query_json(&db, "SELECT to_jsonb(count(*)) FROM notes").await,
        vec![json!(4)],
        "the forged row was not inserted"
    );

    let stream = alice.get("/api/notes?stream=true&sort=id").await;
    assert_eq!(stream.status, StatusCode::OK, "{}", stream.text);
    assert_eq!(
        stream.lines(),
        vec![
            r#"{"id":1,"owner":"alice","body":"a1 edited"}"#,
            r#"{"id":2,"owner":"alice","body":"a2"}"#,
            r#"{"id":4,"owner":"alice","body":"from alice"}"#,
        ]
    );
    let stream = bob.get("/api/notes?stream=true&sort=id").await;
    assert_eq!(
        stream.lines(),
        vec![r#"{"id":3,"owner":"bob","body":"b1"}"#]
    );

    let deleted = bob.delete("/api/notes/3").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(deleted.text, "");
    assert_eq!(note_in_db(&db, 3).await, None);
}

#[tokio::test]
async fn token_role_none_is_not_allowed() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(NOTES_SCHEMA).await.unwrap();
    let config = support::gateway_config_with(&cluster, &auth_yaml());
    let gateway = support::start_gateway_with(config).await;
    let none = Api::new(gateway.addr).with_token(&hs256(&claims("alice", "none")));
    let message = "the role \"none\" would run the request as the gateway's own database user; \
                   issue tokens for a named role";

    // PostgreSQL reads the role setting "none" as a reset to the session user, which here is
    // a superuser that every policy lets through.
    let list = none.get("/api/notes").await;
    assert_error(&list, StatusCode::FORBIDDEN, "role_not_allowed", message);
    let stream = none.get("/api/notes?stream=true").await;
    assert_error(&stream, StatusCode::FORBIDDEN, "role_not_allowed", message);
    let deleted = none.delete("/api/notes/3").await;
    assert_error(&deleted, StatusCode::FORBIDDEN, "role_not_allowed", message);
    assert_eq!(
        note_in_db(&db, 3).await,
        Some(json!({"id": 3, "owner": "bob", "body": "b1"}))
    );
    let upper = Api::new(gateway.addr).with_token(&hs256(&claims("alice", "NONE")));
    let list = upper.get("/api/notes").await;
    assert_unauthorized(
        &list,
        "unknown_role",
        "the role \"NONE\" named by the token does not exist in the database",
    );
}

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "walgate";

const ITEMS_SCHEMA: &str = "
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE auditor NOLOGIN BYPASSRLS;
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items VALUES (1, 'one');
GRANT SELECT, INSERT ON items TO authenticated;
GRANT SELECT ON items TO auditor;
";

/// Claims that pass every check of the issuer and audience gateway.
fn full_claims(role: &str) -> Value {
    let mut claims = claims("u1", role);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(AUDIENCE);
    claims
}

/// Formats Unix seconds as RFC 3339 in UTC, as token error messages write them.
fn format_rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Replaces the payload segment of a signed token, keeping its header and signature.
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = rest_kit::b64url(payload.to_string().as_bytes());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Flips one bit of the decoded signature of a token.
fn with_flipped_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = rest_kit::b64url_decode(signature);
    bytes[0] ^= 0x01;
    format!("{signed}.{}", rest_kit::b64url(&bytes))
}

#[tokio::test]
async fn bad_tokens_get_401_challenge() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(ITEMS_SCHEMA).await.unwrap();
    let yaml = format!(
        "{}  issuer: \"{ISSUER}\"\n  audience: {AUDIENCE}\n",
        auth_yaml()
    );
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr);
    let valid = hs256(&full_claims("authenticated"));

    let ok = api.with_token(&valid).get("/api/items").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        ok.json(),
        json!({"data": [{"id": 1, "name": "one"}], "count": 1, "limit": 100, "offset": 0})
    );

    let missing = api.get("/api/items").await;
    assert_unauthorized(
        &missing,
        "missing_token",
        "missing bearer token: send `Authorization: Bearer <JWT>`; this server has no \
         anonymous role, so every request needs a token",
    );

    let mut expired_claims = full_claims("authenticated");
    let exp = rest_kit::now() - 3600;
    expired_claims["exp"] = json!(exp);
    let before = rest_kit::now();
    let expired = api
        .with_token(&hs256(&expired_claims))
        .get("/api/items")
        .await;
    let after = rest_kit::now();
    let expired_messages: Vec<String> = (before - exp..=after - exp)
        .map(|ago| {
            format!(
                "token expired at {} (exp {exp}), {ago} seconds ago, beyond the allowed clock \
                 skew of 30 seconds; request a new token",
                format_rfc3339(exp)
            )
        })
        .collect();
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    let message = expired.json()["message"].as_str().unwrap().to_string();
    assert!(
        expired_messages.contains(&message),
        "unexpected message {message:?}"
    );
    assert_unauthorized(&expired, "token_expired", &message);

    let mut early_claims = full_claims("authenticated");
    let nbf = rest_kit::now() + 3600;
    early_claims["nbf"] = json!(nbf);
    let before = rest_kit::now();
    let early = api
        .with_token(&hs256(&early_claims))
        .get("/api/items")
        .await;
    let after = rest_kit::now();
    let early_messages: Vec<String> = (nbf - after..=nbf - before)
        .map(|ahead| {
            format!(
                "token is not valid before {} (nbf {nbf}), {ahead} seconds from now, beyond the \
                 allowed clock skew of 30 seconds; check the clocks of the token issuer and of \
                 this server",
                format_rfc3339(nbf)
            )
        })
        .collect();
    let message = early.json()["message"].as_str().unwrap().to_string();
    assert!(
        early_messages.contains(&message),
        "unexpected message {message:?}"
    );
    assert_unauthorized(&early, "token_not_yet_valid", &message);

    let altered = "invalid token: the token signature does not match the HS256 secret; the \
                   token was signed with another key or altered";
    let tampered = api
        .with_token(&with_flipped_signature(&valid))
        .get("/api/items")
        .await;
    assert_unauthorized(&tampered, "invalid_token", altered);
    let mut forged_claims = full_claims("authenticated");
    forged_claims["sub"] = json!("mallory");
    let tampered = api
        .with_token(&with_payload(&valid, &forged_claims))
        .get("/api/items")
        .await;
    assert_unauthorized(&tampered, "invalid_token", altered);
    let wrong_secret = rest_kit::sign(
        Algorithm::HS256,
        b"another-secret-of-more-than-32-bytes-length",
        &full_claims("authenticated"),
    );
    let rejected = api.with_token(&wrong_secret).get("/api/items").await;
    assert_unauthorized(&rejected, "invalid_token", altered);

    let unsigned = rest_kit::unsigned_token(&full_claims("authenticated"));
    let rejected = api.with_token(&unsigned).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "unsupported_algorithm",
        "token algorithm \"none\" marks an unsigned token, and unsigned tokens are never \
         accepted; sign the token with HS256",
    );
    let hs512 = rest_kit::sign(
        Algorithm::HS512,
        rest_kit::SECRET.as_bytes(),
        &full_claims("authenticated"),
    );
    let rejected = api.with_token(&hs512).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "unsupported_algorithm",
        "token algorithm \"HS512\" is not accepted; this server accepts HS256",
    );

    let basic = api
        .send(
            api.request(reqwest::Method::GET, "/api/items")
                .header("authorization", "Basic dXNlcjpwYXNzd29yZA=="),
        )
        .await;
    assert_unauthorized(
        &basic,
        "invalid_authorization_header",
        "invalid Authorization header: the header uses the \"Basic\" scheme; send \
         `Authorization: Bearer <JWT>`",
    );
    let empty_bearer = api
        .send(
            api.request(reqwest::Method::GET, "/api/items")
                .header("authorization", "Bearer "),
        )
        .await;
    assert_unauthorized(
        &empty_bearer,
        "invalid_authorization_header",
        "invalid Authorization header: the header has the Bearer scheme but no token; send \
         `Authorization: Bearer <JWT>`",
    );

    let mut wrong_issuer = full_claims("authenticated");
    wrong_issuer["iss"] = json!("https://evil.test");
    let rejected = api
        .with_token(&hs256(&wrong_issuer))
        .get("/api/items")
        .await;
    assert_unauthorized(
        &rejected,
        "invalid_issuer",
        "token issuer \"https://evil.test\" is not the expected issuer \
         \"https://issuer.test\"; get a token from \"https://issuer.test\"",
    );
    let mut no_issuer = full_claims("authenticated");
    no_issuer.as_object_mut().unwrap().remove("iss");
    let rejected = api.with_token(&hs256(&no_issuer)).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "invalid_issuer",
        "the token has no \"iss\" claim; the expected issuer is \"https://issuer.test\"",
    );
    let mut wrong_audience = full_claims("authenticated");
    wrong_audience["aud"] = json!(["other-app", "billing"]);
    let rejected = api
        .with_token(&hs256(&wrong_audience))
        .get("/api/items")
        .await;
    assert_unauthorized(
        &rejected,
        "invalid_audience",
        "token audience [\"other-app\", \"billing\"] does not include the expected audience \
         \"walgate\"",
    );

    let mut no_exp = full_claims("authenticated");
    no_exp.as_object_mut().unwrap().remove("exp");
    let rejected = api.with_token(&hs256(&no_exp)).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "invalid_token",
        "invalid token: the token has no \"exp\" claim, and this server requires an expiry \
         time; issue tokens with \"exp\" (or set auth.require_exp: false)",
    );
    let mut no_role = full_claims("authenticated");
    no_role.as_object_mut().unwrap().remove("role");
    let rejected = api.with_token(&hs256(&no_role)).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "missing_role",
        "the token has no \"role\" claim and this server has no default role; issue tokens \
         with a \"role\" claim naming a database role (or set auth.default_role)",
    );

    let ghost = api
        .with_token(&hs256(&full_claims("ghost")))
        .get("/api/items")
        .await;
    assert_unauthorized(
        &ghost,
        "unknown_role",
        "the role \"ghost\" named by the token does not exist in the database",
    );

    for role in ["postgres", "auditor"] {
        let privileged = api
            .with_token(&hs256(&full_claims(role)))
            .get("/api/items")
            .await;
        assert_error(
            &privileged,
            StatusCode::FORBIDDEN,
            "privileged_role",
            &format!(
                "role \"{role}\" is a superuser or has BYPASSRLS, so row-level security would \
                 not apply; issue tokens for an ordinary role, or set \
                 rest.allow_privileged_roles"
            ),
        );
        assert_eq!(privileged.header("www-authenticate"), None);
    }

    let write = api
        .with_token(&with_flipped_signature(&valid))
        .post("/api/items", r#"{"id": 2, "name": "two"}"#)
        .await;
    assert_unauthorized(&write, "invalid_token", altered);
    let write = api
        .with_token(&hs256(&full_claims("postgres")))
        .post("/api/items", r#"{"id": 2, "name": "two"}"#)
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.text);
    assert_eq!(
        support::query_json(&db, "SELECT to_jsonb(count(*)) FROM items").await,
        vec![json!(1)],
        "rejected writes insert nothing"
    );
}

#[tokio::test]
async fn tokenless_requests_run_as_anon() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE ROLE web_anon NOLOGIN;
         CREATE ROLE authenticated NOLOGIN;
         CREATE TABLE menu (id int PRIMARY KEY, name text);
         INSERT INTO menu VALUES (1, 'soup');
         GRANT SELECT ON menu TO web_anon, authenticated;",
    )
    .await
    .unwrap();
    let yaml = format!("{}  anon_role: web_anon\n", auth_yaml());
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr);

    let list = api.get("/api/menu").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(
        list.json(),
        json!({"data": [{"id": 1, "name": "soup"}], "count": 1, "limit": 100, "offset": 0})
    );
    let stream = api.get("/api/menu?stream=true").await;
    assert_eq!(stream.lines(), vec![r#"{"id":1,"name":"soup"}"#]);

    let write = api.post("/api/menu", r#"{"id": 2, "name": "cake"}"#).await;
    assert_error(
        &write,
        StatusCode::UNAUTHORIZED,
        "insufficient_privilege",
        "permission denied for table menu (the request had no token, so it ran as the \
         anonymous role; send Authorization: Bearer <JWT> for a role with this privilege)",
    );
    assert_eq!(write.json()["details"], json!({"sqlstate": "42501"}));
    assert_eq!(write.header("www-authenticate"), Some("Bearer"));

    let signed_in = api.with_token(&hs256(&claims("u1", "authenticated")));
    let write = signed_in
        .post("/api/menu", r#"{"id": 2, "name": "cake"}"#)
        .await;
    assert_error(
        &write,
        StatusCode::FORBIDDEN,
        "insufficient_privilege",
        "permission denied for table menu",
    );
    assert_eq!(
        write.header("www-authenticate"),
        None,
        "a signed-in request lacking a privilege gets 403 without a challenge"
    );

    let bad = api
        .with_token(&with_flipped_signature(&hs256(&claims(
            "u1",
            "authenticated",
        ))))
        .get("/api/menu")
        .await;
    assert_unauthorized(
        &bad,
        "invalid_token",
        "invalid token: the token signature does not match the HS256 secret; the token was \
         signed with another key or altered",
    );
    assert_eq!(
        support::query_json(&db, "SELECT to_jsonb(count(*)) FROM menu").await,
        vec![json!(1)]
    );
}

#[tokio::test]
async fn roles_outside_gateway_user_get_403() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE ROLE authenticator LOGIN NOINHERIT;
         CREATE ROLE authenticated NOLOGIN;
         CREATE ROLE admin_only NOLOGIN;
         GRANT authenticated TO authenticator;
         CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items VALUES (1, 'one');
         GRANT SELECT ON items TO authenticated, admin_only;",
    )
    .await
    .unwrap();
    let yaml = format!(
        "{}rest:\n  database_url: \"postgres://authenticator@127.0.0.1:{}/postgres\"\n",
        auth_yaml(),
        cluster.port()
    );
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr);

    let ok = api
        .with_token(&hs256(&claims("u1", "authenticated")))
        .get("/api/items")
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json()["data"], json!([{"id": 1, "name": "one"}]));

    for role in ["admin_only", "postgres"] {
        let denied = api
            .with_token(&hs256(&claims("u1", role)))
            .get("/api/items")
            .await;
        assert_error(
            &denied,
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            &format!(
                "the gateway's database user may not act as role \"{role}\"; grant it with \
                 GRANT \"{role}\" TO <the gateway's user>"
            ),
        );
    }
}

/// Writes a JWKS file with one RS256 key generated by the `openssl` command, and returns the
/// directory, the private key PEM and the public key PEM.
fn rsa_jwks(kid: &str) -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);

    // The JWK contains the modulus as big-endian bytes; openssl prints it in hex. The exponent
    // is 65537, openssl's default.
    let modulus = openssl(&[
        "rsa",
        "-pubin",
        "-in",
        public.to_str().unwrap(),
        "-modulus",
        "-noout",
    ]);
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let modulus_bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": rest_kit::b64url(&modulus_bytes), "e": "AQAB",
    }]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();

    let private = std::fs::read(&private).unwrap();
    let public = std::fs::read(&public).unwrap();
    (dir, private, public)
}

fn openssl(args: &[&str]) -> String {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn rs256_tokens_verify_against_jwks_file() {
    let (dir, private, public) = rsa_jwks("test-key");
    let (_other_dir, other_private, _) = rsa_jwks("test-key");
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(ITEMS_SCHEMA).await.unwrap();
    let yaml = format!(
        "auth:\n  jwks_file: {}\n",
        dir.path().join("jwks.json").display()
    );
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let api = Api::new(gateway.addr);
    let claims = claims("u1", "authenticated");

    let ok = api
        .with_token(&rest_kit::rs256(&private, Some("test-key"), &claims))
        .get("/api/items")
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json()["data"], json!([{"id": 1, "name": "one"}]));
    let without_kid = api
        .with_token(&rest_kit::rs256(&private, None, &claims))
        .get("/api/items")
        .await;
    assert_eq!(
        without_kid.status,
        StatusCode::OK,
        "the only RS256 key verifies tokens without a kid: {}",
        without_kid.text
    );

    let confused = rest_kit::sign(Algorithm::HS256, &public, &claims);
    let rejected = api.with_token(&confused).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "unsupported_algorithm",
        "token algorithm \"HS256\" (HMAC) is not accepted, because this server verifies tokens \
         with public keys only; sign the token with RS256",
    );
    let other_key = rest_kit::rs256(&other_private, Some("test-key"), &claims);
    let rejected = api.with_token(&other_key).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "invalid_token",
        "invalid token: the token signature does not match key \"test-key\" of the JWKS file; \
         the token was signed with another key or altered",
    );
    let unknown_kid = rest_kit::rs256(&private, Some("rotated"), &claims);
    let rejected = api.with_token(&unknown_kid).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "unknown_key",
        "no configured RS256 key has kid \"rotated\" (known kids: \"test-key\"); if the issuer \
         rotated its keys, update the JWKS file and restart walgate",
    );
    let unsigned = rest_kit::unsigned_token(&claims);
    let rejected = api.with_token(&unsigned).get("/api/items").await;
    assert_unauthorized(
        &rejected,
        "unsupported_algorithm",
        "token algorithm \"none\" marks an unsigned token, and unsigned tokens are never \
         accepted; sign the token with RS256",
    );
}

const WS_SCHEMA: &str = "
CREATE ROLE authenticated NOLOGIN;
CREATE TABLE orders (id int PRIMARY KEY, status text);
CREATE TABLE secrets (id int PRIMARY KEY);
GRANT SELECT ON orders TO authenticated;
";

/// Asserts a rejected upgrade: HTTP 401 with a JSON error body of `code`.
fn assert_upgrade_rejected(result: Result<rest_kit::AuthedWs, (u16, String)>, code: &str) {
    let Err((status, body)) = result else {
        panic!("the upgrade succeeded, expected 401 {code}");
    };
    assert_eq!(status, 401, "status of the rejected upgrade: {body}");
    let body: Value = serde_json::from_str(&body).expect("401 body is JSON");
    assert_eq!(body["code"], code, "code in {body}");
}

async fn assert_receives_inserts(
    ws: &mut rest_kit::AuthedWs,
    db: &tokio_postgres::Client,
    id: i32,
) {
    db.execute("INSERT INTO orders VALUES ($1, 'new')", &[&id])
        .await
        .unwrap();
    let message = ws.recv().await;
    assert_eq!(message["type"], "notification", "{message}");
    assert_eq!(message["channel"], "qail_table_orders");
    assert_eq!(
        message["payload"]["data"]["new"],
        json!({"id": id, "status": "new"})
    );
}

#[tokio::test]
async fn websocket_checks_token_and_select() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(WS_SCHEMA).await.unwrap();
    let config = support::gateway_config_with(&cluster, &auth_yaml());
    let gateway = support::start_gateway_with(config).await;
    let token = hs256(&claims("u1", "authenticated"));

    assert_upgrade_rejected(ws_connect(gateway.addr, "/ws", None).await, "missing_token");
    let forged = format!("{token}x");
    assert_upgrade_rejected(
        ws_connect(gateway.addr, "/ws", Some(&forged)).await,
        "invalid_token",
    );
    assert_upgrade_rejected(
        ws_connect(gateway.addr, &format!("/ws?access_token={token}"), None).await,
        "query_token_disabled",
    );

    let mut ws = ws_connect(gateway.addr, "/ws", Some(&token))
        .await
        .expect("a valid token upgrades");
    let reply = ws.subscribe("qail_table_secrets").await;
    assert_eq!(
        reply,
        json!({
            "type": "error",
            "code": "forbidden",
            "message": "role \"authenticated\" has no SELECT privilege on \
                        \"public\".\"secrets\"; grant it, or connect with a token for a role \
                        that has it",
            "channel": "qail_table_secrets",
        })
    );
    let reply = ws.subscribe("qail_table_orders").await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "channel": "qail_table_orders"})
    );
    assert_receives_inserts(&mut ws, &db, 1).await;
    db.batch_execute("INSERT INTO secrets VALUES (1)")
        .await
        .unwrap();
    assert_receives_inserts(&mut ws, &db, 2).await;

    let ghost = hs256(&claims("u1", "ghost"));
    let mut ws = ws_connect(gateway.addr, "/ws", Some(&ghost))
        .await
        .expect("a valid token for a missing role still upgrades");
    let reply = ws.subscribe("qail_table_orders").await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(
        reply["message"],
        "the role \"ghost\" named by the token does not exist in the database"
    );
    assert_eq!(ws.try_recv(Duration::from_millis(300)).await, None);

    let superuser = hs256(&claims("u1", "postgres"));
    let mut ws = ws_connect(gateway.addr, "/ws", Some(&superuser))
        .await
        .expect("a valid token for a superuser upgrades");
    let reply = ws.subscribe("qail_table_orders").await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert_eq!(
        reply["message"],
        "role \"postgres\" is a superuser or has BYPASSRLS; issue tokens for an ordinary role, \
         or set rest.allow_privileged_roles"
    );
}

#[tokio::test]
async fn websocket_query_token_works_when_enabled() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(WS_SCHEMA).await.unwrap();
    let yaml = format!("{}  websocket_query_token: true\n", auth_yaml());
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let token = hs256(&claims("u1", "authenticated"));

    assert_upgrade_rejected(ws_connect(gateway.addr, "/ws", None).await, "missing_token");
    let expired = hs256(&json!({"sub": "u1", "role": "authenticated", "exp": 1_000_000_000}));
    assert_upgrade_rejected(
        ws_connect(gateway.addr, &format!("/ws?access_token={expired}"), None).await,
        "token_expired",
    );

    let mut ws = ws_connect(gateway.addr, &format!("/ws?access_token={token}"), None)
        .await
        .expect("the query token upgrades");
    let reply = ws.subscribe("qail_table_orders").await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "channel": "qail_table_orders"})
    );
    assert_receives_inserts(&mut ws, &db, 1).await;
    let reply = ws.subscribe("qail_table_secrets").await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
}
