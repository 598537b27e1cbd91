//! Conversion of `array_out` text (`{1,"a b",NULL}`) to a JSON array.
//!
//! `array_out` prints `{` and `}` around each dimension and separates items with the element
//! type's delimiter (`,` for every built-in type except `box`, which uses `;`). An element is
//! double-quoted when it is empty, contains braces, the delimiter, quotes, backslashes or
//! whitespace, or reads `NULL`. Inside quotes, `"` and `\` are backslash-escaped. An unquoted
//! `NULL` is a null element. Arrays whose lower bounds are not all 1 start with their bounds,
//! like `[2:3]={1,2}`, which `to_jsonb` drops. Multi-dimensional arrays become nested JSON
//! arrays.
//!
//! `int2vector` and `oidvector` print their elements separated by single spaces, without braces.
//! The type registry gives them the delimiter `b' '`, and such text is converted as a
//! one-dimensional array.

use crate::decode::types::PgType;
use crate::decode::value::{write_json, ValueError};

use super::value::scratch;

/// Parser position relative to the items of the innermost open dimension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after `{`: an item or `}` follows.
    Opened,
    /// Just after a delimiter: an item follows.
    Item,
    /// Just after an item: a delimiter or `}` follows.
    AfterItem,
}

/// Appends the JSON array for array text of type `ty` whose elements are of type `element`.
pub(crate) fn write_array(
    out: &mut String,
    text: &str,
    ty: &PgType,
    element: &PgType,
    delimiter: u8,
) -> Result<(), ValueError> {
    let invalid = |reason| ValueError::invalid(ty, text, reason);
    let bytes = text.as_bytes();
    let start = match bytes.first() {
        Some(b'[') => skip_bounds(bytes).ok_or_else(|| invalid("invalid array bounds"))?,
        Some(b'{') => 0,
        _ if delimiter == b' ' => return write_vector(out, text, element),
        _ => return Err(invalid("expected { at the start of the array")),
    };
    if bytes.get(start) != Some(&b'{') {
        return Err(invalid("expected { after the array bounds"));
    }

    let mut pos = start + 1;
    let mut depth = 1;
    let mut state = State::Opened;
    out.push('[');
    while depth > 0 {
        let Some(&byte) = bytes.get(pos) else {
            return Err(invalid("unterminated array"));
        };
        match (byte, state) {
            (b'{', State::Opened | State::Item) => {
                out.push('[');
                depth += 1;
                pos += 1;
                state = State::Opened;
            }
            (b'}', State::Opened | State::AfterItem) => {
                out.push(']');
                depth -= 1;
                pos += 1;
                state = State::AfterItem;
            }
            (_, State::AfterItem) if byte == delimiter => {
                out.push(',');
                pos += 1;
                state = State::Item;
            }
            (b'"', State::Opened | State::Item) => {
                pos = write_quoted(out, text, pos, element).map_err(|err| err.or(invalid))?;
                state = State::AfterItem;
            }
            (_, State::Opened | State::Item) => {
                pos = write_unquoted(out, text, pos, element, delimiter)
                    .map_err(|err| err.or(invalid))?;
                state = State::AfterItem;
            }
            _ => return Err(invalid("unexpected character in array")),
        }
    }
    if pos != bytes.len() {
        return Err(invalid("unexpected text after the array"));
    }
    Ok(())
}

/// Returns the position after `[lower:upper]...=`, checking each bound is an integer.
fn skip_bounds(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while bytes.get(pos) == Some(&b'[') {
        let close = pos + bytes[pos..].iter().position(|&byte| byte == b']')?;
        let (lower, upper) = std::str::from_utf8(&bytes[pos + 1..close])
            .ok()?
            .split_once(':')?;
        lower.parse::<i32>().ok()?;
        upper.parse::<i32>().ok()?;
        pos = close + 1;
    }
    (pos > 0 && bytes.get(pos) == Some(&b'=')).then_some(pos + 1)
}

/// Error of an item: either the element's own conversion error or a syntax problem.
enum ItemError {
    Element(ValueError),
    Syntax(&'static str),
}

impl ItemError {
    /// Turns a syntax problem into an error about the whole array.
    fn or(self, invalid: impl Fn(&'static str) -> ValueError) -> ValueError {
        match self {
            ItemError::Element(err) => err,
            ItemError::Syntax(reason) => invalid(reason),
        }
    }
}

/// Converts the quoted item starting at `text[pos]` and returns the position after it.
fn write_quoted(
    out: &mut String,
    text: &str,
    pos: usize,
    element: &PgType,
) -> Result<usize, ItemError> {
    let bytes = text.as_bytes();
    let content_start = pos + 1;
    let mut end = content_start;
    let mut escaped = false;
    loop {
        match bytes.get(end) {
            Some(b'"') => break,
            Some(b'\\') => {
                escaped = true;
                end += 2;
            }
            Some(_) => end += 1,
            None => return Err(ItemError::Syntax("unterminated quoted array element")),
        }
    }
    let content = text
        .get(content_start..end)
        .ok_or(ItemError::Syntax("unterminated quoted array element"))?;
    let result = if escaped {
        scratch::with_buffer(|buffer| {
            unescape_backslashes(buffer, content);
            write_json(out, buffer, element)
        })
    } else {
        write_json(out, content, element)
    };
    result.map_err(ItemError::Element)?;
    Ok(end + 1)
}

/// Converts the unquoted item starting at `text[pos]` and returns the position after it.
fn write_unquoted(
    out: &mut String,
    text: &str,
    pos: usize,
    element: &PgType,
    delimiter: u8,
) -> Result<usize, ItemError> {
    let bytes = text.as_bytes();
    let mut end = pos;
    let mut escaped = false;
    while let Some(&byte) = bytes.get(end) {
        if byte == delimiter || byte == b'}' {
            break;
        }
        if byte == b'\\' {
            escaped = true;
            end += 1;
        }
        end += 1;
    }
    let item = text
        .get(pos..end)
        .ok_or(ItemError::Syntax("unterminated array element"))?;
    let result = if item.eq_ignore_ascii_case("NULL") {
        out.push_str("null");
        Ok(())
    } else if escaped {
        scratch::with_buffer(|buffer| {
            unescape_backslashes(buffer, item);
            write_json(out, buffer, element)
        })
    } else {
        write_json(out, item, element)
    };
    result.map_err(ItemError::Element)?;
    Ok(end)
}

/// Writes `text` to `buffer` with each `\c` replaced by `c`.
fn unescape_backslashes(buffer: &mut String, text: &str) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => buffer.extend(chars.next()),
            _ => buffer.push(c),
        }
    }
}

