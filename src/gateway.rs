//! Wiring: starts the replication task and the HTTP server for one database, and stops them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, AppState};
use crate::migrate::{self, MigrationError};
use crate::pipeline::replicator::{self, ReplicatorConfig, StreamError};
use crate::pipeline::{Consumer, Consumers};
use crate::realtime::Hub;
use crate::report::error_chain;

/// Error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Replication(#[from] StreamError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    pub health: Health,
    pub hub: Arc<Hub>,
    shutdown: CancellationToken,
    replication: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// The process-wide Prometheus recorder, installed on first use.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            crate::metrics::describe();
            handle
        })
        .clone()
}

impl Gateway {
    /// Applies migrations, checks the server, creates the publication and slot, then starts
    /// streaming and serving. Returns once the HTTP listener is bound.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        Self::start_with(config, Vec::new()).await
    }

    /// Like [`Gateway::start`], with extra consumers that receive every event after the
    /// WebSocket hub, under the contract of [`crate::pipeline::Consumer`]. This is how an
    /// embedding program adds its own delivery.
    pub async fn start_with(
        config: Config,
        extra_consumers: Vec<Arc<dyn Consumer>>,
    ) -> Result<Gateway, StartError> {
        let (mut client, connection) = config
            .database
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|err| StartError::Connect(error_chain(&err)))?;
        let connection = tokio::spawn(connection);
        migrate::apply(&mut client).await?;
        drop(client);
        let _ = connection.await;

        let replication_config = ReplicatorConfig {
            status_interval: config.status_interval,
            ..ReplicatorConfig::new(config.database.clone(), &config.slot, &config.publication)
        };
        replicator::prepare(&replication_config).await?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        Ok(Self::spawn(
            config,
            replication_config,
            listener,
            addr,
            extra_consumers,
        ))
    }

    fn spawn(
        config: Config,
        replication_config: ReplicatorConfig,
        listener: TcpListener,
        addr: SocketAddr,
        extra_consumers: Vec<Arc<dyn Consumer>>,
    ) -> Gateway {
        let shutdown = CancellationToken::new();
        let health = Health::default();
        let hub = Arc::new(Hub::default());
        let mut consumers = Consumers::default();
        consumers.push(hub.clone());
        for consumer in extra_consumers {
            consumers.push(consumer);
        }

        let replication = tokio::spawn(replicator::run(
            replication_config,
            consumers,
            health.clone(),
            shutdown.clone(),
        ));
        let state = AppState {
            hub: hub.clone(),
            catalog: Arc::new(Catalog::new(config.database.clone(), &config.publication)),
            health: health.clone(),
            publication: config.publication.clone(),
            limits: config.websocket.clone(),
            metrics: metrics_handle(),
            shutdown: shutdown.clone(),
        };
        let server = tokio::spawn(http::serve(listener, state));
        tracing::info!(%addr, slot = %config.slot, "gateway serving");
        Gateway {
            addr,
            health,
            hub,
            shutdown,
            replication,
            server,
        }
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that is cancelled when the gateway shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the gateway and waits for its tasks: the replication task sends a last status
    /// update, and the HTTP server closes WebSocket clients with code 1001.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.replication.await;
        match self.server.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "HTTP server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
}
