//! The change model: one event per changed row, as clients, webhooks and tests see it.
//!
//! The JSON shape is documented in `docs/events.md`. Row images are JSON text produced by the
//! decoder, and an event is encoded once: that text serves every consumer.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

use crate::lsn::Lsn;

/// The kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    /// Returns the upper-case name used in events (`INSERT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Truncate => "TRUNCATE",
        }
    }
}

/// Position of an event: the commit LSN of its transaction and its index inside it.
///
/// Ordered by commit LSN, then index, which is the order events are emitted in. Printed as
/// `X/Y:N`; the same WAL decoded again yields the same ids, so an id is a resume position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub commit_lsn: Lsn,
    pub index: u32,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.commit_lsn, self.index)
    }
}

/// Error for text that is not an `X/Y:N` event id.
#[derive(Debug, thiserror::Error)]
#[error("invalid event id {0:?}: expected a commit LSN and an index, like 0/16B37A0:3")]
pub struct ParseEventIdError(pub String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseEventIdError(text.to_string());
        let (lsn, index) = text.rsplit_once(':').ok_or_else(invalid)?;
        Ok(EventId {
            commit_lsn: lsn.parse().map_err(|_| invalid())?,
            index: index.parse().map_err(|_| invalid())?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Transaction facts shared by every event of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionInfo {
    pub xid: u32,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// Commit time in microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
    pub commit_time_micros: i64,
    /// The commit time as RFC 3339 in UTC with microseconds, formatted once per transaction.
    pub commit_time: Box<str>,
}

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

impl TransactionInfo {
    /// Builds the shared facts of a transaction from its Begin message.
    pub fn new(xid: u32, commit_lsn: Lsn, commit_time_micros: i64) -> Self {
        Self {
            xid,
            commit_lsn,
            commit_time_micros,
            commit_time: format_pg_timestamp(commit_time_micros).into_boxed_str(),
        }
    }
}

/// Formats a PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as RFC 3339 in UTC with
/// microseconds, like `2026-12-04T15:17:50.900176Z`.
pub fn format_pg_timestamp(micros: i64) -> String {
    let unix_micros = micros.saturating_add(PG_EPOCH_OFFSET_MICROS);
    match chrono::DateTime::from_timestamp_micros(unix_micros) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => "infinity".into(),
    }
}

/// One changed row (or one truncated table).
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub id: EventId,
    pub transaction: Arc<TransactionInfo>,
    pub relation_oid: u32,
    pub schema: Arc<str>,
    pub table: Arc<str>,
    pub operation: Operation,
    /// The new row image as JSON object text, absent for DELETE and TRUNCATE.
    pub new: Option<Box<str>>,
    /// The old row image exactly as PostgreSQL sent it: the whole row under
    /// `REPLICA IDENTITY FULL`, the key columns otherwise, absent when nothing was sent.
    pub old: Option<Box<str>>,
    /// Columns left out of `new` because their unchanged TOASTed value was not sent.
    pub unchanged_toast: Vec<Arc<str>>,
}

impl ChangeEvent {
    /// Encodes the event as the JSON object documented in `docs/events.md`.
    ///
    /// Written by hand rather than through serde because the row images are already JSON text
    /// produced by the decoder, and re-validating them would cost a parse per row.
    pub fn to_json(&self) -> String {
        let new = self.new.as_deref().unwrap_or("null");
        let old = self.old.as_deref().unwrap_or("null");
        let mut out = String::with_capacity(192 + new.len() + old.len());
        let transaction = &self.transaction;
        let _ = write!(
            out,
            r#"{{"id":"{}","lsn":"{}","xid":{},"commit_time":"{}","schema":"#,
            self.id, transaction.commit_lsn, transaction.xid, transaction.commit_time
        );
        push_json_string(&mut out, &self.schema);
        out.push_str(r#","table":"#);
        push_json_string(&mut out, &self.table);
        let _ = write!(
            out,
            r#","operation":"{}","data":{{"new":{new},"old":{old}}},"unchanged_toast":["#,
            self.operation.as_str()
        );
        for (position, column) in self.unchanged_toast.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            push_json_string(&mut out, column);
        }
        out.push_str("]}");
        out
    }

    /// Parses the new row image as a JSON value, or returns `Value::Null`.
    pub fn new_value(&self) -> serde_json::Value {
        parse_image(self.new.as_deref())
    }

    /// Parses the old row image as a JSON value, or returns `Value::Null`.
    pub fn old_value(&self) -> serde_json::Value {
        parse_image(self.old.as_deref())
    }
}

fn parse_image(image: Option<&str>) -> serde_json::Value {
    image
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    // Serialising a &str into a String cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// An event with its JSON encoding, shared by every consumer that receives it.
#[derive(Debug)]
pub struct EncodedEvent {
    pub event: ChangeEvent,
    pub json: Box<str>,
}

impl EncodedEvent {
    /// Encodes the event once.
    pub fn new(event: ChangeEvent) -> Arc<Self> {
        let json = event.to_json().into_boxed_str();
        Arc::new(Self { event, json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_round_trips() {
        let id: EventId = "0/16B37A0:3".parse().unwrap();
        assert_eq!(id.commit_lsn, Lsn(0x16B37A0));
        assert_eq!(id.index, 3);
        assert_eq!(id.to_string(), "0/16B37A0:3");
    }

    #[test]
    fn event_ids_order_by_lsn_then_index() {
        let a: EventId = "0/100:9".parse().unwrap();
        let b: EventId = "0/200:0".parse().unwrap();
        let c: EventId = "0/200:1".parse().unwrap();
        assert!(a < b);
        assert!(b < c);
    }

    #[test]
    fn commit_time_is_rfc3339_utc() {
        let info = TransactionInfo::new(1, Lsn(1), 849_712_670_900_176);
        assert_eq!(&*info.commit_time, "2026-12-04T15:17:50.900176Z");
    }

    #[test]
    fn event_encodes_documented_shape() {
        let event = ChangeEvent {
            id: "0/16B37A0:3".parse().unwrap(),
            transaction: Arc::new(TransactionInfo::new(740, Lsn(0x16B37A0), 0)),
            relation_oid: 16384,
            schema: "public".into(),
            table: "orders".into(),
            operation: Operation::Update,
            new: Some(r#"{"id":7,"total":150.00}"#.into()),
            old: None,
            unchanged_toast: vec!["notes".into()],
        };
        assert_eq!(
            EncodedEvent::new(event).json.as_ref(),
            r#"{"id":"0/16B37A0:3","lsn":"0/16B37A0","xid":740,"commit_time":"2000-01-01T00:00:00.000000Z","schema":"public","table":"orders","operation":"UPDATE","data":{"new":{"id":7,"total":150.00},"old":null},"unchanged_toast":["notes"]}"#
        );
    }
}
