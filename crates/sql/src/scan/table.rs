//! [`ShardedTable`]: a table as DataFusion sees it. Predicates on the primary key or a public
//! index's columns are accepted for pushdown (`Inexact`: DataFusion still applies them, so the
//! pushdown only has to read a superset, see [`super::key_scan`]); `scan` returns a
//! [`ShardScanExec`] over the shards the key predicates leave, or, when they leave every row,
//! over the entries the best index's predicates leave (`super::keys::index_scan`), then the
//! rows they point to.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session as DfSession;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{cast, lit, BinaryExpr, Expr, Operator, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use raftable_common::ShardId;

use super::exec::ShardScanExec;
use super::keys::{index_scan, is_everything, key_column, key_scan};
use crate::cluster::ClusterRef;
use crate::table::{Computed, IndexDef, IndexState, TableDef};

/// A table for DataFusion: its visible columns over every shard ([`ShardedTable::new`]), or
/// for the internal read of an UPDATE / DELETE every column, the hidden row id included, over
/// some shards only ([`ShardedTable::internal`]).
pub struct ShardedTable {
    pub def: Arc<TableDef>,
    /// The table columns the provider's schema shows, in order.
    columns: Vec<usize>,
    schema: SchemaRef,
    cluster: ClusterRef,
    /// Read only these shards (None: all).
    only: Option<BTreeSet<ShardId>>,
    /// Column defaults, for INSERTs that leave columns out.
    defaults: std::collections::HashMap<String, Expr>,
    /// The table's current definition (a plan outlives the definition it was made with): its
    /// public indexes are the ones a scan may read.
    current: Current,
}

impl std::fmt::Debug for ShardedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedTable").field("table", &self.def.name).field("only", &self.only).finish_non_exhaustive()
    }
}

/// The current definition of a table, as a catalog whose lease holds has it (None: not known
/// now; then no index is read).
pub type Current = Arc<dyn Fn(&str) -> Option<Arc<TableDef>> + Send + Sync>;

impl ShardedTable {
    /// The table as queries see it: visible columns, every shard. `nextval` is the session's
    /// function, for defaults that call it.
    pub fn new(def: Arc<TableDef>, cluster: ClusterRef, nextval: &Arc<ScalarUDF>, current: Current) -> Self {
        let schema = def.visible_schema();
        let defaults = (0..def.columns.len())
            .filter_map(|i| {
                let column = &def.columns[i];
                let expr = match &column.computed {
                    Some(computed) => Some(computed_default(computed, column.ty.arrow(), nextval)),
                    None if column.default.is_some() => def.default_value(i).ok().map(|v| Expr::Literal(v, None)),
                    None => None,
                };
                expr.map(|e| (column.name.clone(), e))
            })
            .collect();
        Self { columns: def.visible(), def, schema, cluster, only: None, defaults, current }
    }

    /// The table as a write statement reads it: every column (the hidden row id too), only the
    /// shards in `only` if given.
    pub fn internal(
        def: Arc<TableDef>,
        cluster: ClusterRef,
        only: Option<BTreeSet<ShardId>>,
        current: Current,
    ) -> Self {
        let schema = Arc::new(def.full_schema());
        let columns = (0..def.columns.len()).collect();
        Self { columns, def, schema, cluster, only, defaults: Default::default(), current }
    }

    /// The definition whose public indexes a scan may read now: the current one if the plan's
    /// columns hold its indexes' (columns are only ever appended), else none.
    fn indexed(&self) -> Option<Arc<TableDef>> {
        let current = (self.current)(&self.def.name).filter(|c| c.id == self.def.id)?;
        let known = |i: &IndexDef| i.columns.iter().all(|c| *c < self.def.columns.len());
        current.indexes.iter().all(known).then_some(current)
    }
}

/// A computed default as the expression DataFusion evaluates for each inserted row, of the
/// column's type.
pub(crate) fn computed_default(computed: &Computed, ty: DataType, nextval: &Arc<ScalarUDF>) -> Expr {
    use datafusion::functions::expr_fn;
    let value = match computed {
        Computed::Nextval(sequence) => nextval.call(vec![lit(sequence.as_str())]),
        Computed::Now | Computed::CurrentTimestamp | Computed::LocalTimestamp => expr_fn::now(),
        Computed::CurrentDate => expr_fn::current_date(),
        Computed::RandomUuid => expr_fn::uuid(),
    };
    cast(value, ty)
}

#[async_trait]
impl TableProvider for ShardedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let names = |cols: &[usize]| cols.iter().map(|i| self.def.columns[*i].name.clone()).collect::<Vec<_>>();
        let mut keys = vec![names(&self.def.pk)];
        if let Some(current) = self.indexed() {
            let public = current.indexes.iter().filter(|i| i.state == IndexState::Public);
            keys.extend(public.map(|i| names(&i.columns)));
        }
        let keys: Vec<Vec<&str>> = keys.iter().map(|k| k.iter().map(String::as_str).collect()).collect();
        Ok(filters
            .iter()
            .map(|f| {
                if keys.iter().any(|k| references_key(f, k)) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.columns[*i]).collect(),
            None => self.columns.clone(),
        };
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let keys = key_scan(&self.def, filters);
        // Without a primary-key bound, the best index that bounds the read (not for the
        // re-run of a write over some shards: those are table shards).
        let index = match (is_everything(&keys) && self.only.is_none()).then(|| self.indexed()).flatten() {
            Some(current) => {
                let def = TableDef { indexes: current.indexes.clone(), ..(*self.def).clone() };
                index_scan(&def, filters).map(|(i, scan)| (i.clone(), scan))
            }
            None => None,
        };
        Ok(Arc::new(ShardScanExec::new(
            index,
            self.def.clone(),
            self.cluster.clone(),
            columns,
            schema,
            keys,
            limit,
            &self.only,
        )))
    }
}

fn references_key(e: &Expr, pk: &[&str]) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => references_key(left, pk) || references_key(right, pk),
            Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                key_column(left, pk).is_some() || key_column(right, pk).is_some()
            }
            _ => false,
        },
        Expr::InList(list) => !list.negated && key_column(&list.expr, pk).is_some(),
        Expr::Between(b) => !b.negated && key_column(&b.expr, pk).is_some(),
        _ => false,
    }
}
