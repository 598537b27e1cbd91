//! Error text for messages and logs.

/// Formats an error with its chain of sources, `outer: inner: ...`.
///
/// tokio-postgres prints only the kind of an error ("db error", "error connecting to server")
/// and keeps the useful part, such as the server's message or "Connection refused", in its
/// source, so every message about a database error goes through this.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
