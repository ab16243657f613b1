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
            } else if let Some(name) = between(&msg, "No field named ", ".") {
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
            } else if msg.to_ascii_lowercase().contains("overflow") {
                Error::OutOfRange(format!("value out of range: {msg}"))
            } else {
                Error::InvalidInput(msg.clone())
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
    if lower.contains("must appear in the group by") || lower.contains("group by clause") {
        return Error::GroupingError(msg.to_string());
    }
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return Error::DivisionByZero;
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
}
