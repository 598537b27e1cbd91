//! Parsing of `pgoutput` protocol version 1 messages.
//!
//! Each XLogData payload holds one message. The layouts are PostgreSQL's "Logical Replication
//! Message Formats" (protocol chapter 55.9 in the PostgreSQL 15 documentation). Parsing borrows
//! from the payload; nothing here allocates except for the column list of a Relation message.

use crate::lsn::Lsn;

/// A parsed `pgoutput` message.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    Begin {
        final_lsn: Lsn,
        commit_time_micros: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_micros: i64,
    },
    Origin {
        origin_lsn: Lsn,
        name: &'a str,
    },
    Relation(RelationMessage<'a>),
    Type {
        oid: u32,
        namespace: &'a str,
        name: &'a str,
    },
    Insert {
        relation: u32,
        new: TupleData<'a>,
    },
    Update {
        relation: u32,
        old: Option<OldTuple<'a>>,
        new: TupleData<'a>,
    },
    Delete {
        relation: u32,
        old: OldTuple<'a>,
    },
    Truncate {
        options: u8,
        relations: Vec<u32>,
    },
    LogicalMessage {
        transactional: bool,
        lsn: Lsn,
        prefix: &'a str,
        content: &'a [u8],
    },
}

/// Truncate option bit: `CASCADE`.
pub const TRUNCATE_CASCADE: u8 = 1;
/// Truncate option bit: `RESTART IDENTITY`.
pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;

/// A Relation message: the shape of a table as of the changes that follow it.
#[derive(Debug, PartialEq)]
pub struct RelationMessage<'a> {
    pub oid: u32,
    /// Schema name; pgoutput sends an empty string for `pg_catalog`.
    pub namespace: &'a str,
    pub name: &'a str,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn<'a>>,
}

/// One column of a Relation message.
#[derive(Debug, PartialEq)]
pub struct RelationColumn<'a> {
    /// True when the column is part of the replica identity key.
    pub is_key: bool,
    pub name: &'a str,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// The old row sent with an Update or Delete.
#[derive(Debug, PartialEq)]
pub enum OldTuple<'a> {
    /// `K`: the replica identity key columns; other columns are sent as NULL.
    Key(TupleData<'a>),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData<'a>),
}

/// The column values of one row, undecoded.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct TupleData<'a> {
    count: u16,
    body: &'a [u8],
}

/// One column value of a row.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum ColumnValue<'a> {
    Null,
    /// An unchanged TOASTed value that was not sent.
    UnchangedToast,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

impl<'a> TupleData<'a> {
    /// Number of columns in the row.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True for a row with no columns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates over the column values; the body was validated when the message was parsed.
    pub fn values(&self) -> TupleValues<'a> {
        TupleValues {
            reader: Reader::new(self.body),
            remaining: self.count,
        }
    }
}

/// Iterator over the values of a [`TupleData`].
pub struct TupleValues<'a> {
    reader: Reader<'a>,
    remaining: u16,
}

impl<'a> Iterator for TupleValues<'a> {
    type Item = ColumnValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The body was walked once by `parse_tuple`, so reading it again cannot fail.
        read_column(&mut self.reader).ok()
    }
}

/// Error for a payload that is not a valid `pgoutput` v1 message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("unknown pgoutput message type {tag:?} (byte 0x{byte:02x})")]
    UnknownMessage { tag: char, byte: u8 },
    #[error("truncated pgoutput {context} message: needed {needed} more bytes")]
    Truncated {
        context: &'static str,
        needed: usize,
    },
    #[error("malformed pgoutput {context} message: {detail}")]
    Malformed {
        context: &'static str,
        detail: String,
    },
}

/// Parses one `pgoutput` message.
pub fn parse(payload: &[u8]) -> Result<Message<'_>, ParseError> {
    let mut reader = Reader::new(payload);
    let tag = reader.u8("message")?;
    match tag {
        b'B' => parse_begin(&mut reader),
        b'C' => parse_commit(&mut reader),
        b'O' => parse_origin(&mut reader),
        b'R' => parse_relation(&mut reader).map(Message::Relation),
        b'Y' => parse_type(&mut reader),
        b'I' => parse_insert(&mut reader),
        b'U' => parse_update(&mut reader),
        b'D' => parse_delete(&mut reader),
        b'T' => parse_truncate(&mut reader),
        b'M' => parse_logical_message(&mut reader),
        byte => Err(ParseError::UnknownMessage {
            tag: char::from(byte),
            byte,
        }),
    }
}

fn parse_begin<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Begin";
    Ok(Message::Begin {
        final_lsn: Lsn(reader.u64(CONTEXT)?),
        commit_time_micros: reader.i64(CONTEXT)?,
        xid: reader.u32(CONTEXT)?,
    })
}

