//! Writing a statement's rows: encoding, and buffering them in the statement's transaction
//! (`raftable_txn::Txn`), which commits them atomically across shards. [`insert`] is INSERT's
//! write: a duplicate key fails it with 23505, `ON CONFLICT DO NOTHING` skips it, an upsert
//! overwrites it or evaluates `DO UPDATE` over the existing row, each decided from the rows as
//! the transaction reads them (its commit fails if they changed meanwhile). One fast path: an
//! autocommit INSERT that read nothing and whose rows fall in one shard goes to that shard as
//! one write, its conditions checked when the shard applies it (1PC). UPDATE and DELETE build
//! on the same pieces (`super::modify`). A statement's rows come a batch at a time
//! ([`InsertRun`]): a batch is written to the transaction (which spills to disk past its memory
//! budget) before the next is read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, NodeId, Result, ShardId, ShardWrite, WriteOp};
use raftable_txn::settle::until_unlocked;
use raftable_txn::Txn;

use datafusion::prelude::SessionContext;

use super::checks::Checks;
use super::foreign_keys::ForeignKeys;
use super::indexes::{read_existing, Indexes};
use super::sequences::PerRow;
use super::take_rows;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::encoding::{bucket_of, decode_all, encode_pk, encode_value, row_key};
use crate::error::from_datafusion;
use crate::sequence::Sequences;
use crate::table::{ColumnState, TableDef};

/// Where a statement's writes go: its transaction, and for the one-shard fast path the
/// cluster; with the node's row-id source.
#[derive(Clone, Copy)]
pub(crate) struct Shards<'a> {
    /// The session's context: the reads a write makes besides its own (foreign keys).
    pub ctx: &'a SessionContext,
    pub cluster: &'a Arc<dyn Cluster>,
    /// For the schema check at commit (`super::commit`).
    pub catalog: &'a Catalog,
    pub rowids: &'a RowIds,
    /// The values of a per-row default of a column being added.
    pub sequences: &'a Sequences,
    pub txn: &'a Arc<Txn>,
    /// The statement is its own transaction (no BEGIN): it may take the one-shard fast path.
    pub autocommit: bool,
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

/// How long an autocommit statement keeps re-running after serialization failures.
const CONTENTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Paces the re-runs of an autocommit statement whose transaction lost a race to other
/// writers (40001): a jittered pause growing with each lost race up to about one replicated
/// commit (so a writer that keeps losing is not pushed further back than the winners), for up
/// to `CONTENTION_BUDGET`. A budget in time rather than attempts: how often a writer loses
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
    /// `arbiter`: the unique index whose values find the existing row (None: the key).
    Update {
        sets: Vec<(usize, Arc<dyn PhysicalExpr>)>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        arbiter: Option<String>,
    },
}

/// The table's full column arrays for a batch of rows given in the visible columns: coerced to
/// the column types, NOT NULL checked, row ids generated for a hidden key, defaults for a
/// column being added, NULL for a dropped one.
pub(crate) async fn full_columns(shards: &Shards<'_>, def: &TableDef, visible: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    let rows = visible.first().map(|a| a.len()).unwrap_or(0);
    let mut it = visible.iter();
    let mut out = Vec::with_capacity(def.columns.len());
    for (i, col) in def.columns.iter().enumerate() {
        let array = if col.hidden {
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| shards.rowids.next()))) as ArrayRef
        } else if col.state == ColumnState::Public {
            let given = it.next().ok_or_else(|| Error::Internal("fewer columns than the table has".into()))?;
            col.ty.coerce(&col.name, given)?
        } else if col.state == ColumnState::WriteOnly && col.filled_per_row() {
            let per_row =
                PerRow { cluster: shards.cluster.as_ref(), catalog: shards.catalog, sequences: shards.sequences };
            per_row.values(col, rows).await?
        } else {
            // Being added: the value rows stored before it read (its constant default, or a
            // stable computed one's value at the ALTER); dropped: NULL.
            let value = match col.state {
                ColumnState::WriteOnly => def.missing_value(i)?,
                _ => ScalarValue::try_from(&col.ty.arrow()).map_err(from_datafusion)?,
            };
            value.to_array_of_size(rows).map_err(from_datafusion)?
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

/// One INSERT statement's state across the batches of its source.
pub(crate) struct InsertRun<'a> {
    shards: Shards<'a>,
    checks: Checks,
    indexes: &'a Indexes,
    keys: &'a ForeignKeys,
    /// The statement is its own transaction and neither read nor wrote before its first
    /// batch: its rows may go as unread inserts, each shard refusing a taken key.
    fresh: bool,
    /// Rows went as unread inserts: [`InsertRun::finish`] commits them.
    deferred: bool,
    /// Keys upserted so far: `ON CONFLICT DO UPDATE` may affect a row once per statement.
    upserted: HashSet<Vec<u8>>,
}

