//! Integration tests against real PostgreSQL clusters that the tests start themselves.

mod support;

mod cluster;
mod crash_resume;
mod health;
mod large_transaction;
mod replica_identity;
mod replication_connection;
mod rest_auth;
mod rest_crud;
mod rest_filters;
mod rest_kit;
mod rest_stream;
mod rest_wal;
mod schema_changes;
mod stream_events;
mod trigger_definitions;
mod values;
mod webhook_durability;
mod webhooks;
mod ws_protocol;
