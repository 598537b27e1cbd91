//! A replication-protocol connection built on postgres-protocol.
//!
//! tokio-postgres 0.7 cannot open `replication=database` connections or run `START_REPLICATION`,
//! so this module speaks the protocol itself: [`ReplicationClient`] runs replication commands
//! and plain SQL through the simple query protocol, and [`ReplicationStream`] carries the
//! `CopyBoth` stream of a logical slot.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message, RowDescriptionBody};
use postgres_protocol::message::frontend;
use tokio_postgres::config::{ChannelBinding, SslMode};

use super::auth::start_session;
use super::error::{log_notice, server_error};
use super::protocol::{open_socket, targets, Backend, Framed, Target};
use super::protocol::{postgres_clock_micros, standby_status_update, unexpected};
use crate::lsn::Lsn;

pub use super::error::SourceError;
pub use super::protocol::ReplicationMessage;

/// A connection in replication mode (`replication=database`), ready for replication commands
/// and plain SQL.
///
/// Its requests are not cancellation safe: once a [`simple_query`](Self::simple_query) future
/// is dropped before it completes, later requests fail with [`SourceError::Protocol`] and the
/// client must be replaced by a new connection.
pub struct ReplicationClient {
    framed: Framed,
    /// True while a request is under way, and after one that was cancelled or broke the
    /// connection, whose unread responses would be mixed into the next request's.
    unusable: bool,
    backend_pid: Option<i32>,
    server_version: Option<String>,
}

/// The result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// Unique identifier of the cluster, from `pg_control`.
    pub systemid: u64,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// Database of the connection, or `None` on a physical replication connection.
    pub dbname: Option<String>,
}

impl ReplicationClient {
    /// Connects with `replication=database`.
    ///
    /// Uses the user, password, dbname, application_name, options and connect_timeout from
    /// `config`, and sends [`crate::decode::OUTPUT_SETTINGS`] as startup parameters. Hosts
    /// (`Host::Tcp`, `Host::Unix` or a `hostaddr`) are tried in order, moving on after a
    /// retryable failure (see [`SourceError::is_retryable`]), such as an unreachable host or a
    /// timeout, and stopping at any other error. `connect_timeout` limits each attempt,
    /// authentication included. TLS is not supported yet: `sslmode=require` fails for TCP hosts
    /// and `prefer` connects in plain text.
    pub async fn connect(config: &tokio_postgres::Config) -> Result<Self, SourceError> {
        let user = config.get_user().ok_or_else(|| {
            SourceError::Config("no user is set: put it in DATABASE_URL".to_string())
        })?;
        if config.get_channel_binding() == ChannelBinding::Require {
            return Err(SourceError::Config(
                "channel_binding=require needs TLS, which the replication connection does not \
                 support yet"
                    .to_string(),
            ));
        }
        let parameters = startup_parameters(config, user);
        let mut last_error = None;
        for target in targets(config)? {
            match connect_to(&target, config, &parameters, user).await {
                Ok(client) => return Ok(client),
                // Like an unreachable host, a host that is starting up or out of connection
                // slots may be replaced by the next one. Authentication failures stop the loop.
                Err(err) if err.is_retryable() => {
                    tracing::warn!(
                        target = %target,
                        error = %err,
                        "connecting to PostgreSQL host failed"
                    );
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| SourceError::Config("no host is set".to_string())))
    }

    /// Returns the process id of the walsender serving this connection.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// Returns the server's `server_version` parameter, such as `15.8`.
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// Runs `sql` through the simple query protocol and returns the rows of all its statements
    /// as text, in order. Replication commands such as `IDENTIFY_SYSTEM` and
    /// `CREATE_REPLICATION_SLOT` work here, as does plain SQL. A server error is returned after
    /// the server is ready again, so the client stays usable. Not cancellation safe.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleRow>, SourceError> {
        self.send_query(sql).await?;
        let outcome = read_query_results(&mut self.framed).await?;
        self.unusable = false;
        match outcome.error {
            Some(err) => Err(err),
            None => Ok(outcome.rows),
        }
    }