impl<'a> InsertRun<'a> {
    /// Starts an INSERT in `shards.txn`, once its source read its first batch.
    /// `checks`: the table's CHECK constraints, verified on every row written; `indexes`:
    /// its secondary indexes, given an entry for every row written; `keys`: its foreign keys,
    /// checked on every row written, and those referencing it, on every row replaced.
    pub(crate) fn new(shards: Shards<'a>, checks: Checks, indexes: &'a Indexes, keys: &'a ForeignKeys) -> Self {
        let fresh = shards.autocommit && !shards.txn.has_read() && shards.txn.is_read_only();
        Self { shards, checks, indexes, keys, fresh, deferred: false, upserted: HashSet::new() }
    }

    /// Inserts one batch of rows (visible columns); `whole` says it is the statement's only
    /// one. Returns how many rows were inserted or updated, with the rows as written
    /// (visible columns) for RETURNING.
    pub(crate) async fn insert(
        &mut self,
        def: &TableDef,
        visible: &[ArrayRef],
        conflict: &OnConflict,
        whole: bool,
    ) -> Result<(usize, Option<RecordBatch>)> {
        let shards = self.shards;
        let shards = &shards;
        let columns = full_columns(shards, def, visible).await?;
        // The proposed rows, as PostgreSQL checks them before looking for a conflict.
        self.checks.verify(def, &columns)?;
        let rows = encode_rows(def, &columns)?;
        if matches!(conflict, OnConflict::Overwrite | OnConflict::Update { .. }) && !self.upsert_once(&rows, whole) {
            return Err(Error::CardinalityViolation(
                "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
            ));
        }
        if let OnConflict::Update { sets, filter, arbiter } = conflict {
            let (checks, indexes, keys) = (&self.checks, self.indexes, self.keys);
            let (filter, arbiter) = (filter.as_ref(), arbiter.as_deref());
            let update = Update { checks, indexes, keys, sets, filter, arbiter };
            return upsert_update(shards, &update, def, &columns, rows).await;
        }
        let one_shard = rows.windows(2).all(|w| w[0].shard == w[1].shard);
        // Without indexes or foreign keys a row is its key alone.
        let plain = self.indexes.is_empty() && self.keys.is_empty();
        if self.fresh && whole && one_shard && plain && !rows.is_empty() && matches!(conflict, OnConflict::Ignore) {
            let n = insert_directly(shards, rows).await?;
            return Ok((n, Some(visible_batch(def, &columns)?)));
        }
        if self.fresh && matches!(conflict, OnConflict::Fail) {
            let count = buffer_inserts(shards, def, rows)?;
            let all: Vec<usize> = (0..count).collect();
            self.indexes.put(shards.txn, def, &columns, &all, true)?;
            self.keys.check_references(shards.txn, def, &columns, None).await?;
            self.deferred = true;
            return Ok((count, Some(visible_batch(def, &columns)?)));
        }
        let existing = match conflict {
            OnConflict::Overwrite if plain => HashMap::new(),
            _ => read_existing(shards.txn, rows.iter().map(|r| (r.shard, r.key.clone()))).await?,
        };
        // The unique index entries the rows would add that another row holds.
        let taken = self.indexes.taken(shards.txn, def, &columns, 0..rows.len()).await?;
        let (mut seen, mut seen_unique) = (HashSet::with_capacity(rows.len()), HashSet::new());
        let (mut inserted, mut replaced) = (Vec::new(), Vec::new());
        for (i, r) in rows.into_iter().enumerate() {
            let present = existing.contains_key(&r.key) || !seen.insert(r.key.clone());
            match conflict {
                OnConflict::Fail if present => return Err(Error::UniqueViolation { constraint: def.pkey_name() }),
                OnConflict::Ignore if present => continue,
                OnConflict::Overwrite if present => {
                    if let Some(old) = existing.get(&r.key) {
                        replaced.push((i, old.as_slice()));
                    }
                }
                _ => match self.indexes.collision(def, &columns, i, &taken, &mut seen_unique)? {
                    Some(_) if matches!(conflict, OnConflict::Ignore) => continue,
                    Some(constraint) => return Err(Error::UniqueViolation { constraint }),
                    None => inserted.push(i),
                },
            }
            shards.txn.write(r.shard, r.key, Some(r.value));
        }
        let count = inserted.len() + replaced.len();
        self.indexes.put(shards.txn, def, &columns, &inserted, false)?;
        let take: Vec<u32> = inserted.iter().map(|i| *i as u32).collect();
        self.keys.check_references(shards.txn, def, &take_rows(&columns, &take)?, None).await?;
        if !replaced.is_empty() {
            let old = decode_all(def, &replaced.iter().map(|(_, v)| *v).collect::<Vec<_>>())?;
            let take: Vec<u32> = replaced.iter().map(|(i, _)| *i as u32).collect();
            let new = take_rows(&columns, &take)?;
            self.indexes.replace(shards.txn, def, old.columns(), &new).await?;
            self.keys.check_references(shards.txn, def, &new, Some(old.columns())).await?;
            no_actions(
                self.keys
                    .on_referenced_change(shards.ctx, shards.cluster, shards.txn, def, old.columns(), Some(&new))
                    .await?,
            )?;
        }
        // With DO NOTHING, RETURNING shows only inserted rows; which ones is not reported per
        // row yet, so RETURNING with DO NOTHING is refused at planning time.
        Ok((count, Some(visible_batch(def, &columns)?)))
    }

