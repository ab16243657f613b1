//! [`Session`]: one client connection's SQL state (settings for SET / SHOW, the transaction
//! block, notices) and the entry point of its statements: [`Session::parse`] (`ast`),
//! [`Session::prepare`] (`plan`, or the session's own commands), [`Session::execute`]
//! (`exec`).
//!
//! Every statement runs in a transaction (`raftable_txn::Txn`): outside a block its own,
//! committed when it ends and run again (after a pause) when the commit fails with a
//! serialization failure, since no row was sent yet; inside `BEGIN` … `COMMIT` the block's,
//! whose writes stay buffered until `COMMIT`. After an error in a block every statement but
//! `ROLLBACK` / `ROLLBACK TO SAVEPOINT` fails with 25P02, and `COMMIT` rolls back. DDL is not
//! transactional: it applies at once, inside a block too.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr as AstExpr, Set, Statement, TransactionAccessMode, TransactionMode, Value};
use raftable_common::{Error, Result};
use raftable_txn::status::xid_of;
use raftable_txn::{Savepoint, Txn};

use crate::ast::{ident, Stmt};
use crate::engine::Engine;
use crate::exec::foreign_keys::Deferred;
use crate::exec::write::Contention;
use crate::exec::{once, Executor, Output};
use crate::plan::context::session_context;
use crate::plan::functions::FunctionState;
use crate::plan::{Plan, Planner, Prepared, SessionCommand};
use crate::settings::{Settings, DEFAULT_SETTINGS, USER_SETTING};
use crate::xact::XactCall;

/// Where a session stands, for the ReadyForQuery status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// No block (`I`).
    Idle,
    /// In a block (`T`).
    InBlock,
    /// In a block that failed (`E`): only ROLLBACK [TO SAVEPOINT] runs.
    Failed,
}

/// A transaction block: `BEGIN` … `COMMIT` / `ROLLBACK`.
struct Block {
    txn: Arc<Txn>,
    /// Its foreign key checks put off until COMMIT.
    deferred: Arc<Deferred>,
    failed: bool,
    read_only: bool,
    savepoints: Vec<(String, Savepoint)>,
}

pub struct Session {
    engine: Arc<Engine>,
    pub id: u64,
    ctx: SessionContext,
    settings: Settings,
    block: Option<Block>,
    notices: Vec<String>,
}

impl Engine {
    /// A new session for one client connection.
    pub fn session(self: &Arc<Self>) -> Session {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let settings = Settings::new(DEFAULT_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let ctx = session_context(FunctionState {
            catalog: self.catalog.clone(),
            cluster: self.cluster.clone(),
            sequences: self.sequences.clone(),
            session: Default::default(),
            settings: settings.clone(),
        });
        Session { engine: self.clone(), id, ctx, settings, block: None, notices: Vec::new() }
    }
}

impl Session {
    /// Parses a query string into statements; an empty query gives none.
    pub fn parse(&self, sql: &str) -> Result<Vec<Stmt>> {
        crate::ast::parse(sql, &self.engine.parser)
    }

    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings.get(&name.to_lowercase())
    }

    /// The user the client connected as (its startup message's): what `current_user`,
    /// `session_user` and `SHOW session_authorization` answer.
    pub fn set_user(&self, user: &str) {
        self.settings.set(USER_SETTING.into(), user.into());
    }

    /// The database the client connected to (its startup message's): what
    /// `current_database()` answers and `pg_database` lists. There is one, of any name.
    pub fn set_database(&self, database: &str) {
        self.settings.set_database(database.into());
    }

    pub fn in_transaction(&self) -> bool {
        self.block.is_some()
    }

    pub fn transaction_state(&self) -> TransactionState {
        match &self.block {
            None => TransactionState::Idle,
            Some(b) if b.failed => TransactionState::Failed,
            Some(_) => TransactionState::InBlock,
        }
    }

