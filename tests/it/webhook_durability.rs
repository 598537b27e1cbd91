//! Webhook ordering per row, delivery through gateway crashes, and an endpoint that is down
//! while the slot keeps moving.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Duration;

use walgate::change::EventId;
use walgate::lsn::Lsn;

use crate::support::receiver::{Received, Receiver, Reply};
use crate::support::{self, GatewayProcess};

fn trigger_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    file
}

/// Event ids received per row id, in arrival order.
fn ids_per_row(received: &[Received]) -> BTreeMap<i64, Vec<EventId>> {
    let mut rows: BTreeMap<i64, Vec<EventId>> = BTreeMap::new();
    for request in received {
        let body = request.json();
        let image = if body["data"]["new"].is_null() {
            &body["data"]["old"]
        } else {
            &body["data"]["new"]
        };
        let row = image["id"].as_i64().expect("row id");
        rows.entry(row)
            .or_default()
            .push(body["id"].as_str().unwrap().parse().unwrap());
    }
    rows
}

/// Asserts that each row's events arrived in commit order, allowing an event to be repeated
/// right after itself (a resend after a crash); returns the number of repeats.
fn assert_ordered_per_row(rows: &BTreeMap<i64, Vec<EventId>>) -> usize {
    let mut repeats = 0;
    for (row, ids) in rows {
        for pair in ids.windows(2) {
            if pair[0] == pair[1] {
                repeats += 1;
            } else {
                assert!(
                    pair[0] < pair[1],
                    "row {row}: {} arrived before {}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
    repeats
}

#[tokio::test]
async fn updates_arrive_in_order_beside_failing_trigger() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute(
        "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counters SELECT i, 0 FROM generate_series(1, 10) i;",
    )
    .await
    .unwrap();
    let receiver = Receiver::start().await;
    receiver.set_default(
        "/broken",
        Reply {
            delay: Duration::from_millis(200),
            ..Reply::status(500)
        },
    );
    let triggers = trigger_file(&format!(
        "- name: counted\n  table: counters\n  operations: [update]\n  webhook_url: \"{}\"\n\
         - name: broken\n  table: counters\n  operations: [update]\n  webhook_url: \"{}\"\n  retry_count: 100\n",
        receiver.url("/counted"),
        receiver.url("/broken"),
    ));
    let yaml = format!(
        "triggers: {}\nwebhooks:\n  retry_base_ms: 20\n  retry_max_ms: 200\n  poll_interval_ms: 50\n",
        triggers.path().display()
    );
    let gateway = support::start_gateway_with(support::gateway_config_with(&cluster, &yaml)).await;

    for round in 1..=100 {
        db.batch_execute(&format!("UPDATE counters SET n = {round}"))
            .await
            .unwrap();
    }
    let received = receiver
        .wait_for("/counted", 1000, Duration::from_secs(60))
        .await;
    let mut values: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for request in &received {
        let new = &request.json()["data"]["new"];
        values
            .entry(new["id"].as_i64().unwrap())
            .or_default()
            .push(new["n"].as_i64().unwrap());
    }
    assert_eq!(values.len(), 10);
    for (row, ns) in &values {
        assert_eq!(ns, &(1..=100).collect::<Vec<i64>>(), "row {row}");
    }
    assert!(
        !receiver.received_on("/broken").is_empty(),
        "the broken trigger is being tried"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn sigkill_three_times_loses_nothing() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL)")
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let triggers = trigger_file(&format!(
        "- name: items\n  table: items\n  operations: [create, update]\n  webhook_url: \"{}\"\n  timeout_ms: 1000\n",
        receiver.url("/items")
    ));
    let path = triggers.path().display().to_string();
    let env = [("WALGATE_TRIGGERS", path.as_str())];
    let mut gateway = GatewayProcess::start(&cluster, None, &env).await;
    let addr = gateway.addr;

    // 20,000 single-row transactions: inserts of 200 rows, then updates cycling over them.
    let total = 20_000;
    let writer_db = support::connect(&cluster).await;
    let writer = tokio::spawn(async move {
        for i in 0..total {
            let sql = if i < 200 {
                format!("INSERT INTO items VALUES ({i}, 0)")
            } else {
                format!("UPDATE items SET n = {i} WHERE id = {}", i % 200)
            };
            writer_db.batch_execute(&sql).await.unwrap();
        }
    });
    for kill in 1..=3 {
        receiver
            .wait_for("/items", kill * 3000, Duration::from_secs(120))
            .await;
        gateway.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway = GatewayProcess::start(&cluster, Some(addr), &env).await;
    }
    writer.await.unwrap();

    let expected: HashSet<String> = {
        let received = receiver
            .wait_for("/items", total, Duration::from_secs(180))
            .await;
        let _ = received;
        let distinct = || {
            receiver
                .received_on("/items")
                .iter()
                .map(|r| r.json()["id"].as_str().unwrap().to_string())
                .collect::<HashSet<String>>()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while distinct().len() < total && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        distinct()
    };
    assert_eq!(
        expected.len(),
        total,
        "every event id arrives at least once"
    );
    let received = receiver.received_on("/items");
    let repeats = assert_ordered_per_row(&ids_per_row(&received));
    println!(
        "{} requests for {total} events: {} duplicates ({repeats} repeated in place)",
        received.len(),
        received.len() - total
    );
    drop(gateway);
}

#[tokio::test]
async fn endpoint_down_keeps_slot_moving() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .unwrap();
    let mut receiver = Receiver::start().await;
    let triggers = trigger_file(&format!(
        "- name: items\n  table: items\n  operations: [create]\n  webhook_url: \"{}\"\n  retry_count: 50\n  timeout_ms: 500\n",
        receiver.url("/items")
    ));
    let yaml = format!(
        "triggers: {}\nwebhooks:\n  retry_base_ms: 50\n  retry_max_ms: 500\n  poll_interval_ms: 50\n",
        triggers.path().display()
    );
    let gateway = support::start_gateway_with(support::gateway_config_with(&cluster, &yaml)).await;
    receiver.stop();

    let confirmed = || async {
        let row = db
            .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'walgate'", &[])
            .await
            .unwrap();
        row.get::<_, String>(0).parse::<Lsn>().unwrap()
    };
    let before = confirmed().await;
    db.batch_execute("INSERT INTO items SELECT generate_series(1, 500)")
        .await
        .unwrap();
    let written: Lsn = db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    support::wait_until(
        Duration::from_secs(30),
        "the slot moves past the inserts",
        || async { confirmed().await >= written },
    )
    .await;
    assert!(confirmed().await > before);
    let pending: i64 = db
        .query_one(
            "SELECT count(*) FROM walgate.webhook_deliveries WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 500, "the deliveries wait in the outbox");
    assert!(receiver.received_on("/items").is_empty());

    receiver.restart().await;
    let received = receiver
        .wait_for("/items", 500, Duration::from_secs(60))
        .await;
    let ids: HashSet<i64> = received
        .iter()
        .map(|r| r.json()["data"]["new"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 500);
    gateway.stop().await;
}

#[tokio::test]
async fn sighup_reloads_triggers() {
    let cluster = support::start_cluster().await;
    let db = support::connect(&cluster).await;
    db.batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let first = format!(
        "- name: first\n  table: items\n  operations: [create]\n  webhook_url: \"{}\"\n",
        receiver.url("/first")
    );
    let triggers = trigger_file(&first);
    let path = triggers.path().display().to_string();
    let gateway =
        GatewayProcess::start(&cluster, None, &[("WALGATE_TRIGGERS", path.as_str())]).await;
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &gateway.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    db.batch_execute("INSERT INTO items VALUES (1)")
        .await
        .unwrap();
    receiver
        .wait_for("/first", 1, Duration::from_secs(20))
        .await;

    let second = format!(
        "{first}- name: second\n  table: items\n  operations: [create]\n  webhook_url: \"{}\"\n",
        receiver.url("/second")
    );
    std::fs::write(triggers.path(), second).unwrap();
    hangup();
    // The reload is done once a row inserted afterwards reaches the new trigger.
    let mut id = 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.received_on("/second").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new trigger never fired"
        );
        db.batch_execute(&format!("INSERT INTO items VALUES ({id})"))
            .await
            .unwrap();
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    std::fs::write(triggers.path(), "- name: broken\n  table: no_such_table\n").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = receiver.received_on("/second").len();
    db.batch_execute(&format!("INSERT INTO items VALUES ({id})"))
        .await
        .unwrap();
    receiver
        .wait_for("/second", before + 1, Duration::from_secs(20))
        .await;
    drop(gateway);
}
