//! Conversion of `record_out` text (`(1,"a b",)`) to a JSON object.
//!
//! `record_out` prints the non-dropped attributes in order between parentheses, separated by
//! commas. An empty unquoted field is NULL. A field is double-quoted when it is empty or contains
//! quotes, backslashes, parentheses, commas or whitespace, and inside quotes `"` and `\` are
//! doubled. `record_in` also accepts a backslash before any character, so both escapes are
//! decoded. `to_jsonb` makes an object keyed by attribute name.

use crate::decode::types::PgType;
use crate::decode::value::{write_json, write_json_string, ValueError};

use super::value::scratch;

/// Appends the JSON object for record text of composite type `ty` with attributes `fields`.
pub(crate) fn write_record(
    out: &mut String,
    text: &str,
    ty: &PgType,
    fields: &[(String, std::sync::Arc<PgType>)],
) -> Result<(), ValueError> {
    let invalid = |reason| ValueError::invalid(ty, text, reason);
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'(') {
        return Err(invalid("expected ( at the start of the record"));
    }
    let mut pos = 1;
    out.push('{');
    for (index, (name, field_type)) in fields.iter().enumerate() {
        if index > 0 {
            match bytes.get(pos) {
                Some(b',') => pos += 1,
                Some(b')') => return Err(ValueError::field_count(ty, text, fields.len())),
                _ => return Err(invalid("expected a comma between record fields")),
            }
            out.push(',');
        }
        write_json_string(out, name);
        out.push(':');
        pos = write_field(out, text, pos, field_type).map_err(|err| match err {
            FieldError::Element(err) => err,
            FieldError::Syntax(reason) => invalid(reason),
        })?;
    }
    match bytes.get(pos) {
        Some(b')') if pos + 1 == bytes.len() => {}
        Some(b',') => return Err(ValueError::field_count(ty, text, fields.len())),
        _ => return Err(invalid("expected ) at the end of the record")),
    }
    out.push('}');
    Ok(())
}

/// Error of one field: either the field value's own conversion error or a syntax problem.
enum FieldError {
    Element(ValueError),
    Syntax(&'static str),
}

/// Converts the field starting at `text[pos]` and returns the position after it.
fn write_field(out: &mut String, text: &str, pos: usize, ty: &PgType) -> Result<usize, FieldError> {
    let bytes = text.as_bytes();
    let (content, end, escaped) = match bytes.get(pos) {
        Some(b',' | b')') => {
            out.push_str("null");
            return Ok(pos);
        }
        Some(b'"') => scan_quoted(text, pos)?,
        Some(_) => scan_unquoted(text, pos)?,
        None => return Err(FieldError::Syntax("unterminated record")),
    };
    let result = if escaped {
        scratch::with_buffer(|buffer| {
            unescape_field(buffer, content);
            write_json(out, buffer, ty)
        })
    } else {
        write_json(out, content, ty)
    };
    result.map_err(FieldError::Element)?;
    Ok(end)
}

/// Finds the quoted field at `text[pos]`: returns its raw content, the position after the
/// closing quote, and whether the content has escapes.
fn scan_quoted(text: &str, pos: usize) -> Result<(&str, usize, bool), FieldError> {
    const UNTERMINATED: FieldError = FieldError::Syntax("unterminated quoted record field");
    let bytes = text.as_bytes();
    let start = pos + 1;
    let mut end = start;
    let mut escaped = false;
    loop {
        match bytes.get(end) {
            Some(b'"') if bytes.get(end + 1) == Some(&b'"') => {
                escaped = true;
                end += 2;
            }
            Some(b'"') => break,
            Some(b'\\') => {
                escaped = true;
                end += 2;
            }
            Some(_) => end += 1,
            None => return Err(UNTERMINATED),
        }
    }
    let content = text.get(start..end).ok_or(UNTERMINATED)?;
    Ok((content, end + 1, escaped))
}

/// Finds the unquoted field at `text[pos]`, which ends at a comma or `)`.
fn scan_unquoted(text: &str, pos: usize) -> Result<(&str, usize, bool), FieldError> {
    let bytes = text.as_bytes();
    let mut end = pos;
    let mut escaped = false;
    while let Some(&byte) = bytes.get(end) {
        match byte {
            b',' | b')' => break,
            b'\\' => {
                escaped = true;
                end += 2;
            }
            _ => end += 1,
        }
    }
    let content = text
        .get(pos..end)
        .ok_or(FieldError::Syntax("unterminated record field"))?;
    Ok((content, end, escaped))
}

/// Writes a field's raw content to `buffer` with `""` read as `"` and `\c` as `c`.
///
/// Unquoted content never contains `"` pairs from `record_out`, so decoding both escapes in
/// either kind of field is safe.
fn unescape_field(buffer: &mut String, content: &str) {
    let mut chars = content.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => buffer.extend(chars.next()),
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                buffer.push('"');
            }
            _ => buffer.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decode::types::TypeKind;

