//! The per-relation cache built from Relation messages.
//!
//! PostgreSQL sends a Relation message before the first change to a table in a session and again
//! whenever the table's shape changes (a column added, dropped, renamed or retyped), always
//! before the change that needs it. Replacing the cached entry on each message therefore decodes
//! every change with the shape it was written with.

use std::collections::HashMap;
use std::sync::Arc;

use super::pgoutput::RelationMessage;
use super::types::{PgType, TypeError, TypeKind, TypeRegistry};

/// A table as of the latest Relation message.
#[derive(Debug)]
pub struct Relation {
    pub oid: u32,
    pub schema: Arc<str>,
    pub name: Arc<str>,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One column of a cached relation.
#[derive(Debug)]
pub struct Column {
    pub name: Arc<str>,
    /// The column name as a JSON string followed by `:`, ready to append to a row object.
    pub json_key: Box<str>,
    pub is_key: bool,
    pub pg_type: Arc<PgType>,
}

/// Relations by OID.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// Replaces the cached shape of a relation, resolving its column types.
    pub async fn update(
        &mut self,
        message: &RelationMessage<'_>,
        types: &mut TypeRegistry,
    ) -> Result<Arc<Relation>, TypeError> {
        let mut columns = Vec::with_capacity(message.columns.len());
        for column in &message.columns {
            let pg_type = match types.resolve(column.type_oid).await {
                Ok(pg_type) => pg_type,
                Err(TypeError::NotFound { oid, .. }) => dropped_type(message, column.name, oid),
                Err(err) => return Err(err),
            };
            let mut json_key = serde_json::to_string(column.name).unwrap_or_default();
            json_key.push(':');
            columns.push(Column {
                name: column.name.into(),
                json_key: json_key.into_boxed_str(),
                is_key: column.is_key,
                pg_type,
            });
        }
        let schema = match message.namespace {
            "" => "pg_catalog",
            namespace => namespace,
        };
        let relation = Arc::new(Relation {
            oid: message.oid,
            schema: schema.into(),
            name: message.name.into(),
            replica_identity: message.replica_identity,
            columns,
        });
        self.relations.insert(message.oid, relation.clone());
        Ok(relation)
    }

    /// The cached relation with this OID.
    pub fn get(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&oid)
    }

    /// Forgets every relation, as after a reconnect (the server sends them again).
    pub fn clear(&mut self) {
        self.relations.clear();
    }
}

/// Stands in for a column type that no longer exists in the catalog.
///
/// Types are looked up in the current catalog, not the one in force when the change was
/// written, so a change to a table whose column type was dropped later (while the gateway was
/// stopped or behind) cannot be resolved. Stopping would stall the slot for good, so the
/// column's values are passed on as their text, and the case is logged.
fn dropped_type(message: &RelationMessage<'_>, column: &str, oid: u32) -> Arc<PgType> {
    tracing::warn!(
        table = %format!("{}.{}", message.namespace, message.name),
        column,
        type_oid = oid,
        "column type no longer exists in the catalog; sending the column's values as text"
    );
    Arc::new(PgType {
        oid,
        name: format!("dropped type {oid}"),
        kind: TypeKind::Text,
    })
}
