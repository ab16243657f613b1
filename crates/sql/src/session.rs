//! [`Session`]: one client connection's SQL state, and the statement dispatcher.
//!
//! [`Session::prepare`] matches on the parsed `Statement` and plans it once: queries (SELECT,
//! VALUES, EXPLAIN) become DataFusion logical plans with their `$n` placeholders; INSERT's source
//! and UPDATE / DELETE's row selection are planned by DataFusion too (UPDATE / DELETE as a
//! SELECT of every column plus the new values); DDL, transaction control and SET / SHOW are
//! handled here. [`Session::execute`] binds parameter values into the plan and runs it,
//! streaming query results and sending writes through [`crate::dml`].
//!
//! Transactions until real ones exist: BEGIN / COMMIT / ROLLBACK are accepted, statements inside
//! apply one by one, and a ROLLBACK after writes warns that they stay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, Volatility, WriteOp as DfWriteOp};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, CreateTable, Expr as AstExpr, FromTable, ObjectName, ObjectType, OnConflictAction, OnInsert,
    SelectItem, Set, Statement, TableFactor, TableObject,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use raftable_common::{Error, Result};

use crate::catalog::TableDef;
use crate::columns::Columns;
use crate::ddl::{create_table, drop_table, ident, table_name};
use crate::dml::{self, Conflict, Contention};
use crate::engine::Engine;
use crate::error::from_datafusion;
use crate::point::{ParamInsert, PointSelect};
use crate::provider::{RaftableCatalog, Scope, CATALOG, PUBLIC};
use crate::scan::ClusterRef;

/// A planned statement, ready to execute any number of times.
pub struct Prepared {
    /// Parameter types, in `$1..$n` order.
    pub params: Vec<DataType>,
    /// The columns it returns (`None`: a command without rows).
    pub schema: Option<SchemaRef>,
    plan: Plan,
}

enum Plan {
    /// A primary-key lookup, executed without DataFusion.
    PointSelect(PointSelect),
    /// An insert of rows of parameters, executed without DataFusion.
    ParamInsert(ParamInsert),
    Query {
        plan: LogicalPlan,
        /// The plan through DataFusion's analyzer and logical optimizer once, placeholders still
        /// in it, with the parameter types: each execution binds the values into it and plans it
        /// physically, without optimizing again. `None` where that is not safe (see
        /// [`Session::optimize_once`]): then every execution optimizes `plan` with its values.
        optimized: Option<(LogicalPlan, Vec<DataType>)>,
        /// The result columns' PostgreSQL names and types, where DataFusion's differ.
        columns: Option<Arc<Columns>>,
        command: &'static str,
    },
    Insert {
        def: Arc<TableDef>,
        source: LogicalPlan,
        conflict: Conflict,
        returning: Option<String>,
    },
    Update {
        def: Arc<TableDef>,
        sql: String,
        select: LogicalPlan,
        sets: Vec<usize>,
        /// `SET col = $n`: parameter n takes the column's type.
        hints: Vec<(usize, DataType)>,
        returning: Option<String>,
    },
    Delete {
        def: Arc<TableDef>,
        sql: String,
        select: LogicalPlan,
        returning: Option<String>,
    },
    CreateTable(Box<CreateTable>),
    DropTable {
        names: Vec<ObjectName>,
        if_exists: bool,
    },
    Begin,
    Commit,
    Rollback,
    Set {
        name: String,
        value: Option<String>,
    },
    Show(String),
}

