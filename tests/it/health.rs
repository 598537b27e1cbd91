//! `/healthz` follows the replication stream, the gateway reconnects after the database
//! restarts, and startup fails with a message that says what to change.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{self, WsClient};
use walgate::cluster::ClusterOptions;

async fn health(addr: std::net::SocketAddr) -> (u16, Value) {
    let (status, body) = support::http_get(addr, "/healthz").await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn healthz_tracks_stream_across_restart() {
    let mut cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    drop(db);
    let gateway = support::start_gateway(&cluster).await;
    let (status, body) = health(gateway.addr).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "streaming");
    assert_eq!(body["slot"], "walgate");

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    support::wait_until(Duration::from_secs(20), "healthz reports 503", || async {
        health(gateway.addr).await.0 == 503
    })
    .await;
    let (_, body) = health(gateway.addr).await;
    assert_eq!(body["status"], "down");
    assert!(
        !body["reason"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );

    cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().expect("cluster restarts");
        cluster
    })
    .await
    .unwrap();
    support::wait_until(
        Duration::from_secs(60),
        "healthz reports 200 again",
        || async { health(gateway.addr).await.0 == 200 },
    )
    .await;

    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_t").await;
    let db = support::connect(&cluster).await;
    db.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    assert_eq!(ws.next_event().await["data"]["new"], json!({"id": 1}));
    gateway.stop().await;
}

#[tokio::test]
async fn startup_rejects_replica_wal_level() {
    let cluster = support::start_cluster_with(ClusterOptions {
        extra_settings: vec!["wal_level = replica".into()],
        ..ClusterOptions::default()
    })
    .await;
    let config = support::gateway_config(&cluster);
    let err = walgate::gateway::Gateway::start(config)
        .await
        .err()
        .expect("startup fails")
        .to_string();
    assert_eq!(
        err,
        "wal_level is 'replica', but logical replication needs 'logical': run `ALTER SYSTEM SET \
         wal_level = logical` (or set it in postgresql.conf) and restart PostgreSQL"
    );
}

#[tokio::test]
async fn startup_rejects_role_without_replication() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE ROLE app LOGIN; GRANT CREATE ON DATABASE postgres TO app;")
        .await
        .unwrap();
    let url = format!("postgres://app@127.0.0.1:{}/postgres", cluster.port());
    let config = walgate::config::Config::from_yaml("{}", &|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "WALGATE_LISTEN" => Some("127.0.0.1:0".into()),
        _ => None,
    })
    .unwrap();
    let err = walgate::gateway::Gateway::start(config)
        .await
        .err()
        .expect("startup fails")
        .to_string();
    assert_eq!(
        err,
        "role \"app\" may not start replication: run `ALTER ROLE \"app\" WITH REPLICATION` as a \
         superuser, or connect as a role that has it"
    );
}

#[tokio::test]
async fn startup_rejects_full_slot_table() {
    let cluster = support::start_cluster_with(ClusterOptions {
        extra_settings: vec!["max_replication_slots = 1".into()],
        ..ClusterOptions::default()
    })
    .await;
    let db = support::connect(&cluster).await;
    db.batch_execute("SELECT pg_create_logical_replication_slot('other', 'pgoutput')")
        .await
        .unwrap();
    let err = walgate::gateway::Gateway::start(support::gateway_config(&cluster))
        .await
        .err()
        .expect("startup fails")
        .to_string();
    assert!(
        err.starts_with("all 1 replication slots are in use (max_replication_slots = 1)"),
        "{err}"
    );
}
