//! The DataFusion side of a session: [`session_context`] builds the `SessionContext` a session
//! plans and runs queries in (the `raftable` catalog, `pg_catalog`, PostgreSQL's settings), and
//! [`Tables`] plans the parts of a statement raftable assembles itself (the internal read of an
//! UPDATE / DELETE, RETURNING lists, ON CONFLICT assignments) with DataFusion's own SQL-to-plan
//! translation (`SqlToRel`), over tables resolved before planning, as
//! `SessionState::statement_to_plan` does. No SQL text is formatted and parsed again.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, ResolvedTableReference, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{AggregateUDF, Expr, ExprSchemable, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion::sql::sqlparser::ast::{Expr as AstExpr, Statement};
use raftable_common::{Error, Result};

use super::correlated::{self, Correlated};
use super::functions::{self, FunctionState};
use super::semantics::PostgresExprs;
use super::{arithmetic, datetime, folding, jsonb, physical};
use crate::catalog::{RaftableCatalog, CATALOG, PUBLIC};
use crate::cluster::ClusterRef;
use crate::error::from_datafusion;

/// A session's DataFusion context: the `raftable` catalog (user tables, `raftable.nodes` /
/// `raftable.shards`), `pg_catalog` with raftable's amendments, `version()`, the sequence
/// functions (`super::functions`), and PostgreSQL's reading of numeric literals.
pub(crate) fn session_context(state: FunctionState) -> SessionContext {
    let catalog = state.catalog.clone();
    let cluster = state.cluster.clone();
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, PUBLIC)
        .with_create_default_catalog_and_schema(false)
        // DataFusion's information_schema, amended: `catalog::information_schema`.
        .with_information_schema(false)
        .with_target_partitions(4);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    // Numeric literals are NUMERIC, as in PostgreSQL (not floating point).
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    // The session time zone is UTC: `timestamptz` (casts, `now()`) keeps a zone, as a stored
    // timestamptz column does, and prints with `+00` (without one, DataFusion reads it as a
    // timestamp without time zone).
    config.options_mut().execution.time_zone = Some(crate::types::UTC.to_string());
    // Correlated subqueries DataFusion cannot decorrelate run per outer row (`correlated`).
    // `sum(bigint)` is numeric and ranks are bigint before DataFusion's type coercion types
    // what reads them.
    let mut analyzer_rules = datafusion::optimizer::Analyzer::new().rules;
    analyzer_rules.insert(0, Arc::new(arithmetic::NumericSum));
    analyzer_rules.insert(1, Arc::new(arithmetic::BigintRanks));
    // No LIMIT pushed below a window function, no projection computed for rows a filter
    // drops (`physical`).
    let mut physical_rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    // Without DataFusion's top-k aggregation: its hash table of float keys panics on a NaN
    // group (`GROUP BY d ORDER BY d LIMIT 3` over a join: "entered unreachable code").
    physical_rules.retain(|r| r.name() != physical::TOPK_AGGREGATION);
    let ahead = physical_rules.iter().position(|r| r.name() == physical::GUARD_AHEAD_OF).unwrap_or(0);
    physical_rules.insert(ahead, Arc::new(physical::WindowGuard));
    let checks =
        physical_rules.len() - usize::from(physical_rules.last().is_some_and(|r| r.name() == "SanityCheckPlan"));
    physical_rules.insert(checks, Arc::new(physical::FilterFirst));
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_analyzer_rules(analyzer_rules)
        .with_physical_optimizer_rules(physical_rules)
        .with_query_planner(Arc::new(correlated::Planner));
    // jsonb's operators are planned ahead of DataFusion's planners (which take `@>` for array
    // containment only).
    builder.expr_planners().get_or_insert_with(Vec::new).insert(0, Arc::new(jsonb::JsonbOperators));
    let planning = builder.build();
    let mut ctx = SessionContext::new_with_state(planning);
    let nextval = Arc::new(functions::nextval(state.clone()));
    ctx.register_catalog(CATALOG, Arc::new(RaftableCatalog::new(catalog.clone(), ClusterRef(cluster), nextval)));
    // pg_catalog (pg_class, pg_attribute, ...) and the functions psql's \d and drivers'
    // metadata queries call, built from the catalogs registered above.
    if let Err(e) = datafusion_pg_catalog::setup_pg_catalog(
        &ctx,
        CATALOG,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    ) {
        tracing::warn!(error = %e, "pg_catalog unavailable in this session");
    } else if let Err(e) = crate::catalog::pg_catalog::amend(&ctx, catalog.clone(), state.settings.clone()) {
        tracing::warn!(error = %e, "pg_catalog shows no primary keys in this session");
    }
    if let Err(e) = crate::catalog::information_schema::register(&ctx, catalog) {
        tracing::warn!(error = %e, "information_schema unavailable in this session");
    }
    ctx.register_udf(constant_udf("version", ScalarValue::Utf8(Some(VERSION.into()))));
    // No node is a standby replaying another's log: pgAdmin asks at connect (PostgreSQL's
    // `pg_is_wal_replay_paused()` fails outside recovery; pgAdmin calls it only in recovery).
    for name in ["pg_is_in_recovery", "pg_is_wal_replay_paused"] {
        ctx.register_udf(constant_udf(name, ScalarValue::Boolean(Some(false))));
    }
    for udf in functions::udfs(state).into_iter().chain(arithmetic::udfs()).chain(datetime::udfs()).chain(jsonb::udfs())
    {
        ctx.register_udf(udf);
    }
    if let Some(udf) = datetime::transaction_timestamp(&ctx) {
        ctx.register_udf(udf);
    }
    ctx.add_analyzer_rule(Arc::new(PostgresExprs));
    ctx.add_analyzer_rule(Arc::new(folding::Folding));
    ctx.add_analyzer_rule(Arc::new(Correlated));
    ctx.add_optimizer_rule(Arc::new(Correlated));
    if let Err(e) = ctx.register_function_rewrite(Arc::new(PostgresExprs)) {
        tracing::warn!(error = %e, "expressions outside plans keep DataFusion's semantics in this session");
    }
    ctx
}

