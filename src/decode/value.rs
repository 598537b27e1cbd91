//! Conversion of column text to the JSON that `to_jsonb` produces.
//!
//! Column values arrive as the text of each type's output function, printed with
//! [`OUTPUT_SETTINGS`](super::OUTPUT_SETTINGS). [`write_json`] turns that text into the JSON that
//! `to_jsonb` returns for the same value in a session with `TimeZone = UTC`, appending it to a
//! caller's buffer so that a row image is built without per-value allocations.

mod json;
pub(super) mod scratch;

use super::types::{PgType, TypeKind};
use super::{array, datetime, numeric, record};

/// Error for column text that cannot be converted to JSON.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The text does not have the form the type's output function prints, or PostgreSQL's
    /// `to_jsonb` would reject the value too (for example json with `\u0000`).
    #[error("cannot convert {type_name} value {excerpt:?} to JSON: {reason}")]
    Invalid {
        type_name: String,
        excerpt: String,
        reason: &'static str,
    },
    /// Record text whose field count differs from the composite type's attributes, which happens
    /// when the type changed after it was resolved: invalidate it in the type registry.
    #[error(
        "record value {excerpt:?} does not have the {expected} attributes of composite type \
         {type_name}; the type may have changed since it was resolved"
    )]
    FieldCount {
        type_name: String,
        excerpt: String,
        expected: usize,
    },
}

/// Maximum characters of the offending text quoted in an error.
const EXCERPT_CHARS: usize = 60;

impl ValueError {
    pub(crate) fn invalid(ty: &PgType, text: &str, reason: &'static str) -> Self {
        ValueError::Invalid {
            type_name: ty.name.clone(),
            excerpt: excerpt(text),
            reason,
        }
    }

    pub(crate) fn field_count(ty: &PgType, text: &str, expected: usize) -> Self {
        ValueError::FieldCount {
            type_name: ty.name.clone(),
            excerpt: excerpt(text),
            expected,
        }
    }
}

/// Returns the start of `text`, cut at a character boundary and marked with `...` when cut.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Appends the JSON for one column's text to `out`.
///
/// `text` is the output-function text of a non-null value of type `ty`. Numbers become JSON
/// numbers in `numeric_out` form, booleans `true`/`false`, json and jsonb are embedded,
/// timestamps get the XSD form, arrays and composites become JSON arrays and objects, and every
/// other type becomes a JSON string of its text. On error `out` is left as it was.
pub fn write_json(out: &mut String, text: &str, ty: &PgType) -> Result<(), ValueError> {
    let start = out.len();
    let result = write_kind(out, text, ty);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_kind(out: &mut String, text: &str, ty: &PgType) -> Result<(), ValueError> {
    let invalid = |reason| ValueError::invalid(ty, text, reason);
    match &ty.kind {
        TypeKind::Bool => match text {
            "t" => out.push_str("true"),
            "f" => out.push_str("false"),
            _ => return Err(invalid("expected t or f")),
        },
        TypeKind::Number => {
            numeric::write_number(out, text).map_err(|err| invalid(err.reason()))?;
        }
        TypeKind::Json => json::write_normalized(out, text).map_err(invalid)?,
        // jsonb_out text is already normalised JSON.
        TypeKind::Jsonb => out.push_str(text),
        TypeKind::Date => datetime::write_date(out, text).map_err(invalid)?,
        TypeKind::Timestamp => datetime::write_timestamp(out, text, false).map_err(invalid)?,
        TypeKind::TimestampTz => datetime::write_timestamp(out, text, true).map_err(invalid)?,
        // to_jsonb prints time and timetz with their output functions, as plain strings.
        TypeKind::Time | TypeKind::TimeTz | TypeKind::Text => write_json_string(out, text),
        TypeKind::Array { element, delimiter } => {
            array::write_array(out, text, ty, element, *delimiter)?;
        }
        TypeKind::Composite { fields } => record::write_record(out, text, ty, fields)?,
    }
    Ok(())
}

/// Appends `s` as a JSON string literal (quoted and escaped).
///
/// Escapes `"`, `\` and control characters below U+0020, and copies everything else as UTF-8.
pub fn write_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Appends the JSON string escaping of `s`, without quotes. Equal strings give equal output.
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    while let Some(offset) = bytes[run_start..]
        .iter()
        .position(|&byte| needs_escape(byte))
    {
        let index = run_start + offset;
        // `index` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[run_start..index]);
        let byte = bytes[index];
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => push_unicode_escape(out, byte),
        }
        run_start = index + 1;
    }
    out.push_str(&s[run_start..]);
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

fn push_unicode_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u00");
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_string(s: &str) -> String {
        let mut out = String::new();
        write_json_string(&mut out, s);
        out
    }

    #[test]
    fn json_string_escapes() {
        assert_eq!(json_string("plain"), r#""plain""#);
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(json_string("\u{1}\u{1f}"), r#""\u0001\u001f""#);
        assert_eq!(json_string("é😀\u{7f}"), "\"é😀\u{7f}\"");
        assert_eq!(json_string(""), r#""""#);
    }

    #[test]
    fn json_string_parses_back() {
        let original = "quote \" backslash \\ newline \n bell \u{7} 日本";
        let parsed: String = serde_json::from_str(&json_string(original)).unwrap();
        assert_eq!(parsed, original);
    }

    #[test]
    fn excerpt_cuts_long_text() {
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(excerpt("short"), "short");
    }
}
