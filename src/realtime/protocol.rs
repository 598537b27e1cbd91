//! WebSocket messages: what clients send and what the server sends back.
//!
//! Every frame is a JSON text object with a `type` field. The full table is in
//! `docs/websocket.md`.

use serde::Serialize;
use serde_json::Value;

/// A message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        channel: String,
        filter: Option<Value>,
        since: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
    /// A message type the protocol defines but this server does not serve yet.
    NotSupported {
        kind: String,
    },
}

/// Machine-readable error codes sent in `error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// Valid JSON, but not a message object with the fields its type needs.
    InvalidMessage,
    /// The `type` is not one the protocol defines.
    UnknownType,
    /// The frame is larger than the limit.
    MessageTooLarge,
    /// The channel name cannot be parsed.
    InvalidChannel,
    /// The table of a table channel does not exist.
    UnknownTable,
    /// The table exists but the publication does not include it.
    NotPublished,
    /// A subscription option that the server does not serve.
    NotSupported,
    /// The client fell behind and its queue is full; the connection closes.
    Lagged,
    /// The client's role may not read the table.
    Forbidden,
    /// The server could not complete the request; retrying may help.
    Internal,
}

impl ErrorCode {
    /// Returns the code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::UnknownTable => "unknown_table",
            ErrorCode::NotPublished => "not_published",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::Lagged => "lagged",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A client message that could not be accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    pub channel: Option<String>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            channel: None,
        }
    }

    pub fn with_channel(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_string());
        self
    }
}

/// Message types that later server versions serve; accepted as known and rejected with
/// `not_supported`.
const RESERVED_TYPES: &[&str] = &["live_query", "stop_live_query", "query"];

/// Parses one text frame.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|err| {
        ProtocolError::new(
            ErrorCode::InvalidJson,
            format!("message is not valid JSON ({err}); send one JSON object per text frame"),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "message must be a JSON object with a \"type\" field",
        ));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(invalid("the \"type\" field must be a string")),
        None => return Err(invalid("message has no \"type\" field")),
    };
    match kind {
        "subscribe" => Ok(ClientMessage::Subscribe {
            channel: required_string(&object, "channel", kind)?,
            filter: object.get("filter").filter(|v| !v.is_null()).cloned(),
            since: optional_string(&object, "since", kind)?,
        }),
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            channel: required_string(&object, "channel", kind)?,
        }),
        "ping" => Ok(ClientMessage::Ping),
        reserved if RESERVED_TYPES.contains(&reserved) => Ok(ClientMessage::NotSupported {
            kind: reserved.to_string(),
        }),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type {other:?}; expected subscribe, unsubscribe, ping, \
                 live_query, stop_live_query or query"
            ),
        )),
    }
}

fn invalid(message: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidMessage, message)
}

fn required_string(
    object: &serde_json::Map<String, Value>,
    field: &str,
    kind: &str,
) -> Result<String, ProtocolError> {
    optional_string(object, field, kind)?
        .ok_or_else(|| invalid(&format!("{kind} message needs a string \"{field}\" field")))
}

fn optional_string(
    object: &serde_json::Map<String, Value>,
    field: &str,
    kind: &str,
) -> Result<Option<String>, ProtocolError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(&format!(
            "the \"{field}\" field of a {kind} message must be a string"
        ))),
    }
}

/// A message from the server, other than notifications (which are built once per event by the
/// hub).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Subscribed {
        channel: &'a str,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Pong,
    Error {
        message: &'a str,
        code: ErrorCode,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    },
}

impl ServerMessage<'_> {
    /// Encodes the message as frame text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ProtocolError {
    /// Encodes the error as an `error` frame.
    pub fn to_text(&self) -> String {
        ServerMessage::Error {
            message: &self.message,
            code: self.code,
            channel: self.channel.as_deref(),
        }
        .to_text()
    }
}

/// Builds a `notification` frame around a payload that is already JSON text.
pub fn notification_frame(channel: &str, payload_json: &str) -> String {
    let channel = serde_json::to_string(channel).unwrap_or_default();
    let mut frame = String::with_capacity(48 + channel.len() + payload_json.len());
    frame.push_str(r#"{"type":"notification","channel":"#);
    frame.push_str(&channel);
    frame.push_str(r#","payload":"#);
    frame.push_str(payload_json);
    frame.push('}');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_parses() {
        let message = parse_client_message(r#"{"type":"subscribe","channel":"qail_table_orders"}"#);
        assert_eq!(
            message,
            Ok(ClientMessage::Subscribe {
                channel: "qail_table_orders".into(),
                filter: None,
                since: None
            })
        );
    }

    #[test]
    fn invalid_json_has_code() {
        let err = parse_client_message("{nope").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn unknown_type_has_code() {
        let err = parse_client_message(r#"{"type":"explode"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
        assert!(err.message.contains("\"explode\""), "{}", err.message);
    }

    #[test]
    fn missing_channel_is_invalid() {
        let err = parse_client_message(r#"{"type":"subscribe"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        assert_eq!(
            err.message,
            "subscribe message needs a string \"channel\" field"
        );
    }

    #[test]
    fn error_frame_shape() {
        let frame = ProtocolError::new(ErrorCode::UnknownTable, "no such table")
            .with_channel("qail_table_x")
            .to_text();
        assert_eq!(
            frame,
            r#"{"type":"error","message":"no such table","code":"unknown_table","channel":"qail_table_x"}"#
        );
    }

    #[test]
    fn notification_frame_embeds_payload() {
        assert_eq!(
            notification_frame("qail_table_orders", r#"{"id":"0/1:0"}"#),
            r#"{"type":"notification","channel":"qail_table_orders","payload":{"id":"0/1:0"}}"#
        );
    }
}
