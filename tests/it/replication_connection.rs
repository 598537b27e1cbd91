//! The replication-protocol connection against real clusters: authentication methods,
//! connection string forms, server errors and a logical replication stream.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{sleep, timeout, Instant};
use walgate::cluster::{ClusterOptions, EphemeralCluster};
use walgate::lsn::Lsn;
use walgate::source::connection::{
    ReplicationClient, ReplicationMessage, ReplicationStream, SourceError,
};

use crate::support::{self, start_cluster, start_cluster_with};

const PASSWORD: &str = "s3cret pa'ss";
/// The password percent-encoded for a URL.
const PASSWORD_IN_URL: &str = "s3cret%20pa%27ss";
/// The password quoted for a key=value connection string.
const PASSWORD_IN_KEY_VALUE: &str = r"'s3cret pa\'ss'";

/// Limit for every wait on the server, so a broken stream fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

fn parse_config(text: &str) -> tokio_postgres::Config {
    text.parse()
        .unwrap_or_else(|err| panic!("connection string {text:?} does not parse: {err}"))
}

async fn connect(text: &str) -> Result<ReplicationClient, SourceError> {
    timeout(WAIT, ReplicationClient::connect(&parse_config(text)))
        .await
        .expect("connect finishes in time")
}

async fn password_cluster(method: &str) -> EphemeralCluster {
    let mut extra_settings = vec!["log_connections = on".to_string()];
    if method == "md5" {
        // Unless the stored hash is md5, PostgreSQL uses SCRAM for an md5 hba line.
        extra_settings.push("password_encryption = md5".to_string());
    }
    start_cluster_with(ClusterOptions {
        host_auth: method.to_string(),
        superuser_password: Some(PASSWORD.to_string()),
        extra_settings,
    })
    .await
}

/// Connects with the URL and the key=value form, runs IDENTIFY_SYSTEM on both, and checks
/// that the server log shows the expected authentication method.
async fn check_password_method(method: &str) {
    let cluster = password_cluster(method).await;
    let url = format!(
        "postgres://postgres:{PASSWORD_IN_URL}@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let key_value = format!(
        "{} password={PASSWORD_IN_KEY_VALUE}",
        cluster.connection_string("postgres")
    );
    for text in [url, key_value] {
        let mut client = connect(&text)
            .await
            .unwrap_or_else(|err| panic!("{method} login with {text:?} failed: {err}"));
        let identity = client.identify_system().await.unwrap();
        assert_eq!(identity.dbname.as_deref(), Some("postgres"));
        assert_eq!(identity.timeline, 1);
        assert!(!identity.xlogpos.is_invalid());
        client.close().await.unwrap();
    }
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains(&format!("method={method}")),
        "server log does not show method={method}:\n{log}"
    );
}

#[tokio::test]
async fn cleartext_password_auth() {
    check_password_method("password").await;
}

#[tokio::test]
async fn md5_auth() {
    check_password_method("md5").await;
}

#[tokio::test]
async fn scram_sha_256_auth() {
    check_password_method("scram-sha-256").await;
}

#[tokio::test]
async fn trust_auth_and_session_settings() {
    let cluster = start_cluster().await;
    let text = format!(
        "{}?application_name=walgate-test&sslmode=disable&options=-c%20statement_timeout%3D1234",
        cluster.url("postgres")
    );
    let mut client = connect(&text).await.unwrap();
    assert!(client.backend_pid().is_some());
    assert!(client.server_version().is_some());

    let identity = client.identify_system().await.unwrap();
    assert!(identity.systemid > 0);
    assert_eq!(identity.dbname.as_deref(), Some("postgres"));

    let settings = [
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        ("bytea_output", "hex"),
        ("extra_float_digits", "1"),
        ("application_name", "walgate-test"),
        ("statement_timeout", "1234ms"),
    ];
    for (name, expected) in settings {
        let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
        assert_eq!(rows.len(), 1, "SHOW {name}");
        assert_eq!(rows[0].get(0), Some(expected), "SHOW {name}");
    }
}