/// Converts space-separated `int2vector`/`oidvector` text such as `1 2 3`.
fn write_vector(out: &mut String, text: &str, element: &PgType) -> Result<(), ValueError> {
    out.push('[');
    for (index, item) in text.split(' ').filter(|item| !item.is_empty()).enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_json(out, item, element)?;
    }
    out.push(']');
    Ok(())
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

    fn array_of(element: Arc<PgType>, delimiter: u8) -> Arc<PgType> {
        pg_type("array", TypeKind::Array { element, delimiter })
    }

    fn convert(text: &str, ty: &PgType) -> Result<String, ValueError> {
        let mut out = String::new();
        write_json(&mut out, text, ty).map(|()| out)
    }

    #[test]
    fn text_items_quoting_and_nulls() {
        let texts = array_of(pg_type("text", TypeKind::Text), b',');
        let cases = [
            ("{}", "[]"),
            ("{a,b}", r#"["a","b"]"#),
            (r#"{"NULL",NULL,null,""}"#, r#"["NULL",null,null,""]"#),
            (r#"{"a\\b","\"q\""," x "}"#, r#"["a\\b","\"q\""," x "]"#),
            (r#"{"{,}","é😀"}"#, r#"["{,}","é😀"]"#),
            (r"{a\,b}", r#"["a,b"]"#),
        ];
        for (text, expected) in cases {
            assert_eq!(convert(text, &texts).unwrap(), expected, "input {text}");
        }
    }

    #[test]
    fn dimensions_and_bounds() {
        let ints = array_of(pg_type("int4", TypeKind::Number), b',');
        let cases = [
            ("{{1,2},{3,NULL}}", "[[1,2],[3,null]]"),
            ("[2:3]={1,2}", "[1,2]"),
            ("[1:1][-3:-2]={{1,2}}", "[[1,2]]"),
            ("{{{1}},{{2}}}", "[[[1]],[[2]]]"),
        ];
        for (text, expected) in cases {
            assert_eq!(convert(text, &ints).unwrap(), expected, "input {text}");
        }
    }

    #[test]
    fn box_delimiter_semicolon() {
        let boxes = array_of(pg_type("box", TypeKind::Text), b';');
        let json = convert("{(1,1),(0,0);(2,2),(1,1)}", &boxes).unwrap();
        assert_eq!(json, r#"["(1,1),(0,0)","(2,2),(1,1)"]"#);
    }

    #[test]
    fn elements_converted_by_kind() {
        let jsons = array_of(pg_type("json", TypeKind::Json), b',');
        let json = convert(r#"{"{\"a\":1e2}",NULL}"#, &jsons).unwrap();
        assert_eq!(json, r#"[{"a":100},null]"#);
        let bools = array_of(pg_type("bool", TypeKind::Bool), b',');
        assert_eq!(convert("{t,f}", &bools).unwrap(), "[true,false]");
        let stamps = array_of(pg_type("timestamptz", TypeKind::TimestampTz), b',');
        let json = convert(r#"{"2020-01-01 00:00:00+00",infinity}"#, &stamps).unwrap();
        assert_eq!(json, r#"["2020-01-01T00:00:00+00:00","infinity"]"#);
    }

    #[test]
    fn vectors_without_braces() {
        let int2vector = array_of(pg_type("int2", TypeKind::Number), b' ');
        assert_eq!(convert("1 2 3", &int2vector).unwrap(), "[1,2,3]");
        assert_eq!(convert("", &int2vector).unwrap(), "[]");
        let nested = array_of(int2vector, b',');
        assert_eq!(convert(r#"{"","1 2"}"#, &nested).unwrap(), "[[],[1,2]]");
    }

    #[test]
    fn malformed_arrays_rejected() {
        let ints = array_of(pg_type("int4", TypeKind::Number), b',');
        let invalid = [
            "",
            "1,2",
            "{1,2",
            "{1,2}}",
            "{1,,2}",
            "[2:3]{1}",
            "[x:3]={1}",
            r#"{"1}"#,
            "{1}x",
            "{x}",
        ];
        for text in invalid {
            assert!(convert(text, &ints).is_err(), "input {text:?}");
        }
    }

    #[test]
    fn element_error_names_element_type() {
        let ints = array_of(pg_type("int4", TypeKind::Number), b',');
        let err = convert("{1,abc}", &ints).unwrap_err().to_string();
        assert!(err.contains("int4"), "{err}");
        assert!(err.contains("abc"), "{err}");
    }
}
