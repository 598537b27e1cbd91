//! Conversion of ISO date and timestamp text to the XSD form `to_jsonb` uses.
//!
//! With `DateStyle = ISO` PostgreSQL prints `2026-12-04 15:17:50.9+00`, where `to_jsonb` (which
//! encodes dates and timestamps with `USE_XSD_DATES`) gives `2026-12-04T15:17:50.9+00:00`.
//! Years have at least four digits and may have more, BC values end in ` BC` in both styles, and
//! `infinity` and `-infinity` are the same in both. Dates are identical in both styles. Time and
//! timetz are not converted at all: `to_jsonb` prints them with their output function (checked
//! against PostgreSQL 15).

/// Appends a date (`2026-12-04`, `0044-03-15 BC`, `infinity`) as a JSON string after checking
/// that it is ISO-style date text.
pub(crate) fn write_date(out: &mut String, text: &str) -> Result<(), &'static str> {
    if !is_infinity(text) {
        let rest = skip_date(text.as_bytes()).ok_or("invalid ISO date")?;
        if !rest.is_empty() && rest != b" BC" {
            return Err("invalid ISO date");
        }
    }
    push_quoted(out, text);
    Ok(())
}

/// Appends a timestamp (`with_zone` false) or timestamptz (`with_zone` true) in ISO style as an
/// XSD JSON string: a `T` between date and time, and a zone offset of at least `+HH:MM`.
pub(crate) fn write_timestamp(
    out: &mut String,
    text: &str,
    with_zone: bool,
) -> Result<(), &'static str> {
    const INVALID: &str = "invalid ISO timestamp";
    if is_infinity(text) {
        push_quoted(out, text);
        return Ok(());
    }
    let bytes = text.as_bytes();
    let after_date = skip_date(bytes).ok_or(INVALID)?;
    let date_len = bytes.len() - after_date.len();
    let time = after_date.strip_prefix(b" ").ok_or(INVALID)?;
    let after_time = skip_time(time).ok_or(INVALID)?;
    let time_len = time.len() - after_time.len();

    let (offset, era) = if with_zone {
        let era = skip_offset(after_time).ok_or(INVALID)?;
        (&after_time[..after_time.len() - era.len()], era)
    } else {
        (&b""[..], after_time)
    };
    if !era.is_empty() && era != b" BC" {
        return Err(INVALID);
    }

    // Every slice below consists of ASCII digits and punctuation checked above.
    out.push('"');
    out.push_str(&text[..date_len]);
    out.push('T');
    out.push_str(&text[date_len + 1..date_len + 1 + time_len]);
    if !offset.is_empty() {
        let offset_start = date_len + 1 + time_len;
        out.push_str(&text[offset_start..offset_start + offset.len()]);
        if offset.len() == 3 {
            // `+HH`: XSD style always has the minutes.
            out.push_str(":00");
        }
    }
    if !era.is_empty() {
        out.push_str(" BC");
    }
    out.push('"');
    Ok(())
}

fn is_infinity(text: &str) -> bool {
    text == "infinity" || text == "-infinity"
}

fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    out.push_str(text);
    out.push('"');
}

/// Skips `YYYY-MM-DD` (four or more year digits) and returns the rest.
fn skip_date(bytes: &[u8]) -> Option<&[u8]> {
    let year_len = bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if year_len < 4 {
        return None;
    }
    let rest = &bytes[year_len..];
    let rest = skip_two_digits(rest.strip_prefix(b"-")?)?;
    skip_two_digits(rest.strip_prefix(b"-")?)
}

/// Skips `HH:MM:SS[.fraction]` and returns the rest.
fn skip_time(bytes: &[u8]) -> Option<&[u8]> {
    let rest = skip_two_digits(bytes)?;
    let rest = skip_two_digits(rest.strip_prefix(b":")?)?;
    let rest = skip_two_digits(rest.strip_prefix(b":")?)?;
    match rest.strip_prefix(b".") {
        Some(fraction) => {
            let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            (digits > 0).then_some(&fraction[digits..])
        }
        None => Some(rest),
    }
}

/// Skips a zone offset `+HH`, `+HH:MM` or `+HH:MM:SS` (or with `-`) and returns the rest.
fn skip_offset(bytes: &[u8]) -> Option<&[u8]> {
    let sign = *bytes.first()?;
    if sign != b'+' && sign != b'-' {
        return None;
    }
    let mut rest = skip_two_digits(&bytes[1..])?;
    for _ in 0..2 {
        match rest.strip_prefix(b":") {
            Some(after_colon) => rest = skip_two_digits(after_colon)?,
            None => break,
        }
    }
    Some(rest)
}

fn skip_two_digits(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [first, second, rest @ ..] if first.is_ascii_digit() && second.is_ascii_digit() => {
            Some(rest)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(text: &str, with_zone: bool) -> Result<String, &'static str> {
        let mut out = String::new();
        write_timestamp(&mut out, text, with_zone).map(|()| out)
    }

    fn date(text: &str) -> Result<String, &'static str> {
        let mut out = String::new();
        write_date(&mut out, text).map(|()| out)
    }

    #[test]
    fn timestamptz_offsets_get_minutes() {
        let cases = [
            ("2026-12-04 15:17:50.9+00", "2026-12-04T15:17:50.9+00:00"),
            ("2026-12-04 15:17:50+05:30", "2026-12-04T15:17:50+05:30"),
            (
                "1900-01-01 00:00:00+00:19:32",
                "1900-01-01T00:00:00+00:19:32",
            ),
            ("2000-01-01 00:00:00-08", "2000-01-01T00:00:00-08:00"),
            ("0044-03-15 12:00:00+00 BC", "0044-03-15T12:00:00+00:00 BC"),
            ("12000-01-01 01:02:03+00", "12000-01-01T01:02:03+00:00"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
        ];
        for (text, expected) in cases {
            let json = timestamp(text, true).unwrap();
            assert_eq!(json, format!("\"{expected}\""), "input {text}");
        }
    }

    #[test]
    fn timestamp_gets_t_separator() {
        let cases = [
            ("2026-12-04 15:17:50.123456", "2026-12-04T15:17:50.123456"),
            ("0044-03-15 12:00:00 BC", "0044-03-15T12:00:00 BC"),
            (
                "294276-12-31 23:59:59.999999",
                "294276-12-31T23:59:59.999999",
            ),
        ];
        for (text, expected) in cases {
            let json = timestamp(text, false).unwrap();
            assert_eq!(json, format!("\"{expected}\""), "input {text}");
        }
    }

    #[test]
    fn non_iso_timestamps_rejected() {
        let invalid = [
            ("Sat Dec 04 15:17:50 2026 UTC", true),
            ("2026-12-04", true),
            ("2026-12-04 15:17:50", true),
            ("2026-12-04 15:17:50+00 AD", true),
            ("2026-12-04 15:17:50+0", true),
            ("2026-12-04 15:17:50.+00", true),
            ("2026-12-04T15:17:50", false),
            ("2026-12-04 15:17:50+00", false),
            ("04/12/2026 15:17:50", false),
        ];
        for (text, with_zone) in invalid {
            assert!(timestamp(text, with_zone).is_err(), "input {text}");
        }
    }

    #[test]
    fn dates_are_checked_and_quoted() {
        assert_eq!(date("2026-12-04").unwrap(), "\"2026-12-04\"");
        assert_eq!(date("0044-03-15 BC").unwrap(), "\"0044-03-15 BC\"");
        assert_eq!(date("infinity").unwrap(), "\"infinity\"");
        assert!(date("12-04-2026").is_err());
        assert!(date("2026-12-04 AD").is_err());
    }
}
