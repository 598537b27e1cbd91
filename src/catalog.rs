//! Catalog look-ups for the serving side (tables behind channel names), over one shared SQL
//! connection that is reopened when it drops.

use tokio_postgres::Config;

use crate::db::SharedClient;

use crate::decode::INTERNAL_SCHEMA;
use crate::report::error_chain;

/// Error from a catalog look-up.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog query failed: {}", error_chain(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// A table found in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub oid: u32,
    /// True when the gateway's publication includes the table.
    pub published: bool,
}

/// A shared SQL connection for catalog queries.
pub struct Catalog {
    db: SharedClient,
    publication: String,
}

impl Catalog {
    /// Creates the catalog; the connection opens on first use.
    pub fn new(config: Config, publication: &str) -> Self {
        Self {
            db: SharedClient::new(config, "catalog"),
            publication: publication.to_string(),
        }
    }

    /// Looks up an ordinary or partitioned table by exact schema and name. Tables in walgate's
    /// own schema are reported as absent.
    pub async fn table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableInfo>, CatalogError> {
        if schema == INTERNAL_SCHEMA {
            return Ok(None);
        }
        let client = self.db.get().await?;
        let row = client
            .query_opt(
                "SELECT c.oid, EXISTS (
                     SELECT 1 FROM pg_publication_tables p
                     WHERE p.pubname = $3 AND p.schemaname = n.nspname AND p.tablename = c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&schema, &table, &self.publication],
            )
            .await?;
        Ok(row.map(|row| TableInfo {
            oid: row.get(0),
            published: row.get(1),
        }))
    }

    /// Looks up whether `role` has SELECT on the whole table and whether it is a superuser or
    /// has BYPASSRLS. Returns None when the role does not exist.
    pub async fn role_access(
        &self,
        role: &str,
        table_oid: u32,
    ) -> Result<Option<RoleAccess>, CatalogError> {
        let client = self.db.get().await?;
        let row = client
            .query_opt(
                "SELECT has_table_privilege(r.oid, $2::int8::oid, 'SELECT'),
                        r.rolsuper OR r.rolbypassrls
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&role, &(table_oid as i64)],
            )
            .await?;
        Ok(row.map(|row| RoleAccess {
            select: row.get(0),
            privileged: row.get(1),
        }))
    }
}

/// Access of one role to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleAccess {
    /// SELECT on the whole table.
    pub select: bool,
    /// A superuser or BYPASSRLS role, which row-level policies do not restrict.
    pub privileged: bool,
}
