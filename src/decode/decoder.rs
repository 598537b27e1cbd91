//! The decoder state machine: `pgoutput` messages in, change events out.

use std::sync::Arc;

use super::pgoutput::{self, ColumnValue, Message, OldTuple, ParseError, TupleData};
use super::relation::{Relation, RelationCache};
use super::types::{TypeError, TypeRegistry};
use super::value::{self, ValueError};
use crate::change::{ChangeEvent, EventId, Operation, TransactionInfo};
use crate::lsn::Lsn;

/// The schema of walgate's own tables, whose changes never become events.
pub const INTERNAL_SCHEMA: &str = "walgate";

/// The result of decoding one message.
#[derive(Debug)]
pub enum Decoded {
    /// A message that produces no output (Relation, Type, Origin, or a skipped table).
    Nothing,
    /// A transaction started; its changes follow.
    Begin(Arc<TransactionInfo>),
    /// One row change.
    Event(ChangeEvent),
    /// A TRUNCATE: one event per truncated table.
    Events(Vec<ChangeEvent>),
    /// The transaction ended. `end_lsn` is the position to confirm once its events are handled.
    Commit { commit_lsn: Lsn, end_lsn: Lsn },
    /// A message written with `pg_logical_emit_message`.
    LogicalMessage(LogicalMessage),
}

/// A message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalMessage {
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Vec<u8>,
}

/// Errors that stop the stream: decoding past them would skip or corrupt a change.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode the message at LSN {lsn}: {source}")]
    Parse { lsn: Lsn, source: ParseError },
    #[error("change at LSN {lsn} refers to relation {oid}, which no Relation message described")]
    UnknownRelation { lsn: Lsn, oid: u32 },
    #[error("{message} message at LSN {lsn} arrived outside a transaction")]
    OutsideTransaction { lsn: Lsn, message: &'static str },
    #[error("cannot resolve a column type at LSN {lsn}: {source}")]
    Type { lsn: Lsn, source: TypeError },
    #[error("column {table}.{column} at LSN {lsn}: {detail}")]
    Column {
        lsn: Lsn,
        table: String,
        column: String,
        detail: String,
    },
}

/// Turns `pgoutput` messages into [`ChangeEvent`]s, one transaction at a time.
///
/// Events carry the commit LSN from the Begin message (protocol version 1 sends a transaction
/// only once it has committed), so they can be emitted as they are decoded rather than held
/// until the Commit message.
pub struct Decoder {
    relations: RelationCache,
    types: TypeRegistry,
    transaction: Option<OpenTransaction>,
}

struct OpenTransaction {
    info: Arc<TransactionInfo>,
    next_index: u32,
}

impl Decoder {
    /// Creates a decoder that resolves column types through `types`.
    pub fn new(types: TypeRegistry) -> Self {
        Self {
            relations: RelationCache::default(),
            types,
            transaction: None,
        }
    }

    /// Forgets relations and any open transaction, as needed after the stream restarts: the
    /// server sends Relation messages again, and a transaction cut off mid-way is sent again in
    /// full.
    pub fn reset(&mut self) {
        self.relations.clear();
        self.types.clear();
        self.transaction = None;
    }

