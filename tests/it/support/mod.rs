//! Shared test fixtures: throwaway clusters and connections.

use std::sync::OnceLock;

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