    fn planner(&self) -> Planner<'_> {
        Planner { ctx: &self.ctx, catalog: &self.engine.catalog, cluster: &self.engine.cluster }
    }

    fn executor<'a>(&'a self, txn: &'a Arc<Txn>, autocommit: bool) -> Executor<'a> {
        Executor {
            ctx: &self.ctx,
            catalog: &self.engine.catalog,
            cluster: &self.engine.cluster,
            rowids: &self.engine.rowids,
            default_shards: self.engine.config.default_shards,
            sequences: &self.engine.sequences,
            txn,
            autocommit,
            coordinator: &self.engine.coordinator,
            deferred: self.block.as_ref().filter(|_| !autocommit).map(|b| &b.deferred),
        }
    }

    /// Plans a statement. `param_types` are the client's (None: infer).
    pub async fn prepare(&mut self, stmt: &Stmt, param_types: &[Option<DataType>]) -> Result<Arc<Prepared>> {
        if let Some(command) = self.command(stmt)? {
            let schema = match &command {
                SessionCommand::Show(name) => Some(show_schema(name)),
                SessionCommand::Xact(call) => Some(xact_schema(call)),
                _ => None,
            };
            return Ok(Arc::new(Prepared::session(command, schema)));
        }
        self.planner().prepare(stmt, param_types).await.map(Arc::new)
    }

    /// The session command `stmt` is, if it is one.
    fn command(&self, stmt: &Stmt) -> Result<Option<SessionCommand>> {
        let stmt = match stmt {
            Stmt::Sql(stmt) => stmt,
            Stmt::SetConstraints { names, deferred } => {
                let names = names.iter().map(ident).collect();
                return Ok(Some(SessionCommand::SetConstraints { names, deferred: *deferred }));
            }
            Stmt::AlterSequence(_) => return Ok(None),
        };
        if let Some(call) = XactCall::of(stmt)? {
            return Ok(Some(SessionCommand::Xact(call)));
        }
        Ok(Some(match stmt {
            Statement::StartTransaction { modes, .. } => SessionCommand::Begin { read_only: read_only(modes) },
            Statement::Commit { .. } => SessionCommand::Commit,
            Statement::Rollback { savepoint: None, .. } => SessionCommand::Rollback,
            Statement::Rollback { savepoint: Some(name), .. } => SessionCommand::RollbackTo(ident(name)),
            Statement::Savepoint { name } => SessionCommand::Savepoint(ident(name)),
            Statement::ReleaseSavepoint { name } => SessionCommand::Release(ident(name)),
            Statement::Set(Set::SetTransaction { modes, .. }) => {
                SessionCommand::SetTransaction { read_only: read_only(modes) }
            }
            Statement::Set(set) => set_command(set)?,
            Statement::ShowVariable { variable } => {
                let name = variable.iter().map(ident).collect::<Vec<_>>().join(" ");
                let name = match name.as_str() {
                    "time zone" => "timezone".to_string(),
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    _ => name,
                };
                if self.settings.get(&name).is_none() && name != "all" {
                    return Err(Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\"")));
                }
                SessionCommand::Show(name)
            }
            _ => return Ok(None),
        }))
    }

    /// Runs a prepared statement with its parameter values.
    pub async fn execute(&mut self, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        if params.len() != prepared.params.len() {
            return Err(Error::InvalidInput(format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                prepared.params.len()
            )));
        }
        if let Plan::Session(command) = &prepared.plan {
            let result = self.run_command(command).await;
            if result.is_err() {
                self.statement_failed();
            }
            return result;
        }
        if let Some(block) = &self.block {
            if block.failed {
                return Err(Error::InFailedTransaction);
            }
            if block.read_only && prepared.writes() {
                return Err(Error::ReadOnlyTransaction(format!(
                    "cannot execute {} in a read-only transaction",
                    prepared.command()
                )));
            }
            let txn = block.txn.clone();
            let result = self.executor(&txn, false).execute(prepared, params).await;
            if result.is_err() {
                self.statement_failed();
            }
            return result;
        }
        if !prepared.writes() {
            // Reads only: its snapshot is the whole transaction; nothing to commit.
            let txn = Arc::new(self.engine.coordinator.begin());
            return self.executor(&txn, true).execute(prepared, params).await;
        }
        // A write on its own: its transaction commits as it ends, and runs again if the commit
        // lost a race (no row was sent: RETURNING rows are sent after the commit).
        let mut contention = Contention::new();
        loop {
            let txn = Arc::new(self.engine.coordinator.begin());
            let result = match self.executor(&txn, true).execute(prepared, params.clone()).await {
                Ok(output) => crate::exec::commit(&txn, &self.engine.catalog).await.map(|_| output),
                Err(e) => Err(e),
            };
            match result {
                Err(Error::TxnConflict(_) | Error::TxnAborted(_)) if contention.pause().await => continue,
                other => return other,
            }
        }
    }

    /// An error inside a block fails it: only ROLLBACK [TO SAVEPOINT] runs until then. The
    /// front end calls this for errors the session does not see itself: while rows stream.
    pub fn statement_failed(&mut self) {
        if let Some(block) = &mut self.block {
            block.failed = true;
        }
    }

    async fn run_command(&mut self, command: &SessionCommand) -> Result<Output> {
        let failed = self.block.as_ref().is_some_and(|b| b.failed);
        let ends_block =
            matches!(command, SessionCommand::Commit | SessionCommand::Rollback | SessionCommand::RollbackTo(_));
        if failed && !ends_block {
            return Err(Error::InFailedTransaction);
        }
        let tag = match command {
            SessionCommand::Begin { read_only } => {
                if self.block.is_some() {
                    self.notices.push("there is already a transaction in progress".into());
                } else {
                    let txn = Arc::new(self.engine.coordinator.begin());
                    let read_only = read_only.unwrap_or(false);
                    let deferred = Arc::default();
                    self.block = Some(Block { txn, deferred, failed: false, read_only, savepoints: Vec::new() });
                }
                "BEGIN"
            }
            SessionCommand::Commit => match self.block.take() {
                None => {
                    self.notices.push("there is no transaction in progress".into());
                    "COMMIT"
                }
                Some(block) if block.failed => "ROLLBACK",
                Some(block) => {
                    let engine = &self.engine;
                    block.deferred.check(&self.ctx, &engine.cluster, &engine.catalog, &block.txn).await?;
                    crate::exec::commit(&block.txn, &engine.catalog).await?;
                    "COMMIT"
                }
            },
            SessionCommand::Rollback => {
                if self.block.take().is_none() {
                    self.notices.push("there is no transaction in progress".into());
                }
                "ROLLBACK"
            }
            SessionCommand::Savepoint(name) => {
                let block = self.block_for("SAVEPOINT")?;
                let savepoint = block.txn.savepoint();
                block.savepoints.push((name.clone(), savepoint));
                "SAVEPOINT"
            }
            SessionCommand::RollbackTo(name) => {
                let block = self.block_for("ROLLBACK TO SAVEPOINT")?;
                let at = savepoint_named(block, name)?;
                block.txn.rollback_to(&block.savepoints[at].1);
                block.savepoints.truncate(at + 1);
                block.failed = false;
                "ROLLBACK"
            }
            SessionCommand::Release(name) => {
                let block = self.block_for("RELEASE SAVEPOINT")?;
                let at = savepoint_named(block, name)?;
                block.savepoints.truncate(at);
                "RELEASE"
            }
            SessionCommand::SetTransaction { read_only } => {
                match &mut self.block {
                    Some(block) => {
                        if let Some(read_only) = read_only {
                            block.read_only = *read_only;
                        }
                    }
                    None => self.notices.push("SET TRANSACTION can only be used in transaction blocks".into()),
                }
                "SET"
            }
            SessionCommand::SetConstraints { names, deferred } => {
                let Some(block) = &self.block else {
                    self.notices.push("SET CONSTRAINTS can only be used in transaction blocks".into());
                    return Ok(Output::Command { tag: "SET CONSTRAINTS".into() });
                };
                let keys: Vec<_> = self.engine.catalog.all().iter().flat_map(|t| t.foreign_keys.clone()).collect();
                for name in names {
                    match keys.iter().find(|k| k.name == *name) {
                        None => return Err(Error::UndefinedObject(format!("constraint \"{name}\" does not exist"))),
                        Some(k) if !k.deferrable => {
                            return Err(Error::WrongObjectType(format!("constraint \"{name}\" is not deferrable")))
                        }
                        Some(_) => {}
                    }
                }
                let engine = &self.engine;
                let (ctx, cluster, catalog) = (&self.ctx, &engine.cluster, &engine.catalog);
                block.deferred.set(names, *deferred, ctx, cluster, catalog, &block.txn).await?;
                "SET CONSTRAINTS"
            }
            SessionCommand::Set { name, value } => {
                let value = value.clone().unwrap_or_else(|| default_setting(name));
                self.settings.set(name.clone(), value);
                "SET"
            }
            SessionCommand::Show(name) => return self.show(name),
            SessionCommand::Xact(call) => return self.xact(call).await,
        };
        Ok(Output::Command { tag: tag.into() })
    }

    /// The open block, for a command that needs one (`what` names it in the error).
    fn block_for(&mut self, what: &str) -> Result<&mut Block> {
        self.block
            .as_mut()
            .ok_or_else(|| Error::NoActiveTransaction(format!("{what} can only be used in transaction blocks")))
    }

    /// `txid_current()` (in a block, the block's id; else a transaction of its own, committed
    /// at once) and `txid_status(id)` (the block's own id is "in progress").
    async fn xact(&mut self, call: &XactCall) -> Result<Output> {
        let (engine, cluster) = (&self.engine, self.engine.cluster.as_ref());
        let value: ArrayRef = match (call, &self.block) {
            (XactCall::Current { .. }, Some(block)) => {
                Arc::new(Int64Array::from(vec![engine.xacts.current(cluster, &block.txn).await?]))
            }
            (XactCall::Current { .. }, None) => {
                let txn = engine.coordinator.begin();
                let xid = engine.xacts.current(cluster, &txn).await?;
                txn.commit().await?;
                Arc::new(Int64Array::from(vec![xid]))
            }
            (XactCall::Status { xid, .. }, Some(block)) if xid_of(block.txn.id()).ok() == Some(*xid) => {
                Arc::new(StringArray::from(vec!["in progress"]))
            }
            (XactCall::Status { xid, .. }, _) => {
                let status = engine.xacts.status(cluster, &engine.coordinator, *xid).await?;
                Arc::new(StringArray::from(vec![status.map(|s| s.name())]))
            }
        };
        let schema = xact_schema(call);
        let batch = RecordBatch::try_new(schema.clone(), vec![value]).map_err(Error::internal)?;
        Ok(Output::Rows { command: "SELECT", schema: schema.clone(), stream: once(schema, vec![batch]) })
    }

    fn show(&self, name: &str) -> Result<Output> {
        let schema = show_schema(name);
        let batch = if name == "all" {
            let (names, values): (Vec<String>, Vec<String>) = self.settings.all().into_iter().unzip();
            let arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(values))];
            RecordBatch::try_new(schema.clone(), arrays)
        } else {
            let value = match (name, &self.block) {
                ("transaction_read_only", Some(block)) => if block.read_only { "on" } else { "off" }.to_string(),
                _ => self.settings.get(name).unwrap_or_default(),
            };
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value])) as ArrayRef])
        }
        .map_err(Error::internal)?;
        Ok(Output::Rows { command: "SHOW", schema: schema.clone(), stream: once(schema, vec![batch]) })
    }
}

