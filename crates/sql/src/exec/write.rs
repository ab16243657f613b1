//! Writing a statement's rows to their shards: encoding, grouping by shard, one atomic
//! [`ShardWrite`] per shard, all shards concurrently, and what the per-shard outcomes mean for
//! the statement ([`total`], [`worst`], [`partial`]). [`insert`] is INSERT's write:
//! `PutIfAbsent` (23505 on a duplicate), `InsertOrIgnore` for `ON CONFLICT DO NOTHING`, `Put`
//! for an upsert that overwrites every column from `excluded`, and for other `ON CONFLICT DO
//! UPDATE` a read of the existing rows and conditional writes. UPDATE and DELETE build on the
//! same pieces (`super::modify`).
//!
//! A statement whose rows fall in one shard is atomic; one spanning shards applies per shard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use raftable_common::{Error, Expect, NodeId, Result, ShardId, ShardRead, ShardWrite, WriteOp};

use crate::cluster::Cluster;
use crate::encoding::{bucket_of, decode_all, encode_pk, encode_value, row_key};
use crate::error::from_datafusion;
use crate::table::TableDef;

/// What writing rows needs from the node: its shards and its row-id source.
#[derive(Clone, Copy)]
pub(crate) struct Shards<'a> {
    pub cluster: &'a Arc<dyn Cluster>,
    pub rowids: &'a RowIds,
}

/// Cluster-unique row ids for tables without a primary key.
pub struct RowIds {
    node: NodeId,
    last: AtomicU64,
}

impl RowIds {
    pub(crate) fn new(node: NodeId) -> Self {
        Self { node, last: AtomicU64::new(0) }
    }

    /// The next row id: microseconds since the epoch (strictly increasing on this node)
    /// shifted left, with the node id in the low 8 bits.
    pub(crate) fn next(&self) -> i64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return ((next << 8) | (self.node & 0xff)) as i64,
                Err(actual) => last = actual,
            }
        }
    }
}

/// How long a write keeps re-running for shards whose conditional writes lost races.
const CONTENTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Paces the re-runs of a write whose conditional writes lost races to other writers: a
/// jittered pause growing with each lost race up to about one replicated commit (so a writer
/// that keeps losing is not pushed further back than the winners), for up to
/// `CONTENTION_BUDGET`. A budget in time rather than attempts: how often a writer loses
/// depends on how far it is from the shard's leader (a client on the leader's node reads
/// without a network hop), and the distant one must keep its chance.
pub(crate) struct Contention {
    attempt: u32,
    deadline: std::time::Instant,
}

impl Contention {
    pub(crate) fn new() -> Self {
        Self { attempt: 0, deadline: std::time::Instant::now() + CONTENTION_BUDGET }
    }

    /// After a lost race: waits before the next attempt; `false` once the budget is spent.
    pub(crate) async fn pause(&mut self) -> bool {
        if std::time::Instant::now() >= self.deadline {
            return false;
        }
        let pause = std::time::Duration::from_micros(200 << self.attempt.min(5));
        self.attempt += 1;
        tokio::time::sleep(pause.mul_f64(jitter())).await;
        true
    }
}

/// A factor in [0.5, 1.5), from the clock's nanoseconds (enough to de-synchronise writers).
fn jitter() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    0.5 + f64::from(nanos % 1000) / 1000.0
}

/// What an INSERT does with a row whose key exists, ready to run: `plan::insert::Conflict`
/// with its expressions bound and compiled against the batch `[existing row, proposed row]`.
pub(crate) enum OnConflict {
    Fail,
    Ignore,
    Overwrite,
    Update { sets: Vec<(usize, Arc<dyn PhysicalExpr>)>, filter: Option<Arc<dyn PhysicalExpr>> },
}

/// The table's full column arrays for a batch of rows given in the visible columns: coerced to
/// the column types, NOT NULL checked, row ids generated for a hidden key.
pub(crate) fn full_columns(shards: &Shards<'_>, def: &TableDef, visible: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    let rows = visible.first().map(|a| a.len()).unwrap_or(0);
    let mut it = visible.iter();
    let mut out = Vec::with_capacity(def.columns.len());
    for col in &def.columns {
        let array = if col.hidden {
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| shards.rowids.next()))) as ArrayRef
        } else {
            let given = it.next().ok_or_else(|| Error::Internal("fewer columns than the table has".into()))?;
            col.ty.coerce(&col.name, given)?
        };
        if !col.nullable && array.null_count() > 0 {
            return Err(Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                col.name, def.name
            )));
        }
        out.push(array);
    }
    Ok(out)
}

