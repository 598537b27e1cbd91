//! Conversion of column text to the JSON that `to_jsonb` produces.
