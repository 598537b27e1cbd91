//! The WAL source: a logical replication connection to PostgreSQL.

pub mod connection;
