//! Shared test fixtures: throwaway clusters, connections and a webhook receiver.

pub mod receiver;
pub mod rest;

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use walgate::cluster::{ClusterOptions, EphemeralCluster, PgBinaries};

/// Server binaries, located once per test process.
pub fn binaries() -> &'static PgBinaries {
    static BINARIES: OnceLock<PgBinaries> = OnceLock::new();
    BINARIES.get_or_init(|| PgBinaries::locate().expect("PostgreSQL server binaries"))
}

/// Starts a throwaway cluster with default settings.
pub async fn start_cluster() -> EphemeralCluster {
    start_cluster_with(ClusterOptions::default()).await
}

/// Starts a throwaway cluster with the given settings.
pub async fn start_cluster_with(options: ClusterOptions) -> EphemeralCluster {
    tokio::task::spawn_blocking(move || EphemeralCluster::start(binaries(), &options))
        .await
        .expect("cluster start task")
        .expect("throwaway cluster starts")
}

/// Opens a plain SQL connection with walgate's output settings (UTC, ISO dates, hex bytea).
pub async fn connect(cluster: &EphemeralCluster) -> tokio_postgres::Client {
    let conn = format!(
        "{} options='{}'",
        cluster.connection_string("postgres"),
        walgate::decode::output_settings_options()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect to the throwaway cluster");
    tokio::spawn(connection);
    client
}

/// Settings for a gateway in front of `cluster`, listening on a free port.
pub fn gateway_config(cluster: &EphemeralCluster) -> walgate::config::Config {
    gateway_config_with(cluster, "{}")
}

/// Settings from `yaml` for a gateway in front of `cluster`, listening on a free port.
pub fn gateway_config_with(cluster: &EphemeralCluster, yaml: &str) -> walgate::config::Config {
    let url = cluster.url("postgres");
    walgate::config::Config::from_yaml(yaml, &|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "WALGATE_LISTEN" => Some("127.0.0.1:0".into()),
        _ => None,
    })
    .expect("valid test config")
}

/// Starts a gateway in this process and waits until it streams.
pub async fn start_gateway(cluster: &EphemeralCluster) -> walgate::gateway::Gateway {
    start_gateway_with(gateway_config(cluster)).await
}

/// Starts a gateway with the given settings and waits until it streams.
pub async fn start_gateway_with(config: walgate::config::Config) -> walgate::gateway::Gateway {
    let gateway = walgate::gateway::Gateway::start(config)
        .await
        .expect("gateway starts");
    wait_until(Duration::from_secs(20), "the gateway streams", || {
        let streaming = gateway.health.is_streaming();
        async move { streaming }
    })
    .await;
    gateway
}

/// Polls `check` every 50 ms until it returns true; panics after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket test client.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects to `ws://addr/ws`.
    pub async fn connect(addr: std::net::SocketAddr) -> WsClient {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("WebSocket connects");
        WsClient { socket }
    }

    /// Returns the underlying socket, for frames the helpers do not cover.
    pub fn socket_mut(
        &mut self,
    ) -> &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    > {
        &mut self.socket
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("send a text frame");
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Receives the next text frame as JSON; panics after 20 s or on close.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(20))
            .await
            .expect("a message within 20 s")
    }

    /// Receives the next text frame as JSON, or None after `limit` or when the socket closes.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(limit, self.socket.next())
                .await
                .ok()??;
            match next.ok()? {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("server sends JSON"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Subscribes and waits for the `subscribed` reply.
    pub async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"type": "subscribe", "channel": channel}))
            .await;
        let reply = self.recv().await;
        assert_eq!(reply, json!({"type": "subscribed", "channel": channel}));
    }

    /// Receives the next notification's payload, skipping nothing: any other message fails.
    pub async fn next_event(&mut self) -> Value {
        let message = self.recv().await;
        assert_eq!(
            message["type"], "notification",
            "unexpected message {message}"
        );
        message["payload"].clone()
    }
}

/// Runs `sql` and returns the first column of every row, as JSON (the column must be jsonb).
pub async fn query_json(client: &tokio_postgres::Client, sql: &str) -> Vec<Value> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("query {sql:?} failed: {err}"))
        .iter()
        .map(|row| row.get::<_, Value>(0))
        .collect()
}

/// A consumer that records every event it accepts, for tests that need every event without a
/// WebSocket in between.
#[derive(Default)]
pub struct RecordingConsumer {
    pub events: std::sync::Mutex<Vec<std::sync::Arc<walgate::change::EncodedEvent>>>,
}

impl walgate::pipeline::Consumer for RecordingConsumer {
    fn name(&self) -> &'static str {
        "test-recorder"
    }

    fn accept<'a>(
        &'a self,
        events: &'a walgate::pipeline::EventBatch,
    ) -> futures_util::future::BoxFuture<'a, Result<(), walgate::pipeline::ConsumerError>> {
        self.events.lock().unwrap().extend(events.iter().cloned());
        Box::pin(async { Ok(()) })
    }
}

/// A gateway running as a child process of the test, so it can be killed with SIGKILL.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl GatewayProcess {
    /// Starts `walgate serve` against `cluster` on `addr` (or a free port) and waits until
    /// `/healthz` returns 200.
    pub async fn start(
        cluster: &EphemeralCluster,
        addr: Option<std::net::SocketAddr>,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let addr = addr.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        });
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_walgate"));
        command
            .arg("serve")
            .env("DATABASE_URL", cluster.url("postgres"))
            .env("WALGATE_LISTEN", addr.to_string())
            .env("WALGATE_CONFIG", "/dev/null")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn walgate serve");
        let mut process = GatewayProcess { child, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(addr, "/healthz").await {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("walgate serve exited during startup with {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "walgate serve did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory of the process in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET over loopback: returns the status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