    /// Whether an upsert's `rows` affect no row twice: among themselves, and (`whole` false:
    /// more batches come or came) with the statement's other batches.
    fn upsert_once(&mut self, rows: &[Encoded], whole: bool) -> bool {
        if whole {
            let mut keys = HashSet::with_capacity(rows.len());
            return rows.len() < 2 || rows.iter().all(|r| keys.insert(r.key.as_slice()));
        }
        rows.iter().all(|r| self.upserted.insert(r.key.clone()))
    }

    /// Ends the statement: rows that went as unread inserts are committed here, so that a
    /// taken key is reported naming the table's key (one round fewer than reading the keys
    /// first; a duplicate among the statement's own rows is found by the commit too).
    pub(crate) async fn finish(self, def: &TableDef) -> Result<()> {
        if !self.deferred {
            return Ok(());
        }
        match super::commit(self.shards.txn, self.shards.catalog).await {
            Err(Error::DuplicateKey { key }) => match self.indexes.owning(&key) {
                Some(index) => Err(Error::UniqueViolation { constraint: index.to_string() }),
                None => Err(duplicate_key(def)),
            },
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }
}

/// An update of referenced rows only checks (`ON UPDATE` actions other than NO ACTION and
/// RESTRICT are refused when the key is made).
pub(crate) fn no_actions(actions: Vec<crate::plan::modify::ModifyPlan>) -> Result<()> {
    match actions.is_empty() {
        true => Ok(()),
        false => Err(Error::Internal("an ON UPDATE action of a foreign key".into())),
    }
}

fn duplicate_key(def: &TableDef) -> Error {
    Error::UniqueViolation { constraint: def.pkey_name() }
}

/// The one-shard fast path of an autocommit INSERT … ON CONFLICT DO NOTHING that read
/// nothing: one write, whose rows the shard inserts where no row is (it counts which). Sent
/// once: its outcome is unknown if the reply is lost. (Plain inserts and upserts commit as
/// one-phase transactions instead, which a retry cannot apply twice.)
async fn insert_directly(shards: &Shards<'_>, rows: Vec<Encoded>) -> Result<usize> {
    let shard = rows[0].shard;
    let ops = rows.into_iter().map(|r| WriteOp::InsertOrIgnore { key: r.key, value: r.value }).collect();
    let write = ShardWrite::new(ops);
    let cluster = shards.cluster;
    let outcome = until_unlocked(cluster.as_ref(), shard, || cluster.write(shard, write.clone())).await?;
    Ok(outcome.changed_count())
}

/// Rows of an autocommit INSERT that read nothing, buffered as inserts: each shard refuses a
/// key that holds a row as it applies the commit. Returns how many.
fn buffer_inserts(shards: &Shards<'_>, def: &TableDef, rows: Vec<Encoded>) -> Result<usize> {
    let mut seen = HashSet::with_capacity(rows.len());
    if !rows.iter().all(|r| seen.insert(r.key.as_slice())) {
        return Err(duplicate_key(def));
    }
    let count = rows.len();
    for r in rows {
        shards.txn.insert(r.shard, r.key, r.value);
    }
    Ok(count)
}

/// The visible columns of full column arrays, as a batch.
pub(crate) fn visible_batch(def: &TableDef, columns: &[ArrayRef]) -> Result<RecordBatch> {
    let visible = def.visible();
    let arrays: Vec<ArrayRef> = visible.iter().map(|i| columns[*i].clone()).collect();
    RecordBatch::try_new(def.visible_schema(), arrays).map_err(Error::internal)
}

/// Where a row is: its shard and key.
type Target = (ShardId, Vec<u8>);

/// `ON CONFLICT DO UPDATE` with expressions, ready to run over a batch.
struct Update<'b> {
    checks: &'b Checks,
    indexes: &'b Indexes,
    keys: &'b ForeignKeys,
    sets: &'b [(usize, Arc<dyn PhysicalExpr>)],
    filter: Option<&'b Arc<dyn PhysicalExpr>>,
    arbiter: Option<&'b str>,
}

