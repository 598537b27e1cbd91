//! `GET /ws`: one reader and one writer task per WebSocket connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::AppState;
use crate::auth::{bearer_token, Identity};
use crate::metrics as names;
use crate::realtime::channel::Channel;
use crate::realtime::hub::table_key;
use crate::realtime::protocol::{
    parse_client_message, ClientMessage, ErrorCode, ProtocolError, ServerMessage,
};
use crate::realtime::{ClientHandle, ClientQueue};
use crate::rest::error::RestError;
use tokio_tungstenite::tungstenite;

/// Close code 1008 (policy violation), sent to a client closed for lagging.
const CLOSE_POLICY: u16 = 1008;
/// Close code 1001 (going away), sent when the server shuts down.
const CLOSE_GOING_AWAY: u16 = 1001;
/// How long a lagged client has to take a frame already being sent, and then its `lagged`
/// error, before the connection is dropped without them.
const LAG_GRACE: Duration = Duration::from_secs(10);
/// Close code 1000 (normal closure), the reply to a client's close frame.
const CLOSE_NORMAL: u16 = 1000;
/// Close code 1009 (message too big), sent after a frame over `max_frame_bytes`.
const CLOSE_TOO_BIG: u16 = 1009;

/// Upgrades the connection. Frames up to `max_frame_bytes` are read and replied to; larger ones
/// make the WebSocket library close the connection with code 1009.
///
/// When authentication is configured, the upgrade needs a valid token or an anonymous role,
/// and returns 401 otherwise. The token comes from the `Authorization` header, or from the
/// `access_token` query parameter when `auth.websocket_query_token` is on. Each table
/// subscription then needs SELECT on the table for the token's role.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let identity = match authenticate(&state, &headers, query.as_deref()) {
        Ok(identity) => identity,
        Err(err) => return err.into_response(),
    };
    let limits = state.limits.clone();
    ws.max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| serve_client(socket, state, identity))
}

/// Authenticates a WebSocket client; returns None when no authentication is configured.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Identity>, RestError> {
    let auth = state.rest.authenticator();
    if !auth.is_configured() {
        return Ok(None);
    }
    let mut token = bearer_token(headers)?.map(str::to_string);
    let query_token = query.and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "access_token")
            .map(|(_, value)| value.into_owned())
    });
    if token.is_none() && query_token.is_some() {
        if !auth.websocket_query_token() {
            return Err(RestError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "query_token_disabled",
                "the access_token query parameter is turned off on this gateway; send the \
                 token in the Authorization header, or set auth.websocket_query_token: true",
            ));
        }
        token = query_token;
    }
    Ok(Some(auth.authenticate(token.as_deref())?))
}

async fn serve_client(socket: WebSocket, state: AppState, identity: Option<Identity>) {
    let (client, queue) = ClientHandle::new(state.limits.client_queue_bytes);
    let span = tracing::info_span!("websocket", client_id = client.id);
    async move {
        tracing::debug!("client connected");
        metrics::gauge!(names::WEBSOCKET_CLIENTS).increment(1.0);
        let (sink, stream) = socket.split();
        let closed = CancellationToken::new();
        let reader_done = CancellationToken::new();
        let close_code = Arc::new(AtomicU16::new(CLOSE_NORMAL));
        let writer = tokio::spawn(
            write_frames(
                sink,
                queue,
                WriterSignals {
                    lagged: client.lagged().clone(),
                    shutdown: state.shutdown.clone(),
                    reader_done: reader_done.clone(),
                    close_code: close_code.clone(),
                },
                closed.clone(),
            )
            .in_current_span(),
        );
        let mut session = ClientSession {
            state: &state,
            client: &client,
            identity: identity.as_ref(),
            tables: HashMap::new(),
        };
        let expiry = identity.as_ref().and_then(token_expiry);
        let code = tokio::select! {
            code = session.read_frames(stream, &closed) => code,
            _ = wait_until(expiry) => {
                tracing::debug!("closing a client whose token expired");
                session.reply_error(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "the token expired; reconnect with a new token",
                ));
                // Lets the writer send the error before the close frame.
                tokio::time::sleep(Duration::from_millis(100)).await;
                CLOSE_POLICY
            }
        };
        close_code.store(code, Ordering::Release);
        reader_done.cancel();
        state.hub.remove_client(client.id);
        drop(session);
        drop(client);
        let _ = writer.await;
        metrics::gauge!(names::WEBSOCKET_CLIENTS).decrement(1.0);
        tracing::debug!("client disconnected");
    }
    .instrument(span)
    .await
}

