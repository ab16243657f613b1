//! Turns DataFusion's errors into raftable's one [`Error`] type, choosing the variant (and so
//! the SQLSTATE the front end sends) from the error's kind and, where DataFusion only gives a
//! message, from the message. A raftable error that travelled through a DataFusion stream
//! (wrapped as `External`) comes back out unchanged.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use raftable_common::Error;

/// Wraps a raftable error for a DataFusion stream or callback.
pub fn to_datafusion(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

pub fn from_datafusion(e: DataFusionError) -> Error {
    let root = e.find_root();
    match root {
        DataFusionError::External(inner) => {
            if let Some(ours) = inner.downcast_ref::<Error>() {
                return ours.clone();
            }
            if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                return from_arrow(arrow);
            }
            Error::Internal(inner.to_string())
        }
        DataFusionError::ArrowError(arrow, _) => from_arrow(arrow),
        DataFusionError::SQL(parser, _) => Error::SyntaxError(strip(&parser.to_string())),
        DataFusionError::NotImplemented(msg) => Error::Unsupported(msg.clone()),
        DataFusionError::SchemaError(schema, _) => {
            let msg = schema.to_string();
            if msg.contains("Ambiguous reference") {
                Error::AmbiguousColumn(msg)
            } else if let Some(name) = field_name(&msg) {
                Error::UndefinedColumn(format!("column {} does not exist", quote(name)))
            } else {
                Error::SyntaxError(msg)
            }
        }
        DataFusionError::Plan(msg) => from_message(msg),
        DataFusionError::Execution(msg) => from_message(msg),
        other => from_message(&other.to_string()),
    }
}

fn from_arrow(e: &ArrowError) -> Error {
    match e {
        ArrowError::DivideByZero => Error::DivisionByZero,
        ArrowError::InvalidArgumentError(msg) if msg.contains("non-nullable but contains null") => {
            Error::NotNullViolation(format!("null value violates not-null constraint ({msg})"))
        }
        ArrowError::InvalidArgumentError(msg) if msg.contains("too large to store") => {
            Error::OutOfRange(format!("numeric field overflow: {msg}"))
        }
        ArrowError::CastError(msg) | ArrowError::ParseError(msg) => {
            if msg.contains("overflow")
                || msg.contains("too large")
                || msg.contains("out of range")
                || msg.contains("Can't cast value")
                || integer_text_too_wide(msg)
            {
                Error::OutOfRange(msg.clone())
            } else if ["Date32", "Timestamp", "Time64", "timestamp", "date"].iter().any(|t| msg.contains(t)) {
                Error::InvalidDatetime(format!("invalid input syntax for type date/time: {msg}"))
            } else {
                Error::InvalidText(format!("invalid input syntax: {msg}"))
            }
        }
        ArrowError::ComputeError(msg) | ArrowError::ArithmeticOverflow(msg) => {
            if msg.contains("zero") {
                Error::DivisionByZero
            } else if msg.ends_with("out of range") {
                // raftable's checked integer operators (`plan::arithmetic`): PostgreSQL's words.
                Error::OutOfRange(msg.clone())
            } else if msg.to_ascii_lowercase().contains("overflow") {
                Error::OutOfRange(format!("value out of range: {msg}"))
            } else {
                // DataFusion's functions report theirs inside Arrow's (`sqrt` of a negative).
                from_message(msg)
            }
        }
        other => Error::Internal(other.to_string()),
    }
}

fn from_message(msg: &str) -> Error {
    let lower = msg.to_ascii_lowercase();
    if let Some(name) = between(msg, "table '", "' not found") {
        let short = name.rsplit('.').next().unwrap_or(name);
        return Error::UndefinedTable(format!("relation \"{short}\" does not exist"));
    }
    if lower.contains("ambiguous reference") {
        return Error::AmbiguousColumn(msg.to_string());
    }
    if lower.contains("inconsistent data length across values list") {
        return Error::SyntaxError("VALUES lists must all be the same length".into());
    }
    if lower.contains("must appear in the group by") || lower.contains("group by clause") {
        return Error::GroupingError(msg.to_string());
    }
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return Error::DivisionByZero;
    }
    if lower.contains("cannot take square root of a negative number") {
        return Error::InvalidPowerArgument("cannot take square root of a negative number".into());
    }
    if lower.contains("scalar subquery returned more than one row") {
        return Error::CardinalityViolation("more than one row returned by a subquery used as an expression".into());
    }
    if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("cannot coerce")
        || lower.contains("function") && lower.contains("does not exist")
    {
        return Error::UndefinedFunction(msg.to_string());
    }
    if lower.contains("overflow") {
        return Error::OutOfRange(msg.to_string());
    }
    if lower.contains("cannot cast") || lower.contains("cannot parse") {
        return Error::InvalidText(msg.to_string());
    }
    if lower.contains("unsupported") || lower.contains("not supported") || lower.contains("not implemented") {
        return Error::Unsupported(msg.to_string());
    }
    if lower.contains("no field named") || lower.contains("column") && lower.contains("not found") {
        return Error::UndefinedColumn(msg.to_string());
    }
    Error::InvalidInput(msg.to_string())
}

