//! One client connection's state: its `sql::Session`, its cancel counter, and whether it is
//! broken by an unknown outcome. Statements of both protocols run through here.
//!
//! Flow: pgwire decodes a message and calls the simple or extended handler (`simple`,
//! `extended`), which call [`Connection::prepare`] and [`Connection::execute`] here; these call
//! `sql::Session`, which plans with DataFusion and reads and writes the shards. Every error
//! leaves through [`Connection::fail`], which maps it to a SQLSTATE (`sqlstate`) and, for an
//! unknown outcome, marks the connection broken: the FATAL error closes it, and anything the
//! client still sends is refused.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use futures::FutureExt;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use raftable_common::Error;
use raftable_sql::{Output, Prepared, Session, Stmt, TransactionState};
use tokio::sync::{watch, Mutex};

use super::cancel::CancelToken;
use super::sqlstate::pg_error;

/// Per-connection state shared by the startup, simple and extended query handlers.
pub(super) struct Connection {
    session: Mutex<Session>,
    /// Bumped by a cancel request for this connection (see `cancel`).
    cancel: Arc<watch::Sender<u64>>,
    /// Set once an unknown outcome was reported; the connection only closes after that.
    broken: AtomicBool,
    /// Set when an error was reported (at any stage, while rows stream too): a transaction
    /// block the session is in is failed before the session is used again.
    failed: AtomicBool,
}

/// What pgwire stores for a Parse: the prepared statement and whether running it only reads
/// (a cancel may then abandon it at any point).
#[derive(Clone)]
pub(super) struct PreparedStmt {
    pub(super) prepared: Arc<Prepared>,
    pub(super) read_only: bool,
}

impl Connection {
    pub(super) fn new(session: Session) -> Self {
        Connection {
            session: Mutex::new(session),
            cancel: Arc::new(watch::channel(0).0),
            broken: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// The session, with the block it is in failed first if an error was reported since.
    async fn session(&self) -> tokio::sync::MutexGuard<'_, Session> {
        let mut session = self.session.lock().await;
        if self.failed.swap(false, Ordering::AcqRel) {
            session.statement_failed();
        }
        session
    }

    /// The counter a cancel request for this connection bumps.
    pub(super) fn cancel_counter(&self) -> Arc<watch::Sender<u64>> {
        self.cancel.clone()
    }

    /// A token for a statement starting now.
    pub(super) fn token(&self) -> CancelToken {
        CancelToken::new(&self.cancel)
    }

    /// Refuses any further statement once the connection is broken.
    pub(super) fn check_open(&self) -> PgWireResult<()> {
        if self.broken.load(Ordering::Acquire) {
            let e = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection closed after an unknown outcome",
            );
            return Err(PgWireError::IoError(e));
        }
        Ok(())
    }

    /// `e` as the error to send; an unknown outcome also breaks the connection.
    pub(super) fn fail(&self, e: &Error) -> PgWireError {
        self.failed.store(true, Ordering::Release);
        if let Error::Unknown(_) = e {
            tracing::warn!(error = %e, "closing pg connection: outcome of a statement unknown");
            self.broken.store(true, Ordering::Release);
        }
        pg_error(e)
    }