/// When the client's token expires: its `exp` claim, as an instant of this process.
fn token_expiry(identity: &Identity) -> Option<tokio::time::Instant> {
    let claims: serde_json::Value = serde_json::from_str(&identity.claims_json).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let left = Duration::try_from_secs_f64((exp - now).max(0.0)).ok()?;
    Some(tokio::time::Instant::now() + left)
}

/// Completes at `deadline`, or never when there is none.
async fn wait_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Signals that stop a writer task, besides a failed socket.
struct WriterSignals {
    lagged: CancellationToken,
    shutdown: CancellationToken,
    /// Cancelled when the reader has stopped: the client closed, vanished or broke the
    /// protocol.
    reader_done: CancellationToken,
    /// The close code to send once the reader has stopped.
    close_code: Arc<AtomicU16>,
}

/// Sends queued frames until the client lags, the reader stops, the socket fails or the server
/// shuts down. Cancels `closed` on the way out so the reader stops too.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: ClientQueue,
    signals: WriterSignals,
    closed: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = signals.reader_done.cancelled() => {
                // Replies to the client's close frame, or closes with the reader's reason.
                let code = signals.close_code.load(Ordering::Acquire);
                let reason = if code == CLOSE_TOO_BIG { "message too big" } else { "" };
                let _ = sink.send(close_message(code, reason)).await;
                let _ = sink.close().await;
                break;
            }
            _ = signals.lagged.cancelled() => {
                tracing::info!("client cannot keep up with its queue, closing it");
                let error = ProtocolError::new(
                    ErrorCode::Lagged,
                    "this client fell behind and its queue is full; reconnect and subscribe again",
                );
                let farewell = async {
                    sink.send(Message::Text(error.to_text().into())).await?;
                    sink.send(close_message(CLOSE_POLICY, "lagged")).await
                };
                let _ = tokio::time::timeout(LAG_GRACE, farewell).await;
                break;
            }
            _ = signals.shutdown.cancelled() => {
                let _ = sink.send(close_message(CLOSE_GOING_AWAY, "server shutting down")).await;
                break;
            }
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                // A client that stops reading blocks the send once the socket buffers fill;
                // lagging or shutdown then drops the connection instead of waiting forever.
                let send = sink.send(Message::Text(Utf8Bytes::from(&*frame)));
                tokio::pin!(send);
                let sent = tokio::select! {
                    sent = &mut send => sent.is_ok(),
                    // A lagged client gets a grace period to take the frame, so that the
                    // `lagged` error can still reach it.
                    _ = signals.lagged.cancelled() => {
                        matches!(tokio::time::timeout(LAG_GRACE, &mut send).await, Ok(Ok(())))
                    }
                    _ = signals.shutdown.cancelled() => false,
                    _ = signals.reader_done.cancelled() => false,
                };
                queue.release(&frame);
                if !sent {
                    break;
                }
            }
        }
    }
    closed.cancel();
}

/// True for the error the WebSocket library returns for a frame over the size limit.
fn is_too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(tungstenite::Error::Capacity(_)) = cause.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// State of one connection on the reading side.
struct ClientSession<'a> {
    state: &'a AppState,
    client: &'a ClientHandle,
    /// Identity of the client, or None when authentication is not configured.
    identity: Option<&'a Identity>,
    /// Table subscriptions of this client: channel name to the hub's table key.
    tables: HashMap<String, String>,
}