    fn pg_type(name: &str, kind: TypeKind) -> Arc<PgType> {
        Arc::new(PgType {
            oid: 0,
            name: name.into(),
            kind,
        })
    }

    fn composite(fields: &[(&str, Arc<PgType>)]) -> Arc<PgType> {
        let fields = fields
            .iter()
            .map(|(name, ty)| (name.to_string(), Arc::clone(ty)))
            .collect();
        pg_type("composite", TypeKind::Composite { fields })
    }

    fn convert(text: &str, ty: &PgType) -> Result<String, ValueError> {
        let mut out = String::new();
        write_json(&mut out, text, ty).map(|()| out)
    }

    #[test]
    fn fields_quoting_and_nulls() {
        let text = pg_type("text", TypeKind::Text);
        let int = pg_type("int4", TypeKind::Number);
        let record = composite(&[("n", int), ("a", text.clone()), ("b", text.clone())]);
        let cases = [
            (r#"(1,"a b",)"#, r#"{"n":1,"a":"a b","b":null}"#),
            (r#"(,"",x)"#, r#"{"n":null,"a":"","b":"x"}"#),
            (r#"(2,"""",\))"#, r#"{"n":2,"a":"\"","b":")"}"#),
            (
                r#"(3,"a\\b","say ""hi""")"#,
                r#"{"n":3,"a":"a\\b","b":"say \"hi\""}"#,
            ),
            (r#"(4,"(,)",é)"#, r#"{"n":4,"a":"(,)","b":"é"}"#),
        ];
        for (input, expected) in cases {
            assert_eq!(convert(input, &record).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn nested_composites_and_arrays() {
        let int = pg_type("int4", TypeKind::Number);
        let texts = pg_type(
            "_text",
            TypeKind::Array {
                element: pg_type("text", TypeKind::Text),
                delimiter: b',',
            },
        );
        let inner = composite(&[("a", int.clone()), ("b", texts)]);
        let inners = pg_type(
            "_inner",
            TypeKind::Array {
                element: inner.clone(),
                delimiter: b',',
            },
        );
        let numeric = pg_type("numeric", TypeKind::Number);
        let outer = composite(&[("x", inner), ("y", inners), ("z", numeric)]);
        let text = r#"("(1,""{a,""""b c""""}"")","{""(2,{})"",NULL}",1.50)"#;
        let expected = r#"{"x":{"a":1,"b":["a","b c"]},"y":[{"a":2,"b":[]},null],"z":1.50}"#;
        assert_eq!(convert(text, &outer).unwrap(), expected);
    }

    #[test]
    fn single_and_zero_fields() {
        let one = composite(&[("only", pg_type("int4", TypeKind::Number))]);
        assert_eq!(convert("()", &one).unwrap(), r#"{"only":null}"#);
        let none = composite(&[]);
        assert_eq!(convert("()", &none).unwrap(), "{}");
    }

    #[test]
    fn field_count_mismatch_reported() {
        let int = pg_type("int4", TypeKind::Number);
        let pair = composite(&[("a", int.clone()), ("b", int)]);
        let fewer = convert("(1)", &pair).unwrap_err();
        assert!(
            matches!(fewer, ValueError::FieldCount { expected: 2, .. }),
            "{fewer}"
        );
        let more = convert("(1,2,3)", &pair).unwrap_err();
        assert!(
            matches!(more, ValueError::FieldCount { expected: 2, .. }),
            "{more}"
        );
    }

    #[test]
    fn malformed_records_rejected() {
        let int = pg_type("int4", TypeKind::Number);
        let pair = composite(&[("a", int.clone()), ("b", int)]);
        for text in ["", "1,2", "(1,2", r#"(1,"2)"#, "(1,2)x", "(1;2)"] {
            assert!(convert(text, &pair).is_err(), "input {text:?}");
        }
    }
}
