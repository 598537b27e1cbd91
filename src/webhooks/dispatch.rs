//! The dispatcher: claims due deliveries from the outbox, sends them, and records the outcome.
//!
//! Ordering: a row is claimable only when no earlier pending row has the same trigger and row
//! key, and a claimed row stays pending until its outcome is recorded, so a later change to a
//! row is never sent before an earlier one is delivered or given up. Other rows and other
//! triggers are not held up.
//!
//! Sharing: the claim uses `FOR UPDATE SKIP LOCKED` and a lease (`leased_until`), so several
//! gateways on one database split the work, and a row claimed by a gateway that died is
//! claimed again once its lease expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::delivery::{self, Claimed, Outcome, RetryPolicy};
use super::registry::TriggerRegistry;
use crate::db::SharedClient;
use crate::metrics as names;
use crate::report::error_chain;

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Rows claimed per query.
    pub batch_size: i64,
    /// How often to look for due rows when nothing wakes the dispatcher (retries coming due,
    /// rows written by other gateways).
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// How long delivered rows are kept before they are deleted.
    pub retention: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                max: Duration::from_secs(3600),
            },
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// A claim slower than this triggers an `ANALYZE` of the outbox table.
const SLOW_CLAIM: Duration = Duration::from_millis(100);
/// Shortest time between two such `ANALYZE` runs.
const ANALYZE_INTERVAL: Duration = Duration::from_secs(30);

/// Pause after a claim that returned fewer rows than `batch_size`.
const CLAIM_PAUSE: Duration = Duration::from_millis(5);

/// Extra lease time beyond a trigger's request timeout, for recording the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The recorded result of one attempt.
struct Finished {
    id: i64,
    trigger: String,
    attempts: i32,
    outcome: Outcome,
}