/// The newest savepoint called `name` in `block`.
fn savepoint_named(block: &Block, name: &str) -> Result<usize> {
    block
        .savepoints
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| Error::UndefinedSavepoint(format!("savepoint \"{name}\" does not exist")))
}

/// `READ ONLY` / `READ WRITE` among transaction modes, if given (the isolation level is always
/// serializable).
fn read_only(modes: &[TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|m| match m {
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => Some(true),
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => Some(false),
        TransactionMode::IsolationLevel(_) => None,
    })
}

/// What a SET statement sets.
fn set_command(set: &Set) -> Result<SessionCommand> {
    let text = |e: &AstExpr| match e {
        AstExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        AstExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    };
    Ok(match set {
        Set::SingleAssignment { variable, values, .. } => {
            let name = variable.0.iter().filter_map(|p| p.as_ident()).map(ident).collect::<Vec<_>>().join(".");
            let value = values.iter().map(text).collect::<Vec<_>>().join(", ");
            let value = if value.eq_ignore_ascii_case("default") { None } else { Some(value) };
            SessionCommand::Set { name, value }
        }
        Set::SetTimeZone { value, .. } => SessionCommand::Set { name: "timezone".into(), value: Some(text(value)) },
        Set::SetNames { charset_name, .. } => {
            SessionCommand::Set { name: "client_encoding".into(), value: Some(charset_name.value.clone()) }
        }
        Set::SetTransaction { .. }
        | Set::SetSessionParam(_)
        | Set::SetRole { .. }
        | Set::SetSessionAuthorization(_) => {
            SessionCommand::Set { name: "_ignored".into(), value: Some(String::new()) }
        }
        other => return Err(Error::unsupported(format!("{other}"))),
    })
}

fn default_setting(name: &str) -> String {
    DEFAULT_SETTINGS.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).unwrap_or_default()
}

fn xact_schema(call: &XactCall) -> SchemaRef {
    Arc::new(Schema::new(vec![match call {
        XactCall::Current { column } => Field::new(column, DataType::Int64, false),
        XactCall::Status { column, .. } => Field::new(column, DataType::Utf8, true),
    }]))
}

fn show_schema(name: &str) -> SchemaRef {
    if name == "all" {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
        ]))
    } else {
        Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
    }
}

#[cfg(test)]
mod tests {
    //! The whole SQL path in-process, over `local::LocalCluster`: what the `.slt` files cannot
    //! see (parameter types, plan choices, result column names) and the write paths' corners.

    use datafusion::arrow::util::display::array_value_to_string;
    use futures::TryStreamExt;

    use super::*;
    use crate::local::LocalCluster;

    struct Db {
        session: Session,
        _dir: tempfile::TempDir,
    }

    impl Db {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::new(LocalCluster::open(dir.path()).unwrap(), crate::SqlConfig::default());
            Db { session: engine.session(), _dir: dir }
        }

        /// Another session on the same engine (its temporary directory stays unused).
        fn second(&self) -> Self {
            Db { session: self.session.engine.session(), _dir: tempfile::tempdir().unwrap() }
        }

        async fn prepare(&mut self, sql: &str) -> Result<Arc<Prepared>> {
            let stmt = self.session.parse(sql)?.remove(0);
            self.session.prepare(&stmt, &[]).await
        }

        /// Runs `sql` with `params`; rows as text (`NULL` for null), or the command tag as one row.
        async fn run(&mut self, sql: &str, params: Vec<ScalarValue>) -> Result<Vec<Vec<String>>> {
            let prepared = self.prepare(sql).await?;
            match self.session.execute(&prepared, params).await? {
                Output::Command { tag } => Ok(vec![vec![tag]]),
                Output::Rows { stream, .. } => {
                    let batches: Vec<RecordBatch> = match stream.try_collect().await {
                        Ok(batches) => batches,
                        Err(e) => {
                            self.session.statement_failed();
                            return Err(crate::error::from_datafusion(e));
                        }
                    };
                    let mut rows = Vec::new();
                    for b in batches {
                        for r in 0..b.num_rows() {
                            rows.push(
                                b.columns()
                                    .iter()
                                    .map(|c| {
                                        if c.is_null(r) {
                                            "NULL".into()
                                        } else {
                                            array_value_to_string(c, r).unwrap()
                                        }
                                    })
                                    .collect(),
                            );
                        }
                    }
                    Ok(rows)
                }
            }
        }

