//! Which PostgreSQL type stands for which Arrow type, both ways, and the names error messages
//! give them: the pg type a column or parameter is described as ([`pg_type`]), the Arrow type a
//! client-declared parameter type plans as ([`planned_type`]), and TIMESTAMPTZ's zone ([`UTC`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use pgwire::api::Type;

/// The time zone of TIMESTAMPTZ values in Arrow (UTC, written as an offset).
pub(crate) const UTC: &str = "+00:00";

/// The Arrow type to plan a parameter with when the client declared `t` in Parse; `None`
/// lets the SQL layer infer it (unknown, numeric whose scale the context decides, others).
pub(crate) fn planned_type(t: &Type) -> Option<DataType> {
    let text = [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UUID, Type::JSON, Type::JSONB];
    Some(if *t == Type::BOOL {
        DataType::Boolean
    } else if *t == Type::INT2 {
        DataType::Int16
    } else if *t == Type::INT4 {
        DataType::Int32
    } else if *t == Type::INT8 {
        DataType::Int64
    } else if *t == Type::FLOAT4 {
        DataType::Float32
    } else if *t == Type::FLOAT8 {
        DataType::Float64
    } else if text.contains(t) {
        DataType::Utf8
    } else if *t == Type::BYTEA {
        DataType::Binary
    } else if *t == Type::DATE {
        DataType::Date32
    } else if *t == Type::TIMESTAMP {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if *t == Type::TIMESTAMPTZ {
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
    } else {
        return None;
    })
}

/// The pg type a value of Arrow type `dt` is described and encoded as.
pub(crate) fn pg_type(dt: &DataType) -> Type {
    arrow_pg::datatypes::into_pg_type(dt).unwrap_or(Type::UNKNOWN)
}

/// The PostgreSQL name of `dt`'s type, for error messages.
pub(crate) fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(..) => "numeric".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary => "bytea".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_plan_as_arrow_types() {
        let tstz = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)));
        assert_eq!(planned_type(&Type::INT8), Some(DataType::Int64));
        assert_eq!(planned_type(&Type::UUID), Some(DataType::Utf8));
        assert_eq!(planned_type(&Type::TIMESTAMPTZ), Some(tstz.clone()));
        assert_eq!(planned_type(&Type::NUMERIC), None);
        assert_eq!(planned_type(&Type::UNKNOWN), None);
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)).oid(), 1700);
        assert_eq!(pg_type(&tstz).oid(), 1184);
        assert_eq!(pg_type(&DataType::Utf8).oid(), 25);
    }

    #[test]
    fn names_are_postgres_names() {
        assert_eq!(type_name(&DataType::Int32), "integer");
        assert_eq!(type_name(&DataType::Decimal128(10, 2)), "numeric");
        assert_eq!(
            type_name(&DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))),
            "timestamp with time zone"
        );
    }
}