/// What executing a statement produced.
pub enum Output {
    /// Rows, then `<command> <rows sent>` (`INSERT 0 <n>` for INSERT).
    Rows { command: &'static str, schema: SchemaRef, stream: SendableRecordBatchStream },
    /// A command and its complete tag.
    Command { tag: String },
}

pub struct Session {
    engine: Arc<Engine>,
    pub id: u64,
    ctx: SessionContext,
    scope: Arc<Mutex<Option<Scope>>>,
    settings: BTreeMap<String, String>,
    in_transaction: bool,
    transaction_writes: usize,
    notices: Vec<String>,
}

/// Settings every session starts with (names lower-case), as PostgreSQL 15 reports them.
const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "15.0"),
    ("server_version_num", "150000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
];

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, id: u64) -> Self {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, PUBLIC)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(4);
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // Numeric literals are NUMERIC, as in PostgreSQL (not floating point).
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        let ctx = SessionContext::new_with_config(config);
        let scope = Arc::new(Mutex::new(None));
        let catalog = RaftableCatalog::new(engine.catalog.clone(), ClusterRef(engine.cluster.clone()), scope.clone());
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        // pg_catalog (pg_class, pg_attribute, ...) and the functions psql's \d and drivers'
        // metadata queries call, built from the catalogs registered above.
        if let Err(e) = datafusion_pg_catalog::setup_pg_catalog(
            &ctx,
            CATALOG,
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        ) {
            tracing::warn!(error = %e, "pg_catalog unavailable in this session");
        } else if let Err(e) = crate::pg_catalog::amend(&ctx, engine.catalog.clone()) {
            tracing::warn!(error = %e, "pg_catalog shows no primary keys in this session");
        }
        ctx.register_udf(version_udf());
        let settings = DEFAULT_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self { engine, id, ctx, scope, settings, in_transaction: false, transaction_writes: 0, notices: Vec::new() }
    }

    /// Parses a query string into statements; an empty query gives none.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let syntax = |e: datafusion::sql::sqlparser::parser::ParserError| {
            Error::SyntaxError(e.to_string().replace("sql parser error: ", ""))
        };
        match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            // Catalog queries (psql's \d, drivers' metadata) go through datafusion-pg-catalog's
            // parser, whose rewrites (pg_catalog qualifiers, OPERATOR(pg_catalog.~),
            // ::regclass, ...) make them plannable. Only those: its rewrites change the meaning
            // of some ordinary queries (correlated subqueries in a select list).
            Ok(statements) if !statements.iter().any(reads_catalog) => Ok(statements),
            Ok(_) => self.catalog_parse(sql).map_err(syntax),
            Err(e) => self.catalog_parse(sql).map_err(|_| syntax(e)),
        }
    }

    /// A catalog query through datafusion-pg-catalog's parser and raftable's own rewrites.
    fn catalog_parse(
        &self,
        sql: &str,
    ) -> std::result::Result<Vec<Statement>, datafusion::sql::sqlparser::parser::ParserError> {
        let mut statements = self.engine.parser.parse(sql)?;
        statements.iter_mut().for_each(crate::pg_catalog::rewrite);
        Ok(statements)
    }

    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings.get(&name.to_lowercase()).cloned()
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Plans a statement. `param_types` are the client's (None: infer).
    pub async fn prepare(&mut self, stmt: &Statement, param_types: &[Option<DataType>]) -> Result<Arc<Prepared>> {
        let mut stmt = stmt.clone();
        float_exponents(&mut stmt);
        let (plan, schema) = self.plan(&stmt).await?;
        let mut params: Vec<DataType> = match &plan {
            Plan::Query { plan, .. }
            | Plan::Insert { source: plan, .. }
            | Plan::Update { select: plan, .. }
            | Plan::Delete { select: plan, .. } => inferred(plan)?,
            Plan::PointSelect(p) => typed(p.param_types()),
            Plan::ParamInsert(p) => typed(p.param_types()),
            _ => Vec::new(),
        };
        if let Plan::Update { hints, .. } = &plan {
            for (n, ty) in hints {
                if *n <= params.len() && params[n - 1] == DataType::Null {
                    params[n - 1] = ty.clone();
                }
            }
        }
        for (n, ty) in param_hints(&stmt) {
            if params.get(n - 1) == Some(&DataType::Null) {
                params[n - 1] = ty;
            }
        }
        for (i, given) in param_types.iter().enumerate() {
            if let Some(t) = given {
                if i >= params.len() {
                    params.resize(i + 1, DataType::Null);
                }
                params[i] = t.clone();
            }
        }
        let params = params.into_iter().map(|t| if t == DataType::Null { DataType::Utf8 } else { t }).collect();
        Ok(Arc::new(Prepared { params, schema, plan }))
    }

    async fn plan(&mut self, stmt: &Statement) -> Result<(Plan, Option<SchemaRef>)> {
        Ok(match stmt {
            Statement::Query(_) | Statement::Explain { .. } => {
                if let Statement::Query(q) = stmt {
                    if let Some(point) = self.point_select(q).await {
                        let schema = point.schema.clone();
                        return Ok((Plan::PointSelect(point), Some(schema)));
                    }
                }
                let plan = self.df_plan(stmt.clone()).await?;
                let optimized = match stmt {
                    Statement::Query(_) => self.optimize_once(&plan),
                    _ => None,
                };
                let schema = self.described(&plan, optimized.as_ref().map(|(p, _)| p));
                let mut schema = crate::pg_catalog::with_origins(&plan, schema, &self.engine.catalog);
                let (command, columns) = match stmt {
                    Statement::Query(q) => ("SELECT", Columns::of(q, &schema).map(Arc::new)),
                    _ => ("EXPLAIN", None),
                };
                if let Some(columns) = &columns {
                    schema = columns.schema();
                }
                (Plan::Query { plan, optimized, columns, command }, Some(schema))
            }
            Statement::Insert(_) => self.plan_insert(stmt).await?,
            Statement::Update(_) => self.plan_update(stmt).await?,
            Statement::Delete(_) => self.plan_delete(stmt).await?,
            Statement::CreateTable(create) => (Plan::CreateTable(Box::new(create.clone())), None),
            Statement::Drop { object_type: ObjectType::Table, if_exists, names, .. } => {
                (Plan::DropTable { names: names.clone(), if_exists: *if_exists }, None)
            }
            Statement::StartTransaction { .. } => (Plan::Begin, None),
            Statement::Commit { .. } => (Plan::Commit, None),
            Statement::Rollback { savepoint: None, .. } => (Plan::Rollback, None),
            Statement::Set(set) => (set_plan(set)?, None),
            Statement::ShowVariable { variable } => {
                let name = variable.iter().map(ident).collect::<Vec<_>>().join(" ");
                let name = match name.as_str() {
                    "time zone" => "timezone".to_string(),
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    _ => name,
                };
                if !self.settings.contains_key(&name) && name != "all" {
                    return Err(Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\"")));
                }
                let schema = show_schema(&name);
                (Plan::Show(name), Some(schema))
            }
            other => return Err(Error::Unsupported(format!("statement not supported: {}", first_words(other)))),
        })
    }

    /// The point-select plan of `q`, if it has that shape on an existing table.
    async fn point_select(&self, q: &datafusion::sql::sqlparser::ast::Query) -> Option<PointSelect> {
        let name = crate::point::point_select_table(q)?;
        let def = self.engine.catalog.get(&name).await.ok()??;
        PointSelect::plan(q, &def)
    }

    /// The columns `plan` returns as execution produces them: names from the plan, types after
    /// DataFusion's analyzer (type coercion), where the plan as built may still give a UNION its
    /// left branch's types (`SELECT 1 UNION ALL SELECT 2.5` is numeric, not bigint: described as
    /// bigint, binary-format clients read the numeric's bytes as an int8). `optimized` (the plan
    /// through analyzer and optimizer already, which keep its output) spares a second analysis;
    /// the plan's own types where the analyzer cannot run before parameters are bound.
    fn described(&self, plan: &LogicalPlan, optimized: Option<&LogicalPlan>) -> SchemaRef {
        let planned = plan.schema().as_arrow().clone();
        let analyzed_here;
        let analyzed = match optimized {
            Some(optimized) => optimized,
            None => {
                let state = self.ctx.state();
                match state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {}) {
                    Ok(analyzed) => analyzed_here = analyzed,
                    Err(_) => return Arc::new(planned),
                }
                &analyzed_here
            }
        };
        let types = analyzed.schema().as_arrow().fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
        if types.len() != planned.fields().len() {
            return Arc::new(planned);
        }
        let fields = planned
            .fields()
            .iter()
            .zip(types)
            .map(
                |(f, ty)| if ty == DataType::Null { f.as_ref().clone() } else { f.as_ref().clone().with_data_type(ty) },
            )
            .collect::<Vec<_>>();
        Arc::new(Schema::new_with_metadata(fields, planned.metadata().clone()))
    }

    /// `plan` through the analyzer and optimizer, with its parameter types, if the optimized
    /// plan may be reused by every execution. Not when:
    /// - the plan calls a function that is not immutable (the optimizer folds `now()` into the
    ///   time it runs);
    /// - a parameter's type is unknown anywhere it is used (`LIMIT $1`, planned without a type,
    ///   or `$1` compared with a column and also tested with `IS NULL`): the analyzer coerced the
    ///   plan around the placeholder's type, and a value bound later is not coerced again;
    /// - the optimizer fails on the placeholders.
    fn optimize_once(&self, plan: &LogicalPlan) -> Option<(LogicalPlan, Vec<DataType>)> {
        if !immutable(plan) {
            return None;
        }
        let types = inferred(plan).ok()?;
        if types.contains(&DataType::Null) {
            return None;
        }
        let optimized = self.ctx.state().optimize(plan).ok()?;
        Some((optimized, types))
    }

    async fn df_plan(&self, stmt: Statement) -> Result<LogicalPlan> {
        self.ctx.state().statement_to_plan(DfStatement::Statement(Box::new(stmt))).await.map_err(from_datafusion)
    }

    /// Plans `stmt` with `scope` set for its table (hidden columns, shard restriction).
    async fn df_plan_scoped(&self, stmt: Statement, scope: Scope) -> Result<LogicalPlan> {
        *self.scope.lock().expect("scope lock") = Some(scope);
        let plan = self.df_plan(stmt).await;
        *self.scope.lock().expect("scope lock") = None;
        plan
    }

    async fn table(&self, name: &ObjectName) -> Result<Arc<TableDef>> {
        let name = table_name(name)?;
        self.engine
            .catalog
            .get(&name)
            .await?
            .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))
    }

    async fn plan_insert(&mut self, stmt: &Statement) -> Result<(Plan, Option<SchemaRef>)> {
        let Statement::Insert(insert) = stmt else { unreachable!("checked by caller") };
        let TableObject::TableName(name) = &insert.table else {
            return Err(Error::Unsupported("INSERT into a table function".into()));
        };
        let def = self.table(name).await?;
        let conflict = match &insert.on {
            None => Conflict::Fail,
            Some(OnInsert::OnConflict(c)) => match &c.action {
                OnConflictAction::DoNothing => Conflict::Ignore,
                OnConflictAction::DoUpdate(update) => {
                    conflict_update(&def, &update.assignments, update.selection.as_ref())?
                }
            },
            Some(other) => return Err(Error::Unsupported(format!("{other}"))),
        };
        if matches!(conflict, Conflict::Ignore) && insert.returning.is_some() {
            return Err(Error::Unsupported("RETURNING with ON CONFLICT DO NOTHING is not supported yet".into()));
        }
        if let Some(insert) = ParamInsert::plan(insert, &def, &conflict) {
            return Ok((Plan::ParamInsert(insert), None));
        }
        let mut bare = insert.clone();
        bare.on = None;
        bare.returning = None;
        replace_defaults(&mut bare, &def)?;
        let plan = self.df_plan(Statement::Insert(bare)).await?;
        let source = match plan {
            LogicalPlan::Dml(DmlStatement { op: DfWriteOp::Insert(_), input, .. }) => Arc::unwrap_or_clone(input),
            other => return Err(Error::Internal(format!("INSERT planned as {}", other.display()))),
        };
        let (returning, schema) = self.returning(&def, insert.returning.as_deref()).await?;
        Ok((Plan::Insert { def, source, conflict, returning }, schema))
    }

    async fn plan_update(&mut self, stmt: &Statement) -> Result<(Plan, Option<SchemaRef>)> {
        let Statement::Update(update) = stmt else { unreachable!("checked by caller") };
        if update.from.is_some() || !update.table.joins.is_empty() {
            return Err(Error::Unsupported("UPDATE ... FROM is not supported".into()));
        }
        let TableFactor::Table { name, .. } = &update.table.relation else {
            return Err(Error::Unsupported("UPDATE of something other than a table".into()));
        };
        let def = self.table(name).await?;
        let mut sets = Vec::new();
        let mut values = Vec::new();
        let mut hints = Vec::new();
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(col) = &a.target else {
                return Err(Error::Unsupported("UPDATE SET (a, b) = ... is not supported".into()));
            };
            let col_name = col.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default();
            let i = def.column(&col_name)?;
            if def.columns[i].hidden {
                return Err(Error::UndefinedColumn(format!("column \"{col_name}\" does not exist")));
            }
            if let AstExpr::Value(v) = &a.value {
                if let datafusion::sql::sqlparser::ast::Value::Placeholder(p) = &v.value {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse().ok()) {
                        hints.push((n, def.columns[i].ty.arrow()));
                    }
                }
            }
            sets.push(i);
            values.push(a.value.to_string());
        }
        let sql = select_sql(&def, &update.table.relation.to_string(), &values, update.selection.as_ref());
        let select = self.plan_select_all(&def, &sql, None).await?;
        let (returning, schema) = self.returning(&def, update.returning.as_deref()).await?;
        Ok((Plan::Update { def, sql, select, sets, hints, returning }, schema))
    }

    async fn plan_delete(&mut self, stmt: &Statement) -> Result<(Plan, Option<SchemaRef>)> {
        let Statement::Delete(delete) = stmt else { unreachable!("checked by caller") };
        let tables = match &delete.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        if tables.len() != 1 || !tables[0].joins.is_empty() || delete.using.is_some() {
            return Err(Error::Unsupported("DELETE from several tables or USING is not supported".into()));
        }
        let TableFactor::Table { name, .. } = &tables[0].relation else {
            return Err(Error::Unsupported("DELETE from something other than a table".into()));
        };
        let def = self.table(name).await?;
        let sql = select_sql(&def, &tables[0].relation.to_string(), &[], delete.selection.as_ref());
        let select = self.plan_select_all(&def, &sql, None).await?;
        let (returning, schema) = self.returning(&def, delete.returning.as_deref()).await?;
        Ok((Plan::Delete { def, sql, select, returning }, schema))
    }

    /// Plans the internal read of an UPDATE / DELETE, all columns visible, optionally for some
    /// shards only.
    async fn plan_select_all(
        &self,
        def: &TableDef,
        sql: &str,
        only: Option<BTreeSet<raftable_common::ShardId>>,
    ) -> Result<LogicalPlan> {
        let mut stmts = self.parse(sql)?;
        let stmt = stmts.pop().ok_or_else(|| Error::Internal("empty internal select".into()))?;
        self.df_plan_scoped(stmt, Scope { table: def.name.clone(), only, hidden: true }).await
    }

    /// RETURNING items as SQL text plus the schema they produce (checked by planning them over
    /// an empty batch of the table's rows).
    async fn returning(
        &self,
        def: &TableDef,
        items: Option<&[SelectItem]>,
    ) -> Result<(Option<String>, Option<SchemaRef>)> {
        let Some(items) = items else { return Ok((None, None)) };
        let text = items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        let empty = RecordBatch::new_empty(def.visible_schema());
        let ctx = SessionContext::new();
        ctx.register_batch(&def.name, empty).map_err(from_datafusion)?;
        let df = ctx.sql(&format!("SELECT {text} FROM \"{}\"", def.name)).await.map_err(from_datafusion)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok((Some(text), Some(schema)))
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
        let target = match &prepared.plan {
            Plan::PointSelect(p) => Some(&p.def),
            Plan::ParamInsert(p) => Some(&p.def),
            Plan::Insert { def, .. } | Plan::Update { def, .. } | Plan::Delete { def, .. } => Some(def),
            _ => None,
        };
        if let Some(def) = target {
            self.check_current(def).await?;
        }
        match &prepared.plan {
            Plan::PointSelect(point) => {
                let batch = point.execute(&self.engine, &params).await?;
                let schema = point.schema.clone();
                Ok(Output::Rows { command: "SELECT", schema: schema.clone(), stream: once(schema, vec![batch]) })
            }
            Plan::ParamInsert(insert) => {
                let n = insert.execute(&self.engine, &params).await?;
                self.transaction_writes += 1;
                Ok(Output::Command { tag: format!("INSERT 0 {n}") })
            }
            Plan::Query { optimized: Some((optimized, types)), columns, command, .. } => {
                let plan = bind_as(optimized, params, types)?;
                let state = self.ctx.state();
                let physical =
                    state.query_planner().create_physical_plan(&plan, &state).await.map_err(from_datafusion)?;
                let schema = prepared.schema.clone().unwrap_or_else(|| physical.schema());
                let stream = execute_stream(physical, self.ctx.task_ctx()).map_err(from_datafusion)?;
                Ok(Output::Rows { command, schema, stream: shaped(columns, stream) })
            }
            Plan::Query { plan, columns, command, .. } => {
                let plan = bind(plan, params)?;
                let df = self.ctx.execute_logical_plan(plan).await.map_err(from_datafusion)?;
                let schema = prepared.schema.clone().unwrap_or_else(|| Arc::new(df.schema().as_arrow().clone()));
                let stream = df.execute_stream().await.map_err(from_datafusion)?;
                Ok(Output::Rows { command, schema, stream: shaped(columns, stream) })
            }
            Plan::Insert { def, source, conflict, returning } => {
                let plan = bind(source, params)?;
                let df = self.ctx.execute_logical_plan(plan).await.map_err(from_datafusion)?;
                // The whole source first, then one write per shard: the source may read the
                // target table, and a shard's part of the statement stays one atomic write.
                let batches = df.collect().await.map_err(from_datafusion)?;
                let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| def.visible_schema());
                let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let mut count = 0;
                let mut written = Vec::new();
                if batch.num_rows() > 0 {
                    let (n, rows) = dml::insert(&self.engine, def, batch.columns(), conflict).await?;
                    count = n;
                    self.transaction_writes += 1;
                    if returning.is_some() {
                        written.extend(rows);
                    }
                }
                self.finish_write(def, "INSERT", count, returning, written, prepared).await
            }
            Plan::Update { def, sql, select, sets, returning, .. } => {
                let (count, rows) = self.rewrite(def, sql, select, params, Some(sets)).await?;
                self.finish_write(def, "UPDATE", count, returning, rows, prepared).await
            }
            Plan::Delete { def, sql, select, returning } => {
                let (count, rows) = self.rewrite(def, sql, select, params, None).await?;
                self.finish_write(def, "DELETE", count, returning, rows, prepared).await
            }
            Plan::CreateTable(create) => Ok(Output::Command { tag: create_table(&self.engine, create).await? }),
            Plan::DropTable { names, if_exists } => {
                drop_table(&self.engine, names, *if_exists).await?;
                Ok(Output::Command { tag: "DROP TABLE".into() })
            }
            Plan::Begin => {
                if self.in_transaction {
                    self.notices.push("there is already a transaction in progress".into());
                }
                self.in_transaction = true;
                self.transaction_writes = 0;
                Ok(Output::Command { tag: "BEGIN".into() })
            }
            Plan::Commit => {
                if !self.in_transaction {
                    self.notices.push("there is no transaction in progress".into());
                }
                self.in_transaction = false;
                Ok(Output::Command { tag: "COMMIT".into() })
            }
            Plan::Rollback => {
                if !self.in_transaction {
                    self.notices.push("there is no transaction in progress".into());
                } else if self.transaction_writes > 0 {
                    self.notices.push(format!(
                        "ROLLBACK does not undo writes in raftable yet: the {} write statement(s) of this transaction \
                         stay applied",
                        self.transaction_writes
                    ));
                }
                self.in_transaction = false;
                Ok(Output::Command { tag: "ROLLBACK".into() })
            }
            Plan::Set { name, value } => {
                match value {
                    Some(v) => self.settings.insert(name.clone(), v.clone()),
                    None => self.settings.insert(name.clone(), default_setting(name)),
                };
                Ok(Output::Command { tag: "SET".into() })
            }
            Plan::Show(name) => {
                let schema = show_schema(name);
                let batch = if name == "all" {
                    let names: Vec<&str> = self.settings.keys().map(|s| s.as_str()).collect();
                    let values: Vec<&str> = self.settings.values().map(|s| s.as_str()).collect();
                    let arrays: Vec<ArrayRef> =
                        vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(values))];
                    RecordBatch::try_new(schema.clone(), arrays)
                } else {
                    let value = self.settings.get(name).cloned().unwrap_or_default();
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![value])) as ArrayRef])
                }
                .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(Output::Rows { command: "SHOW", schema: schema.clone(), stream: once(schema, vec![batch]) })
            }
        }
    }

    /// A prepared write or point read holds the table definition it was planned with: refuse to
    /// run it once that table was dropped (or dropped and created again).
    async fn check_current(&self, def: &TableDef) -> Result<()> {
        match self.engine.catalog.get(&def.name).await? {
            Some(current) if current.id == def.id => Ok(()),
            Some(_) => Err(Error::Unsupported(format!(
                "cached plan must be re-prepared: table \"{}\" was dropped and created again",
                def.name
            ))),
            None => Err(Error::UndefinedTable(format!("relation \"{}\" does not exist", def.name))),
        }
    }

    /// UPDATE (`sets` given) or DELETE: reads the matching rows, writes them conditionally, and
    /// re-runs for the shards where another writer got in first.
    async fn rewrite(
        &mut self,
        def: &Arc<TableDef>,
        sql: &str,
        select: &LogicalPlan,
        params: Vec<ScalarValue>,
        sets: Option<&Vec<usize>>,
    ) -> Result<(usize, Vec<RecordBatch>)> {
        let mut plan = select.clone();
        let mut count = 0;
        let mut rows = Vec::new();
        let mut contention = Contention::new();
        loop {
            let bound = bind(&plan, params.clone())?;
            let df = self.ctx.execute_logical_plan(bound).await.map_err(from_datafusion)?;
            let batches = df.collect().await.map_err(from_datafusion)?;
            // All matching rows of this attempt in one batch, so each shard gets exactly one
            // atomic write: a shard either applied all its rows or none (and is re-run).
            let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty()));
            let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| Error::Internal(e.to_string()))?;
            if batch.num_rows() == 0 {
                return Ok((count, rows));
            }
            let (results, new_rows) = match sets {
                Some(sets) => dml::update_rows(&self.engine, def, &batch, sets).await?,
                None => dml::delete_rows(&self.engine, def, &batch).await?,
            };
            let failed: BTreeSet<_> = results.iter().filter(|(_, r)| r.is_err()).map(|(s, _)| *s).collect();
            let applied = results.iter().any(|(_, r)| r.is_ok());
            let (n, retry, error) = dml::settle(results);
            count += n;
            rows.push(filter_out_shards(def, &new_rows, &failed)?);
            self.transaction_writes += 1;
            if let Some(e) = error {
                return Err(dml::partial(e, applied || count > 0));
            }
            if retry.is_empty() {
                return Ok((count, rows));
            }
            // Lost a race on these shards: read them again and re-evaluate, after a pause.
            if !contention.pause().await {
                return Err(dml::partial(Error::Retry("too much write contention".into()), count > 0));
            }
            plan = self.plan_select_all(def, sql, Some(retry)).await?;
        }
    }

    async fn finish_write(
        &mut self,
        def: &TableDef,
        command: &'static str,
        count: usize,
        returning: &Option<String>,
        rows: Vec<RecordBatch>,
        prepared: &Prepared,
    ) -> Result<Output> {
        let Some(items) = returning else {
            let tag = if command == "INSERT" { format!("INSERT 0 {count}") } else { format!("{command} {count}") };
            return Ok(Output::Command { tag });
        };
        let schema = prepared.schema.clone().unwrap_or_else(|| Arc::new(Schema::empty()));
        let all = datafusion::arrow::compute::concat_batches(&def.visible_schema(), &rows)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let out = dml::eval_select(&def.name, all, items).await?;
        Ok(Output::Rows { command, schema: schema.clone(), stream: once(schema, out) })
    }
}

