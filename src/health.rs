//! Liveness of the replication stream, as `GET /healthz` reports it.

use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::lsn::Lsn;

/// State of the replication stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StreamState {
    /// Connecting for the first time.
    Starting,
    /// Receiving from the slot.
    Streaming {
        slot: String,
        /// The position the slot was last confirmed at.
        confirmed_lsn: Lsn,
    },
    /// Not streaming; the reason explains why, and the gateway is retrying.
    Down { reason: String },
    /// Shutting down.
    Stopped,
}

/// Shared handle to the stream state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<RwLock<StreamState>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Arc::new(RwLock::new(StreamState::Starting)),
        }
    }
}

impl Health {
    /// Returns the current state.
    pub fn get(&self) -> StreamState {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the state.
    pub fn set(&self, state: StreamState) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// Records a newly confirmed position while streaming.
    pub fn set_confirmed(&self, lsn: Lsn) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let StreamState::Streaming { confirmed_lsn, .. } = &mut *state {
            *confirmed_lsn = lsn;
        }
    }

    /// True while the replication stream is live.
    pub fn is_streaming(&self) -> bool {
        matches!(self.get(), StreamState::Streaming { .. })
    }
}
