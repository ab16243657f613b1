//! FOREIGN KEY constraints at write time, in the writing transaction (so that concurrent
//! writers conflict at commit instead of both passing: every check below is a read through the
//! transaction, validated when it commits).
//!
//! - Referencing side ([`ForeignKeys::check_references`]): a row written with values in a key's
//!   columns (none NULL: MATCH SIMPLE) needs a row of the referenced table holding them, found
//!   by its primary key or through the unique index the key references; else 23503.
//! - Referenced side ([`ForeignKeys::on_referenced_change`]): when rows are deleted, or their
//!   referenced columns updated, the rows that referenced their old values are looked up in
//!   each referencing table (a scan bounded by an index on the key's columns where there is
//!   one): `NO ACTION` / `RESTRICT` fail with 23503 if any, `ON DELETE CASCADE / SET NULL / SET
//!   DEFAULT` come back as the DELETE or UPDATE to run on them (`super::modify` runs it, with
//!   that table's own indexes and keys, so actions chain).
//!
//! - `DEFERRABLE INITIALLY DEFERRED` keys, in a transaction block: both checks wait for its
//!   COMMIT ([`Deferred`]).
//!
//! The checks run after the statement's batch is buffered, reading through the transaction,
//! so rows that reference each other within one statement pass. Which keys apply is read from
//! the tables' current definitions (`TableDef::foreign_keys` here, `referenced_by` there);
//! `exec::foreign_key_ddl` orders its catalog steps so that no node skips a key another
//! already enforces.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use raftable_common::{Error, Result, ShardId};
use raftable_txn::Txn;

use super::indexes::read_existing;
use super::{stream_at_snapshot, take_rows};
use crate::catalog::Catalog;
use crate::cluster::{Cluster, ClusterRef};
use crate::encoding::{bucket_of, decode_all, encode_pk, index_entry, row_key};
use crate::error::from_datafusion;
use crate::plan::modify::ModifyPlan;
use crate::scan::{Current, ShardedTable};
use crate::table::{ForeignKeyDef, KeyAction, TableDef};

/// The foreign keys a write to one table must keep: its own, and those referencing it.
#[derive(Default)]
pub(crate) struct ForeignKeys {
    /// The table's keys, each with the referenced table's current definition.
    outbound: Vec<(ForeignKeyDef, Arc<TableDef>)>,
    /// The keys referencing the table, each with its (referencing) table's current definition.
    inbound: Vec<(Arc<TableDef>, ForeignKeyDef)>,
    /// Where a transaction block keeps the checks of `INITIALLY DEFERRED` keys until COMMIT
    /// (None: a statement on its own, whose end is its commit: every key checked at once).
    defer: Option<Arc<Deferred>>,
}

impl ForeignKeys {
    /// Those of `current`, the table's current definition. The transaction records the
    /// versions of the referencing tables it looked at, for the schema check at commit: a key
    /// added to one of them meanwhile fails it (`exec::commit`).
    pub(crate) async fn of(catalog: &Catalog, txn: &Txn, current: &Arc<TableDef>) -> Result<Self> {
        let mut keys = Self::default();
        for fk in &current.foreign_keys {
            let parent = match fk.parent == current.id {
                true => current.clone(),
                false => catalog.by_id(fk.parent).await?.ok_or_else(|| changed(&current.name))?,
            };
            keys.outbound.push((fk.clone(), parent));
        }
        for &id in &current.referenced_by {
            let child = match catalog.by_id(id).await? {
                Some(child) => child,
                None => {
                    // Not in the cache: being created (its definition comes after this one's
                    // step: retry), or dropped (this definition is older than the cache).
                    catalog.refresh().await?;
                    match catalog.by_id(id).await? {
                        Some(child) => child,
                        None if catalog.cached(&current.name).is_some_and(|t| t.referenced_by.contains(&id)) => {
                            return Err(changed(&current.name));
                        }
                        None => continue,
                    }
                }
            };
            txn.uses(child.id, child.version);
            for fk in child.foreign_keys.iter().filter(|k| k.parent == current.id) {
                keys.inbound.push((child.clone(), fk.clone()));
            }
        }
        Ok(keys)
    }

    /// Just `key`, referencing `parent` (what a new key's validation checks).
    pub(crate) fn referencing(key: ForeignKeyDef, parent: Arc<TableDef>) -> Self {
        Self { outbound: vec![(key, parent)], inbound: Vec::new(), defer: None }
    }