    /// True between a Begin and its Commit.
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Decodes one message. `lsn` is the WAL start of the XLogData that carried it and is used
    /// only in error messages.
    pub async fn decode(&mut self, payload: &[u8], lsn: Lsn) -> Result<Decoded, DecodeError> {
        let message =
            pgoutput::parse(payload).map_err(|source| DecodeError::Parse { lsn, source })?;
        match message {
            Message::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            } => Ok(self.begin(final_lsn, commit_time_micros, xid)),
            Message::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                self.open_transaction(lsn, "Commit")?;
                self.transaction = None;
                Ok(Decoded::Commit {
                    commit_lsn,
                    end_lsn,
                })
            }
            Message::Relation(relation) => {
                self.relations
                    .update(&relation, &mut self.types)
                    .await
                    .map_err(|source| DecodeError::Type { lsn, source })?;
                Ok(Decoded::Nothing)
            }
            Message::Type { oid, .. } => {
                self.types.invalidate(oid);
                Ok(Decoded::Nothing)
            }
            Message::Origin { .. } => Ok(Decoded::Nothing),
            Message::Insert { relation, new } => {
                self.row_change(lsn, Operation::Insert, relation, Some(new), None)
            }
            Message::Update { relation, old, new } => {
                self.row_change(lsn, Operation::Update, relation, Some(new), old)
            }
            Message::Delete { relation, old } => {
                self.row_change(lsn, Operation::Delete, relation, None, Some(old))
            }
            Message::Truncate { relations, .. } => self.truncate(lsn, &relations),
            Message::LogicalMessage {
                transactional,
                lsn: message_lsn,
                prefix,
                content,
            } => Ok(Decoded::LogicalMessage(LogicalMessage {
                transactional,
                lsn: message_lsn,
                prefix: prefix.to_string(),
                content: content.to_vec(),
            })),
        }
    }

    fn begin(&mut self, final_lsn: Lsn, commit_time_micros: i64, xid: u32) -> Decoded {
        let info = Arc::new(TransactionInfo::new(xid, final_lsn, commit_time_micros));
        self.transaction = Some(OpenTransaction {
            info: info.clone(),
            next_index: 0,
        });
        Decoded::Begin(info)
    }

    fn open_transaction(
        &mut self,
        lsn: Lsn,
        message: &'static str,
    ) -> Result<&mut OpenTransaction, DecodeError> {
        self.transaction
            .as_mut()
            .ok_or(DecodeError::OutsideTransaction { lsn, message })
    }

    fn relation(&self, lsn: Lsn, oid: u32) -> Result<Arc<Relation>, DecodeError> {
        self.relations
            .get(oid)
            .cloned()
            .ok_or(DecodeError::UnknownRelation { lsn, oid })
    }

    fn row_change(
        &mut self,
        lsn: Lsn,
        operation: Operation,
        relation_oid: u32,
        new: Option<TupleData<'_>>,
        old: Option<OldTuple<'_>>,
    ) -> Result<Decoded, DecodeError> {
        let relation = self.relation(lsn, relation_oid)?;
        let transaction = self.open_transaction(lsn, operation.as_str())?;
        if &*relation.schema == INTERNAL_SCHEMA {
            return Ok(Decoded::Nothing);
        }
        let id = EventId {
            commit_lsn: transaction.info.commit_lsn,
            index: transaction.next_index,
        };
        transaction.next_index += 1;
        let info = transaction.info.clone();

        let column_error = |column: &str, detail: String| DecodeError::Column {
            lsn,
            table: format!("{}.{}", relation.schema, relation.name),
            column: column.to_string(),
            detail,
        };
        let mut unchanged_toast = Vec::new();
        let new = match new {
            Some(tuple) => Some(
                encode_new(&relation, tuple, old.as_ref(), &mut unchanged_toast)
                    .map_err(|(column, detail)| column_error(&column, detail))?,
            ),
            None => None,
        };
        let old = match &old {
            Some(tuple) => Some(
                encode_old(&relation, tuple)
                    .map_err(|(column, detail)| column_error(&column, detail))?,
            ),
            None => None,
        };
        Ok(Decoded::Event(ChangeEvent {
            id,
            transaction: info,
            relation_oid: relation.oid,
            schema: relation.schema.clone(),
            table: relation.name.clone(),
            operation,
            new,
            old,
            unchanged_toast,
        }))
    }

    fn truncate(&mut self, lsn: Lsn, oids: &[u32]) -> Result<Decoded, DecodeError> {
        let relations = oids
            .iter()
            .map(|&oid| self.relation(lsn, oid))
            .collect::<Result<Vec<_>, _>>()?;
        let transaction = self.open_transaction(lsn, "Truncate")?;
        let events = relations
            .into_iter()
            .filter(|relation| &*relation.schema != INTERNAL_SCHEMA)
            .map(|relation| {
                let id = EventId {
                    commit_lsn: transaction.info.commit_lsn,
                    index: transaction.next_index,
                };
                transaction.next_index += 1;
                ChangeEvent {
                    id,
                    transaction: transaction.info.clone(),
                    relation_oid: relation.oid,
                    schema: relation.schema.clone(),
                    table: relation.name.clone(),
                    operation: Operation::Truncate,
                    new: None,
                    old: None,
                    unchanged_toast: Vec::new(),
                }
            })
            .collect();
        Ok(Decoded::Events(events))
    }
}

