//! The REST route handlers.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;

use super::error::RestError;
use super::params::{parse_list_params, ListParams};
use super::probe::{explain_read, explain_write};
use super::schema::{Column, Table};
use super::session::{begin, Checkout};
use super::sql::{self, key_filters, selected, unknown_column, ReadSpec};
use super::stream;
use super::RestState;
use crate::auth::{bearer_token, Identity};

/// The media type of NDJSON responses.
pub const NDJSON: &str = "application/x-ndjson";

fn authenticate(state: &RestState, headers: &HeaderMap) -> Result<Identity, RestError> {
    let token = bearer_token(headers)?;
    Ok(state.auth.authenticate(token)?)
}

/// Finds the table named in the path.
async fn find_table(state: &RestState, name: &str) -> Result<Arc<Table>, RestError> {
    let found = state.schema.find(name).await.map_err(|err| {
        let super::schema::LookupError::Query(source) = &err;
        if source.is_closed() || source.as_db_error().is_none() {
            tracing::warn!(error = %err, "REST catalog look-up failed");
            return RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is not reachable; retry later",
            );
        }
        RestError::internal("REST catalog look-up failed", &err)
    })?;
    if let Some(table) = found {
        return Ok(table);
    }
    let schemas = &state.schema.exposure().schemas;
    let hint = match name.split_once('.') {
        Some((schema, _)) if !schemas.iter().any(|exposed| exposed == schema) => format!(
            "schema {schema:?} is not exposed; add it to rest.schemas (now {})",
            schemas.join(", ")
        ),
        _ => match state.schema.find_case_insensitive(name) {
            Some(similar) => format!("names are case-sensitive: did you mean {:?}?", similar.name),
            None => format!(
                "tables are looked up in the schemas {}, and the allow and block lists of \
                 rest.tables and rest.exclude_tables apply",
                schemas.join(", ")
            ),
        },
    };
    Err(RestError::new(
        StatusCode::NOT_FOUND,
        "unknown_table",
        format!("no table {name:?} is served; {hint}"),
    )
    .with_detail("table", name))
}

/// Runs `attempt` against the table, and once more after reloading the catalog when the
/// request names a column the loaded catalog lacks or PostgreSQL reports an undefined table or
/// column (the schema changed since the last load).
async fn with_table<T, F, Fut>(state: &RestState, name: &str, attempt: F) -> Result<T, RestError>
where
    F: Fn(Arc<Table>) -> Fut,
    Fut: Future<Output = Result<T, RestError>>,
{
    let table = find_table(state, name).await?;
    match attempt(table).await {
        Err(err) if is_stale_schema(&err) => {
            if let Err(reload) = state.schema.reload_if_stale().await {
                tracing::warn!(error = %reload, "REST catalog reload failed");
                return Err(err);
            }
            attempt(find_table(state, name).await?).await
        }
        other => other,
    }
}

fn is_stale_schema(err: &RestError) -> bool {
    match err.details.get("sqlstate").and_then(Value::as_str) {
        Some(state) => matches!(state, "42P01" | "42703"),
        None => err.code == "unknown_column",
    }
}