/// One encoded row.
pub(crate) struct Encoded {
    pub shard: ShardId,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub(crate) fn encode_rows(def: &TableDef, columns: &[ArrayRef]) -> Result<Vec<Encoded>> {
    let rows = columns.first().map(|a| a.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let pk = encode_pk(def, columns, row)?;
        let shard = def.shards[bucket_of(&pk, def.buckets) as usize];
        let key = row_key(def, &pk);
        let mut value = Vec::with_capacity(64);
        encode_value(&mut value, columns, row)?;
        out.push(Encoded { shard, key, value });
    }
    Ok(out)
}

/// Sends `ops` grouped by shard, every shard concurrently. Returns per shard the outcome:
/// the number of changed rows, or the error.
pub(crate) async fn write_by_shard(shards: &Shards<'_>, ops: Vec<(ShardId, WriteOp)>) -> Vec<(ShardId, Result<usize>)> {
    let mut by_shard: BTreeMap<ShardId, Vec<WriteOp>> = BTreeMap::new();
    for (shard, op) in ops {
        by_shard.entry(shard).or_default().push(op);
    }
    // One write per shard: a shard's part of a statement is atomic (the router refuses writes
    // above its size limit rather than splitting them).
    let tasks = by_shard.into_iter().map(|(shard, ops)| async move {
        let result = shards.cluster.write(shard, ShardWrite::new(ops)).await.map(|o| o.changed_count());
        (shard, result)
    });
    futures::future::join_all(tasks).await
}

/// The sum of changed rows, or the error that matters most: an unknown outcome first (the
/// client must not be told the statement failed), then the first error (a duplicate key named as
/// PostgreSQL does), marked as partial if other shards applied.
pub(crate) fn total(def: &TableDef, results: Vec<(ShardId, Result<usize>)>) -> Result<usize> {
    let applied = results.iter().any(|(_, r)| r.is_ok());
    if let Some(e) = worst(&results) {
        let e = match e {
            Error::DuplicateKey { .. } => Error::UniqueViolation { constraint: format!("{}_pkey", def.name) },
            e => e,
        };
        return Err(partial(e, applied));
    }
    Ok(results.iter().map(|(_, r)| *r.as_ref().unwrap_or(&0)).sum())
}

/// The error to report among per-shard results: an unknown outcome (anything neither
/// deterministic nor retryable) before any definite one.
pub(crate) fn worst(results: &[(ShardId, Result<usize>)]) -> Option<Error> {
    let errors = results.iter().filter_map(|(_, r)| r.as_ref().err());
    let mut first = None;
    for e in errors {
        if !e.is_deterministic() && !e.is_retryable() {
            return Some(e.clone());
        }
        first.get_or_insert_with(|| e.clone());
    }
    first
}

/// A retryable error ("certainly did not apply, retry") is a lie once part of the statement
/// applied: such a statement's outcome is reported as unknown (the connection closes), so that
/// no driver retries it automatically.
pub(crate) fn partial(e: Error, applied: bool) -> Error {
    if applied && e.is_retryable() {
        Error::Unknown(format!("the statement applied partially before failing: {e}"))
    } else {
        e
    }
}

/// Inserts one batch of rows (visible columns) and returns how many were inserted or updated,
/// with the rows as written (visible columns) for RETURNING.
pub(crate) async fn insert(
    shards: &Shards<'_>,
    def: &TableDef,
    visible: &[ArrayRef],
    conflict: &OnConflict,
) -> Result<(usize, Option<RecordBatch>)> {
    let columns = full_columns(shards, def, visible)?;
    let rows = encode_rows(def, &columns)?;
    if rows.len() > 1 && matches!(conflict, OnConflict::Overwrite | OnConflict::Update { .. }) {
        let mut keys = std::collections::HashSet::with_capacity(rows.len());
        if !rows.iter().all(|r| keys.insert(r.key.as_slice())) {
            return Err(Error::CardinalityViolation(
                "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
            ));
        }
    }
    if let OnConflict::Update { sets, filter } = conflict {
        return upsert_update(shards, def, &columns, rows, sets, filter.as_ref()).await;
    }
    let undo: Vec<(ShardId, WriteOp)> = match conflict {
        OnConflict::Fail => rows
            .iter()
            .map(|r| {
                (r.shard, WriteOp::CompareAndDelete { key: r.key.clone(), expect: Expect::Value(r.value.clone()) })
            })
            .collect(),
        _ => Vec::new(),
    };
    let ops = rows
        .into_iter()
        .map(|r| {
            let op = match conflict {
                OnConflict::Fail => WriteOp::PutIfAbsent { key: r.key, value: r.value },
                OnConflict::Ignore => WriteOp::InsertOrIgnore { key: r.key, value: r.value },
                _ => WriteOp::Put { key: r.key, value: r.value },
            };
            (r.shard, op)
        })
        .collect();
    let results = write_by_shard(shards, ops).await;
    let failed_cleanly = |r: &Result<usize>| matches!(r, Err(e) if e.is_deterministic() || e.is_retryable());
    if !undo.is_empty() && results.iter().any(|(_, r)| failed_cleanly(r)) && results.iter().any(|(_, r)| r.is_ok()) {
        // Some shards inserted, another certainly did not: take back what the statement wrote
        // (rows still exactly as inserted), so a failed INSERT leaves no rows behind. Until
        // distributed transactions, a concurrent reader may have seen them in between.
        let ok: BTreeSet<ShardId> = results.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        let undo: Vec<_> = undo.into_iter().filter(|(s, _)| ok.contains(s)).collect();
        take_back(shards, undo).await?;
    }
    let n = total(def, results)?;
    let written = visible_batch(def, &columns)?;
    // With DO NOTHING, RETURNING shows only inserted rows; which ones is not reported per row
    // yet, so RETURNING with DO NOTHING is refused at planning time.
    Ok((n, Some(written)))
}

/// Applies compare-and-delete undo operations; a shard batch that fails because one row was
/// changed meanwhile (that row is someone else's now) is redone row by row, skipping such rows.
pub(crate) async fn take_back(shards: &Shards<'_>, undo: Vec<(ShardId, WriteOp)>) -> Result<()> {
    let by_shard: BTreeMap<ShardId, Vec<WriteOp>> = undo.into_iter().fold(BTreeMap::new(), |mut m, (s, op)| {
        m.entry(s).or_insert_with(Vec::new).push(op);
        m
    });
    for (shard, ops) in by_shard {
        match shards.cluster.write(shard, ShardWrite::new(ops.clone())).await {
            Ok(_) => {}
            Err(Error::ConditionFailed { .. }) => {
                for op in ops {
                    match shards.cluster.write(shard, ShardWrite::new(vec![op])).await {
                        Ok(_) | Err(Error::ConditionFailed { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The visible columns of full column arrays, as a batch.
pub(crate) fn visible_batch(def: &TableDef, columns: &[ArrayRef]) -> Result<RecordBatch> {
    let visible = def.visible();
    let arrays: Vec<ArrayRef> = visible.iter().map(|i| columns[*i].clone()).collect();
    RecordBatch::try_new(def.visible_schema(), arrays).map_err(Error::internal)
}

/// `ON CONFLICT DO UPDATE` with expressions: reads the existing rows, inserts the absent ones
/// (`Expect::Absent`) and rewrites the present ones (`Expect::Value`), re-running a shard's rows
/// if a concurrent writer got in between.
async fn upsert_update(
    shards: &Shards<'_>,
    def: &TableDef,
    columns: &[ArrayRef],
    rows: Vec<Encoded>,
    sets: &[(usize, Arc<dyn PhysicalExpr>)],
    filter: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<(usize, Option<RecordBatch>)> {
    let mut pending: BTreeMap<ShardId, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        pending.entry(r.shard).or_default().push(i);
    }
    let mut count = 0;
    let mut written: Vec<RecordBatch> = Vec::new();
    let mut contention = Contention::new();
    loop {
        if pending.is_empty() {
            let batches = written;
            let merged =
                datafusion::arrow::compute::concat_batches(&def.visible_schema(), &batches).map_err(Error::internal)?;
            return Ok((count, Some(merged)));
        }
        let mut retry = BTreeMap::new();
        for (shard, idx) in std::mem::take(&mut pending) {
            let keys: Vec<Vec<u8>> = idx.iter().map(|i| rows[*i].key.clone()).collect();
            let existing = shards.cluster.read(shard, ShardRead::MultiGet { keys }).await?;
            let found: BTreeMap<&[u8], &[u8]> =
                existing.iter().map(|r| (r.key.as_slice(), r.value.as_slice())).collect();
            let mut ops = Vec::new();
            let mut updates: Vec<(usize, &[u8])> = Vec::new();
            let mut inserted: Vec<usize> = Vec::new();
            for &i in &idx {
                match found.get(rows[i].key.as_slice()) {
                    None => {
                        ops.push(WriteOp::CompareAndPut {
                            key: rows[i].key.clone(),
                            expect: Expect::Absent,
                            value: rows[i].value.clone(),
                        });
                        inserted.push(i);
                    }
                    Some(old) => updates.push((i, old)),
                }
            }
            let mut new_rows = None;
            if !updates.is_empty() {
                let old = decode_all(def, &updates.iter().map(|(_, v)| *v).collect::<Vec<_>>())?;
                let take: Vec<u32> = updates.iter().map(|(i, _)| *i as u32).collect();
                let excluded = take_rows(columns, &take)?;
                let (keep, new_columns) = evaluate_update(def, &old, &excluded, sets, filter)?;
                let encoded = encode_rows(def, &new_columns)?;
                for (j, (i, old_value)) in updates.iter().enumerate() {
                    if keep[j] {
                        ops.push(WriteOp::CompareAndPut {
                            key: rows[*i].key.clone(),
                            expect: Expect::Value(old_value.to_vec()),
                            value: encoded[j].value.clone(),
                        });
                    }
                }
                new_rows = Some((keep, new_columns));
            }
            if ops.is_empty() {
                continue;
            }
            match shards.cluster.write(shard, ShardWrite::new(ops)).await {
                Ok(outcome) => {
                    count += outcome.changed_count();
                    let ins = take_rows(columns, &inserted.iter().map(|i| *i as u32).collect::<Vec<_>>())?;
                    written.push(visible_batch(def, &ins)?);
                    if let Some((keep, cols)) = new_rows {
                        let kept: Vec<u32> = (0..keep.len() as u32).filter(|j| keep[*j as usize]).collect();
                        written.push(visible_batch(def, &take_rows(&cols, &kept)?)?);
                    }
                }
                Err(Error::ConditionFailed { .. }) => {
                    retry.insert(shard, idx);
                }
                Err(e) => return Err(e),
            }
        }
        pending = retry;
        if !pending.is_empty() && !contention.pause().await {
            return Err(Error::Retry("too much contention on ON CONFLICT DO UPDATE; nothing more was written".into()));
        }
    }
}

fn take_rows(columns: &[ArrayRef], rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let idx = datafusion::arrow::array::UInt32Array::from(rows.to_vec());
    columns.iter().map(|c| datafusion::arrow::compute::take(c.as_ref(), &idx, None).map_err(Error::internal)).collect()
}

/// Evaluates `DO UPDATE SET` over existing rows (`old`, every column) and the proposed rows
/// (`excluded`, full columns): which rows the WHERE keeps, and the new full rows.
fn evaluate_update(
    def: &TableDef,
    old: &RecordBatch,
    excluded: &[ArrayRef],
    sets: &[(usize, Arc<dyn PhysicalExpr>)],
    filter: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<(Vec<bool>, Vec<ArrayRef>)> {
    let mut fields = old.schema().fields().to_vec();
    fields.extend(excluded.iter().enumerate().map(|(i, a)| {
        Arc::new(datafusion::arrow::datatypes::Field::new(format!("excluded.{i}"), a.data_type().clone(), true))
    }));
    let mut arrays: Vec<ArrayRef> = old.columns().to_vec();
    arrays.extend(excluded.iter().cloned());
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(Error::internal)?;
    let keep: Vec<bool> = match filter {
        None => vec![true; batch.num_rows()],
        Some(filter) => {
            let values = evaluate(filter, &batch)?;
            let values = values
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| Error::DatatypeMismatch("argument of WHERE must be type boolean".into()))?;
            values.iter().map(|v| v.unwrap_or(false)).collect()
        }
    };
    let mut out = Vec::with_capacity(sets.len());
    for (_, e) in sets {
        out.push(evaluate(e, &batch)?);
    }
    let mut new_columns: Vec<ArrayRef> = old.columns().to_vec();
    for (j, (col, _)) in sets.iter().enumerate() {
        let c = &def.columns[*col];
        new_columns[*col] = c.ty.coerce(&c.name, &out[j])?;
        if !c.nullable && new_columns[*col].null_count() > 0 {
            return Err(Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name, def.name
            )));
        }
    }
    Ok((keep, new_columns))
}

/// `expr` evaluated over every row of `batch`.
pub(crate) fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    expr.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(from_datafusion)
}
