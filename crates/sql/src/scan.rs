//! [`ShardedTable`]: a table as DataFusion sees it (a `TableProvider`), and [`ShardScanExec`],
//! the execution plan that reads it: one partition per shard, each streaming record batches
//! page by page from the shard's leader, never the whole table at once.
//!
//! Primary-key predicates are pushed down (`Inexact`: DataFusion still applies them, so the
//! pushdown only has to be a superset): equality on every key column (or IN lists) becomes
//! point reads on the owning shards only; equality on a key prefix plus a range (<, <=, >, >=,
//! BETWEEN) on the next key column becomes a key range scanned in every shard. Projection and
//! LIMIT are pushed down too. `EXPLAIN` shows the shards and key ranges read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session as DfSession;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::scalar::ScalarValue;
use raftable_common::{Result, ShardId, ShardRead};

use crate::catalog::TableDef;
use crate::cluster::Cluster;
use crate::encoding::{bucket_of, bucket_prefix, bucket_range, encode_key_part, prefix_end, RowDecoder};
use crate::error::to_datafusion;
use crate::types::coerce_scalar;

/// Rows per read request of a scan.
const PAGE: u64 = 1024;

/// What a scan reads, in primary-key terms.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyScan {
    /// Exactly these encoded primary keys.
    Points(Vec<Vec<u8>>),
    /// Encoded primary keys in `[start, end)` (empty end: unbounded), in every bucket.
    Range { start: Vec<u8>, end: Vec<u8> },
}

/// A table for DataFusion. `only` restricts it to some shards (used when a write statement
/// re-runs for the shards whose conditional writes lost a race).
#[derive(Debug)]
pub struct ShardedTable {
    pub def: Arc<TableDef>,
    schema: SchemaRef,
    cluster: ClusterRef,
    only: Option<BTreeSet<ShardId>>,
    /// Column defaults, for INSERTs that leave columns out.
    defaults: std::collections::HashMap<String, Expr>,
}

/// `Arc<dyn Cluster>` with a Debug impl, as DataFusion's traits require.
#[derive(Clone)]
pub struct ClusterRef(pub Arc<dyn Cluster>);

impl fmt::Debug for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cluster")
    }
}

