use crate::support;

#[tokio::test]
async fn cluster_runs_with_logical_wal() {
    let cluster = support::start_cluster().await;
    let client = support::connect(&cluster).await;
    let row = client.query_one("SHOW wal_level", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "logical");
    let row = client.query_one("SHOW TimeZone", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "UTC");
}
