//! Metric names, all in one place. Each is a Prometheus name with the `walgate_` prefix and a
//! unit suffix; labels are low-cardinality (no client, table or URL labels).

/// Change events decoded from the WAL.
pub const REPLICATION_EVENTS: &str = "walgate_replication_events_total";
/// Transactions decoded from the WAL.
pub const REPLICATION_TRANSACTIONS: &str = "walgate_replication_transactions_total";
/// Bytes of `pgoutput` payload received.
pub const REPLICATION_RECEIVED_BYTES: &str = "walgate_replication_received_bytes_total";
/// Times the replication stream was lost and reconnected.
pub const REPLICATION_RECONNECTS: &str = "walgate_replication_reconnects_total";
/// Bytes of WAL between the server's last reported position and the confirmed position.
pub const REPLICATION_LAG_BYTES: &str = "walgate_replication_lag_bytes";
/// The confirmed (flushed) position, as a number.
pub const REPLICATION_CONFIRMED_LSN: &str = "walgate_replication_confirmed_lsn";
/// Column values with no `to_jsonb` form, sent as their text instead.
pub const DECODE_UNCONVERTIBLE_VALUES: &str = "walgate_decode_unconvertible_values_total";
/// Connected WebSocket clients.
pub const WEBSOCKET_CLIENTS: &str = "walgate_websocket_clients";
/// WebSocket clients closed because their outgoing queue was full.
pub const WEBSOCKET_LAGGED: &str = "walgate_websocket_lagged_total";
/// Notifications queued to WebSocket clients.
pub const WEBSOCKET_NOTIFICATIONS: &str = "walgate_websocket_notifications_total";
/// Error messages sent to WebSocket clients, by `code`.
pub const WEBSOCKET_ERRORS: &str = "walgate_websocket_errors_total";

/// Webhook deliveries that got a 2xx response.
pub const WEBHOOK_DELIVERED: &str = "walgate_webhook_delivered_total";
/// Webhook attempts that failed and were scheduled again.
pub const WEBHOOK_RETRIES: &str = "walgate_webhook_retries_total";
/// Webhook deliveries given up and kept as dead letters.
pub const WEBHOOK_DEAD: &str = "walgate_webhook_dead_total";
/// Duration of webhook requests.
pub const WEBHOOK_REQUEST_SECONDS: &str = "walgate_webhook_request_seconds";

/// REST requests completed, by `method` and `status`.
pub const REST_REQUESTS: &str = "walgate_rest_requests_total";
/// Time to respond to a REST request (to the first byte for NDJSON streams), by `method`.
pub const REST_REQUEST_SECONDS: &str = "walgate_rest_request_seconds";
/// Rows sent in NDJSON streams that completed.
pub const REST_STREAMED_ROWS: &str = "walgate_rest_streamed_rows_total";

/// Describes every metric once, so the exporter prints help text, and registers each unlabelled
/// one at zero, so dashboards and alerts see every series from startup on.
pub fn describe() {
    describe_all();
    for counter in [
        REPLICATION_EVENTS,
        REPLICATION_TRANSACTIONS,
        REPLICATION_RECEIVED_BYTES,
        REPLICATION_RECONNECTS,
        DECODE_UNCONVERTIBLE_VALUES,
        WEBSOCKET_LAGGED,
        WEBSOCKET_NOTIFICATIONS,
        WEBHOOK_DELIVERED,
        WEBHOOK_RETRIES,
        WEBHOOK_DEAD,
        REST_STREAMED_ROWS,
    ] {
        metrics::counter!(counter).absolute(0);
    }
    for gauge in [
        REPLICATION_LAG_BYTES,
        REPLICATION_CONFIRMED_LSN,
        WEBSOCKET_CLIENTS,
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}

fn describe_all() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(REPLICATION_EVENTS, "Change events decoded from the WAL");
    describe_counter!(
        REPLICATION_TRANSACTIONS,
        "Transactions decoded from the WAL"
    );
    describe_counter!(
        REPLICATION_RECEIVED_BYTES,
        "Bytes of pgoutput payload received"
    );
    describe_counter!(REPLICATION_RECONNECTS, "Replication stream reconnects");
    describe_gauge!(
        REPLICATION_LAG_BYTES,
        "WAL bytes between the server's position and the confirmed position"
    );
    describe_gauge!(REPLICATION_CONFIRMED_LSN, "Confirmed slot position");
    describe_counter!(
        DECODE_UNCONVERTIBLE_VALUES,
        "Column values with no to_jsonb form, sent as text"
    );
    describe_gauge!(WEBSOCKET_CLIENTS, "Connected WebSocket clients");
    describe_counter!(WEBSOCKET_LAGGED, "WebSocket clients closed for lagging");
    describe_counter!(
        WEBSOCKET_NOTIFICATIONS,
        "Notifications queued to WebSocket clients"
    );
    describe_counter!(WEBSOCKET_ERRORS, "Error messages sent to WebSocket clients");
    describe_counter!(
        WEBHOOK_DELIVERED,
        "Webhook deliveries that got a 2xx response"
    );
    describe_counter!(WEBHOOK_RETRIES, "Webhook attempts scheduled again");
    describe_counter!(WEBHOOK_DEAD, "Webhook deliveries kept as dead letters");
    metrics::describe_histogram!(WEBHOOK_REQUEST_SECONDS, "Duration of webhook requests");
    describe_counter!(REST_REQUESTS, "REST requests answered");
    metrics::describe_histogram!(
        REST_REQUEST_SECONDS,
        "Time to answer a REST request, to the first byte for NDJSON"
    );
    describe_counter!(REST_STREAMED_ROWS, "Rows sent in completed NDJSON streams");
}
