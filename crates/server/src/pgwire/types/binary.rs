//! Binary-format values in: PostgreSQL's binary send formats (big-endian integers and floats,
//! NUMERIC's base-10000 digits, days and microseconds since 2000-01-01, raw bytea, UTF-8 text,
//! 16-byte uuid, versioned jsonb) decoded by their wire type, then cast to the type the
//! statement was prepared with. Bound parameters (`params`) are decoded with it.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use raftable_common::{Error, Result};

use super::mapping::{type_name, UTC};

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes `bytes` sent in the binary format of `wire` into a value of `target`.
pub(crate) fn from_binary(bytes: &[u8], wire: &Type, target: &DataType) -> Result<ScalarValue> {
    let value = decode_wire(bytes, wire)?;
    if value.data_type() == *target {
        return Ok(value);
    }
    value.cast_to(target).map_err(|e| {
        let numeric = |dt: &DataType| dt.is_numeric();
        if numeric(&value.data_type()) && numeric(target) {
            Error::OutOfRange(format!("value out of range for type {}", type_name(target)))
        } else {
            Error::DatatypeMismatch(format!("cannot use a {} parameter as {}: {e}", wire.name(), type_name(target)))
        }
    })
}

/// The value in the Arrow type that matches `wire` exactly.
fn decode_wire(bytes: &[u8], wire: &Type) -> Result<ScalarValue> {
    let t = wire;
    Ok(if *t == Type::BOOL {
        ScalarValue::Boolean(Some(fixed::<1>(bytes, t)?[0] != 0))
    } else if *t == Type::INT2 {
        ScalarValue::Int16(Some(i16::from_be_bytes(fixed(bytes, t)?)))
    } else if *t == Type::INT4 {
        ScalarValue::Int32(Some(i32::from_be_bytes(fixed(bytes, t)?)))
    } else if *t == Type::INT8 {
        ScalarValue::Int64(Some(i64::from_be_bytes(fixed(bytes, t)?)))
    } else if *t == Type::OID {
        ScalarValue::Int64(Some(i64::from(u32::from_be_bytes(fixed(bytes, t)?))))
    } else if *t == Type::FLOAT4 {
        ScalarValue::Float32(Some(f32::from_be_bytes(fixed(bytes, t)?)))
    } else if *t == Type::FLOAT8 {
        ScalarValue::Float64(Some(f64::from_be_bytes(fixed(bytes, t)?)))
    } else if *t == Type::NUMERIC {
        let (value, scale) = numeric(bytes)?;
        ScalarValue::Decimal128(Some(value), 38, scale)
    } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::JSON, Type::UNKNOWN].contains(t) {
        ScalarValue::Utf8(Some(utf8(bytes)?))
    } else if *t == Type::JSONB {
        match bytes.split_first() {
            Some((1, json)) => ScalarValue::Utf8(Some(utf8(json)?)),
            _ => return Err(bad_format(t)),
        }
    } else if *t == Type::UUID {
        ScalarValue::Utf8(Some(uuid(&fixed::<16>(bytes, t)?)))
    } else if *t == Type::BYTEA {
        ScalarValue::Binary(Some(bytes.to_vec()))
    } else if *t == Type::DATE {
        let days = i32::from_be_bytes(fixed(bytes, t)?);
        let days = days.checked_add(PG_EPOCH_DAYS).filter(|_| days != i32::MAX && days != i32::MIN);
        ScalarValue::Date32(Some(days.ok_or_else(|| out_of_range(t))?))
    } else if *t == Type::TIMESTAMP || *t == Type::TIMESTAMPTZ {
        let micros = i64::from_be_bytes(fixed(bytes, t)?);
        let micros = micros.checked_add(PG_EPOCH_MICROS).filter(|_| micros != i64::MAX && micros != i64::MIN);
        let tz = (*t == Type::TIMESTAMPTZ).then(|| Arc::from(UTC));
        ScalarValue::TimestampMicrosecond(Some(micros.ok_or_else(|| out_of_range(t))?), tz)
    } else {
        return Err(Error::unsupported(format!("binary format for parameters of type {} is not supported", t.name())));
    })
}

