//! Fan-out of change events to WebSocket clients.
//!
//! Each client has an outgoing queue bounded in bytes. The hub never waits on it, so a slow
//! client never slows the replication stream or other clients: when a frame does not fit, the
//! client is marked lagged, and its writer task sends an `error` with code `lagged` and closes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::protocol::notification_frame;
use crate::change::{EncodedEvent, EventId};
use crate::metrics as names;
use crate::pipeline::{Consumer, ConsumerError, EventBatch};

/// Identifier of one WebSocket connection, unique within the process.
pub type ClientId = u64;

/// The sending side of one client's outgoing queue.
///
/// The queue is bounded in bytes rather than messages, so its memory does not depend on how
/// large the rows are.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    pub id: ClientId,
    queue: mpsc::UnboundedSender<Arc<str>>,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    lagged: CancellationToken,
}

/// The receiving side of one client's queue, for its writer task.
#[derive(Debug)]
pub struct ClientQueue {
    receiver: mpsc::UnboundedReceiver<Arc<str>>,
    queued_bytes: Arc<AtomicUsize>,
}

impl ClientQueue {
    /// Receives the next frame, or None once every handle is dropped. Cancellation safe.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        self.receiver.recv().await
    }

    /// Releases a frame's bytes from the queue's budget, after it was written to the socket.
    pub fn release(&self, frame: &str) {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
    }
}

impl ClientHandle {
    /// Creates a client whose queue contains at most `max_queued_bytes` of frames; returns the
    /// handle and the receiving side for the client's writer task.
    pub fn new(max_queued_bytes: usize) -> (Self, ClientQueue) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (queue, receiver) = mpsc::unbounded_channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let handle = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue,
            queued_bytes: queued_bytes.clone(),
            max_queued_bytes,
            lagged: CancellationToken::new(),
        };
        (
            handle,
            ClientQueue {
                receiver,
                queued_bytes,
            },
        )
    }

    /// Queues a frame. Returns false, and marks the client lagged, when the frame does not fit
    /// in the queue's byte budget (a frame into an empty queue always fits); returns false when
    /// the client is gone.
    pub fn send(&self, frame: Arc<str>) -> bool {
        if self.lagged.is_cancelled() {
            return false;
        }
        let size = frame.len();
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        // A frame larger than the whole budget still goes to a client that has nothing
        // queued, so one huge row does not count as falling behind.
        if before > 0 && before + size > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            metrics::counter!(names::WEBSOCKET_LAGGED).increment(1);
            self.lagged.cancel();
            return false;
        }
        if self.queue.send(frame).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Completes when the client has been marked lagged.
    pub fn lagged(&self) -> &CancellationToken {
        &self.lagged
    }
}

/// One client's subscription to a table channel.
#[derive(Debug, Clone)]
struct Subscriber {
    channel: Arc<str>,
    client: ClientHandle,
}

/// Table subscriptions and the delivery of change events to them.
#[derive(Debug, Default)]
pub struct Hub {
    /// Subscribers by table, keyed by [`table_key`]. Keys are names rather than OIDs, so a
    /// subscription follows a table that is dropped and created again under the same name.
    tables: DashMap<String, Vec<Subscriber>>,
    /// The last event delivered. After the stream restarts, PostgreSQL sends again the
    /// transactions after the confirmed position; events up to this one were already
    /// delivered and are skipped.
    last_delivered: Mutex<Option<EventId>>,
}

impl Hub {
    /// Adds a subscription. Events for the relation are delivered from the next batch on, so
    /// the caller may acknowledge the subscription once this returns. Returns false when the
    /// client already has this channel.
    pub fn subscribe(&self, table: &str, channel: &str, client: &ClientHandle) -> bool {
        let mut subscribers = self.tables.entry(table.to_string()).or_default();
        let duplicate = subscribers
            .iter()
            .any(|s| s.client.id == client.id && &*s.channel == channel);
        if !duplicate {
            subscribers.push(Subscriber {
                channel: channel.into(),
                client: client.clone(),
            });
        }
        !duplicate
    }

    /// Removes one subscription; returns whether it existed.
    pub fn unsubscribe(&self, table: &str, channel: &str, client: ClientId) -> bool {
        let mut removed = false;
        if let Some(mut subscribers) = self.tables.get_mut(table) {
            let before = subscribers.len();
            subscribers.retain(|s| !(s.client.id == client && &*s.channel == channel));
            removed = subscribers.len() != before;
        }
        self.tables
            .remove_if(table, |_, subscribers| subscribers.is_empty());
        removed
    }

    /// Removes every subscription of a client.
    pub fn remove_client(&self, client: ClientId) {
        self.tables
            .iter_mut()
            .for_each(|mut entry| entry.retain(|s| s.client.id != client));
        self.tables.retain(|_, subscribers| !subscribers.is_empty());
    }

    /// Number of table subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.tables.iter().map(|entry| entry.len()).sum()
    }

    /// Delivers a batch to subscribers. Each event's notification frame is built once per
    /// channel name and shared by every client subscribed under that name.
    pub fn deliver(&self, events: &EventBatch) {
        let mut last_delivered = self
            .last_delivered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut queued = 0u64;
        for encoded in events {
            let id = encoded.event.id;
            if last_delivered.is_some_and(|last| id <= last) {
                continue;
            }
            *last_delivered = Some(id);
            let key = table_key(&encoded.event.schema, &encoded.event.table);
            if let Some(subscribers) = self.tables.get(&key) {
                queued += fan_out(encoded, &subscribers);
            }
        }
        metrics::counter!(names::WEBSOCKET_NOTIFICATIONS).increment(queued);
    }
}

/// Builds the hub key of a table: schema and name joined by a NUL byte, which neither contains.
pub fn table_key(schema: &str, table: &str) -> String {
    let mut key = String::with_capacity(schema.len() + table.len() + 1);
    key.push_str(schema);
    key.push('\0');
    key.push_str(table);
    key
}

fn fan_out(encoded: &EncodedEvent, subscribers: &[Subscriber]) -> u64 {
    // Most events go to one or two channel names, so a short list beats a map.
    let mut frames: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(2);
    let mut queued = 0;
    for subscriber in subscribers {
        let frame = match frames.iter().find(|(name, _)| *name == subscriber.channel) {
            Some((_, frame)) => frame.clone(),
            None => {
                let frame: Arc<str> = notification_frame(&subscriber.channel, &encoded.json).into();
                frames.push((subscriber.channel.clone(), frame.clone()));
                frame
            }
        };
        if subscriber.client.send(frame) {
            queued += 1;
        }
    }
    queued
}

impl Consumer for Hub {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn accept<'a>(&'a self, events: &'a EventBatch) -> BoxFuture<'a, Result<(), ConsumerError>> {
        self.deliver(events);
        Box::pin(async { Ok(()) })
    }
}