impl ShardedTable {
    pub fn new(def: Arc<TableDef>, cluster: ClusterRef, only: Option<BTreeSet<ShardId>>) -> Self {
        let schema = def.visible_schema();
        let defaults = (0..def.columns.len())
            .filter(|i| def.columns[*i].default.is_some())
            .filter_map(|i| def.default_value(i).ok().map(|v| (def.columns[i].name.clone(), Expr::Literal(v, None))))
            .collect();
        Self { def, schema, cluster, only, defaults }
    }
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
        let pk: Vec<&str> = self.def.pk.iter().map(|i| self.def.columns[*i].name.as_str()).collect();
        Ok(filters
            .iter()
            .map(|f| {
                if references_key(f, &pk) {
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
        let visible = self.def.visible();
        let columns: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| visible[*i]).collect(),
            None => visible,
        };
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let keys = key_scan(&self.def, filters);
        Ok(Arc::new(ShardScanExec::new(
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

fn key_column(e: &Expr, pk: &[&str]) -> Option<usize> {
    match e {
        Expr::Column(c) => pk.iter().position(|k| *k == c.name),
        _ => None,
    }
}

/// The value of a literal, or of a cast of one (a parameter bound into a plan optimized before
/// its value was known keeps the cast the optimizer put around it).
fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
        Expr::Cast(cast) => literal(&cast.expr)?.cast_to(cast.field.data_type()).ok().filter(|v| !v.is_null()),
        _ => None,
    }
}

/// Bounds gathered for one key column.
#[derive(Default, Clone)]
struct ColumnBounds {
    eq: Option<Vec<Vec<u8>>>,
    lower: Option<(Vec<u8>, bool)>,
    upper: Option<(Vec<u8>, bool)>,
}

/// Derives what to read from the pushed filters (a superset of the matching rows).
pub fn key_scan(def: &TableDef, filters: &[Expr]) -> KeyScan {
    let pk: Vec<&str> = def.pk.iter().map(|i| def.columns[*i].name.as_str()).collect();
    let mut bounds = vec![ColumnBounds::default(); pk.len()];
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    let encode = |col: usize, v: &ScalarValue| -> Option<Vec<u8>> {
        let c = &def.columns[def.pk[col]];
        let coerced = coerce_scalar(&c.ty, &c.name, v).ok()?;
        // A literal that changed when coerced (trimmed text, a canonical uuid) cannot be a bound:
        // the filter compares the original.
        if crate::point::changed_text(v, &coerced) {
            return None;
        }
        let array = coerced.to_array().ok()?;
        let mut out = Vec::new();
        encode_key_part(&mut out, array.as_ref(), 0).ok()?;
        Some(out)
    };
    for c in conjuncts {
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, value, op) =
                    match (key_column(left, &pk), literal(right), key_column(right, &pk), literal(left)) {
                        (Some(col), Some(v), _, _) => (col, v, *op),
                        (_, _, Some(col), Some(v)) => (col, v, op.swap().unwrap_or(*op)),
                        _ => continue,
                    };
                if !exact_for_key(&value, &def.columns[def.pk[col]].ty.arrow()) {
                    continue;
                }
                let Some(enc) = encode(col, &value) else { continue };
                let b = &mut bounds[col];
                match op {
                    Operator::Eq => b.eq = Some(vec![enc]),
                    Operator::Gt => b.lower = Some((enc, false)),
                    Operator::GtEq => b.lower = Some((enc, true)),
                    Operator::Lt => b.upper = Some((enc, false)),
                    Operator::LtEq => b.upper = Some((enc, true)),
                    _ => {}
                }
            }
            Expr::InList(list) if !list.negated => {
                let Some(col) = key_column(&list.expr, &pk) else { continue };
                let ty = def.columns[def.pk[col]].ty.arrow();
                let values: Option<Vec<Vec<u8>>> = list
                    .list
                    .iter()
                    .map(|e| literal(e).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v)))
                    .collect();
                if let Some(mut values) = values {
                    values.sort();
                    values.dedup();
                    bounds[col].eq = Some(values);
                }
            }
            Expr::Between(b) if !b.negated => {
                let Some(col) = key_column(&b.expr, &pk) else { continue };
                let ty = def.columns[def.pk[col]].ty.arrow();
                let lo = literal(&b.low).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v));
                let hi = literal(&b.high).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    bounds[col].lower = Some((lo, true));
                    bounds[col].upper = Some((hi, true));
                }
            }
            _ => {}
        }
    }
    // Points: every key column has equality values (bounded product).
    if bounds.iter().all(|b| b.eq.is_some()) {
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for b in &bounds {
            let values = b.eq.as_ref().expect("checked");
            if keys.len() * values.len() > 10_000 {
                keys.clear();
                break;
            }
            keys = keys.iter().flat_map(|k| values.iter().map(move |v| [k.as_slice(), v].concat())).collect();
        }
        if !keys.is_empty() {
            return KeyScan::Points(keys);
        }
    }
    // A range: the single-valued equality prefix, then the next column's bounds.
    let mut prefix = Vec::new();
    let mut next = None;
    for b in &bounds {
        match &b.eq {
            Some(values) if values.len() == 1 => prefix.extend_from_slice(&values[0]),
            _ => {
                next = Some(b);
                break;
            }
        }
    }
    let (mut start, mut end) = (prefix.clone(), prefix_end(&prefix));
    if let Some(b) = next {
        if let Some((lo, inclusive)) = &b.lower {
            let lo = [prefix.as_slice(), lo].concat();
            start = if *inclusive { lo } else { prefix_end(&lo) };
        }
        if let Some((hi, inclusive)) = &b.upper {
            let hi = [prefix.as_slice(), hi].concat();
            end = if *inclusive { prefix_end(&hi) } else { hi };
        }
    }
    KeyScan::Range { start, end }
}

