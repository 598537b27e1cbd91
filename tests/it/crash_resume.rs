//! SIGKILL of the gateway while writes continue: after a restart the stream resumes from the
//! slot and no committed transaction is skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, GatewayProcess, RecordingConsumer, WsClient};

#[tokio::test]
async fn restart_after_sigkill_skips_nothing() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE ticks (id int PRIMARY KEY)")
        .await
        .unwrap();
    let mut gateway = GatewayProcess::start(&cluster, None, &[]).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_ticks").await;

    // One row per transaction, written without pause while the gateway is killed.
    let total = 3000;
    let writer_db = support::connect(&cluster).await;
    let writer = tokio::spawn(async move {
        for id in 1..=total {
            writer_db
                .execute("INSERT INTO ticks VALUES ($1)", &[&id])
                .await
                .unwrap();
        }
    });

    let mut seen = BTreeSet::new();
    while seen.len() < 500 {
        let event = ws.next_event().await;
        seen.insert(event["data"]["new"]["id"].as_i64().unwrap());
    }
    gateway.kill();
    while let Some(message) = ws.try_recv(Duration::from_millis(200)).await {
        if message["type"] == "notification" {
            seen.insert(message["payload"]["data"]["new"]["id"].as_i64().unwrap());
        }
    }
    let seen_before_kill = seen.len();

    // Restart in this process with a consumer that records every event from the first one.
    let recorder = Arc::new(RecordingConsumer::default());
    let config = support::gateway_config(&cluster);
    let restarted = walgate::gateway::Gateway::start_with(config, vec![recorder.clone()])
        .await
        .expect("gateway restarts");
    writer.await.unwrap();
    support::wait_until(Duration::from_secs(60), "the last row arrives", || {
        let done = recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.event.new_value()["id"] == total);
        async move { done }
    })
    .await;

    let events = recorder.events.lock().unwrap().clone();
    let ids: Vec<_> = events.iter().map(|e| e.event.id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "events in commit order"
    );
    for event in &events {
        seen.insert(event.event.new_value()["id"].as_i64().unwrap());
    }
    let missing: Vec<i64> = (1..=i64::from(total))
        .filter(|id| !seen.contains(id))
        .collect();
    assert!(missing.is_empty(), "rows never delivered: {missing:?}");
    println!(
        "before kill: {seen_before_kill} rows; after restart: {} events",
        events.len()
    );
    restarted.stop().await;
}
