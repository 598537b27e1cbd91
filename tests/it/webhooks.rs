//! Event triggers deliver exact payloads and headers, retry, keep dead letters, and never follow
//! redirects.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::receiver::{Receiver, Reply};
use crate::support::{self};

/// 32 bytes, base64: a Standard Webhooks secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

const SCHEMA: &str = "
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL,
    note text
);
ALTER TABLE orders REPLICA IDENTITY FULL;
";

/// Writes trigger YAML to a temporary file.
fn trigger_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    file
}

fn config_yaml(triggers: &tempfile::NamedTempFile) -> String {
    format!(
        "triggers: {}\nadmin_token: {ADMIN_TOKEN}\nwebhooks:\n  retry_base_ms: 50\n  poll_interval_ms: 50\n",
        triggers.path().display()
    )
}

/// Verifies a Standard Webhooks signature with HMAC-SHA256 computed here, independently of
/// walgate's signing code.
fn verify_signature(id: &str, timestamp: &str, body: &str, header: &str) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(header, format!("v1,{expected}"));
}

async fn row_json(db: &tokio_postgres::Client, id: i64) -> Value {
    support::query_json(
        db,
        &format!("SELECT to_jsonb(o) FROM orders o WHERE id = {id}"),
    )
    .await
    .remove(0)
}

#[tokio::test]
async fn operations_deliver_exact_payloads() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let receiver = Receiver::start().await;
    let triggers = trigger_file(&format!(
        r#"
- name: order_created
  table: orders
  operations: [create]
  webhook_url: "{}"
  headers:
    X-Secret: webhook-secret-key
  retry_count: 3
  secret: "{SECRET}"
- name: order_changed
  table: orders
  operations: [update, delete]
  webhook_url: "{}"
"#,
        receiver.url("/created"),
        receiver.url("/changed")
    ));
    let config = support::gateway_config_with(&cluster, &config_yaml(&triggers));
    let gateway = support::start_gateway_with(config).await;

    db.batch_execute("INSERT INTO orders VALUES (7, 150.00, 'pending', NULL)")
        .await
        .unwrap();
    let inserted = row_json(&db, 7).await;
    db.batch_execute("UPDATE orders SET status = 'paid' WHERE id = 7")
        .await
        .unwrap();
    let updated = row_json(&db, 7).await;
    db.batch_execute("DELETE FROM orders WHERE id = 7")
        .await
        .unwrap();

    let created = receiver
        .wait_for("/created", 1, Duration::from_secs(20))
        .await;
    let request = &created[0];
    let body = request.json();
    let lsn = body["lsn"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        json!({
            "trigger": "order_created", "table": "orders", "schema": "public",
            "operation": "INSERT", "id": format!("{lsn}:0"), "lsn": lsn,
            "data": {"new": inserted, "old": null},
            "timestamp": body["timestamp"],
        })
    );
    assert_eq!(body["data"]["new"]["total"].to_string(), "150.00");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "{timestamp}"
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-secret"), "webhook-secret-key");
    assert_eq!(
        request.header("webhook-id"),
        format!("order_created:{lsn}:0")
    );
    let sent_at: i64 = request.header("webhook-timestamp").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - sent_at).abs() < 60,
        "webhook-timestamp {sent_at} is not now"
    );
    verify_signature(
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature"),
    );

    let changed = receiver
        .wait_for("/changed", 2, Duration::from_secs(20))
        .await;
    let update = changed[0].json();
    assert_eq!(update["operation"], "UPDATE");
    assert_eq!(update["data"], json!({"new": updated, "old": inserted}));
    assert!(
        !changed[0].headers.contains_key("webhook-signature"),
        "no secret, no signature"
    );
    let delete = changed[1].json();
    assert_eq!(delete["operation"], "DELETE");
    assert_eq!(delete["data"], json!({"new": null, "old": updated}));
    assert_eq!(
        receiver.received_on("/created").len(),
        1,
        "create fires once"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn columns_limit_update_deliveries() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    db.batch_execute("INSERT INTO orders VALUES (1, 10, 'new', 'a')")
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let triggers = trigger_file(&format!(
        "- name: status_changed\n  table: orders\n  operations: [update]\n  columns: [status]\n  webhook_url: \"{}\"\n",
        receiver.url("/status")
    ));
    let gateway = support::start_gateway_with(support::gateway_config_with(
        &cluster,
        &config_yaml(&triggers),
    ))
    .await;

    db.batch_execute("UPDATE orders SET note = 'b' WHERE id = 1")
        .await
        .unwrap();
    db.batch_execute("UPDATE orders SET status = 'paid' WHERE id = 1")
        .await
        .unwrap();
    db.batch_execute("UPDATE orders SET total = 11 WHERE id = 1")
        .await
        .unwrap();
    db.batch_execute("UPDATE orders SET status = 'shipped', note = 'c' WHERE id = 1")
        .await
        .unwrap();
    let received = receiver
        .wait_for("/status", 2, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let statuses: Vec<Value> = receiver
        .received_on("/status")
        .iter()
        .map(|r| r.json()["data"]["new"]["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("paid"), json!("shipped")]);
    assert_eq!(received[0].json()["data"]["old"]["status"], "new");
    gateway.stop().await;
}

async fn admin(
    gateway: &walgate::gateway::Gateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("http://{}{path}", gateway.addr));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn retries_dead_letters_and_redirects() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let receiver = Receiver::start().await;
    receiver.script("/flaky", vec![Reply::status(503), Reply::status(500)]);
    receiver.set_default("/rejecting", Reply::status(400));
    receiver.set_default(
        "/moved",
        Reply {
            headers: vec![("location", receiver.url("/target"))],
            ..Reply::status(302)
        },
    );
    let triggers = trigger_file(&format!(
        r#"
- name: flaky
  table: orders
  operations: [create]
  webhook_url: "{}"
- name: rejecting
  table: orders
  operations: [create]
  webhook_url: "{}"
- name: moved
  table: orders
  operations: [create]
  webhook_url: "{}"
"#,
        receiver.url("/flaky"),
        receiver.url("/rejecting"),
        receiver.url("/moved"),
    ));
    let gateway = support::start_gateway_with(support::gateway_config_with(
        &cluster,
        &config_yaml(&triggers),
    ))
    .await;
    db.batch_execute("INSERT INTO orders VALUES (1, 1, 'x', NULL)")
        .await
        .unwrap();

    let flaky = receiver
        .wait_for("/flaky", 3, Duration::from_secs(20))
        .await;
    let ids: Vec<&str> = flaky.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id is stable across retries: {ids:?}"
    );
    receiver
        .wait_for("/rejecting", 1, Duration::from_secs(20))
        .await;
    receiver
        .wait_for("/moved", 1, Duration::from_secs(20))
        .await;

    let (status, _) = admin(&gateway, reqwest::Method::GET, "/admin/deliveries", None).await;
    assert_eq!(status, 401);
    let (status, _) = admin(
        &gateway,
        reqwest::Method::GET,
        "/admin/deliveries",
        Some("wrong-token-0123456789"),
    )
    .await;
    assert_eq!(status, 401);

    let dead_letters = || async {
        let (_, body) = admin(
            &gateway,
            reqwest::Method::GET,
            "/admin/deliveries?status=dead",
            Some(ADMIN_TOKEN),
        )
        .await;
        body["deliveries"].as_array().cloned().unwrap_or_default()
    };
    support::wait_until(Duration::from_secs(20), "two dead letters", || async {
        dead_letters().await.len() == 2
    })
    .await;
    let dead = dead_letters().await;
    let by_trigger = |name: &str| dead.iter().find(|d| d["trigger"] == name).cloned().unwrap();
    let rejected = by_trigger("rejecting");
    assert_eq!(rejected["attempts"], 1, "a 400 is not retried");
    assert_eq!(rejected["last_status"], 400);
    assert_eq!(rejected["last_error"], "endpoint returned 400 Bad Request");
    let moved = by_trigger("moved");
    assert_eq!(moved["attempts"], 1);
    assert_eq!(moved["last_status"], 302);
    assert!(
        receiver.received_on("/target").is_empty(),
        "the redirect is not followed"
    );
    assert_eq!(receiver.received_on("/rejecting").len(), 1);

    let (status, body) = admin(
        &gateway,
        reqwest::Method::GET,
        "/admin/deliveries?status=delivered",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let delivered = body["deliveries"].as_array().unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["trigger"], "flaky");
    assert_eq!(delivered[0]["attempts"], 3);

    receiver.set_default("/rejecting", Reply::status(204));
    let id = rejected["id"].as_i64().unwrap();
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/deliveries/{id}/retry"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": id, "status": "pending"}));
    receiver
        .wait_for("/rejecting", 2, Duration::from_secs(20))
        .await;
    support::wait_until(
        Duration::from_secs(20),
        "the retried delivery is delivered",
        || async {
            let (_, body) = admin(
                &gateway,
                reqwest::Method::GET,
                &format!("/admin/deliveries/{id}"),
                Some(ADMIN_TOKEN),
            )
            .await;
            body["status"] == "delivered"
        },
    )
    .await;
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/deliveries/{id}/retry"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        body["message"],
        format!("delivery {id} is delivered; only dead deliveries can be retried")
    );

    receiver.set_default("/moved", Reply::status(200));
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/deliveries/retry?trigger=moved",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"retried": 1}));
    receiver
        .wait_for("/moved", 2, Duration::from_secs(20))
        .await;
    gateway.stop().await;
}

