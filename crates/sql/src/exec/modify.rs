//! UPDATE and DELETE: running the read planned by `plan::modify` (every column of the matching
//! rows, then the new values) through the statement's transaction, and buffering the changed
//! rows in it, a batch at a time where that is safe ([`run`]). The transaction's commit checks that nothing read changed meanwhile (else the
//! whole statement fails or, in autocommit, re-runs), so concurrent `SET n = n + 1` never
//! loses an update. An UPDATE that changes primary keys deletes the old keys and inserts the
//! new ones, refusing a new key that is taken (23505). Secondary index entries change with
//! their rows (`super::indexes`); foreign keys are checked, and their `ON DELETE` actions run
//! as further UPDATEs and DELETEs in the same transaction (`super::foreign_keys`).

use std::collections::HashSet;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::scalar::ScalarValue;
use futures::future::BoxFuture;
use raftable_common::{Error, Result};

use super::checks::Checks;
use super::foreign_keys::ForeignKeys;
use super::indexes::{read_existing, Indexes};
use super::write::{encode_rows, no_actions, visible_batch, Shards};
use super::{next_rows, scans_of, write_source};
use crate::plan::modify::ModifyPlan;
use crate::plan::params::bind;
use crate::table::TableDef;

/// Runs an UPDATE or DELETE in `shards.txn`: reads the matching rows and buffers their new
/// versions. Returns the rows changed and, with `returning`, the rows for RETURNING (visible
/// columns: the new rows of an UPDATE, the deleted ones of a DELETE).
///
/// The rows are changed a batch at a time as the read returns them when it scans the table
/// once and keeps every key: its writes then touch only rows the scan has passed, and the
/// statement holds one batch at a time (its transaction spills to disk). Otherwise they are
/// read whole first: a key change deletes every old key before it checks the new ones, a
/// change of indexed values could put entries ahead of a read through the index, and a
/// second scan of the table (a subquery) could meet the statement's own writes, and a foreign
/// key of the table referencing itself could act on rows the read has yet to return.
pub(crate) async fn run(
    shards: &Shards<'_>,
    modify: &ModifyPlan,
    indexes: &Indexes,
    keys: &ForeignKeys,
    params: &[ScalarValue],
    returning: bool,
) -> Result<(usize, Vec<RecordBatch>)> {
    let def = &modify.def;
    let ctx = shards.ctx;
    let checks = Checks::compile(ctx, def)?;
    let bound = bind(&modify.read, params)?;
    let moves_keys = modify.sets.as_ref().is_some_and(|sets| sets.iter().any(|c| def.pk.contains(c)));
    // New index entries could land ahead of a read going through that index.
    let moves_entries =
        modify.sets.as_ref().is_some_and(|sets| sets.iter().any(|c| def.indexes.iter().any(|i| i.columns.contains(c))));
    let whole = moves_keys || moves_entries || scans_of(&bound, &def.name) != 1 || keys.references_itself(def);
    let mut source = write_source(ctx, shards.txn, bound, whole).await?;
    let (mut count, mut out) = (0, Vec::new());
    while let Some(batch) = next_rows(&mut source).await? {
        let rows = match &modify.sets {
            Some(sets) => update_rows(shards, &checks, indexes, keys, def, &batch, sets).await?,
            None => delete_rows(shards, indexes, keys, def, &batch).await?,
        };
        count += batch.num_rows();
        if returning {
            out.push(rows);
        }
    }
    Ok((count, out))
}

/// Applies UPDATE to matched rows: `sets` maps extra column `ncols + j` of `batch` to table
/// column `sets[j]`. Returns the new rows (visible columns).
async fn update_rows(
    shards: &Shards<'_>,
    checks: &Checks,
    indexes: &Indexes,
    keys: &ForeignKeys,
    def: &TableDef,
    batch: &RecordBatch,
    sets: &[usize],
) -> Result<RecordBatch> {
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
    checks.verify(def, &new)?;
    let before = encode_rows(def, &old)?;
    let after = encode_rows(def, &new)?;
    // Rows whose key changes: their old keys go first, so keys shifting among the statement's
    // own rows (`SET k = k + 1`) do not collide; a new key taken by another row is 23505.
    let mut moved = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if a.key != b.key {
            shards.txn.write(b.shard, b.key.clone(), None);
            moved.push(a);
        }
    }
    if !moved.is_empty() {
        let mut new_keys = HashSet::with_capacity(moved.len());
        let taken = read_existing(shards.txn, moved.iter().map(|a| (a.shard, a.key.clone()))).await?;
        if !taken.is_empty() || !moved.iter().all(|a| new_keys.insert(a.key.as_slice())) {
            return Err(Error::UniqueViolation { constraint: def.pkey_name() });
        }
    }
    indexes.replace(shards.txn, def, &old, &new).await?;
    for a in after {
        shards.txn.write(a.shard, a.key, Some(a.value));
    }
    keys.check_references(shards.txn, def, &new, Some(&old)).await?;
    no_actions(keys.on_referenced_change(shards.ctx, shards.cluster, shards.txn, def, &old, Some(&new)).await?)?;
    visible_batch(def, &new)
}

/// Applies DELETE to matched rows, then the `ON DELETE` actions of the foreign keys that
/// referenced them. Returns the deleted rows.
async fn delete_rows(
    shards: &Shards<'_>,
    indexes: &Indexes,
    keys: &ForeignKeys,
    def: &TableDef,
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let old: Vec<ArrayRef> = batch.columns()[..def.columns.len()].to_vec();
    indexes.delete(shards.txn, def, &old)?;
    for r in encode_rows(def, &old)? {
        shards.txn.write(r.shard, r.key, None);
    }
    for action in keys.on_referenced_change(shards.ctx, shards.cluster, shards.txn, def, &old, None).await? {
        act(shards, action).await?;
    }
    visible_batch(def, &old)
}

/// Runs an `ON DELETE CASCADE / SET NULL / SET DEFAULT` on the rows it selects, with their
/// table's current indexes and foreign keys (whose own actions follow in turn).
fn act<'a>(shards: &'a Shards<'a>, action: ModifyPlan) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let def = &action.def;
        shards.txn.uses(def.id, def.version);
        let indexes = Indexes::of(def, def)?;
        let keys = ForeignKeys::of(shards.catalog, shards.txn, def).await?;
        run(shards, &action, &indexes, &keys, &[], false).await.map(|_| ())
    })
}
