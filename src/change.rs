//! The change model: one event per changed row, as clients, webhooks and tests see it.
//!
//! The JSON shape is documented in `docs/events.md`. Row images are pre-encoded JSON text
//! ([`RawValue`]) produced by the decoder, so an event is encoded once and that text serves every
//! consumer.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

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
    /// The upper-case name used in events (`INSERT`, ...).
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
}

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

impl TransactionInfo {
    /// Commit time as RFC 3339 in UTC with microseconds, like `2026-12-04T15:17:50.900176Z`.
    pub fn commit_time_rfc3339(&self) -> String {
        let unix_micros = self
            .commit_time_micros
            .saturating_add(PG_EPOCH_OFFSET_MICROS);
        match chrono::DateTime::from_timestamp_micros(unix_micros) {
            Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            None => "infinity".into(),
        }
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
    /// The new row image, absent for DELETE and TRUNCATE.
    pub new: Option<Box<RawValue>>,
    /// The old row image exactly as PostgreSQL sent it: the whole row under
    /// `REPLICA IDENTITY FULL`, the key columns otherwise, absent when nothing was sent.
    pub old: Option<Box<RawValue>>,
    /// Columns left out of `new` because their unchanged TOASTed value was not sent.
    pub unchanged_toast: Vec<Arc<str>>,
}

impl Serialize for ChangeEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("ChangeEvent", 9)?;
        event.serialize_field("id", &self.id)?;
        event.serialize_field("lsn", &self.transaction.commit_lsn)?;
        event.serialize_field("xid", &self.transaction.xid)?;
        event.serialize_field("commit_time", &self.transaction.commit_time_rfc3339())?;
        event.serialize_field("schema", &*self.schema)?;
        event.serialize_field("table", &*self.table)?;
        event.serialize_field("operation", &self.operation)?;
        event.serialize_field(
            "data",
            &RowImages {
                new: self.new.as_deref(),
                old: self.old.as_deref(),
            },
        )?;
        event.serialize_field("unchanged_toast", &self.unchanged_toast)?;
        event.end()
    }
}

/// The `data` member of an event (and of a webhook payload).
#[derive(Debug, Serialize)]
pub struct RowImages<'a> {
    pub new: Option<&'a RawValue>,
    pub old: Option<&'a RawValue>,
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
        let json = serde_json::to_string(&event)
            .expect("a change event has string keys and pre-validated JSON row images")
            .into_boxed_str();
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
        assert!(a < b && b < c);
    }

    #[test]
    fn commit_time_is_rfc3339_utc() {
        let info = TransactionInfo {
            xid: 1,
            commit_lsn: Lsn(1),
            commit_time_micros: 0,
        };
        assert_eq!(info.commit_time_rfc3339(), "2000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn event_encodes_documented_shape() {
        let event = ChangeEvent {
            id: "0/16B37A0:3".parse().unwrap(),
            transaction: Arc::new(TransactionInfo {
                xid: 740,
                commit_lsn: Lsn(0x16B37A0),
                commit_time_micros: 0,
            }),
            relation_oid: 16384,
            schema: "public".into(),
            table: "orders".into(),
            operation: Operation::Update,
            new: Some(RawValue::from_string(r#"{"id":7,"total":150.00}"#.into()).unwrap()),
            old: None,
            unchanged_toast: vec!["notes".into()],
        };
        assert_eq!(
            EncodedEvent::new(event).json.as_ref(),
            r#"{"id":"0/16B37A0:3","lsn":"0/16B37A0","xid":740,"commit_time":"2000-01-01T00:00:00.000000Z","schema":"public","table":"orders","operation":"UPDATE","data":{"new":{"id":7,"total":150.00},"old":null},"unchanged_toast":["notes"]}"#
        );
    }
}
