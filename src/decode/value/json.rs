//! Normalisation of json text to the value jsonb would hold.
//!
//! `to_jsonb` parses json into jsonb: numbers go through `numeric_in` (so `1e2` becomes `100`),
//! escapes are decoded, and of duplicate object keys only the last one stays. This module does
//! the same in one pass that writes straight to the output. It keeps key order and drops
//! whitespace, where jsonb sorts keys, so the output equals jsonb's once both are parsed.
//! Nesting is tracked on a heap stack, so deep documents cannot overflow the thread's stack.

use std::cell::RefCell;

use super::push_escaped;
use crate::decode::numeric;

/// One object member written to the output: `"key":value` at `start..end`, key at `start..key_end`.
#[derive(Clone, Copy)]
struct Member {
    start: usize,
    key_end: usize,
    end: usize,
}

/// An open container. Objects remember where they start in the output and their first member.
enum Frame {
    Array,
    Object { start: usize, first_member: usize },
}

/// Reusable stacks, kept per thread so that normalising a document allocates nothing.
#[derive(Default)]
struct Stacks {
    frames: Vec<Frame>,
    members: Vec<Member>,
}

thread_local! {
    static STACKS: RefCell<Option<Stacks>> = const { RefCell::new(None) };
}

/// Appends the normalised form of json `text` to `out`.
///
/// Fails on text that is not JSON, and on what jsonb rejects: `\u0000`, unpaired surrogate
/// escapes and numbers beyond the range of numeric. On error `out` may hold partial output.
pub(crate) fn write_normalized(out: &mut String, text: &str) -> Result<(), &'static str> {
    let mut stacks = STACKS
        .with(|cell| cell.borrow_mut().take())
        .unwrap_or_default();
    stacks.frames.clear();
    stacks.members.clear();
    let result = Normalizer {
        text,
        pos: 0,
        out,
        stacks: &mut stacks,
    }
    .run();
    STACKS.with(|cell| *cell.borrow_mut() = Some(stacks));
    result
}

struct Normalizer<'a> {
    text: &'a str,
    pos: usize,
    out: &'a mut String,
    stacks: &'a mut Stacks,
}

