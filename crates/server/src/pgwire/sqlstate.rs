//! Errors as the client sees them: every [`raftable_common::Error`] variant mapped to a
//! severity, SQLSTATE and message in one function, [`error_info`].
//!
//! The front end (pgwire session → `sql::Session` → shards) converts each failed statement
//! here right before it becomes an ErrorResponse. Errors that travel inside DataFusion (row
//! streams) are unwrapped back to raftable errors first (`raftable_sql::from_datafusion`).

use pgwire::error::{ErrorInfo, PgWireError};
use raftable_common::Error;

/// The severity, SQLSTATE and message sent to the client for `e`.
///
/// [`Error::Unknown`] is the one FATAL error: the statement may or may not have applied, so
/// the session cannot go on as if it failed; the connection is closed after sending it.
pub(super) fn error_info(e: &Error) -> ErrorInfo {
    let retry = |what: &str| format!("{what}; the statement did not apply and can be retried");
    let (code, message) = match e {
        Error::InvalidInput(m) => ("22023", m.clone()),
        Error::SyntaxError(m) => ("42601", m.clone()),
        Error::UndefinedTable(m) => ("42P01", m.clone()),
        Error::UndefinedColumn(m) => ("42703", m.clone()),
        Error::AmbiguousColumn(m) => ("42702", m.clone()),
        Error::DuplicateColumn(m) => ("42701", m.clone()),
        Error::InvalidTableDefinition(m) => ("42P16", m.clone()),
        Error::SequenceLimit(m) => ("2200H", m.clone()),
        Error::ObjectNotInPrerequisiteState(m) => ("55000", m.clone()),
        Error::GeneratedAlways(m) => ("428C9", m.clone()),
        Error::DependentObjectsStillExist(m) => ("2BP01", m.clone()),
        Error::CheckViolation(m) => ("23514", m.clone()),
        Error::UniqueIndexBuild { .. } => ("23505", e.to_string()),
        Error::InvalidColumnReference(m) => ("42P10", m.clone()),
        Error::ForeignKeyViolation(m) => ("23503", m.clone()),
        Error::InvalidForeignKey(m) => ("42830", m.clone()),
        Error::WrongObjectType(m) => ("42809", m.clone()),
        Error::UndefinedSchema(m) => ("3F000", m.clone()),
        Error::DuplicateSchema(m) => ("42P06", m.clone()),
        Error::NullValueNotAllowed(m) => ("22004", m.clone()),
        Error::StringTooLong(m) => ("22001", m.clone()),
        Error::InvalidDatetime(m) => ("22007", m.clone()),
        Error::DatetimeOutOfRange(m) => ("22008", m.clone()),
        Error::GroupingError(m) => ("42803", m.clone()),
        Error::DuplicateTable(m) => ("42P07", m.clone()),
        Error::UndefinedObject(m) => ("42704", m.clone()),
        Error::UniqueViolation { .. } => ("23505", e.to_string()),
        // The SQL layer reports `UniqueViolation`; a raw key reaching here is still 23505.
        Error::DuplicateKey { .. } => ("23505", e.to_string()),
        Error::NotNullViolation(m) => ("23502", m.clone()),
        Error::CardinalityViolation(m) => ("21000", m.clone()),
        Error::InvalidText(m) => ("22P02", m.clone()),
        Error::OutOfRange(m) => ("22003", m.clone()),
        Error::DivisionByZero => ("22012", "division by zero".to_string()),
        Error::InvalidPowerArgument(m) => ("2201F", m.clone()),
        Error::DatatypeMismatch(m) => ("42804", m.clone()),
        Error::UndefinedFunction(m) => ("42883", m.clone()),
        Error::Unsupported(m) => ("0A000", m.clone()),
        Error::StackDepthExceeded(m) => ("54001", m.clone()),
        Error::ProgramLimitExceeded(m) => ("54000", m.clone()),
        Error::ConditionFailed { .. } => ("40001", retry("could not serialize access due to concurrent update")),
        Error::TxnConflict(_) | Error::TxnAborted(_) | Error::Locked { .. } => ("40001", retry(&e.to_string())),
        Error::InFailedTransaction => ("25P02", e.to_string()),
        Error::ReadOnlyTransaction(m) => ("25006", m.clone()),
        Error::NoActiveTransaction(m) => ("25P01", m.clone()),
        Error::UndefinedSavepoint(m) => ("3B001", m.clone()),
        Error::NotLeader { .. } | Error::Retry(_) | Error::SnapshotTooOld(_) => ("40001", retry(&e.to_string())),
        Error::Unknown(m) => {
            let message = format!(
                "the outcome of the statement is unknown (it may or may not have applied): {m}; \
                 closing the connection"
            );
            return ErrorInfo::new("FATAL".into(), "08007".into(), message);
        }
        Error::InvalidData(_) => ("XX001", e.to_string()),
        Error::Io(_) | Error::Internal(_) => ("XX000", e.to_string()),
    };
    let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
    // As PostgreSQL does: drivers and ORMs tell unique violations apart by the constraint.
    if let Error::UniqueViolation { constraint } = e {
        info.constraint = Some(constraint.clone());
    }
    info
}

