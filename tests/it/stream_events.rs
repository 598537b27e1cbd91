//! INSERT, UPDATE, DELETE and TRUNCATE reach a WebSocket subscriber with exact payloads.

use serde_json::{json, Value};

use crate::support::{self, WsClient};

const SCHEMA: &str = "
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT '2026-12-04 15:17:50.900176+00'
);
CREATE SCHEMA sales;
CREATE TABLE sales.refunds (id int PRIMARY KEY, amount float8);
";

/// Runs `sql` in a transaction and returns its xid.
async fn run_in_transaction(client: &mut tokio_postgres::Client, sql: &str) -> i64 {
    let transaction = client.transaction().await.unwrap();
    transaction.batch_execute(sql).await.unwrap();
    let xid: i64 = transaction
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    transaction.commit().await.unwrap();
    xid
}

fn assert_envelope(event: &Value, table: &str, operation: &str, xid: i64, index: u32) {
    assert_eq!(event["schema"], "public");
    assert_eq!(event["table"], table);
    assert_eq!(event["operation"], operation);
    assert_eq!(event["xid"], json!(xid));
    let lsn = event["lsn"].as_str().expect("lsn is a string");
    assert_eq!(event["id"], json!(format!("{lsn}:{index}")));
    let commit_time = event["commit_time"]
        .as_str()
        .expect("commit_time is a string");
    assert!(
        commit_time.ends_with('Z') && commit_time.len() == 27,
        "commit_time {commit_time} is not RFC 3339 UTC with microseconds"
    );
    assert_eq!(event["unchanged_toast"], json!([]));
}

#[tokio::test]
async fn row_changes_reach_subscriber() {
    let cluster = support::start_cluster().await;
    let mut db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_orders").await;

    let xid = run_in_transaction(
        &mut db,
        "INSERT INTO orders (id, total, status) VALUES (7, 150.00, 'pending')",
    )
    .await;
    let insert = ws.next_event().await;
    assert_envelope(&insert, "orders", "INSERT", xid, 0);
    let expected_new =
        support::query_json(&db, "SELECT to_jsonb(o) FROM orders o WHERE id = 7").await;
    assert_eq!(insert["data"], json!({"new": expected_new[0], "old": null}));
    let literal: Value = serde_json::from_str(
        r#"{"id": 7, "total": 150.00, "status": "pending", "created_at": "2026-12-04T15:17:50.900176+00:00"}"#,
    )
    .unwrap();
    assert_eq!(insert["data"]["new"], literal);
    assert_eq!(insert["data"]["new"]["total"].to_string(), "150.00");

    let xid = run_in_transaction(&mut db, "UPDATE orders SET status = 'paid' WHERE id = 7").await;
    let update = ws.next_event().await;
    assert_envelope(&update, "orders", "UPDATE", xid, 0);
    assert_eq!(update["data"]["new"]["status"], "paid");
    assert_eq!(
        update["data"]["old"],
        Value::Null,
        "default identity sends no old row for a non-key update"
    );

    let xid = run_in_transaction(&mut db, "DELETE FROM orders WHERE id = 7").await;
    let delete = ws.next_event().await;
    assert_envelope(&delete, "orders", "DELETE", xid, 0);
    assert_eq!(delete["data"], json!({"new": null, "old": {"id": 7}}));

    run_in_transaction(
        &mut db,
        "INSERT INTO orders (id, total, status) VALUES (1, 1, 'a'), (2, 2, 'b')",
    )
    .await;
    let first = ws.next_event().await;
    let second = ws.next_event().await;
    assert_eq!(first["lsn"], second["lsn"]);
    assert_eq!(
        first["id"],
        json!(format!("{}:0", first["lsn"].as_str().unwrap()))
    );
    assert_eq!(
        second["id"],
        json!(format!("{}:1", first["lsn"].as_str().unwrap()))
    );
    assert_eq!(second["data"]["new"]["id"], 2);

    let xid = run_in_transaction(&mut db, "TRUNCATE orders").await;
    let truncate = ws.next_event().await;
    assert_envelope(&truncate, "orders", "TRUNCATE", xid, 0);
    assert_eq!(truncate["data"], json!({"new": null, "old": null}));
    gateway.stop().await;
}