impl Normalizer<'_> {
    fn run(&mut self) -> Result<(), &'static str> {
        self.value()?;
        loop {
            // A value just ended: record the end of the member it belongs to.
            if let Some(Frame::Object { .. }) = self.stacks.frames.last() {
                if let Some(member) = self.stacks.members.last_mut() {
                    member.end = self.out.len();
                }
            }
            self.skip_whitespace();
            let Some(frame) = self.stacks.frames.last() else {
                return match self.pos == self.text.len() {
                    true => Ok(()),
                    false => Err("unexpected text after the JSON value"),
                };
            };
            let is_object = matches!(frame, Frame::Object { .. });
            match (self.next_byte(), is_object) {
                (Some(b','), false) => {
                    self.out.push(',');
                    self.value()?;
                }
                (Some(b','), true) => {
                    self.out.push(',');
                    self.skip_whitespace();
                    self.member_key()?;
                    self.value()?;
                }
                (Some(b']'), false) => {
                    self.out.push(']');
                    self.stacks.frames.pop();
                }
                (Some(b'}'), true) => self.close_object(),
                _ => return Err("expected a comma or the end of the array or object"),
            }
        }
    }

    /// Writes one value. A container is only opened here, and `run` writes the rest of it.
    fn value(&mut self) -> Result<(), &'static str> {
        loop {
            self.skip_whitespace();
            let Some(byte) = self.peek() else {
                return Err("unexpected end of JSON text");
            };
            match byte {
                b'{' => {
                    self.pos += 1;
                    let first_member = self.stacks.members.len();
                    let start = self.out.len();
                    self.stacks.frames.push(Frame::Object {
                        start,
                        first_member,
                    });
                    self.out.push('{');
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.close_object();
                        return Ok(());
                    }
                    self.member_key()?;
                    // The member's value follows: loop to write it.
                }
                b'[' => {
                    self.pos += 1;
                    self.out.push('[');
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.out.push(']');
                        return Ok(());
                    }
                    self.stacks.frames.push(Frame::Array);
                    // The first element follows: loop to write it.
                }
                b'"' => return self.string(),
                b'-' | b'0'..=b'9' => return self.number(),
                b't' => return self.literal("true"),
                b'f' => return self.literal("false"),
                b'n' => return self.literal("null"),
                _ => return Err("invalid JSON value"),
            }
        }
    }

    /// Writes `"key":` and opens a member record for it.
    fn member_key(&mut self) -> Result<(), &'static str> {
        if self.peek() != Some(b'"') {
            return Err("expected a string as object key");
        }
        let start = self.out.len();
        self.string()?;
        let key_end = self.out.len();
        self.skip_whitespace();
        if self.next_byte() != Some(b':') {
            return Err("expected a colon after the object key");
        }
        self.out.push(':');
        self.stacks.members.push(Member {
            start,
            key_end,
            end: self.out.len(),
        });
        Ok(())
    }

    fn close_object(&mut self) {
        self.out.push('}');
        if let Some(Frame::Object {
            start,
            first_member,
        }) = self.stacks.frames.pop()
        {
            let members = &mut self.stacks.members[first_member..];
            remove_duplicate_keys(self.out, start, members);
            self.stacks.members.truncate(first_member);
        }
    }

    /// Writes a string token with its escapes decoded and re-escaped canonically.
    fn string(&mut self) -> Result<(), &'static str> {
        self.pos += 1; // opening quote
        self.out.push('"');
        let bytes = self.text.as_bytes();
        let mut run_start = self.pos;
        loop {
            let Some(&byte) = bytes.get(self.pos) else {
                return Err("unterminated JSON string");
            };
            match byte {
                b'"' | b'\\' => {
                    // Raw runs contain no quote, backslash or control character.
                    self.out.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    if byte == b'"' {
                        self.out.push('"');
                        return Ok(());
                    }
                    self.escape()?;
                    run_start = self.pos;
                }
                0x00..=0x1f => return Err("control character in JSON string"),
                _ => self.pos += 1,
            }
        }
    }

    /// Decodes the escape after a backslash and writes it canonically.
    fn escape(&mut self) -> Result<(), &'static str> {
        let decoded = match self.next_byte() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => self.unicode_escape()?,
            _ => return Err("invalid escape in JSON string"),
        };
        let mut utf8 = [0; 4];
        push_escaped(self.out, decoded.encode_utf8(&mut utf8));
        Ok(())
    }

    /// Decodes `XXXX` after `\u`, joining a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Result<char, &'static str> {
        let unit = self.hex4()?;
        let code = match unit {
            0 => return Err("\\u0000 cannot be converted to text"),
            0xd800..=0xdbff => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err("unpaired high surrogate in JSON string");
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err("unpaired high surrogate in JSON string");
                }
                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
            }
            0xdc00..=0xdfff => return Err("unpaired low surrogate in JSON string"),
            _ => unit,
        };
        char::from_u32(code).ok_or("invalid unicode escape in JSON string")
    }

    fn hex4(&mut self) -> Result<u32, &'static str> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or("invalid unicode escape in JSON string")?;
        if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err("invalid unicode escape in JSON string");
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| "invalid unicode escape in JSON string")
    }

    fn number(&mut self) -> Result<(), &'static str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        while let Some(byte) = bytes.get(self.pos) {
            match byte {
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' => self.pos += 1,
                _ => break,
            }
        }
        let token = &self.text[start..self.pos];
        numeric::write_number(self.out, token).map_err(|err| err.reason())
    }

    fn literal(&mut self, word: &'static str) -> Result<(), &'static str> {
        if !self.text[self.pos..].starts_with(word) {
            return Err("invalid JSON literal");
        }
        self.pos += word.len();
        self.out.push_str(word);
        Ok(())
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while matches!(bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }
}

/// Objects up to this size are checked for duplicate keys pair by pair instead of by sorting.
const PAIRWISE_MAX_MEMBERS: usize = 8;

/// Rewrites the object at `out[start..]` keeping only the last member of each key, as jsonb does.
///
/// Keys are compared in their canonical escaped form, which is equal exactly when the decoded
/// keys are equal. Objects without duplicates, the usual case, are left untouched.
fn remove_duplicate_keys(out: &mut String, start: usize, members: &mut [Member]) {
    if members.len() < 2 {
        return;
    }
    let key = |member: &Member| &out[member.start..member.key_end];
    let by_key_then_position =
        |a: &Member, b: &Member| key(a).cmp(key(b)).then(a.start.cmp(&b.start));
    let has_duplicates = if members.len() <= PAIRWISE_MAX_MEMBERS {
        members
            .iter()
            .enumerate()
            .any(|(index, a)| members[index + 1..].iter().any(|b| key(a) == key(b)))
    } else {
        members.sort_unstable_by(by_key_then_position);
        members
            .windows(2)
            .any(|pair| key(&pair[0]) == key(&pair[1]))
    };
    if !has_duplicates {
        return;
    }
    members.sort_unstable_by(by_key_then_position);

    let mut survivors: Vec<Member> = Vec::with_capacity(members.len());
    for (index, member) in members.iter().enumerate() {
        let overridden = members
            .get(index + 1)
            .is_some_and(|next| key(next) == key(member));
        if !overridden {
            survivors.push(*member);
        }
    }
    survivors.sort_unstable_by_key(|member| member.start);

    let mut rebuilt = String::with_capacity(out.len() - start);
    rebuilt.push('{');
    for (index, member) in survivors.iter().enumerate() {
        if index > 0 {
            rebuilt.push(',');
        }
        rebuilt.push_str(&out[member.start..member.end]);
    }
    rebuilt.push('}');
    out.truncate(start);
    out.push_str(&rebuilt);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalise(text: &str) -> Result<String, &'static str> {
        let mut out = String::new();
        write_normalized(&mut out, text).map(|()| out)
    }

    #[test]
    fn whitespace_dropped_numbers_normalised() {
        let json = normalise(" { \"a\" : [ 1e2 , -0 , 1.50e1 , true , null ] } ").unwrap();
        assert_eq!(json, r#"{"a":[100,0,15.0,true,null]}"#);
        assert_eq!(normalise("-0.0e5").unwrap(), "0");
        assert_eq!(normalise("[]").unwrap(), "[]");
        assert_eq!(normalise("{}").unwrap(), "{}");
        assert_eq!(normalise(" \"x\" ").unwrap(), r#""x""#);
    }

    #[test]
    fn duplicate_keys_keep_last() {
        let json = normalise(r#"{"a":1,"b":{"c":1,"c":[2]},"a":{"d":3}}"#).unwrap();
        assert_eq!(json, r#"{"b":{"c":[2]},"a":{"d":3}}"#);
        let escaped = normalise(r#"{"a":1,"\u0061":2,"b":3}"#).unwrap();
        assert_eq!(escaped, r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn duplicate_keys_in_large_object() {
        let members: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 20)).collect();
        let json = normalise(&format!("{{{}}}", members.join(","))).unwrap();
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.len(), 20);
        assert_eq!(parsed["k3"], serde_json::json!(23));
    }

    #[test]
    fn escapes_decoded_and_reescaped() {
        let json = normalise(r#""\u00e9\n\/\ud83d\ude00\u0022\u001f""#).unwrap();
        assert_eq!(json, "\"é\\n/😀\\\"\\u001f\"");
    }

    #[test]
    fn jsonb_rejections_are_errors() {
        assert!(normalise(r#""\u0000""#).is_err());
        assert!(normalise(r#""\ud83d""#).is_err());
        assert!(normalise(r#""\ude00""#).is_err());
        assert!(normalise("1e131072").is_err());
    }

    #[test]
    fn invalid_json_rejected() {
        let invalid = [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "tru",
            "truex",
            "\"a",
            "{1:2}",
            "[1]]",
            "\"\\x\"",
            "\"\t\"",
        ];
        for text in invalid {
            assert!(normalise(text).is_err(), "input {text:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 200_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(normalise(&text).unwrap(), text);
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert_eq!(normalise(&objects).unwrap(), objects);
    }
}
