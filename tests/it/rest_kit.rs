//! Helpers for the REST tests of authentication, streaming and the write path: signed tokens,
//! a small HTTP client for `/api`, and WebSocket clients that send credentials.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The HS256 secret of the test gateways: 48 bytes, above the 32-byte minimum.
pub const SECRET: &str = "rest-test-secret-0123456789abcdefghijklmnopqrstu";

/// Returns an `auth:` section that accepts HS256 tokens signed with [`SECRET`] and has no
/// anonymous role.
pub fn auth_yaml() -> String {
    format!("auth:\n  jwt_secret: {SECRET}\n")
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims for `sub` acting as `role`, expiring in an hour.
pub fn claims(sub: &str, role: &str) -> Value {
    json!({"sub": sub, "role": role, "exp": now() + 3600})
}

/// Signs `claims` with HS256 and [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, SECRET.as_bytes(), claims)
}

/// Signs `claims` with an HMAC algorithm and the given secret.
pub fn sign(algorithm: Algorithm, secret: &[u8], claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret).expect("non-empty HMAC secret");
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key).expect("token encodes")
}

/// Signs `claims` with RS256 and a PEM private key, naming `kid` in the header.
pub fn rs256(private_pem: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem).expect("RSA private key in PEM");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("token encodes")
}

/// Encodes bytes as base64url without padding, as JWT segments are.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes one base64url JWT segment.
pub fn b64url_decode(segment: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url JWT segment")
}

/// Builds an unsigned token: header `{"alg":"none","typ":"JWT"}`, the claims, and an empty
/// signature.
pub fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// Parses the body as JSON; numbers keep every digit.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text))
    }

    /// Returns a header as text, or None when it is missing.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header is ASCII"))
    }

    /// Splits an NDJSON body into its lines; the body must end with a newline.
    pub fn lines(&self) -> Vec<&str> {
        let body = self
            .text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("NDJSON body does not end with a newline"));
        body.split('\n').collect()
    }
}

/// An HTTP client for the gateway's `/api` routes, sending a bearer token when it has one.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// Creates a client that sends no token.
    pub fn new(addr: SocketAddr) -> Api {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client builds");
        Api {
            client,
            base: format!("http://{addr}"),
            token: None,
        }
    }

    /// Returns a copy of this client that sends `token` as `Authorization: Bearer`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Starts a request to `path` (for example `/api/notes?sort=id`) with the token, if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body reads");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Sends `body` as the JSON text given, so numbers keep their digits.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send(json_body(self.request(reqwest::Method::POST, path), body))
            .await
    }

    pub async fn patch(&self, path: &str, body: &str) -> Reply {
        self.send(json_body(self.request(reqwest::Method::PATCH, path), body))
            .await
    }
}

fn json_body(builder: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
    builder
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// Asserts a JSON error response: its status, and a body of exactly `code` and `message`
/// (with `details` when the body has them, which the caller checks).
pub fn assert_error(reply: &Reply, status: StatusCode, code: &str, message: &str) {
    assert_eq!(reply.status, status, "status of {}", reply.text);
    let body = reply.json();
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["message"], message, "message in {body}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "content type of an error"
    );
}

/// Asserts a 401 JSON error with the `WWW-Authenticate: Bearer` challenge.
pub fn assert_unauthorized(reply: &Reply, code: &str, message: &str) {
    assert_error(reply, StatusCode::UNAUTHORIZED, code, message);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer"),
        "challenge of a 401 with code {code}"
    );
    assert_eq!(
        reply.json().as_object().unwrap().len(),
        2,
        "an auth error has only code and message: {}",
        reply.text
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `ws://addr{path}`, sending `Authorization: Bearer <token>` when a token is given.
/// Returns the HTTP status and body of a rejected upgrade as the error.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<AuthedWs, (u16, String)> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid WebSocket URL");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(AuthedWs { socket }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("WebSocket upgrade failed without an HTTP response: {other}"),
    }
}

/// A WebSocket client that connected with credentials.
pub struct AuthedWs {
    socket: Socket,
}

impl AuthedWs {
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send a text frame");
    }

    /// Receives the next text frame as JSON, or None after `limit` or when the socket closes.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(limit, self.socket.next())
                .await
                .ok()??;
            match next.ok()? {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("server sends JSON"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Receives the next text frame as JSON; panics after 20 s or on close.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(20))
            .await
            .expect("a message within 20 s")
    }

    /// Sends a subscribe message and returns the reply.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"type": "subscribe", "channel": channel}))
            .await;
        self.recv().await
    }
}
