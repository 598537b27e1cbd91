//! Startup checks and the creation of the publication and the replication slot.
//!
//! Everything here runs over a plain SQL connection before streaming starts. Each failed check
//! names what to change on the server.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::lsn::Lsn;
use crate::report::error_chain;

/// Oldest supported server: `pgoutput` protocol version 1 with `messages` needs 14.
const MIN_SERVER_VERSION: i32 = 140000;

/// A server setting or privilege that prevents logical replication.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Unsupported(String),
    #[error("database query failed during setup ({step}): {}", error_chain(.source))]
    Query {
        step: &'static str,
        source: tokio_postgres::Error,
    },
}

impl SetupError {
    /// True when retrying later can help (a lost connection), false for a server
    /// configuration that a person must change.
    pub fn is_retryable(&self) -> bool {
        match self {
            SetupError::Unsupported(_) => false,
            SetupError::Query { source, .. } => source.as_db_error().is_none(),
        }
    }
}

fn query_error(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SetupError {
    move |source| SetupError::Query { step, source }
}

/// Checks that the server can serve logical replication to this role: the server version,
/// `wal_level`, the role's REPLICATION privilege, the database encoding and free slots and
/// WAL senders.
pub async fn check_server(client: &Client, slot: &str) -> Result<(), SetupError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('wal_level'),
                    r.rolreplication OR r.rolsuper,
                    current_user::text,
                    pg_encoding_to_char(d.encoding)::text,
                    current_setting('max_replication_slots')::int,
                    (SELECT count(*)::int FROM pg_replication_slots),
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
                    current_setting('max_wal_senders')::int,
                    (SELECT count(*)::int FROM pg_stat_replication)
             FROM pg_roles r, pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()",
            &[&slot],
        )
        .await
        .map_err(query_error("checking server settings"))?;
    let version: i32 = row.get(0);
    let wal_level: String = row.get(1);
    let can_replicate: bool = row.get(2);
    let role: String = row.get(3);
    let encoding: String = row.get(4);
    let (max_slots, used_slots, slot_exists): (i32, i32, bool) =
        (row.get(5), row.get(6), row.get(7));
    let (max_senders, used_senders): (i32, i32) = (row.get(8), row.get(9));

    if version < MIN_SERVER_VERSION {
        return unsupported(format!(
            "PostgreSQL server version {version} is too old: walgate needs 14 or newer"
        ));
    }
    if wal_level != "logical" {
        return unsupported(format!(
            "wal_level is '{wal_level}', but logical replication needs 'logical': run \
             `ALTER SYSTEM SET wal_level = logical` (or set it in postgresql.conf) and restart \
             PostgreSQL"
        ));
    }
    if !can_replicate {
        return unsupported(format!(
            "role {role:?} may not start replication: run `ALTER ROLE \"{role}\" WITH \
             REPLICATION` as a superuser, or connect as a role that has it"
        ));
    }
    if encoding != "UTF8" {
        return unsupported(format!(
            "the database encoding is {encoding}; walgate needs a UTF8 database because it \
             emits JSON"
        ));
    }
    if !slot_exists && used_slots >= max_slots {
        return unsupported(format!(
            "all {max_slots} replication slots are in use (max_replication_slots = \
             {max_slots}): raise max_replication_slots and restart PostgreSQL, or drop an \
             unused slot with pg_drop_replication_slot"
        ));
    }
    if used_senders >= max_senders {
        return unsupported(format!(
            "all {max_senders} WAL senders are busy (max_wal_senders = {max_senders}): raise \
             max_wal_senders and restart PostgreSQL"
        ));
    }
    Ok(())
}

fn unsupported<T>(message: String) -> Result<T, SetupError> {
    Err(SetupError::Unsupported(message))
}