/// Drops the rows of `batch` (visible columns) that belong to shards whose write failed.
fn filter_out_shards(def: &TableDef, batch: &RecordBatch, failed: &BTreeSet<u64>) -> Result<RecordBatch> {
    if failed.is_empty() || batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    // Re-derive each row's shard from its key columns; hidden row ids are not in `batch`, so
    // for such tables the rows of failed shards are recomputed on the retry anyway: keep none.
    if def.has_rowid() {
        return Ok(RecordBatch::new_empty(batch.schema()));
    }
    let visible = def.visible();
    let full: Vec<ArrayRef> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, _)| batch.column(visible.iter().position(|v| *v == i).unwrap_or(0)).clone())
        .collect();
    let mut keep = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let pk = crate::encoding::encode_pk(def, &full, row)?;
        let shard = def.shards[crate::encoding::bucket_of(&pk, def.buckets) as usize];
        keep.push(!failed.contains(&shard));
    }
    datafusion::arrow::compute::filter_record_batch(batch, &keep.into()).map_err(|e| Error::Internal(e.to_string()))
}

/// A stream over batches already in memory.
fn once(schema: SchemaRef, batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
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

/// Parameter types from (index, type) pairs, `$1..$n` (Null where none is known).
fn typed(pairs: Vec<(usize, DataType)>) -> Vec<DataType> {
    let mut out = Vec::new();
    for (i, t) in pairs {
        if out.len() <= i {
            out.resize(i + 1, DataType::Null);
        }
        out[i] = t;
    }
    out
}

/// The parameter types DataFusion inferred, `$1..$n` (Null where it could not tell).
fn inferred(plan: &LogicalPlan) -> Result<Vec<DataType>> {
    let types: HashMap<String, Option<DataType>> = plan.get_parameter_types().map_err(from_datafusion)?;
    let mut out = Vec::new();
    for (name, ty) in types {
        let n: usize =
            name.trim_start_matches('$').parse().map_err(|_| Error::Unsupported(format!("parameter {name}")))?;
        if n == 0 {
            return Err(Error::SyntaxError("there is no parameter $0".into()));
        }
        if out.len() < n {
            out.resize(n, DataType::Null);
        }
        out[n - 1] = ty.unwrap_or(DataType::Null);
    }
    Ok(out)
}

/// Whether every function `plan` calls (subqueries included) is immutable: the same result for
/// the same arguments, whenever it runs.
fn immutable(plan: &LogicalPlan) -> bool {
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let volatility = match e {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    _ => None,
                };
                immutable &= volatility.is_none_or(|v| v == Volatility::Immutable);
                Ok(if immutable { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            })
        })
    });
    immutable
}

