//! Normalisation of number text to the form `to_jsonb` gives it.
//!
//! `to_jsonb` turns int2, int4, int8, float4, float8 and numeric values, and every number inside
//! json, into jsonb numerics: the text goes through `numeric_in`, and jsonb prints it with
//! `numeric_out`. The result never has an exponent, its scale (digits after the point) is
//! `max(0, fraction digits - exponent)` of the input, leading zeros and the sign of zero are
//! dropped. `NaN`, `Infinity` and `-Infinity` are not JSON numbers, so they become strings.

/// Maximum digits before the decimal point of a numeric: a base-10000 weight of at most 32767.
const MAX_INTEGER_DIGITS: i64 = 131_072;

/// Maximum digits after the decimal point of a numeric (`NUMERIC_DSCALE_MAX`).
const MAX_SCALE: i64 = 16_383;

/// Exponent magnitude from which `numeric_in` reports an overflow even for zero (`INT_MAX / 2`).
const MAX_EXPONENT: i64 = 1_073_741_823;

/// Error from normalising number text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// The text is not a decimal number with an optional exponent.
    Invalid,
    /// The value has more digits than a numeric can hold, so PostgreSQL rejects it too.
    OutOfRange,
}

impl NumberError {
    /// Short description for error messages.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NumberError::Invalid => "invalid number",
            NumberError::OutOfRange => "number overflows numeric format",
        }
    }
}

/// A number split into its parts: `[-]integer[.fraction][e exponent]`.
struct Parts<'a> {
    negative: bool,
    integer: &'a [u8],
    fraction: &'a [u8],
    exponent: i64,
    has_exponent: bool,
}

impl Parts<'_> {
    /// Returns digit `index` of `integer ++ fraction`, with zeros outside that range.
    fn digit(&self, index: i64) -> u8 {
        let integer_len = self.integer.len() as i64;
        if index < 0 {
            b'0'
        } else if index < integer_len {
            self.integer[index as usize]
        } else {
            let fraction_index = (index - integer_len) as usize;
            self.fraction.get(fraction_index).copied().unwrap_or(b'0')
        }
    }
}

/// Appends the jsonb form of number text (`150.00`, `1e+30`, `-0`, `NaN`, ...) to `out`.
///
/// Accepts `[+-]digits[.digits][(e|E)[+-]digits]` with at least one digit before the
/// exponent, and the special values `NaN`, `Infinity` and `-Infinity`. Values beyond the range
/// of numeric (more than 131072 integer digits or 16383 fraction digits) are rejected, as
/// `numeric_in` rejects them. On error nothing is appended.
pub(crate) fn write_number(out: &mut String, text: &str) -> Result<(), NumberError> {
    match text {
        "NaN" | "Infinity" | "-Infinity" => {
            out.push('"');
            out.push_str(text);
            out.push('"');
            return Ok(());
        }
        _ => {}
    }
    let parts = split(text.as_bytes())?;
    let first_nonzero = parts
        .integer
        .iter()
        .chain(parts.fraction)
        .position(|&digit| digit != b'0');
    let no_leading_zero =
        parts.integer.len() == 1 || parts.integer.first().is_some_and(|&digit| digit != b'0');
    let plain =
        !parts.has_exponent && first_nonzero.is_some() && no_leading_zero && !text.ends_with('.');
    if plain {
        // Already in numeric_out form: copy it, minus a leading `+`.
        out.push_str(text.strip_prefix('+').unwrap_or(text));
        return Ok(());
    }
    write_expanded(out, &parts, first_nonzero)
}

/// Writes `parts` without exponent, with the scale `numeric_in` would give it.
fn write_expanded(
    out: &mut String,
    parts: &Parts<'_>,
    first_nonzero: Option<usize>,
) -> Result<(), NumberError> {
    let fraction_len = parts.fraction.len() as i64;
    let scale = (fraction_len - parts.exponent).max(0);
    if scale > MAX_SCALE {
        return Err(NumberError::OutOfRange);
    }
    // Position of the decimal point in `integer ++ fraction` once the exponent is applied.
    let point = parts.integer.len() as i64 + parts.exponent;
    let Some(first_nonzero) = first_nonzero.map(|index| index as i64) else {
        out.push('0');
        push_fraction(out, parts, point, scale);
        return Ok(());
    };
    if point - first_nonzero > MAX_INTEGER_DIGITS {
        return Err(NumberError::OutOfRange);
    }

    if parts.negative {
        out.push('-');
    }
    if point <= first_nonzero {
        out.push('0');
    } else {
        out.reserve((point - first_nonzero) as usize);
        for index in first_nonzero..point {
            out.push(char::from(parts.digit(index)));
        }
    }
    push_fraction(out, parts, point, scale);
    Ok(())
}

fn push_fraction(out: &mut String, parts: &Parts<'_>, point: i64, scale: i64) {
    if scale == 0 {
        return;
    }
    out.reserve(scale as usize + 1);
    out.push('.');
    for index in point..point + scale {
        out.push(char::from(parts.digit(index)));
    }
}