/// `e` as the pgwire error that sends [`error_info`]'s response.
pub(super) fn pg_error(e: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

/// An ERROR with an explicit SQLSTATE, for protocol-level mistakes of the client.
pub(super) fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: Error) -> (String, String) {
        let info = error_info(&e);
        (info.severity, info.code)
    }

    #[test]
    fn every_variant_has_its_sqlstate() {
        let s = || "m".to_string();
        let cases = [
            (Error::InvalidInput(s()), "22023"),
            (Error::SyntaxError(s()), "42601"),
            (Error::UndefinedTable(s()), "42P01"),
            (Error::UndefinedColumn(s()), "42703"),
            (Error::AmbiguousColumn(s()), "42702"),
            (Error::DuplicateColumn(s()), "42701"),
            (Error::InvalidTableDefinition(s()), "42P16"),
            (Error::SequenceLimit(s()), "2200H"),
            (Error::ObjectNotInPrerequisiteState(s()), "55000"),
            (Error::GeneratedAlways(s()), "428C9"),
            (Error::DependentObjectsStillExist(s()), "2BP01"),
            (Error::CheckViolation(s()), "23514"),
            (Error::UniqueIndexBuild { index: s() }, "23505"),
            (Error::InvalidColumnReference(s()), "42P10"),
            (Error::ForeignKeyViolation(s()), "23503"),
            (Error::InvalidForeignKey(s()), "42830"),
            (Error::WrongObjectType(s()), "42809"),
            (Error::UndefinedSchema(s()), "3F000"),
            (Error::DuplicateSchema(s()), "42P06"),
            (Error::NullValueNotAllowed(s()), "22004"),
            (Error::StringTooLong(s()), "22001"),
            (Error::InvalidDatetime(s()), "22007"),
            (Error::DatetimeOutOfRange(s()), "22008"),
            (Error::GroupingError(s()), "42803"),
            (Error::DuplicateTable(s()), "42P07"),
            (Error::UndefinedObject(s()), "42704"),
            (Error::UniqueViolation { constraint: "t_pkey".into() }, "23505"),
            (Error::DuplicateKey { key: b"k".to_vec() }, "23505"),
            (Error::CardinalityViolation("twice".into()), "21000"),
            (Error::NotNullViolation(s()), "23502"),
            (Error::InvalidText(s()), "22P02"),
            (Error::OutOfRange(s()), "22003"),
            (Error::DivisionByZero, "22012"),
            (Error::InvalidPowerArgument(s()), "2201F"),
            (Error::DatatypeMismatch(s()), "42804"),
            (Error::UndefinedFunction(s()), "42883"),
            (Error::Unsupported(s()), "0A000"),
            (Error::StackDepthExceeded(s()), "54001"),
            (Error::ProgramLimitExceeded(s()), "54000"),
            (Error::ConditionFailed { key: b"k".to_vec() }, "40001"),
            (Error::SnapshotTooOld(s()), "40001"),
            (Error::TxnConflict(s()), "40001"),
            (Error::TxnAborted(s()), "40001"),
            (Error::InFailedTransaction, "25P02"),
            (Error::ReadOnlyTransaction(s()), "25006"),
            (Error::NoActiveTransaction(s()), "25P01"),
            (Error::UndefinedSavepoint(s()), "3B001"),
            (Error::NotLeader { leader: None }, "40001"),
            (Error::Retry(s()), "40001"),
            (Error::InvalidData(s()), "XX001"),
            (Error::Io(s()), "XX000"),
            (Error::Internal(s()), "XX000"),
        ];
        for (e, want) in cases {
            assert_eq!(code(e.clone()), ("ERROR".to_string(), want.to_string()), "{e:?}");
        }
    }

    #[test]
    fn unknown_outcome_is_fatal() {
        let info = error_info(&Error::Unknown("deadline".into()));
        assert!(info.is_fatal());
        assert_eq!(info.code, "08007");
        assert!(info.message.contains("deadline"));
    }

    #[test]
    fn messages_are_the_sql_layer_text() {
        let info = error_info(&Error::UndefinedTable("relation \"t\" does not exist".into()));
        assert_eq!(info.message, "relation \"t\" does not exist");
        let info = error_info(&Error::UniqueViolation { constraint: "t_pkey".into() });
        assert_eq!(info.message, "duplicate key value violates unique constraint \"t_pkey\"");
        assert_eq!(info.constraint.as_deref(), Some("t_pkey"));
        let info = error_info(&Error::Retry("election".into()));
        assert!(info.message.contains("can be retried"), "{}", info.message);
    }
}
