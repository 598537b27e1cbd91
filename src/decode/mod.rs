//! Decoding of `pgoutput` messages into change events.

mod array;
mod datetime;
mod decoder;
mod numeric;
pub mod pgoutput;
mod record;
pub mod relation;
pub mod types;
pub mod value;

pub use decoder::{DecodeError, Decoded, Decoder, LogicalMessage, INTERNAL_SCHEMA};

/// Session settings for every connection whose text output walgate decodes.
///
/// `pgoutput` sends column values as the text of each type's output function, run in the
/// walsender with that connection's settings. These make the text predictable and equal to what
/// `to_jsonb` produces in a session with `TimeZone = UTC`: ISO dates, `postgres` interval style, hex
/// bytea and shortest-exact floats (`extra_float_digits = 1`, the default since PostgreSQL 12).
pub const OUTPUT_SETTINGS: &[(&str, &str)] = &[
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
    ("client_encoding", "UTF8"),
];

/// Formats [`OUTPUT_SETTINGS`] as a libpq `options` value (`-c name=value ...`).
pub fn output_settings_options() -> String {
    OUTPUT_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}