/// Replaces `$n` placeholders with values, cast to the type DataFusion expects where it knows.
fn bind(plan: &LogicalPlan, params: Vec<ScalarValue>) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan.clone());
    }
    bind_as(plan, params, &inferred(plan)?)
}

/// [`bind`] with the parameter types known (`DataType::Null`: unknown, the value as given).
fn bind_as(plan: &LogicalPlan, params: Vec<ScalarValue>, types: &[DataType]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan.clone());
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, v) in params.into_iter().enumerate() {
        let v = match types.get(i) {
            Some(t) if *t != DataType::Null && v.data_type() != *t => v
                .cast_to(t)
                .map_err(|e| Error::InvalidText(format!("parameter ${} cannot be converted to {t}: {e}", i + 1)))?,
            _ => v,
        };
        values.push(v);
    }
    plan.clone().with_param_values(ParamValues::from(values)).map_err(from_datafusion)
}

/// `SELECT <every column>, <values...> FROM <relation> [WHERE ...]` for UPDATE / DELETE.
fn select_sql(def: &TableDef, relation: &str, values: &[String], selection: Option<&AstExpr>) -> String {
    let mut items: Vec<String> = def.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    items.extend(values.iter().map(|v| format!("({v})")));
    let mut sql = format!("SELECT {} FROM {relation}", items.join(", "));
    if let Some(w) = selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    sql
}

