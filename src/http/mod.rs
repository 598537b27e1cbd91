//! The HTTP server: WebSocket endpoint, health and metrics.

pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::health::{Health, StreamState};
use crate::realtime::Hub;
use crate::rest::{self, RestState};
use crate::webhooks::admin::{self, AdminState};

/// Limits on WebSocket clients.
#[derive(Debug, Clone)]
pub struct WebSocketLimits {
    /// Largest client message that is parsed; larger ones get a `message_too_large` error and
    /// the connection stays open.
    pub max_message_bytes: usize,
    /// Largest frame read at all; a larger one closes the connection with code 1009.
    pub max_frame_bytes: usize,
    /// Bytes of frames queued for one client before it counts as lagged and is closed.
    pub client_queue_bytes: usize,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 16 * 1024 * 1024,
            client_queue_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub catalog: Arc<Catalog>,
    pub health: Health,
    pub publication: String,
    pub limits: WebSocketLimits,
    pub metrics: Option<PrometheusHandle>,
    pub shutdown: CancellationToken,
    pub admin: AdminState,
    pub rest: RestState,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state.clone())
        .nest("/admin", admin::router(state.admin))
        .nest(
            "/api",
            rest::router(state.rest).layer(axum::middleware::from_fn(record_rest_request)),
        )
        .fallback(not_found)
}

/// Any path no route serves.
async fn not_found(uri: axum::http::Uri) -> Response {
    let body = serde_json::json!({
        "code": "not_found",
        "message": format!(
            "no route for {}; the gateway serves /api, /ws, /healthz, /metrics and /admin",
            uri.path()
        ),
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Counts REST requests by method and status, and times them.
async fn record_rest_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::REST_REQUESTS, "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::REST_REQUEST_SECONDS, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets open requests finish.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// 200 while the replication stream is live, 503 with the reason otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let current = state.health.get();
    let status = match current {
        StreamState::Streaming { .. } => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(current)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}
