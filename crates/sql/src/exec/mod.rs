//! The exec stage: running a [`Prepared`] statement with its parameter values
//! ([`Executor::execute`]).
//!
//! - queries: the optimised plan bound and planned physically, or the plan bound and run
//!   through DataFusion; rows stream back to the client as they are read;
//! - [`point`]: the fast paths, straight to the shards;
//! - [`write`]: rows buffered in the statement's transaction (INSERT, and the pieces UPDATE /
//!   DELETE share);
//! - [`modify`]: UPDATE / DELETE;
//! - [`ddl`]: CREATE / ALTER / DROP TABLE;
//! - [`checks`]: CHECK constraints, verified on the rows each write path writes;
//! - [`indexes`]: secondary index entries, changed with the rows each write path writes;
//!   `CREATE` / `DROP INDEX` and the backfill of a new index's entries in [`ddl`];
//! - [`foreign_keys`]: FOREIGN KEY checks and `ON DELETE` actions, run with each write;
//!   their catalog steps in [`foreign_key_ddl`];
//! - [`commit`]: a transaction's commit, after the schema check;
//! - [`sequences`]: CREATE / DROP SEQUENCE, the sequences of SERIAL and identity columns,
//!   computed defaults;
//! - [`views`]: CREATE / DROP VIEW;
//! - [`schemas`]: CREATE / DROP SCHEMA;
//! - RETURNING: its expressions evaluated over the rows written.

pub(crate) mod checks;
pub(crate) mod ddl;
pub(crate) mod foreign_key_ddl;
pub(crate) mod foreign_keys;
pub(crate) mod index_ddl;
pub(crate) mod indexes;
pub(crate) mod modify;
pub(crate) mod point;
pub(crate) mod schemas;
pub(crate) mod sequences;
pub(crate) mod views;
pub(crate) mod write;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{StreamExt, TryStreamExt};
use raftable_common::{Error, Result};

use self::checks::Checks;
use self::foreign_keys::{Deferred, ForeignKeys};
use self::indexes::Indexes;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::columns::Columns;
use crate::error::from_datafusion;
use crate::offload::planning;
use crate::plan::insert::InsertPlan;
use crate::plan::params::{bind, bind_as, bind_exprs};
use crate::plan::point::PointSelect;
use crate::plan::query::QueryPlan;
use crate::plan::returning::Returning;
use crate::plan::Conflict;
use crate::plan::{Plan, Prepared};
use crate::scan::Snapshot;
use crate::sequence::Sequences;
use crate::table::{IndexState, TableDef};
use raftable_txn::{Coordinator, Txn};
use write::{evaluate, OnConflict, RowIds, Shards};

/// A task context whose scans read through `txn` (`scan::Snapshot`): every shard at the
/// transaction's one snapshot, with its own writes.
fn snapshot_task(state: &SessionState, txn: &Arc<Txn>) -> Arc<TaskContext> {
    let snapshot = Arc::new(Snapshot::new(txn.clone()));
    let config = state.config().clone().with_extension(snapshot);
    Arc::new(TaskContext::from(state).with_session_config(config))
}

/// The session's DataFusion state for a statement of `txn`: `now()` / `CURRENT_TIMESTAMP` are
/// the transaction's start, as in PostgreSQL (DataFusion's `SessionContext::state` takes the
/// statement's).
pub(crate) fn statement_state(ctx: &SessionContext, txn: &Txn) -> SessionState {
    let mut state = ctx.state();
    let began = i64::try_from(txn.began_micros()).ok().and_then(chrono::DateTime::from_timestamp_micros);
    if began.is_some() {
        state.execution_props_mut().query_execution_start_time = began;
    }
    // Every physical expression compiled with the session's options: DataFusion compiles a
    // window's ORDER BY with these props and the rest with the session's options, and a
    // function call compiled both ways is two orderings (`rank() OVER (ORDER BY sqrt(d))`
    // failed its plan's sanity check).
    let options = Arc::clone(state.config_options());
    state.execution_props_mut().config_options = Some(options);
    state
}

/// `expr` over `schema` compiled for execution in `state`, as a plan's expressions are: coerced,
/// rewritten (`plan::semantics`) and simplified, which evaluates `now()` (DataFusion's
/// `now()` cannot run unsimplified).
pub(crate) fn physical_expr(state: &SessionState, expr: Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    use datafusion::optimizer::simplify_expressions::{ExprSimplifier, SimplifyContext};
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(state.config_options().clone())
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .build();
    let simplifier = ExprSimplifier::new(context);
    let expr = simplifier
        .coerce(expr, schema)
        .and_then(|e| e.transform_up(|e| crate::plan::semantics::rewrite(e, schema)))
        .and_then(|e| simplifier.simplify(e.data))
        .map_err(from_datafusion)?;
    state.create_physical_expr(expr, schema).map_err(from_datafusion)
}