fn parse_commit<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Commit";
    let _flags = reader.u8(CONTEXT)?;
    Ok(Message::Commit {
        commit_lsn: Lsn(reader.u64(CONTEXT)?),
        end_lsn: Lsn(reader.u64(CONTEXT)?),
        commit_time_micros: reader.i64(CONTEXT)?,
    })
}

fn parse_origin<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Origin";
    Ok(Message::Origin {
        origin_lsn: Lsn(reader.u64(CONTEXT)?),
        name: reader.cstr(CONTEXT)?,
    })
}

fn parse_relation<'a>(reader: &mut Reader<'a>) -> Result<RelationMessage<'a>, ParseError> {
    const CONTEXT: &str = "Relation";
    let oid = reader.u32(CONTEXT)?;
    let namespace = reader.cstr(CONTEXT)?;
    let name = reader.cstr(CONTEXT)?;
    let replica_identity = reader.u8(CONTEXT)?;
    let count = reader.u16(CONTEXT)?;
    let mut columns = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        columns.push(RelationColumn {
            is_key: reader.u8(CONTEXT)? & 1 == 1,
            name: reader.cstr(CONTEXT)?,
            type_oid: reader.u32(CONTEXT)?,
            type_modifier: reader.i32(CONTEXT)?,
        });
    }
    Ok(RelationMessage {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn parse_type<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Type";
    Ok(Message::Type {
        oid: reader.u32(CONTEXT)?,
        namespace: reader.cstr(CONTEXT)?,
        name: reader.cstr(CONTEXT)?,
    })
}

fn parse_insert<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Insert";
    let relation = reader.u32(CONTEXT)?;
    expect_tag(reader, b'N', CONTEXT)?;
    Ok(Message::Insert {
        relation,
        new: parse_tuple(reader, CONTEXT)?,
    })
}

fn parse_update<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Update";
    let relation = reader.u32(CONTEXT)?;
    let old = match reader.u8(CONTEXT)? {
        b'K' => Some(OldTuple::Key(parse_tuple(reader, CONTEXT)?)),
        b'O' => Some(OldTuple::Full(parse_tuple(reader, CONTEXT)?)),
        b'N' => None,
        other => return Err(unexpected_tag(other, "K, O or N", CONTEXT)),
    };
    if old.is_some() {
        expect_tag(reader, b'N', CONTEXT)?;
    }
    Ok(Message::Update {
        relation,
        old,
        new: parse_tuple(reader, CONTEXT)?,
    })
}

fn parse_delete<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Delete";
    let relation = reader.u32(CONTEXT)?;
    let old = match reader.u8(CONTEXT)? {
        b'K' => OldTuple::Key(parse_tuple(reader, CONTEXT)?),
        b'O' => OldTuple::Full(parse_tuple(reader, CONTEXT)?),
        other => return Err(unexpected_tag(other, "K or O", CONTEXT)),
    };
    Ok(Message::Delete { relation, old })
}

fn parse_truncate<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Truncate";
    let count = reader.u32(CONTEXT)?;
    let options = reader.u8(CONTEXT)?;
    let mut relations = Vec::new();
    for _ in 0..count {
        relations.push(reader.u32(CONTEXT)?);
    }
    Ok(Message::Truncate { options, relations })
}

fn parse_logical_message<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, ParseError> {
    const CONTEXT: &str = "Message";
    let flags = reader.u8(CONTEXT)?;
    let lsn = Lsn(reader.u64(CONTEXT)?);
    let prefix = reader.cstr(CONTEXT)?;
    let length = reader.u32(CONTEXT)? as usize;
    Ok(Message::LogicalMessage {
        transactional: flags & 1 == 1,
        lsn,
        prefix,
        content: reader.bytes(length, CONTEXT)?,
    })
}

fn parse_tuple<'a>(
    reader: &mut Reader<'a>,
    context: &'static str,
) -> Result<TupleData<'a>, ParseError> {
    let count = reader.u16(context)?;
    let start = reader.position;
    for _ in 0..count {
        read_column(reader).map_err(|err| match err {
            ParseError::Truncated { needed, .. } => ParseError::Truncated { context, needed },
            ParseError::Malformed { detail, .. } => ParseError::Malformed { context, detail },
            other => other,
        })?;
    }
    Ok(TupleData {
        count,
        body: &reader.data[start..reader.position],
    })
}

fn read_column<'a>(reader: &mut Reader<'a>) -> Result<ColumnValue<'a>, ParseError> {
    const CONTEXT: &str = "TupleData";
    match reader.u8(CONTEXT)? {
        b'n' => Ok(ColumnValue::Null),
        b'u' => Ok(ColumnValue::UnchangedToast),
        b't' => {
            let length = reader.u32(CONTEXT)? as usize;
            Ok(ColumnValue::Text(reader.bytes(length, CONTEXT)?))
        }
        b'b' => {
            let length = reader.u32(CONTEXT)? as usize;
            Ok(ColumnValue::Binary(reader.bytes(length, CONTEXT)?))
        }
        other => Err(unexpected_tag(other, "n, u, t or b", CONTEXT)),
    }
}

