//! NDJSON responses: one JSON row per line, read from a cursor in batches and written with
//! chunked transfer encoding as the rows arrive.
//!
//! Memory stays flat whatever the row count: a few chunks wait between the database and the
//! socket, and the database is read only as fast as the client takes the lines.
//!
//! The response status is decided when the first chunk of rows is ready (64 KiB, the end of
//! the first batch, or the end of the result), so an error before that is an ordinary JSON
//! error response. An error after that ends the body, after the rows read so far, with a last
//! line `{"error": {"code": ..., "message": ...}}`. A body whose last line is a row is complete.
//!
//! A client that goes away cancels the query, and its connection is closed rather than
//! returned to the pool.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::error::RestError;
use super::handlers::NDJSON;
use super::probe::explain_read;
use super::session::{begin, Checkout};
use super::sql::Query;
use super::RestState;
use crate::auth::Identity;
use crate::metrics as names;

/// Bytes gathered before a chunk is handed to the socket.
const CHUNK_BYTES: usize = 64 * 1024;
/// Maximum wait for a client to take a chunk. A client that reads nothing for this long is
/// dropped, so it cannot keep a pooled connection and an open transaction forever.
const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Chunks waiting for the socket; with `CHUNK_BYTES` this bounds a stream's buffer.
const CHUNKS_QUEUED: usize = 4;

/// Starts the query and returns the response once its first chunk of rows, its end or its
/// error is known.
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
                "NDJSON stream task ended before the response was ready",
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

/// Reason a stream stopped early.
enum Stop {
    /// A database error, reported as the response or as the last line.
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
    let mut connection = match Checkout::new(&state.pool).await {
        Ok(connection) => connection,
        Err(err) => {
            let _ = first.send(Err(err));
            return;
        }
    };
    let mut sink = Sink {
        first: Some(first),
        out: out.clone(),
        buffer: BytesMut::with_capacity(CHUNK_BYTES * 2),
    };
    let shutdown = state.shutdown.clone();
    let outcome = tokio::select! {
        outcome = pump(&state, connection.object(), &identity, &query, &mut sink) => outcome,
        _ = out.closed() => Err(Stop::Gone),
        _ = shutdown.cancelled() => Err(Stop::Failed(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down, so the export is incomplete; run it again",
        ))),
    };
    let err = match outcome {
        Ok(()) => {
            connection.release();
            return;
        }
        Err(Stop::Gone) => {
            tracing::debug!("NDJSON client went away; cancelling its query");
            connection.abandon();
            return;
        }
        Err(Stop::Failed(err)) if err.code == "shutting_down" => {
            connection.abandon();
            err
        }
        Err(Stop::Failed(err)) => {
            let err = explain_read(connection.object(), &query.probes, err).await;
            connection.release();
            err
        }
    };
    tracing::debug!(code = err.code, message = %err.message, "NDJSON stream failed");
    sink.fail(err).await;
}

/// Destination of rows: the first-chunk signal, the chunk channel, and the rows not yet
/// sent.
struct Sink {
    /// Sender of the response status, taken when the first chunk is sent or the stream fails
    /// before that.
    first: Option<oneshot::Sender<Result<(), RestError>>>,
    out: mpsc::Sender<Bytes>,
    buffer: BytesMut,
}

impl Sink {
    /// Appends one row line, and sends the buffer once it reaches a chunk.
    async fn push(&mut self, row: &str) -> Result<(), Stop> {
        self.buffer.extend_from_slice(row.as_bytes());
        self.buffer.extend_from_slice(b"\n");
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the buffered rows, after sending status 200 if no status was sent yet.
    async fn flush(&mut self) -> Result<(), Stop> {
        if let Some(first) = self.first.take() {
            first.send(Ok(())).map_err(|_| Stop::Gone)?;
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        match tokio::time::timeout(STALL_LIMIT, self.out.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => {
                tracing::info!(
                    stalled_secs = STALL_LIMIT.as_secs(),
                    "NDJSON client stopped reading; ending its stream"
                );
                Err(Stop::Gone)
            }
        }
    }

    /// Reports an error: as the response when nothing was sent yet, so the status is the
    /// error's, else after the buffered rows as the last line.
    async fn fail(mut self, err: RestError) {
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(err));
            return;
        }
        let line = serde_json::json!({ "error": err.body() }).to_string();
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.extend_from_slice(b"\n");
        let _ = self.flush().await;
    }
}

async fn pump(
    state: &RestState,
    object: &mut deadpool_postgres::Object,
    identity: &Identity,
    query: &Query,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let db =
        |err: tokio_postgres::Error| Stop::Failed(RestError::from_db(&err, identity.anonymous));
    let tx = begin(object, identity, true, &state.config)
        .await
        .map_err(Stop::Failed)?;
    let statement = tx.prepare_cached(&query.sql).await.map_err(db)?;
    let portal = tx.bind(&statement, &query.param_refs()).await.map_err(db)?;
    let batch = state.config.stream_batch_rows;
    let mut total: u64 = 0;
    loop {
        let rows = tx.query_portal_raw(&portal, batch).await.map_err(db)?;
        pin_mut!(rows);
        let mut in_batch = 0;
        while let Some(row) = rows.try_next().await.map_err(db)? {
            in_batch += 1;
            sink.push(row.try_get(0).map_err(db)?).await?;
        }
        total += in_batch as u64;
        if in_batch < batch {
            break;
        }
        // Rows of a slow query reach the client at least once per batch.
        sink.flush().await?;
    }
    tx.commit().await.map_err(db)?;
    sink.flush().await?;
    metrics::counter!(names::REST_STREAMED_ROWS).increment(total);
    Ok(())
}