    /// Runs `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, SourceError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let [row] = rows.as_slice() else {
            return Err(SourceError::Protocol(format!(
                "IDENTIFY_SYSTEM returned {} rows, expected 1",
                rows.len()
            )));
        };
        Ok(SystemIdentity {
            systemid: parse_column(row, "systemid")?,
            timeline: parse_column(row, "timeline")?,
            xlogpos: parse_column(row, "xlogpos")?,
            dbname: row.get_by_name("dbname").map(str::to_string),
        })
    }

    /// Runs `START_REPLICATION SLOT slot LOGICAL start (options...)` and returns the stream.
    ///
    /// The slot name and option names are sent as quoted identifiers and option values as
    /// string literals. A server error, such as SQLSTATE `42704` for a slot that does not
    /// exist, is returned as [`SourceError::Server`] and closes the connection.
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, SourceError> {
        let command = start_replication_command(slot, start, options)?;
        self.send_query(&command).await?;
        loop {
            let message = match self.framed.read().await? {
                Backend::CopyBothResponse => break,
                Backend::Message(message) => message,
            };
            match message {
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::NoticeResponse(body) => log_notice(&body),
                Message::ParameterStatus(_) => {}
                other => return Err(unexpected(&Backend::Message(other), "START_REPLICATION")),
            }
        }
        tracing::info!(
            slot,
            start = %start,
            backend_pid = ?self.backend_pid,
            "logical replication started"
        );
        Ok(ReplicationStream {
            framed: self.framed,
            server_done: false,
            backend_pid: self.backend_pid,
        })
    }

    /// Sends `Terminate` and closes the socket.
    pub async fn close(mut self) -> Result<(), SourceError> {
        terminate(&mut self.framed).await
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), SourceError> {
        if self.unusable {
            return Err(SourceError::Protocol(
                "an earlier request on this replication connection was cancelled or failed \
                 midway; open a new connection"
                    .to_string(),
            ));
        }
        // Framed::queue fails only on invalid input, and then leaves nothing queued.
        self.framed.queue(|buf| frontend::query(sql, buf))?;
        self.unusable = true;
        self.framed.flush().await
    }
}

/// Builds the startup parameters: the user, `replication=database`, the database, application
/// name and `options` from the configuration, then [`crate::decode::OUTPUT_SETTINGS`].
fn startup_parameters(config: &tokio_postgres::Config, user: &str) -> Vec<(String, String)> {
    let mut parameters = vec![
        ("user".to_string(), user.to_string()),
        ("replication".to_string(), "database".to_string()),
    ];
    let optional = [
        ("database", config.get_dbname()),
        ("application_name", config.get_application_name()),
        ("options", config.get_options()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            parameters.push((name.to_string(), value.to_string()));
        }
    }
    for (name, value) in crate::decode::OUTPUT_SETTINGS {
        parameters.push((name.to_string(), value.to_string()));
    }
    parameters
}

/// Opens a socket to `target` and runs the startup phase, within `connect_timeout` if set.
async fn connect_to(
    target: &Target,
    config: &tokio_postgres::Config,
    parameters: &[(String, String)],
    user: &str,
) -> Result<ReplicationClient, SourceError> {
    if matches!(target, Target::Tcp { .. }) && config.get_ssl_mode() == SslMode::Require {
        // TODO: negotiate TLS (SSLRequest, then a TLS handshake) for the replication connection.
        return Err(SourceError::Config(
            "sslmode=require is set, but TLS is not supported yet for the replication \
             connection; use sslmode=prefer or sslmode=disable to connect without TLS"
                .to_string(),
        ));
    }
    tracing::debug!(target = %target, user, "connecting for replication");
    let attempt = async {
        let socket = open_socket(target)
            .await
            .map_err(|source| SourceError::Connect {
                target: target.to_string(),
                source,
            })?;
        let mut framed = Framed::new(socket);
        let info = start_session(&mut framed, parameters, user, config.get_password()).await?;
        Ok::<_, SourceError>((framed, info))
    };
    let (framed, info) = match config.get_connect_timeout() {
        Some(limit) => tokio::time::timeout(*limit, attempt)
            .await
            .map_err(|_| timed_out(target, *limit))??,
        None => attempt.await?,
    };
    tracing::info!(
        target = %target,
        backend_pid = ?info.backend_pid,
        server_version = info.server_version.as_deref().unwrap_or("unknown"),
        "connected to PostgreSQL for replication"
    );
    Ok(ReplicationClient {
        framed,
        unusable: false,
        backend_pid: info.backend_pid,
        server_version: info.server_version,
    })
}