    /// Splits a query string into statements.
    pub(super) async fn parse(&self, sql: &str) -> PgWireResult<Vec<Stmt>> {
        self.check_open()?;
        let session = self.session().await;
        let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| session.parse(sql)));
        parsed.unwrap_or_else(|p| Err(panicked(p, false))).map_err(|e| self.fail(&e))
    }

    /// Plans `stmt`; a cancel request abandons planning (it never writes).
    pub(super) async fn prepare(
        &self,
        stmt: &Stmt,
        param_types: &[Option<DataType>],
        token: &mut CancelToken,
    ) -> PgWireResult<Arc<Prepared>> {
        self.check_open()?;
        let mut session = self.session().await;
        tokio::select! {
            biased;
            () = token.cancelled() => Err(PgWireError::QueryCanceled),
            prepared = AssertUnwindSafe(session.prepare(stmt, param_types)).catch_unwind() => {
                prepared.unwrap_or_else(|p| Err(panicked(p, false))).map_err(|e| self.fail(&e))
            }
        }
    }

    /// Runs a prepared statement. Only a read-only one is abandoned on cancel: dropping a write
    /// in flight would leave its outcome unknown.
    pub(super) async fn execute(
        &self,
        stmt: &PreparedStmt,
        params: Vec<ScalarValue>,
        token: &mut CancelToken,
    ) -> PgWireResult<Output> {
        self.check_open()?;
        let mut session = self.session().await;
        // A write that panicked may have been applied: its outcome is unknown.
        let run = AssertUnwindSafe(session.execute(&stmt.prepared, params))
            .catch_unwind()
            .map(|r| r.unwrap_or_else(|p| Err(panicked(p, !stmt.read_only))));
        let output = if stmt.read_only {
            tokio::select! {
                biased;
                () = token.cancelled() => return Err(PgWireError::QueryCanceled),
                output = run => output,
            }
        } else {
            run.await
        };
        output.map_err(|e| self.fail(&e))
    }

    /// The warnings the session produced since the last call, as NoticeResponses.
    pub(super) async fn notices(&self) -> Vec<NoticeResponse> {
        let notices = self.session().await.take_notices();
        notices.into_iter().map(|m| ErrorInfo::new("WARNING".into(), "01000".into(), m).into()).collect()
    }

    /// The ReadyForQuery status the session is in: idle, in a block, or in a failed block.
    pub(super) async fn transaction_status(&self) -> TransactionStatus {
        match self.session().await.transaction_state() {
            TransactionState::Idle => TransactionStatus::Idle,
            TransactionState::InBlock => TransactionStatus::Transaction,
            TransactionState::Failed => TransactionStatus::Error,
        }
    }

    /// A session setting, for the ParameterStatus messages of startup.
    pub(super) async fn setting(&self, name: &str) -> Option<String> {
        self.session().await.setting(name)
    }

    /// Records the user the client connected as (`current_user`).
    pub(super) async fn set_user(&self, user: &str) {
        self.session().await.set_user(user);
    }

    /// Records the database the client connected to (`current_database()`).
    pub(super) async fn set_database(&self, database: &str) {
        self.session().await.set_database(database);
    }
}

/// A panic while running a statement (a bug) as the statement's error, so the client gets
/// XX000 and keeps its connection; `unknown` (a write was under way) breaks the connection
/// after the error is sent, as any unknown outcome does.
fn panicked(payload: Box<dyn std::any::Any + Send>, unknown: bool) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    tracing::error!(%message, "statement panicked");
    let message = format!("internal error: the statement failed ({message})");
    if unknown {
        Error::Unknown(message)
    } else {
        Error::Internal(message)
    }
}

/// The simple and extended query handlers of one connection (see `simple` and `extended`).
pub(super) struct Handler {
    pub(super) conn: Arc<Connection>,
    /// Names of the statements Parse stored, for `DEALLOCATE ALL`.
    pub(super) statements: std::sync::Mutex<BTreeSet<String>>,
}

impl Handler {
    pub(super) fn new(conn: Arc<Connection>) -> Self {
        Handler { conn, statements: std::sync::Mutex::new(BTreeSet::new()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_statements_error() {
        let caught = std::panic::catch_unwind(|| panic!("index {} out of range", 3)).unwrap_err();
        let e = panicked(caught, false);
        assert!(matches!(&e, Error::Internal(m) if m.contains("index 3 out of range")), "{e:?}");
        assert_eq!(super::super::sqlstate::error_info(&e).code, "XX000");
        let caught = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert!(matches!(panicked(caught, true), Error::Unknown(m) if m.contains("boom")));
    }
}
