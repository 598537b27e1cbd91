//! Columns added, dropped, renamed and retyped while streaming decode with the new shape.

use serde_json::{json, Value};

use crate::support::{self, WsClient};

/// Parses JSON text, keeping every digit of its numbers.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn alter_table_between_inserts() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, a text, b int)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_t").await;

    let steps = [
        ("INSERT INTO t VALUES (1, 'one', 1)", json!({"id": 1, "a": "one", "b": 1})),
        (
            "ALTER TABLE t ADD COLUMN c jsonb; INSERT INTO t VALUES (2, 'two', 2, '{\"k\": [1, 2.50]}')",
            parse(r#"{"id": 2, "a": "two", "b": 2, "c": {"k": [1, 2.50]}}"#),
        ),
        (
            "ALTER TABLE t DROP COLUMN a; INSERT INTO t VALUES (3, 3, null)",
            json!({"id": 3, "b": 3, "c": null}),
        ),
        (
            "ALTER TABLE t RENAME COLUMN b TO bee; INSERT INTO t VALUES (4, 4, '[]')",
            json!({"id": 4, "bee": 4, "c": []}),
        ),
        (
            "ALTER TABLE t ALTER COLUMN bee TYPE numeric(6, 3); INSERT INTO t VALUES (5, 5.5, null)",
            parse(r#"{"id": 5, "bee": 5.500, "c": null}"#),
        ),
        (
            "ALTER TABLE t ALTER COLUMN bee TYPE text; INSERT INTO t VALUES (6, 'six', null)",
            json!({"id": 6, "bee": "six", "c": null}),
        ),
    ];
    for (sql, expected) in steps {
        db.batch_execute(sql).await.unwrap();
        let event = ws.next_event().await;
        assert_eq!(event["data"]["new"], expected, "after {sql}");
        let id = expected["id"].as_i64().unwrap();
        let oracle =
            support::query_json(&db, &format!("SELECT to_jsonb(t) FROM t WHERE id = {id}")).await;
        assert_eq!(event["data"]["new"], oracle[0], "to_jsonb after {sql}");
    }
    gateway.stop().await;
}
