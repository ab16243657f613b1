//! SQL column types: what `CREATE TABLE` accepts, how each maps to an Arrow type (the form
//! DataFusion computes with and the pgwire front end encodes), and how incoming values are
//! coerced to a column's type with PostgreSQL's rules (range checks, text parsing, padding).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{DataType as AstType, ExactNumberInfo};
use raftable_common::{Error, Result};
use serde::{Deserialize, Serialize};

/// A column's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    /// NUMERIC(precision, scale); plain NUMERIC is stored as NUMERIC(38, 10).
    Numeric(u8, i8),
    Boolean,
    Text,
    /// VARCHAR(n): at most n characters.
    Varchar(Option<u32>),
    /// CHAR(n): at most n characters; trailing blanks are not significant (nor stored).
    Char(u32),
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    /// Stored as its canonical text form (lower-case, hyphenated).
    Uuid,
    /// Stored as validated JSON text.
    Jsonb,
}

/// The time zone string of TIMESTAMPTZ values in Arrow: UTC, shown with an offset.
pub const UTC: &str = "+00:00";

impl SqlType {
    /// The type named in a column definition.
    pub fn from_ast(ty: &AstType) -> Result<Self> {
        use AstType as T;
        Ok(match ty {
            T::SmallInt(_) | T::Int2(_) => SqlType::SmallInt,
            T::Int(_) | T::Integer(_) | T::Int4(_) => SqlType::Integer,
            T::BigInt(_) | T::Int8(_) => SqlType::BigInt,
            T::Real | T::Float4 => SqlType::Real,
            T::Double(_) | T::DoublePrecision | T::Float8 => SqlType::Double,
            T::Float(info) => match info {
                ExactNumberInfo::Precision(p) if *p <= 24 => SqlType::Real,
                _ => SqlType::Double,
            },
            T::Numeric(info) | T::Decimal(info) | T::Dec(info) => match info {
                ExactNumberInfo::None => SqlType::Numeric(38, 10),
                ExactNumberInfo::Precision(p) => SqlType::Numeric(precision(*p)?, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => {
                    let p = precision(*p)?;
                    if *s < 0 || *s > i64::from(p) {
                        return Err(Error::InvalidInput(format!(
                            "NUMERIC scale {s} must be between 0 and precision {p}"
                        )));
                    }
                    SqlType::Numeric(p, *s as i8)
                }
            },
            T::Boolean | T::Bool => SqlType::Boolean,
            T::Text | T::String(_) => SqlType::Text,
            T::Varchar(len) | T::CharacterVarying(len) | T::CharVarying(len) => SqlType::Varchar(length(len)?),
            T::Char(len) | T::Character(len) => SqlType::Char(length(len)?.unwrap_or(1)),
            T::Bytea => SqlType::Bytea,
            T::Date => SqlType::Date,
            T::Timestamp(_, tz) => {
                use datafusion::sql::sqlparser::ast::TimezoneInfo as Tz;
                match tz {
                    Tz::WithTimeZone | Tz::Tz => SqlType::TimestampTz,
                    _ => SqlType::Timestamp,
                }
            }
            T::Uuid => SqlType::Uuid,
            T::JSONB | T::JSON => SqlType::Jsonb,
            T::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz") => SqlType::TimestampTz,
            T::Custom(name, _) => return Err(Error::UndefinedObject(format!("type \"{name}\" does not exist"))),
            other => return Err(Error::unsupported(format!("type {other} is not supported"))),
        })
    }

    /// The Arrow type values of this column have in DataFusion.
    pub fn arrow(&self) -> DataType {
        match self {
            SqlType::SmallInt => DataType::Int16,
            SqlType::Integer => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Real => DataType::Float32,
            SqlType::Double => DataType::Float64,
            SqlType::Numeric(p, s) => DataType::Decimal128(*p, *s),
            SqlType::Boolean => DataType::Boolean,
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Uuid | SqlType::Jsonb => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
        }
    }

    /// The most characters a value may have (VARCHAR(n), CHAR(n)).
    pub fn max_chars(&self) -> Option<u32> {
        match self {
            SqlType::Varchar(Some(n)) | SqlType::Char(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether a column of this type can become one of type `to` by a change of its definition
    /// alone (`ALTER COLUMN ... TYPE`): the values are stored alike and keep their meaning. The
    /// string types, but to CHAR(n) only from CHAR, whose values hold no trailing blanks.
    pub fn retypes_to(&self, to: &SqlType) -> bool {
        use SqlType::{Char, Text, Varchar};
        self == to || matches!((self, to), (Text | Varchar(_) | Char(_), Text | Varchar(_)) | (Char(_), Char(_)))
    }

    /// The name PostgreSQL shows for this type (`\d`, `format_type`, errors).
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::SmallInt => "smallint".into(),
            SqlType::Integer => "integer".into(),
            SqlType::BigInt => "bigint".into(),
            SqlType::Real => "real".into(),
            SqlType::Double => "double precision".into(),
            SqlType::Numeric(p, s) => format!("numeric({p},{s})"),
            SqlType::Boolean => "boolean".into(),
            SqlType::Text => "text".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Jsonb => "jsonb".into(),
        }
    }

    /// The type's name in `pg_type` (`int4`, `varchar`, `bpchar`): `information_schema`'s
    /// `udt_name`.
    pub fn type_name(&self) -> &'static str {
        match self {
            SqlType::SmallInt => "int2",
            SqlType::Integer => "int4",
            SqlType::BigInt => "int8",
            SqlType::Real => "float4",
            SqlType::Double => "float8",
            SqlType::Numeric(..) => "numeric",
            SqlType::Boolean => "bool",
            SqlType::Text => "text",
            SqlType::Varchar(_) => "varchar",
            SqlType::Char(_) => "bpchar",
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Timestamp => "timestamp",
            SqlType::TimestampTz => "timestamptz",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
        }
    }

    /// [`Self::pg_name`] without the type's modifiers (`character varying`, `numeric`): what
    /// `information_schema.columns.data_type` shows.
    pub fn base_name(&self) -> String {
        match self {
            SqlType::Numeric(..) => "numeric".into(),
            SqlType::Varchar(_) => "character varying".into(),
            SqlType::Char(_) => "character".into(),
            other => other.pg_name(),
        }
    }

    /// Converts an array of values (any type) to this column's type, with PostgreSQL's errors:
    /// text that does not parse is 22P02, a value out of range is 22003, a too-long string is
    /// rejected, CHAR(n) is blank-padded, UUID and JSONB text is validated.
    pub fn coerce(&self, column: &str, values: &ArrayRef) -> Result<ArrayRef> {
        let target = self.arrow();
        let from = values.data_type().clone();
        if *self == SqlType::Bytea && from == DataType::Utf8 {
            return parse_bytea(values);
        }
        if let Some(kind) = self.datetime_kind().filter(|_| is_text(&from)) {
            return crate::datetime::parse_array(values, kind, &target);
        }
        let array = if from == target {
            values.clone()
        } else {
            let options = CastOptions { safe: false, ..Default::default() };
            cast_with_options(values, &target, &options).map_err(|e| cast_error(self, &from, column, e))?
        };
        if from != target {
            // A safe=false cast errors on overflow; a cast that silently produced NULLs where
            // values were not NULL would be a lossy conversion: refuse it too.
            if array.logical_null_count() != values.logical_null_count() {
                return Err(Error::OutOfRange(format!("value out of range for type {}", self.pg_name())));
            }
        }
        match self {
            SqlType::Varchar(Some(_)) | SqlType::Char(_) | SqlType::Uuid | SqlType::Jsonb => self.check_text(&array),
            _ => Ok(array),
        }
    }

    /// How text is read as this type, if it is a date or time.
    fn datetime_kind(&self) -> Option<crate::datetime::Kind> {
        use crate::datetime::Kind;
        match self {
            SqlType::Date => Some(Kind::Date),
            SqlType::Timestamp => Some(Kind::Timestamp),
            SqlType::TimestampTz => Some(Kind::TimestampTz),
            _ => None,
        }
    }

    fn check_text(&self, array: &ArrayRef) -> Result<ArrayRef> {
        use datafusion::arrow::array::{StringArray, StringBuilder};
        let strings = array
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Internal("text column is not Utf8".into()))?;
        let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
        for value in strings.iter() {
            match value {
                None => out.append_null(),
                Some(v) => out.append_value(self.check_one(v)?),
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn check_one(&self, v: &str) -> Result<String> {
        match self {
            SqlType::Varchar(Some(n)) => {
                let v = trim_excess(v, *n as usize);
                if v.chars().count() > *n as usize {
                    return Err(Error::StringTooLong(format!("value too long for type character varying({n})")));
                }
                Ok(v.to_string())
            }
            SqlType::Char(n) => {
                // Trailing blanks are insignificant in CHAR(n) (PostgreSQL compares without
                // them); they are not stored, so comparisons with plain text behave the same.
                let v = v.trim_end_matches(' ');
                if v.chars().count() > *n as usize {
                    return Err(Error::StringTooLong(format!("value too long for type character({n})")));
                }
                Ok(v.to_string())
            }
            SqlType::Uuid => parse_uuid(v),
            // Stored as PostgreSQL's text of the jsonb value (keys ordered and deduplicated).
            SqlType::Jsonb => crate::jsonb::Jsonb::normalized(v),
            _ => Ok(v.to_string()),
        }
    }
}

/// Text in PostgreSQL's bytea input formats: `\x` followed by hex digits, or the escape format
/// (`\\` for a backslash, `\ooo` octal, anything else as is).
fn parse_bytea(values: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::array::{BinaryBuilder, StringArray};
    let strings = values.as_any().downcast_ref::<StringArray>().ok_or_else(|| Error::Internal("not Utf8".into()))?;
    let mut out = BinaryBuilder::with_capacity(strings.len(), strings.value_data().len());
    for v in strings.iter() {
        match v {
            None => out.append_null(),
            Some(v) => out.append_value(bytea_from_text(v)?),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// One bytea value from its text input form (hex `\\x4142` or the escape format).
pub fn bytea_from_text(text: &str) -> Result<Vec<u8>> {
    let invalid = || Error::InvalidText(format!("invalid input syntax for type bytea: \"{text}\""));
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let pairs = digits.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(invalid());
        }
        let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8).ok_or_else(invalid);
        return pairs.map(|pair| -> Result<u8> { Ok((nibble(pair[0])? << 4) | nibble(pair[1])?) }).collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4).ok_or_else(invalid)?;
            let valid = octal[0] <= b'3' && octal.iter().all(|b| (b'0'..=b'7').contains(b));
            if !valid {
                return Err(invalid());
            }
            out.push(octal.iter().fold(0u8, |acc, b| (acc << 3) | (b - b'0')));
            i += 4;
        }
    }
    Ok(out)
}

/// PostgreSQL lets a string that is too long fit when only trailing spaces are cut.
fn trim_excess(v: &str, n: usize) -> &str {
    if v.chars().count() > n {
        let trimmed = v.trim_end_matches(' ');
        if trimmed.chars().count() <= n {
            let cut: usize = v.char_indices().nth(n).map(|(i, _)| i).unwrap_or(v.len());
            return &v[..cut];
        }
    }
    v
}

fn parse_uuid(v: &str) -> Result<String> {
    let hex: String = v.trim_start_matches('{').trim_end_matches('}').chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidText(format!("invalid input syntax for type uuid: \"{v}\"")));
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

fn precision(p: u64) -> Result<u8> {
    if (1..=38).contains(&p) {
        Ok(p as u8)
    } else {
        Err(Error::unsupported(format!("NUMERIC precision {p} is not supported (1 to 38)")))
    }
}

fn length(len: &Option<datafusion::sql::sqlparser::ast::CharacterLength>) -> Result<Option<u32>> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    match len {
        None | Some(CharacterLength::Max) => Ok(None),
        Some(CharacterLength::IntegerLength { length, .. }) => {
            u32::try_from(*length).map(Some).map_err(|_| Error::InvalidInput("length too large".into()))
        }
    }
}

