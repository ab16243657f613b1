//! `CREATE INDEX` and `DROP INDEX`, online (`TRANSACTIONS.md` §3, F1's schema change). An
//! index gets an id from the table-id counter and shards of its own, then walks the states of
//! `IndexState`, one catalog step each followed by the lease wait (so at most two adjacent
//! definitions are ever in use): delete-only, write-only, then the backfill gives every row
//! stored before its entry, then public. The backfill reads a table shard a chunk at a time,
//! each chunk one serializable transaction writing the entries of the rows it read, so writes
//! continue meanwhile and a row changed under a chunk makes the chunk run again. Two rows with
//! the same values fail a unique index's CREATE (23505) and walk it back: nothing is left.
//! DROP INDEX walks the states back (public, delete-only, gone) and then drops its shards.
//! Indexes that a table's `UNIQUE` constraints make come with the table (`unique_indexes`).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::sql::sqlparser::ast::{CreateIndex, Expr as AstExpr, IndexColumn, IndexType};
use raftable_common::{Error, Result, ShardId, ShardRead};
use raftable_txn::settle::until_unlocked;
use raftable_txn::{Coordinator, Txn};

use super::checks::Checks;
use super::foreign_keys::ForeignKeys;
use super::indexes::{read_existing, Indexes};
use super::sequences::PerRow;
use super::write::encode_rows;
use crate::ast::{ident, table_name};
use crate::catalog::{Catalog, LEASE, REFRESH};
use crate::cluster::Cluster;
use crate::encoding::{bucket_range, decode_all, index_entry};
use crate::table::{
    same_columns, ForeignKeyDef, IndexDef, IndexState, TableDef, INDOPTION_DESC, INDOPTION_NULLS_FIRST,
};
use crate::types::SqlType;

/// Rows per backfill transaction.
const CHUNK: u64 = 500;

/// The columns an index or UNIQUE constraint names: plain columns of the table (an
/// expression, or a column type without an order, is refused). The text pattern operator
/// classes (Django's `_like` indexes) are taken as the plain column: such an index serves
/// equality, not yet LIKE prefixes.
pub(crate) fn index_columns(def: &TableDef, columns: &[IndexColumn]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let pattern = ["text_pattern_ops", "varchar_pattern_ops", "bpchar_pattern_ops"];
        if let Some(class) = &c.operator_class {
            if !pattern.contains(&class.to_string().to_lowercase().as_str()) {
                return Err(Error::unsupported(format!("index operator class {class} is not supported")));
            }
        }
        let AstExpr::Identifier(id) = &c.column.expr else {
            return Err(Error::unsupported(format!("index on the expression {} is not supported", c.column.expr)));
        };
        let name = ident(id);
        let i = def
            .columns
            .iter()
            .position(|col| col.name == name && col.is_visible())
            .ok_or_else(|| Error::UndefinedColumn(format!("column \"{name}\" does not exist")))?;
        if matches!(def.columns[i].ty, SqlType::Jsonb) {
            return Err(Error::unsupported("an index on a jsonb column is not supported"));
        }
        out.push(i);
    }
    Ok(out)
}

/// PostgreSQL's name for an index nobody named: `<table>_<columns>_<suffix>` (`idx`, or `key`
/// for a unique constraint), numbered from 1 while the name is taken by a relation or by one
/// of `also` (names being made in the same statement).
pub(crate) async fn default_name(
    catalog: &Catalog,
    def: &TableDef,
    columns: &[usize],
    suffix: &str,
    also: &[String],
) -> Result<String> {
    let cols: Vec<&str> = columns.iter().map(|c| def.columns[*c].name.as_str()).collect();
    let base = format!("{}_{}_{suffix}", def.bare_name(), cols.join("_"));
    let mut name = base.clone();
    for n in 1.. {
        if !also.contains(&name) && !catalog.taken(&name).await? {
            break;
        }
        name = format!("{base}{n}");
    }
    Ok(name)
}

/// A new index with its shards, one per bucket as the table has.
pub(crate) async fn new_index(
    cluster: &dyn Cluster,
    table: &TableDef,
    name: String,
    columns: Vec<usize>,
    unique: bool,
    state: IndexState,
) -> Result<IndexDef> {
    let id = u32::try_from(cluster.next_id("table").await?).map_err(|_| Error::Internal("ids exhausted".into()))?;
    let ranges = (0..table.buckets).map(|b| bucket_range(id, b, table.buckets)).collect();
    let shards = cluster.create_shards(ranges).await?;
    Ok(IndexDef {
        id,
        name,
        columns,
        unique,
        buckets: table.buckets,
        shards,
        state,
        constraint: false,
        options: Vec::new(),
    })
}