/// Runs `plan` with every shard read through `txn`: the rows an INSERT's source or an UPDATE /
/// DELETE reads, as they are read.
pub(crate) async fn stream_at_snapshot(
    ctx: &SessionContext,
    txn: &Arc<Txn>,
    plan: LogicalPlan,
) -> Result<SendableRecordBatchStream> {
    let state = statement_state(ctx, txn);
    let task = snapshot_task(&state, txn);
    let physical = planning(state.create_physical_plan(&plan)).await.map_err(from_datafusion)?;
    execute_stream(physical, task).map_err(from_datafusion)
}

/// The rows a write statement's read returns, a batch at a time. With `whole`, they are all
/// read first, as one batch, before the statement writes any: needed when the read could
/// otherwise meet the statement's own writes.
pub(crate) async fn write_source(
    ctx: &SessionContext,
    txn: &Arc<Txn>,
    plan: LogicalPlan,
    whole: bool,
) -> Result<SendableRecordBatchStream> {
    let stream = stream_at_snapshot(ctx, txn, plan).await?;
    if !whole {
        return Ok(stream);
    }
    let schema = stream.schema();
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(from_datafusion)?;
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
    Ok(once(schema, vec![batch]))
}

/// The next batch of `stream` that holds rows, if any.
pub(crate) async fn next_rows(stream: &mut SendableRecordBatchStream) -> Result<Option<RecordBatch>> {
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(from_datafusion)?;
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

/// How many times `plan` scans the user table `table` (subqueries included).
pub(crate) fn scans_of(plan: &LogicalPlan, table: &str) -> usize {
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            n += usize::from(scan.table_name.table() == table);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// What executing a statement produced.
pub enum Output {
    /// Rows, then `<command> <rows sent>` (`INSERT 0 <n>` for INSERT).
    Rows { command: &'static str, schema: SchemaRef, stream: SendableRecordBatchStream },
    /// A command and its complete tag.
    Command { tag: String },
}

/// What running a statement needs: the session's DataFusion context, the catalog, the cluster,
/// the node's row-id source, and the transaction the statement runs in (its own when
/// `autocommit`, the block's otherwise).
pub(crate) struct Executor<'a> {
    pub ctx: &'a SessionContext,
    pub catalog: &'a Catalog,
    pub cluster: &'a Arc<dyn Cluster>,
    pub rowids: &'a RowIds,
    pub default_shards: u16,
    pub sequences: &'a Sequences,
    pub txn: &'a Arc<Txn>,
    pub autocommit: bool,
    /// For the transactions of a CREATE INDEX backfill.
    pub coordinator: &'a Arc<Coordinator>,
    /// A transaction block's deferred foreign key checks (None: a statement on its own).
    pub deferred: Option<&'a Arc<Deferred>>,
}

impl Executor<'_> {
    fn shards(&self) -> Shards<'_> {
        Shards {
            ctx: self.ctx,
            cluster: self.cluster,
            catalog: self.catalog,
            rowids: self.rowids,
            sequences: self.sequences,
            txn: self.txn,
            autocommit: self.autocommit,
        }
    }

    /// The indexes a write to `def` (as planned) maintains and the foreign keys it keeps: the
    /// current definition's. The transaction records the version, for the schema check at
    /// commit.
    async fn dependents(&self, def: &TableDef) -> Result<(Indexes, ForeignKeys)> {
        let current = self.check_current(def).await?;
        self.txn.uses(current.id, current.version);
        let keys = ForeignKeys::of(self.catalog, self.txn, &current).await?.deferring(self.deferred.cloned());
        if current.foreign_keys.iter().flat_map(|k| &k.columns).any(|c| *c >= def.columns.len()) {
            return Err(Error::unsupported(format!(
                "cached plan must be re-prepared: table \"{}\" was altered",
                current.name
            )));
        }
        Ok((Indexes::of(&current, def)?, keys))
    }

    /// Runs a prepared data statement with its parameter values (already as many as it takes).
    pub(crate) async fn execute(&self, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        if let Some(def) = prepared.target().filter(|_| !prepared.writes()) {
            let current = self.check_current(def).await?;
            // A lookup through an index needs that index public still.
            if let Plan::PointSelect(PointSelect { via: Some(index), .. }) = &prepared.plan {
                if !current.indexes.iter().any(|i| i.id == index.id && i.state == IndexState::Public) {
                    return Err(Error::unsupported(format!(
                        "cached plan must be re-prepared: index \"{}\" was dropped",
                        index.name
                    )));
                }
            }
        }
        match &prepared.plan {
            Plan::PointSelect(point) => {
                // Inside a block the row is read as the block's transaction sees it.
                let txn = (!self.autocommit).then_some(self.txn.as_ref());
                let batch = point.execute(self.cluster.as_ref(), txn, &params).await?;
                let schema = point.schema.clone();
                Ok(Output::Rows { command: "SELECT", schema: schema.clone(), stream: once(schema, vec![batch]) })
            }
            Plan::ParamInsert(insert) => {
                let checks = Checks::compile(self.ctx, &insert.def)?;
                let (indexes, keys) = self.dependents(&insert.def).await?;
                let n = insert.execute(&self.shards(), checks, &indexes, &keys, &params).await?;
                Ok(Output::Command { tag: format!("INSERT 0 {n}") })
            }
            Plan::Query(query) => self.query(query, prepared, params).await,
            Plan::Insert(insert) => self.insert(insert, &params).await,
            Plan::Modify(modify) => {
                let returning = modify.returning.is_some();
                let (indexes, keys) = self.dependents(&modify.def).await?;
                let shards = self.shards();
                let (count, rows) = modify::run(&shards, modify, &indexes, &keys, &params, returning).await?;
                self.finish_write(&modify.def, modify.command(), count, modify.returning.as_ref(), rows, &params)
            }
            Plan::Truncate { tables, restart_identity } => {
                for modify in tables {
                    let (indexes, keys) = self.dependents(&modify.def).await?;
                    // As in PostgreSQL, rows of another table may not reference the rows
                    // emptied (no key is checked row by row: all go together).
                    if let Some(id) = keys.referencing_tables().find(|id| !tables.iter().any(|t| t.def.id == *id)) {
                        let other = self.catalog.by_id(id).await?.map(|t| t.name.clone()).unwrap_or_default();
                        return Err(Error::unsupported(format!(
                            "cannot truncate a table referenced in a foreign key constraint: table \"{other}\" references \"{}\"",
                            modify.def.name
                        )));
                    }
                    let none = ForeignKeys::default();
                    modify::run(&self.shards(), modify, &indexes, &none, &params, false).await?;
                }
                if *restart_identity {
                    for modify in tables {
                        for name in sequences::owned(self.catalog, &modify.def) {
                            let Some(def) = self.catalog.sequence(&name).await? else { continue };
                            self.sequences.setval(self.cluster.as_ref(), &def, def.start, false).await?;
                        }
                    }
                }
                Ok(Output::Command { tag: "TRUNCATE TABLE".into() })
            }
            Plan::CreateTable(create) => {
                let cluster = self.cluster.as_ref();
                let tag = ddl::create_table(self.ctx, cluster, self.catalog, self.default_shards, create).await?;
                Ok(Output::Command { tag })
            }
            Plan::AlterTable(alter) => {
                let cluster = self.cluster.as_ref();
                ddl::alter_table(self.ctx, cluster, self.catalog, self.sequences, self.coordinator, alter).await?;
                Ok(Output::Command { tag: "ALTER TABLE".into() })
            }
            Plan::CreateIndex(create) => {
                index_ddl::create_index(self.cluster.as_ref(), self.catalog, self.coordinator, create).await?;
                Ok(Output::Command { tag: "CREATE INDEX".into() })
            }
            Plan::DropIndex { names, if_exists } => {
                index_ddl::drop_index(self.cluster.as_ref(), self.catalog, names, *if_exists).await?;
                Ok(Output::Command { tag: "DROP INDEX".into() })
            }
            Plan::DropTable { names, if_exists, cascade } => {
                let cluster = self.cluster.as_ref();
                ddl::drop_table(cluster, self.catalog, self.sequences, names, *if_exists, *cascade).await?;
                Ok(Output::Command { tag: "DROP TABLE".into() })
            }
            Plan::CreateSequence(create) => {
                let Statement::CreateSequence { if_not_exists, name, data_type, sequence_options, owned_by, .. } =
                    create.as_ref()
                else {
                    return Err(Error::Internal("CREATE SEQUENCE plan of another statement".into()));
                };
                let cluster = self.cluster.as_ref();
                let (data_type, owned_by) = (data_type.as_ref(), owned_by.as_ref());
                sequences::create_sequence(
                    cluster,
                    self.catalog,
                    name,
                    *if_not_exists,
                    data_type,
                    sequence_options,
                    owned_by,
                )
                .await?;
                Ok(Output::Command { tag: "CREATE SEQUENCE".into() })
            }
            Plan::AlterSequence(alter) => {
                sequences::alter_sequence(self.cluster.as_ref(), self.catalog, self.sequences, alter).await?;
                Ok(Output::Command { tag: "ALTER SEQUENCE".into() })
            }
            Plan::DropSequence { names, if_exists, cascade } => {
                let cluster = self.cluster.as_ref();
                sequences::drop_sequences(cluster, self.catalog, self.sequences, names, *if_exists, *cascade).await?;
                Ok(Output::Command { tag: "DROP SEQUENCE".into() })
            }
            Plan::CreateView { def, or_replace } => {
                views::create_view(self.cluster.as_ref(), self.catalog, def.as_ref().clone(), *or_replace).await?;
                Ok(Output::Command { tag: "CREATE VIEW".into() })
            }
            Plan::DropView { names, if_exists, cascade } => {
                views::drop_views(self.catalog, names, *if_exists, *cascade).await?;
                Ok(Output::Command { tag: "DROP VIEW".into() })
            }
            Plan::CreateSchema { name, owner, if_not_exists } => {
                let cluster = self.cluster.as_ref();
                schemas::create_schema(cluster, self.catalog, name, owner.clone(), *if_not_exists).await?;
                Ok(Output::Command { tag: "CREATE SCHEMA".into() })
            }
            Plan::DropSchema { names, if_exists, cascade } => {
                let cluster = self.cluster.as_ref();
                schemas::drop_schemas(cluster, self.catalog, self.sequences, names, *if_exists, *cascade).await?;
                Ok(Output::Command { tag: "DROP SCHEMA".into() })
            }
            Plan::Comment { on, comment } => {
                ddl::comment_on(self.catalog, on, comment.clone()).await?;
                Ok(Output::Command { tag: "COMMENT".into() })
            }
            Plan::Session(_) => Err(Error::Internal("a session command reached the executor".into())),
        }
    }

    /// Runs a query with every shard read at one snapshot (`scan::Snapshot`, in the task
    /// context its scans execute with).
    async fn query(&self, query: &QueryPlan, prepared: &Prepared, params: Vec<ScalarValue>) -> Result<Output> {
        let QueryPlan { plan, optimized, columns, command } = query;
        let state = statement_state(self.ctx, self.txn);
        let (schema, physical) = match optimized {
            Some((optimized, types)) => {
                let plan = bind_as(optimized, &params, types)?;
                let physical = planning(state.query_planner().create_physical_plan(&plan, &state))
                    .await
                    .map_err(from_datafusion)?;
                (prepared.schema.clone().unwrap_or_else(|| physical.schema()), physical)
            }
            None => {
                let plan = bind(plan, &params)?;
                let schema = prepared.schema.clone().unwrap_or_else(|| Arc::new(plan.schema().as_arrow().clone()));
                (schema, planning(state.create_physical_plan(&plan)).await.map_err(from_datafusion)?)
            }
        };
        let stream = execute_stream(physical, snapshot_task(&state, self.txn)).map_err(from_datafusion)?;
        Ok(Output::Rows { command, schema, stream: shaped(columns, stream) })
    }

    /// Runs an INSERT: its source streams, each batch written to the transaction before the
    /// next is read, unless it reads the target table: then it is read whole first, so that it
    /// sees the table as it was before the statement and not the rows it writes.
    async fn insert(&self, insert: &InsertPlan, params: &[ScalarValue]) -> Result<Output> {
        let InsertPlan { def, source, conflict, returning } = insert;
        let conflict = self.on_conflict(conflict, params)?;
        let plan = bind(source, params)?;
        let whole = scans_of(&plan, &def.name) > 0;
        let mut source = write_source(self.ctx, self.txn, plan, whole).await?;
        let mut next = next_rows(&mut source).await?;
        let (indexes, keys) = self.dependents(def).await?;
        let mut run = write::InsertRun::new(self.shards(), Checks::compile(self.ctx, def)?, &indexes, &keys);
        let (mut count, mut written, mut first) = (0, Vec::new(), true);
        while let Some(batch) = next {
            next = next_rows(&mut source).await?;
            let (n, rows) = run.insert(def, batch.columns(), &conflict, first && next.is_none()).await?;
            count += n;
            if returning.is_some() {
                written.extend(rows);
            }
            first = false;
        }
        // RETURNING is evaluated before an autocommit INSERT commits (in `finish`): a failure
        // there fails the whole statement, nothing written.
        let output = self.finish_write(def, "INSERT", count, returning.as_ref(), written, params)?;
        run.finish(def).await?;
        Ok(output)
    }

    /// `conflict` with its expressions bound to `params` and compiled for execution.
    fn on_conflict(&self, conflict: &Conflict, params: &[ScalarValue]) -> Result<OnConflict> {
        Ok(match conflict {
            Conflict::Fail => OnConflict::Fail,
            Conflict::Ignore => OnConflict::Ignore,
            Conflict::Overwrite => OnConflict::Overwrite,
            Conflict::Update { sets, filter, schema, arbiter } => {
                let state = statement_state(self.ctx, self.txn);
                let physical = |e: datafusion::logical_expr::Expr| physical_expr(&state, e, schema);
                let exprs: Vec<_> = sets.iter().map(|(_, e)| e.clone()).collect();
                let bound = bind_exprs(&exprs, params)?;
                let sets = sets.iter().zip(bound).map(|((c, _), e)| Ok((*c, physical(e)?))).collect::<Result<_>>()?;
                let filter = match filter {
                    Some(f) => Some(physical(bind_exprs(std::slice::from_ref(f), params)?.remove(0))?),
                    None => None,
                };
                OnConflict::Update { sets, filter, arbiter: arbiter.clone() }
            }
        })
    }

    /// A prepared write or point read holds the table definition it was planned with: refuse to
    /// run it once that table was dropped (or dropped and created again).
    async fn check_current(&self, def: &TableDef) -> Result<Arc<TableDef>> {
        match self.catalog.get(&def.name).await? {
            Some(current) if current.id == def.id => Ok(current),
            Some(_) => Err(Error::unsupported(format!(
                "cached plan must be re-prepared: table \"{}\" was dropped and created again",
                def.name
            ))),
            None => Err(Error::UndefinedTable(format!("relation \"{}\" does not exist", def.name))),
        }
    }

    /// The command tag, or the RETURNING rows evaluated over `rows` (visible columns).
    fn finish_write(
        &self,
        def: &TableDef,
        command: &'static str,
        count: usize,
        returning: Option<&Returning>,
        rows: Vec<RecordBatch>,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let Some(returning) = returning else {
            let tag = if command == "INSERT" { format!("INSERT 0 {count}") } else { format!("{command} {count}") };
            return Ok(Output::Command { tag });
        };
        let all = datafusion::arrow::compute::concat_batches(&def.visible_schema(), &rows).map_err(Error::internal)?;
        let state = statement_state(self.ctx, self.txn);
        let mut columns = Vec::with_capacity(returning.exprs.len());
        for e in bind_exprs(&returning.exprs, params)? {
            let physical = physical_expr(&state, e, &returning.input)?;
            columns.push(evaluate(&physical, &all)?);
        }
        let fields: Vec<_> = returning
            .schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()).with_nullable(true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = if columns.is_empty() {
            RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(all.num_rows())),
            )
        } else {
            RecordBatch::try_new(schema.clone(), columns)
        }
        .map_err(Error::internal)?;
        Ok(Output::Rows { command, schema: returning.schema.clone(), stream: once(schema, vec![batch]) })
    }
}

