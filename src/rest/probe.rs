//! Finding the value behind a data error.
//!
//! PostgreSQL reports `invalid input syntax for type integer: "abc"` without saying which
//! parameter contained it. After such an error the request's values are converted again one at
//! a time, outside the failed transaction, until one fails the same way. The error then names
//! that value's column. This runs only on the error path.

use deadpool_postgres::Object;
use serde_json::{Map, Value};

use super::error::RestError;
use super::schema::Table;
use super::sql::{write_probe, Probe, TextParam};

/// Most values converted again to explain one error.
const MAX_PROBES: usize = 1000;

fn is_data_error(err: &RestError) -> bool {
    err.details
        .get("sqlstate")
        .and_then(Value::as_str)
        .is_some_and(|state| state.starts_with("22"))
}

/// Runs the probes and, when one fails with a data error, returns an error naming its column.
async fn first_failing(object: &Object, probes: &[Probe], err: RestError) -> RestError {
    for probe in probes.iter().take(MAX_PROBES) {
        let value = TextParam(Some(probe.value.clone()));
        let failure = match object.query(&probe.sql, &[&value]).await {
            Ok(_) => continue,
            Err(failure) => failure,
        };
        let Some(db) = failure.as_db_error() else {
            return err;
        };
        if !db.code().code().starts_with("22") {
            continue;
        }
        return RestError::bad_request(
            "invalid_value",
            format!("column {:?}: {}", probe.column, db.message()),
        )
        .with_detail("column", probe.column.as_str())
        .with_detail("sqlstate", db.code().code());
    }
    err
}

/// Explains a data error of a statement whose filter or key values are `probes`.
pub(super) async fn explain_read(object: &Object, probes: &[Probe], err: RestError) -> RestError {
    if !is_data_error(&err) || probes.is_empty() || err.details.contains_key("column") {
        return err;
    }
    first_failing(object, probes, err).await
}

/// Explains a data error of a write by converting each field of the body's rows.
pub(super) async fn explain_write(
    object: &Object,
    table: &Table,
    rows: &[Map<String, Value>],
    err: RestError,
) -> RestError {
    if !is_data_error(&err) || err.details.contains_key("column") {
        return err;
    }
    let mut probes = Vec::new();
    'rows: for row in rows {
        for (key, value) in row {
            let Some(column) = table.column(key) else {
                continue;
            };
            probes.push(write_probe(table, column, value));
            if probes.len() >= MAX_PROBES {
                break 'rows;
            }
        }
    }
    first_failing(object, &probes, err).await
}