#[tokio::test]
async fn wrong_password_is_auth_error() {
    let cluster = password_cluster("scram-sha-256").await;
    let text = format!("{} password=wrong", cluster.connection_string("postgres"));
    let err = connect(&text)
        .await
        .expect_err("wrong password is rejected");
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("28P01"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn missing_password_names_database_url() {
    let cluster = password_cluster("md5").await;
    let err = connect(&cluster.url("postgres"))
        .await
        .expect_err("login without a password is rejected");
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unix_socket_host() {
    let cluster = start_cluster().await;
    let dir = cluster.socket_dir();
    let key_value = format!(
        "host={} port={} user=postgres dbname=postgres",
        dir.display(),
        cluster.port()
    );
    let encoded_dir = dir.display().to_string().replace('/', "%2F");
    let url = format!(
        "postgres://postgres@{encoded_dir}:{}/postgres",
        cluster.port()
    );
    for text in [key_value, url] {
        let mut client = connect(&text)
            .await
            .unwrap_or_else(|err| panic!("{text:?}: {err}"));
        let identity = client.identify_system().await.unwrap();
        assert_eq!(identity.dbname.as_deref(), Some("postgres"));
    }
}

#[tokio::test]
async fn unreachable_hosts_are_skipped() {
    let cluster = start_cluster().await;
    let missing_dir = tempfile::tempdir().unwrap();
    // A listener that never accepts or replies makes the attempt time out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let text = format!(
        "host={},127.0.0.1,127.0.0.1 port={},{silent_port},{} user=postgres dbname=postgres \
         connect_timeout=1",
        missing_dir.path().display(),
        cluster.port(),
        cluster.port()
    );
    let mut client = connect(&text).await.unwrap();
    client.identify_system().await.unwrap();

    let only_silent = format!("host=127.0.0.1 port={silent_port} user=postgres connect_timeout=1");
    let err = connect(&only_silent)
        .await
        .expect_err("silent host times out");
    let SourceError::Connect { source, .. } = &err else {
        panic!("expected a Connect error, got {err:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn sslmode_require_is_rejected() {
    let text = "host=127.0.0.1 port=1 user=postgres sslmode=require";
    let err = connect(text).await.expect_err("TLS is not supported");
    assert!(matches!(err, SourceError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn server_errors_carry_sqlstate() {
    let cluster = start_cluster().await;
    let mut client = connect(&cluster.connection_string("postgres"))
        .await
        .unwrap();

    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("22012"), "{err:?}");
    let rows = client
        .simple_query("SELECT 1 AS one, NULL AS nothing")
        .await
        .unwrap();
    assert_eq!(rows[0].columns(), ["one", "nothing"]);
    assert_eq!(rows[0].get_by_name("one"), Some("1"));
    assert_eq!(rows[0].get_by_name("nothing"), None);

    let err = client
        .start_logical_replication("no_such_slot", Lsn::INVALID, &[])
        .await
        .expect_err("START_REPLICATION on a missing slot fails");
    let SourceError::Server { code, message, .. } = &err else {
        panic!("expected a Server error, got {err:?}");
    };
    assert_eq!(code, "42704");
    assert!(message.contains("no_such_slot"), "{message}");
    assert!(!err.is_retryable());
}

/// Creates table `items`, publication `pub` and slot `walgate_slot`, and returns the slot's
/// consistent point, a normal SQL connection and the replication client.
async fn prepare_slot(
    cluster: &EphemeralCluster,
) -> (Lsn, tokio_postgres::Client, ReplicationClient) {
    let sql = support::connect(cluster).await;
    sql.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         CREATE PUBLICATION pub FOR TABLE items;",
    )
    .await
    .unwrap();
    let mut client = connect(&cluster.connection_string("postgres"))
        .await
        .unwrap();
    let rows = client
        .simple_query("CREATE_REPLICATION_SLOT walgate_slot LOGICAL pgoutput")
        .await
        .unwrap();
    assert_eq!(rows[0].get_by_name("slot_name"), Some("walgate_slot"));
    let consistent_point = rows[0]
        .get_by_name("consistent_point")
        .unwrap()
        .parse()
        .unwrap();
    (consistent_point, sql, client)
}

async fn start_stream(client: ReplicationClient, start: Lsn) -> ReplicationStream {
    let options = [("proto_version", "1"), ("publication_names", "pub")];
    client
        .start_logical_replication("walgate_slot", start, &options)
        .await
        .unwrap()
}

async fn recv(stream: &mut ReplicationStream) -> ReplicationMessage {
    timeout(WAIT, stream.recv())
        .await
        .expect("a replication message arrives in time")
        .expect("recv succeeds")
        .expect("the server does not end the stream")
}

/// Receives pgoutput messages up to and including the next Commit, skipping keepalives.
async fn recv_transaction(stream: &mut ReplicationStream) -> Vec<Bytes> {
    let mut messages = Vec::new();
    loop {
        if let ReplicationMessage::XLogData { data, .. } = recv(stream).await {
            let is_commit = data.first() == Some(&b'C');
            messages.push(data);
            if is_commit {
                return messages;
            }
        }
    }
}

/// Returns the end LSN of a pgoutput Commit message: flags (1 byte), commit LSN (8), end LSN.
fn commit_end_lsn(commit: &[u8]) -> Lsn {
    assert_eq!(commit[0], b'C');
    Lsn(u64::from_be_bytes(commit[10..18].try_into().unwrap()))
}

async fn confirmed_flush_lsn(sql: &tokio_postgres::Client) -> Option<Lsn> {
    let row = sql
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots \
             WHERE slot_name = 'walgate_slot'",
            &[],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0)
        .map(|text| text.parse().unwrap())
}

#[tokio::test]
async fn stream_transaction_and_confirm_flush() {
    let cluster = start_cluster().await;
    let (consistent_point, sql, client) = prepare_slot(&cluster).await;
    sql.batch_execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let mut stream = start_stream(client, consistent_point).await;

    let messages = recv_transaction(&mut stream).await;
    let kinds: Vec<char> = messages.iter().map(|data| data[0] as char).collect();
    assert_eq!(kinds, ['B', 'R', 'I', 'I', 'C']);
    let commit_end = commit_end_lsn(messages.last().unwrap());
    assert!(commit_end > consistent_point);

    stream
        .send_status(commit_end, commit_end, commit_end, true)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let ReplicationMessage::PrimaryKeepalive { wal_end, .. } = recv(&mut stream).await {
            assert!(wal_end >= commit_end);
            break;
        }
        assert!(Instant::now() < deadline, "no keepalive arrived");
    }
    loop {
        if confirmed_flush_lsn(&sql).await == Some(commit_end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn is {:?}, expected {commit_end}",
            confirmed_flush_lsn(&sql).await
        );
        sleep(Duration::from_millis(50)).await;
    }

    timeout(WAIT, stream.close()).await.unwrap().unwrap();
    // The walsender releases the slot as it exits, shortly after the Terminate message.
    loop {
        let row = sql
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'walgate_slot'",
                &[],
            )
            .await
            .unwrap();
        if !row.get::<_, bool>(0) {
            break;
        }
        assert!(Instant::now() < deadline, "slot still active after close");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn recv_survives_cancellation() {
    const ROWS: usize = 300;
    const VALUE_LEN: usize = 20_000;
    let cluster = start_cluster().await;
    let (consistent_point, sql, client) = prepare_slot(&cluster).await;
    // Random text does not compress, so every row is a message larger than one socket read.
    sql.batch_execute(&format!(
        "INSERT INTO items SELECT i, (SELECT string_agg(md5(i::text || j::text), '') \
         FROM generate_series(1, {}) j) FROM generate_series(1, {ROWS}) i",
        VALUE_LEN / 32
    ))
    .await
    .unwrap();
    let mut stream = start_stream(client, consistent_point).await;

    // A zero timeout polls recv once and drops it unless a whole message is already
    // buffered, so most calls are cancelled, many with a message half read.
    let mut messages = Vec::new();
    let mut cancelled = 0;
    let deadline = Instant::now() + WAIT;
    while messages.last().map(|data: &Bytes| data[0]) != Some(b'C') {
        assert!(
            Instant::now() < deadline,
            "transaction did not arrive in time"
        );
        match timeout(Duration::ZERO, stream.recv()).await {
            Err(_) => {
                cancelled += 1;
                tokio::task::yield_now().await;
            }
            Ok(result) => {
                if let Some(ReplicationMessage::XLogData { data, .. }) = result.unwrap() {
                    messages.push(data);
                }
            }
        }
    }
    assert!(cancelled > 0);
    let inserts: Vec<&Bytes> = messages.iter().filter(|data| data[0] == b'I').collect();
    assert_eq!(inserts.len(), ROWS);
    for insert in inserts {
        assert!(insert.len() > VALUE_LEN, "insert of {} bytes", insert.len());
    }
    assert_eq!(messages[0][0], b'B');
}