fn expect_tag(reader: &mut Reader<'_>, tag: u8, context: &'static str) -> Result<(), ParseError> {
    match reader.u8(context)? {
        found if found == tag => Ok(()),
        other => Err(unexpected_tag(other, &char::from(tag).to_string(), context)),
    }
}

fn unexpected_tag(found: u8, expected: &str, context: &'static str) -> ParseError {
    ParseError::Malformed {
        context,
        detail: format!(
            "expected tuple tag {expected}, found byte 0x{found:02x} ({:?})",
            char::from(found)
        ),
    }
}

/// A bounds-checked big-endian cursor over a message payload.
struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, position: 0 }
    }

    fn bytes(&mut self, length: usize, context: &'static str) -> Result<&'a [u8], ParseError> {
        let remaining = self.data.len() - self.position;
        if length > remaining {
            return Err(ParseError::Truncated {
                context,
                needed: length - remaining,
            });
        }
        let slice = &self.data[self.position..self.position + length];
        self.position += length;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, context: &'static str) -> Result<[u8; N], ParseError> {
        let slice = self.bytes(N, context)?;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    fn u8(&mut self, context: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(context)?[0])
    }

    fn u16(&mut self, context: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array(context)?))
    }

    fn u32(&mut self, context: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(context)?))
    }

    fn i32(&mut self, context: &'static str) -> Result<i32, ParseError> {
        Ok(i32::from_be_bytes(self.array(context)?))
    }

    fn u64(&mut self, context: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(context)?))
    }

    fn i64(&mut self, context: &'static str) -> Result<i64, ParseError> {
        Ok(i64::from_be_bytes(self.array(context)?))
    }

    /// Reads a NUL-terminated UTF-8 string.
    fn cstr(&mut self, context: &'static str) -> Result<&'a str, ParseError> {
        let rest = &self.data[self.position..];
        let end = rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or(ParseError::Malformed {
                context,
                detail: "string without a terminating NUL byte".into(),
            })?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|err| ParseError::Malformed {
            context,
            detail: format!("string is not valid UTF-8: {err}"),
        })?;
        self.position += end + 1;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin_payload() -> Vec<u8> {
        let mut payload = vec![b'B'];
        payload.extend_from_slice(&0x16B37A0u64.to_be_bytes());
        payload.extend_from_slice(&42i64.to_be_bytes());
        payload.extend_from_slice(&740u32.to_be_bytes());
        payload
    }

    #[test]
    fn begin_parses_all_fields() {
        assert_eq!(
            parse(&begin_payload()).unwrap(),
            Message::Begin {
                final_lsn: Lsn(0x16B37A0),
                commit_time_micros: 42,
                xid: 740
            }
        );
    }

    #[test]
    fn truncated_begin_is_an_error() {
        let payload = begin_payload();
        let err = parse(&payload[..10]).unwrap_err();
        assert_eq!(
            err,
            ParseError::Truncated {
                context: "Begin",
                needed: 7
            }
        );
    }

    #[test]
    fn unknown_message_names_its_type() {
        let err = parse(b"S\0\0\0\x01").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown pgoutput message type 'S' (byte 0x53)"
        );
    }

    #[test]
    fn insert_tuple_values_decode() {
        let mut payload = vec![b'I'];
        payload.extend_from_slice(&16384u32.to_be_bytes());
        payload.push(b'N');
        payload.extend_from_slice(&3u16.to_be_bytes());
        payload.push(b't');
        payload.extend_from_slice(&2u32.to_be_bytes());
        payload.extend_from_slice(b"42");
        payload.push(b'n');
        payload.push(b'u');
        let Message::Insert { relation, new } = parse(&payload).unwrap() else {
            panic!("not an insert");
        };
        assert_eq!(relation, 16384);
        let values: Vec<_> = new.values().collect();
        assert_eq!(
            values,
            vec![
                ColumnValue::Text(b"42"),
                ColumnValue::Null,
                ColumnValue::UnchangedToast
            ]
        );
    }

    #[test]
    fn tuple_with_bad_tag_is_malformed() {
        let mut payload = vec![b'I'];
        payload.extend_from_slice(&1u32.to_be_bytes());
        payload.push(b'N');
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.push(b'x');
        let err = parse(&payload).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::Malformed {
                    context: "Insert",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn text_length_past_end_is_truncated() {
        let mut payload = vec![b'I'];
        payload.extend_from_slice(&1u32.to_be_bytes());
        payload.push(b'N');
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.push(b't');
        payload.extend_from_slice(&100u32.to_be_bytes());
        payload.extend_from_slice(b"short");
        let err = parse(&payload).unwrap_err();
        assert_eq!(
            err,
            ParseError::Truncated {
                context: "Insert",
                needed: 95
            }
        );
    }
}
