//! Bound parameters: each value of a Bind message (text or binary format, or NULL) decoded into
//! the `ScalarValue` of the type the statement was prepared with.
//!
//! In the flow (pgwire session → `sql::Session` → shards) this runs on Execute, between the
//! portal pgwire stored at Bind and `Session::execute`. The codecs are `types`': text values
//! are parsed by the prepared type with PostgreSQL's input rules, binary values by their wire
//! type, then cast to the prepared type.

use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use raftable_common::{Error, Result};

use super::types;

/// Decodes one bound value: `None` is NULL; `declared` is the type the client gave in Parse
/// (it decides the binary layout; absent, the layout of `target`'s pg type is expected).
pub(super) fn decode(
    value: Option<&[u8]>,
    binary: bool,
    declared: Option<&Type>,
    target: &DataType,
) -> Result<ScalarValue> {
    let Some(bytes) = value else {
        return ScalarValue::try_from(target).map_err(Error::internal);
    };
    if binary {
        let wire = match declared {
            Some(t) if *t != Type::UNKNOWN => t.clone(),
            _ => types::pg_type(target),
        };
        return types::from_binary(bytes, &wire, target);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::InvalidText("invalid byte sequence for encoding \"UTF8\" in parameter".into()))?;
    types::from_text(text, target)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn text_and_binary_by_the_format() {
        assert_eq!(decode(Some(b" 42"), false, None, &DataType::Int32).unwrap(), ScalarValue::Int32(Some(42)));
        let binary = 42i32.to_be_bytes();
        assert_eq!(decode(Some(&binary), true, None, &DataType::Int32).unwrap(), ScalarValue::Int32(Some(42)));
        // The declared type decides the binary layout: an int2 for an int8 column.
        let short = 7i16.to_be_bytes();
        assert_eq!(
            decode(Some(&short), true, Some(&Type::INT2), &DataType::Int64).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert!(matches!(decode(Some(&[0xff]), false, None, &DataType::Utf8), Err(Error::InvalidText(_))));
    }

    #[test]
    fn nulls_are_typed() {
        assert_eq!(decode(None, false, None, &DataType::Int32).unwrap(), ScalarValue::Int32(None));
        let tstz = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")));
        assert_eq!(
            decode(None, true, None, &tstz).unwrap(),
            ScalarValue::TimestampMicrosecond(None, Some(Arc::from("+00:00")))
        );
    }
}
