//! walgate: a change-data-capture gateway for PostgreSQL.
//!
//! The modules follow the data: [`source`] reads the WAL through a logical replication slot,
//! [`decode`] turns `pgoutput` messages into [`change`] events, [`pipeline`] hands them to the
//! consumers and decides how far the slot may be confirmed, [`realtime`] fans events out to
//! WebSocket clients, and [`http`] serves them.

pub mod change;
pub mod cluster;
pub mod decode;
pub mod lsn;
pub mod source;
