//! The admin API over the webhook outbox: list deliveries, retry dead letters.
//!
//! Every route needs `Authorization: Bearer <admin token>`; without a configured token the API
//! is off and returns 404.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::db::SharedClient;
use crate::report::error_chain;

/// State shared by the admin handlers.
#[derive(Clone)]
pub struct AdminState {
    pub db: Arc<SharedClient>,
    pub token: Option<Arc<str>>,
    /// Notified after rows are queued again, so the dispatcher picks them up at once.
    pub wake: Arc<Notify>,
}

/// Admin API errors, each with its status and a JSON body `{code, message}`.
#[derive(Debug)]
pub enum AdminError {
    Disabled,
    Unauthorized,
    BadRequest(String),
    NotFound(i64),
    Conflict(String),
    Database(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            AdminError::Disabled => (
                StatusCode::NOT_FOUND,
                "admin_disabled",
                "the admin API is off; set WALGATE_ADMIN_TOKEN to enable it".to_string(),
            ),
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as `Authorization: Bearer <token>`".to_string(),
            ),
            AdminError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
            AdminError::NotFound(id) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("delivery {id} does not exist"),
            ),
            AdminError::Conflict(message) => (StatusCode::CONFLICT, "conflict", message),
            AdminError::Database(detail) => {
                tracing::error!(error = %detail, "admin API database query failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database query failed; try again".to_string(),
                )
            }
        };
        let mut response =
            (status, Json(json!({"code": code, "message": message}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        response
    }
}

fn database(err: tokio_postgres::Error) -> AdminError {
    AdminError::Database(error_chain(&err))
}

/// Builds the admin routes, to be nested under `/admin`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/deliveries", get(list))
        .route("/deliveries/{id}", get(show))
        .route("/deliveries/{id}/retry", post(retry_one))
        .route("/deliveries/retry", post(retry_dead))
        .with_state(state)
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(expected) = &state.token else {
        return Err(AdminError::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Query parameters of `GET /admin/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    trigger: Option<String>,
    limit: Option<i64>,
    /// Return rows with an id above this one (for paging).
    after_id: Option<i64>,
}

const STATUSES: &[&str] = &["pending", "delivered", "dead"];

fn check_status(status: &str) -> Result<(), AdminError> {
    if STATUSES.contains(&status) {
        return Ok(());
    }
    Err(AdminError::BadRequest(format!(
        "unknown status {status:?}; use pending, delivered or dead"
    )))
}

const SUMMARY_COLUMNS: &str = "id, trigger_name, event_id, status, attempts,
    to_char(next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
    last_status, last_error,
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn summary(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, i64>(0),
        "trigger": row.get::<_, String>(1),
        "event_id": row.get::<_, String>(2),
        "status": row.get::<_, String>(3),
        "attempts": row.get::<_, i32>(4),
        "next_attempt_at": row.get::<_, Option<String>>(5),
        "last_status": row.get::<_, Option<i32>>(6),
        "last_error": row.get::<_, Option<String>>(7),
        "created_at": row.get::<_, Option<String>>(8),
        "finished_at": row.get::<_, Option<String>>(9),
    })
}

async fn list(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&state, &headers)?;
    let Query(query) = query.map_err(|err| AdminError::BadRequest(err.body_text()))?;
    if let Some(status) = &query.status {
        check_status(status)?;
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::BadRequest(format!(
            "limit {limit} is out of range; use 1 to 1000"
        )));
    }
    let client = state.db.get().await.map_err(database)?;
    let rows = client
        .query(
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM walgate.webhook_deliveries
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR trigger_name = $2)
                   AND id > $3
                 ORDER BY id LIMIT $4"
            ),
            &[
                &query.status,
                &query.trigger,
                &query.after_id.unwrap_or(0),
                &limit,
            ],
        )
        .await
        .map_err(database)?;
    let deliveries: Vec<Value> = rows.iter().map(summary).collect();
    let next_after_id = (deliveries.len() as i64 == limit)
        .then(|| deliveries.last().map(|d| d["id"].clone()))
        .flatten();
    Ok(Json(
        json!({"deliveries": deliveries, "next_after_id": next_after_id}),
    ))
}

async fn show(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    authorize(&state, &headers)?;
    let client = state.db.get().await.map_err(database)?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, body FROM walgate.webhook_deliveries WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(database)?
        .ok_or(AdminError::NotFound(id))?;
    let mut delivery = summary(&row);
    let body: String = row.get(10);
    delivery["body"] = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok(Json(delivery))
}

async fn retry_one(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    authorize(&state, &headers)?;
    let client = state.db.get().await.map_err(database)?;
    let status: Option<String> = client
        .query_opt(
            "SELECT status FROM walgate.webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(database)?
        .map(|row| row.get(0));
    match status.as_deref() {
        None => return Err(AdminError::NotFound(id)),
        Some("dead") => {}
        Some(other) => {
            return Err(AdminError::Conflict(format!(
                "delivery {id} is {other}; only dead deliveries can be retried"
            )))
        }
    }
    requeue(&client, Some(id), None).await?;
    state.wake.notify_one();
    Ok(Json(json!({"id": id, "status": "pending"})))
}

/// Query parameters of `POST /admin/deliveries/retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryQuery {
    trigger: Option<String>,
}

async fn retry_dead(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<RetryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&state, &headers)?;
    let Query(query) = query.map_err(|err| AdminError::BadRequest(err.body_text()))?;
    let client = state.db.get().await.map_err(database)?;
    let retried = requeue(&client, None, query.trigger.as_deref()).await?;
    state.wake.notify_one();
    Ok(Json(json!({"retried": retried})))
}

/// Puts dead deliveries back in the queue with a fresh retry budget.
async fn requeue(
    client: &tokio_postgres::Client,
    id: Option<i64>,
    trigger: Option<&str>,
) -> Result<u64, AdminError> {
    client
        .execute(
            "UPDATE walgate.webhook_deliveries
             SET status = 'pending', attempts = 0, next_attempt_at = now(),
                 leased_until = NULL, finished_at = NULL
             WHERE status = 'dead'
               AND ($1::bigint IS NULL OR id = $1)
               AND ($2::text IS NULL OR trigger_name = $2)",
            &[&id, &trigger],
        )
        .await
        .map_err(database)
}