fn conflict_update(
    def: &TableDef,
    assignments: &[datafusion::sql::sqlparser::ast::Assignment],
    selection: Option<&AstExpr>,
) -> Result<Conflict> {
    let mut sets = Vec::new();
    let mut overwrite_all = selection.is_none();
    for a in assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return Err(Error::Unsupported("SET (a, b) = ... is not supported".into()));
        };
        let name = col.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default();
        let i = def.column(&name)?;
        if def.pk.contains(&i) {
            return Err(Error::Unsupported("ON CONFLICT DO UPDATE of a primary key column is not supported".into()));
        }
        let value = rewrite_excluded(&a.value, def);
        if value != format!("\"excluded_{name}\"") {
            overwrite_all = false;
        }
        sets.push((i, value));
    }
    let non_key = def.columns.iter().enumerate().filter(|(i, c)| !def.pk.contains(i) && !c.hidden).count();
    if overwrite_all && sets.len() == non_key {
        return Ok(Conflict::Overwrite);
    }
    Ok(Conflict::Update { sets, filter: selection.map(|s| rewrite_excluded(s, def)) })
}

/// `excluded.c` → `"excluded_c"` and `<table>.c` → `"c"`, as the columns of the batch the
/// DO UPDATE expressions are evaluated over.
fn rewrite_excluded(expr: &AstExpr, def: &TableDef) -> String {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Ident};
    use std::ops::ControlFlow;
    let mut e = expr.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let AstExpr::CompoundIdentifier(parts) = x {
            if parts.len() == 2 {
                let q = ident(&parts[0]);
                let c = ident(&parts[1]);
                if q == "excluded" {
                    *x = AstExpr::Identifier(Ident::with_quote('"', format!("excluded_{c}")));
                } else if q == def.name {
                    *x = AstExpr::Identifier(Ident::with_quote('"', c));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// `version()`, which drivers and ORMs call on connect (SQLAlchemy: `pg_catalog.version()`).
fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    let text = "PostgreSQL 15.0 (raftable) on x86_64-pc-linux-gnu";
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.to_string()))))),
    )
}

