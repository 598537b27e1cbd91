//! The transport of a replication connection: choosing and opening the socket, framing the
//! PostgreSQL frontend/backend protocol over it, and the messages of the streaming replication
//! protocol carried in `CopyData`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::{self, Header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Config, Host};

use super::error::SourceError;
use crate::lsn::Lsn;

/// A byte stream to the server: a `TcpStream` or a `UnixStream`.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// Tag of `CopyBothResponse`, which postgres-protocol 0.6 does not parse.
const COPY_BOTH_RESPONSE_TAG: u8 = b'W';

/// Largest backend message accepted, length field included. PostgreSQL builds each message in
/// a `StringInfo`, which is limited to 1 GiB (PostgreSQL's `src/common/stringinfo.c`).
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Bytes reserved in the read buffer before each socket read.
const READ_CHUNK: usize = 8 * 1024;

/// A backend message.
pub(crate) enum Backend {
    Message(backend::Message),
    /// `CopyBothResponse`, the server's response to `START_REPLICATION`.
    CopyBothResponse,
}

/// A socket with read and write buffers owned by this value, so that a cancelled read or
/// write loses no bytes: the next call continues where the dropped one stopped.
pub(crate) struct Framed {
    socket: Box<dyn Socket>,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl Framed {
    pub fn new(socket: Box<dyn Socket>) -> Self {
        Self {
            socket,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::new(),
        }
    }

    /// Appends one frontend message to the write buffer. On an encoding error (such as a NUL
    /// byte inside a string) the buffer is left as it was.
    pub fn queue(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<(), SourceError> {
        let start = self.write_buf.len();
        encode(&mut self.write_buf).map_err(|err| {
            self.write_buf.truncate(start);
            SourceError::InvalidArgument(err.to_string())
        })
    }

    /// Writes the whole write buffer to the socket and flushes it.
    ///
    /// Cancellation safe: bytes not yet written stay buffered for the next call.
    pub async fn flush(&mut self) -> Result<(), SourceError> {
        while self.write_buf.has_remaining() {
            let written = self.socket.write_buf(&mut self.write_buf).await?;
            if written == 0 {
                return Err(SourceError::Closed);
            }
        }
        self.socket.flush().await?;
        Ok(())
    }

    /// Queues one message and flushes the write buffer.
    pub async fn send(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<(), SourceError> {
        self.queue(encode)?;
        self.flush().await
    }

    /// Reads the next backend message.
    ///
    /// Cancellation safe: a partly received message stays in the read buffer.
    pub async fn read(&mut self) -> Result<Backend, SourceError> {
        loop {
            if let Some(message) = self.parse_buffered()? {
                return Ok(message);
            }
            self.read_buf.reserve(READ_CHUNK);
            let read = self.socket.read_buf(&mut self.read_buf).await?;
            if read == 0 {
                return Err(SourceError::Closed);
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Backend>, SourceError> {
        let header = match Header::parse(&self.read_buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(err) => return Err(invalid_message(self.read_buf[0], &err)),
        };
        let tag = header.tag();
        // Header::parse rejects lengths below 4, so the cast is lossless.
        let len = header.len() as usize;
        if len > MAX_MESSAGE_LEN {
            return Err(SourceError::Protocol(format!(
                "message {} has length {len}, more than the maximum of {MAX_MESSAGE_LEN} bytes",
                tag_name(tag)
            )));
        }
        if tag == COPY_BOTH_RESPONSE_TAG {
            if self.read_buf.len() <= len {
                return Ok(None);
            }
            // The body lists the column formats, which replication does not use.
            self.read_buf.advance(len + 1);
            return Ok(Some(Backend::CopyBothResponse));
        }
        match backend::Message::parse(&mut self.read_buf) {
            Ok(Some(message)) => Ok(Some(Backend::Message(message))),
            Ok(None) => Ok(None),
            Err(err) => Err(invalid_message(tag, &err)),
        }
    }

    /// Shuts down the write half of the socket.
    pub async fn shutdown(&mut self) -> Result<(), SourceError> {
        self.socket.shutdown().await?;
        Ok(())
    }
}

/// PostgreSQL's default port, used when the configuration gives none.
const DEFAULT_PORT: u16 = 5432;

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A host name or IP address.
    Tcp { host: String, port: u16 },
    /// The path of a Unix socket, `<directory>/.s.PGSQL.<port>`.
    Unix { path: PathBuf },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix { path } => write!(f, "{}", path.display()),
        }
    }
}

/// Lists the places to try in order. Like libpq, a `hostaddr` replaces the host name of the
/// same position, and a single port applies to every host.
pub(crate) fn targets(config: &Config) -> Result<Vec<Target>, SourceError> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let count = hosts.len().max(addrs.len());
    if count == 0 {
        return Err(SourceError::Config(
            "no host is set: put a host name, IP address or Unix socket directory in \
             DATABASE_URL"
                .to_string(),
        ));
    }
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(SourceError::Config(format!(
            "{} hosts but {} hostaddrs are set; give one hostaddr per host",
            hosts.len(),
            addrs.len()
        )));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(SourceError::Config(format!(
            "{} ports are set for {count} hosts; give one port, or one per host",
            ports.len()
        )));
    }
    let port_at = |index: usize| {
        ports
            .get(index)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT)
    };
    if !addrs.is_empty() {
        let targets = addrs.iter().enumerate().map(|(index, addr)| Target::Tcp {
            host: addr.to_string(),
            port: port_at(index),
        });
        return Ok(targets.collect());
    }
    let targets = hosts.iter().enumerate().map(|(index, host)| match host {
        Host::Tcp(host) => Target::Tcp {
            host: host.clone(),
            port: port_at(index),
        },
        Host::Unix(dir) => Target::Unix {
            path: dir.join(format!(".s.PGSQL.{}", port_at(index))),
        },
    });
    Ok(targets.collect())
}

