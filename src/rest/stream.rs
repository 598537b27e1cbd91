//! NDJSON responses: one JSON row per line, read from a cursor in batches and written with
//! chunked transfer encoding as the rows arrive.
//!
//! Memory stays flat whatever the row count: a few chunks wait between the database and the
//! socket, and the database is read only as fast as the client takes the lines. The response
//! status is decided when the first row (or the end of the result) arrives, so an error before
//! any row is an ordinary JSON error response. An error after the first row ends the body with
//! a last line `{"error": {"code": ..., "message": ...}}`; a body whose last line is a row is
//! complete. A client that goes away cancels the query, and its connection is closed rather
//! than returned to the pool.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::error::RestError;
use super::handlers::NDJSON;
use super::probe::explain_read;
use super::session::{begin, connect};
use super::sql::Query;
use super::RestState;
use crate::auth::Identity;
use crate::metrics as names;

/// Bytes gathered before a chunk is handed to the socket.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for the socket; with `CHUNK_BYTES` this bounds a stream's buffer.
const CHUNKS_QUEUED: usize = 4;

/// Starts the query and answers once its first row, its end or its error is known.
pub(super) async fn respond(
    state: RestState,
    identity: Identity,
    query: Query,
) -> Result<Response, RestError> {
    let (first_tx, first_rx) = oneshot::channel();
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<Bytes>(CHUNKS_QUEUED);
    tokio::spawn(run(state, identity, query, first_tx, chunks_tx));
    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err),
        Err(_) => {
            return Err(RestError::internal(
                "NDJSON stream task ended before answering",
                &std::io::Error::other("stream task ended"),
            ))
        }
    }
    let body = futures_util::stream::poll_fn(move |cx| {
        chunks_rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}

/// Why streaming stopped early.
enum Stop {
    /// A database error; the request's first-row channel or an error line reports it.
    Failed(RestError),
    /// The client went away.
    Gone,
}

async fn run(
    state: RestState,
    identity: Identity,
    query: Query,
    first: oneshot::Sender<Result<(), RestError>>,
    out: mpsc::Sender<Bytes>,
) {
    let mut object = match connect(&state.pool).await {
        Ok(object) => object,
        Err(err) => {
            let _ = first.send(Err(err));
            return;
        }
    };
    let cancel = object.cancel_token();
    let mut first = Some(first);
    let watcher = out.clone();
    let shutdown = state.shutdown.clone();
    let outcome = tokio::select! {
        outcome = pump(&state, &mut object, &identity, &query, &mut first, &out) => outcome,
        _ = watcher.closed() => Err(Stop::Gone),
        _ = shutdown.cancelled() => Err(Stop::Failed(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down; the export is incomplete, run it again",
        ))),
    };
    let err = match outcome {
        Ok(()) => return,
        Err(Stop::Gone) => {
            tracing::debug!("NDJSON client went away; cancelling its query");
            abandon(object, cancel);
            return;
        }
        Err(Stop::Failed(err)) => err,
    };
    if err.code == "shutting_down" {
        abandon(object, cancel);
    } else {
        let err = explain_read(&object, &query.probes, err).await;
        drop(object);
        return report(err, first, &out).await;
    }
    report(err, first, &out).await;
}

/// Sends the error as the response when no row was sent yet, else as the last line.
async fn report(
    err: RestError,
    first: Option<oneshot::Sender<Result<(), RestError>>>,
    out: &mpsc::Sender<Bytes>,
) {
    match first {
        Some(first) => {
            let _ = first.send(Err(err));
        }
        None => {
            let mut line = serde_json::json!({ "error": err.body() }).to_string();
            line.push('\n');
            let _ = out.send(Bytes::from(line)).await;
        }
    }
}

/// Takes the connection out of the pool, cancels whatever it runs and closes it, so a query
/// abandoned mid-stream neither keeps running nor reaches the next request.
fn abandon(object: deadpool_postgres::Object, cancel: tokio_postgres::CancelToken) {
    let client = deadpool_postgres::Object::take(object);
    tokio::spawn(async move {
        if let Err(err) = cancel.cancel_query(tokio_postgres::NoTls).await {
            tracing::debug!(error = %err, "cancel request failed; closing the connection");
        }
        drop(client);
    });
}

async fn pump(
    state: &RestState,
    object: &mut deadpool_postgres::Object,
    identity: &Identity,
    query: &Query,
    first: &mut Option<oneshot::Sender<Result<(), RestError>>>,
    out: &mpsc::Sender<Bytes>,
) -> Result<(), Stop> {
    let db =
        |err: tokio_postgres::Error| Stop::Failed(RestError::from_db(&err, identity.anonymous));
    let tx = begin(object, identity, true, &state.config)
        .await
        .map_err(Stop::Failed)?;
    let statement = tx.prepare_cached(&query.sql).await.map_err(db)?;
    let portal = tx.bind(&statement, &query.param_refs()).await.map_err(db)?;
    let batch = state.config.stream_batch_rows;
    let mut buffer = BytesMut::with_capacity(CHUNK_BYTES * 2);
    let mut total: u64 = 0;
    loop {
        let rows = tx.query_portal_raw(&portal, batch).await.map_err(db)?;
        pin_mut!(rows);
        let mut in_batch = 0;
        while let Some(row) = rows.try_next().await.map_err(db)? {
            in_batch += 1;
            if let Some(first) = first.take() {
                first.send(Ok(())).map_err(|_| Stop::Gone)?;
            }
            let text: &str = row.try_get(0).map_err(db)?;
            buffer.extend_from_slice(text.as_bytes());
            buffer.extend_from_slice(b"\n");
            if buffer.len() >= CHUNK_BYTES {
                out.send(buffer.split().freeze())
                    .await
                    .map_err(|_| Stop::Gone)?;
            }
        }
        total += in_batch as u64;
        if in_batch < batch {
            break;
        }
    }
    tx.commit().await.map_err(db)?;
    if let Some(first) = first.take() {
        first.send(Ok(())).map_err(|_| Stop::Gone)?;
    }
    if !buffer.is_empty() {
        out.send(buffer.freeze()).await.map_err(|_| Stop::Gone)?;
    }
    metrics::counter!(names::REST_STREAMED_ROWS).increment(total);
    Ok(())
}
