//! The one error type of raftable. Each variant tells the caller what to do about it; the
//! `server` crate maps variants to SQLSTATE codes in one function, `cluster` maps transport
//! failures into variants in one function.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Shorthand used across all crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error raftable returns. Errors travel between nodes (serde), so they carry strings,
/// not foreign error types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (bad key range, unknown shard, malformed input). Do not retry.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The SQL text does not parse (SQLSTATE 42601).
    #[error("{0}")]
    SyntaxError(String),
    /// A table named by the statement does not exist (42P01).
    #[error("{0}")]
    UndefinedTable(String),
    /// A column named by the statement does not exist (42703).
    #[error("{0}")]
    UndefinedColumn(String),
    /// A column name that matches several columns (42702).
    #[error("{0}")]
    AmbiguousColumn(String),
    /// A column defined twice (42701).
    #[error("{0}")]
    DuplicateColumn(String),
    /// A column used outside an aggregate that is not grouped by (42803).
    #[error("{0}")]
    GroupingError(String),
    /// CREATE TABLE of a name that exists (42P07).
    #[error("{0}")]
    DuplicateTable(String),
    /// An unknown setting, type or other named object (42704).
    #[error("{0}")]
    UndefinedObject(String),
    /// An unknown function or operator for the argument types (42883).
    #[error("{0}")]
    UndefinedFunction(String),
    /// A value of the wrong type where a type is fixed (42804).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// NULL into a NOT NULL column (23502). Nothing was written.
    #[error("{0}")]
    NotNullViolation(String),
    /// Text that is not a valid value of its type, e.g. `'abc'::int` (22P02).
    #[error("{0}")]
    InvalidText(String),
    /// Text that is not a valid date or time (22007).
    #[error("{0}")]
    InvalidDatetime(String),
    /// A value outside its type's range (22003).
    #[error("{0}")]
    OutOfRange(String),
    /// A date or time whose fields are out of range, e.g. `'2024-02-30'::date` (22008).
    #[error("{0}")]
    DatetimeOutOfRange(String),
    /// A string longer than its column allows (22001).
    #[error("{0}")]
    StringTooLong(String),
    /// Division by zero (22012).
    #[error("division by zero")]
    DivisionByZero,
    /// A math function's argument outside its domain: the square root of a negative number
    /// (2201F). The statement fails for that row's value; sent again unchanged, it fails again.
    #[error("{0}")]
    InvalidPowerArgument(String),
    /// The statement nests deeper (operators, brackets, subqueries, joins, set operations)
    /// than a node evaluates without risking its stack (54001). Simplify or split it; sent
    /// again unchanged, it fails again.
    #[error("{0}")]
    StackDepthExceeded(String),
    /// The statement exceeds a size limit of the node (54000). Split it into smaller ones.
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// Valid SQL that raftable does not support (yet) (0A000).
    #[error("{0}")]
    Unsupported(String),
    /// A statement would change one row twice where PostgreSQL forbids it (21000), such as an
    /// `INSERT ... ON CONFLICT DO UPDATE` proposing the same key twice. Nothing was written.
    #[error("{0}")]
    CardinalityViolation(String),
    /// A row whose key or unique value is already present violates `constraint` (a table's
    /// `<table>_pkey`, say): the SQL layer's form of [`Error::DuplicateKey`] (23505). Nothing
    /// was written.
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String },
    /// A put-if-absent found the key present; the whole write batch was rejected. The storage
    /// layer's condition on raw key bytes; the SQL layer reports it as
    /// [`Error::UniqueViolation`] naming the constraint.
    #[error("duplicate key {}", show_key(.key))]
    DuplicateKey { key: Vec<u8> },
    /// A compare-and-put / compare-and-delete found a different current row; the whole batch
    /// was rejected. Re-read and retry (optimistic concurrency).
    #[error("condition failed on key {}", show_key(.key))]
    ConditionFailed { key: Vec<u8> },
    /// A read at a snapshot older than the shard's garbage-collection threshold: versions it
    /// would see may be gone. Nothing applied; restart the statement at a new snapshot.
    #[error("snapshot too old: {0}")]
    SnapshotTooOld(String),
    /// A transaction could not be serialized: something it read was written since it read it,
    /// or it met another transaction's lock when it could not wait. Nothing applied (40001).
    #[error("could not serialize access due to a concurrent transaction: {0}")]
    TxnConflict(String),
    /// The transaction was aborted (by another transaction that found it stalled, or by its own
    /// failure); none of its writes apply (40001).
    #[error("the transaction was aborted: {0}")]
    TxnAborted(String),
    /// A read or write met `txn`'s lock on `key`, placed at stamp `ts`: the lock's transaction
    /// has not finished. Nothing applied: settle the lock (wait for it, or push its transaction)
    /// and send the request again.
    #[error("key {} is locked by transaction {} (since {ts})", show_key(.key), .txn.id)]
    Locked { key: Vec<u8>, txn: crate::TxnMeta, ts: crate::Ts },
    /// A statement in a transaction block that an earlier error failed (25P02): only
    /// `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`) runs until the block ends.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// A write in a `READ ONLY` transaction (25006).
    #[error("{0}")]
    ReadOnlyTransaction(String),
    /// A command that needs a transaction block outside one (25P01), e.g. `SAVEPOINT`.
    #[error("{0}")]
    NoActiveTransaction(String),
    /// `ROLLBACK TO` / `RELEASE` of a savepoint the block does not have (3B001).
    #[error("{0}")]
    UndefinedSavepoint(String),
    /// This replica is not the shard's leader. `leader` is the current leader if known, with its
    /// rpc address. The request certainly did not apply: retry there.
    #[error("not leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// A cluster condition (election, unreachable replicas, deadline while routing) under which
    /// the request certainly did not apply. Safe to retry the whole statement.
    #[error("retry: {0}")]
    Retry(String),
    /// The request may or may not have applied (connection broke or deadline passed after it was
    /// sent). The caller must not report success or failure; a SQL session closes the connection.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Stored bytes could not be decoded: a bug or corruption.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// Local I/O failed (disk). Never deterministic.
    #[error("i/o error: {0}")]
    Io(String),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
    /// A table definition that cannot be (42P16): e.g. a primary key column made nullable.
    /// Last, so that the variants before it keep their wire numbers (bincode).
    #[error("{0}")]
    InvalidTableDefinition(String),
    /// A sequence has no value left within its bounds and does not cycle (2200H).
    #[error("{0}")]
    SequenceLimit(String),
    /// The object is not in the state the operation needs, e.g. `currval` before any `nextval`
    /// in the session (55000).
    #[error("{0}")]
    ObjectNotInPrerequisiteState(String),
    /// A value given for a `GENERATED ALWAYS` column (428C9).
    #[error("{0}")]
    GeneratedAlways(String),
    /// A DROP without CASCADE of an object others depend on, e.g. a sequence a column's
    /// default calls (2BP01).
    #[error("{0}")]
    DependentObjectsStillExist(String),
    /// A row for which a CHECK constraint is false (23514).
    #[error("{0}")]
    CheckViolation(String),
    /// CREATE UNIQUE INDEX found two rows with the same values (23505); nothing was created.
    #[error("could not create unique index \"{index}\"")]
    UniqueIndexBuild { index: String },
    /// A reference to columns that match nothing they must (42P10): an ON CONFLICT target
    /// that is no unique index.
    #[error("{0}")]
    InvalidColumnReference(String),
    /// A row referencing a row that does not exist, or a referenced row deleted or changed
    /// while rows still reference it (23503).
    #[error("{0}")]
    ForeignKeyViolation(String),
    /// A FOREIGN KEY whose referenced columns are no primary key or unique index (42830).
    #[error("{0}")]
    InvalidForeignKey(String),
    /// A statement naming an object of another kind than it acts on (42809): DROP TABLE of a
    /// view, INSERT into a view.
    #[error("{0}")]
    WrongObjectType(String),
    /// A schema that does not exist (3F000): `CREATE TABLE nosuch.t`, `DROP SCHEMA nosuch`.
    #[error("{0}")]
    UndefinedSchema(String),
    /// A schema name taken (42P06).
    #[error("{0}")]
    DuplicateSchema(String),
    /// A NULL where a function takes none (22004): `format('%I', NULL)`.
    #[error("{0}")]
    NullValueNotAllowed(String),
}