/// Only literals whose type compares exactly with the key column's values may bound a scan
/// (an integer key compared with 2.5 is left to DataFusion).
fn exact_for_key(v: &ScalarValue, key: &datafusion::arrow::datatypes::DataType) -> bool {
    let lit = v.data_type();
    if lit == *key {
        return true;
    }
    lit.is_integer() && key.is_integer()
        || lit.is_string()
        || matches!(key, datafusion::arrow::datatypes::DataType::Utf8)
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// One partition of a scan: a shard and what to read from it.
#[derive(Debug, Clone)]
enum Part {
    Get { shard: ShardId, keys: Vec<Vec<u8>> },
    Scan { shard: ShardId, start: Vec<u8>, end: Vec<u8> },
}

/// Reads a table's shards, one partition each.
#[derive(Debug)]
pub struct ShardScanExec {
    def: Arc<TableDef>,
    cluster: ClusterRef,
    columns: Vec<usize>,
    schema: SchemaRef,
    parts: Vec<Part>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl ShardScanExec {
    fn new(
        def: Arc<TableDef>,
        cluster: ClusterRef,
        columns: Vec<usize>,
        schema: SchemaRef,
        keys: KeyScan,
        limit: Option<usize>,
        only: &Option<BTreeSet<ShardId>>,
    ) -> Self {
        let mut parts = Vec::new();
        match keys {
            KeyScan::Points(pks) => {
                let mut by_bucket: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
                for pk in pks {
                    let bucket = bucket_of(&pk, def.buckets);
                    let mut key = bucket_prefix(def.id, bucket);
                    key.extend_from_slice(&pk);
                    by_bucket.entry(bucket).or_default().push(key);
                }
                for (bucket, keys) in by_bucket {
                    parts.push(Part::Get { shard: def.shards[bucket as usize], keys });
                }
            }
            KeyScan::Range { start, end } => {
                for bucket in 0..def.buckets {
                    let prefix = bucket_prefix(def.id, bucket);
                    let start = [prefix.as_slice(), &start].concat();
                    let end = if end.is_empty() {
                        bucket_range(def.id, bucket, def.buckets).end
                    } else {
                        [prefix.as_slice(), &end].concat()
                    };
                    if start < end {
                        parts.push(Part::Scan { shard: def.shards[bucket as usize], start, end });
                    }
                }
            }
        }
        if let Some(only) = only {
            parts.retain(|p| only.contains(&p.shard()));
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(parts.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { def, cluster, columns, schema, parts, limit, properties }
    }
}

impl Part {
    fn shard(&self) -> ShardId {
        match self {
            Part::Get { shard, .. } | Part::Scan { shard, .. } => *shard,
        }
    }
}

impl DisplayAs for ShardScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ShardScanExec: table={}", self.def.name)?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for p in &self.parts {
            match p {
                Part::Get { shard, keys } => write!(f, ", shard {shard}: get {} key(s)", keys.len())?,
                Part::Scan { shard, start, end } => write!(f, ", shard {shard}: scan [{}, {})", hex(start), hex(end))?,
            }
        }
        Ok(())
    }
}

impl ExecutionPlan for ShardScanExec {
    fn name(&self) -> &str {
        "ShardScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let decoder = RowDecoder::new(&self.def, &self.columns, self.schema.clone());
        let state = PartState {
            cluster: self.cluster.0.clone(),
            part: self.parts.get(partition).cloned(),
            remaining: self.limit.map(|l| l as u64).unwrap_or(u64::MAX),
            decoder,
            done: false,
        };
        let stream = futures::stream::try_unfold(state, |mut s| async move {
            match s.next_batch().await.map_err(to_datafusion)? {
                Some(batch) => Ok(Some((batch, s))),
                None => Ok(None),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream)))
    }
}

/// The progress of one partition's stream.
struct PartState {
    cluster: Arc<dyn Cluster>,
    part: Option<Part>,
    remaining: u64,
    decoder: RowDecoder,
    done: bool,
}

impl PartState {
    async fn next_batch(&mut self) -> Result<Option<datafusion::arrow::record_batch::RecordBatch>> {
        if self.done || self.remaining == 0 {
            return Ok(None);
        }
        let Some(part) = self.part.as_mut() else { return Ok(None) };
        let rows = match part {
            Part::Get { shard, keys } => {
                self.done = true;
                let read = if keys.len() == 1 {
                    ShardRead::Get { key: keys[0].clone() }
                } else {
                    ShardRead::MultiGet { keys: std::mem::take(keys) }
                };
                self.cluster.read(*shard, read).await?
            }
            Part::Scan { shard, start, end } => {
                let limit = PAGE.min(self.remaining);
                let read =
                    ShardRead::Scan { start: start.clone(), end: end.clone(), limit: Some(limit), reverse: false };
                let rows = self.cluster.read(*shard, read).await?;
                match rows.last() {
                    Some(last) if rows.len() as u64 == limit => {
                        // Resume right after the last key read.
                        *start = [last.key.as_slice(), &[0u8]].concat();
                    }
                    _ => self.done = true,
                }
                rows
            }
        };
        for row in rows.iter().take(self.remaining.min(usize::MAX as u64) as usize) {
            self.decoder.push(&row.value)?;
        }
        self.remaining = self.remaining.saturating_sub(rows.len() as u64);
        if self.decoder.rows() == 0 {
            return Ok(if self.done { None } else { Some(self.decoder.finish()?) });
        }
        self.decoder.finish().map(Some)
    }
}