fn timed_out(target: &Target, limit: Duration) -> SourceError {
    SourceError::Connect {
        target: target.to_string(),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection attempt timed out after {limit:?} (connect_timeout)"),
        ),
    }
}

impl fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("backend_pid", &self.backend_pid)
            .field("server_version", &self.server_version)
            .field("unusable", &self.unusable)
            .finish_non_exhaustive()
    }
}

/// One row of a simple query result, with every value as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleRow {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

impl SimpleRow {
    /// Returns the value at `index`, or `None` for SQL NULL or an index out of range.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.values.get(index)?.as_deref()
    }

    /// Returns the value of the first column named `name`, or `None` for SQL NULL or no such
    /// column.
    pub fn get_by_name(&self, name: &str) -> Option<&str> {
        let index = self.columns.iter().position(|column| column == name)?;
        self.get(index)
    }

    /// Returns the column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Returns the number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Returns true for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The `CopyBoth` stream of a logical replication slot.
pub struct ReplicationStream {
    framed: Framed,
    /// Set once the server has sent `CopyDone`.
    server_done: bool,
    backend_pid: Option<i32>,
}

impl fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("backend_pid", &self.backend_pid)
            .field("server_done", &self.server_done)
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    /// Returns the next replication message, or `Ok(None)` once the server has ended the copy
    /// stream (after which [`close`](Self::close) finishes the exchange).
    ///
    /// Cancellation safe: partly received messages stay in a buffer owned by the stream, so
    /// the method can sit in `tokio::select!` and a dropped call loses no data. After an error
    /// the stream is unusable and a new connection is needed.
    pub async fn recv(&mut self) -> Result<Option<ReplicationMessage>, SourceError> {
        while !self.server_done {
            let message = match self.framed.read().await? {
                Backend::Message(message) => message,
                other => return Err(unexpected(&other, "replication")),
            };
            match message {
                Message::CopyData(body) => {
                    return ReplicationMessage::parse(body.into_bytes()).map(Some);
                }
                Message::CopyDone => self.server_done = true,
                // A server shutting down may end the command without a CopyDone first.
                Message::CommandComplete(_) | Message::ReadyForQuery(_) => self.server_done = true,
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::NoticeResponse(body) => log_notice(&body),
                Message::ParameterStatus(_) => {}
                other => return Err(unexpected(&Backend::Message(other), "replication")),
            }
        }
        Ok(None)
    }

    /// Sends a Standby Status Update with the written, flushed and applied positions, the
    /// client clock, and whether the server should reply at once with a keepalive.
    ///
    /// The server may remove WAL up to `flushed`, so it must be a position whose changes are
    /// durable downstream. Cancellation safe in the sense that a dropped call leaves the
    /// update buffered, and the next `send_status` or `close` sends it first.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), SourceError> {
        let clock = postgres_clock_micros(SystemTime::now());
        let payload = standby_status_update(written, flushed, applied, clock, reply_requested);
        self.framed.queue(|buf| {
            frontend::CopyData::new(payload)?.write(buf);
            Ok(())
        })?;
        self.framed.flush().await
    }

    /// Returns the process id of the walsender serving this stream.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// Ends the copy with `CopyDone`, reads the server's remaining messages until it is ready
    /// for queries, and closes the connection with `Terminate`.
    pub async fn close(mut self) -> Result<(), SourceError> {
        self.framed
            .send(|buf| {
                frontend::copy_done(buf);
                Ok(())
            })
            .await?;
        loop {
            let message = match self.framed.read().await? {
                Backend::Message(message) => message,
                other => return Err(unexpected(&other, "the end of replication")),
            };
            match message {
                Message::ReadyForQuery(_) => break,
                // WAL sent before the server saw CopyDone is dropped: it is sent again from
                // the slot's confirmed position on the next START_REPLICATION.
                Message::CopyData(_) | Message::CopyDone | Message::CommandComplete(_) => {}
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::NoticeResponse(body) => log_notice(&body),
                Message::ParameterStatus(_) => {}
                other => {
                    return Err(unexpected(
                        &Backend::Message(other),
                        "the end of replication",
                    ))
                }
            }
        }
        tracing::debug!(backend_pid = ?self.backend_pid, "logical replication stream closed");
        terminate(&mut self.framed).await
    }
}

