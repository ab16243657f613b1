//! Text-format values in: PostgreSQL's input functions (`int4in`, `numeric_in`, `boolin`,
//! `byteain`, ...) for the types raftable plans with, parsing a bound parameter's text into
//! the `ScalarValue` of the type the statement was prepared with.

use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result};

use super::mapping::type_name;

/// Parses a text-format value as PostgreSQL's input function of `target`'s type would.
pub(crate) fn from_text(text: &str, target: &DataType) -> Result<ScalarValue> {
    let trimmed = text.trim();
    let invalid = || Error::InvalidText(format!("invalid input syntax for type {}: \"{text}\"", type_name(target)));
    Ok(match target {
        DataType::Utf8 => ScalarValue::Utf8(Some(text.to_string())),
        DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(text.to_string())),
        DataType::Utf8View => ScalarValue::Utf8View(Some(text.to_string())),
        DataType::Boolean => ScalarValue::Boolean(Some(parse_bool(trimmed).ok_or_else(invalid)?)),
        DataType::Int16 => ScalarValue::Int16(Some(parse_int(trimmed, target)?)),
        DataType::Int32 => ScalarValue::Int32(Some(parse_int(trimmed, target)?)),
        DataType::Int64 => ScalarValue::Int64(Some(parse_int(trimmed, target)?)),
        DataType::Float32 => ScalarValue::Float32(Some(trimmed.parse().map_err(|_| invalid())?)),
        DataType::Float64 => ScalarValue::Float64(Some(trimmed.parse().map_err(|_| invalid())?)),
        DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(parse_decimal(trimmed, *p, *s)?), *p, *s),
        DataType::Binary => ScalarValue::Binary(Some(raftable_sql::bytea_from_text(text)?)),
        DataType::Date32 | DataType::Timestamp(..) => {
            ScalarValue::try_from_string(trimmed.to_string(), target).map_err(|_| invalid())?
        }
        other => ScalarValue::try_from_string(text.to_string(), other).map_err(|_| invalid())?,
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_int<T: std::str::FromStr<Err = std::num::ParseIntError>>(s: &str, target: &DataType) -> Result<T> {
    use std::num::IntErrorKind::{NegOverflow, PosOverflow};
    s.parse::<T>().map_err(|e| match e.kind() {
        PosOverflow | NegOverflow => {
            Error::OutOfRange(format!("value \"{s}\" is out of range for type {}", type_name(target)))
        }
        _ => Error::InvalidText(format!("invalid input syntax for type {}: \"{s}\"", type_name(target))),
    })
}

/// Parses a decimal literal (`-12.50`, `1e3`, `.5`) into an unscaled value at `scale`,
/// rounding half away from zero like PostgreSQL; more than `precision` digits overflow.
fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128> {
    let invalid = || Error::InvalidText(format!("invalid input syntax for type numeric: \"{text}\""));
    let overflow = || Error::OutOfRange("numeric field overflow".into());
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().map_err(|_| invalid())?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    // unscaled = digits * 10^shift
    let shift = exponent.saturating_add(i64::from(scale)).saturating_sub(frac_part.len() as i64);
    let (keep, round_up) = match usize::try_from(-shift) {
        Ok(drop) if drop > digits.len() => (0, false),
        Ok(drop) => (digits.len() - drop, drop > 0 && digits[digits.len() - drop] >= b'5'),
        Err(_) => (digits.len(), false),
    };
    let mut value: i128 = 0;
    for d in &digits[..keep] {
        value = value.checked_mul(10).and_then(|v| v.checked_add(i128::from(d - b'0'))).ok_or_else(overflow)?;
    }
    if shift > 0 && value != 0 {
        let factor = u32::try_from(shift).ok().and_then(|s| 10i128.checked_pow(s)).ok_or_else(overflow)?;
        value = value.checked_mul(factor).ok_or_else(overflow)?;
    }
    value += i128::from(round_up);
    if value >= 10i128.checked_pow(u32::from(precision)).unwrap_or(i128::MAX) {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::TimeUnit;

    use super::super::mapping::UTC;
    use super::*;

    fn text(s: &str, dt: DataType) -> Result<ScalarValue> {
        from_text(s, &dt)
    }

    fn tstz() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
    }

    #[test]
    fn text_integers_and_floats() {
        assert_eq!(text(" 42 ", DataType::Int16).unwrap(), ScalarValue::Int16(Some(42)));
        assert_eq!(text("-7", DataType::Int32).unwrap(), ScalarValue::Int32(Some(-7)));
        assert_eq!(text("+9000000000", DataType::Int64).unwrap(), ScalarValue::Int64(Some(9_000_000_000)));
        assert!(matches!(text("40000", DataType::Int16), Err(Error::OutOfRange(_))));
        assert!(matches!(text("12a", DataType::Int32), Err(Error::InvalidText(_))));
        assert_eq!(text("1.5", DataType::Float64).unwrap(), ScalarValue::Float64(Some(1.5)));
        assert_eq!(text("-Infinity", DataType::Float32).unwrap(), ScalarValue::Float32(Some(f32::NEG_INFINITY)));
        assert!(matches!(text("NaN", DataType::Float64).unwrap(), ScalarValue::Float64(Some(v)) if v.is_nan()));
        assert!(matches!(text("x", DataType::Float64), Err(Error::InvalidText(_))));
    }

    #[test]
    fn text_decimals() {
        let dec = DataType::Decimal128(10, 2);
        assert_eq!(text("1.50", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(150), 10, 2));
        assert_eq!(text("-0.005", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(-1), 10, 2));
        assert_eq!(text("1.004", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(100), 10, 2));
        assert_eq!(text("12", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(1200), 10, 2));
        assert_eq!(text(".5", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(50), 10, 2));
        assert_eq!(text("1.5e2", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(15000), 10, 2));
        assert_eq!(text("0.000001", dec.clone()).unwrap(), ScalarValue::Decimal128(Some(0), 10, 2));
        assert!(matches!(text("123456789", dec.clone()), Err(Error::OutOfRange(_))));
        assert!(matches!(text("1.2.3", dec.clone()), Err(Error::InvalidText(_))));
        assert!(matches!(text("abc", dec), Err(Error::InvalidText(_))));
    }

    #[test]
    fn text_bool_string_bytea() {
        assert_eq!(text("t", DataType::Boolean).unwrap(), ScalarValue::Boolean(Some(true)));
        assert_eq!(text("OFF", DataType::Boolean).unwrap(), ScalarValue::Boolean(Some(false)));
        assert!(matches!(text("maybe", DataType::Boolean), Err(Error::InvalidText(_))));
        assert_eq!(text(" a b ", DataType::Utf8).unwrap(), ScalarValue::Utf8(Some(" a b ".into())));
        assert_eq!(text("\\x41ff", DataType::Binary).unwrap(), ScalarValue::Binary(Some(vec![0x41, 0xff])));
        assert_eq!(text("a\\\\b\\001", DataType::Binary).unwrap(), ScalarValue::Binary(Some(b"a\\b\x01".to_vec())));
        assert!(matches!(text("\\x4", DataType::Binary), Err(Error::InvalidText(_))));
        assert!(matches!(text("\\9", DataType::Binary), Err(Error::InvalidText(_))));
    }

    #[test]
    fn text_dates_and_timestamps() {
        assert_eq!(text("1970-01-02", DataType::Date32).unwrap(), ScalarValue::Date32(Some(1)));
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(
            text("1970-01-01 00:00:01.5", ts).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_500_000), None)
        );
        assert_eq!(
            text("1970-01-01 01:00:00+01", tstz()).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(0), Some(Arc::from(UTC)))
        );
        assert!(matches!(text("yesterday-ish", DataType::Date32), Err(Error::InvalidText(_))));
    }
}