/// `ON CONFLICT DO UPDATE` with expressions: reads the existing rows through the transaction,
/// inserts the absent ones and rewrites the present ones as `DO UPDATE` says.
async fn upsert_update(
    shards: &Shards<'_>,
    update: &Update<'_>,
    def: &TableDef,
    columns: &[ArrayRef],
    rows: Vec<Encoded>,
) -> Result<(usize, Option<RecordBatch>)> {
    let Update { checks, indexes, keys, sets, filter, arbiter } = *update;
    // The row each proposed row conflicts with: the one at its key, or the one its arbiter
    // index's entry points to.
    let targets: Vec<Option<Target>> = match arbiter {
        None => rows.iter().map(|r| Some((r.shard, r.key.clone()))).collect(),
        Some(index) => indexes.pointed(shards.txn, def, columns, index).await?,
    };
    let existing = read_existing(shards.txn, targets.iter().flatten().cloned()).await?;
    let mut inserted: Vec<u32> = Vec::new();
    // (proposed row, where the existing row is, its value)
    let mut updates: Vec<(usize, &Target, &[u8])> = Vec::new();
    let mut affected = HashSet::new();
    for (i, target) in targets.iter().enumerate() {
        match target.as_ref().and_then(|t| Some((t, existing.get(&t.1)?))) {
            None => inserted.push(i as u32),
            Some((target, _)) if !affected.insert(&target.1) => {
                return Err(Error::CardinalityViolation(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                ));
            }
            Some((target, old)) => updates.push((i, target, old.as_slice())),
        }
    }
    if arbiter.is_some() {
        // A new row's own key must be free (the arbiter found no row by its index).
        let new_keys = inserted.iter().map(|i| (rows[*i as usize].shard, rows[*i as usize].key.clone()));
        let mut keys = HashSet::new();
        let taken = read_existing(shards.txn, new_keys).await?;
        if !taken.is_empty() || !inserted.iter().all(|i| keys.insert(&rows[*i as usize].key)) {
            return Err(duplicate_key(def));
        }
    }
    for i in &inserted {
        let r = &rows[*i as usize];
        shards.txn.write(r.shard, r.key.clone(), Some(r.value.clone()));
    }
    // A new row whose unique index entry is taken fails (the conflict target is the key).
    let taken = indexes.taken(shards.txn, def, columns, inserted.iter().map(|i| *i as usize)).await?;
    let mut seen = HashSet::new();
    for i in &inserted {
        if let Some(constraint) = indexes.collision(def, columns, *i as usize, &taken, &mut seen)? {
            return Err(Error::UniqueViolation { constraint });
        }
    }
    let new_rows: Vec<usize> = inserted.iter().map(|i| *i as usize).collect();
    indexes.put(shards.txn, def, columns, &new_rows, false)?;
    keys.check_references(shards.txn, def, &take_rows(columns, &inserted)?, None).await?;
    let mut count = inserted.len();
    let mut written = vec![visible_batch(def, &take_rows(columns, &inserted)?)?];
    if !updates.is_empty() {
        let old = decode_all(def, &updates.iter().map(|(_, _, v)| *v).collect::<Vec<_>>())?;
        let take: Vec<u32> = updates.iter().map(|(i, _, _)| *i as u32).collect();
        let excluded = take_rows(columns, &take)?;
        let (keep, new_columns) = evaluate_update(def, &old, &excluded, sets, filter)?;
        let kept: Vec<u32> = (0..keep.len() as u32).filter(|j| keep[*j as usize]).collect();
        checks.verify(def, &take_rows(&new_columns, &kept)?)?;
        let encoded = encode_rows(def, &new_columns)?;
        let kept_old: Vec<ArrayRef> = take_rows(old.columns(), &kept)?;
        let kept_new = take_rows(&new_columns, &kept)?;
        indexes.replace(shards.txn, def, &kept_old, &kept_new).await?;
        for (j, (_, (shard, key), _)) in updates.iter().enumerate() {
            if keep[j] {
                shards.txn.write(*shard, key.clone(), Some(encoded[j].value.clone()));
                count += 1;
            }
        }
        keys.check_references(shards.txn, def, &kept_new, Some(&kept_old)).await?;
        no_actions(
            keys.on_referenced_change(shards.ctx, shards.cluster, shards.txn, def, &kept_old, Some(&kept_new)).await?,
        )?;
        written.push(visible_batch(def, &kept_new)?);
    }
    let merged =
        datafusion::arrow::compute::concat_batches(&def.visible_schema(), &written).map_err(Error::internal)?;
    Ok((count, Some(merged)))
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
