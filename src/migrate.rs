//! Versioned SQL migrations, compiled into the binary and applied at startup.
//!
//! Each file in `migrations/` runs once, in version order, inside one transaction with the
//! version recorded in `walgate.schema_migrations`. A transaction-scoped advisory lock makes
//! two gateways that start at once apply them one after the other.

use tokio_postgres::Client;

/// A migration: its version, name and SQL.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "walgate_schema",
        sql: include_str!("../migrations/0001_walgate_schema.sql"),
    },
    Migration {
        version: 2,
        name: "webhook_outbox",
        sql: include_str!("../migrations/0002_webhook_outbox.sql"),
    },
];

/// Advisory lock key for migrations: the bytes of "walgate1" read as a big-endian i64.
const LOCK_KEY: i64 = 0x7761_6c67_6174_6531;

/// Error from applying migrations.
#[derive(Debug, thiserror::Error)]
#[error(
    "applying migration {version} ({name}) failed: {}",
    crate::report::error_chain(.source)
)]
pub struct MigrationError {
    pub version: i32,
    pub name: &'static str,
    pub source: tokio_postgres::Error,
}

/// Applies the migrations that have not run yet; returns how many ran.
pub async fn apply(client: &mut Client) -> Result<usize, MigrationError> {
    let fail = |version, name| {
        move |source| MigrationError {
            version,
            name,
            source,
        }
    };
    let transaction = client.transaction().await.map_err(fail(0, "begin"))?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock({LOCK_KEY});
             CREATE SCHEMA IF NOT EXISTS walgate;
             CREATE TABLE IF NOT EXISTS walgate.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(fail(0, "bootstrap"))?;
    let applied: Vec<i32> = transaction
        .query("SELECT version FROM walgate.schema_migrations", &[])
        .await
        .map_err(fail(0, "bootstrap"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let on_error = fail(migration.version, migration.name);
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(on_error)?;
        transaction
            .execute(
                "INSERT INTO walgate.schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await
            .map_err(fail(migration.version, migration.name))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        count += 1;
    }
    transaction.commit().await.map_err(fail(0, "commit"))?;
    Ok(count)
}
