//! REST writes reach webhooks and WebSocket subscribers only through the WAL: each written row
//! produces exactly one delivery and one notification, carrying the row the REST response
//! returned.

use std::io::Write;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::rest_kit::{auth_yaml, claims, hs256, ws_connect, Api, AuthedWs};
use crate::support;
use crate::support::receiver::Receiver;

const SCHEMA: &str = "
CREATE ROLE authenticated NOLOGIN;
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON orders TO authenticated;
GRANT USAGE ON SEQUENCE orders_id_seq TO authenticated;
";

/// How long to keep watching for a duplicate after the expected messages arrived.
const QUIET: Duration = Duration::from_secs(2);

async fn next_notification(ws: &mut AuthedWs) -> Value {
    let message = ws.recv().await;
    assert_eq!(message["type"], "notification", "{message}");
    assert_eq!(message["channel"], "qail_table_orders");
    message["payload"].clone()
}

async fn row_in_db(db: &tokio_postgres::Client, id: &Value) -> Value {
    support::query_json(
        db,
        &format!("SELECT to_jsonb(o) FROM orders o WHERE id = {id}"),
    )
    .await
    .remove(0)
}

#[tokio::test]
async fn rest_write_notifies_each_consumer_once() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let receiver = Receiver::start().await;
    let mut triggers = tempfile::NamedTempFile::new().unwrap();
    write!(
        triggers,
        "- name: order_created\n  table: orders\n  operations: [create]\n  webhook_url: \"{}\"\n",
        receiver.url("/created")
    )
    .unwrap();
    let yaml = format!(
        "triggers: {}\nwebhooks:\n  retry_base_ms: 50\n  poll_interval_ms: 50\n{}",
        triggers.path().display(),
        auth_yaml()
    );
    let config = support::gateway_config_with(&cluster, &yaml);
    let gateway = support::start_gateway_with(config).await;
    let token = hs256(&claims("u1", "authenticated"));
    let api = Api::new(gateway.addr).with_token(&token);
    let mut ws = ws_connect(gateway.addr, "/ws", Some(&token))
        .await
        .expect("WebSocket upgrade with a token");
    assert_eq!(
        ws.subscribe("qail_table_orders").await,
        json!({"type": "subscribed", "channel": "qail_table_orders"})
    );

    let created = api
        .post("/api/orders", r#"{"total": 150.00, "status": "pending"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let row = created.json()["data"].clone();
    assert_eq!(row["id"], json!(1));
    assert_eq!(row["total"].to_string(), "150.00");
    assert_eq!(row["status"], "pending");
    assert_eq!(row_in_db(&db, &row["id"]).await, row);

    let deliveries = receiver
        .wait_for("/created", 1, Duration::from_secs(20))
        .await;
    let webhook = deliveries[0].json();
    assert_eq!(webhook["trigger"], "order_created");
    assert_eq!(webhook["operation"], "INSERT");
    assert_eq!(webhook["data"], json!({"new": row, "old": null}));
    assert_eq!(webhook["data"]["new"]["total"].to_string(), "150.00");
    let event = next_notification(&mut ws).await;
    assert_eq!(event["operation"], "INSERT");
    assert_eq!(event["data"], json!({"new": row, "old": null}));
    assert_eq!(
        event["lsn"], webhook["lsn"],
        "both consumers saw the same WAL record"
    );
    assert_eq!(event["id"], webhook["id"]);

    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.received_on("/created").len(), 1, "one delivery");
    assert_eq!(
        ws.try_recv(Duration::from_millis(100)).await,
        None,
        "one notification"
    );

    let batch = api
        .post(
            "/api/orders",
            r#"[{"total": 1.50, "status": "a"}, {"total": 2, "status": "b"}]"#,
        )
        .await;
    assert_eq!(batch.status, StatusCode::CREATED, "{}", batch.text);
    let rows = batch.json()["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["total"].to_string(), "1.50");
    assert_eq!(rows[1]["total"].to_string(), "2.00");
    let deliveries = receiver
        .wait_for("/created", 3, Duration::from_secs(20))
        .await;
    let delivered: Vec<Value> = deliveries[1..]
        .iter()
        .map(|request| request.json()["data"]["new"].clone())
        .collect();
    assert_eq!(delivered, rows);
    for expected in &rows {
        let event = next_notification(&mut ws).await;
        assert_eq!(event["operation"], "INSERT");
        assert_eq!(&event["data"]["new"], expected);
    }

    let patched = api.patch("/api/orders/1", r#"{"status": "paid"}"#).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let updated = patched.json()["data"].clone();
    assert_eq!(updated["status"], "paid");
    let event = next_notification(&mut ws).await;
    assert_eq!(event["operation"], "UPDATE");
    assert_eq!(event["data"]["new"], updated);

    tokio::time::sleep(QUIET).await;
    assert_eq!(
        receiver.received_on("/created").len(),
        3,
        "one delivery per inserted row, none for the update"
    );
    assert_eq!(ws.try_recv(Duration::from_millis(100)).await, None);
}