/// A NUMERIC in binary format as an unscaled value at its display scale: header (digit
/// count, weight of the first base-10000 digit, sign, display scale), then the digits.
fn numeric(bytes: &[u8]) -> Result<(i128, i8)> {
    let bad = || bad_format(&Type::NUMERIC);
    let word = |i: usize| bytes.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]])).ok_or_else(bad);
    let ndigits = word(0)? as i16;
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = word(6)?;
    if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
        return Err(bad());
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err(Error::InvalidText("NaN is not a valid numeric parameter here".into())),
        _ => return Err(out_of_range(&Type::NUMERIC)),
    };
    let scale = i8::try_from(dscale).ok().filter(|s| *s <= 38).ok_or_else(|| out_of_range(&Type::NUMERIC))?;
    let overflow = || out_of_range(&Type::NUMERIC);
    let mut value: i128 = 0;
    for i in 0..ndigits as usize {
        let digit = word(8 + 2 * i)?;
        if digit >= 10_000 {
            return Err(bad());
        }
        value = value.checked_mul(10_000).and_then(|v| v.checked_add(i128::from(digit))).ok_or_else(overflow)?;
    }
    // value * 10000^(weight + 1 - ndigits) is the number; scale it by 10^dscale.
    let exponent = 4 * (i64::from(weight) + 1 - i64::from(ndigits)) + i64::from(dscale);
    let factor = |e: i64| u32::try_from(e).ok().and_then(|e| 10i128.checked_pow(e));
    if exponent >= 0 && value != 0 {
        value = factor(exponent).and_then(|f| value.checked_mul(f)).ok_or_else(overflow)?;
    } else if exponent < 0 {
        value = factor(-exponent).map_or(0, |f| value / f);
    }
    Ok((if negative { -value } else { value }, scale))
}

fn fixed<const N: usize>(bytes: &[u8], wire: &Type) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| bad_format(wire))
}

fn utf8(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::InvalidText("invalid byte sequence for encoding \"UTF8\" in parameter".into()))
}

fn uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn bad_format(wire: &Type) -> Error {
    Error::InvalidText(format!("incorrect binary data format in bind parameter of type {}", wire.name()))
}

