//! `walgate dev`: a throwaway PostgreSQL with a demo schema, and the gateway in front of it.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterOptions, EphemeralCluster, PgBinaries};
use crate::config::Config;
use crate::gateway::Gateway;

/// The demo schema loaded into the throwaway database.
pub const DEMO_SCHEMA: &str = "
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    notes text,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (customer, total, status) VALUES
    ('ada', 150.00, 'paid'),
    ('grace', 42.50, 'pending');
CREATE ROLE web_anon NOLOGIN;
CREATE ROLE authenticated NOLOGIN;
GRANT SELECT ON orders TO web_anon;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO authenticated;
GRANT USAGE ON SEQUENCE orders_id_seq TO authenticated;
";

/// The role of REST requests without a token in `walgate dev`.
pub const DEV_ANON_ROLE: &str = "web_anon";
/// The role of the sample token `walgate dev` prints.
pub const DEV_TOKEN_ROLE: &str = "authenticated";

/// Error from `walgate dev`.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("loading the demo schema failed: {}", crate::report::error_chain(.0))]
    Schema(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Start(#[from] crate::gateway::StartError),
    #[error("the cluster start task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "cannot listen on {listen} ({reason}); choose another address with --listen 127.0.0.1:PORT"
    )]
    PortInUse { listen: SocketAddr, reason: String },
}

/// Starts a throwaway cluster and the gateway on `listen`, prints what to try, and runs until
/// Ctrl-C (or SIGTERM); then stops both and deletes the cluster.
pub async fn run(listen: SocketAddr) -> Result<(), DevError> {
    // Listening for Ctrl-C from the start replaces the default action (ending the process at
    // once), so a stop during startup still removes the cluster.
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        signal_stop.cancel();
    });
    check_port_free(listen)?;

    let binaries = PgBinaries::locate()?;
    tracing::info!(bindir = %binaries.bindir.display(), "starting a throwaway PostgreSQL");
    let cluster = tokio::task::spawn_blocking(move || {
        EphemeralCluster::start(&binaries, &ClusterOptions::default())
    })
    .await??;
    if stop.is_cancelled() {
        return Ok(());
    }
    load_demo_schema(&cluster).await?;

    let url = cluster.url("postgres");
    let secret = dev_secret();
    let config = Config::from_yaml("{}", &|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "WALGATE_LISTEN" => Some(listen.to_string()),
        "WALGATE_JWT_SECRET" => Some(secret.clone()),
        "WALGATE_ANON_ROLE" => Some(DEV_ANON_ROLE.into()),
        _ => None,
    })?;
    let gateway = tokio::select! {
        gateway = Gateway::start(config) => gateway?,
        _ = stop.cancelled() => return Ok(()),
    };
    print_instructions(&cluster, gateway.addr, &secret, &dev_token(&secret));

    stop.cancelled().await;
    tracing::info!("stopping the gateway and removing the throwaway cluster");
    gateway.stop().await;
    drop(cluster);
    Ok(())
}

async fn load_demo_schema(cluster: &EphemeralCluster) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &cluster.connection_string("postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    let connection = tokio::spawn(connection);
    client.batch_execute(DEMO_SCHEMA).await?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Fails early, before a cluster is created, when the gateway's address is taken.
fn check_port_free(listen: SocketAddr) -> Result<(), DevError> {
    std::net::TcpListener::bind(listen)
        .map(drop)
        .map_err(|err| DevError::PortInUse {
            listen,
            reason: err.to_string(),
        })
}

/// Generates a random HS256 secret for this run.
fn dev_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 48];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Signs a token for the `authenticated` role, valid for a day, with this run's secret.
fn dev_token(secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": "dev-user",
        "role": DEV_TOKEN_ROLE,
        "iat": now,
        "exp": now + 24 * 3600,
    });
    jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())
        .and_then(|key| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &key,
            )
        })
        .expect("HS256 signing with an in-memory secret cannot fail")
}

fn print_instructions(cluster: &EphemeralCluster, addr: SocketAddr, secret: &str, token: &str) {
    let psql = cluster.client_program("psql").display().to_string();
    let url = cluster.url("postgres");
    let exe = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "walgate".into());
    println!(
        "\nwalgate dev is running.\n\
         \n  PostgreSQL  {url}  (throwaway, deleted on exit)\
         \n  gateway     http://{addr}  (WebSocket at ws://{addr}/ws)\n\
         \nIn a second terminal, watch the orders table:\
         \n  {exe} subscribe qail_table_orders --url ws://{addr}/ws\n\
         \nIn a third, change it:\
         \n  {psql} {url} -c \"INSERT INTO orders (customer, total) VALUES ('linus', 150.00)\"\
         \n  {psql} {url} -c \"UPDATE orders SET status = 'paid' WHERE customer = 'linus'\"\n\
         \nRead it over REST (anonymous requests run as role web_anon):\
         \n  curl 'http://{addr}/api/orders?status=eq.paid&sort=-total'\
         \n  curl 'http://{addr}/api/orders?stream=true'\n\
         \nWrite it with a token for role authenticated (valid for 24 hours; tokens are HS256\
         \nwith this run's secret {secret}):\
         \n  TOKEN={token}\
         \n  curl -X POST http://{addr}/api/orders -H \"Authorization: Bearer $TOKEN\" \\\
         \n       -H 'content-type: application/json' -d '{{\"customer\": \"linus\", \"total\": 9.99}}'\n\
         \nHealth: curl http://{addr}/healthz    Stop: Ctrl-C\n"
    );
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn wait_for_stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
