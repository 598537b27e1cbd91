//! The tables the REST API exposes, read from the catalog of the exposed schemas.
//!
//! Request text never becomes SQL: table and column names in a request are looked up here,
//! and only the catalog's own names, quoted, reach a statement. The snapshot is reloaded when a
//! request names something it does not hold, when PostgreSQL reports an undefined table or
//! column, and on a timer, so schema changes are picked up without a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::db::SharedClient;
use crate::decode::INTERNAL_SCHEMA;

/// Settings that choose the served tables of the exposed schemas.
#[derive(Debug, Clone)]
pub struct Exposure {
    /// Schemas searched, in order, for an unqualified table name.
    pub schemas: Vec<String>,
    /// When not empty, only these tables (`table` or `schema.table`) are served.
    pub allow: Vec<String>,
    /// Tables (`table` or `schema.table`) never served.
    pub block: Vec<String>,
}

impl Default for Exposure {
    fn default() -> Self {
        Self {
            schemas: vec!["public".into()],
            allow: Vec::new(),
            block: Vec::new(),
        }
    }
}

impl Exposure {
    fn listed(list: &[String], schema: &str, table: &str) -> bool {
        list.iter().any(|entry| match entry.split_once('.') {
            Some((s, t)) => s == schema && t == table,
            None => entry == table,
        })
    }

    fn serves(&self, schema: &str, table: &str) -> bool {
        schema != INTERNAL_SCHEMA
            && (self.allow.is_empty() || Self::listed(&self.allow, schema, table))
            && !Self::listed(&self.block, schema, table)
    }
}

/// A column as the REST layer uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The type's name, schema-qualified and quoted, ready to put in a cast.
    pub type_sql: String,
    /// True when `row_to_json` would write this column differently from `to_jsonb` (floats,
    /// json, arrays, composites, domains and extension types), so reads wrap it in `to_jsonb`.
    pub wrap_jsonb: bool,
    /// True for text-like types, which `like` and `ilike` compare without a cast.
    pub textual: bool,
}

/// A table, view or foreign table served by the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order; empty when there is none.
    pub primary_key: Vec<usize>,
}

impl Table {
    /// Returns the quoted, schema-qualified name for SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Returns the column named exactly `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// `schema.name`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Quotes an identifier the way `quote_ident` does when quoting is needed: in double quotes,
/// with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One loaded snapshot of the exposed tables.
#[derive(Debug, Default)]
struct Snapshot {
    /// Keyed by (schema, table).
    tables: HashMap<(String, String), Arc<Table>>,
}

/// Most reloads caused by requests in one second, so a client naming unknown tables in a loop
/// cannot make the gateway reload the catalog on every request.
const MAX_REQUEST_RELOADS_PER_SECOND: usize = 5;

/// Bookkeeping of reloads, behind the lock that serialises them.
#[derive(Default)]
struct Reloads {
    /// When recent reloads caused by requests started, oldest first.
    recent: VecDeque<Instant>,
    /// When the last reload of any kind finished.
    finished: Option<Instant>,
}

/// The exposed tables, reloaded on demand.
pub struct SchemaCache {
    db: SharedClient,
    exposure: Exposure,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises reloads.
    reload: Mutex<Reloads>,
}

/// Error from loading the catalog.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("catalog query failed: {}", crate::report::error_chain(.0))]
    Query(#[from] tokio_postgres::Error),
}

impl SchemaCache {
    /// Creates the cache; the first look-up loads it.
    pub fn new(db: SharedClient, exposure: Exposure) -> Self {
        Self {
            db,
            exposure,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            reload: Mutex::new(Reloads::default()),
        }
    }

    /// Returns the exposure settings.
    pub fn exposure(&self) -> &Exposure {
        &self.exposure
    }

    /// Finds a served table by the name in a request path: `table` (searched in the exposed
    /// schemas in order) or `schema.table`. Reloads the catalog once when the name is unknown.
    pub async fn find(&self, name: &str) -> Result<Option<Arc<Table>>, LookupError> {
        if let Some(table) = self.find_loaded(name) {
            return Ok(Some(table));
        }
        self.reload_if_stale().await?;
        Ok(self.find_loaded(name))
    }

    /// Finds a served table whose name matches `name` ignoring case, for hints in errors.
    pub fn find_case_insensitive(&self, name: &str) -> Option<Arc<Table>> {
        let snapshot = self.snapshot.read().expect("schema lock").clone();
        let lowered = name.to_lowercase();
        snapshot
            .tables
            .values()
            .find(|table| {
                table.name.to_lowercase() == lowered
                    || format!("{}.{}", table.schema, table.name).to_lowercase() == lowered
            })
            .cloned()
    }

