//! A replication-protocol connection built on postgres-protocol.