fn out_of_range(wire: &Type) -> Error {
    Error::OutOfRange(format!("{} parameter out of range", wire.name()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    /// NUMERIC binary: ndigits, weight, sign, dscale, then base-10000 digits.
    fn numeric_bytes(weight: i16, negative: bool, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(if negative { 0x4000u16 } else { 0 }.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        digits.iter().for_each(|d| b.extend(d.to_be_bytes()));
        b
    }

    #[test]
    fn integers_widen_and_range_check() {
        let v = from_binary(&7i32.to_be_bytes(), &Type::INT4, &DataType::Int64).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(7)));
        let v = from_binary(&(-2i16).to_be_bytes(), &Type::INT2, &DataType::Int16).unwrap();
        assert_eq!(v, ScalarValue::Int16(Some(-2)));
        let big = from_binary(&100_000i64.to_be_bytes(), &Type::INT8, &DataType::Int16);
        assert!(matches!(big, Err(Error::OutOfRange(_))), "{big:?}");
        let short = from_binary(&[0, 1], &Type::INT4, &DataType::Int32);
        assert!(matches!(short, Err(Error::InvalidText(_))));
    }

    #[test]
    fn floats_bools_text_bytea() {
        let v = from_binary(&1.25f64.to_be_bytes(), &Type::FLOAT8, &DataType::Float64).unwrap();
        assert_eq!(v, ScalarValue::Float64(Some(1.25)));
        let v = from_binary(&1.5f32.to_be_bytes(), &Type::FLOAT4, &DataType::Float64).unwrap();
        assert_eq!(v, ScalarValue::Float64(Some(1.5)));
        assert_eq!(from_binary(&[1], &Type::BOOL, &DataType::Boolean).unwrap(), ScalarValue::Boolean(Some(true)));
        assert_eq!(from_binary(b"hi", &Type::VARCHAR, &DataType::Utf8).unwrap(), ScalarValue::Utf8(Some("hi".into())));
        assert_eq!(
            from_binary(&[0, 255], &Type::BYTEA, &DataType::Binary).unwrap(),
            ScalarValue::Binary(Some(vec![0, 255]))
        );
        assert!(matches!(from_binary(&[0xff], &Type::TEXT, &DataType::Utf8), Err(Error::InvalidText(_))));
    }

    #[test]
    fn uuid_and_jsonb_become_text() {
        let id: Vec<u8> = (0u8..16).collect();
        let v = from_binary(&id, &Type::UUID, &DataType::Utf8).unwrap();
        assert_eq!(v, ScalarValue::Utf8(Some("00010203-0405-0607-0809-0a0b0c0d0e0f".into())));
        let v = from_binary(b"\x01{\"a\":1}", &Type::JSONB, &DataType::Utf8).unwrap();
        assert_eq!(v, ScalarValue::Utf8(Some("{\"a\":1}".into())));
        assert!(from_binary(b"\x02{}", &Type::JSONB, &DataType::Utf8).is_err());
    }

    #[test]
    fn numerics() {
        assert_eq!(numeric(&numeric_bytes(0, false, 2, &[1, 5000])).unwrap(), (150, 2));
        assert_eq!(numeric(&numeric_bytes(1, true, 3, &[1, 2345, 6780])).unwrap(), (-12_345_678, 3));
        assert_eq!(numeric(&numeric_bytes(-1, false, 4, &[1])).unwrap(), (1, 4));
        assert_eq!(numeric(&numeric_bytes(1, false, 0, &[2])).unwrap(), (20_000, 0));
        assert_eq!(numeric(&numeric_bytes(0, false, 0, &[])).unwrap(), (0, 0));
        assert!(numeric(&[0, 1, 0, 0]).is_err());

        let v = from_binary(&numeric_bytes(0, false, 2, &[1, 5000]), &Type::NUMERIC, &DataType::Decimal128(10, 2));
        assert_eq!(v.unwrap(), ScalarValue::Decimal128(Some(150), 10, 2));
        let v = from_binary(&numeric_bytes(0, false, 1, &[1, 5000]), &Type::NUMERIC, &DataType::Decimal128(10, 3));
        assert_eq!(v.unwrap(), ScalarValue::Decimal128(Some(1500), 10, 3));
        let v = from_binary(&numeric_bytes(2, false, 0, &[1]), &Type::NUMERIC, &DataType::Decimal128(5, 2));
        assert!(matches!(v, Err(Error::OutOfRange(_))), "{v:?}");
        let v = from_binary(&numeric_bytes(0, false, 2, &[1, 5000]), &Type::NUMERIC, &DataType::Utf8);
        assert_eq!(v.unwrap(), ScalarValue::Utf8(Some("1.50".into())));
    }

    #[test]
    fn dates_and_timestamps() {
        let v = from_binary(&(-PG_EPOCH_DAYS + 1).to_be_bytes(), &Type::DATE, &DataType::Date32).unwrap();
        assert_eq!(v, ScalarValue::Date32(Some(1)));
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let v = from_binary(&0i64.to_be_bytes(), &Type::TIMESTAMP, &ts).unwrap();
        assert_eq!(v, ScalarValue::TimestampMicrosecond(Some(PG_EPOCH_MICROS), None));
        let tstz = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)));
        let v = from_binary(&1i64.to_be_bytes(), &Type::TIMESTAMPTZ, &tstz).unwrap();
        assert_eq!(v, ScalarValue::TimestampMicrosecond(Some(PG_EPOCH_MICROS + 1), Some(Arc::from(UTC))));
        assert!(matches!(from_binary(&i64::MAX.to_be_bytes(), &Type::TIMESTAMP, &ts), Err(Error::OutOfRange(_))));
    }
}
