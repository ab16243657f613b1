//! INSERT, UPDATE and DELETE: turning a statement's rows into shard writes.
//!
//! DataFusion computes the rows (the INSERT's source, already cast to the table's columns, or
//! for UPDATE / DELETE the matching rows plus the new values, read through [`ShardedTable`] with
//! primary-key pushdown); this module encodes them, groups them by shard and sends one atomic
//! [`ShardWrite`] per shard, all shards concurrently:
//! - INSERT: `PutIfAbsent` (23505 on a duplicate), `InsertOrIgnore` for `ON CONFLICT DO
//!   NOTHING`, `Put` for an upsert that overwrites every column from `excluded`, and for other
//!   `ON CONFLICT DO UPDATE` a read of the existing rows and conditional writes;
//! - UPDATE / DELETE: `CompareAndPut` / `CompareAndDelete` expecting the row exactly as read. If
//!   another writer changed a row in between, that shard's whole batch fails without applying and
//!   the statement re-runs for that shard only (re-reading and re-evaluating), so concurrent
//!   `SET n = n + 1` never loses an update.
//!
//! A statement whose rows fall in one shard is atomic; one spanning shards applies per shard.
//!
//! [`ShardedTable`]: crate::scan::ShardedTable

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Expect, Result, ShardId, ShardRead, ShardWrite, WriteOp};

use crate::catalog::TableDef;
use crate::encoding::{bucket_of, decode_all, encode_pk, encode_value, row_key};
use crate::engine::Engine;
use crate::error::from_datafusion;

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

/// What an INSERT does with a row whose key exists.
#[derive(Debug, Clone)]
pub enum Conflict {
    /// Fail the statement with 23505.
    Fail,
    /// Skip the row.
    Ignore,
    /// Overwrite the whole row (every non-key column is set from `excluded`).
    Overwrite,
    /// `DO UPDATE SET ... [WHERE ...]`, evaluated per existing row: `sets` pairs a column index
    /// with an SQL expression over the existing row's columns and `excluded_<col>` columns.
    Update { sets: Vec<(usize, String)>, filter: Option<String> },
}