async fn terminate(framed: &mut Framed) -> Result<(), SourceError> {
    framed
        .send(|buf| {
            frontend::terminate(buf);
            Ok(())
        })
        .await?;
    if let Err(err) = framed.shutdown().await {
        tracing::debug!(error = %err, "socket shutdown after Terminate failed");
    }
    Ok(())
}

/// The rows and the server error of one simple query.
struct QueryOutcome {
    rows: Vec<SimpleRow>,
    error: Option<SourceError>,
}

/// Reads the responses to a simple query until `ReadyForQuery`.
async fn read_query_results(framed: &mut Framed) -> Result<QueryOutcome, SourceError> {
    let mut outcome = QueryOutcome {
        rows: Vec::new(),
        error: None,
    };
    let mut columns: Option<Arc<[String]>> = None;
    loop {
        let message = match framed.read().await? {
            Backend::Message(message) => message,
            other => return Err(unexpected(&other, "a simple query")),
        };
        match message {
            Message::ReadyForQuery(_) => return Ok(outcome),
            Message::RowDescription(body) => columns = Some(column_names(&body)?),
            Message::DataRow(body) => {
                let Some(columns) = &columns else {
                    return Err(SourceError::Protocol(
                        "DataRow received before RowDescription".to_string(),
                    ));
                };
                outcome.rows.push(parse_row(&body, columns)?);
            }
            Message::CommandComplete(_) | Message::EmptyQueryResponse => columns = None,
            Message::ErrorResponse(body) => outcome.error = Some(server_error(&body)),
            Message::NoticeResponse(body) => log_notice(&body),
            Message::ParameterStatus(_) | Message::NotificationResponse(_) => {}
            other => return Err(unexpected(&Backend::Message(other), "a simple query")),
        }
    }
}

fn column_names(body: &RowDescriptionBody) -> Result<Arc<[String]>, SourceError> {
    let names: Vec<String> = body
        .fields()
        .map(|field| Ok(field.name().to_string()))
        .collect()
        .map_err(|err| SourceError::Protocol(format!("invalid RowDescription: {err}")))?;
    Ok(names.into())
}

fn parse_row(body: &DataRowBody, columns: &Arc<[String]>) -> Result<SimpleRow, SourceError> {
    let invalid = |reason: String| SourceError::Protocol(format!("invalid DataRow: {reason}"));
    let buffer = body.buffer();
    let mut values = Vec::with_capacity(columns.len());
    let mut ranges = body.ranges();
    while let Some(range) = ranges.next().map_err(|err| invalid(err.to_string()))? {
        let value = match range {
            Some(range) => {
                let text = std::str::from_utf8(&buffer[range])
                    .map_err(|err| invalid(format!("value is not UTF-8: {err}")))?;
                Some(text.to_string())
            }
            None => None,
        };
        values.push(value);
    }
    if values.len() != columns.len() {
        return Err(invalid(format!(
            "{} values for {} columns",
            values.len(),
            columns.len()
        )));
    }
    Ok(SimpleRow {
        columns: Arc::clone(columns),
        values,
    })
}

fn parse_column<T: std::str::FromStr>(row: &SimpleRow, name: &str) -> Result<T, SourceError> {
    let text = row.get_by_name(name).ok_or_else(|| {
        SourceError::Protocol(format!("IDENTIFY_SYSTEM returned no {name} column"))
    })?;
    text.parse().map_err(|_| {
        SourceError::Protocol(format!("IDENTIFY_SYSTEM returned invalid {name} {text:?}"))
    })
}

/// Builds the `START_REPLICATION` command for a logical slot.
fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &[(&str, &str)],
) -> Result<String, SourceError> {
    if slot.is_empty() {
        return Err(SourceError::InvalidArgument(
            "the replication slot name is empty".to_string(),
        ));
    }
    let mut command = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_ident(slot)
    );
    if !options.is_empty() {
        let options: Vec<String> = options
            .iter()
            .map(|(name, value)| format!("{} {}", quote_ident(name), quote_literal(value)))
            .collect();
        command.push_str(&format!(" ({})", options.join(", ")));
    }
    Ok(command)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for the replication command grammar, in which a backslash is an
/// ordinary character and only a doubled quote needs escaping.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