/// Opens a socket to `target`, trying each address a host name resolves to.
pub(crate) async fn open_socket(target: &Target) -> io::Result<Box<dyn Socket>> {
    match target {
        Target::Tcp { host, port } => {
            let mut last_error = None;
            for addr in tokio::net::lookup_host((host.as_str(), *port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(Box::new(stream));
                    }
                    Err(err) => last_error = Some(err),
                }
            }
            Err(last_error.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("host name {host:?} resolved to no address"),
                )
            }))
        }
        Target::Unix { path } => Ok(Box::new(UnixStream::connect(path).await?)),
    }
}

fn invalid_message(tag: u8, err: &io::Error) -> SourceError {
    SourceError::Protocol(format!("invalid message {}: {err}", tag_name(tag)))
}

/// Names a message tag for error messages: the character and its byte value.
pub(crate) fn tag_name(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}' (0x{tag:02x})", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// Builds the protocol error for a backend message that is not expected during `phase`.
pub(crate) fn unexpected(message: &Backend, phase: &str) -> SourceError {
    SourceError::Protocol(format!(
        "unexpected {} message during {phase}",
        message_name(message)
    ))
}

/// Names a parsed backend message for error messages.
fn message_name(message: &Backend) -> &'static str {
    use backend::Message as M;
    let Backend::Message(message) = message else {
        return "CopyBothResponse";
    };
    match message {
        M::AuthenticationOk
        | M::AuthenticationCleartextPassword
        | M::AuthenticationMd5Password(_)
        | M::AuthenticationSasl(_)
        | M::AuthenticationSaslContinue(_)
        | M::AuthenticationSaslFinal(_) => "Authentication",
        M::BackendKeyData(_) => "BackendKeyData",
        M::CommandComplete(_) => "CommandComplete",
        M::CopyData(_) => "CopyData",
        M::CopyDone => "CopyDone",
        M::CopyInResponse(_) => "CopyInResponse",
        M::CopyOutResponse(_) => "CopyOutResponse",
        M::DataRow(_) => "DataRow",
        M::EmptyQueryResponse => "EmptyQueryResponse",
        M::ErrorResponse(_) => "ErrorResponse",
        M::NoticeResponse(_) => "NoticeResponse",
        M::NotificationResponse(_) => "NotificationResponse",
        M::ParameterStatus(_) => "ParameterStatus",
        M::ReadyForQuery(_) => "ReadyForQuery",
        M::RowDescription(_) => "RowDescription",
        _ => "an extended-query or unsupported authentication message",
    }
}

/// A message of the streaming replication protocol, carried in a `CopyData` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL data (`w`): for logical replication, one message of the output plugin.
    XLogData {
        /// WAL position at which `data` starts.
        wal_start: Lsn,
        /// Current end of WAL on the server.
        wal_end: Lsn,
        /// Server clock at sending, in microseconds since 2000-01-01 00:00 UTC.
        server_time_micros: i64,
        /// The output plugin's message (for `pgoutput`, its first byte is the message type).
        data: Bytes,
    },
    /// Primary keepalive (`k`).
    PrimaryKeepalive {
        /// Current end of WAL on the server.
        wal_end: Lsn,
        /// Server clock at sending, in microseconds since 2000-01-01 00:00 UTC.
        server_time_micros: i64,
        /// True when the server requests a standby status update at once. Without one, it may
        /// disconnect after `wal_sender_timeout`.
        reply_requested: bool,
    },
}

const XLOG_DATA_HEADER_LEN: usize = 1 + 8 + 8 + 8;
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;