    fn find_loaded(&self, name: &str) -> Option<Arc<Table>> {
        let snapshot = self.snapshot.read().expect("schema lock").clone();
        if let Some(table) = self.exposure.schemas.iter().find_map(|schema| {
            snapshot
                .tables
                .get(&(schema.clone(), name.to_string()))
                .cloned()
        }) {
            return Some(table);
        }
        let (schema, table) = name.split_once('.')?;
        snapshot
            .tables
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// Reloads because a request found the catalog stale. Concurrent callers share one
    /// reload, and beyond five such reloads a second the snapshot is kept as it is.
    pub async fn reload_if_stale(&self) -> Result<(), LookupError> {
        let requested = Instant::now();
        let mut reloads = self.reload.lock().await;
        if reloads
            .finished
            .is_some_and(|finished| finished > requested)
        {
            return Ok(());
        }
        while reloads
            .recent
            .front()
            .is_some_and(|started| started.elapsed() >= Duration::from_secs(1))
        {
            reloads.recent.pop_front();
        }
        if reloads.recent.len() >= MAX_REQUEST_RELOADS_PER_SECOND {
            return Ok(());
        }
        reloads.recent.push_back(requested);
        self.load().await?;
        reloads.finished = Some(Instant::now());
        Ok(())
    }

    /// Reloads now, outside the limit on reloads caused by requests.
    pub async fn reload(&self) -> Result<(), LookupError> {
        let mut reloads = self.reload.lock().await;
        self.load().await?;
        reloads.finished = Some(Instant::now());
        Ok(())
    }

    async fn load(&self) -> Result<(), LookupError> {
        let client = self.db.get().await?;
        let rows = client
            .query(
                "SELECT n.nspname, c.relname, a.attname,
                        quote_ident(tn.nspname) || '.' || quote_ident(t.typname),
                        a.atttypid::int8, t.typtype::text, t.typcategory::text,
                        coalesce(pk.position, 0)::int4
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 JOIN pg_type t ON t.oid = a.atttypid
                 JOIN pg_namespace tn ON tn.oid = t.typnamespace
                 LEFT JOIN LATERAL (
                     SELECT k.position
                     FROM pg_constraint con, unnest(con.conkey) WITH ORDINALITY AS k(attnum, position)
                     WHERE con.conrelid = c.oid AND con.contype = 'p' AND k.attnum = a.attnum
                 ) pk ON true
                 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                 ORDER BY n.nspname, c.relname, a.attnum",
                &[&self.exposure.schemas],
            )
            .await?;
        let mut tables: HashMap<(String, String), Table> = HashMap::new();
        let mut keys: HashMap<(String, String), Vec<(i32, usize)>> = HashMap::new();
        for row in rows {
            let schema: String = row.get(0);
            let name: String = row.get(1);
            if !self.exposure.serves(&schema, &name) {
                continue;
            }
            let type_oid = row.get::<_, i64>(4) as u32;
            let typtype: String = row.get(5);
            let category: String = row.get(6);
            let position: i32 = row.get(7);
            let key = (schema.clone(), name.clone());
            let table = tables.entry(key.clone()).or_insert_with(|| Table {
                schema,
                name,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
            if position > 0 {
                keys.entry(key)
                    .or_default()
                    .push((position, table.columns.len()));
            }
            table.columns.push(Column {
                name: row.get(2),
                type_sql: row.get(3),
                wrap_jsonb: needs_jsonb_wrap(type_oid, &typtype, &category),
                textual: matches!(type_oid, TEXT_OID | VARCHAR_OID | BPCHAR_OID | NAME_OID),
            });
        }
        for (key, mut positions) in keys {
            positions.sort_unstable();
            if let Some(table) = tables.get_mut(&key) {
                table.primary_key = positions.into_iter().map(|(_, index)| index).collect();
            }
        }
        let count = tables.len();
        let snapshot = Snapshot {
            tables: tables
                .into_iter()
                .map(|(key, table)| (key, Arc::new(table)))
                .collect(),
        };
        *self.snapshot.write().expect("schema lock") = Arc::new(snapshot);
        tracing::debug!(tables = count, "REST catalog loaded");
        Ok(())
    }
}

const TEXT_OID: u32 = 25;
const VARCHAR_OID: u32 = 1043;
const BPCHAR_OID: u32 = 1042;
const NAME_OID: u32 = 19;
const JSON_OID: u32 = 114;
const FLOAT4_OID: u32 = 700;
const FLOAT8_OID: u32 = 701;
/// OIDs from here on belong to objects created after `initdb`, such as extension types.
const FIRST_NORMAL_OID: u32 = 16384;

/// True when `row_to_json` writes a value of this type differently from `to_jsonb`: floats
/// (`1e+30`, `-0`), json (kept as written), and anything that may contain them.
fn needs_jsonb_wrap(type_oid: u32, typtype: &str, category: &str) -> bool {
    matches!(type_oid, JSON_OID | FLOAT4_OID | FLOAT8_OID)
        || type_oid >= FIRST_NORMAL_OID
        || category == "A"
        || matches!(typtype, "c" | "d")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_allow_and_block_lists() {
        let exposure = Exposure {
            schemas: vec!["public".into(), "api".into()],
            allow: vec![],
            block: vec!["secrets".into(), "api.internal".into()],
        };
        assert!(exposure.serves("public", "orders"));
        assert!(!exposure.serves("public", "secrets"));
        assert!(!exposure.serves("api", "internal"));
        assert!(exposure.serves("public", "internal"));
        assert!(!exposure.serves(INTERNAL_SCHEMA, "webhook_deliveries"));
        let only = Exposure {
            allow: vec!["public.orders".into()],
            ..Exposure::default()
        };
        assert!(only.serves("public", "orders"));
        assert!(!only.serves("public", "items"));
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("orders"), "\"orders\"");
    }

    #[test]
    fn floats_json_and_containers_are_wrapped() {
        assert!(needs_jsonb_wrap(FLOAT8_OID, "b", "N"));
        assert!(needs_jsonb_wrap(JSON_OID, "b", "U"));
        assert!(needs_jsonb_wrap(1007, "b", "A"));
        assert!(needs_jsonb_wrap(20000, "c", "C"));
        assert!(!needs_jsonb_wrap(1700, "b", "N"));
        assert!(!needs_jsonb_wrap(TEXT_OID, "b", "S"));
    }
}
