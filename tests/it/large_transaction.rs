//! A transaction of 100,000 rows arrives complete and in order while the gateway's memory stays
//! bounded.

use crate::support::{self, GatewayProcess, WsClient};

#[tokio::test]
async fn hundred_thousand_rows_in_order() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE bulk (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    let gateway = GatewayProcess::start(&cluster, None, &[]).await;
    let mut ws = WsClient::connect(gateway.addr).await;
    ws.subscribe("qail_table_bulk").await;
    let idle_kib = gateway.peak_rss_kib();

    // 100,000 rows of about 100 bytes, about 28 MB of frames: the whole transaction fits in a
    // client's default 32 MiB queue, so it arrives complete even when the test client is slow.
    let rows: i64 = 100_000;
    db.batch_execute(&format!(
        "INSERT INTO bulk SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, {rows}) i"
    ))
    .await
    .unwrap();

    let mut lsn = None;
    for index in 0..rows {
        let event = ws.next_event().await;
        let expected_id = index + 1;
        assert_eq!(event["data"]["new"]["id"], expected_id, "row order");
        let event_lsn = event["lsn"].as_str().unwrap().to_string();
        assert_eq!(event["id"], format!("{event_lsn}:{index}"));
        match &lsn {
            None => lsn = Some(event_lsn),
            Some(first) => assert_eq!(first, &event_lsn, "one commit LSN for the transaction"),
        }
    }
    let peak_kib = gateway.peak_rss_kib();
    println!("gateway peak RSS: idle {idle_kib} KiB, after 100,000-row transaction {peak_kib} KiB");
    assert!(
        peak_kib < idle_kib + 64 * 1024,
        "peak RSS grew from {idle_kib} KiB to {peak_kib} KiB"
    );
}