    /// These keys, the deferred ones' checks kept in `deferred` (a transaction block's).
    pub(crate) fn deferring(self, deferred: Option<Arc<Deferred>>) -> Self {
        Self { defer: deferred, ..self }
    }

    /// Whether the table neither references nor is referenced.
    pub(crate) fn is_empty(&self) -> bool {
        self.outbound.is_empty() && self.inbound.is_empty()
    }

    /// The ids of the tables with a key referencing the table.
    pub(crate) fn referencing_tables(&self) -> impl Iterator<Item = u32> + '_ {
        self.inbound.iter().map(|(child, _)| child.id)
    }

    /// Whether a write to the table may need to act on other rows of it (a key of the table
    /// references the table itself).
    pub(crate) fn references_itself(&self, def: &TableDef) -> bool {
        self.inbound.iter().any(|(child, _)| child.id == def.id)
    }

    /// Checks that rows `new` (every column of each) reference existing rows, as the
    /// transaction reads them; with `old` (an UPDATE: the rows before), only rows whose key
    /// columns changed.
    pub(crate) async fn check_references(
        &self,
        txn: &Txn,
        def: &TableDef,
        new: &[ArrayRef],
        old: Option<&[ArrayRef]>,
    ) -> Result<()> {
        for (fk, parent) in &self.outbound {
            let rows = keyed_rows(new, &fk.columns, old);
            if rows.is_empty() {
                continue;
            }
            if let Some(deferred) = self.defer.as_ref().filter(|d| d.defers(fk)) {
                let rows = take_rows(new, &rows.iter().map(|&r| r as u32).collect::<Vec<_>>())?;
                deferred.push(Pending::Written { table: def.id, key: fk.name.clone(), rows });
                continue;
            }
            let values = fk
                .columns
                .iter()
                .zip(&fk.parent_columns)
                .map(|(&c, &p)| parent.columns[p].ty.coerce(&parent.columns[p].name, &new[c]))
                .collect::<Result<Vec<_>>>()?;
            let present = present(txn, parent, &fk.parent_columns, &values, &rows).await?;
            if present.iter().any(|p| !p) {
                return Err(Error::ForeignKeyViolation(format!(
                    "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                    def.name, fk.name
                )));
            }
        }
        Ok(())
    }

    /// Rows `old` (every column of each) were deleted (`new` None) or replaced by `new`:
    /// for each key referencing the table, the rows referencing values no row holds any more
    /// fail the statement (23503), or come back as the DELETE / UPDATE that its `ON DELETE`
    /// action runs on them.
    pub(crate) async fn on_referenced_change(
        &self,
        ctx: &SessionContext,
        cluster: &Arc<dyn Cluster>,
        txn: &Arc<Txn>,
        def: &TableDef,
        old: &[ArrayRef],
        new: Option<&[ArrayRef]>,
    ) -> Result<Vec<ModifyPlan>> {
        let mut actions = Vec::new();
        for (child, fk) in &self.inbound {
            let rows = keyed_rows(old, &fk.parent_columns, new);
            if rows.is_empty() {
                continue;
            }
            let values: Vec<ArrayRef> = fk.parent_columns.iter().map(|&c| old[c].clone()).collect();
            // Values another row holds now (or again) are still referenced rightly.
            let present = present(txn, def, &fk.parent_columns, &values, &rows).await?;
            let gone: Vec<usize> = rows.iter().zip(present).filter(|(_, p)| !p).map(|(r, _)| *r).collect();
            if gone.is_empty() {
                continue;
            }
            let action = if new.is_some() { fk.on_update } else { fk.on_delete };
            let deferred = self.defer.as_ref().filter(|d| d.defers(fk));
            if let (KeyAction::NoAction, Some(deferred)) = (action, deferred) {
                let rows = take_rows(old, &gone.iter().map(|&r| r as u32).collect::<Vec<_>>())?;
                deferred.push(Pending::Gone { table: def.id, child: child.id, key: fk.name.clone(), rows });
                continue;
            }
            let filter = referencing(child, fk, &values, &gone)?;
            match action {
                KeyAction::NoAction | KeyAction::Restrict => {
                    unreferenced(ctx, txn, def, child, child_rows(cluster, child, filter, None)?, fk).await?
                }
                KeyAction::Cascade if new.is_none() => actions.push(child_rows(cluster, child, filter, None)?),
                KeyAction::SetNull | KeyAction::SetDefault => {
                    let sets = fk
                        .columns
                        .iter()
                        .map(|&c| {
                            let value = match action {
                                KeyAction::SetNull => {
                                    ScalarValue::try_from(&child.columns[c].ty.arrow()).map_err(from_datafusion)?
                                }
                                _ => child.default_value(c)?,
                            };
                            Ok((c, lit(value)))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    actions.push(child_rows(cluster, child, filter, Some(sets))?);
                }
                KeyAction::Cascade => {
                    return Err(Error::unsupported(format!("ON UPDATE CASCADE (foreign key \"{}\")", fk.name)));
                }
            }
        }
        Ok(actions)
    }
}

/// Fails (23503) if `plan` (rows of `child` referencing values of `def` through `fk`) finds
/// a row.
async fn unreferenced(
    ctx: &SessionContext,
    txn: &Arc<Txn>,
    def: &TableDef,
    child: &TableDef,
    plan: ModifyPlan,
    fk: &ForeignKeyDef,
) -> Result<()> {
    let mut stream = stream_at_snapshot(ctx, txn, plan.read).await?;
    while let Some(batch) = stream.next().await {
        if batch.map_err(from_datafusion)?.num_rows() > 0 {
            return Err(Error::ForeignKeyViolation(format!(
                "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                def.name, fk.name, child.name
            )));
        }
    }
    Ok(())
}

/// The checks of `DEFERRABLE INITIALLY DEFERRED` keys a transaction block put off until its
/// COMMIT ([`Deferred::check`]), as PostgreSQL runs them then: rows written with values in a
/// key (read again at COMMIT: a row deleted since is not checked, one updated since is
/// checked as it is), and referenced rows deleted or re-keyed under `NO ACTION` (fine if a row
/// holds their values again, or no row references them any more).
#[derive(Default)]
pub(crate) struct Deferred {
    pending: std::sync::Mutex<Vec<Pending>>,
    /// `SET CONSTRAINTS` in the block: the mode of ALL, and of keys named since.
    modes: std::sync::Mutex<(Option<bool>, HashMap<String, bool>)>,
}

enum Pending {
    /// Rows (every column) of table `table` written with values in its key `key`.
    Written { table: u32, key: String, rows: Vec<ArrayRef> },
    /// Rows (every column) of table `table` whose values the key `key` of table `child`
    /// referenced, deleted or re-keyed.
    Gone { table: u32, child: u32, key: String, rows: Vec<ArrayRef> },
}

impl Pending {
    fn key(&self) -> &str {
        match self {
            Pending::Written { key, .. } | Pending::Gone { key, .. } => key,
        }
    }
}

impl Deferred {
    fn push(&self, pending: Pending) {
        self.pending.lock().expect("deferred checks lock").push(pending);
    }

    /// Whether the block checks `fk` at COMMIT: a DEFERRABLE key, deferred as declared or as
    /// `SET CONSTRAINTS` last said.
    fn defers(&self, fk: &ForeignKeyDef) -> bool {
        let modes = self.modes.lock().expect("deferred checks lock");
        fk.deferrable && modes.1.get(&fk.name).copied().or(modes.0).unwrap_or(fk.deferred)
    }

    /// `SET CONSTRAINTS { ALL | names } { DEFERRED | IMMEDIATE }` (`names` empty: ALL).
    /// Made IMMEDIATE, the keys' checks put off so far run now.
    pub(crate) async fn set(
        &self,
        names: &[String],
        deferred: bool,
        ctx: &SessionContext,
        cluster: &Arc<dyn Cluster>,
        catalog: &Catalog,
        txn: &Arc<Txn>,
    ) -> Result<()> {
        {
            let mut modes = self.modes.lock().expect("deferred checks lock");
            if names.is_empty() {
                *modes = (Some(deferred), HashMap::new());
            } else {
                modes.1.extend(names.iter().map(|n| (n.clone(), deferred)));
            }
        }
        if deferred {
            return Ok(());
        }
        let due = |p: &Pending| names.is_empty() || names.iter().any(|n| n == p.key());
        self.run(ctx, cluster, catalog, txn, due).await
    }

    /// Runs the checks put off so far (at COMMIT), with the tables' current definitions (a
    /// key dropped meanwhile is not checked).
    pub(crate) async fn check(
        &self,
        ctx: &SessionContext,
        cluster: &Arc<dyn Cluster>,
        catalog: &Catalog,
        txn: &Arc<Txn>,
    ) -> Result<()> {
        self.run(ctx, cluster, catalog, txn, |_| true).await
    }

    /// Runs the checks `due` picks, leaving the others pending.
    async fn run(
        &self,
        ctx: &SessionContext,
        cluster: &Arc<dyn Cluster>,
        catalog: &Catalog,
        txn: &Arc<Txn>,
        due: impl Fn(&Pending) -> bool,
    ) -> Result<()> {
        let pending = {
            let mut all = self.pending.lock().expect("deferred checks lock");
            let (now, later): (Vec<Pending>, Vec<Pending>) =
                std::mem::take(&mut *all).into_iter().partition(|p| due(p));
            *all = later;
            now
        };
        for p in pending {
            match p {
                Pending::Written { table, key, rows } => {
                    let Some(def) = catalog.by_id(table).await? else { continue };
                    let Some(fk) = def.foreign_keys.iter().find(|k| k.name == key).cloned() else { continue };
                    let Some(parent) = catalog.by_id(fk.parent).await? else { continue };
                    let now = reread(txn, &def, &rows).await?;
                    ForeignKeys::referencing(fk, parent).check_references(txn, &def, &now, None).await?;
                }
                Pending::Gone { table, child, key, rows } => {
                    let (Some(def), Some(child)) = (catalog.by_id(table).await?, catalog.by_id(child).await?) else {
                        continue;
                    };
                    let Some(fk) = child.foreign_keys.iter().find(|k| k.name == key && k.parent == table).cloned()
                    else {
                        continue;
                    };
                    let all: Vec<usize> = (0..rows.first().map_or(0, |a| a.len())).collect();
                    let values: Vec<ArrayRef> = fk.parent_columns.iter().map(|&c| rows[c].clone()).collect();
                    let present = present(txn, &def, &fk.parent_columns, &values, &all).await?;
                    let gone: Vec<usize> = all.iter().zip(present).filter(|(_, p)| !p).map(|(r, _)| *r).collect();
                    if gone.is_empty() {
                        continue;
                    }
                    let plan = child_rows(cluster, &child, referencing(&child, &fk, &values, &gone)?, None)?;
                    unreferenced(ctx, txn, &def, &child, plan, &fk).await?;
                }
            }
        }
        Ok(())
    }
}

/// The rows of `def` with the primary keys of `rows`, as the transaction reads them now (the
/// ones deleted since left out).
async fn reread(txn: &Txn, def: &TableDef, rows: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    let n = rows.first().map_or(0, |a| a.len());
    let mut keys = Vec::with_capacity(n);
    for r in 0..n {
        let pk = encode_pk(def, rows, r)?;
        keys.push((def.shards[bucket_of(&pk, def.buckets) as usize], row_key(def, &pk)));
    }
    let found = read_existing(txn, keys).await?;
    let values: Vec<&[u8]> = found.values().map(Vec::as_slice).collect();
    Ok(decode_all(def, &values)?.columns().to_vec())
}

fn changed(table: &str) -> Error {
    Error::TxnConflict(format!("could not serialize access: a foreign key of table \"{table}\" changed"))
}

/// The rows of `rows` holding a value in every one of `columns` (a NULL references nothing),
/// and with `other` (the same rows after, or before, an update) only those that differ there.
fn keyed_rows(rows: &[ArrayRef], columns: &[usize], other: Option<&[ArrayRef]>) -> Vec<usize> {
    let n = rows.first().map(|a| a.len()).unwrap_or(0);
    (0..n)
        .filter(|&r| columns.iter().all(|&c| rows[c].is_valid(r)))
        .filter(|&r| other.is_none_or(|other| changed_in(rows, other, columns, r)))
        .collect()
}

/// Whether row `r` differs between `old` and `new` in one of `columns`.
fn changed_in(old: &[ArrayRef], new: &[ArrayRef], columns: &[usize], r: usize) -> bool {
    columns.iter().any(|&c| {
        let (a, b) = (ScalarValue::try_from_array(&old[c], r), ScalarValue::try_from_array(&new[c], r));
        !matches!((a, b), (Ok(a), Ok(b)) if a == b)
    })
}

/// For each of `rows`, whether table `table` holds a row with its values (`values[j]` for
/// column `columns[j]`, of that column's type, none NULL), as the transaction reads it: by
/// the primary key if `columns` are its columns, else through the unique index on them.
pub(crate) async fn present(
    txn: &Txn,
    table: &TableDef,
    columns: &[usize],
    values: &[ArrayRef],
    rows: &[usize],
) -> Result<Vec<bool>> {
    let n = values.first().map(|a| a.len()).unwrap_or(0);
    // The table's row layout, holding just the key's values.
    let mut full: Vec<ArrayRef> = table.columns.iter().map(|c| new_null_array(&c.ty.arrow(), n)).collect();
    for (&c, v) in columns.iter().zip(values) {
        full[c] = v.clone();
    }
    let index = table
        .referenced_key(columns)
        .ok_or_else(|| Error::Internal(format!("no unique index of \"{}\" for a foreign key", table.name)))?;
    let mut keys: Vec<(ShardId, Vec<u8>)> = Vec::with_capacity(rows.len());
    for &r in rows {
        keys.push(match index {
            None => {
                let pk = encode_pk(table, &full, r)?;
                (table.shards[bucket_of(&pk, table.buckets) as usize], row_key(table, &pk))
            }
            Some(index) => {
                let e = index_entry(index, &full, r, &[])?;
                (e.shard, e.key)
            }
        });
    }
    let unique: HashSet<(ShardId, Vec<u8>)> = keys.iter().cloned().collect();
    let found = read_existing(txn, unique).await?;
    Ok(keys.iter().map(|(_, k)| found.contains_key(k)).collect())
}

/// The filter on `child`'s rows referencing rows `rows` of `values` (the referenced columns'
/// old values): IN lists per column (which bound the scan by an index or the primary key), and
/// for a key of several columns the exact tuples too.
fn referencing(child: &TableDef, fk: &ForeignKeyDef, values: &[ArrayRef], rows: &[usize]) -> Result<Expr> {
    let mut tuples: Vec<Vec<Expr>> = vec![Vec::with_capacity(fk.columns.len()); rows.len()];
    let mut filter: Option<Expr> = None;
    for (j, &c) in fk.columns.iter().enumerate() {
        let ty = child.columns[c].ty.arrow();
        let mut list = Vec::with_capacity(rows.len());
        for (t, &r) in rows.iter().enumerate() {
            let v = ScalarValue::try_from_array(&values[j], r).and_then(|v| v.cast_to(&ty)).map_err(from_datafusion)?;
            tuples[t].push(col(column(child, c)).eq(lit(v.clone())));
            list.push(lit(v));
        }
        let in_list = col(column(child, c)).in_list(list, false);
        filter = Some(match filter {
            None => in_list,
            Some(f) => f.and(in_list),
        });
    }
    let filter = filter.ok_or_else(|| Error::Internal("a foreign key without columns".into()))?;
    if fk.columns.len() == 1 {
        return Ok(filter);
    }
    let exact = tuples.into_iter().filter_map(|t| t.into_iter().reduce(Expr::and)).reduce(Expr::or);
    Ok(match exact {
        Some(exact) => filter.and(exact),
        None => filter,
    })
}

/// A column reference DataFusion resolves as written (names may hold capitals or dots).
fn column(def: &TableDef, c: usize) -> datafusion::common::Column {
    datafusion::common::Column::new_unqualified(def.columns[c].name.clone())
}

/// The rows of `child` that `filter` selects, read as UPDATE and DELETE read theirs
/// (`plan::modify`): every column, then with `sets` the new values.
fn child_rows(
    cluster: &Arc<dyn Cluster>,
    child: &Arc<TableDef>,
    filter: Expr,
    sets: Option<Vec<(usize, Expr)>>,
) -> Result<ModifyPlan> {
    let current = child.clone();
    let current: Current = Arc::new(move |_| Some(current.clone()));
    let table = ShardedTable::internal(child.clone(), ClusterRef(cluster.clone()), None, current);
    let builder = LogicalPlanBuilder::scan(child.name.clone(), provider_as_source(Arc::new(table)), None)
        .and_then(|b| b.filter(filter))
        .map_err(from_datafusion)?;
    let mut exprs: Vec<Expr> = builder.schema().columns().into_iter().map(Expr::Column).collect();
    let columns = sets.as_ref().map(|sets| sets.iter().map(|(c, _)| *c).collect());
    for (j, (_, value)) in sets.into_iter().flatten().enumerate() {
        exprs.push(value.alias(format!("__raftable_set_{j}")));
    }
    let read = builder.project(exprs).and_then(|b| b.build()).map_err(from_datafusion)?;
    Ok(ModifyPlan { def: child.clone(), read, sets: columns, returning: None })
}