impl ClientSession<'_> {
    /// Reads until the client closes or the connection fails; returns the close code to send.
    async fn read_frames(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        closed: &CancellationToken,
    ) -> u16 {
        loop {
            let message = tokio::select! {
                _ = closed.cancelled() => return CLOSE_NORMAL,
                message = stream.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => self.handle_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => self.reply_error(ProtocolError::new(
                    ErrorCode::InvalidMessage,
                    "binary frames are not accepted; send JSON text frames",
                )),
                Some(Ok(Message::Close(_))) | None => return CLOSE_NORMAL,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "reading from the client failed");
                    return if is_too_big(&err) {
                        CLOSE_TOO_BIG
                    } else {
                        CLOSE_NORMAL
                    };
                }
            }
        }
    }

    async fn handle_text(&mut self, text: &str) {
        let limit = self.state.limits.max_message_bytes;
        if text.len() > limit {
            return self.reply_error(ProtocolError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message is {} bytes; the limit is {limit} bytes",
                    text.len()
                ),
            ));
        }
        match parse_client_message(text) {
            Ok(message) => self.handle_message(message).await,
            Err(err) => self.reply_error(err),
        }
    }

    async fn handle_message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::Ping => self.reply(ServerMessage::Pong.to_text()),
            ClientMessage::Subscribe {
                channel,
                filter,
                since,
            } => {
                if let Err(err) = self
                    .subscribe(&channel, filter.is_some(), since.is_some())
                    .await
                {
                    self.reply_error(err.with_channel(&channel));
                }
            }
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(&channel),
            ClientMessage::NotSupported { kind } => self.reply_error(ProtocolError::new(
                ErrorCode::NotSupported,
                format!("{kind} is not served by this gateway version"),
            )),
        }
    }

    async fn subscribe(
        &mut self,
        name: &str,
        has_filter: bool,
        has_since: bool,
    ) -> Result<(), ProtocolError> {
        let invalid_channel = |err: crate::realtime::channel::ChannelError| {
            ProtocolError::new(ErrorCode::InvalidChannel, err.to_string())
        };
        let (schema, table) = match Channel::parse(name).map_err(invalid_channel)? {
            Channel::Table { schema, table } => (schema, table),
            Channel::Notify(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::NotSupported,
                    format!(
                        "channel {name:?} is not a table channel, and NOTIFY channels are not \
                         served by this gateway version; use qail_table_<table> or \
                         table:<schema>.<table>"
                    ),
                ))
            }
        };
        for (present, field) in [(has_filter, "filter"), (has_since, "since")] {
            if present {
                return Err(ProtocolError::new(
                    ErrorCode::NotSupported,
                    format!("the \"{field}\" option is not served by this gateway version; subscribe without it"),
                ));
            }
        }
        let info = self
            .state
            .catalog
            .table(&schema, &table)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "table look-up for a subscription failed");
                ProtocolError::new(
                    ErrorCode::Internal,
                    "looking up the table failed; try again",
                )
            })?;
        let Some(info) = info else {
            return Err(ProtocolError::new(
                ErrorCode::UnknownTable,
                format!(
                    "table \"{schema}\".\"{table}\" does not exist (names are case-sensitive; \
                     views and walgate's own tables have no change events)"
                ),
            ));
        };
        if !info.published {
            return Err(ProtocolError::new(
                ErrorCode::NotPublished,
                format!(
                    "table \"{schema}\".\"{table}\" is not in publication {:?}, so its changes \
                     never reach the gateway; add it with ALTER PUBLICATION ... ADD TABLE, or \
                     subscribe to its partitioned table if it is a partition",
                    self.state.publication
                ),
            ));
        }
        if let Some(identity) = self.identity {
            self.check_select(identity, &schema, &table, info.oid)
                .await?;
        }
        // Register before acknowledging, so every event after `subscribed` is delivered.
        let key = table_key(&schema, &table);
        self.state.hub.subscribe(&key, name, self.client);
        self.tables.insert(name.to_string(), key);
        self.reply(ServerMessage::Subscribed { channel: name }.to_text());
        Ok(())
    }

    /// Refuses the subscription unless the client's role may read the table. Row-level
    /// policies are not applied to events.
    async fn check_select(
        &self,
        identity: &Identity,
        schema: &str,
        table: &str,
        oid: u32,
    ) -> Result<(), ProtocolError> {
        let access = self
            .state
            .catalog
            .role_access(&identity.role, oid)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "privilege check for a subscription failed");
                ProtocolError::new(
                    ErrorCode::Internal,
                    "checking the table privilege failed; try again",
                )
            })?;
        let Some(access) = access else {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!(
                    "the role {:?} named by the token does not exist in the database",
                    identity.role
                ),
            ));
        };
        if access.privileged && !self.state.rest.config.allow_privileged_roles {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} is a superuser or has BYPASSRLS; issue tokens for an ordinary \
                     role, or set rest.allow_privileged_roles",
                    identity.role
                ),
            ));
        }
        if !access.select {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} has no SELECT privilege on \"{schema}\".\"{table}\"; grant it, or \
                     connect with a token for a role that has it",
                    identity.role
                ),
            ));
        }
        Ok(())
    }

    fn unsubscribe(&mut self, name: &str) {
        if let Err(err) = Channel::parse(name) {
            return self.reply_error(
                ProtocolError::new(ErrorCode::InvalidChannel, err.to_string()).with_channel(name),
            );
        }
        if let Some(key) = self.tables.remove(name) {
            self.state.hub.unsubscribe(&key, name, self.client.id);
        }
        // Unsubscribing from a channel the client does not hold is answered the same way, so
        // the call is idempotent.
        self.reply(ServerMessage::Unsubscribed { channel: name }.to_text());
    }

    fn reply(&self, frame: String) {
        self.client.send(frame.into());
    }

    fn reply_error(&self, err: ProtocolError) {
        metrics::counter!(names::WEBSOCKET_ERRORS, "code" => err.code.as_str()).increment(1);
        tracing::debug!(code = err.code.as_str(), message = %err.message, "rejected a client message");
        self.reply(err.to_text());
    }
}
