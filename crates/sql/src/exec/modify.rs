//! UPDATE and DELETE: running the read planned by `plan::modify` (every column of the matching
//! rows, then the new values), and writing each row back with `CompareAndPut` /
//! `CompareAndDelete` expecting the row exactly as read. If another writer changed a row in
//! between, that shard's whole batch fails without applying, and [`run_until_applied`] runs the
//! read again for that shard only (re-reading and re-evaluating), so concurrent `SET n = n + 1`
//! never loses an update. An UPDATE that changes primary keys moves rows ([`move_rows`]).

use std::collections::BTreeSet;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Expect, Result, ShardId, WriteOp};

use super::collect_at_snapshot;
use super::write::{
    encode_rows, partial, take_back, visible_batch, worst, write_by_shard, Contention, Encoded, Shards,
};
use crate::encoding::{bucket_of, encode_pk};
use crate::plan::modify::{restrict, ModifyPlan};
use crate::plan::params::bind;
use crate::table::TableDef;

/// Runs an UPDATE or DELETE: reads the matching rows, writes them conditionally, and re-runs
/// the read for the shards where another writer got in first, until every shard applied or the
/// contention budget is spent. Returns the rows changed and the rows for RETURNING (visible
/// columns: the new rows of an UPDATE, the deleted ones of a DELETE).
pub(crate) async fn run_until_applied(
    ctx: &SessionContext,
    shards: &Shards<'_>,
    modify: &ModifyPlan,
    params: &[ScalarValue],
) -> Result<(usize, Vec<RecordBatch>)> {
    let def = &modify.def;
    let mut plan = modify.read.clone();
    let mut count = 0;
    let mut rows = Vec::new();
    let mut contention = Contention::new();
    loop {
        let bound = bind(&plan, params)?;
        // Each attempt reads at a new snapshot; rows changed since are caught by the
        // compare-and-put on the versions read, and their shards re-run.
        let batches = collect_at_snapshot(ctx, shards.cluster, bound).await?;
        // All matching rows of this attempt in one batch, so each shard gets exactly one
        // atomic write: a shard either applied all its rows or none (and is re-run).
        let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| std::sync::Arc::new(Schema::empty()));
        let batch = datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
        if batch.num_rows() == 0 {
            return Ok((count, rows));
        }
        let (results, new_rows) = match &modify.sets {
            Some(sets) => update_rows(shards, def, &batch, sets).await?,
            None => delete_rows(shards, def, &batch).await?,
        };
        let failed: BTreeSet<_> = results.iter().filter(|(_, r)| r.is_err()).map(|(s, _)| *s).collect();
        let applied = results.iter().any(|(_, r)| r.is_ok());
        let (n, retry, error) = settle(results);
        count += n;
        rows.push(filter_out_shards(def, &new_rows, &failed)?);
        if let Some(e) = error {
            return Err(partial(e, applied || count > 0));
        }
        if retry.is_empty() {
            return Ok((count, rows));
        }
        // Lost a race on these shards: read them again and re-evaluate, after a pause.
        if !contention.pause().await {
            return Err(partial(Error::Retry("too much write contention".into()), count > 0));
        }
        plan = restrict(&modify.read, retry)?;
    }
}

/// Applies UPDATE to matched rows: `sets` maps extra column `ncols + j` of `batch` to table
/// column `sets[j]`. Returns, per shard, the outcome, and the new rows (visible columns).
async fn update_rows(
    shards: &Shards<'_>,
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
        return Ok((write_by_shard(shards, ops).await, rows));
    }
    Ok((move_rows(shards, def, before, after).await?, rows))
}

/// An UPDATE that changes primary keys: first every new row is written (put-if-absent for a
/// new key, compare-and-put for an unchanged one), then the old keys are deleted
/// (compare-and-delete). If either step fails anywhere, what the statement wrote is taken back
/// and the error reported (a lost race as 40001), so such a statement is all or nothing unless
/// the node fails in the middle.
async fn move_rows(
    shards: &Shards<'_>,
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
    let written = write_by_shard(shards, writes).await;
    if let Some(e) = first_error(def, &written) {
        if !e.is_deterministic() && !e.is_retryable() {
            return Err(e); // an unknown outcome: undoing could lose the row
        }
        let ok: BTreeSet<ShardId> = written.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        take_back(shards, undo_writes.into_iter().filter(|(s, _)| ok.contains(s)).collect()).await?;
        return Err(e);
    }
    let deleted = write_by_shard(shards, deletes).await;
    if let Some(e) = first_error(def, &deleted) {
        if !e.is_deterministic() && !e.is_retryable() {
            return Err(e);
        }
        let ok: BTreeSet<ShardId> = deleted.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s).collect();
        for (_, r) in write_by_shard(shards, undo_deletes.into_iter().filter(|(s, _)| ok.contains(s)).collect()).await {
            r?;
        }
        take_back(shards, undo_writes).await?;
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
        Error::DuplicateKey { .. } => Error::UniqueViolation { constraint: format!("{}_pkey", def.name) },
        e => e,
    })
}

/// Applies DELETE to matched rows. Returns per shard the outcome, and the deleted rows.
async fn delete_rows(
    shards: &Shards<'_>,
    def: &TableDef,
    batch: &RecordBatch,
) -> Result<(Vec<(ShardId, Result<usize>)>, RecordBatch)> {
    let old: Vec<ArrayRef> = batch.columns()[..def.columns.len()].to_vec();
    let ops = encode_rows(def, &old)?
        .into_iter()
        .map(|r| (r.shard, WriteOp::CompareAndDelete { key: r.key, expect: Expect::Value(r.value) }))
        .collect();
    Ok((write_by_shard(shards, ops).await, visible_batch(def, &old)?))
}

/// Splits per-shard outcomes into rows changed, shards to re-run (lost a race) and the first
/// other error.
fn settle(results: Vec<(ShardId, Result<usize>)>) -> (usize, BTreeSet<ShardId>, Option<Error>) {
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
        let pk = encode_pk(def, &full, row)?;
        let shard = def.shards[bucket_of(&pk, def.buckets) as usize];
        keep.push(!failed.contains(&shard));
    }
    datafusion::arrow::compute::filter_record_batch(batch, &keep.into()).map_err(Error::internal)
}
