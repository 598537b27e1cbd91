//! From decoded events to consumers, and from consumers back to the slot position.
//!
//! The [`replicator`] reads the slot, decodes each message and hands events to every
//! [`Consumer`] in commit order. The slot is confirmed past a transaction only after every
//! consumer has accepted all of that transaction's events, so a crash at any point re-delivers
//! rather than skips.

pub mod replicator;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::change::EncodedEvent;

/// A batch of events in commit order. It may span several transactions and may end inside one.
pub type EventBatch = [Arc<EncodedEvent>];

/// Error from a consumer that could not accept a batch.
#[derive(Debug, thiserror::Error)]
#[error("consumer {consumer} could not accept events: {message}")]
pub struct ConsumerError {
    pub consumer: &'static str,
    pub message: String,
}

/// Something that receives change events.
///
/// Contract:
/// - `accept` is called from the replication task only, one call at a time, with events in
///   commit order and, inside a transaction, in the order PostgreSQL sent them. A transaction's
///   events may arrive over several calls.
/// - When `accept` returns `Ok`, the consumer has taken responsibility for the events: the slot
///   may be confirmed past their transaction once its Commit has been seen, and they will not be
///   offered again unless the stream restarts.
/// - After an error (or a crash) the stream restarts from the slot's confirmed position, so a
///   consumer receives events again from the first unconfirmed transaction. Consumers that must not
///   repeat work deduplicate by event id.
/// - `accept` must not wait on anything slow, such as a network client: the replication stream
///   and every other consumer wait for it.
pub trait Consumer: Send + Sync {
    /// Returns a short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Takes a batch of events.
    fn accept<'a>(&'a self, events: &'a EventBatch) -> BoxFuture<'a, Result<(), ConsumerError>>;
}

/// The consumers of one gateway, called in order.
#[derive(Clone, Default)]
pub struct Consumers {
    consumers: Vec<Arc<dyn Consumer>>,
}

impl Consumers {
    /// Adds a consumer.
    pub fn push(&mut self, consumer: Arc<dyn Consumer>) {
        self.consumers.push(consumer);
    }

    /// Hands a batch to every consumer, stopping at the first error.
    pub async fn accept(&self, events: &EventBatch) -> Result<(), ConsumerError> {
        for consumer in &self.consumers {
            consumer.accept(events).await?;
        }
        Ok(())
    }
}