/// Commits `txn` unless a table it wrote moved on meanwhile by more than one definition
/// version (then 40001: nothing applied). Schema changes step one version at a time, each
/// waiting out the catalog lease, so a transaction that passes writes with a definition at
/// most one step behind every node's (`TRANSACTIONS.md` §3).
pub(crate) async fn commit(txn: &Txn, catalog: &Catalog) -> Result<()> {
    for (id, version) in txn.used() {
        match catalog.by_id(id).await? {
            Some(current) if current.version <= version + 1 => {}
            Some(current) => {
                return Err(Error::TxnConflict(format!(
                    "could not serialize access: table \"{}\" was altered during the transaction",
                    current.name
                )))
            }
            None => {
                return Err(Error::TxnConflict(
                    "could not serialize access: a table written was dropped during the transaction".into(),
                ))
            }
        }
    }
    txn.commit().await.map(|_| ())
}

/// Rows `rows` of `columns`, in that order.
pub(crate) fn take_rows(columns: &[ArrayRef], rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let idx = datafusion::arrow::array::UInt32Array::from(rows.to_vec());
    columns.iter().map(|c| datafusion::arrow::compute::take(c.as_ref(), &idx, None).map_err(Error::internal)).collect()
}

/// A stream over batches already in memory.
pub(crate) fn once(schema: SchemaRef, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// `stream` with `columns`' names and types, if any.
fn shaped(columns: &Option<Arc<Columns>>, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    match columns {
        Some(columns) => columns.apply(stream),
        None => stream,
    }
}
