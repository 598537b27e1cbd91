//! Integration tests against real PostgreSQL clusters that the tests start themselves.

mod support;

mod cluster;
mod replication_connection;