#[tokio::test]
async fn retry_after_and_retention_apply() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let receiver = Receiver::start().await;
    receiver.script(
        "/busy",
        vec![Reply {
            headers: vec![("retry-after", "2".to_string())],
            ..Reply::status(429)
        }],
    );
    let triggers = trigger_file(&format!(
        "- name: busy\n  table: orders\n  operations: [create]\n  webhook_url: \"{}\"\n",
        receiver.url("/busy")
    ));
    let yaml = format!("{}  retention_hours: 0\n", config_yaml(&triggers));
    let gateway = support::start_gateway_with(support::gateway_config_with(&cluster, &yaml)).await;

    db.batch_execute("INSERT INTO orders VALUES (1, 1, 'x', NULL)")
        .await
        .unwrap();
    receiver.wait_for("/busy", 1, Duration::from_secs(20)).await;
    let first = std::time::Instant::now();
    receiver.wait_for("/busy", 2, Duration::from_secs(20)).await;
    let waited = first.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "the retry came after {waited:?}, before the 2 s Retry-After"
    );

    support::wait_until(
        Duration::from_secs(20),
        "the delivered row is deleted",
        || async {
            let count: i64 = db
                .query_one("SELECT count(*) FROM walgate.webhook_deliveries", &[])
                .await
                .unwrap()
                .get(0);
            count == 0
        },
    )
    .await;
    gateway.stop().await;
}