/// Creates the publication `FOR ALL TABLES` unless it exists. An existing publication is used
/// as it is, so an operator can narrow it to chosen tables.
pub async fn ensure_publication(client: &Client, publication: &str) -> Result<(), SetupError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(query_error("looking up the publication"))?
        .is_some();
    if exists {
        return Ok(());
    }
    let sql = format!(
        "CREATE PUBLICATION {} FOR ALL TABLES WITH (publish_via_partition_root = true)",
        quote_identifier(publication)
    );
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(publication, "created publication for all tables");
            Ok(())
        }
        // Another gateway created it between the check and the CREATE.
        Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
        Err(err) if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => unsupported(format!(
            "cannot create publication {publication:?}: FOR ALL TABLES needs a superuser. \
             Create it as a superuser (`CREATE PUBLICATION \"{publication}\" FOR ALL TABLES`) \
             or for chosen tables (`CREATE PUBLICATION \"{publication}\" FOR TABLE ...`)"
        )),
        Err(err) => Err(query_error("creating the publication")(err)),
    }
}

/// Logs a warning naming the published tables that have no replica identity (no primary key
/// and `REPLICA IDENTITY DEFAULT`, or `NOTHING`): PostgreSQL rejects UPDATE and DELETE on such
/// tables while a publication that publishes those operations includes them.
pub async fn warn_tables_without_identity(client: &Client, publication: &str) {
    let rows = client
        .query(
            "SELECT format('%I.%I', p.schemaname, p.tablename)
             FROM pg_publication_tables p
             JOIN pg_namespace n ON n.nspname = p.schemaname
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
             JOIN pg_publication pub ON pub.pubname = p.pubname
             WHERE p.pubname = $1 AND (pub.pubupdate OR pub.pubdelete)
               AND (c.relreplident = 'n'
                    OR (c.relreplident = 'd' AND NOT EXISTS (
                        SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
             ORDER BY 1",
            &[&publication],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => {
            let tables: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            tracing::warn!(
                publication,
                tables = %tables.join(", "),
                "published tables without a replica identity reject UPDATE and DELETE; add a \
                 primary key or run ALTER TABLE ... REPLICA IDENTITY FULL on each"
            );
        }
        Ok(_) => {}
        Err(err) => tracing::debug!(error = %error_chain(&err), "replica identity check failed"),
    }
}

/// Creates the logical slot with `pgoutput` unless it exists, and returns the position to
/// stream from: the slot's `confirmed_flush_lsn`.
pub async fn ensure_slot(client: &Client, slot: &str) -> Result<Lsn, SetupError> {
    if let Some(lsn) = existing_slot(client, slot).await? {
        return Ok(lsn);
    }
    let created = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await;
    match created {
        Ok(row) => {
            let lsn = parse_lsn(row.get(0))?;
            tracing::info!(slot, %lsn, "created logical replication slot");
            Ok(lsn)
        }
        Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) => existing_slot(client, slot)
            .await?
            .ok_or_else(|| SetupError::Unsupported(format!("slot {slot:?} vanished during setup"))),
        Err(err) => Err(query_error("creating the replication slot")(err)),
    }
}

/// Returns the position of this database's slot, or None when it does not exist.
pub async fn existing_slot(client: &Client, slot: &str) -> Result<Option<Lsn>, SetupError> {
    let row = client
        .query_opt(
            "SELECT plugin, slot_type, database = current_database(), confirmed_flush_lsn::text
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(query_error("looking up the replication slot"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let plugin: Option<String> = row.get(0);
    let slot_type: String = row.get(1);
    let same_database: Option<bool> = row.get(2);
    if slot_type != "logical" || plugin.as_deref() != Some("pgoutput") {
        return unsupported(format!(
            "replication slot {slot:?} exists but is a {slot_type} slot with plugin {plugin:?}; \
             walgate needs a logical slot using pgoutput. Set WALGATE_SLOT to another name or \
             drop the slot"
        ));
    }
    if same_database != Some(true) {
        return unsupported(format!(
            "replication slot {slot:?} belongs to another database; set WALGATE_SLOT to a name \
             unique to this database"
        ));
    }
    let confirmed: Option<String> = row.get(3);
    confirmed.map(|text| parse_lsn(&text)).transpose()
}

fn parse_lsn(text: &str) -> Result<Lsn, SetupError> {
    text.parse()
        .map_err(|err| SetupError::Unsupported(format!("server returned {err}")))
}

/// Quotes an SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
