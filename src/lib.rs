//! walgate: a change-data-capture gateway for PostgreSQL.
//!
//! The modules follow the data: [`source`] reads the WAL through a logical replication slot,
//! [`decode`] turns `pgoutput` messages into [`change`] events, [`pipeline`] hands them to the
//! consumers and decides how far the slot may be confirmed, [`realtime`] fans events out to
//! WebSocket clients, [`rest`] reads and writes tables for HTTP clients, and [`http`] serves
//! both.

pub mod auth;
pub mod catalog;
pub mod change;
pub mod cluster;
pub mod config;
pub mod db;
pub mod decode;
pub mod dev;
pub mod gateway;
pub mod health;
pub mod http;
pub mod lsn;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod realtime;
pub mod report;
pub mod rest;
pub mod source;
pub mod webhooks;