/// Whether a statement reads PostgreSQL's catalogs (`pg_catalog`, `information_schema`,
/// `pg_*` relations).
fn reads_catalog(stmt: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions;
    use datafusion::sql::sqlparser::ast::visit_relations;
    use std::ops::ControlFlow;
    // A `pg_catalog.`-qualified function (`pg_catalog.version()`) also needs the rewrites.
    let qualified_call = visit_expressions(stmt, |e| match e {
        AstExpr::Function(f) if f.name.0.len() > 1 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if qualified_call.is_break() {
        return true;
    }
    let found = visit_relations(stmt, |name| {
        let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.to_lowercase()).collect();
        let catalog = parts.iter().any(|p| p == "pg_catalog" || p == "information_schema")
            || parts.last().is_some_and(|t| t.starts_with("pg_"));
        if catalog {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// Types of `$n` that PostgreSQL takes from where they stand and DataFusion leaves unknown:
/// bigint for a LIMIT or OFFSET, the target type of a cast (`$1::bigint`). A client that sends
/// untyped text values (node-postgres, pgJDBC's metadata) would otherwise bind a string there.
fn param_hints(stmt: &Statement) -> Vec<(usize, DataType)> {
    use datafusion::sql::sqlparser::ast::{LimitClause, Query, Value, Visit, Visitor};
    use std::ops::ControlFlow;
    fn placeholder(e: &AstExpr) -> Option<usize> {
        let AstExpr::Value(v) = e else { return None };
        let Value::Placeholder(p) = &v.value else { return None };
        p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0)
    }
    struct Hints(Vec<(usize, DataType)>);
    impl Visitor for Hints {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            let (limit, offset) = match &q.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    (limit.as_ref(), offset.as_ref().map(|o| &o.value))
                }
                Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(limit), Some(offset)),
                None => (None, None),
            };
            for n in [limit, offset].into_iter().flatten().filter_map(placeholder) {
                self.0.push((n, DataType::Int64));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &AstExpr) -> ControlFlow<()> {
            if let AstExpr::Cast { expr, data_type, .. } = e {
                if let (Some(n), Ok(ty)) = (placeholder(expr), crate::types::SqlType::from_ast(data_type)) {
                    self.0.push((n, ty.arrow()));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut hints = Hints(Vec::new());
    let _ = stmt.visit(&mut hints);
    hints.0
}

/// Numeric literals are NUMERIC (decimal) as in PostgreSQL, but a literal with an exponent
/// (`1e300`) is usually meant as a float and may not fit a decimal: it becomes a double.
fn float_exponents(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Value};
    use std::ops::ControlFlow;
    let _ = visit_expressions_mut(stmt, |e| {
        if let AstExpr::Value(v) = e {
            if let Value::Number(n, _) = &v.value {
                if n.contains(['e', 'E']) {
                    let sql = format!("CAST('{n}' AS DOUBLE PRECISION)");
                    if let Ok(cast) =
                        Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql).and_then(|mut p| p.parse_expr())
                    {
                        *e = cast;
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `DEFAULT` in an INSERT's VALUES becomes the column's default (or NULL), which DataFusion's
/// planner does not do itself.
fn replace_defaults(insert: &mut datafusion::sql::sqlparser::ast::Insert, def: &TableDef) -> Result<()> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let columns = crate::point::target_columns(insert, def)?;
    let Some(source) = insert.source.as_mut() else { return Ok(()) };
    let SetExpr::Values(values) = source.body.as_mut() else { return Ok(()) };
    for row in &mut values.rows {
        for (i, e) in row.iter_mut().enumerate() {
            let Some(&col) = columns.get(i) else { continue };
            let c = &def.columns[col];
            if c.ty == crate::types::SqlType::Bytea {
                // A text literal for a bytea column is in bytea's input format ('\x..' or
                // escapes), which DataFusion's text-to-binary cast would take byte for byte.
                if let AstExpr::Value(v) = e {
                    if let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(text) = &v.value {
                        let bytes = crate::types::bytea_from_text(text)?;
                        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                        v.value = datafusion::sql::sqlparser::ast::Value::HexStringLiteral(hex);
                    }
                }
                continue;
            }
            let is_default = matches!(e, AstExpr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"));
            if !is_default {
                continue;
            }
            let sql = match &c.default {
                Some(text) => format!("CAST('{}' AS {})", text.replace('\'', "''"), cast_name(&c.ty)),
                None => "NULL".to_string(),
            };
            *e = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| Error::Internal(format!("default expression: {e}")))?;
        }
    }
    Ok(())
}

/// A type name DataFusion's CAST accepts for a column type.
fn cast_name(ty: &crate::types::SqlType) -> String {
    use crate::types::SqlType as T;
    match ty {
        T::Numeric(p, s) => format!("DECIMAL({p},{s})"),
        T::Varchar(_) | T::Char(_) | T::Uuid | T::Jsonb | T::Text => "TEXT".into(),
        T::TimestampTz => "TIMESTAMPTZ".into(),
        T::Timestamp => "TIMESTAMP".into(),
        T::Double => "DOUBLE".into(),
        other => other.pg_name(),
    }
}

fn set_plan(set: &Set) -> Result<Plan> {
    Ok(match set {
        Set::SingleAssignment { variable, values, .. } => {
            let name = variable.0.iter().filter_map(|p| p.as_ident()).map(ident).collect::<Vec<_>>().join(".");
            let value = values
                .iter()
                .map(|v| match v {
                    AstExpr::Value(v) => match &v.value {
                        datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    AstExpr::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let value = if value.eq_ignore_ascii_case("default") { None } else { Some(value) };
            Plan::Set { name, value }
        }
        Set::SetTimeZone { value, .. } => {
            let v = match value {
                AstExpr::Value(v) => match &v.value {
                    datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            Plan::Set { name: "timezone".into(), value: Some(v) }
        }
        Set::SetNames { charset_name, .. } => {
            Plan::Set { name: "client_encoding".into(), value: Some(charset_name.value.clone()) }
        }
        Set::SetTransaction { .. }
        | Set::SetSessionParam(_)
        | Set::SetRole { .. }
        | Set::SetSessionAuthorization(_) => Plan::Set { name: "_ignored".into(), value: Some(String::new()) },
        other => return Err(Error::Unsupported(format!("{other}"))),
    })
}

fn default_setting(name: &str) -> String {
    DEFAULT_SETTINGS.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).unwrap_or_default()
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

/// The statement's first words, for an "unsupported" message.
fn first_words(stmt: &Statement) -> String {
    stmt.to_string().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