/// The column named in DataFusion's "No field named <name>. ..." (a qualified name keeps its
/// dots: the name ends at a dot followed by white space, or at the message's end).
fn field_name(msg: &str) -> Option<&str> {
    let from = msg.find("No field named ")? + "No field named ".len();
    let rest = &msg[from..];
    let bytes = rest.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'.' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// Arrow's "Cannot cast string '99999999999' to value of Int32 type": text that is an integer,
/// but not one the type holds, is out of range (22003) in PostgreSQL, not invalid text.
fn integer_text_too_wide(msg: &str) -> bool {
    let Some(text) = between(msg, "Cannot cast string '", "' to value of Int") else { return false };
    let digits = text.trim().trim_start_matches(['-', '+']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn between<'a>(msg: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = msg.find(start)? + start.len();
    let len = msg[from..].find(end)?;
    Some(&msg[from..from + len])
}

/// `t.x` or `"x"` as PostgreSQL quotes a column name: `"x"`.
fn quote(name: &str) -> String {
    let bare = name.rsplit('.').next().unwrap_or(name).trim_matches('"');
    format!("\"{bare}\"")
}

fn strip(msg: &str) -> String {
    msg.trim_start_matches("sql parser error: ").to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    #[test]
    fn kinds() {
        let e = DataFusionError::Plan("table 'raftable.public.nope' not found".into());
        assert_eq!(from_datafusion(e), Error::UndefinedTable("relation \"nope\" does not exist".into()));
        assert_eq!(
            from_datafusion(DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None)),
            Error::DivisionByZero
        );
        let ours = to_datafusion(Error::Retry("x".into()));
        assert_eq!(from_datafusion(DataFusionError::Context("scan".into(), Box::new(ours))), Error::Retry("x".into()));
    }

    // Each pattern the mapping matches, with the error produced the way DataFusion (or Arrow)
    // produces it, so that an upgrade that rewords a message fails here rather than changing
    // the SQLSTATE clients see.

    /// A context configured as a session's (PostgreSQL dialect, numeric literals) with
    /// `t(a int, b text, big bigint)` holding `(2, 'x', 9223372036854775807)` and `u(a int)`.
    fn context() -> SessionContext {
        let mut config = SessionConfig::new();
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        let ctx = SessionContext::new_with_config(config);
        let t = RecordBatch::try_from_iter([
            ("a", Arc::new(Int32Array::from(vec![2])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
            ("big", Arc::new(Int64Array::from(vec![i64::MAX])) as ArrayRef),
        ])
        .unwrap();
        ctx.register_batch("t", t).unwrap();
        let u = RecordBatch::try_from_iter([("a", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]).unwrap();
        ctx.register_batch("u", u).unwrap();
        ctx
    }

    /// Asserts that `sql` fails with an error of the variant `want` (whatever its message).
    async fn assert_kind(sql: &str, want: fn(String) -> Error) {
        let got = error_of(sql).await;
        assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want(String::new())), "{sql}: {got:?}");
    }

    /// The error of planning or running `sql`, mapped.
    async fn error_of(sql: &str) -> Error {
        let ctx = context();
        let result = async { ctx.sql(sql).await?.collect().await }.await;
        from_datafusion(result.expect_err(sql))
    }

    #[tokio::test]
    async fn unknown_table() {
        let want = Error::UndefinedTable("relation \"nope\" does not exist".into());
        assert_eq!(error_of("SELECT * FROM nope").await, want);
        assert_eq!(error_of("SELECT * FROM public.nope").await, want);
    }

    #[tokio::test]
    async fn unknown_column() {
        let want = Error::UndefinedColumn("column \"zz\" does not exist".into());
        assert_eq!(error_of("SELECT zz FROM t").await, want);
        // With DataFusion's "Did you mean" suggestion after the name.
        let want = Error::UndefinedColumn("column \"bb\" does not exist".into());
        assert_eq!(error_of("SELECT bb FROM t").await, want);
    }

    #[tokio::test]
    async fn unknown_qualified_column() {
        assert_eq!(error_of("SELECT t.zz FROM t").await, Error::UndefinedColumn("column \"zz\" does not exist".into()));
    }

    #[tokio::test]
    async fn ambiguous_column() {
        assert_kind("SELECT a FROM t, u", Error::AmbiguousColumn).await;
    }

    #[tokio::test]
    async fn grouping_violation() {
        // Both: "Column in SELECT must be in GROUP BY or an aggregate function: While expanding
        // wildcard, column "t.a" must appear in the GROUP BY clause or must be part of an
        // aggregate function, ..." (the "'t.a' must appear in GROUP BY clause because it's not
        // an aggregate expression" wording is only the diagnostic's).
        assert_kind("SELECT a, count(*) FROM t GROUP BY b", Error::GroupingError).await;
        assert_kind("SELECT * FROM t GROUP BY a", Error::GroupingError).await;
    }

    #[tokio::test]
    async fn division_by_zero() {
        for sql in ["SELECT a / 0 FROM t", "SELECT a % 0 FROM t", "SELECT 1 / 0", "SELECT 1.5 / 0"] {
            assert_eq!(error_of(sql).await, Error::DivisionByZero, "{sql}");
        }
    }

    #[test]
    fn division_by_zero_in_a_message() {
        // No DataFusion 55 path found that reports it as text only (Arrow's DivideByZero is the
        // real one, above); kept for errors that arrive as text.
        assert_eq!(from_datafusion(DataFusionError::Execution("Divide by zero".into())), Error::DivisionByZero);
        assert_eq!(from_message("division by zero"), Error::DivisionByZero);
        let compute = ArrowError::ComputeError("attempt to divide by zero".into());
        assert_eq!(from_arrow(&compute), Error::DivisionByZero);
    }

    #[tokio::test]
    async fn text_that_does_not_parse() {
        assert_kind("SELECT CAST(b AS INT) FROM t", Error::InvalidText).await;
        assert_kind("SELECT CAST('1.5x' AS NUMERIC)", Error::InvalidText).await;
    }

    #[tokio::test]
    async fn text_that_is_no_date_or_time() {
        for sql in
            ["SELECT CAST('2024-13-45' AS DATE)", "SELECT CAST(b AS DATE) FROM t", "SELECT CAST(b AS TIMESTAMP) FROM t"]
        {
            assert_kind(sql, Error::InvalidDatetime).await;
        }
    }

    #[tokio::test]
    async fn casts_out_of_range() {
        // "Can't cast value 9223372036854775807 to type Int32"
        assert_kind("SELECT CAST(big AS INT) FROM t", Error::OutOfRange).await;
        // "... is too large to store in a Decimal128 of precision 3. Max is 999"
        assert_kind("SELECT CAST(big AS NUMERIC(3, 0)) FROM t", Error::OutOfRange).await;
    }

    #[tokio::test]
    async fn decimal_overflow_in_a_cast() {
        // "Overflow happened on: 2 * 100000000000000000000000000000000000000" as Arrow's
        // ArithmeticOverflow: 2 does not fit NUMERIC(38, 38), its unscaled value overflows i128.
        assert_kind("SELECT CAST(a AS NUMERIC(38, 38)) FROM t", Error::OutOfRange).await;
    }

    #[tokio::test]
    async fn integer_text_out_of_range() {
        assert_kind("SELECT CAST('99999999999' AS INT)", Error::OutOfRange).await;
    }

    #[tokio::test]
    async fn arithmetic_overflow() {
        // Integer `+ - *` wrap in DataFusion instead (docs/sql.md, "Differences"); these are
        // the overflows that are errors. "Overflow happened on FACTORIAL(30)" as a message:
        assert_kind("SELECT factorial(30)", Error::OutOfRange).await;
        // "Signed integer overflow in LCM(...)" as Arrow's ComputeError:
        assert_kind("SELECT lcm(big, 2) FROM t", Error::OutOfRange).await;
        assert_kind("SELECT gcd(-big - 1, 0) FROM t", Error::OutOfRange).await;
    }

    #[tokio::test]
    async fn unknown_function() {
        // "Invalid function 'nofunc'.\nDid you mean 'round'?"
        assert_kind("SELECT nofunc(1)", Error::UndefinedFunction).await;
    }

    #[tokio::test]
    async fn no_function_matches_the_arguments() {
        // "... No function matches the given name and argument types 'round(Utf8, Utf8)'. ..."
        assert_kind("SELECT round('x', 'y')", Error::UndefinedFunction).await;
    }

    #[tokio::test]
    async fn operator_without_matching_types() {
        // "Cannot coerce arithmetic expression ..."
        assert_kind("SELECT true + 1", Error::UndefinedFunction).await;
    }

    #[tokio::test]
    async fn not_implemented() {
        // "Unsupported SQL statement: ..." as NotImplemented.
        assert_kind("GRANT SELECT ON t TO bob", Error::Unsupported).await;
    }

    #[tokio::test]
    async fn syntax_error() {
        let Error::SyntaxError(msg) = error_of("SELEC 1").await else { panic!("not a syntax error") };
        assert!(msg.starts_with("Expected: an SQL statement, found: SELEC"), "{msg}");
    }

    #[test]
    fn messages_of_plan_and_execution_errors() {
        // Constructed: these patterns catch messages of paths a plain query does not reach here
        // (pg_catalog functions, window frame bounds, other kinds than the queries above give).
        let plan = |m: &str| from_datafusion(DataFusionError::Plan(m.into()));
        let execution = |m: &str| from_datafusion(DataFusionError::Execution(m.into()));
        assert!(matches!(plan("function pg_nope(integer) does not exist"), Error::UndefinedFunction(_)));
        assert!(matches!(execution("Cannot cast Utf8(\"x\") to Int64"), Error::InvalidText(_)));
        assert!(matches!(plan("Cannot parse 1e99999 as BigDecimal"), Error::InvalidText(_)));
        assert!(matches!(plan("Unsupported Value x"), Error::Unsupported(_)));
        assert!(matches!(plan("Recursion is not supported"), Error::Unsupported(_)));
        assert!(matches!(plan("Ambiguous reference to field a"), Error::AmbiguousColumn(_)));
        assert!(matches!(plan("something must appear in the GROUP BY"), Error::GroupingError(_)));
        assert!(matches!(execution("No field named x"), Error::UndefinedColumn(_)));
        assert!(matches!(execution("Column 'x' not found in batch"), Error::UndefinedColumn(_)));
        assert!(matches!(plan("LIMIT must not be negative"), Error::InvalidInput(_)));
        // Any other kind goes through its message.
        assert!(matches!(
            from_datafusion(DataFusionError::Internal("table 'x' not found".into())),
            Error::UndefinedTable(_)
        ));
    }

    #[test]
    fn arrow_errors() {
        // Real Arrow errors: a NULL in a non-nullable column, a decimal over its precision.
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
        let column = Arc::new(Int32Array::from(vec![None])) as ArrayRef;
        let null = RecordBatch::try_new(schema, vec![column]).unwrap_err();
        assert!(matches!(from_arrow(&null), Error::NotNullViolation(_)), "{null}");
        let wide = Decimal128Array::from(vec![1000]).with_precision_and_scale(3, 0).unwrap();
        let large = wide.validate_decimal_precision(3).unwrap_err();
        assert!(matches!(from_arrow(&large), Error::OutOfRange(_)), "{large}");
        // Constructed.
        let parse = |m: &str| from_arrow(&ArrowError::ParseError(m.into()));
        assert!(matches!(parse("Error parsing timestamp from 'x'"), Error::InvalidDatetime(_)));
        assert!(matches!(parse("value out of range"), Error::OutOfRange(_)));
        assert!(matches!(parse("Cannot parse 'x' as i32"), Error::InvalidText(_)));
        let compute = |m: &str| from_arrow(&ArrowError::ComputeError(m.into()));
        assert!(matches!(compute("Overflow happened"), Error::OutOfRange(_)));
        assert!(matches!(compute("bad input"), Error::InvalidInput(_)));
        assert!(matches!(from_arrow(&ArrowError::MemoryError("no memory".into())), Error::Internal(_)));
        // Through DataFusion's wrappers.
        let external = DataFusionError::External(Box::new(ArrowError::DivideByZero));
        assert_eq!(from_datafusion(external), Error::DivisionByZero);
        let other = DataFusionError::External(Box::new(std::io::Error::other("disk")));
        assert_eq!(from_datafusion(other), Error::Internal("disk".into()));
    }
}
