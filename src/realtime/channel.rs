//! WebSocket channel names.

/// The target of a channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Change events of one table: `qail_table_<table>` (schema `public`) or
    /// `table:<schema>.<table>`.
    Table { schema: String, table: String },
    /// A PostgreSQL NOTIFY channel: any other name.
    Notify(String),
}

/// Prefix of the table channels that name a table in schema `public`.
pub const QAIL_TABLE_PREFIX: &str = "qail_table_";
/// Prefix of the table channels that name a schema-qualified table.
pub const TABLE_PREFIX: &str = "table:";

/// Longest channel name accepted: PostgreSQL identifiers (and NOTIFY channels) are at most 63
/// bytes, and a table channel adds a prefix and a schema.
pub const MAX_CHANNEL_BYTES: usize = 200;

/// Error for a channel name that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is {0} bytes long; the limit is {MAX_CHANNEL_BYTES}")]
    TooLong(usize),
    #[error("channel {0:?} names no table: use qail_table_<table> or table:<schema>.<table>")]
    MissingTable(String),
    #[error("channel {0:?} must be table:<schema>.<table>, with a dot between schema and table")]
    MissingSchema(String),
    #[error("channel {0:?} names {1:?}, which is not a valid PostgreSQL name: names are 1 to 63 bytes without NUL")]
    InvalidName(String, String),
}

/// PostgreSQL's longest identifier (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_BYTES: usize = 63;

fn check_identifier(channel: &str, name: &str) -> Result<(), ChannelError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(ChannelError::InvalidName(channel.into(), name.into()));
    }
    Ok(())
}

impl Channel {
    /// Parses a channel name as a client sends it.
    pub fn parse(name: &str) -> Result<Channel, ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.len() > MAX_CHANNEL_BYTES {
            return Err(ChannelError::TooLong(name.len()));
        }
        if let Some(table) = name.strip_prefix(QAIL_TABLE_PREFIX) {
            if table.is_empty() {
                return Err(ChannelError::MissingTable(name.into()));
            }
            check_identifier(name, table)?;
            return Ok(Channel::Table {
                schema: "public".into(),
                table: table.into(),
            });
        }
        if let Some(qualified) = name.strip_prefix(TABLE_PREFIX) {
            let (schema, table) = qualified
                .split_once('.')
                .ok_or_else(|| ChannelError::MissingSchema(name.into()))?;
            if schema.is_empty() || table.is_empty() {
                return Err(ChannelError::MissingSchema(name.into()));
            }
            check_identifier(name, schema)?;
            check_identifier(name, table)?;
            return Ok(Channel::Table {
                schema: schema.into(),
                table: table.into(),
            });
        }
        Ok(Channel::Notify(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, table: &str) -> Channel {
        Channel::Table {
            schema: schema.into(),
            table: table.into(),
        }
    }

    #[test]
    fn qail_table_means_public() {
        assert_eq!(
            Channel::parse("qail_table_orders"),
            Ok(table("public", "orders"))
        );
    }

    #[test]
    fn table_prefix_takes_schema() {
        assert_eq!(
            Channel::parse("table:sales.orders"),
            Ok(table("sales", "orders"))
        );
        assert_eq!(Channel::parse("table:a.b.c"), Ok(table("a", "b.c")));
    }

    #[test]
    fn other_names_are_notify_channels() {
        assert_eq!(
            Channel::parse("order_events"),
            Ok(Channel::Notify("order_events".into()))
        );
    }

    #[test]
    fn malformed_names_are_rejected() {
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert!(matches!(
            Channel::parse("qail_table_"),
            Err(ChannelError::MissingTable(_))
        ));
        assert!(matches!(
            Channel::parse("table:orders"),
            Err(ChannelError::MissingSchema(_))
        ));
        assert!(matches!(
            Channel::parse("table:.x"),
            Err(ChannelError::MissingSchema(_))
        ));
        assert!(matches!(
            Channel::parse(&"x".repeat(201)),
            Err(ChannelError::TooLong(201))
        ));
    }
}