/// Splits number text into sign, digits and exponent, validating its syntax.
fn split(bytes: &[u8]) -> Result<Parts<'_>, NumberError> {
    let (negative, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let integer_len = count_digits(rest);
    let integer = &rest[..integer_len];
    let mut rest = &rest[integer_len..];

    let mut fraction: &[u8] = &[];
    if let Some(after_point) = rest.strip_prefix(b".") {
        let fraction_len = count_digits(after_point);
        fraction = &after_point[..fraction_len];
        rest = &after_point[fraction_len..];
    }
    if integer.is_empty() && fraction.is_empty() {
        return Err(NumberError::Invalid);
    }

    let mut exponent = 0;
    let has_exponent = matches!(rest.first(), Some(b'e' | b'E'));
    if has_exponent {
        exponent = parse_exponent(&rest[1..])?;
    } else if !rest.is_empty() {
        return Err(NumberError::Invalid);
    }
    Ok(Parts {
        negative,
        integer,
        fraction,
        exponent,
        has_exponent,
    })
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count()
}

/// Parses `[+-]digits` to the end of `bytes`.
fn parse_exponent(bytes: &[u8]) -> Result<i64, NumberError> {
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || count_digits(digits) != digits.len() {
        return Err(NumberError::Invalid);
    }
    let mut magnitude: i64 = 0;
    for &digit in digits {
        magnitude = magnitude
            .saturating_mul(10)
            .saturating_add(i64::from(digit - b'0'));
    }
    if magnitude >= MAX_EXPONENT {
        return Err(NumberError::OutOfRange);
    }
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalise(text: &str) -> Result<String, NumberError> {
        let mut out = String::new();
        write_number(&mut out, text).map(|()| out)
    }

    #[test]
    fn plain_numbers_are_copied() {
        for text in [
            "0",
            "7",
            "-12",
            "150.00",
            "0.5",
            "-0.001",
            "9223372036854775807",
        ] {
            assert_eq!(normalise(text).unwrap(), text, "input {text}");
        }
    }

    #[test]
    fn exponents_are_expanded() {
        let cases = [
            ("1e+30", "1000000000000000000000000000000"),
            ("1.5e-10", "0.00000000015"),
            ("-1.5e-10", "-0.00000000015"),
            ("1e-07", "0.0000001"),
            ("1.23456789012345e+15", "1234567890123450"),
            ("3.4028235e+38", "340282350000000000000000000000000000000"),
            ("1e2", "100"),
            ("1E2", "100"),
            ("1.50e1", "15.0"),
            ("12.5e1", "125"),
            ("12.5e-1", "1.25"),
            ("0.01e2", "1"),
            ("0.001e1", "0.01"),
            ("5e0", "5"),
            ("1.000e2", "100.0"),
        ];
        for (text, expected) in cases {
            assert_eq!(normalise(text).unwrap(), expected, "input {text}");
        }
    }

    #[test]
    fn zero_loses_sign_keeps_scale() {
        let cases = [
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("-0.0000", "0.0000"),
            ("0.0e-3", "0.0000"),
            ("-0E+1", "0"),
            ("0e200000", "0"),
            ("00", "0"),
        ];
        for (text, expected) in cases {
            assert_eq!(normalise(text).unwrap(), expected, "input {text}");
        }
    }

    #[test]
    fn leading_zeros_and_plus_sign_dropped() {
        assert_eq!(normalise("007").unwrap(), "7");
        assert_eq!(normalise("-007.50").unwrap(), "-7.50");
        assert_eq!(normalise("+3").unwrap(), "3");
        assert_eq!(normalise(".5").unwrap(), "0.5");
        assert_eq!(normalise("1.").unwrap(), "1");
        assert_eq!(normalise("-2.e1").unwrap(), "-20");
    }

    #[test]
    fn special_values_become_strings() {
        assert_eq!(normalise("NaN").unwrap(), "\"NaN\"");
        assert_eq!(normalise("Infinity").unwrap(), "\"Infinity\"");
        assert_eq!(normalise("-Infinity").unwrap(), "\"-Infinity\"");
    }

    #[test]
    fn numeric_range_limits() {
        assert_eq!(normalise("1e131071").unwrap().len(), 131_072);
        assert_eq!(normalise("1e131072"), Err(NumberError::OutOfRange));
        assert_eq!(normalise("1e-16383").unwrap().len(), 16_385);
        assert_eq!(normalise("1e-16384"), Err(NumberError::OutOfRange));
        assert_eq!(normalise("0e-16384"), Err(NumberError::OutOfRange));
        assert_eq!(normalise("1e99999999999"), Err(NumberError::OutOfRange));
    }

    #[test]
    fn invalid_text_rejected() {
        for text in [
            "", "-", ".", "e5", "1e", "1e+", "1.2.3", "12a", "1 ", "--1", "0x10",
        ] {
            assert_eq!(normalise(text), Err(NumberError::Invalid), "input {text:?}");
        }
    }
}
