//! The replication task: slot in, events to consumers, confirmed position back to the server.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ConsumerError, Consumers};
use crate::change::EncodedEvent;
use crate::decode::types::TypeRegistry;
use crate::decode::{DecodeError, Decoded, Decoder};
use crate::health::{Health, StreamState};
use crate::lsn::Lsn;
use crate::metrics as names;
use crate::report::error_chain;
use crate::source::connection::{ReplicationClient, ReplicationMessage, ReplicationStream};
use crate::source::setup::{self, SetupError};
use crate::source::SourceError;

/// Maximum time an event waits for more events to share its hand-over. Consumers that write to
/// the database (the webhook outbox) then store many small transactions per statement.
const FLUSH_DELAY: Duration = Duration::from_millis(5);

/// Completes at `due`; pending forever for None (the branch is disabled then).
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Events handed to consumers at once. A transaction larger than this reaches them in several
/// batches, which keeps memory flat for transactions of any size.
const BATCH_SIZE: usize = 512;

/// Settings of the replication task.
#[derive(Debug, Clone)]
pub struct ReplicatorConfig {
    pub database: tokio_postgres::Config,
    pub slot: String,
    pub publication: String,
    /// Maximum time between standby status updates. PostgreSQL drops a replication connection
    /// that stays silent for `wal_sender_timeout` (60 s by default), so this must stay well
    /// below it.
    pub status_interval: Duration,
    /// Minimum time between status updates sent because the confirmed position moved.
    pub confirm_interval: Duration,
}

impl ReplicatorConfig {
    /// Settings with the default intervals: a status update at least every 10 s, and at most
    /// one per 500 ms when the position moves.
    pub fn new(database: tokio_postgres::Config, slot: &str, publication: &str) -> Self {
        Self {
            database,
            slot: slot.to_string(),
            publication: publication.to_string(),
            status_interval: Duration::from_secs(10),
            confirm_interval: Duration::from_millis(500),
        }
    }
}

/// The reason one streaming session ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("catalog connection failed: {}", error_chain(.0))]
    Catalog(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("the server ended the replication stream")]
    EndedByServer,
}

/// Checks the server and creates the publication and slot, once, before serving. Errors that a
/// person must fix (such as `wal_level`) are returned so that startup fails with them.
pub async fn prepare(config: &ReplicatorConfig) -> Result<(), StreamError> {
    let client = connect_catalog(&config.database).await?;
    setup::check_server(&client, &config.slot).await?;
    setup::ensure_publication(&client, &config.publication).await?;
    setup::warn_tables_without_identity(&client, &config.publication).await;
    setup::ensure_slot(&client, &config.slot).await?;
    Ok(())
}

/// Runs only the server checks of [`prepare`], before anything is written to the database.
pub async fn check(config: &ReplicatorConfig) -> Result<(), StreamError> {
    let client = connect_catalog(&config.database).await?;
    setup::check_server(&client, &config.slot).await?;
    Ok(())
}

async fn connect_catalog(
    database: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = database.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "catalog connection closed");
        }
    });
    Ok(client)
}

