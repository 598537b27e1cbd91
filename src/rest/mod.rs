//! REST handlers: `GET` and `POST /api/{table}`, `GET`, `PATCH` and `DELETE
//! /api/{table}/{id}`, and NDJSON streaming of list results.
//!
//! Each request runs in its own transaction as the role its token names, so the database's
//! grants and row-level-security policies decide what it may see and change. Writes go to the
//! table like any other client's, so they reach subscribers and webhooks through the WAL.

pub mod error;
mod handlers;
pub mod params;
mod probe;
pub mod schema;
mod session;
pub mod sql;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::db::SharedClient;
use schema::{Exposure, SchemaCache};

/// KiB of request bodies parsed and written at once, across all requests. Parsed JSON of many
/// small rows takes tens of times its text size, so this bounds the memory of writes.
const BODY_BUDGET_KIB: usize = 16 * 1024;

/// REST settings.
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub exposure: Exposure,
    /// Rows a list returns when the request gives no `limit`.
    pub default_limit: u64,
    /// Most rows one list page returns; NDJSON streams have no cap.
    pub max_limit: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Connections in the REST pool.
    pub pool_size: usize,
    /// Rows fetched from the cursor per round trip while streaming.
    pub stream_batch_rows: i32,
    /// How often the table catalog is reloaded even when no request needs it; zero
    /// disables the timer.
    pub schema_refresh: Duration,
    /// `statement_timeout` of each REST transaction; zero leaves the database's setting.
    pub statement_timeout: Duration,
    /// Lets tokens name superuser or BYPASSRLS roles.
    pub allow_privileged_roles: bool,
    /// Connection settings for the pool, when REST should use a different database user
    /// from replication.
    pub database: Option<tokio_postgres::Config>,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            exposure: Exposure::default(),
            default_limit: 100,
            max_limit: 1000,
            max_body_bytes: 10 * 1024 * 1024,
            pool_size: 16,
            stream_batch_rows: 5000,
            schema_refresh: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            allow_privileged_roles: false,
            database: None,
        }
    }
}

/// State shared by the REST handlers.
#[derive(Clone)]
pub struct RestState {
    pub(crate) pool: Pool,
    pub(crate) schema: Arc<SchemaCache>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) config: Arc<RestConfig>,
    /// Cancelled when the gateway shuts down; open NDJSON streams end with an error line.
    pub(crate) shutdown: CancellationToken,
    /// KiB of request bodies being parsed and written at once; see `handlers::json_body`.
    pub(crate) body_budget: Arc<Semaphore>,
}

impl RestState {
    /// Builds the pool and the catalog cache. Connections open on first use.
    pub fn new(
        database: &tokio_postgres::Config,
        config: RestConfig,
        auth: Arc<Authenticator>,
        shutdown: CancellationToken,
    ) -> Result<RestState, deadpool_postgres::BuildError> {
        let mut pg_config = config.database.clone().unwrap_or_else(|| database.clone());
        // The session settings of the replication connection, so rows read here are written
        // exactly as change events write them.
        let session = crate::decode::output_settings_options();
        let options = match pg_config.get_options() {
            Some(existing) => format!("{existing} {session}"),
            None => session,
        };
        pg_config.options(&options);
        let manager = Manager::from_config(
            pg_config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                // A connection killed on the server side is found before it is handed out.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(Runtime::Tokio1)
            .build()?;
        let schema = Arc::new(SchemaCache::new(
            SharedClient::new(pg_config, "rest-catalog"),
            config.exposure.clone(),
        ));
        Ok(RestState {
            pool,
            schema,
            auth,
            config: Arc::new(config),
            shutdown,
            body_budget: Arc::new(Semaphore::new(BODY_BUDGET_KIB)),
        })
    }

    /// Returns the verifier of bearer tokens.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// Reloads the table catalog now.
    pub async fn reload_schema(&self) -> Result<(), schema::LookupError> {
        self.schema.reload().await
    }

    /// Reloads the catalog on the configured timer until `shutdown`.
    pub async fn refresh_schema(self, shutdown: CancellationToken) {
        let period = self.config.schema_refresh;
        if period.is_zero() {
            return;
        }
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = timer.tick() => {
                    if let Err(err) = self.schema.reload().await {
                        tracing::warn!(error = %err, "REST catalog reload failed");
                    }
                }
            }
        }
    }
}

/// Builds the routes under `/api`.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/{table}", get(handlers::list).post(handlers::create))
        .route(
            "/{table}/{id}",
            get(handlers::get_one)
                .patch(handlers::update)
                .delete(handlers::remove),
        )
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
}
