//! Errors of the REST handlers and their JSON form, `{"code", "message", "details"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tokio_postgres::error::DbError;

use crate::auth::AuthError;
use crate::report::error_chain;

/// An error returned to a REST client.
///
/// `message` is always safe to show: errors with a 5xx status carry a generic message, and
/// their cause is logged by [`RestError::internal`] instead of being returned.
#[derive(Debug, Clone)]
pub struct RestError {
    pub status: StatusCode,
    /// Stable snake_case code, for example `unknown_column` or `unique_violation`.
    pub code: &'static str,
    pub message: String,
    /// Extra fields, such as the SQLSTATE, constraint and column of a database error.
    pub details: Map<String, Value>,
}

impl RestError {
    /// Creates an error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds one detail field.
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Creates a 500 whose cause is logged at ERROR and not returned.
    pub fn internal(context: &str, err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(err), "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the gateway failed to complete the request; the cause is in its log",
        )
    }

    /// Returns the JSON object of this error, as sent in a response body or an NDJSON error
    /// line.
    pub fn body(&self) -> Value {
        let mut body = json!({ "code": self.code, "message": self.message });
        if !self.details.is_empty() {
            body["details"] = Value::Object(self.details.clone());
        }
        body
    }

    /// Maps an error from PostgreSQL to a status and code. Constraint, data and privilege
    /// errors are the client's to fix, so they keep the server's message. Anything else is a
    /// 5xx whose cause goes to the log. `anonymous` turns a privilege error into 401, because
    /// signing in may grant the privilege.
    pub fn from_db(err: &tokio_postgres::Error, anonymous: bool) -> Self {
        let Some(db) = err.as_db_error() else {
            if err.is_closed() {
                tracing::warn!(error = %error_chain(err), "database connection lost during a request");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database connection was lost; retry the request",
                );
            }
            return Self::internal("database request failed", err);
        };
        let state = db.code().code();
        let Some((status, code)) = classify(state, anonymous) else {
            return Self::internal("database request failed", err);
        };
        if status.is_server_error() {
            tracing::warn!(sqlstate = state, error = %db.message(), "database request failed");
            let message = match code {
                "query_canceled" => "the query was canceled, usually by statement_timeout",
                _ => "the database cannot serve the request now; retry later",
            };
            return Self::new(status, code, message).with_detail("sqlstate", state);
        }
        let mut message = db.message().to_string();
        if anonymous && state == "42501" {
            message.push_str(
                " (the request had no token, so it ran as the anonymous role; send \
                 Authorization: Bearer <JWT> for a role with this privilege)",
            );
        }
        Self::new(status, code, message).with_db_details(db)
    }

    fn with_db_details(mut self, db: &DbError) -> Self {
        self.details
            .insert("sqlstate".into(), db.code().code().into());
        let optional = [
            ("detail", db.detail()),
            ("hint", db.hint()),
            ("table", db.table()),
            ("column", db.column()),
            ("constraint", db.constraint()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                self.details.insert(key.into(), value.into());
            }
        }
        self
    }
}

/// Status and code of a SQLSTATE, or None for errors that are the gateway's fault.
fn classify(state: &str, anonymous: bool) -> Option<(StatusCode, &'static str)> {
    let denied = if anonymous {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let found = match state {
        "23505" => (StatusCode::CONFLICT, "unique_violation"),
        "23503" => (StatusCode::CONFLICT, "foreign_key_violation"),
        "23P01" => (StatusCode::CONFLICT, "exclusion_violation"),
        "23502" => (StatusCode::BAD_REQUEST, "not_null_violation"),
        "23514" => (StatusCode::BAD_REQUEST, "check_violation"),
        "42501" => (denied, "insufficient_privilege"),
        "22P02" | "22003" | "22007" | "22008" | "22021" | "22P05" | "22001" | "22004" => {
            (StatusCode::BAD_REQUEST, "invalid_value")
        }
        "428C9" => (StatusCode::BAD_REQUEST, "generated_column"),
        "42883" => (StatusCode::BAD_REQUEST, "undefined_operator"),
        "42804" | "42846" => (StatusCode::BAD_REQUEST, "datatype_mismatch"),
        "42P01" => (StatusCode::NOT_FOUND, "unknown_table"),
        "42703" => (StatusCode::BAD_REQUEST, "unknown_column"),
        "P0001" => (StatusCode::BAD_REQUEST, "raise_exception"),
        "40001" => (StatusCode::CONFLICT, "serialization_failure"),
        "40P01" => (StatusCode::CONFLICT, "deadlock_detected"),
        "57014" => (StatusCode::GATEWAY_TIMEOUT, "query_canceled"),
        "25006" => (StatusCode::METHOD_NOT_ALLOWED, "read_only_transaction"),
        // Raised, among others, for a write to a view PostgreSQL cannot update.
        "55000" => (StatusCode::METHOD_NOT_ALLOWED, "not_writable"),
        _ if state.starts_with("22") => (StatusCode::BAD_REQUEST, "data_exception"),
        _ if state.starts_with("23") => (StatusCode::CONFLICT, "integrity_violation"),
        _ if state.starts_with("53") || state.starts_with("08") || state.starts_with("57P") => {
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        }
        _ if state.starts_with("0A") => (StatusCode::BAD_REQUEST, "feature_not_supported"),
        _ => return None,
    };
    Some(found)
}

impl From<AuthError> for RestError {
    fn from(err: AuthError) -> Self {
        RestError::new(StatusCode::UNAUTHORIZED, err.code(), err.to_string())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_maps_sqlstates() {
        assert_eq!(
            classify("23505", false),
            Some((StatusCode::CONFLICT, "unique_violation"))
        );
        assert_eq!(
            classify("42501", true),
            Some((StatusCode::UNAUTHORIZED, "insufficient_privilege"))
        );
        assert_eq!(
            classify("42501", false),
            Some((StatusCode::FORBIDDEN, "insufficient_privilege"))
        );
        assert_eq!(
            classify("22P02", false),
            Some((StatusCode::BAD_REQUEST, "invalid_value"))
        );
        assert_eq!(classify("XX000", false), None);
    }

    #[test]
    fn body_holds_details_only_when_present() {
        let plain = RestError::bad_request("invalid_filter", "bad");
        assert_eq!(
            plain.body(),
            json!({"code": "invalid_filter", "message": "bad"})
        );
        let detailed = plain.with_detail("column", "id");
        assert_eq!(detailed.body()["details"], json!({"column": "id"}));
    }
}
