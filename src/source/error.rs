//! Errors of the replication connection, classified by the side that failed.

use std::io;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields, ErrorResponseBody, NoticeResponseBody};

/// An error from the replication connection.
///
/// The variant names the side that failed, and [`SourceError::is_retryable`] returns whether a
/// new connection may succeed where this one failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection settings cannot be used, for example no user or host is given, or TLS
    /// is required.
    #[error("invalid replication connection settings: {0}")]
    Config(String),
    /// A caller-supplied value cannot be sent, for example a string with a NUL byte.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No socket could be opened to the host, or the connection attempt timed out.
    #[error("could not connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// The host and port, or the Unix socket path.
        target: String,
        source: io::Error,
    },
    /// The server rejected the credentials, or authentication cannot be carried out.
    #[error("authentication as user {user:?} failed: {reason}")]
    Auth { user: String, reason: String },
    /// An `ErrorResponse` from the server.
    #[error("{}", describe_server_error(.code, .message, .detail, .hint))]
    Server {
        /// The SQLSTATE, such as `42704` for an undefined object.
        code: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// The server sent a message that is invalid or not expected at this point.
    #[error("PostgreSQL protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection without an error message.
    #[error("the server closed the replication connection unexpectedly")]
    Closed,
    /// Reading from or writing to the socket failed.
    #[error("I/O error on the replication connection: {0}")]
    Io(#[from] io::Error),
}

impl SourceError {
    /// Returns true when the failure may be transient, so reconnecting can help: network and
    /// socket failures, a closed connection, and server errors about connections, resources,
    /// shutdown, cancellation or an object in use (such as a slot held by another walsender).
    /// Settings, authentication and protocol errors are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Connect { .. } | SourceError::Closed | SourceError::Io(_) => true,
            SourceError::Server { code, .. } => is_retryable_sqlstate(code),
            SourceError::Config(_)
            | SourceError::InvalidArgument(_)
            | SourceError::Auth { .. }
            | SourceError::Protocol(_) => false,
        }
    }

    /// Returns the SQLSTATE of a [`SourceError::Server`] error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SourceError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// SQLSTATEs after which a new connection may succeed: connection exceptions (class 08),
/// insufficient resources (53), operator intervention (57: shutdown, restart, cancel) and
/// `object_in_use` (55006, which PostgreSQL raises when the slot is active for another process).
fn is_retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "55006"
}

fn describe_server_error(
    code: &str,
    message: &str,
    detail: &Option<String>,
    hint: &Option<String>,
) -> String {
    let mut text = format!("PostgreSQL error {code}: {message}");
    if let Some(detail) = detail {
        text.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

/// The fields of an `ErrorResponse` or `NoticeResponse` that walgate reports.
#[derive(Debug, Default)]
pub(crate) struct ServerFields {
    pub severity: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ServerFields {
    fn parse(mut fields: ErrorFields<'_>) -> Result<Self, SourceError> {
        let mut parsed = ServerFields::default();
        let invalid =
            |err: io::Error| SourceError::Protocol(format!("invalid error fields: {err}"));
        while let Some(field) = fields.next().map_err(invalid)? {
            let value = Some(String::from_utf8_lossy(field.value_bytes()).into_owned());
            match field.type_() {
                // 'V' is the untranslated severity. The localized 'S' is used only when 'V'
                // is missing, as it is from servers before PostgreSQL 9.6.
                b'V' => parsed.severity = value,
                b'S' if parsed.severity.is_none() => parsed.severity = value,
                b'C' => parsed.code = value,
                b'M' => parsed.message = value,
                b'D' => parsed.detail = value,
                b'H' => parsed.hint = value,
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// Parses an `ErrorResponse`.
    pub fn from_error(body: &ErrorResponseBody) -> Result<Self, SourceError> {
        Self::parse(body.fields())
    }

    /// Converts the fields into [`SourceError::Server`], with `XX000` (`internal_error`) when
    /// the SQLSTATE is missing.
    pub fn into_server_error(self) -> SourceError {
        SourceError::Server {
            code: self.code.unwrap_or_else(|| "XX000".into()),
            message: self.message.unwrap_or_default(),
            detail: self.detail,
            hint: self.hint,
        }
    }
}

/// Converts an `ErrorResponse` into [`SourceError::Server`].
pub(crate) fn server_error(body: &ErrorResponseBody) -> SourceError {
    match ServerFields::from_error(body) {
        Ok(fields) => fields.into_server_error(),
        Err(err) => err,
    }
}

/// Logs a `NoticeResponse` at debug level.
pub(crate) fn log_notice(body: &NoticeResponseBody) {
    match ServerFields::parse(body.fields()) {
        Ok(fields) => tracing::debug!(
            severity = fields.severity.as_deref().unwrap_or(""),
            code = fields.code.as_deref().unwrap_or(""),
            detail = fields.detail.as_deref().unwrap_or(""),
            "PostgreSQL notice: {}",
            fields.message.as_deref().unwrap_or("")
        ),
        Err(err) => tracing::debug!(error = %err, "ignoring an invalid notice from the server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> SourceError {
        SourceError::Server {
            code: code.into(),
            message: "m".into(),
            detail: None,
            hint: None,
        }
    }

    #[test]
    fn retryable_server_codes() {
        assert!(server("57P01").is_retryable());
        assert!(server("55006").is_retryable());
        assert!(server("53300").is_retryable());
        assert!(server("08006").is_retryable());
        assert!(!server("42704").is_retryable());
        assert!(!server("28P01").is_retryable());
    }

    #[test]
    fn server_error_display_includes_detail_and_hint() {
        let err = SourceError::Server {
            code: "42704".into(),
            message: "replication slot \"x\" does not exist".into(),
            detail: Some("d".into()),
            hint: Some("h".into()),
        };
        assert_eq!(
            err.to_string(),
            "PostgreSQL error 42704: replication slot \"x\" does not exist (detail: d) (hint: h)"
        );
    }
}