/// What `version()` answers, which drivers and ORMs call on connect (SQLAlchemy:
/// `pg_catalog.version()`).
const VERSION: &str = "PostgreSQL 15.0 (raftable) on x86_64-pc-linux-gnu";

/// A function of no arguments that answers `value`.
fn constant_udf(name: &str, value: ScalarValue) -> ScalarUDF {
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    create_udf(
        name,
        vec![],
        value.data_type(),
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// The tables one statement names, resolved ahead of planning (resolution is asynchronous,
/// DataFusion's planning is not), some of them replaced by the planner's own sources: what
/// DataFusion's `SqlToRel` plans against.
pub(crate) struct Tables<'a> {
    state: &'a SessionState,
    tables: HashMap<ResolvedTableReference, Arc<dyn TableSource>>,
}

impl<'a> Tables<'a> {
    /// Resolves every table `stmt` names through the session's catalogs, except those in
    /// `overrides`, which take the given source.
    pub(crate) async fn resolve(
        state: &'a SessionState,
        stmt: &Statement,
        overrides: Vec<(TableReference, Arc<dyn TableSource>)>,
    ) -> Result<Tables<'a>> {
        let mut tables = HashMap::new();
        for (name, source) in overrides {
            tables.insert(resolve(state, name), source);
        }
        let references =
            state.resolve_table_references(&DfStatement::Statement(Box::new(stmt.clone()))).map_err(from_datafusion)?;
        for reference in references {
            let resolved = resolve(state, reference);
            if tables.contains_key(&resolved) {
                continue;
            }
            if let Ok(schema) = state.schema_for_ref(resolved.clone()) {
                if let Some(table) = schema.table(&resolved.table).await.map_err(from_datafusion)? {
                    tables.insert(resolved, provider_as_source(table));
                }
            }
        }
        Ok(Tables { state, tables })
    }

    /// No tables: for expressions over a schema given with them (CHECK constraints).
    pub(crate) fn none(state: &'a SessionState) -> Tables<'a> {
        Tables { state, tables: HashMap::new() }
    }

    /// DataFusion's SQL planner over these tables.
    pub(crate) fn planner(&self) -> SqlToRel<'_, Self> {
        SqlToRel::new_with_options(self, ParserOptions::from(&self.state.config_options().sql_parser))
    }

    /// `expr` as a DataFusion expression over `schema`.
    pub(crate) fn expr(&self, expr: &AstExpr, schema: &DFSchema) -> Result<Expr> {
        self.planner().sql_to_expr(expr.clone(), schema, &mut PlannerContext::new()).map_err(from_datafusion)
    }
}

/// `name` qualified with the session's default catalog and schema.
fn resolve(state: &SessionState, name: TableReference) -> ResolvedTableReference {
    let defaults = &state.config_options().catalog;
    name.resolve(&defaults.default_catalog, &defaults.default_schema)
}

impl ContextProvider for Tables<'_> {
    fn get_table_source(&self, name: TableReference) -> datafusion::error::Result<Arc<dyn TableSource>> {
        let resolved = resolve(self.state, name);
        self.tables
            .get(&resolved)
            .cloned()
            .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("table '{resolved}' not found")))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.state.relation_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state.higher_order_functions().keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// The Arrow schema of `exprs` evaluated over `input`, named `names`.
pub(crate) fn output_schema(exprs: &[Expr], names: &[String], input: &DFSchema) -> Result<SchemaRef> {
    let mut fields = Vec::with_capacity(exprs.len());
    for (e, name) in exprs.iter().zip(names) {
        let (_, field) = e.to_field(input).map_err(from_datafusion)?;
        fields.push(field.as_ref().clone().with_name(name));
    }
    if fields.len() != exprs.len() {
        return Err(Error::Internal("an expression without a name".into()));
    }
    Ok(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)))
}
