//! Event triggers: durable, ordered, at-least-once webhooks for changes made by any client.
//!
//! [`outbox::Outbox`] is a pipeline consumer that stores one row per matching event in
//! `walgate.webhook_deliveries` before the slot may move past the event. The
//! [`dispatch::Dispatcher`] claims due rows, sends them ([`delivery`]), and records the outcome.
//! [`admin`] serves the admin API over the same table.

pub mod admin;
pub mod definition;
pub mod delivery;
pub mod dispatch;
pub mod outbox;
pub mod registry;
pub mod signing;
