//! A REST client for the gateway's `/api` routes, tokens for its HS256 secret, and SQL
//! helpers that compute the rows a request should return.

use std::net::SocketAddr;

use serde_json::Value;

use walgate::cluster::EphemeralCluster;

/// Settings for a gateway with the test secret, `web_anon` as the anonymous role and the
/// given `rest:` section (YAML flow mapping, `{}` for the defaults).
pub fn gateway_config(cluster: &EphemeralCluster, rest: &str) -> walgate::config::Config {
    let yaml = format!(
        "{}  anon_role: \"web_anon\"\nrest: {rest}\n",
        crate::rest_kit::auth_yaml()
    );
    super::gateway_config_with(cluster, &yaml)
}

/// Signs a token for `role` with the test secret, valid for an hour.
pub fn token(role: &str) -> String {
    crate::rest_kit::hs256(&crate::rest_kit::claims("user-1", role))
}

/// A response: status, the `Content-Type` header and the body (parsed when it is JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// Returns the `data` member of the body.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// Asserts the status and returns the body, showing the body when the status differs.
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }
}

/// A client of one gateway's REST API, anonymous or with a bearer token.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Rest {
    /// Creates a client of the gateway at `addr` that sends no token, so its requests run as
    /// the anonymous role.
    pub fn anonymous(addr: SocketAddr) -> Rest {
        Rest {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            base: format!("http://{addr}/api"),
            token: None,
        }
    }

    /// Creates a client that sends a token for `role`.
    pub fn as_role(addr: SocketAddr, role: &str) -> Rest {
        Rest {
            token: Some(token(role)),
            ..Rest::anonymous(addr)
        }
    }

    /// Sends `method` to `/api{path}`. The `path` must already be percent-encoded.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {url} failed: {err}"));

        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().expect("ASCII header").to_string())
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let www_authenticate = header(reqwest::header::WWW_AUTHENTICATE);

        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("reading the body of {method} {url} failed: {err}"));
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{method} {url}: body is not JSON ({err}): {text}"))
        };
        Reply {
            status,
            content_type,
            www_authenticate,
            text,
            body,
        }
    }

    /// `GET /api{path}`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `POST /api{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// `POST /api{path}` with the body bytes as given.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PATCH /api{path}` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        let body = body.to_string().into_bytes();
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `DELETE /api{path}`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// Percent-encodes one path segment or query component, leaving only unreserved characters.
pub fn encode(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// Builds a query string from (key, value) pairs, percent-encoding each.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Runs `sql` with text parameters and returns the first column of every row (jsonb).
pub async fn query_json_with(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&str],
) -> Vec<Value> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|param| param as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    db.query(sql, &params)
        .await
        .unwrap_or_else(|err| {
            let cause = err.as_db_error().map(|db| db.message().to_string());
            panic!("query {sql:?} failed: {err} {cause:?}")
        })
        .iter()
        .map(|row| row.get::<_, Value>(0))
        .collect()
}

/// Reads the column names of `table` in column order.
pub async fn column_names(db: &tokio_postgres::Client, table: &str) -> Vec<String> {
    db.query(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum",
        &[&table],
    )
    .await
    .expect("read column names")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Returns the keys of a JSON object in the order they appear.
pub fn keys(row: &Value) -> Vec<String> {
    row.as_object()
        .unwrap_or_else(|| panic!("{row} is not an object"))
        .keys()
        .cloned()
        .collect()
}

/// Counts the tables, views and other relations with columns in the database, to check that
/// nothing was created or dropped.
pub async fn relation_count(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'v', 'm', 'f')",
        &[],
    )
    .await
    .expect("count relations")
    .get(0)
}

/// A throwaway cluster with a schema loaded and a gateway in front of it.
pub struct Fixture {
    pub cluster: EphemeralCluster,
    /// A superuser connection for setting up and for computing expected rows.
    pub db: tokio_postgres::Client,
    pub gateway: walgate::gateway::Gateway,
    /// Requests without a token, which run as `web_anon`.
    pub anon: Rest,
    /// Requests with a token for `authenticated`.
    pub user: Rest,
}

impl Fixture {
    /// Starts a cluster, runs `walgate::dev::DEMO_SCHEMA` and then `sql`, and starts a gateway
    /// with the `rest:` section `rest`.
    pub async fn start(sql: &str, rest: &str) -> Fixture {
        let cluster = super::start_cluster().await;
        let db = super::connect(&cluster).await;
        db.batch_execute(walgate::dev::DEMO_SCHEMA)
            .await
            .expect("load the demo schema");
        db.batch_execute(sql).await.expect("load the test schema");
        let gateway = super::start_gateway_with(gateway_config(&cluster, rest)).await;
        let anon = Rest::anonymous(gateway.addr);
        let user = Rest::as_role(gateway.addr, "authenticated");
        Fixture {
            cluster,
            db,
            gateway,
            anon,
            user,
        }
    }

    /// Stops the gateway; the cluster is removed when the fixture is dropped.
    pub async fn stop(self) {
        self.gateway.stop().await;
        drop(self.cluster);
    }
}