/// The `indoption` bits of the columns CREATE INDEX names (`DESC`, `NULLS FIRST`); empty when
/// all are ascending with NULLs last (the default).
fn index_options(columns: &[IndexColumn]) -> Vec<i16> {
    let options: Vec<i16> = columns
        .iter()
        .map(|c| {
            let desc = c.column.options.asc == Some(false);
            let nulls_first = c.column.options.nulls_first.unwrap_or(desc);
            (if desc { INDOPTION_DESC } else { 0 }) | (if nulls_first { INDOPTION_NULLS_FIRST } else { 0 })
        })
        .collect();
    if options.iter().all(|o| *o == 0) {
        Vec::new()
    } else {
        options
    }
}

/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] [name] ON t (cols)`: every CREATE
/// INDEX is online (CONCURRENTLY or not).
pub(crate) async fn create_index(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    coordinator: &Arc<Coordinator>,
    create: &CreateIndex,
) -> Result<()> {
    if create.predicate.is_some() {
        return Err(Error::unsupported("partial indexes (CREATE INDEX ... WHERE) are not supported"));
    }
    if !matches!(create.using, None | Some(IndexType::BTree) | Some(IndexType::Hash)) {
        return Err(Error::unsupported(format!("index method {} is not supported", create.using.as_ref().unwrap())));
    }
    if create.nulls_distinct == Some(false) {
        return Err(Error::unsupported("NULLS NOT DISTINCT is not supported"));
    }
    let table = table_name(&create.table_name)?;
    let def = catalog
        .get(&table)
        .await?
        .ok_or_else(|| Error::UndefinedTable(format!("relation \"{table}\" does not exist")))?;
    let columns = index_columns(&def, &create.columns)?;
    let name = match &create.name {
        Some(name) => table_name(name)?,
        None => default_name(catalog, &def, &columns, "idx", &[]).await?,
    };
    if catalog.taken(&name).await? {
        if create.if_not_exists {
            return Ok(());
        }
        return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
    }
    let mut index = new_index(cluster, &def, name, columns, create.unique, IndexState::DeleteOnly).await?;
    index.options = index_options(&create.columns);
    build(cluster, catalog, coordinator, &def, index).await
}

/// `ALTER TABLE t ADD [CONSTRAINT name] UNIQUE (cols)`: its index, built online as CREATE
/// UNIQUE INDEX builds one (named `<table>_<cols>_key` unless named).
pub(crate) async fn add_unique(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    coordinator: &Arc<Coordinator>,
    def: &TableDef,
    given: Option<String>,
    columns: &[IndexColumn],
) -> Result<()> {
    let columns = index_columns(def, columns)?;
    let name = match given {
        Some(name) if catalog.taken(&name).await? => {
            return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
        }
        Some(name) => name,
        None => default_name(catalog, def, &columns, "key", &[]).await?,
    };
    let mut index = new_index(cluster, def, name, columns, true, IndexState::DeleteOnly).await?;
    index.constraint = true;
    build(cluster, catalog, coordinator, def, index).await
}

/// Takes a new (delete-only) index through its states to public, backfilling it; walks it
/// back and deletes its entries if the backfill fails.
async fn build(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    coordinator: &Arc<Coordinator>,
    def: &TableDef,
    index: IndexDef,
) -> Result<()> {
    let def = step(catalog, def, |d| d.indexes.push(index.clone())).await?;
    let def = step(catalog, &def, |d| set_state(d, &index.name, IndexState::WriteOnly)).await?;
    if let Err(e) = backfill(coordinator, &def, &index).await {
        // Walk back: no node adds entries once every one is at delete-only; then none reads it.
        let def = step(catalog, &def, |d| set_state(d, &index.name, IndexState::DeleteOnly)).await?;
        let def = step(catalog, &def, |d| d.indexes.retain(|i| i.name != index.name)).await?;
        drop(def);
        drop_shards(cluster, &index.shards).await?;
        return Err(e);
    }
    catalog.replace(&def, with(&def, |d| set_state(d, &index.name, IndexState::Public))).await?;
    Ok(())
}

/// `DROP INDEX [IF EXISTS] name [, ...]`. An index a constraint made goes with
/// `ALTER TABLE ... DROP CONSTRAINT` only (2BP01 here, as PostgreSQL).
pub(crate) async fn drop_index(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    names: &[String],
    if_exists: bool,
) -> Result<()> {
    for name in names {
        let Some(def) = catalog.index(name).await? else {
            if if_exists {
                continue;
            }
            return Err(Error::UndefinedObject(format!("index \"{name}\" does not exist")));
        };
        let index = def.index(name).cloned().expect("found by name");
        if index.constraint {
            return Err(Error::DependentObjectsStillExist(format!(
                "cannot drop index {name} because constraint {name} on table {} requires it",
                def.name
            )));
        }
        remove_index(cluster, catalog, &def, &index).await?;
    }
    Ok(())
}

/// Walks an index back (delete-only, then gone, each step waited out) and deletes its
/// entries. Returns the table's definition without it.
pub(crate) async fn remove_index(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    def: &TableDef,
    index: &IndexDef,
) -> Result<Arc<TableDef>> {
    // A foreign key referencing the index's columns (not the primary key's) needs it.
    if index.unique && !same_columns(&def.pk, &index.columns) {
        for &id in &def.referenced_by {
            let Some(child) = catalog.by_id(id).await? else { continue };
            let uses = |k: &&ForeignKeyDef| k.parent == def.id && same_columns(&k.parent_columns, &index.columns);
            if let Some(key) = child.foreign_keys.iter().find(uses) {
                return Err(Error::DependentObjectsStillExist(format!(
                    "cannot drop index {} because constraint {} on table {} requires it",
                    index.name, key.name, child.name
                )));
            }
        }
    }
    let def = step(catalog, def, |d| set_state(d, &index.name, IndexState::DeleteOnly)).await?;
    let def = step(catalog, &def, |d| d.indexes.retain(|i| i.name != index.name)).await?;
    drop_shards(cluster, &index.shards).await?;
    Ok(def)
}

/// `def` changed by `change`.
fn with(def: &TableDef, change: impl FnOnce(&mut TableDef)) -> TableDef {
    let mut next = def.clone();
    change(&mut next);
    next
}

/// One catalog step: `def` changed by `change` replaces it, then the lease wait, after which
/// no node uses the definition before it.
async fn step(catalog: &Catalog, def: &TableDef, change: impl FnOnce(&mut TableDef)) -> Result<Arc<TableDef>> {
    let stored = catalog.replace(def, with(def, change)).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(stored)
}

fn set_state(def: &mut TableDef, index: &str, state: IndexState) {
    if let Some(i) = def.indexes.iter_mut().find(|i| i.name == index) {
        i.state = state;
    }
}

/// Gives every row stored its entry in `index` (write-only now: rows written from here on
/// get theirs from their writers), a chunk of rows per transaction.
async fn backfill(coordinator: &Arc<Coordinator>, def: &TableDef, index: &IndexDef) -> Result<()> {
    let index = &IndexDef { state: IndexState::WriteOnly, ..index.clone() };
    pass(coordinator, def, Pass::Backfill(index)).await
}

/// What a pass over a table's stored rows does with each chunk, in the chunk's transaction.
pub(crate) enum Pass<'a> {
    /// Writes the rows' entries in a new index (its backfill).
    Backfill(&'a IndexDef),
    /// Checks that the rows reference existing rows (a new foreign key's validation).
    Validate(&'a ForeignKeys),
    /// Checks the rows against CHECK constraints (a new one's validation; 23514).
    Verify(&'a Checks),
    /// Gives the rows whose column `column` (being added) is NULL its per-row default.
    Fill { column: usize, values: &'a PerRow<'a> },
}

/// Goes over every stored row of `def`, a shard at a time, [`CHUNK`] rows per serializable
/// transaction (retried when it conflicts with a write), so writes continue meanwhile.
pub(crate) async fn pass(coordinator: &Arc<Coordinator>, def: &TableDef, pass: Pass<'_>) -> Result<()> {
    let indexes = match pass {
        Pass::Backfill(index) => Indexes::only(index.clone()),
        Pass::Validate(_) | Pass::Verify(_) | Pass::Fill { .. } => Indexes::none(),
    };
    for bucket in 0..def.buckets {
        let range = bucket_range(def.id, bucket, def.buckets);
        let shard = def.shards[bucket as usize];
        let mut start = range.start.clone();
        loop {
            let mut attempt = 0;
            let next = loop {
                let txn = coordinator.begin();
                match chunk(&txn, def, &pass, &indexes, shard, &start, &range.end).await {
                    Err(Error::TxnConflict(_) | Error::TxnAborted(_)) if attempt < 100 => {
                        attempt += 1;
                        tokio::time::sleep(raftable_txn::settle::pause(attempt)).await;
                    }
                    other => break other?,
                }
            };
            match next {
                Some(key) => start = key,
                None => break,
            }
        }
    }
    Ok(())
}

/// One chunk of a [`pass`]: up to [`CHUNK`] rows from `start`; returns where the next chunk
/// starts (None: the shard is done). A backfill writes the rows' entries (a unique entry held
/// by another row fails the CREATE); a validation checks the rows' references.
async fn chunk(
    txn: &Txn,
    def: &TableDef,
    pass: &Pass<'_>,
    indexes: &Indexes,
    shard: ShardId,
    start: &[u8],
    end: &[u8],
) -> Result<Option<Vec<u8>>> {
    let read = ShardRead::Scan { start: start.to_vec(), end: end.to_vec(), limit: Some(CHUNK), reverse: false };
    let rows = txn.read(shard, read).await?;
    let next = (rows.len() as u64 == CHUNK).then(|| rows.last().map(|r| [r.key.as_slice(), &[0u8]].concat())).flatten();
    if rows.is_empty() {
        return Ok(None);
    }
    let batch = decode_all(def, &rows.iter().map(|r| r.value.as_slice()).collect::<Vec<_>>())?;
    let columns = batch.columns();
    let index = match pass {
        Pass::Backfill(index) => index,
        Pass::Validate(keys) => {
            keys.check_references(txn, def, columns, None).await?;
            return Ok(next);
        }
        Pass::Verify(checks) => {
            checks.verify(def, columns)?;
            return Ok(next);
        }
        Pass::Fill { column, values } => {
            fill(txn, def, columns, *column, values).await?;
            return Ok(next);
        }
    };
    let mut entries = Vec::with_capacity(rows.len());
    for row in 0..rows.len() {
        let pk = crate::encoding::encode_pk(def, columns, row)?;
        entries.push(index_entry(index, columns, row, &pk)?);
    }
    if index.unique {
        let held = read_existing(txn, entries.iter().filter(|e| e.unique).map(|e| (e.shard, e.key.clone()))).await?;
        let mut seen = HashSet::new();
        for e in entries.iter().filter(|e| e.unique) {
            let other = held.get(&e.key).is_some_and(|pk| *pk != e.pk);
            if other || !seen.insert(e.key.as_slice()) {
                return Err(Error::UniqueIndexBuild { index: index.name.clone() });
            }
        }
    }
    let all: Vec<usize> = (0..rows.len()).collect();
    indexes.put(txn, def, columns, &all, false)?;
    txn.commit().await?;
    Ok(next)
}

/// Writes back the rows of a chunk whose column `column` is NULL with a value of its per-row
/// default, then commits. While the column is write-only nobody else can make it NULL: the
/// rows a writer inserted have their value, an UPDATE keeps the one the row has.
async fn fill(txn: &Txn, def: &TableDef, columns: &[ArrayRef], column: usize, values: &PerRow<'_>) -> Result<()> {
    let empty: UInt32Array =
        (0..columns[column].len() as u32).filter(|&r| columns[column].is_null(r as usize)).collect();
    if empty.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(columns.len());
    for (i, array) in columns.iter().enumerate() {
        rows.push(match i == column {
            true => values.values(&def.columns[column], empty.len()).await?,
            false => take(array, &empty, None).map_err(|e| Error::Internal(e.to_string()))?,
        });
    }
    for row in encode_rows(def, &rows)? {
        txn.write(row.shard, row.key, Some(row.value));
    }
    txn.commit().await?;
    Ok(())
}

/// Hands shards no node uses any more (a dropped table's or index's: every node's catalog
/// lease on its definition ran out) to the cluster to drop: first settles any lock left in
/// them (a transaction whose coordinator stalled or died: pushed once expired, as a read
/// would), then marks them. The cluster deletes them once no other shard's transaction needs
/// their records (`cluster::meta`).
pub(crate) async fn drop_shards(cluster: &dyn Cluster, shards: &[ShardId]) -> Result<()> {
    let settle = shards
        .iter()
        .map(|&shard| until_unlocked(cluster, shard, move || cluster.read(shard, ShardRead::Unsettled { limit: 0 })));
    futures::future::try_join_all(settle).await?;
    cluster.drop_shards(shards.to_vec()).await
}