/// Streams from the slot until `shutdown` is cancelled, reconnecting with backoff.
pub async fn run(
    config: ReplicatorConfig,
    consumers: Consumers,
    health: Health,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("replication", slot = %config.slot);
    async move {
        let mut failures: u32 = 0;
        loop {
            let mut session = Session::new(&config, &consumers, &health, &shutdown);
            let result = session.stream().await;
            if shutdown.is_cancelled() {
                break;
            }
            // Only a session that confirmed a transaction resets the backoff, so an error that
            // recurs on the same change backs off instead of retrying at full speed.
            if session.progressed {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let reason = match result {
                Ok(()) => "stream stopped".to_string(),
                Err(StreamError::Source(err)) if err.sqlstate() == Some("55006") => format!(
                    "{err}; another process streams from slot {:?}, so give each gateway its \
                     own slot (WALGATE_SLOT) or stop the other one",
                    config.slot
                ),
                Err(err) => err.to_string(),
            };
            let delay = backoff(failures);
            tracing::warn!(error = %reason, retry_in_ms = delay.as_millis() as u64, "replication stream lost, reconnecting");
            health.set(StreamState::Down { reason });
            metrics::counter!(names::REPLICATION_RECONNECTS).increment(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        health.set(StreamState::Stopped);
        tracing::info!("replication stopped");
    }
    .instrument(span)
    .await
}

/// Exponential backoff from 500 ms to 30 s with up to 25 % random jitter.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(6).saturating_sub(1));
    let base = base.min(Duration::from_secs(30));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter)
}

/// One connection's worth of streaming.
struct Session<'a> {
    config: &'a ReplicatorConfig,
    consumers: &'a Consumers,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    batch: Vec<Arc<EncodedEvent>>,
    /// Highest position received from the server.
    received: Lsn,
    /// Position of the last transaction whose events every consumer accepted.
    confirmed: Lsn,
    /// The position last sent to the server as flushed.
    reported: Lsn,
    last_status: Instant,
    /// True once the session confirmed a position past where it started.
    progressed: bool,
    /// End position of the last Commit whose events sit in `batch`, not yet handed over.
    committed: Lsn,
    /// When the first event of the current batch arrived.
    batch_started: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(
        config: &'a ReplicatorConfig,
        consumers: &'a Consumers,
        health: &'a Health,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            config,
            consumers,
            health,
            shutdown,
            batch: Vec::with_capacity(BATCH_SIZE),
            received: Lsn::INVALID,
            confirmed: Lsn::INVALID,
            reported: Lsn::INVALID,
            last_status: Instant::now(),
            progressed: false,
            committed: Lsn::INVALID,
            batch_started: None,
        }
    }

    async fn stream(&mut self) -> Result<(), StreamError> {
        let catalog = Arc::new(connect_catalog(&self.config.database).await?);
        setup::ensure_publication(&catalog, &self.config.publication).await?;
        let start = match setup::existing_slot(&catalog, &self.config.slot).await? {
            Some(start) => start,
            None => {
                let start = setup::ensure_slot(&catalog, &self.config.slot).await?;
                tracing::error!(
                    slot = %self.config.slot,
                    %start,
                    "the replication slot was missing and has been created again: changes \
                     committed while it was missing were not captured"
                );
                start
            }
        };
        let mut decoder = Decoder::new(TypeRegistry::new(catalog));

        let client = ReplicationClient::connect(&self.config.database).await?;
        let options = [
            ("proto_version", "1"),
            ("publication_names", self.config.publication.as_str()),
            ("messages", "true"),
        ];
        let stream = client
            .start_logical_replication(&self.config.slot, start, &options)
            .await?;
        self.received = start;
        self.confirmed = start;
        self.reported = start;
        self.health.set(StreamState::Streaming {
            slot: self.config.slot.clone(),
            confirmed_lsn: start,
        });
        tracing::info!(%start, "streaming from the replication slot");
        self.pump(stream, &mut decoder).await
    }

    async fn pump(
        &mut self,
        mut stream: ReplicationStream,
        decoder: &mut Decoder,
    ) -> Result<(), StreamError> {
        let mut ticker = tokio::time::interval(self.config.confirm_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let flush_due = self.batch_started.map(|started| started + FLUSH_DELAY);
            // `recv` is cancellation safe: a partly read message stays buffered in the stream.
            // While messages keep arriving, `recv` wins over the flush timer, so batches fill up
            // to BATCH_SIZE; the timer hands a partial batch over once the stream pauses.
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.flush_batch().await?;
                    self.send_status(&mut stream, false).await?;
                    stream.close().await?;
                    return Ok(());
                }
                message = stream.recv() => {
                    match message.map_err(explain_source_error)? {
                        Some(message) => self.handle(&mut stream, decoder, message).await?,
                        None => return Err(StreamError::EndedByServer),
                    }
                }
                _ = sleep_until_due(flush_due), if flush_due.is_some() => self.flush_batch().await?,
                _ = ticker.tick() => self.maybe_send_status(&mut stream).await?,
            }
        }
    }

    async fn handle(
        &mut self,
        stream: &mut ReplicationStream,
        decoder: &mut Decoder,
        message: ReplicationMessage,
    ) -> Result<(), StreamError> {
        match message {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.received = self.received.max(wal_end);
                metrics::counter!(names::REPLICATION_RECEIVED_BYTES).increment(data.len() as u64);
                let decoded = decoder.decode(&data, wal_start).await?;
                self.apply(decoded).await
            }
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                self.received = self.received.max(wal_end);
                // Every transaction that committed before `wal_end` has been sent ahead of this
                // keepalive, so when none is open the slot can move up to it. This keeps the
                // slot moving while the published tables are idle.
                if !decoder.in_transaction() && self.batch.is_empty() {
                    self.confirmed = self.confirmed.max(wal_end);
                }
                if reply_requested {
                    self.send_status(stream, false).await?;
                }
                Ok(())
            }
        }
    }

    async fn apply(&mut self, decoded: Decoded) -> Result<(), StreamError> {
        match decoded {
            Decoded::Nothing | Decoded::Begin(_) | Decoded::LogicalMessage(_) => Ok(()),
            Decoded::Event(event) => self.push(event).await,
            Decoded::Events(events) => {
                for event in events {
                    self.push(event).await?;
                }
                Ok(())
            }
            Decoded::Commit { end_lsn, .. } => {
                metrics::counter!(names::REPLICATION_TRANSACTIONS).increment(1);
                if self.batch.is_empty() {
                    self.advance(end_lsn);
                } else {
                    // Confirmed once the batch holding the transaction's last events is handed
                    // over; several small transactions share one hand-over.
                    self.committed = self.committed.max(end_lsn);
                }
                Ok(())
            }
        }
    }

    async fn push(&mut self, event: crate::change::ChangeEvent) -> Result<(), StreamError> {
        if self.batch.is_empty() {
            self.batch_started = Some(Instant::now());
        }
        self.batch.push(EncodedEvent::new(event));
        if self.batch.len() >= BATCH_SIZE {
            self.flush_batch().await?;
        }
        Ok(())
    }

    async fn flush_batch(&mut self) -> Result<(), StreamError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.consumers.accept(&self.batch).await?;
        metrics::counter!(names::REPLICATION_EVENTS).increment(self.batch.len() as u64);
        self.batch.clear();
        self.batch_started = None;
        // Every transaction committed before the batch's last event is now handed over.
        self.advance(self.committed);
        Ok(())
    }

    /// Moves the confirmed position forward to `lsn`.
    fn advance(&mut self, lsn: Lsn) {
        self.progressed |= lsn > self.confirmed;
        self.confirmed = self.confirmed.max(lsn);
    }

    /// Sends a status update when the confirmed position moved, or when `status_interval` has
    /// passed without one.
    async fn maybe_send_status(
        &mut self,
        stream: &mut ReplicationStream,
    ) -> Result<(), StreamError> {
        let moved = self.confirmed > self.reported;
        if moved || self.last_status.elapsed() >= self.config.status_interval {
            self.send_status(stream, false).await?;
        }
        Ok(())
    }

    async fn send_status(
        &mut self,
        stream: &mut ReplicationStream,
        reply_requested: bool,
    ) -> Result<(), StreamError> {
        stream
            .send_status(
                self.received,
                self.confirmed,
                self.confirmed,
                reply_requested,
            )
            .await?;
        self.reported = self.confirmed;
        self.last_status = Instant::now();
        self.health.set_confirmed(self.confirmed);
        metrics::gauge!(names::REPLICATION_CONFIRMED_LSN).set(self.confirmed.0 as f64);
        metrics::gauge!(names::REPLICATION_LAG_BYTES)
            .set(self.received.0.saturating_sub(self.confirmed.0) as f64);
        tracing::trace!(confirmed = %self.confirmed, received = %self.received, "sent status update");
        Ok(())
    }
}

/// Adds the fix to a server error that needs one from a person.
fn explain_source_error(err: SourceError) -> StreamError {
    let dropped_publication =
        err.sqlstate() == Some("42704") && err.to_string().contains("publication");
    if dropped_publication {
        tracing::error!(
            error = %err,
            "the publication was dropped while the slot was behind it; PostgreSQL decodes with \
             the catalog as of the slot's position, so a publication created again later is not \
             seen. Drop the slot (pg_drop_replication_slot) to start over from now; changes not \
             yet streamed are then lost"
        );
    }
    StreamError::Source(err)
}
