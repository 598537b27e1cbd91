//! The WAL source: a logical replication connection to PostgreSQL.

mod auth;
pub mod connection;
mod error;
mod protocol;
pub mod setup;

pub use error::SourceError;
