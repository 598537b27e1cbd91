//! Old row images under each REPLICA IDENTITY setting, key changes and unchanged TOASTed values.

use serde_json::{json, Value};

use crate::support::{self, WsClient};

async fn row_json(db: &tokio_postgres::Client, table: &str, id: i32) -> Value {
    let sql = format!("SELECT to_jsonb(t) FROM {table} t WHERE id = {id}");
    support::query_json(db, &sql).await.remove(0)
}

#[tokio::test]
async fn default_identity_sends_key_only() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_items").await;

    db.batch_execute("INSERT INTO items VALUES (1, 'bolt', 10)")
        .await
        .unwrap();
    ws.next_event().await;
    db.batch_execute("UPDATE items SET qty = 11 WHERE id = 1")
        .await
        .unwrap();
    let update = ws.next_event().await;
    assert_eq!(update["data"]["old"], Value::Null);
    assert_eq!(update["data"]["new"], row_json(&db, "items", 1).await);

    db.batch_execute("UPDATE items SET id = 2 WHERE id = 1")
        .await
        .unwrap();
    let key_change = ws.next_event().await;
    assert_eq!(key_change["operation"], "UPDATE");
    assert_eq!(
        key_change["data"]["old"],
        json!({"id": 1}),
        "old holds only the key"
    );
    assert_eq!(key_change["data"]["new"], row_json(&db, "items", 2).await);

    db.batch_execute("DELETE FROM items WHERE id = 2")
        .await
        .unwrap();
    let delete = ws.next_event().await;
    assert_eq!(delete["data"], json!({"new": null, "old": {"id": 2}}));
    gateway.stop().await;
}

#[tokio::test]
async fn full_identity_sends_whole_old_row() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric);
         ALTER TABLE items REPLICA IDENTITY FULL;
         INSERT INTO items VALUES (1, 'bolt', 10, 0.10);",
    )
    .await
    .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_items").await;

    let before = row_json(&db, "items", 1).await;
    db.batch_execute("UPDATE items SET qty = NULL, price = 1e-3 WHERE id = 1")
        .await
        .unwrap();
    let update = ws.next_event().await;
    assert_eq!(update["data"]["old"], before);
    assert_eq!(update["data"]["new"], row_json(&db, "items", 1).await);
    assert_eq!(update["data"]["new"]["price"].to_string(), "0.001");

    let before = row_json(&db, "items", 1).await;
    db.batch_execute("DELETE FROM items WHERE id = 1")
        .await
        .unwrap();
    let delete = ws.next_event().await;
    assert_eq!(delete["data"], json!({"new": null, "old": before}));
    gateway.stop().await;
}

#[tokio::test]
async fn index_identity_sends_index_columns() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, code text NOT NULL, region int NOT NULL, qty int);
         CREATE UNIQUE INDEX items_code_region ON items (code, region);
         ALTER TABLE items REPLICA IDENTITY USING INDEX items_code_region;
         INSERT INTO items VALUES (1, 'A-1', 3, 5);",
    )
    .await
    .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_items").await;

    db.batch_execute("UPDATE items SET code = 'B-2' WHERE id = 1")
        .await
        .unwrap();
    let update = ws.next_event().await;
    assert_eq!(update["data"]["old"], json!({"code": "A-1", "region": 3}));
    assert_eq!(update["data"]["new"], row_json(&db, "items", 1).await);

    db.batch_execute("DELETE FROM items WHERE id = 1")
        .await
        .unwrap();
    let delete = ws.next_event().await;
    assert_eq!(delete["data"]["old"], json!({"code": "B-2", "region": 3}));
    gateway.stop().await;
}

const TOAST_TABLE: &str = "
CREATE TABLE docs (id int PRIMARY KEY, status text, notes text);
ALTER TABLE docs ALTER notes SET STORAGE EXTERNAL;
INSERT INTO docs
SELECT 1, 'draft', string_agg(md5(i::text), '') FROM generate_series(1, 200) i;
";

#[tokio::test]
async fn unchanged_toast_left_out_under_default() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(TOAST_TABLE).await.unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_docs").await;

    db.batch_execute("UPDATE docs SET status = 'final' WHERE id = 1")
        .await
        .unwrap();
    let update = ws.next_event().await;
    assert_eq!(update["data"]["new"], json!({"id": 1, "status": "final"}));
    assert_eq!(update["data"]["old"], Value::Null);
    assert_eq!(update["unchanged_toast"], json!(["notes"]));

    db.batch_execute("UPDATE docs SET notes = notes || 'x' WHERE id = 1")
        .await
        .unwrap();
    let changed = ws.next_event().await;
    assert_eq!(changed["data"]["new"], row_json(&db, "docs", 1).await);
    assert_eq!(changed["unchanged_toast"], json!([]));
    gateway.stop().await;
}

#[tokio::test]
async fn unchanged_toast_taken_from_full_old_row() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(TOAST_TABLE).await.unwrap();
    db.batch_execute("ALTER TABLE docs REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_docs").await;

    let before = row_json(&db, "docs", 1).await;
    assert!(before["notes"].as_str().unwrap().len() > 2000);
    db.batch_execute("UPDATE docs SET status = 'final' WHERE id = 1")
        .await
        .unwrap();
    let update = ws.next_event().await;
    assert_eq!(update["data"]["new"], row_json(&db, "docs", 1).await);
    assert_eq!(update["data"]["old"], before);
    assert_eq!(update["unchanged_toast"], json!([]));
    gateway.stop().await;
}
