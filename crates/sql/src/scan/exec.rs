//! [`ShardScanExec`]: the execution plan of a [`ShardedTable`](super::ShardedTable) scan. One
//! partition per shard read, each streaming record batches page by page from the shard's
//! leader, never the whole table at once: through the statement's transaction ([`Snapshot`]) when
//! the task context carries one, else the newest rows (`Cluster::read`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use raftable_common::{Result, Row, ShardId, ShardRead};
use raftable_txn::settle::until_unlocked;

use super::keys::KeyScan;
use super::Snapshot;
use crate::cluster::{Cluster, ClusterRef};
use crate::encoding::{bucket_of, bucket_prefix, bucket_range, prefix_end, row_key, RowDecoder};
use crate::error::to_datafusion;
use crate::table::{IndexDef, TableDef};

/// Rows per read request of a scan.
const PAGE: u64 = 1024;

/// One partition of a scan: a shard and what to read from it.
#[derive(Debug, Clone)]
enum Part {
    Get {
        shard: ShardId,
        keys: Vec<Vec<u8>>,
    },
    Scan {
        shard: ShardId,
        start: Vec<u8>,
        end: Vec<u8>,
    },
    /// Entries of an index shard in `[start, end)`, then the rows they point to.
    Index {
        shard: ShardId,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Reads a table's shards, one partition each.
#[derive(Debug)]
pub struct ShardScanExec {
    def: Arc<TableDef>,
    cluster: ClusterRef,
    columns: Vec<usize>,
    schema: SchemaRef,
    parts: Vec<Part>,
    /// The index read, when the parts are index entries.
    index: Option<String>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl ShardScanExec {
    /// A scan of what `keys` leaves of the table, or with `index` of what its scan leaves of
    /// the index's entries.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        index: Option<(IndexDef, KeyScan)>,
        def: Arc<TableDef>,
        cluster: ClusterRef,
        columns: Vec<usize>,
        schema: SchemaRef,
        keys: KeyScan,
        limit: Option<usize>,
        only: &Option<BTreeSet<ShardId>>,
    ) -> Self {
        let mut parts = Vec::new();
        let index_name = index.as_ref().map(|(i, _)| i.name.clone());
        match (index, keys) {
            (Some((index, scan)), _) => parts = index_parts(&index, scan),
            (None, KeyScan::Points(pks)) => {
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
            (None, KeyScan::Range { start, end }) => {
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
        Self { def, cluster, columns, schema, parts, index: index_name, limit, properties }
    }
}

/// The parts reading an index: per point, its one bucket's entries with those values; for a
/// range, every bucket's entries in it.
fn index_parts(index: &IndexDef, scan: KeyScan) -> Vec<Part> {
    let part = |bucket: u16, start: &[u8], end: &[u8]| {
        let prefix = bucket_prefix(index.id, bucket);
        let start = [prefix.as_slice(), start].concat();
        let end = match end.is_empty() {
            true => bucket_range(index.id, bucket, index.buckets).end,
            false => [prefix.as_slice(), end].concat(),
        };
        Part::Index { shard: index.shards[bucket as usize], start, end }
    };
    match scan {
        KeyScan::Points(points) => {
            points.iter().map(|p| part(bucket_of(p, index.buckets), p, &prefix_end(p))).collect()
        }
        KeyScan::Range { start, end } => (0..index.buckets)
            .map(|b| part(b, &start, &end))
            .filter(|p| matches!(p, Part::Index { start, end, .. } if start < end))
            .collect(),
    }
}

impl Part {
    fn shard(&self) -> ShardId {
        match self {
            Part::Get { shard, .. } | Part::Scan { shard, .. } | Part::Index { shard, .. } => *shard,
        }
    }
}

impl DisplayAs for ShardScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ShardScanExec: table={}", self.def.name)?;
        if let Some(index) = &self.index {
            write!(f, ", index={index}")?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for p in &self.parts {
            match p {
                Part::Get { shard, keys } => write!(f, ", shard {shard}: get {} key(s)", keys.len())?,
                Part::Scan { shard, start, end } => write!(f, ", shard {shard}: scan [{}, {})", hex(start), hex(end))?,
                Part::Index { shard, start, end } => {
                    write!(f, ", shard {shard}: index scan [{}, {})", hex(start), hex(end))?
                }
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

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let decoder = RowDecoder::new(&self.def, &self.columns, self.schema.clone());
        let state = PartState {
            decoder_def: self.def.clone(),
            cluster: self.cluster.0.clone(),
            snapshot: context.session_config().get_extension::<Snapshot>(),
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
    decoder_def: Arc<TableDef>,
    cluster: Arc<dyn Cluster>,
    snapshot: Option<Arc<Snapshot>>,
    part: Option<Part>,
    remaining: u64,
    decoder: RowDecoder,
    done: bool,
}

/// One read of a scan: through the statement's transaction if it has one, else of the newest
/// rows.
async fn read_page(
    cluster: &dyn Cluster,
    snapshot: Option<&Snapshot>,
    shard: ShardId,
    read: ShardRead,
) -> Result<Vec<Row>> {
    match snapshot {
        Some(snapshot) => snapshot.read(shard, read).await,
        None => until_unlocked(cluster, shard, || cluster.read(shard, read.clone())).await,
    }
}

impl PartState {
    /// The next page of `[start, end)` on `shard` (and `start` moved past it), and whether it
    /// was the last.
    async fn page(&self, shard: ShardId, start: &mut Vec<u8>, end: &[u8]) -> Result<(Vec<Row>, bool)> {
        let limit = PAGE.min(self.remaining);
        let read = ShardRead::Scan { start: start.clone(), end: end.to_vec(), limit: Some(limit), reverse: false };
        let rows = read_page(self.cluster.as_ref(), self.snapshot.as_deref(), shard, read).await?;
        match rows.last() {
            Some(last) if rows.len() as u64 == limit => {
                // Resume right after the last key read.
                *start = [last.key.as_slice(), &[0u8]].concat();
                Ok((rows, false))
            }
            _ => Ok((rows, true)),
        }
    }

    /// The rows index entries point to (their values are primary keys), read from each table
    /// shard at once, in the entries' order.
    async fn fetch(&self, entries: Vec<Row>) -> Result<Vec<Row>> {
        let def = &self.decoder_def;
        let mut by_shard: BTreeMap<ShardId, Vec<Vec<u8>>> = BTreeMap::new();
        for e in &entries {
            let key = row_key(def, &e.value);
            by_shard.entry(def.shards[bucket_of(&e.value, def.buckets) as usize]).or_default().push(key);
        }
        let reads = by_shard.into_iter().map(|(shard, keys)| {
            read_page(self.cluster.as_ref(), self.snapshot.as_deref(), shard, ShardRead::MultiGet { keys })
        });
        let mut found = std::collections::HashMap::new();
        for rows in futures::future::try_join_all(reads).await? {
            found.extend(rows.into_iter().map(|r| (r.key.clone(), r)));
        }
        Ok(entries.iter().filter_map(|e| found.remove(&row_key(def, &e.value))).collect())
    }

    async fn next_batch(&mut self) -> Result<Option<datafusion::arrow::record_batch::RecordBatch>> {
        if self.done || self.remaining == 0 {
            return Ok(None);
        }
        let Some(mut part) = self.part.take() else { return Ok(None) };
        let rows = match &mut part {
            Part::Get { shard, keys } => {
                self.done = true;
                let read = if keys.len() == 1 {
                    ShardRead::Get { key: keys[0].clone() }
                } else {
                    ShardRead::MultiGet { keys: std::mem::take(keys) }
                };
                read_page(self.cluster.as_ref(), self.snapshot.as_deref(), *shard, read).await?
            }
            Part::Scan { shard, start, end } => {
                let (rows, done) = self.page(*shard, start, end).await?;
                self.done = done;
                rows
            }
            Part::Index { shard, start, end } => {
                let (entries, done) = self.page(*shard, start, end).await?;
                self.done = done;
                self.fetch(entries).await?
            }
        };
        self.part = Some(part);
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
