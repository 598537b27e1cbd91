//! Realtime delivery to WebSocket clients: channel names, the message protocol and the fan-out
//! hub.

pub mod channel;
pub mod hub;
pub mod protocol;

pub use hub::{ClientHandle, ClientId, ClientQueue, Hub};