/// A column that failed to encode: its name and what went wrong.
type ColumnFailure = (String, String);

/// Encodes the new row image. An unchanged TOASTed value is copied from the old image when the
/// old image has it; otherwise the column is left out and named in `unchanged_toast`.
fn encode_new(
    relation: &Relation,
    new: TupleData<'_>,
    old: Option<&OldTuple<'_>>,
    unchanged_toast: &mut Vec<Arc<str>>,
) -> Result<Box<str>, ColumnFailure> {
    check_width(relation, &new)?;
    let old_values: Vec<ColumnValue<'_>> = match old {
        Some(OldTuple::Full(tuple)) | Some(OldTuple::Key(tuple)) => tuple.values().collect(),
        None => Vec::new(),
    };
    let mut out = String::with_capacity(64 * relation.columns.len());
    out.push('{');
    for (index, (column, value)) in relation.columns.iter().zip(new.values()).enumerate() {
        let value = match value {
            ColumnValue::UnchangedToast => match old_values.get(index) {
                Some(old @ ColumnValue::Text(_)) => *old,
                _ => {
                    unchanged_toast.push(column.name.clone());
                    continue;
                }
            },
            other => other,
        };
        push_member(&mut out, column, value)?;
    }
    out.push('}');
    Ok(out.into_boxed_str())
}

/// Encodes the old row image with exactly the columns PostgreSQL sent: the key columns of a
/// `K` tuple (the others arrive as NULL placeholders), every sent column of an `O` tuple.
fn encode_old(relation: &Relation, old: &OldTuple<'_>) -> Result<Box<str>, ColumnFailure> {
    let (tuple, key_only) = match old {
        OldTuple::Key(tuple) => (tuple, true),
        OldTuple::Full(tuple) => (tuple, false),
    };
    check_width(relation, tuple)?;
    let mut out = String::with_capacity(32 * relation.columns.len());
    out.push('{');
    for (column, value) in relation.columns.iter().zip(tuple.values()) {
        let skipped = (key_only && !column.is_key) || value == ColumnValue::UnchangedToast;
        if !skipped {
            push_member(&mut out, column, value)?;
        }
    }
    out.push('}');
    Ok(out.into_boxed_str())
}

fn check_width(relation: &Relation, tuple: &TupleData<'_>) -> Result<(), ColumnFailure> {
    if tuple.len() == relation.columns.len() {
        return Ok(());
    }
    Err((
        "*".into(),
        format!(
            "row has {} columns but the Relation message described {}",
            tuple.len(),
            relation.columns.len()
        ),
    ))
}

fn push_member(
    out: &mut String,
    column: &super::relation::Column,
    value: ColumnValue<'_>,
) -> Result<(), ColumnFailure> {
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(&column.json_key);
    match value {
        ColumnValue::Null => out.push_str("null"),
        ColumnValue::Text(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|err| {
                (
                    column.name.to_string(),
                    format!("value is not UTF-8: {err}"),
                )
            })?;
            if let Err(err) = value::write_json(out, text, &column.pg_type) {
                write_unconvertible(out, column, text, &err);
            }
        }
        ColumnValue::Binary(_) => {
            return Err((
                column.name.to_string(),
                "binary column values are not supported; the stream uses text format".into(),
            ))
        }
        ColumnValue::UnchangedToast => {
            return Err((
                column.name.to_string(),
                "unexpected unchanged TOAST marker".into(),
            ))
        }
    }
    Ok(())
}

/// Writes a value that has no `to_jsonb` form as a JSON string of its text.
///
/// PostgreSQL accepts some values that `to_jsonb` rejects (a json string holding `\u0000` or
/// an unpaired surrogate). Stopping the stream on them would halt every consumer on one row
/// forever, so the value is passed on as text, the same fallback `to_jsonb` uses for types it
/// has no JSON form for, and the case is logged and counted.
fn write_unconvertible(
    out: &mut String,
    column: &super::relation::Column,
    text: &str,
    err: &ValueError,
) {
    tracing::warn!(
        column = %column.name,
        pg_type = %column.pg_type.name,
        error = %err,
        "value has no to_jsonb form; sending its text as a JSON string"
    );
    metrics::counter!(crate::metrics::DECODE_UNCONVERTIBLE_VALUES).increment(1);
    value::write_json_string(out, text);
}