/// Sends outbox rows to their endpoints.
pub struct Dispatcher {
    registry: Arc<TriggerRegistry>,
    db: SharedClient,
    http: reqwest::Client,
    wake: Arc<Notify>,
    config: DispatchConfig,
    /// Per-trigger limits on requests in flight, sized from each trigger's `concurrency`.
    limits: DashMap<String, Arc<Semaphore>>,
    /// Per-trigger rows claimed and not yet recorded.
    claimed: DashMap<String, Arc<AtomicUsize>>,
    /// When the outbox table was last analyzed because a claim was slow.
    last_analyze: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Dispatcher {
    /// Creates the dispatcher; `wake` is notified by the outbox when rows are stored.
    pub fn new(
        registry: Arc<TriggerRegistry>,
        db: SharedClient,
        wake: Arc<Notify>,
        config: DispatchConfig,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("walgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client settings are static and valid");
        Self {
            registry,
            db,
            http,
            wake,
            config,
            limits: DashMap::new(),
            claimed: DashMap::new(),
            last_analyze: std::sync::Mutex::new(None),
        }
    }

    /// Runs until `shutdown`; deliveries in flight then finish or time out.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record_outcomes(done_rx).in_current_span());
        let cleaner = tokio::spawn(
            self.clone()
                .delete_expired(shutdown.clone())
                .in_current_span(),
        );
        while !shutdown.is_cancelled() {
            let started = std::time::Instant::now();
            let claimed = self.claim().await;
            self.refresh_statistics_if_slow(started.elapsed());
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming webhook deliveries failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
                continue;
            }
            let partial = (claimed.len() as i64) < self.config.batch_size;
            for row in claimed {
                tokio::spawn(self.clone().deliver(row, done_tx.clone()).in_current_span());
            }
            if partial {
                // A partial batch means the due rows are used up; a short pause lets more
                // arrive, so a steady trickle is claimed in groups rather than one query per row.
                tokio::time::sleep(CLAIM_PAUSE).await;
            }
        }
        drop(done_tx);
        let _ = recorder.await;
        cleaner.abort();
        tracing::info!("webhook dispatcher stopped");
    }

    /// Runs `ANALYZE` on the outbox in the background when a claim was slow, at most once per
    /// `ANALYZE_INTERVAL`. The claim's plan depends on row estimates, and a burst of rows after
    /// an idle spell (before autovacuum analyzes the table) leaves estimates that make each
    /// claim scan far more rows than it returns.
    fn refresh_statistics_if_slow(self: &Arc<Self>, elapsed: Duration) {
        if elapsed < SLOW_CLAIM {
            return;
        }
        {
            let mut last = self
                .last_analyze
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() < ANALYZE_INTERVAL) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let dispatcher = self.clone();
        tokio::spawn(async move {
            tracing::info!(
                claim_ms = elapsed.as_millis() as u64,
                "claim was slow; analyzing the outbox table"
            );
            let result = match dispatcher.db.get().await {
                Ok(client) => client
                    .batch_execute("ANALYZE walgate.webhook_deliveries")
                    .await
                    .map_err(|err| error_chain(&err)),
                Err(err) => Err(error_chain(&err)),
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, "analyzing the outbox table failed");
            }
        });
    }

    fn claimed_counter(&self, trigger: &str) -> Arc<AtomicUsize> {
        self.claimed.entry(trigger.to_string()).or_default().clone()
    }

    /// Claims due rows of the triggers that have room for more work.
    async fn claim(&self) -> Result<Vec<Claimed>, String> {
        let loaded = self.registry.current();
        let mut triggers = Vec::new();
        let mut longest = Duration::ZERO;
        for trigger in loaded.set.triggers() {
            let in_flight = self.claimed_counter(&trigger.name).load(Ordering::Acquire);
            if trigger.enabled && in_flight < trigger.concurrency * 4 {
                triggers.push(trigger.name.clone());
                longest = longest.max(trigger.timeout);
            }
        }
        if triggers.is_empty() {
            return Ok(Vec::new());
        }
        let lease_ms = (longest + LEASE_MARGIN).as_millis() as i64;
        let client = self.db.get().await.map_err(|err| error_chain(&err))?;
        let rows = client
            .query(
                "UPDATE walgate.webhook_deliveries d
                 SET leased_until = now() + $2::bigint * interval '1 millisecond',
                     attempts = d.attempts + 1
                 WHERE d.id IN (
                     SELECT c.id FROM walgate.webhook_deliveries c
                     WHERE c.status = 'pending'
                       AND c.next_attempt_at <= now()
                       AND (c.leased_until IS NULL OR c.leased_until < now())
                       AND c.trigger_name = ANY($3)
                       -- OFFSET 0 keeps this a per-candidate index probe rather than an
                       -- anti join over every pending row.
                       AND NOT EXISTS (
                           SELECT 1 FROM walgate.webhook_deliveries e
                           WHERE e.status = 'pending' AND e.trigger_name = c.trigger_name
                             AND e.row_key = c.row_key AND e.id < c.id
                           OFFSET 0)
                     ORDER BY c.next_attempt_at, c.id
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING d.id, d.trigger_name, d.event_id, d.body, d.attempts",
                &[&self.config.batch_size, &lease_ms, &triggers],
            )
            .await
            .map_err(|err| error_chain(&err))?;
        let claimed: Vec<Claimed> = rows
            .iter()
            .map(|row| Claimed {
                id: row.get(0),
                trigger: row.get(1),
                event_id: row.get(2),
                body: row.get(3),
                attempts: row.get(4),
            })
            .collect();
        for row in &claimed {
            self.claimed_counter(&row.trigger)
                .fetch_add(1, Ordering::AcqRel);
        }
        Ok(claimed)
    }

    async fn deliver(self: Arc<Self>, row: Claimed, done: mpsc::UnboundedSender<Finished>) {
        let loaded = self.registry.current();
        let outcome = match loaded.set.get(&row.trigger) {
            Some(trigger) => {
                let limit = self
                    .limits
                    .entry(trigger.name.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(trigger.concurrency)))
                    .clone();
                let _permit = limit.acquire_owned().await;
                let started = std::time::Instant::now();
                let outcome = delivery::attempt(&self.http, trigger, &row).await;
                metrics::histogram!(names::WEBHOOK_REQUEST_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                outcome
            }
            None => Outcome::Retry {
                status: None,
                error: format!("trigger {:?} is no longer defined", row.trigger),
                retry_after: Some(self.config.retry.max),
            },
        };
        let _ = done.send(Finished {
            id: row.id,
            trigger: row.trigger,
            attempts: row.attempts,
            outcome,
        });
    }

    /// Records outcomes in batches: one statement for all successes of a batch, one per
    /// failure.
    async fn record_outcomes(self: Arc<Self>, mut done: mpsc::UnboundedReceiver<Finished>) {
        let mut batch = Vec::new();
        while done.recv_many(&mut batch, 1024).await > 0 {
            let mut attempts_left = 5;
            while let Err(err) = self.record_batch(&batch).await {
                attempts_left -= 1;
                if attempts_left == 0 {
                    tracing::error!(error = %err, rows = batch.len(), "recording webhook outcomes failed; the rows will be sent again when their lease expires");
                    break;
                }
                tracing::warn!(error = %err, "recording webhook outcomes failed, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for finished in &batch {
                self.claimed_counter(&finished.trigger)
                    .fetch_sub(1, Ordering::AcqRel);
            }
            batch.clear();
            // Finished rows may unblock later rows of the same key.
            self.wake.notify_one();
        }
    }

    async fn record_batch(&self, batch: &[Finished]) -> Result<(), String> {
        let client = self.db.get().await.map_err(|err| error_chain(&err))?;
        let loaded = self.registry.current();
        let mut delivered: HashMap<i16, Vec<i64>> = HashMap::new();
        for finished in batch {
            match &finished.outcome {
                Outcome::Delivered { status } => {
                    delivered
                        .entry(*status as i16)
                        .or_default()
                        .push(finished.id);
                }
                Outcome::Retry {
                    status,
                    error,
                    retry_after,
                } => {
                    let retries = loaded.set.get(&finished.trigger).map(|t| t.retry_count);
                    let exhausted = retries.is_some_and(|r| finished.attempts > r as i32);
                    if exhausted {
                        self.give_up(&client, finished, *status, error).await?;
                    } else {
                        let delay = self.config.retry.delay(finished.attempts, *retry_after);
                        self.schedule_retry(&client, finished, *status, error, delay)
                            .await?;
                    }
                }
                Outcome::Fail { status, error } => {
                    self.give_up(&client, finished, *status, error).await?;
                }
            }
        }
        for (status, ids) in delivered {
            client
                .execute(
                    "UPDATE walgate.webhook_deliveries
                     SET status = 'delivered', finished_at = now(), leased_until = NULL,
                         last_status = $2, last_error = NULL
                     WHERE id = ANY($1)",
                    &[&ids, &i32::from(status)],
                )
                .await
                .map_err(|err| error_chain(&err))?;
            metrics::counter!(names::WEBHOOK_DELIVERED).increment(ids.len() as u64);
        }
        Ok(())
    }

    async fn schedule_retry(
        &self,
        client: &tokio_postgres::Client,
        finished: &Finished,
        status: Option<u16>,
        error: &str,
        delay: Duration,
    ) -> Result<(), String> {
        tracing::info!(trigger = %finished.trigger, delivery_id = finished.id, attempts = finished.attempts, retry_in_ms = delay.as_millis() as u64, error, "webhook attempt failed, will retry");
        client
            .execute(
                "UPDATE walgate.webhook_deliveries
                 SET next_attempt_at = now() + $2::bigint * interval '1 millisecond',
                     leased_until = NULL, last_status = $3, last_error = $4
                 WHERE id = $1",
                &[
                    &finished.id,
                    &(delay.as_millis() as i64),
                    &status.map(i32::from),
                    &error,
                ],
            )
            .await
            .map_err(|err| error_chain(&err))?;
        metrics::counter!(names::WEBHOOK_RETRIES).increment(1);
        Ok(())
    }

    async fn give_up(
        &self,
        client: &tokio_postgres::Client,
        finished: &Finished,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), String> {
        tracing::warn!(trigger = %finished.trigger, delivery_id = finished.id, attempts = finished.attempts, error, "webhook delivery failed for good; kept as a dead letter");
        client
            .execute(
                "UPDATE walgate.webhook_deliveries
                 SET status = 'dead', finished_at = now(), leased_until = NULL,
                     last_status = $2, last_error = $3
                 WHERE id = $1",
                &[&finished.id, &status.map(i32::from), &error],
            )
            .await
            .map_err(|err| error_chain(&err))?;
        metrics::counter!(names::WEBHOOK_DEAD).increment(1);
        Ok(())
    }

    /// Deletes delivered rows older than the retention: every 20 poll intervals, at most once
    /// a minute and at least once a second apart.
    async fn delete_expired(self: Arc<Self>, shutdown: CancellationToken) {
        let period =
            (self.config.poll_interval * 20).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let retention_ms = self.config.retention.as_millis() as i64;
            let result = match self.db.get().await {
                Ok(client) => client
                    .execute(
                        "DELETE FROM walgate.webhook_deliveries
                         WHERE status = 'delivered'
                           AND finished_at < now() - $1::bigint * interval '1 millisecond'",
                        &[&retention_ms],
                    )
                    .await
                    .map_err(|err| error_chain(&err)),
                Err(err) => Err(error_chain(&err)),
            };
            match result {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::debug!(deleted, "deleted delivered webhook rows past retention")
                }
                Err(err) => tracing::warn!(error = %err, "deleting old webhook rows failed"),
            }
        }
    }
}