/// True when the `Accept` header prefers NDJSON to JSON: `application/x-ndjson` is listed
/// with a quality above zero, and above `application/json` if that is listed too (the one
/// listed first wins a tie). Media types compare case-insensitively; wildcards count for
/// neither.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    let mut ndjson: Option<(f32, usize)> = None;
    let mut json: Option<(f32, usize)> = None;
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for (position, range) in ranges.enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|param| param.trim().split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, q)| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            NDJSON => &mut ndjson,
            "application/json" => &mut json,
            _ => continue,
        };
        let better = match slot {
            Some((best, _)) => quality > *best,
            None => true,
        };
        if better {
            *slot = Some((quality, position));
        }
    }
    match (ndjson, json) {
        (Some((q, _)), _) if q <= 0.0 => false,
        (Some(_), None) => true,
        (Some((q_nd, at_nd)), Some((q_js, at_js))) => {
            q_nd > q_js || (q_nd == q_js && at_nd < at_js)
        }
        (None, _) => false,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"data": [rows...]}` text, with the rows embedded as PostgreSQL wrote them.
fn push_rows(out: &mut Vec<u8>, rows: &[String]) {
    out.push(b'[');
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row.as_bytes());
    }
    out.push(b']');
}

/// `GET /api/{table}`: a page of rows, or every row as NDJSON.
pub(super) async fn list(
    State(state): State<RestState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(list_rows(&state, &name, query.as_deref(), &headers).await)
}

async fn list_rows(
    state: &RestState,
    name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, RestError> {
    let identity = authenticate(state, headers)?;
    let ndjson = wants_ndjson(headers);
    with_table(state, name, |table| {
        let identity = identity.clone();
        async move {
            let params = parse_list_params(query, &|column| table.column(column).is_some())?;
            if params.stream.unwrap_or(ndjson) {
                return stream_rows(state, &table, &params, identity).await;
            }
            page(state, &table, &params, &identity).await
        }
    })
    .await
}

async fn page(
    state: &RestState,
    table: &Table,
    params: &ListParams,
    identity: &Identity,
) -> Result<Response, RestError> {
    let limit = params
        .limit
        .unwrap_or(state.config.default_limit)
        .min(state.config.max_limit);
    let offset = params.offset.unwrap_or(0);
    let spec = ReadSpec {
        columns: selected(table, params.select.as_deref())?,
        filters: &params.filters,
        sort: &params.sort,
        limit: Some(limit),
        offset,
    };
    let query = sql::read(table, &spec)?;
    let rows = read_rows(state, &query, identity).await?;
    let mut body = Vec::with_capacity(64 + rows.iter().map(|row| row.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"data\":");
    push_rows(&mut body, &rows);
    body.extend_from_slice(
        format!(
            ",\"count\":{},\"limit\":{limit},\"offset\":{offset}}}",
            rows.len()
        )
        .as_bytes(),
    );
    Ok(json_response(StatusCode::OK, body))
}

async fn stream_rows(
    state: &RestState,
    table: &Table,
    params: &ListParams,
    identity: Identity,
) -> Result<Response, RestError> {
    let spec = ReadSpec {
        columns: selected(table, params.select.as_deref())?,
        filters: &params.filters,
        sort: &params.sort,
        limit: params.limit,
        offset: params.offset.unwrap_or(0),
    };
    let query = sql::read(table, &spec)?;
    stream::respond(state.clone(), identity, query).await
}

/// Runs a read statement in a read-only transaction and returns its JSON rows.
async fn read_rows(
    state: &RestState,
    query: &sql::Query,
    identity: &Identity,
) -> Result<Vec<String>, RestError> {
    let mut connection = Checkout::new(&state.pool).await?;
    let result = async {
        let tx = begin(connection.object(), identity, true, &state.config).await?;
        let db = |err: tokio_postgres::Error| RestError::from_db(&err, identity.anonymous);
        let statement = tx.prepare_cached(&query.sql).await.map_err(db)?;
        let rows = tx
            .query(&statement, &query.param_refs())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
    }
    .await;
    let result = match result {
        Err(err) => Err(explain_read(connection.object(), &query.probes, err).await),
        ok => ok,
    };
    connection.release();
    result
}

/// Splits the last path segment into primary-key values: comma-separated, each
/// percent-encoded.
fn key_values(table: &Table, uri: &Uri) -> Result<Vec<String>, RestError> {
    if table.primary_key.is_empty() {
        return Err(RestError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "no_primary_key",
            format!(
                "{} has no primary key (views never have one), so its rows cannot be read, \
                 updated or deleted by id; list them with filters instead, as in \
                 GET /api/{}?column=eq.value",
                table.display_name(),
                table.name
            ),
        ));
    }
    let raw = uri.path().rsplit('/').next().unwrap_or_default();
    let parts: Vec<String> = raw
        .split(',')
        .map(|part| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if parts.len() != table.primary_key.len() {
        let names: Vec<&str> = table
            .primary_key
            .iter()
            .map(|&index| table.columns[index].name.as_str())
            .collect();
        return Err(RestError::bad_request(
            "invalid_id",
            format!(
                "the primary key of {} has {} column(s) ({}) but the id {raw:?} gives {}; \
                 separate the values with commas and percent-encode commas inside a value \
                 as %2C",
                table.display_name(),
                names.len(),
                names.join(", "),
                parts.len()
            ),
        ));
    }
    Ok(parts)
}

fn row_not_found(table: &Table, uri: &Uri) -> RestError {
    let raw = uri.path().rsplit('/').next().unwrap_or_default();
    RestError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no row of {} with id {raw:?} is visible to this request",
            table.display_name()
        ),
    )
}

/// Parses the `select` parameter of a request on one row; other parameters are refused.
fn row_select(table: &Table, query: Option<&str>) -> Result<Option<Vec<String>>, RestError> {
    let only_select = |parameter: &str| {
        RestError::bad_request(
            "invalid_parameter",
            format!(
                "parameter {parameter:?} does not apply here: a single row or a write takes \
                 only select; filter a list with GET /api/{}?...",
                table.name
            ),
        )
        .with_detail("parameter", parameter)
    };
    if let Some(query) = query {
        for (key, _) in form_urlencoded::parse(query.as_bytes()) {
            if key != "select" {
                return Err(only_select(&key));
            }
        }
    }
    let params = parse_list_params(query, &|_| false)?;
    if let Some(columns) = &params.select {
        for column in columns {
            if table.column(column).is_none() {
                return Err(unknown_column(table, column));
            }
        }
    }
    Ok(params.select)
}

/// `GET /api/{table}/{id}`.
pub(super) async fn get_one(
    State(state): State<RestState>,
    Path((name, _)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let identity = authenticate(&state, &headers)?;
        with_table(&state, &name, |table| {
            let (state, identity, uri) = (&state, &identity, &uri);
            let query = query.as_deref();
            async move {
                let select = row_select(&table, query)?;
                let filters = key_filters(&table, key_values(&table, uri)?);
                let spec = ReadSpec {
                    columns: selected(&table, select.as_deref())?,
                    filters: &filters,
                    sort: &[],
                    limit: None,
                    offset: 0,
                };
                let rows = read_rows(state, &sql::read(&table, &spec)?, identity).await?;
                let Some(row) = rows.first() else {
                    return Err(row_not_found(&table, uri));
                };
                let body = format!("{{\"data\":{row}}}").into_bytes();
                Ok(json_response(StatusCode::OK, body))
            }
        })
        .await
    }
    .await;
    respond(result)
}

/// Reads a request body up to the configured limit and parses it as JSON.
///
/// Parsed JSON takes many times the memory of its text (a small object per row), so parsing
/// and the write that follows hold permits for the body's size from a budget shared by all
/// requests. Bodies beyond the budget wait, and one larger than the whole budget runs alone.
async fn json_body(
    state: &RestState,
    body: Body,
) -> Result<(Value, OwnedSemaphorePermit), RestError> {
    let limit = state.config.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than {limit} bytes; send fewer rows per request or \
                 raise rest.max_body_bytes"
            ),
        )
    })?;
    let kib = (bytes.len() / 1024 + 1).min(super::BODY_BUDGET_KIB) as u32;
    let permit = state
        .body_budget
        .clone()
        .acquire_many_owned(kib)
        .await
        .expect("the body budget is never closed");
    let value = serde_json::from_slice(&bytes).map_err(|err| {
        RestError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {err}"),
        )
    })?;
    Ok((value, permit))
}

/// Returns the columns a row object sets, in table order, and rejects unknown keys.
fn row_keys<'t>(table: &'t Table, row: &Map<String, Value>) -> Result<Vec<&'t Column>, RestError> {
    for key in row.keys() {
        if table.column(key).is_none() {
            return Err(unknown_column(table, key));
        }
    }
    Ok(table
        .columns
        .iter()
        .filter(|column| row.contains_key(&column.name))
        .collect())
}

/// `POST /api/{table}`: one row object or an array of them; 201 with the inserted rows.
pub(super) async fn create(
    State(state): State<RestState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let identity = authenticate(&state, &headers)?;
        // An unknown table is rejected before the body is read.
        find_table(&state, &name).await?;
        let (body, _permit) = json_body(&state, body).await?;
        let (rows, single) = body_rows(body)?;
        let rows = &rows;
        with_table(&state, &name, |table| {
            let (state, identity) = (&state, &identity);
            let query = query.as_deref();
            async move {
                let select = row_select(&table, query)?;
                let returning = selected(&table, select.as_deref())?;
                let groups = group_rows(&table, rows)?;
                let queries: Vec<sql::Query> = groups
                    .iter()
                    .map(|group| {
                        let members: Vec<&Map<String, Value>> =
                            group.rows.iter().map(|&index| &rows[index]).collect();
                        let json = serde_json::to_string(&members).expect("rows serialise");
                        sql::insert(&table, &group.keys, json, &returning)
                    })
                    .collect();
                let results = write(state, identity, &table, &queries, rows).await?;
                // Groups are consecutive runs, so their results in turn are in body order.
                let inserted: Vec<String> = results.into_iter().flatten().collect();
                let mut body = b"{\"data\":".to_vec();
                match (single, inserted.first()) {
                    (true, Some(row)) => body.extend_from_slice(row.as_bytes()),
                    _ => push_rows(&mut body, &inserted),
                }
                body.push(b'}');
                Ok(json_response(StatusCode::CREATED, body))
            }
        })
        .await
    }
    .await;
    respond(result)
}

/// Most runs of rows with the same columns one `POST` may have; each takes its own `INSERT`.
const MAX_COLUMN_SETS: usize = 100;

/// Consecutive body rows that set the same columns, inserted by one statement.
struct RowGroup<'t> {
    keys: Vec<&'t Column>,
    /// Indexes of the rows in the body, in body order.
    rows: Vec<usize>,
}

/// Extracts the row objects of a `POST` body, and whether it was a single object.
fn body_rows(body: Value) -> Result<(Vec<Map<String, Value>>, bool), RestError> {
    match body {
        Value::Object(row) => Ok((vec![row], true)),
        Value::Array(items) => {
            let mut rows = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                match item {
                    Value::Object(row) => rows.push(row),
                    other => {
                        return Err(RestError::bad_request(
                            "invalid_body",
                            format!(
                                "item {index} of the body is {}, not an object of column values",
                                json_kind(&other)
                            ),
                        ))
                    }
                }
            }
            Ok((rows, false))
        }
        other => Err(RestError::bad_request(
            "invalid_body",
            format!(
                "the body is {}; send an object of column values or an array of them",
                json_kind(&other)
            ),
        )),
    }
}

/// Splits rows into runs of consecutive rows that set the same columns. Each run takes one
/// statement, so rows are inserted in body order and get sequence values in that order.
fn group_rows<'t>(
    table: &'t Table,
    rows: &[Map<String, Value>],
) -> Result<Vec<RowGroup<'t>>, RestError> {
    let mut groups: Vec<RowGroup<'t>> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let keys = row_keys(table, row)?;
        if let Some(last) = groups.last_mut().filter(|last| last.keys == keys) {
            last.rows.push(index);
            continue;
        }
        if groups.len() == MAX_COLUMN_SETS {
            return Err(RestError::bad_request(
                "invalid_body",
                format!(
                    "the rows change their set of columns more than {MAX_COLUMN_SETS} times; \
                     give every row the same keys (null, or the default value, for the \
                     missing ones) or split the request"
                ),
            ));
        }
        groups.push(RowGroup {
            keys,
            rows: vec![index],
        });
    }
    Ok(groups)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs write statements in one transaction and returns the rows each statement returns.
/// `rows` are the row objects of the body, to find the field at fault after a data error.
async fn write(
    state: &RestState,
    identity: &Identity,
    table: &Table,
    queries: &[sql::Query],
    rows: &[Map<String, Value>],
) -> Result<Vec<Vec<String>>, RestError> {
    let mut connection = Checkout::new(&state.pool).await?;
    let result = async {
        let tx = begin(connection.object(), identity, false, &state.config).await?;
        let db = |err: tokio_postgres::Error| RestError::from_db(&err, identity.anonymous);
        let mut out = Vec::with_capacity(queries.len());
        for query in queries {
            let statement = tx.prepare_cached(&query.sql).await.map_err(db)?;
            let returned = tx
                .query(&statement, &query.param_refs())
                .await
                .map_err(db)?;
            out.push(returned.iter().map(|row| row.get::<_, String>(0)).collect());
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }
    .await;
    let result = match result {
        Err(err) => {
            let key_probes: Vec<sql::Probe> = queries
                .iter()
                .flat_map(|q| q.probes.iter().cloned())
                .collect();
            let err = explain_read(connection.object(), &key_probes, err).await;
            Err(explain_write(connection.object(), table, rows, err).await)
        }
        ok => ok,
    };
    connection.release();
    result
}

/// `PATCH /api/{table}/{id}`: sets the columns in the body object; 200 with the new row.
pub(super) async fn update(
    State(state): State<RestState>,
    Path((name, _)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let identity = authenticate(&state, &headers)?;
        let (body, _permit) = json_body(&state, body).await?;
        let row = match body {
            Value::Object(row) if !row.is_empty() => row,
            Value::Object(_) => {
                return Err(RestError::bad_request(
                    "invalid_body",
                    "the body sets no column; send an object like {\"status\": \"paid\"}",
                ))
            }
            other => {
                return Err(RestError::bad_request(
                    "invalid_body",
                    format!(
                        "the body is {}; send an object of the column values to set",
                        json_kind(&other)
                    ),
                ))
            }
        };
        let rows = std::slice::from_ref(&row);
        with_table(&state, &name, |table| {
            let (state, identity, uri) = (&state, &identity, &uri);
            let query = query.as_deref();
            async move {
                let select = row_select(&table, query)?;
                let returning = selected(&table, select.as_deref())?;
                let keys = row_keys(&table, &rows[0])?;
                let key_values = key_values(&table, uri)?;
                let json = serde_json::to_string(&rows[0]).expect("row serialises");
                let query = sql::update(&table, &keys, json, key_values, &returning);
                let updated = write(state, identity, &table, &[query], rows).await?;
                let Some(row) = updated.first().and_then(|rows| rows.first()) else {
                    return Err(row_not_found(&table, uri));
                };
                let body = format!("{{\"data\":{row}}}").into_bytes();
                Ok(json_response(StatusCode::OK, body))
            }
        })
        .await
    }
    .await;
    respond(result)
}

/// `DELETE /api/{table}/{id}`: 204, or 404 when no visible row has the id.
pub(super) async fn remove(
    State(state): State<RestState>,
    Path((name, _)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let identity = authenticate(&state, &headers)?;
        if query.as_deref().is_some_and(|q| !q.is_empty()) {
            return Err(RestError::bad_request(
                "invalid_parameter",
                "DELETE takes no query parameters",
            ));
        }
        with_table(&state, &name, |table| {
            let (state, identity, uri) = (&state, &identity, &uri);
            async move {
                let query = sql::delete(&table, key_values(&table, uri)?);
                let mut connection = Checkout::new(&state.pool).await?;
                let result = async {
                    let tx = begin(connection.object(), identity, false, &state.config).await?;
                    let db =
                        |err: tokio_postgres::Error| RestError::from_db(&err, identity.anonymous);
                    let statement = tx.prepare_cached(&query.sql).await.map_err(db)?;
                    let row = tx
                        .query_one(&statement, &query.param_refs())
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(row.get::<_, i64>(0))
                }
                .await;
                let result = match result {
                    Err(err) => Err(explain_read(connection.object(), &query.probes, err).await),
                    ok => ok,
                };
                connection.release();
                let deleted = result?;
                if deleted == 0 {
                    return Err(row_not_found(&table, uri));
                }
                Ok(StatusCode::NO_CONTENT.into_response())
            }
        })
        .await
    }
    .await;
    respond(result)
}

/// Any other path under `/api`.
pub(super) async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    respond(Err(RestError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {}; use /api/{{table}} or /api/{{table}}/{{id}}",
            uri.path()
        ),
    )))
}

/// A method the route does not serve.
pub(super) async fn method_not_allowed(
    method: axum::http::Method,
    OriginalUri(uri): OriginalUri,
) -> Response {
    respond(Err(RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not served on {}: /api/{{table}} takes GET and POST, and \
             /api/{{table}}/{{id}} takes GET, PATCH and DELETE",
            uri.path()
        ),
    )))
}

/// Turns a handler's result into the response, logging each rejected request at DEBUG.
fn respond(result: Result<Response, RestError>) -> Response {
    result.unwrap_or_else(|err| {
        tracing::debug!(
            status = err.status.as_u16(),
            code = err.code,
            message = %err.message,
            "REST request rejected"
        );
        err.into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        wants_ndjson(&headers)
    }

    #[test]
    fn accept_header_picks_ndjson_by_quality() {
        assert!(accept("application/x-ndjson"));
        assert!(accept("APPLICATION/X-NDJSON"));
        assert!(accept("application/x-ndjson, */*"));
        assert!(accept("application/json;q=0.5, application/x-ndjson"));
        assert!(!accept("application/json, application/x-ndjson"));
        assert!(!accept("application/x-ndjson;q=0"));
        assert!(!accept("application/x-ndjson;q=0.1, application/json"));
        assert!(!accept("*/*"));
    }
}
