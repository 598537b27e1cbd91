//! A shared SQL connection that is reopened on first use after it drops.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

/// One tokio-postgres connection, shared by concurrent callers (tokio-postgres pipelines their
/// queries) and reconnected lazily when it has closed.
pub struct SharedClient {
    config: Config,
    purpose: &'static str,
    client: Mutex<Option<Arc<Client>>>,
}

impl SharedClient {
    /// Creates the handle; the connection opens on first use. `purpose` names it in logs.
    pub fn new(config: Config, purpose: &'static str) -> Self {
        Self {
            config,
            purpose,
            client: Mutex::new(None),
        }
    }

    /// A live connection, opening a new one when there is none or the last one closed.
    pub async fn get(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|client| !client.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        let purpose = self.purpose;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(purpose, error = %err, "database connection closed");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}