/// The table's full column arrays for a batch of rows given in the visible columns: coerced to
/// the column types, NOT NULL checked, row ids generated for a hidden key.
pub fn full_columns(engine: &Engine, def: &TableDef, visible: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    let rows = visible.first().map(|a| a.len()).unwrap_or(0);
    let mut it = visible.iter();
    let mut out = Vec::with_capacity(def.columns.len());
    for col in &def.columns {
        let array = if col.hidden {
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| engine.next_rowid()))) as ArrayRef
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
pub struct Encoded {
    pub shard: ShardId,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub fn encode_rows(def: &TableDef, columns: &[ArrayRef]) -> Result<Vec<Encoded>> {
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
pub async fn write_by_shard(engine: &Engine, ops: Vec<(ShardId, WriteOp)>) -> Vec<(ShardId, Result<usize>)> {
    let mut by_shard: BTreeMap<ShardId, Vec<WriteOp>> = BTreeMap::new();
    for (shard, op) in ops {
        by_shard.entry(shard).or_default().push(op);
    }
    // One write per shard: a shard's part of a statement is atomic (the router refuses writes
    // above its size limit rather than splitting them).
    let tasks = by_shard.into_iter().map(|(shard, ops)| async move {
        let result = engine.cluster.write(shard, ShardWrite::new(ops)).await.map(|o| o.changed_count());
        (shard, result)
    });
    futures::future::join_all(tasks).await
}

/// The sum of changed rows, or the error that matters most: an unknown outcome first (the
/// client must not be told the statement failed), then the first error (a duplicate key named as
/// PostgreSQL does), marked as partial if other shards applied.
pub fn total(def: &TableDef, results: Vec<(ShardId, Result<usize>)>) -> Result<usize> {
    let applied = results.iter().any(|(_, r)| r.is_ok());
    if let Some(e) = worst(&results) {
        let e = match e {
            Error::DuplicateKey { .. } => Error::DuplicateKey { key: format!("{}_pkey", def.name).into_bytes() },
            e => e,
        };
        return Err(partial(e, applied));
    }
    Ok(results.iter().map(|(_, r)| *r.as_ref().unwrap_or(&0)).sum())
}

/// The error to report among per-shard results: an unknown outcome (anything neither
/// deterministic nor retryable) before any definite one.
pub fn worst(results: &[(ShardId, Result<usize>)]) -> Option<Error> {
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
pub fn partial(e: Error, applied: bool) -> Error {
    if applied && e.is_retryable() {
        Error::Unknown(format!("the statement applied partially before failing: {e}"))
    } else {
        e
    }
}

/// Inserts one batch of rows (visible columns) and returns how many were inserted or updated,
/// with the rows as written (visible columns) for RETURNING.
pub async fn insert(
    engine: &Engine,
    def: &TableDef,
    visible: &[ArrayRef],
    conflict: &Conflict,
) -> Result<(usize, Option<RecordBatch>)> {
    let columns = full_columns(engine, def, visible)?;
    let rows = encode_rows(def, &columns)?;
    if rows.len() > 1 && matches!(conflict, Conflict::Overwrite | Conflict::Update { .. }) {
        let mut keys = std::collections::HashSet::with_capacity(rows.len());
        if !rows.iter().all(|r| keys.insert(r.key.as_slice())) {
            return Err(Error::CardinalityViolation(
                "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
            ));
        }
    }
    if let Conflict::Update { sets, filter } = conflict {
        return upsert_update(engine, def, &columns, rows, sets, filter.as_deref()).await;
    }
    let undo: Vec<(ShardId, WriteOp)> = match conflict {
        Conflict::Fail => rows
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
                Conflict::Fail => WriteOp::PutIfAbsent { key: r.key, value: r.value },
                Conflict::Ignore => WriteOp::InsertOrIgnore { key: r.key, value: r.value },
                _ => WriteOp::Put { key: r.key, value: r.value },
            };
            (r.shard, op)
        })
        .collect();
    let results = write_by_shard(engine, ops).await;
    let failed_cleanly = |r: &Result<usize>| matches!(r, Err(e) if e.is_deterministic() || e.is_retryable());
    if !undo.is_empty() && results.iter().any(|(_, r)| failed_cleanly(r)) && results.iter().any(|(_, r)| r.is_ok()) {
        // Some shards inserted, another certainly did not: take back what the statement wrote
        // (rows still exactly as inserted), so a failed INSERT leaves no rows behind. Until
        // distributed transactions, a concurrent reader may have seen them in between.
        let ok: BTreeSet<ShardId> = results.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        let undo: Vec<_> = undo.into_iter().filter(|(s, _)| ok.contains(s)).collect();
        take_back(engine, undo).await?;
    }
    let n = total(def, results)?;
    let written = visible_batch(def, &columns)?;
    // With DO NOTHING, RETURNING shows only inserted rows; which ones is not reported per row
    // yet, so RETURNING with DO NOTHING is refused at planning time.
    Ok((n, Some(written)))
}

/// Applies compare-and-delete undo operations; a shard batch that fails because one row was
/// changed meanwhile (that row is someone else's now) is redone row by row, skipping such rows.
async fn take_back(engine: &Engine, undo: Vec<(ShardId, WriteOp)>) -> Result<()> {
    let by_shard: BTreeMap<ShardId, Vec<WriteOp>> = undo.into_iter().fold(BTreeMap::new(), |mut m, (s, op)| {
        m.entry(s).or_insert_with(Vec::new).push(op);
        m
    });
    for (shard, ops) in by_shard {
        match engine.cluster.write(shard, ShardWrite::new(ops.clone())).await {
            Ok(_) => {}
            Err(Error::ConditionFailed { .. }) => {
                for op in ops {
                    match engine.cluster.write(shard, ShardWrite::new(vec![op])).await {
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
pub fn visible_batch(def: &TableDef, columns: &[ArrayRef]) -> Result<RecordBatch> {
    let visible = def.visible();
    let arrays: Vec<ArrayRef> = visible.iter().map(|i| columns[*i].clone()).collect();
    RecordBatch::try_new(def.visible_schema(), arrays).map_err(|e| Error::Internal(e.to_string()))
}

/// `ON CONFLICT DO UPDATE` with expressions: reads the existing rows, inserts the absent ones
/// (`Expect::Absent`) and rewrites the present ones (`Expect::Value`), re-running a shard's rows
/// if a concurrent writer got in between.
async fn upsert_update(
    engine: &Engine,
    def: &TableDef,
    columns: &[ArrayRef],
    rows: Vec<Encoded>,
    sets: &[(usize, String)],
    filter: Option<&str>,
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
            let merged = datafusion::arrow::compute::concat_batches(&def.visible_schema(), &batches)
                .map_err(|e| Error::Internal(e.to_string()))?;
            return Ok((count, Some(merged)));
        }
        let mut retry = BTreeMap::new();
        for (shard, idx) in std::mem::take(&mut pending) {
            let keys: Vec<Vec<u8>> = idx.iter().map(|i| rows[*i].key.clone()).collect();
            let existing = engine.cluster.read(shard, ShardRead::MultiGet { keys }).await?;
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
                let (keep, new_columns) = evaluate_update(def, &old, &excluded, sets, filter).await?;
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
            match engine.cluster.write(shard, ShardWrite::new(ops)).await {
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
    columns
        .iter()
        .map(|c| datafusion::arrow::compute::take(c.as_ref(), &idx, None).map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// Evaluates `DO UPDATE SET` over existing rows (`old`, every column) and the proposed rows
/// (`excluded`, full columns): which rows the WHERE keeps, and the new full rows.
async fn evaluate_update(
    def: &TableDef,
    old: &RecordBatch,
    excluded: &[ArrayRef],
    sets: &[(usize, String)],
    filter: Option<&str>,
) -> Result<(Vec<bool>, Vec<ArrayRef>)> {
    let mut fields: Vec<Field> = old.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = old.columns().to_vec();
    for (c, a) in def.columns.iter().zip(excluded) {
        fields.push(Field::new(format!("excluded_{}", c.name), a.data_type().clone(), true));
        arrays.push(a.clone());
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| Error::Internal(e.to_string()))?;
    let mut items: Vec<String> = sets.iter().map(|(_, e)| e.clone()).collect();
    items.push(filter.map(|f| format!("({f}) IS TRUE")).unwrap_or_else(|| "true".into()));
    let out = eval_select(&def.name, batch, &items.join(", ")).await?;
    let out = datafusion::arrow::compute::concat_batches(
        &out.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty())),
        &out,
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let keep_col = out.column(sets.len());
    let keep: Vec<bool> = keep_col
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BooleanArray>()
        .ok_or_else(|| Error::DatatypeMismatch("argument of WHERE must be type boolean".into()))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let mut new_columns: Vec<ArrayRef> = old.columns().to_vec();
    for (j, (col, _)) in sets.iter().enumerate() {
        let c = &def.columns[*col];
        new_columns[*col] = c.ty.coerce(&c.name, out.column(j))?;
        if !c.nullable && new_columns[*col].null_count() > 0 {
            return Err(Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name, def.name
            )));
        }
    }
    Ok((keep, new_columns))
}

/// Evaluates `SELECT <items> FROM <name>` over one in-memory batch (RETURNING, ON CONFLICT).
pub async fn eval_select(name: &str, batch: RecordBatch, items: &str) -> Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    ctx.register_batch(name, batch).map_err(from_datafusion)?;
    let df = ctx.sql(&format!("SELECT {items} FROM \"{name}\"")).await.map_err(from_datafusion)?;
    df.collect().await.map_err(from_datafusion)
}

/// Applies UPDATE to matched rows: `sets` maps extra column `ncols + j` of `batch` to table
/// column `sets[j]`. Returns, per shard, the outcome, and the new rows (visible columns).
pub async fn update_rows(
    engine: &Engine,
    def: &TableDef,
    batch: &RecordBatch,
    sets: &[usize],
) -> Result<(Vec<(ShardId, Result<usize>)>, RecordBatch)> {
    let ncols = def.columns.len();
    let old: Vec<ArrayRef> = batch.columns()[..ncols].to_vec();
    let mut new = old.clone();
    for (j, col) in sets.iter().enumerate() {
        let c = &def.columns[*col];
        new[*col] = c.ty.coerce(&c.name, batch.column(ncols + j))?;
        if !c.nullable && new[*col].null_count() > 0 {
            return Err(Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name, def.name
            )));
        }
    }
    let before = encode_rows(def, &old)?;
    let after = encode_rows(def, &new)?;
    let moved = before.iter().zip(&after).any(|(b, a)| a.key != b.key);
    let rows = visible_batch(def, &new)?;
    if !moved {
        let ops = before
            .into_iter()
            .zip(after)
            .map(|(b, a)| {
                (b.shard, WriteOp::CompareAndPut { key: b.key, expect: Expect::Value(b.value), value: a.value })
            })
            .collect();
        return Ok((write_by_shard(engine, ops).await, rows));
    }
    Ok((move_rows(engine, def, before, after).await?, rows))
}

/// An UPDATE that changes primary keys: first every new row is written (put-if-absent for a
/// new key, compare-and-put for an unchanged one), then the old keys are deleted
/// (compare-and-delete). If either step fails anywhere, what the statement wrote is taken back
/// and the error reported (a lost race as 40001), so such a statement is all or nothing unless
/// the node fails in the middle.
async fn move_rows(
    engine: &Engine,
    def: &TableDef,
    before: Vec<Encoded>,
    after: Vec<Encoded>,
) -> Result<Vec<(ShardId, Result<usize>)>> {
    let mut writes = Vec::new();
    let mut undo_writes = Vec::new();
    let mut deletes = Vec::new();
    let mut undo_deletes = Vec::new();
    for (b, a) in before.into_iter().zip(after) {
        if a.key == b.key {
            writes.push((
                b.shard,
                WriteOp::CompareAndPut {
                    key: b.key.clone(),
                    expect: Expect::Value(b.value.clone()),
                    value: a.value.clone(),
                },
            ));
            undo_writes
                .push((b.shard, WriteOp::CompareAndPut { key: b.key, expect: Expect::Value(a.value), value: b.value }));
        } else {
            writes.push((a.shard, WriteOp::PutIfAbsent { key: a.key.clone(), value: a.value.clone() }));
            undo_writes.push((a.shard, WriteOp::CompareAndDelete { key: a.key, expect: Expect::Value(a.value) }));
            deletes.push((
                b.shard,
                WriteOp::CompareAndDelete { key: b.key.clone(), expect: Expect::Value(b.value.clone()) },
            ));
            undo_deletes.push((b.shard, WriteOp::PutIfAbsent { key: b.key, value: b.value }));
        }
    }
    let count = writes.len();
    let written = write_by_shard(engine, writes).await;
    if let Some(e) = first_error(def, &written) {
        if !e.is_deterministic() && !e.is_retryable() {
            return Err(e); // an unknown outcome: undoing could lose the row
        }
        let ok: BTreeSet<ShardId> = written.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        take_back(engine, undo_writes.into_iter().filter(|(s, _)| ok.contains(s)).collect()).await?;
        return Err(e);
    }
    let deleted = write_by_shard(engine, deletes).await;
    if let Some(e) = first_error(def, &deleted) {
        if !e.is_deterministic() && !e.is_retryable() {
            return Err(e);
        }
        let ok: BTreeSet<ShardId> = deleted.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        for (_, r) in write_by_shard(engine, undo_deletes.into_iter().filter(|(s, _)| ok.contains(s)).collect()).await {
            r?;
        }
        take_back(engine, undo_writes).await?;
        return Err(e);
    }
    Ok(vec![(0, Ok(count))])
}

/// The first failure among per-shard results, a lost race reported as retryable.
fn first_error(def: &TableDef, results: &[(ShardId, Result<usize>)]) -> Option<Error> {
    worst(results).map(|e| match e {
        Error::ConditionFailed { .. } => {
            Error::Retry("a row was changed by another statement while its key was updated; nothing was changed".into())
        }
        Error::DuplicateKey { .. } => Error::DuplicateKey { key: format!("{}_pkey", def.name).into_bytes() },
        e => e,
    })
}

/// Applies DELETE to matched rows. Returns per shard the outcome, and the deleted rows.
pub async fn delete_rows(
    engine: &Engine,
    def: &TableDef,
    batch: &RecordBatch,
) -> Result<(Vec<(ShardId, Result<usize>)>, RecordBatch)> {
    let old: Vec<ArrayRef> = batch.columns()[..def.columns.len()].to_vec();
    let ops = encode_rows(def, &old)?
        .into_iter()
        .map(|r| (r.shard, WriteOp::CompareAndDelete { key: r.key, expect: Expect::Value(r.value) }))
        .collect();
    Ok((write_by_shard(engine, ops).await, visible_batch(def, &old)?))
}

/// Splits per-shard outcomes into rows changed, shards to re-run (lost a race) and the first
/// other error.
pub fn settle(results: Vec<(ShardId, Result<usize>)>) -> (usize, BTreeSet<ShardId>, Option<Error>) {
    let mut n = 0;
    let mut retry = BTreeSet::new();
    let mut others = Vec::new();
    for (shard, r) in results {
        match r {
            Ok(c) => n += c,
            Err(Error::ConditionFailed { .. }) => {
                retry.insert(shard);
            }
            Err(e) => others.push((shard, Err(e))),
        }
    }
    (n, retry, worst(&others))
}

/// A scalar as the text a DEFAULT is stored as (parsed back with the column's type).
pub fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Binary(Some(b)) => {
            format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            let secs = us.div_euclid(1_000_000);
            let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
            match chrono_like(secs, nanos) {
                Some(s) => s,
                None => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn chrono_like(secs: i64, nanos: u32) -> Option<String> {
    let t = datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(secs)?;
    Some(format!("{}.{:06}", t.format("%Y-%m-%d %H:%M:%S"), nanos / 1000))
}