impl Error {
    /// [`Error::Unsupported`]: `Error::unsupported(format!("type {t} is not supported"))`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::Unsupported(message.into())
    }

    /// [`Error::Internal`] from any error or message: `.map_err(Error::internal)` for a foreign
    /// error that means a bug here.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    /// Whether every replica applying the same command would hit the same error. Inside Raft
    /// apply, deterministic errors are returned to the client as the command's result; any other
    /// error crashes the node, or replicas would diverge.
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            Error::NotLeader { .. }
                | Error::Retry(_)
                | Error::Unknown(_)
                | Error::InvalidData(_)
                | Error::Io(_)
                | Error::Internal(_)
        )
    }

    /// Whether the request certainly did not apply and may simply be sent again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NotLeader { .. } | Error::Retry(_))
    }
}

/// Keys are bytes; show them readably in messages (printable ASCII as is, the rest hex-escaped).
fn show_key(key: &[u8]) -> String {
    key.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<bincode::Error> for Error {
    fn from(e: bincode::Error) -> Self {
        Error::InvalidData(e.to_string())
    }
}

/// `Err(errinput!("shard {id} has no range"))`: builds an [`Error::InvalidInput`].
#[macro_export]
macro_rules! errinput {
    ($($args:tt)*) => { $crate::Error::InvalidInput(format!($($args)*)).into() };
}

/// `Err(errdata!(...))`: builds an [`Error::InvalidData`].
#[macro_export]
macro_rules! errdata {
    ($($args:tt)*) => { $crate::Error::InvalidData(format!($($args)*)).into() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::DuplicateKey { key: vec![1] }.is_deterministic());
        assert!(!Error::Io("disk".into()).is_deterministic());
        assert!(Error::Retry("election".into()).is_retryable());
        assert!(!Error::Unknown("conn".into()).is_retryable());
        assert_eq!(Error::DuplicateKey { key: b"k\x01".to_vec() }.to_string(), "duplicate key k\\x01");
        let unique = Error::UniqueViolation { constraint: "t_pkey".into() };
        assert!(unique.is_deterministic() && !unique.is_retryable());
        assert_eq!(unique.to_string(), "duplicate key value violates unique constraint \"t_pkey\"");
    }

    #[test]
    fn constructors() {
        assert_eq!(Error::unsupported("LISTEN"), Error::Unsupported("LISTEN".into()));
        let parse = "x".parse::<u8>().unwrap_err();
        assert_eq!(Error::internal(&parse), Error::Internal(parse.to_string()));
        assert!(!Error::internal("bug").is_deterministic());
    }
}
