//! PostgreSQL's date and time functions and casts in a session's context, over
//! `crate::datetime`: text cast to `date`, `timestamp` or `timestamptz` ([`text_cast`],
//! applied by `super::semantics`: `'2026-01-01 10:00'::timestamp`, a text compared with a
//! timestamp column) reads PostgreSQL's input forms, where Arrow's cast refuses a time without
//! seconds; `to_char(timestamp | date, template)` takes PostgreSQL's template patterns
//! (DataFusion's takes chrono's, and answers a PostgreSQL template with the template's text);
//! `transaction_timestamp()`, `statement_timestamp()`, `clock_timestamp()`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::Transformed;
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::datetime::{parse_array, to_char, Kind};
use crate::error::to_datafusion;

/// The functions to register in a session's context (whose `now()` also answers
/// `transaction_timestamp()`: [`transaction_timestamp`]).
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(ToChar { signature: Signature::any(2, Volatility::Immutable) }),
        // A stable function is evaluated once, when the statement is planned: its start.
        ScalarUDF::new_from_impl(Clock {
            name: "statement_timestamp",
            signature: Signature::nullary(Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(Clock {
            name: "clock_timestamp",
            signature: Signature::nullary(Volatility::Volatile),
        }),
    ]
}

/// DataFusion's `now()` (as registered in `ctx`) under the name `transaction_timestamp` too:
/// `exec::statement_state` gives it the transaction's start.
pub(crate) fn transaction_timestamp(ctx: &SessionContext) -> Option<ScalarUDF> {
    let now = ctx.udf("now").ok()?;
    Some(now.as_ref().clone().with_aliases(["transaction_timestamp"]))
}

/// `statement_timestamp()` and `clock_timestamp()`: the clock, read when the function is
/// evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Clock {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for Clock {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, Some(crate::types::UTC.into())))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let now = chrono::Utc::now().timestamp_micros();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(now), Some(crate::types::UTC.into()))))
    }
}

/// `expr` as a call reading text in PostgreSQL's forms, if it is a cast of text to a date or
/// a timestamp.
pub(crate) fn text_cast(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let target = field.data_type();
    let kind = match target {
        DataType::Date32 => Kind::Date,
        DataType::Timestamp(_, None) => Kind::Timestamp,
        DataType::Timestamp(_, Some(_)) => Kind::TimestampTz,
        _ => return Ok(Transformed::no(expr)),
    };
    if !matches!(inner.get_type(schema)?, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return Ok(Transformed::no(expr));
    }
    let f = TextToDatetime { kind, target: target.clone(), signature: Signature::any(1, Volatility::Stable) };
    Ok(Transformed::yes(ScalarUDF::new_from_impl(f).call(vec![inner.as_ref().clone()])))
}

/// Text read as a date or timestamp of `target`'s type (`now` and `today` depend on the
/// clock: stable, not immutable).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToDatetime {
    kind: Kind,
    target: DataType,
    signature: Signature,
}

impl ScalarUDFImpl for TextToDatetime {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Date => "date_in",
            Kind::Timestamp => "timestamp_in",
            Kind::TimestampTz => "timestamptz_in",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let text = args.args[0].to_array(args.number_rows)?;
        let out = parse_array(&text, self.kind, &self.target).map_err(to_datafusion)?;
        super::columnar(out, scalar)
    }
}

/// `to_char(timestamp | timestamptz | date, text)` with PostgreSQL's template patterns.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match &args[0] {
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null => Ok(DataType::Utf8),
            other => Err(DataFusionError::NotImplemented(format!(
                "to_char of {other} is not supported (timestamps and dates are)"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = args.number_rows;
        let values = args.args[0].to_array(rows)?;
        let with_zone = matches!(values.data_type(), DataType::Timestamp(_, Some(_)));
        let micros = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let micros = micros.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let templates = cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let templates = templates.as_string::<i32>();
        let out = (0..rows)
            .map(|i| {
                if micros.is_null(i) || templates.is_null(i) {
                    return Ok(None);
                }
                to_char(micros.value(i), templates.value(i), with_zone).map(Some)
            })
            .collect::<raftable_common::Result<StringArray>>()
            .map_err(to_datafusion)?;
        super::columnar(Arc::new(out), scalar)
    }
}