#[tokio::test]
async fn schema_qualified_channel_and_isolation() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut refunds = WsClient::connect(gateway.addr).await;
    refunds.subscribe("table:sales.refunds").await;
    let mut orders = WsClient::connect(gateway.addr).await;
    orders.subscribe("qail_table_orders").await;

    db.batch_execute(
        "INSERT INTO sales.refunds VALUES (1, 1e30);
         INSERT INTO orders (id, total, status) VALUES (1, 2.50, 'x');",
    )
    .await
    .unwrap();
    let message = refunds.recv().await;
    assert_eq!(message["type"], "notification");
    assert_eq!(message["channel"], "table:sales.refunds");
    assert_eq!(message["payload"]["schema"], "sales");
    assert_eq!(message["payload"]["table"], "refunds");
    assert_eq!(
        message["payload"]["data"]["new"],
        json!({"id": 1, "amount": 1000000000000000000000000000000u128})
    );
    let order = orders.next_event().await;
    assert_eq!(order["table"], "orders");
    assert_eq!(
        refunds
            .try_recv(std::time::Duration::from_millis(300))
            .await,
        None,
        "the refunds subscriber must not see orders"
    );

    orders
        .send(json!({"type": "unsubscribe", "channel": "qail_table_orders"}))
        .await;
    assert_eq!(
        orders.recv().await,
        json!({"type": "unsubscribed", "channel": "qail_table_orders"})
    );
    db.batch_execute("INSERT INTO orders (id, total, status) VALUES (2, 1, 'y')")
        .await
        .unwrap();
    orders.send(json!({"type": "ping"})).await;
    assert_eq!(
        orders.recv().await,
        json!({"type": "pong"}),
        "no event after unsubscribe"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn gateway_tables_produce_no_events() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(SCHEMA).await.unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.send(json!({"type": "subscribe", "channel": "table:walgate.schema_migrations"}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unknown_table");
    ws.subscribe("qail_table_orders").await;
    db.batch_execute(
        "BEGIN;
         INSERT INTO walgate.schema_migrations (version, name) VALUES (999, 'probe');
         INSERT INTO orders (id, total, status) VALUES (5, 5, 'z');
         COMMIT;",
    )
    .await
    .unwrap();
    let event = ws.next_event().await;
    assert_eq!(event["table"], "orders");
    let lsn = event["lsn"].as_str().unwrap();
    assert_eq!(
        event["id"],
        json!(format!("{lsn}:0")),
        "internal rows take no index"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn json_without_jsonb_form_is_sent_as_text() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body json)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_docs").await;

    db.batch_execute(r#"INSERT INTO docs VALUES (1, '{"a": "\u0000"}'), (2, '{"b": 1}')"#)
        .await
        .unwrap();
    let first = ws.next_event().await;
    assert_eq!(
        first["data"]["new"],
        json!({"id": 1, "body": r#"{"a": "\u0000"}"#})
    );
    let second = ws.next_event().await;
    assert_eq!(
        second["data"]["new"],
        json!({"id": 2, "body": {"b": 1}}),
        "the stream goes on"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn subscription_follows_recreated_table() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE rec (id int PRIMARY KEY)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_rec").await;
    db.batch_execute("DROP TABLE rec; CREATE TABLE rec (id int PRIMARY KEY, label text); INSERT INTO rec VALUES (1, 'again')")
        .await
        .unwrap();
    assert_eq!(
        ws.next_event().await["data"]["new"],
        json!({"id": 1, "label": "again"})
    );
    gateway.stop().await;
}

#[tokio::test]
async fn dropped_column_type_does_not_stall_stream() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE later (id int PRIMARY KEY)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_later").await;

    db.batch_execute(
        "BEGIN;
         CREATE TYPE mood AS ENUM ('happy');
         CREATE TABLE moods (id int PRIMARY KEY, m mood);
         INSERT INTO moods VALUES (1, 'happy');
         COMMIT;
         DROP TABLE moods;
         DROP TYPE mood;
         INSERT INTO later VALUES (1);",
    )
    .await
    .unwrap();
    assert_eq!(ws.next_event().await["data"]["new"], json!({"id": 1}));
    assert!(gateway.health.is_streaming());
    gateway.stop().await;
}