impl ReplicationMessage {
    /// Parses the payload of a `CopyData` message received during replication.
    pub(crate) fn parse(mut payload: Bytes) -> Result<Self, SourceError> {
        let Some(&kind) = payload.first() else {
            return Err(SourceError::Protocol("empty CopyData message".into()));
        };
        match kind {
            b'w' if payload.len() >= XLOG_DATA_HEADER_LEN => {
                payload.advance(1);
                let wal_start = Lsn(payload.get_u64());
                let wal_end = Lsn(payload.get_u64());
                let server_time_micros = payload.get_i64();
                Ok(ReplicationMessage::XLogData {
                    wal_start,
                    wal_end,
                    server_time_micros,
                    data: payload,
                })
            }
            b'k' if payload.len() == KEEPALIVE_LEN => {
                payload.advance(1);
                Ok(ReplicationMessage::PrimaryKeepalive {
                    wal_end: Lsn(payload.get_u64()),
                    server_time_micros: payload.get_i64(),
                    reply_requested: payload.get_u8() != 0,
                })
            }
            b'w' | b'k' => Err(SourceError::Protocol(format!(
                "replication message {} has invalid length {}",
                tag_name(kind),
                payload.len()
            ))),
            other => Err(SourceError::Protocol(format!(
                "unexpected replication message {} in CopyData",
                tag_name(other)
            ))),
        }
    }
}

/// Seconds from 1970-01-01 (the Unix epoch) to 2000-01-01 (the PostgreSQL epoch).
const POSTGRES_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Returns the client clock in microseconds since 2000-01-01 00:00 UTC, as the protocol
/// expects in status updates. A clock before 2000 gives a negative value.
pub(crate) fn postgres_clock_micros(now: SystemTime) -> i64 {
    let postgres_epoch = UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_UNIX_SECS);
    match now.duration_since(postgres_epoch) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Encodes a Standby Status Update (`r`) as the payload of a `CopyData` message.
pub(crate) fn standby_status_update(
    written: Lsn,
    flushed: Lsn,
    applied: Lsn,
    clock_micros: i64,
    reply_requested: bool,
) -> Bytes {
    let mut payload = BytesMut::with_capacity(1 + 8 * 4 + 1);
    payload.put_u8(b'r');
    payload.put_u64(written.0);
    payload.put_u64(flushed.0);
    payload.put_u64(applied.0);
    payload.put_i64(clock_micros);
    payload.put_u8(u8::from(reply_requested));
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlog_data() {
        let mut payload = BytesMut::new();
        payload.put_u8(b'w');
        payload.put_u64(0x10);
        payload.put_u64(0x20);
        payload.put_i64(-5);
        payload.put_slice(b"Bxyz");
        let message = ReplicationMessage::parse(payload.freeze()).unwrap();
        assert_eq!(
            message,
            ReplicationMessage::XLogData {
                wal_start: Lsn(0x10),
                wal_end: Lsn(0x20),
                server_time_micros: -5,
                data: Bytes::from_static(b"Bxyz"),
            }
        );
    }

    #[test]
    fn parses_keepalive() {
        let mut payload = BytesMut::new();
        payload.put_u8(b'k');
        payload.put_u64(0x30);
        payload.put_i64(7);
        payload.put_u8(1);
        let message = ReplicationMessage::parse(payload.freeze()).unwrap();
        assert_eq!(
            message,
            ReplicationMessage::PrimaryKeepalive {
                wal_end: Lsn(0x30),
                server_time_micros: 7,
                reply_requested: true,
            }
        );
    }

    #[test]
    fn rejects_short_and_unknown_messages() {
        for payload in [&b""[..], b"w123", b"k12345678", b"x"] {
            let result = ReplicationMessage::parse(Bytes::copy_from_slice(payload));
            assert!(
                matches!(result, Err(SourceError::Protocol(_))),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn clock_counts_from_2000() {
        let y2k = UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_UNIX_SECS);
        assert_eq!(postgres_clock_micros(y2k), 0);
        assert_eq!(
            postgres_clock_micros(y2k + Duration::from_micros(1_500)),
            1_500
        );
        assert_eq!(
            postgres_clock_micros(y2k - Duration::from_secs(1)),
            -1_000_000
        );
    }

    #[test]
    fn status_update_layout() {
        let payload = standby_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(payload.len(), 34);
        assert_eq!(payload[0], b'r');
        assert_eq!(&payload[1..9], &1u64.to_be_bytes());
        assert_eq!(&payload[9..17], &2u64.to_be_bytes());
        assert_eq!(&payload[17..25], &3u64.to_be_bytes());
        assert_eq!(&payload[25..33], &4i64.to_be_bytes());
        assert_eq!(payload[33], 1);
    }
}
