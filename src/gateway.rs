//! Wiring: starts the replication task and the HTTP server for one database, and stops them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::SharedClient;
use crate::health::Health;
use crate::http::{self, AppState};
use crate::migrate::{self, MigrationError};
use crate::pipeline::replicator::{self, ReplicatorConfig, StreamError};
use crate::pipeline::{Consumer, Consumers};
use crate::realtime::Hub;
use crate::report::error_chain;
use crate::rest::RestState;
use crate::webhooks::admin::AdminState;
use crate::webhooks::dispatch::Dispatcher;
use crate::webhooks::outbox::Outbox;
use crate::webhooks::registry::{LoadError, TriggerRegistry};

/// Error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Replication(#[from] StreamError),
    #[error(transparent)]
    Triggers(#[from] LoadError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot set up the REST connection pool: {0}")]
    RestPool(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Parts built by `start` and handed to `spawn`.
struct Wiring {
    replication_config: ReplicatorConfig,
    listener: TcpListener,
    addr: SocketAddr,
    extra_consumers: Vec<Arc<dyn Consumer>>,
    triggers: Arc<TriggerRegistry>,
    webhook_db: Arc<SharedClient>,
    rest: RestState,
}

/// A running gateway.
pub struct Gateway {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    pub health: Health,
    pub hub: Arc<Hub>,
    triggers: Arc<TriggerRegistry>,
    webhook_db: Arc<SharedClient>,
    rest: RestState,
    shutdown: CancellationToken,
    replication: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    schema_refresh: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// Returns the process-wide Prometheus recorder, installing it on first use.
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
        let replication_config = ReplicatorConfig {
            status_interval: config.status_interval,
            ..ReplicatorConfig::new(config.database.clone(), &config.slot, &config.publication)
        };
        // Server settings, privileges, key files and the listen address first, so nothing is
        // written to a database that cannot be served and no slot is left behind.
        replicator::check(&replication_config).await?;
        let authenticator = Arc::new(Authenticator::new(&config.auth)?);
        tracing::info!(auth = %authenticator.summary(), "bearer token verification");
        if !authenticator.is_configured() {
            tracing::warn!(
                "no JWT key and no anonymous role are configured: REST requests are refused \
                 and WebSocket subscriptions are not checked against grants; set \
                 WALGATE_JWT_SECRET, WALGATE_JWKS_FILE or WALGATE_ANON_ROLE"
            );
        }
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

        let (mut client, connection) = config
            .database
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|err| StartError::Connect(error_chain(&err)))?;
        let connection = tokio::spawn(connection);
        migrate::apply(&mut client).await?;
        drop(client);
        let _ = connection.await;
        let webhook_db = Arc::new(SharedClient::new(config.database.clone(), "webhooks"));
        let triggers =
            Arc::new(TriggerRegistry::load(config.triggers.as_deref(), &webhook_db).await?);
        let shutdown = CancellationToken::new();
        let rest = RestState::new(
            &config.database,
            config.rest.clone(),
            authenticator,
            shutdown.clone(),
        )
        .map_err(|err| StartError::RestPool(err.to_string()))?;
        // The slot last: once it exists, the server keeps WAL for it.
        replicator::prepare(&replication_config).await?;

        Ok(Self::spawn(
            config,
            Wiring {
                replication_config,
                listener,
                addr,
                extra_consumers,
                triggers,
                webhook_db,
                rest,
            },
            shutdown,
        ))
    }

    fn spawn(config: Config, wiring: Wiring, shutdown: CancellationToken) -> Gateway {
        let health = Health::default();
        let hub = Arc::new(Hub::default());
        let wake = Arc::new(Notify::new());
        let mut consumers = Consumers::default();
        consumers.push(hub.clone());
        consumers.push(Arc::new(Outbox::new(
            wiring.triggers.clone(),
            SharedClient::new(config.database.clone(), "webhook-outbox"),
            wake.clone(),
        )));
        for consumer in wiring.extra_consumers {
            consumers.push(consumer);
        }

        let replication = tokio::spawn(replicator::run(
            wiring.replication_config,
            consumers,
            health.clone(),
            shutdown.clone(),
        ));
        let dispatcher = Arc::new(Dispatcher::new(
            wiring.triggers.clone(),
            SharedClient::new(config.database.clone(), "webhook-dispatch"),
            wake.clone(),
            config.webhooks.clone(),
        ));
        let dispatcher = tokio::spawn(
            dispatcher
                .run(shutdown.clone())
                .instrument(tracing::info_span!("webhooks")),
        );
        let state = AppState {
            hub: hub.clone(),
            catalog: Arc::new(Catalog::new(config.database.clone(), &config.publication)),
            health: health.clone(),
            publication: config.publication.clone(),
            limits: config.websocket.clone(),
            metrics: metrics_handle(),
            shutdown: shutdown.clone(),
            admin: AdminState {
                db: wiring.webhook_db.clone(),
                token: config.admin_token.as_deref().map(Arc::from),
                wake,
            },
            rest: wiring.rest.clone(),
        };
        let schema_refresh = tokio::spawn(wiring.rest.clone().refresh_schema(shutdown.clone()));
        let server = tokio::spawn(http::serve(wiring.listener, state));
        let addr = wiring.addr;
        tracing::info!(%addr, slot = %config.slot, triggers = wiring.triggers.current().set.triggers().len(), "gateway serving");
        Gateway {
            addr,
            health,
            hub,
            triggers: wiring.triggers,
            webhook_db: wiring.webhook_db,
            rest: wiring.rest,
            schema_refresh,
            shutdown,
            replication,
            dispatcher,
            server,
        }
    }

    /// Reads the trigger file again and puts it in force if it is valid; on error the previous
    /// triggers stay in force. Returns the number of triggers now loaded.
    pub async fn reload_triggers(&self) -> Result<usize, LoadError> {
        self.triggers.reload(&self.webhook_db).await
    }

    /// Reloads the catalog of tables the REST API serves.
    pub async fn reload_rest_schema(&self) -> Result<(), crate::rest::schema::LookupError> {
        self.rest.reload_schema().await
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Returns a token that is cancelled when the gateway shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the gateway and waits for its tasks: the replication task sends a last status
    /// update, and the HTTP server closes WebSocket clients with code 1001.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.replication.await;
        let _ = self.dispatcher.await;
        let _ = self.schema_refresh.await;
        match self.server.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "HTTP server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
}