/// PostgreSQL's names (`format_type`'s, and the short one) for a value DataFusion typed `ty`.
pub(crate) fn pg_type_names(ty: &DataType) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        DataType::Int16 => ("smallint", "int2"),
        DataType::Int32 => ("integer", "int4"),
        DataType::Int64 => ("bigint", "int8"),
        DataType::Float32 => ("real", "float4"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Decimal128(..) | DataType::Decimal256(..) => ("numeric", "numeric"),
        DataType::Boolean => ("boolean", "bool"),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => ("text", "text"),
        DataType::Binary | DataType::BinaryView | DataType::LargeBinary => ("bytea", "bytea"),
        DataType::Date32 => ("date", "date"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Time64(_) | DataType::Time32(_) => ("time without time zone", "time"),
        DataType::Interval(_) => ("interval", "interval"),
        DataType::Null => ("unknown", "unknown"),
        _ => return None,
    })
}

fn is_text(ty: &DataType) -> bool {
    matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A failed cast as the error PostgreSQL would give.
fn cast_error(ty: &SqlType, from: &DataType, column: &str, e: impl std::fmt::Display) -> Error {
    let msg = e.to_string();
    if is_text(from) {
        if msg.contains("overflow") || msg.contains("out of range") || msg.contains("too large") {
            return Error::OutOfRange(format!("value out of range for type {}", ty.pg_name()));
        }
        if matches!(ty, SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz) {
            return Error::InvalidDatetime(format!("invalid input syntax for type {}: {msg}", ty.pg_name()));
        }
        return Error::InvalidText(format!("invalid input syntax for type {}: {msg}", ty.pg_name()));
    }
    if msg.contains("overflow")
        || msg.contains("out of range")
        || msg.contains("Can't cast")
        || msg.contains("too large")
    {
        return Error::OutOfRange(format!("{} out of range", ty.pg_name()));
    }
    Error::DatatypeMismatch(format!(
        "column \"{column}\" is of type {} but expression is of type {from}: {msg}",
        ty.pg_name()
    ))
}

/// A single value coerced to `ty` (see [`SqlType::coerce`]).
pub fn coerce_scalar(ty: &SqlType, column: &str, value: &ScalarValue) -> Result<ScalarValue> {
    let array = value.to_array().map_err(crate::error::from_datafusion)?;
    let coerced = ty.coerce(column, &array)?;
    ScalarValue::try_from_array(&coerced, 0).map_err(crate::error::from_datafusion)
}

/// Whether coercing text changed it (trimmed blanks, a canonical uuid): then the coerced value
/// is not the text a query compares, so it cannot stand for it in a key.
pub(crate) fn changed_text(before: &ScalarValue, after: &ScalarValue) -> bool {
    match (before, after) {
        (ScalarValue::Utf8(Some(a)), ScalarValue::Utf8(Some(b))) => a != b,
        _ => false,
    }
}

/// A value as PostgreSQL-style text (bytea `\\x...`, timestamps `YYYY-MM-DD HH:MM:SS.ffffff`):
/// what a constant DEFAULT is stored as (parsed back with the column's type) and what
/// `format('%s', v)` prints.
pub(crate) fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Binary(Some(b)) => {
            format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            let secs = us.div_euclid(1_000_000);
            let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
            match chrono_like(secs, nanos) {
                Some(s) => s,
                None => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn chrono_like(secs: i64, nanos: u32) -> Option<String> {
    let t = datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(secs)?;
    Some(format!("{}.{:06}", t.format("%Y-%m-%d %H:%M:%S"), nanos / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion_follows_postgres() {
        let int = SqlType::SmallInt;
        assert!(matches!(coerce_scalar(&int, "c", &ScalarValue::Int64(Some(40000))), Err(Error::OutOfRange(_))));
        assert!(matches!(coerce_scalar(&int, "c", &ScalarValue::Utf8(Some("abc".into()))), Err(Error::InvalidText(_))));
        assert_eq!(
            coerce_scalar(&int, "c", &ScalarValue::Utf8(Some("12".into()))).unwrap(),
            ScalarValue::Int16(Some(12))
        );
        let ch = SqlType::Char(3);
        assert_eq!(
            coerce_scalar(&ch, "c", &ScalarValue::Utf8(Some("a  ".into()))).unwrap(),
            ScalarValue::Utf8(Some("a".into()))
        );
        assert!(coerce_scalar(&SqlType::Varchar(Some(2)), "c", &ScalarValue::Utf8(Some("abc".into()))).is_err());
        assert_eq!(
            coerce_scalar(&SqlType::Uuid, "c", &ScalarValue::Utf8(Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into())))
                .unwrap(),
            ScalarValue::Utf8(Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()))
        );
        assert_eq!(coerce_scalar(&int, "c", &ScalarValue::Int64(None)).unwrap(), ScalarValue::Int16(None));
        assert_eq!(bytea_from_text("\\x41ff").unwrap(), vec![0x41, 0xff]);
        assert_eq!(bytea_from_text("a\\\\b\\001").unwrap(), b"a\\b\x01".to_vec());
        assert!(bytea_from_text("\\x4").is_err());
    }
}
