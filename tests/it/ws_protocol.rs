//! Bad WebSocket input gets coded errors, the connection stays open, and other clients keep
//! receiving; a client that cannot keep up is sent a `lagged` error and closed.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, WsClient};

async fn expect_error(ws: &mut WsClient, code: &str) -> Value {
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "error", "expected an error, got {reply}");
    assert_eq!(reply["code"], code, "wrong code in {reply}");
    reply
}

async fn assert_open(ws: &mut WsClient) {
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn bad_input_gets_errors_and_keeps_serving() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;
    let mut bystander = WsClient::connect(gateway.addr).await;
    bystander.subscribe("qail_table_orders").await;
    let mut ws = WsClient::connect(gateway.addr).await;

    ws.send_text("{not json").await;
    let reply = expect_error(&mut ws, "invalid_json").await;
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .starts_with("message is not valid JSON"));
    assert_open(&mut ws).await;

    ws.send(json!({"type": "explode"})).await;
    let reply = expect_error(&mut ws, "unknown_type").await;
    assert!(reply["message"].as_str().unwrap().contains("\"explode\""));

    ws.send(json!(["subscribe"])).await;
    expect_error(&mut ws, "invalid_message").await;
    ws.send(json!({"type": "subscribe"})).await;
    expect_error(&mut ws, "invalid_message").await;
    ws.send(json!({"type": "subscribe", "channel": 42})).await;
    expect_error(&mut ws, "invalid_message").await;

    ws.send(json!({"type": "subscribe", "channel": "qail_table_nope"}))
        .await;
    let reply = expect_error(&mut ws, "unknown_table").await;
    assert_eq!(reply["channel"], "qail_table_nope");
    assert_eq!(
        reply["message"],
        "table \"public\".\"nope\" does not exist (names are case-sensitive; views and \
         walgate's own tables have no change events)"
    );

    ws.send(json!({"type": "subscribe", "channel": "table:orders"}))
        .await;
    expect_error(&mut ws, "invalid_channel").await;

    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(1024 * 1024));
    ws.send_text(&big).await;
    let reply = expect_error(&mut ws, "message_too_large").await;
    assert_eq!(
        reply["message"],
        format!("message is {} bytes; the limit is 65536 bytes", big.len())
    );
    assert_open(&mut ws).await;

    ws.socket_mut()
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    expect_error(&mut ws, "invalid_message").await;

    db.batch_execute("INSERT INTO orders VALUES (1)")
        .await
        .unwrap();
    let event = bystander.next_event().await;
    assert_eq!(event["data"]["new"], json!({"id": 1}));
    ws.subscribe("qail_table_orders").await;
    db.batch_execute("INSERT INTO orders VALUES (2)")
        .await
        .unwrap();
    assert_eq!(ws.next_event().await["data"]["new"], json!({"id": 2}));
    assert_eq!(
        bystander.next_event().await["data"]["new"],
        json!({"id": 2})
    );
    gateway.stop().await;
}

#[tokio::test]
async fn slow_client_is_closed_as_lagged() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE blobs (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let config =
        support::gateway_config_with(&cluster, "websocket:\n  client_queue_bytes: 1048576\n");
    let gateway = support::start_gateway_with(config).await;
    let mut slow = WsClient::connect(gateway.addr).await;
    slow.subscribe("qail_table_blobs").await;
    // The slow client reads about 200 messages a second, far below the rate of the stream.
    let slow_reader = tokio::spawn(async move {
        let mut last = None;
        while let Some(message) = slow.try_recv(Duration::from_secs(20)).await {
            last = Some(message);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        last
    });
    let mut fast = WsClient::connect(gateway.addr).await;
    fast.subscribe("qail_table_blobs").await;

    // 60 MB of events, more than the socket buffers of a client that does not read, in
    // batches small enough for the reading client's queue alone.
    let batch = 40;
    for start in (0..150).map(|n| n * batch) {
        db.batch_execute(&format!(
            "INSERT INTO blobs SELECT i, repeat('x', 10000) FROM generate_series({}, {}) i",
            start + 1,
            start + batch
        ))
        .await
        .unwrap();
        for expected in start + 1..=start + batch {
            let event = fast.next_event().await;
            assert_eq!(event["data"]["new"]["id"], json!(expected));
        }
    }

    let last = slow_reader
        .await
        .unwrap()
        .expect("the slow client received something");
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], "lagged");
    gateway.stop().await;
}

/// Reads until the server's close frame arrives and returns its code.
async fn close_code(ws: &mut WsClient) -> Option<u16> {
    use futures_util::StreamExt;
    let deadline = Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout(deadline, ws.socket_mut().next())
            .await
            .expect("the server answers within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn close_is_answered_and_released() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let gateway = support::start_gateway(&cluster).await;

    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_t").await;
    assert_eq!(gateway.hub.subscription_count(), 1);
    ws.socket_mut().close(None).await.unwrap();
    // The server's reply to our close frame ends the stream (the client library consumes it);
    // a server that kept the connection open would time out here instead.
    let code = close_code(&mut ws).await;
    assert!(matches!(code, None | Some(1000)), "close code {code:?}");
    support::wait_until(
        Duration::from_secs(5),
        "the subscription is released",
        || {
            let count = gateway.hub.subscription_count();
            async move { count == 0 }
        },
    )
    .await;

    let mut ws = WsClient::connect(gateway.addr).await;
    let huge = "x".repeat(17 * 1024 * 1024);
    let _ = ws.socket_mut().send(Message::Text(huge.into())).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    gateway.stop().await;
}