        async fn ok(&mut self, sql: &str) -> Vec<Vec<String>> {
            self.run(sql, Vec::new()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
        }

        /// Writes `table (k INT PRIMARY KEY, v INT)` until `done`: an insert of a new key
        /// from 2001 up, an update and a delete of keys below 1500, each its own statement.
        /// Returns how many rounds ran.
        async fn write_until(&mut self, table: &str, done: &std::sync::atomic::AtomicBool) -> u32 {
            let mut k = 2000;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let sql = [
                    format!("INSERT INTO {table} VALUES ({k}, {})", k % 10),
                    format!("UPDATE {table} SET v = v + 1 WHERE k = {}", k % 1500),
                    format!("DELETE FROM {table} WHERE k = {}", (k * 7) % 1500),
                ];
                for s in sql {
                    self.ok(&s).await;
                }
            }
            k - 2000
        }
    }

    fn rows(r: &[&[&str]]) -> Vec<Vec<String>> {
        r.iter().map(|row| row.iter().map(|s| s.to_string()).collect()).collect()
    }

    /// DROP INDEX and DROP TABLE give their shards back: `raftable.shards` lists them no more,
    /// and a table of the same name made again starts empty.
    #[tokio::test]
    async fn dropped_tables_and_indexes_release_their_shards() {
        let mut db = Db::new();
        let count = "SELECT count(*) FROM raftable.shards";
        let before: i64 = db.ok(count).await[0][0].parse().unwrap();
        db.ok("CREATE TABLE d (k INT PRIMARY KEY, u INT, v INT) WITH (shards = 3)").await;
        db.ok("CREATE INDEX d_v ON d (v)").await;
        db.ok("INSERT INTO d SELECT g, g * 2, g * 3 FROM generate_series(1, 100) g").await;
        let with_index: i64 = db.ok(count).await[0][0].parse().unwrap();
        assert!(with_index > before + 3, "{before} -> {with_index}");
        db.ok("DROP INDEX d_v").await;
        let without: i64 = db.ok(count).await[0][0].parse().unwrap();
        assert!(without < with_index && without >= before + 3, "{with_index} -> {without}");
        db.ok("DROP TABLE d").await;
        assert_eq!(db.ok(count).await, rows(&[&[&before.to_string()]]));
        db.ok("CREATE TABLE d (k INT PRIMARY KEY, u INT, v INT) WITH (shards = 3)").await;
        assert_eq!(db.ok("SELECT count(*) FROM d").await, rows(&[&["0"]]));
    }

    /// A query reads every page of every shard at one snapshot: rows changed after its first
    /// page was read are still seen as they were.
    #[tokio::test]
    async fn a_query_reads_every_page_at_one_snapshot() {
        let mut db = Db::new();
        db.ok("CREATE TABLE s (k BIGINT PRIMARY KEY, v INT) WITH (shards = 1)").await;
        db.ok("INSERT INTO s SELECT g, 0 FROM generate_series(1, 3000) g").await;
        let mut writer = db.session.engine.session();
        let prepared = db.prepare("SELECT k, v FROM s").await.unwrap();
        let Output::Rows { mut stream, .. } = db.session.execute(&prepared, Vec::new()).await.unwrap() else {
            panic!("rows expected")
        };
        let first = stream.try_next().await.unwrap().expect("a first page");
        assert!(first.num_rows() < 3000, "the scan reads page by page");
        let update = writer.parse("UPDATE s SET v = 1").unwrap().remove(0);
        let update = writer.prepare(&update, &[]).await.unwrap();
        writer.execute(&update, Vec::new()).await.unwrap();
        let mut seen = first.num_rows();
        while let Some(batch) = stream.try_next().await.unwrap() {
            let v = batch.column(1).as_any().downcast_ref::<datafusion::arrow::array::Int32Array>().unwrap();
            assert!(v.iter().all(|v| v == Some(0)), "a later page saw the update");
            seen += batch.num_rows();
        }
        assert_eq!(seen, 3000);
        assert_eq!(db.ok("SELECT count(*) FROM s WHERE v = 1").await, rows(&[&["3000"]]));
    }

    /// The entries stored in index `index` of table `table`, read straight from its shards.
    async fn index_entries(db: &Db, table: &str, index: &str) -> usize {
        let engine = &db.session.engine;
        let def = engine.catalog.get(table).await.unwrap().unwrap();
        let index = def.index(index).unwrap();
        let mut n = 0;
        for b in 0..index.buckets {
            let range = crate::encoding::bucket_range(index.id, b, index.buckets);
            let read =
                raftable_common::ShardRead::Scan { start: range.start, end: range.end, limit: None, reverse: false };
            n += engine.cluster.read(index.shards[b as usize], read).await.unwrap().len();
        }
        n
    }

    /// CREATE INDEX on a table being written: inserts, updates of the indexed column and
    /// deletes run from another session while it steps through its states and backfills; then
    /// every row has its entry and every entry its row (counted per value through the index
    /// against a scan of the rows, and in all), as after DROP INDEX and a DROP of nothing.
    #[tokio::test]
    async fn an_index_built_under_writes_matches_its_rows() {
        let mut db = Db::new();
        db.ok("CREATE TABLE w (k INT PRIMARY KEY, v INT) WITH (shards = 3)").await;
        db.ok("INSERT INTO w SELECT g, g % 10 FROM generate_series(1, 1500) g").await;
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut writer = db.second();
        let writes = writer.write_until("w", &done);
        let create = async {
            db.ok("CREATE INDEX w_v ON w (v)").await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let (rounds, ()) = futures::join!(writes, create);
        assert!(rounds > 0, "the writer ran during the CREATE");
        // A few more writes with the index public.
        db.ok("UPDATE w SET v = v + 100 WHERE k < 50").await;
        db.ok("DELETE FROM w WHERE k BETWEEN 50 AND 60").await;
        for v in [0, 3, 7, 105, 110] {
            let through_index = db.ok(&format!("SELECT count(*) FROM w WHERE v = {v}")).await;
            let through_rows = db.ok(&format!("SELECT count(*) FROM w WHERE v + 0 = {v}")).await;
            assert_eq!(through_index, through_rows, "v = {v}");
        }
        let plan = db.ok("EXPLAIN SELECT * FROM w WHERE v = 3").await;
        assert!(plan.iter().flatten().any(|l| l.contains("index=w_v")), "{plan:?}");
        let rows: usize = db.ok("SELECT count(*) FROM w").await[0][0].parse().unwrap();
        assert_eq!(index_entries(&db, "w", "w_v").await, rows);
        db.ok("CREATE UNIQUE INDEX w_k ON w (k)").await;
        assert_eq!(index_entries(&db, "w", "w_k").await, rows);
        let e = db.run("CREATE UNIQUE INDEX w_v_uq ON w (v)", vec![]).await;
        assert!(matches!(e, Err(Error::UniqueIndexBuild { .. })), "{e:?}");
        assert!(db.session.engine.catalog.get("w").await.unwrap().unwrap().index("w_v_uq").is_none());
        db.ok("DROP INDEX w_v").await;
        assert!(db.session.engine.catalog.get("w").await.unwrap().unwrap().index("w_v").is_none());
    }

    /// ADD COLUMN with a per-row default on a table being written: inserts, updates and
    /// deletes run from another session while the column is write-only and its fill goes over
    /// the stored rows; then every row, stored before or written meanwhile, has a value of its
    /// own (NOT NULL holds, no value twice).
    #[tokio::test]
    async fn a_column_added_under_writes_gets_a_value_in_every_row() {
        let mut db = Db::new();
        db.ok("CREATE TABLE f (k INT PRIMARY KEY, v INT) WITH (shards = 3)").await;
        db.ok("INSERT INTO f SELECT g, 2 * g FROM generate_series(1, 1500) g").await;
        db.ok("CREATE SEQUENCE f_seq").await;
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut writer = db.second();
        let writes = writer.write_until("f", &done);
        let alter = async {
            db.ok("ALTER TABLE f ADD COLUMN n BIGINT NOT NULL DEFAULT nextval('f_seq'), ADD u UUID DEFAULT gen_random_uuid()")
                .await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let (rounds, ()) = futures::join!(writes, alter);
        assert!(rounds > 0, "the writer ran during the ALTER");
        let counts = db.ok("SELECT count(*), count(n), count(DISTINCT n), count(u), count(DISTINCT u) FROM f").await;
        let total = &counts[0][0];
        assert!(counts[0].iter().all(|c| c == total), "{counts:?}");
        let e = db.run("INSERT INTO f (k, v, n) VALUES (1, 1, NULL)", vec![]).await;
        assert!(matches!(e, Err(Error::NotNullViolation(_))), "{e:?}");
    }

    /// `raftable.index_check` finds an index consistent after writes of every kind, and finds
    /// what goes wrong when an entry is lost, left behind, or a unique value is held twice
    /// (entries changed underneath, straight in the index's shards).
    #[tokio::test]
    async fn the_index_check_finds_missing_orphaned_and_duplicate_entries() {
        let mut db = Db::new();
        db.ok("CREATE TABLE ic (k INT PRIMARY KEY, u INT, v INT)").await;
        db.ok("CREATE UNIQUE INDEX ic_u ON ic (u)").await;
        db.ok("CREATE INDEX ic_v ON ic (v)").await;
        db.ok("INSERT INTO ic SELECT g, g + 0, g % 5 FROM generate_series(1, 200) g").await;
        db.ok("UPDATE ic SET v = v + 10, u = u + 1000 WHERE k % 3 = 0").await;
        db.ok("DELETE FROM ic WHERE k % 7 = 0").await;
        let check = "SELECT index_name, rows, entries, missing, orphaned, duplicates FROM raftable.index_check \
                     WHERE table_name = 'ic' ORDER BY index_name";
        assert_eq!(
            db.ok(check).await,
            rows(&[&["ic_u", "172", "172", "0", "0", "0"], &["ic_v", "172", "172", "0", "0", "0"]])
        );

        // Lose the entry of row 1 in ic_v, and give a deleted row an entry there.
        let engine = &db.session.engine;
        let def = engine.catalog.get("ic").await.unwrap().unwrap();
        let v = def.index("ic_v").unwrap().clone();
        let batch = |k: i32, u: i32, v: i32| -> Vec<ArrayRef> {
            vec![
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![k])),
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![u])),
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![v])),
            ]
        };
        let entry = |index: &crate::table::IndexDef, cols: &[ArrayRef]| {
            let pk = crate::encoding::encode_pk(&def, cols, 0).unwrap();
            crate::encoding::index_entry(index, cols, 0, &pk).unwrap()
        };
        let put = |e: crate::encoding::IndexEntry, value: Option<Vec<u8>>| {
            let op = match value {
                Some(value) => raftable_common::WriteOp::Put { key: e.key, value },
                None => raftable_common::WriteOp::Delete { key: e.key },
            };
            (e.shard, raftable_common::ShardWrite::new(vec![op]))
        };
        let lost = entry(&v, &batch(1, 1, 1));
        let (shard, write) = put(lost, None);
        engine.cluster.write(shard, write).await.unwrap();
        let stale = entry(&v, &batch(7, 7, 2));
        let value = stale.pk.clone();
        let (shard, write) = put(stale, Some(value));
        engine.cluster.write(shard, write).await.unwrap();
        // Row 2's unique value taken by row 4 as well (row 4 changed under the index: its old
        // entry is left behind too).
        let row4 = crate::encoding::encode_pk(&def, &batch(4, 4, 4), 0).unwrap();
        let shard4 = def.shards[crate::encoding::bucket_of(&row4, def.buckets) as usize];
        let mut value = Vec::new();
        crate::encoding::encode_value(&mut value, &batch(4, 2, 4), 0).unwrap();
        let op = raftable_common::WriteOp::Put { key: crate::encoding::row_key(&def, &row4), value };
        engine.cluster.write(shard4, raftable_common::ShardWrite::new(vec![op])).await.unwrap();
        assert_eq!(
            db.ok(check).await,
            rows(&[&["ic_u", "172", "172", "0", "1", "1"], &["ic_v", "172", "172", "1", "1", "0"]])
        );
    }

    /// A foreign key holds against concurrent writers: a referencing row inserted by one
    /// transaction and its referenced row deleted by another, in either order of commit, never
    /// both commit (the later commit fails with 40001, its read of the other's row stale), and
    /// writers racing in a loop leave no row referencing nothing.
    #[tokio::test]
    async fn foreign_keys_hold_under_concurrent_writers() {
        let mut a = Db::new();
        let mut b = a.second();
        a.ok("CREATE TABLE fp (id INT PRIMARY KEY)").await;
        a.ok("CREATE TABLE fc (id INT PRIMARY KEY, p INT REFERENCES fp)").await;
        a.ok("INSERT INTO fp SELECT g FROM generate_series(1, 40) g").await;
        let orphans = "SELECT count(*) FROM fc LEFT JOIN fp ON fc.p = fp.id WHERE fp.id IS NULL AND fc.p IS NOT NULL";

        // The insert reads its parent first; the delete commits; the insert's COMMIT fails.
        a.ok("BEGIN").await;
        a.ok("INSERT INTO fc VALUES (1, 1)").await;
        b.ok("DELETE FROM fp WHERE id = 1").await;
        let e = a.run("COMMIT", vec![]).await;
        assert!(matches!(e, Err(Error::TxnConflict(_))), "{e:?}");
        // The delete looks for referencing rows first; the insert commits; the delete's fails.
        b.ok("BEGIN").await;
        b.ok("DELETE FROM fp WHERE id = 2").await;
        a.ok("INSERT INTO fc VALUES (2, 2)").await;
        let e = b.run("COMMIT", vec![]).await;
        assert!(matches!(e, Err(Error::TxnConflict(_))), "{e:?}");
        assert_eq!(a.ok(orphans).await, rows(&[&["0"]]));

        // Many such pairs of blocks, their statements and commits interleaved at random: an
        // insert of a referencing row against a delete of a referenced row, often the same one.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let (mut inserted, mut deleted) = (0, 0);
        let fine = |r: &Result<Vec<Vec<String>>>| match r {
            Ok(_) => true,
            Err(Error::ForeignKeyViolation(_) | Error::TxnConflict(_)) => false,
            Err(e) => panic!("{e}"),
        };
        for k in 10..90 {
            let (p, q) = (rng.gen_range(3..41), rng.gen_range(3..41));
            a.ok("BEGIN").await;
            b.ok("BEGIN").await;
            let insert = fine(&a.run(&format!("INSERT INTO fc VALUES ({k}, {p})"), vec![]).await);
            let delete = fine(&b.run(&format!("DELETE FROM fp WHERE id = {q}"), vec![]).await);
            let (a_done, b_done) = if rng.gen_bool(0.5) {
                let a_done = fine(&a.run("COMMIT", vec![]).await);
                (a_done, fine(&b.run("COMMIT", vec![]).await))
            } else {
                let b_done = fine(&b.run("COMMIT", vec![]).await);
                (fine(&a.run("COMMIT", vec![]).await), b_done)
            };
            inserted += usize::from(insert && a_done);
            deleted += usize::from(delete && b_done);
        }
        assert!(inserted > 0 && deleted > 0, "inserted {inserted}, deleted {deleted}");
        assert_eq!(a.ok(orphans).await, rows(&[&["0"]]));
    }

    /// Prepared statements read through the indexes the table has when they run: a lookup by
    /// a unique column takes the point path through its index, a query planned before an
    /// index existed uses it once it is public and stops when it is dropped (the rows stay
    /// right throughout), and a point lookup whose index was dropped asks to be prepared again.
    #[tokio::test]
    async fn prepared_statements_follow_the_indexes_as_they_change() {
        let mut db = Db::new();
        db.ok("CREATE TABLE pi (k INT PRIMARY KEY, u TEXT, v INT)").await;
        db.ok("INSERT INTO pi SELECT g, 'u' || g, g % 7 FROM generate_series(1, 300) g").await;
        let by_v = db.prepare("SELECT count(*) FROM pi WHERE v = $1").await.unwrap();
        async fn count(db: &mut Db, stmt: Arc<Prepared>) -> String {
            let out = db.session.execute(&stmt, vec![ScalarValue::Int32(Some(3))]).await.unwrap();
            let Output::Rows { stream, .. } = out else { panic!("rows") };
            let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
            array_value_to_string(batches[0].column(0), 0).unwrap()
        }
        assert_eq!(count(&mut db, by_v.clone()).await, "43");
        db.ok("CREATE INDEX pi_v ON pi (v)").await;
        db.ok("UPDATE pi SET v = 3 WHERE k = 1").await;
        assert_eq!(count(&mut db, by_v.clone()).await, "44");
        let plan = db.ok("EXPLAIN SELECT count(*) FROM pi WHERE v = 3").await;
        assert!(plan.iter().flatten().any(|l| l.contains("index=pi_v")), "{plan:?}");
        db.ok("DROP INDEX pi_v").await;
        assert_eq!(count(&mut db, by_v).await, "44");

        db.ok("CREATE UNIQUE INDEX pi_u ON pi (u)").await;
        let lookup = db.prepare("SELECT k, v FROM pi WHERE u = $1").await.unwrap();
        assert!(matches!(&lookup.plan, Plan::PointSelect(p) if p.via.is_some()));
        let text = |u: &str| vec![ScalarValue::Utf8(Some(u.to_string()))];
        assert_eq!(db.run("SELECT k, v FROM pi WHERE u = $1", text("u10")).await.unwrap(), rows(&[&["10", "3"]]));
        assert_eq!(db.run("SELECT k FROM pi WHERE u = $1", text("u0")).await.unwrap(), rows(&[]));
        db.ok("DROP INDEX pi_u").await;
        let e = db.session.execute(&lookup, text("u10")).await.map(|_| ());
        assert!(matches!(e, Err(Error::Unsupported(_))), "{e:?}");
    }

    /// A transaction that wrote a table before an index of it was built does not commit after
    /// (40001): its row would have no entry. One that wrote after the build commits.
    #[tokio::test]
    async fn writes_made_before_an_index_was_built_do_not_commit_after() {
        let mut db = Db::new();
        db.ok("CREATE TABLE sc (k INT PRIMARY KEY, v INT)").await;
        db.ok("BEGIN").await;
        db.ok("INSERT INTO sc VALUES (1, 1)").await;
        db.second().ok("CREATE INDEX sc_v ON sc (v)").await;
        let e = db.run("COMMIT", vec![]).await;
        assert!(matches!(e, Err(Error::TxnConflict(_))), "{e:?}");
        assert_eq!(db.ok("SELECT count(*) FROM sc").await, rows(&[&["0"]]));
        db.ok("BEGIN").await;
        db.ok("INSERT INTO sc VALUES (1, 1)").await;
        db.ok("COMMIT").await;
        assert_eq!(db.ok("SELECT k FROM sc WHERE v = 1").await, rows(&[&["1"]]));
    }

    /// An autocommit statement is one transaction: a multi-row INSERT spanning shards applies
    /// whole or not at all, and statements incrementing every row from two sessions at once
    /// (each a two-phase commit over four shards, re-run when it loses a race) lose nothing.
    #[tokio::test]
    async fn statements_are_atomic_and_lose_no_update() {
        let mut db = Db::new();
        db.ok("CREATE TABLE a (k INT PRIMARY KEY, n INT) WITH (shards = 4)").await;
        db.ok("INSERT INTO a SELECT g, 0 FROM generate_series(1, 40) g").await;
        let e = db.run("INSERT INTO a VALUES (41, 0), (42, 0), (43, 0), (7, 0)", vec![]).await;
        assert!(matches!(e, Err(Error::UniqueViolation { .. })), "{e:?}");
        assert_eq!(db.ok("SELECT count(*) FROM a").await, rows(&[&["40"]]));
        async fn increment_ten_times(session: &mut Session) {
            let stmt = session.parse("UPDATE a SET n = n + 1").unwrap().remove(0);
            let prepared = session.prepare(&stmt, &[]).await.unwrap();
            for _ in 0..10 {
                session.execute(&prepared, Vec::new()).await.unwrap();
            }
        }
        let mut other = db.session.engine.session();
        futures::join!(increment_ten_times(&mut db.session), increment_ten_times(&mut other));
        assert_eq!(db.ok("SELECT min(n), max(n) FROM a").await, rows(&[&["20", "20"]]));
    }

    /// Statements bigger than one batch write a batch at a time and still apply whole: a
    /// duplicate between batches fails the whole INSERT (autocommit: found by the commit;
    /// inside a block: by the reads), an upsert affecting a row twice across batches fails,
    /// and a source reading the target table sees it as it was before the statement.
    #[tokio::test]
    async fn statements_over_many_batches_apply_whole() {
        let mut db = Db::new();
        db.ok("CREATE TABLE g (k BIGINT PRIMARY KEY, v INT) WITH (shards = 3)").await;
        let count = |n: &str| rows(&[&[n]]);
        assert_eq!(db.ok("INSERT INTO g SELECT n, 0 FROM generate_series(1, 20000) n").await, count("INSERT 0 20000"));
        let twice = "INSERT INTO g SELECT n % 15000 + 100000, 0 FROM generate_series(1, 20000) n";
        let e = db.run(twice, vec![]).await;
        assert!(matches!(e, Err(Error::UniqueViolation { .. })), "{e:?}");
        assert_eq!(db.ok("SELECT count(*) FROM g").await, count("20000"));
        db.ok("BEGIN").await;
        let e = db.run(twice, vec![]).await;
        assert!(matches!(e, Err(Error::UniqueViolation { .. })), "{e:?}");
        db.ok("ROLLBACK").await;
        db.ok("BEGIN").await;
        db.ok("INSERT INTO g SELECT n + 50000, 1 FROM generate_series(1, 20000) n").await;
        assert_eq!(db.ok("SELECT count(*), sum(v) FROM g").await, rows(&[&["40000", "20000"]]));
        db.ok("ROLLBACK").await;
        let upsert = "INSERT INTO g SELECT n % 10000 + 1, 5 FROM generate_series(1, 20000) n \
                      ON CONFLICT (k) DO UPDATE SET v = excluded.v";
        let e = db.run(upsert, vec![]).await;
        assert!(matches!(e, Err(Error::CardinalityViolation(_))), "{e:?}");
        assert_eq!(db.ok("UPDATE g SET v = v + 1").await, count("UPDATE 20000"));
        assert_eq!(db.ok("INSERT INTO g SELECT k + 100000, v FROM g").await, count("INSERT 0 20000"));
        assert_eq!(db.ok("SELECT count(*), min(v), max(v) FROM g").await, rows(&[&["40000", "1", "1"]]));
        assert_eq!(db.ok("DELETE FROM g WHERE k > 100").await, count("DELETE 39900"));
        assert_eq!(db.ok("SELECT count(*) FROM g").await, count("100"));
    }

    /// A block reads its own writes, ROLLBACK undoes them, savepoints undo part, and after an
    /// error only ROLLBACK runs.
    #[tokio::test]
    async fn blocks_roll_back_and_fail_as_postgres_does() {
        let mut db = Db::new();
        db.ok("CREATE TABLE b (k INT PRIMARY KEY, v TEXT)").await;
        db.ok("INSERT INTO b VALUES (1, 'x')").await;
        db.ok("BEGIN").await;
        db.ok("UPDATE b SET v = 'y'").await;
        db.ok("SAVEPOINT s").await;
        db.ok("INSERT INTO b VALUES (2, 'z')").await;
        assert_eq!(db.ok("SELECT k, v FROM b ORDER BY k").await, rows(&[&["1", "y"], &["2", "z"]]));
        db.ok("ROLLBACK TO s").await;
        assert_eq!(db.ok("SELECT k, v FROM b ORDER BY k").await, rows(&[&["1", "y"]]));
        assert!(matches!(db.run("SELECT 1/0", vec![]).await, Err(Error::DivisionByZero)));
        assert_eq!(db.session.transaction_state(), TransactionState::Failed);
        assert!(matches!(db.run("SELECT 1", vec![]).await, Err(Error::InFailedTransaction)));
        assert_eq!(db.ok("COMMIT").await, rows(&[&["ROLLBACK"]]));
        assert_eq!(db.session.transaction_state(), TransactionState::Idle);
        assert_eq!(db.ok("SELECT k, v FROM b").await, rows(&[&["1", "x"]]));
    }

    /// `txid_current()` and `txid_status()`: a block's id stays the same and is "in progress"
    /// to itself; another session reads a committed block as committed (a savepoint rolled
    /// back does not take the status row with it) and a rolled back one as aborted; asking
    /// about a block still open elsewhere aborts it, so its COMMIT fails with 40001.
    #[tokio::test]
    async fn transaction_ids_tell_how_a_transaction_ended() {
        let mut db = Db::new();
        let mut other = db.second();
        db.ok("CREATE TABLE x (k INT PRIMARY KEY)").await;
        let status = |xid: &str| format!("SELECT txid_status({xid})");

        db.ok("BEGIN").await;
        let xid = db.ok("SELECT txid_current()").await[0][0].clone();
        assert!(xid.parse::<i64>().unwrap() > 0);
        assert_eq!(db.ok("SELECT pg_current_xact_id() AS id").await, rows(&[&[&xid]]));
        assert_eq!(db.ok(&status(&xid)).await, rows(&[&["in progress"]]));
        db.ok("SAVEPOINT s").await;
        db.ok("INSERT INTO x VALUES (1)").await;
        db.ok("ROLLBACK TO s").await;
        db.ok("INSERT INTO x VALUES (2)").await;
        db.ok("COMMIT").await;
        assert_eq!(other.ok(&status(&xid)).await, rows(&[&["committed"]]));

        db.ok("BEGIN").await;
        let rolled_back = db.ok("SELECT txid_current()").await[0][0].clone();
        assert_ne!(rolled_back, xid);
        db.ok("INSERT INTO x VALUES (3)").await;
        db.ok("ROLLBACK").await;
        let sql = format!("SELECT pg_xact_status('{rolled_back}'::xid8)");
        assert_eq!(other.ok(&sql).await, rows(&[&["aborted"]]));

        db.ok("BEGIN").await;
        let open = db.ok("SELECT txid_current()").await[0][0].clone();
        db.ok("INSERT INTO x VALUES (4)").await;
        assert_eq!(other.ok(&status(&open)).await, rows(&[&["aborted"]]));
        assert!(matches!(db.run("COMMIT", vec![]).await, Err(Error::TxnAborted(_))));
        assert_eq!(other.ok(&status(&open)).await, rows(&[&["aborted"]]));
        assert_eq!(db.ok("SELECT k FROM x").await, rows(&[&["2"]]));

        // Outside a block: an id of its own, committed at once.
        let single = db.ok("SELECT txid_current()").await[0][0].clone();
        assert_eq!(other.ok(&status(&single)).await, rows(&[&["committed"]]));
        assert!(matches!(db.run("SELECT txid_status(0)", vec![]).await, Err(Error::InvalidInput(_))));
        assert!(matches!(db.run("SELECT txid_status('x')", vec![]).await, Err(Error::InvalidText(_))));
    }

    #[tokio::test]
    async fn parameter_types_come_from_the_plan_the_shape_and_the_client() {
        let mut db = Db::new();
        db.ok("CREATE TABLE p (k BIGINT PRIMARY KEY, v TEXT, n INT)").await;
        let cases: &[(&str, &[DataType])] = &[
            ("SELECT v FROM p WHERE k = $1", &[DataType::Int64]),
            ("INSERT INTO p VALUES ($1, $2, $3)", &[DataType::Int64, DataType::Utf8, DataType::Int32]),
            ("INSERT INTO p VALUES ($1, $2, 1) RETURNING k", &[DataType::Int64, DataType::Utf8]),
            ("UPDATE p SET n = $1 WHERE k = $2", &[DataType::Int32, DataType::Int64]),
            ("UPDATE p SET v = $1 WHERE k = $2 RETURNING n + $3", &[DataType::Utf8, DataType::Int64, DataType::Int32]),
            ("DELETE FROM p WHERE k > $1", &[DataType::Int64]),
            ("SELECT * FROM p LIMIT $1 OFFSET $2", &[DataType::Int64, DataType::Int64]),
            ("SELECT $1::int4, $2", &[DataType::Int32, DataType::Utf8]),
            (
                "INSERT INTO p VALUES ($1, 'x', 1) ON CONFLICT (k) DO UPDATE SET n = $2",
                &[DataType::Int64, DataType::Int32],
            ),
        ];
        for (sql, want) in cases {
            let prepared = db.prepare(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(prepared.params, *want, "{sql}");
        }
        // The client's declared types win.
        let stmt = db.session.parse("SELECT v FROM p WHERE k = $1").unwrap().remove(0);
        let prepared = db.session.prepare(&stmt, &[Some(DataType::Int32)]).await.unwrap();
        assert_eq!(prepared.params, [DataType::Int32]);
    }

    #[tokio::test]
    async fn point_statements_take_the_fast_path() {
        let mut db = Db::new();
        db.ok("CREATE TABLE f (k BIGINT PRIMARY KEY, v TEXT)").await;
        let plan = |p: &Prepared| match &p.plan {
            Plan::PointSelect(_) => "point select",
            Plan::ParamInsert(_) => "param insert",
            Plan::Query(_) => "query",
            Plan::Insert(_) => "insert",
            _ => "other",
        };
        for (sql, want) in [
            ("SELECT v FROM f WHERE k = $1", "point select"),
            ("SELECT v FROM f WHERE k = $1 ORDER BY v", "query"),
            ("SELECT v FROM f WHERE k > $1", "query"),
            ("INSERT INTO f VALUES ($1, $2)", "param insert"),
            ("INSERT INTO f VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v", "param insert"),
            ("INSERT INTO f VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = f.v || excluded.v", "insert"),
            ("INSERT INTO f VALUES ($1, upper($2))", "insert"),
        ] {
            assert_eq!(plan(&db.prepare(sql).await.unwrap()), want, "{sql}");
        }
    }

    #[tokio::test]
    async fn on_conflict_updates_from_the_existing_and_the_proposed_row() {
        let mut db = Db::new();
        db.ok("CREATE TABLE c (k INT PRIMARY KEY, v TEXT, n INT NOT NULL DEFAULT 0)").await;
        db.ok("INSERT INTO c VALUES (1, 'a', 1), (2, 'b', 2)").await;
        // Unqualified names are the existing row's, `excluded.` the proposed one's, `c.` and an
        // alias the existing row's too; the WHERE skips rows.
        let upsert = "INSERT INTO c AS t VALUES (1, 'x', 10), (2, 'y', 20), (3, 'z', 30) \
                      ON CONFLICT (k) DO UPDATE SET v = v || excluded.v, n = t.n + excluded.n WHERE t.k <> 2";
        assert_eq!(db.ok(upsert).await, rows(&[&["INSERT 0 2"]]));
        assert_eq!(
            db.ok("SELECT k, v, n FROM c ORDER BY k").await,
            rows(&[&["1", "ax", "11"], &["2", "b", "2"], &["3", "z", "30"]])
        );
        // A parameter in the assignment.
        let sql = "INSERT INTO c VALUES ($1, 'q', 0) ON CONFLICT (k) DO UPDATE SET n = $2 RETURNING k, n";
        let out = db.run(sql, vec![ScalarValue::Int32(Some(3)), ScalarValue::Int32(Some(99))]).await.unwrap();
        assert_eq!(out, rows(&[&["3", "99"]]));
        // NOT NULL holds for the updated value; one key twice is 21000; nothing written.
        let e = db.run("INSERT INTO c VALUES (1, 'n', 0) ON CONFLICT (k) DO UPDATE SET n = NULL", vec![]).await;
        assert!(matches!(e, Err(Error::NotNullViolation(_))), "{e:?}");
        let e =
            db.run("INSERT INTO c VALUES (5, 'a', 0), (5, 'b', 0) ON CONFLICT (k) DO UPDATE SET v = 'c'", vec![]).await;
        assert!(matches!(e, Err(Error::CardinalityViolation(_))), "{e:?}");
        assert_eq!(db.ok("SELECT count(*) FROM c").await, rows(&[&["3"]]));
        // Every non-key column from `excluded` without a condition is a plain overwrite.
        let prepared = db
            .prepare("INSERT INTO c VALUES (1, 'o', 7) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = excluded.n")
            .await
            .unwrap();
        assert!(matches!(&prepared.plan, Plan::Insert(i) if matches!(i.conflict, crate::plan::Conflict::Overwrite)));
    }

    #[tokio::test]
    async fn update_and_delete_are_planned_from_the_statement() {
        let mut db = Db::new();
        // A name that needs quoting (the old SQL-text re-planning broke on `"`), an alias, a
        // subquery, RETURNING named as PostgreSQL names it.
        db.ok(r#"CREATE TABLE "we""ird" (k INT PRIMARY KEY, v INT)"#).await;
        db.ok("CREATE TABLE other (k INT PRIMARY KEY)").await;
        db.ok(r#"INSERT INTO "we""ird" VALUES (1, 10), (2, 20), (3, 30)"#).await;
        db.ok("INSERT INTO other VALUES (2), (3)").await;
        let mut out = db.ok(r#"UPDATE "we""ird" AS w SET v = w.v + 1 WHERE k IN (SELECT k FROM other) RETURNING w.k, v * 2 AS twice, v + 0"#).await;
        out.sort();
        assert_eq!(out, rows(&[&["2", "42", "21"], &["3", "62", "31"]]));
        let prepared = db.prepare(r#"DELETE FROM "we""ird" WHERE k = 1 RETURNING k, v + 1"#).await.unwrap();
        let names: Vec<_> = prepared.schema.as_ref().unwrap().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["k", "?column?"]);
        assert_eq!(db.ok(r#"DELETE FROM "we""ird" WHERE v > 25 RETURNING k"#).await, rows(&[&["3"]]));
        assert_eq!(db.ok(r#"SELECT k, v FROM "we""ird" ORDER BY k"#).await, rows(&[&["1", "10"], &["2", "21"]]));
        // A table without a primary key: rows found by their hidden row id.
        db.ok("CREATE TABLE nokey (a INT, b TEXT)").await;
        db.ok("INSERT INTO nokey VALUES (1, 'x'), (1, 'y'), (2, 'z')").await;
        assert_eq!(db.ok("UPDATE nokey SET b = 'w' WHERE a = 1").await, rows(&[&["UPDATE 2"]]));
        assert_eq!(db.ok("DELETE FROM nokey WHERE b = 'w'").await, rows(&[&["DELETE 2"]]));
        assert_eq!(db.ok("SELECT a, b FROM nokey").await, rows(&[&["2", "z"]]));
        // UPDATE of the key moves the row; a duplicate target fails and changes nothing.
        assert_eq!(db.ok(r#"UPDATE "we""ird" SET k = k + 10 WHERE k = 2"#).await, rows(&[&["UPDATE 1"]]));
        let e = db.run(r#"UPDATE "we""ird" SET k = 12 WHERE k = 1"#, vec![]).await;
        assert!(matches!(&e, Err(Error::UniqueViolation { constraint }) if constraint == "we\"ird_pkey"), "{e:?}");
        assert_eq!(db.ok(r#"SELECT k FROM "we""ird" ORDER BY k"#).await, rows(&[&["1"], &["12"]]));
        // Parameters in SET and WHERE.
        let out = db
            .run(
                r#"UPDATE "we""ird" SET v = $1 WHERE k = $2 RETURNING v"#,
                vec![ScalarValue::Int32(Some(5)), ScalarValue::Int32(Some(1))],
            )
            .await
            .unwrap();
        assert_eq!(out, rows(&[&["5"]]));
    }

    #[tokio::test]
    async fn session_commands_keep_the_connection_state() {
        let mut db = Db::new();
        db.ok("SET application_name = 'tests'").await;
        assert_eq!(db.ok("SHOW application_name").await, rows(&[&["tests"]]));
        db.ok("SET application_name TO DEFAULT").await;
        assert_eq!(db.ok("SHOW application_name").await, rows(&[&[""]]));
        assert!(matches!(db.run("SHOW nonsense", vec![]).await, Err(Error::UndefinedObject(_))));
        assert!(!db.session.in_transaction());
        db.ok("BEGIN").await;
        assert!(db.session.in_transaction());
        db.ok("COMMIT").await;
        assert!(!db.session.in_transaction());
    }
}
