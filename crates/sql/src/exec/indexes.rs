//! Keeping a table's secondary indexes in step with its rows, in the row's own transaction
//! (`TRANSACTIONS.md` §3): a new row adds its entries, a deleted row removes them, an updated
//! row swaps the entries whose indexed values (or primary key) changed. A unique index's entry
//! key is the indexed values alone, so a second row with the same values finds it taken: read
//! first through the transaction (23505 naming the index, or the row skipped by `ON CONFLICT
//! DO NOTHING`), or, for an autocommit INSERT that reads nothing, refused by the shard when the
//! commit applies (`Txn::insert`). An index being created or dropped
//! (`IndexState::DeleteOnly`) only loses entries. Writers take the indexes from the table's
//! current definition, not the one a prepared statement was planned with.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::ArrayRef;
use raftable_common::{Error, Result, ShardId, ShardRead};
use raftable_txn::Txn;

use crate::encoding::{bucket_of, encode_pk, index_entry, row_key, IndexEntry};
use crate::table::{IndexDef, TableDef};

/// The indexes a statement's writes maintain.
pub(crate) struct Indexes {
    list: Vec<IndexDef>,
}

impl Indexes {
    /// Those of `current`, the table's current definition, for rows laid out as `planned`
    /// (the definition the statement was planned with: columns are only ever appended, so its
    /// positions hold; an index on a column the plan does not know needs a new plan).
    pub(crate) fn of(current: &TableDef, planned: &TableDef) -> Result<Self> {
        if current.indexes.iter().flat_map(|i| &i.columns).any(|c| *c >= planned.columns.len()) {
            return Err(Error::unsupported(format!(
                "cached plan must be re-prepared: table \"{}\" was altered",
                current.name
            )));
        }
        Ok(Self { list: current.indexes.clone() })
    }

    /// None at all.
    pub(crate) fn none() -> Self {
        Self { list: Vec::new() }
    }

    /// Just `index` (what a backfill writes).
    pub(crate) fn only(index: IndexDef) -> Self {
        Self { list: vec![index] }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Row `row`'s entries in the indexes that take new entries, with the index's name.
    fn entries<'a>(
        &'a self,
        def: &TableDef,
        columns: &[ArrayRef],
        row: usize,
        writable: bool,
    ) -> Result<Vec<(&'a str, IndexEntry)>> {
        if self.list.is_empty() {
            return Ok(Vec::new());
        }
        let pk = encode_pk(def, columns, row)?;
        self.list
            .iter()
            .filter(|i| !writable || i.writable())
            .map(|i| Ok((i.name.as_str(), index_entry(i, columns, row, &pk)?)))
            .collect()
    }

    /// Buffers the removal of the entries of rows `old` (every column of each).
    pub(crate) fn delete(&self, txn: &Txn, def: &TableDef, old: &[ArrayRef]) -> Result<()> {
        for row in 0..rows_of(old) {
            for (_, e) in self.entries(def, old, row, false)? {
                txn.write(e.shard, e.key, None);
            }
        }
        Ok(())
    }

    /// Of the unique entries rows `rows` of `new` would add, the keys that hold an entry as
    /// the transaction reads them.
    pub(crate) async fn taken(
        &self,
        txn: &Txn,
        def: &TableDef,
        new: &[ArrayRef],
        rows: impl Iterator<Item = usize>,
    ) -> Result<HashSet<Vec<u8>>> {
        if !self.list.iter().any(|i| i.unique && i.writable()) {
            return Ok(HashSet::new());
        }
        let mut keys = Vec::new();
        for row in rows {
            keys.extend(
                self.entries(def, new, row, true)?.into_iter().filter(|(_, e)| e.unique).map(|(_, e)| (e.shard, e.key)),
            );
        }
        Ok(read_existing(txn, keys).await?.into_keys().collect())
    }

    /// The unique index row `row` of `new` collides in: its key is in `taken` or in `seen`
    /// (the batch's rows kept so far). A row that collides nowhere adds its keys to `seen`.
    pub(crate) fn collision(
        &self,
        def: &TableDef,
        new: &[ArrayRef],
        row: usize,
        taken: &HashSet<Vec<u8>>,
        seen: &mut HashSet<Vec<u8>>,
    ) -> Result<Option<String>> {
        let unique: Vec<(&str, IndexEntry)> =
            self.entries(def, new, row, true)?.into_iter().filter(|(_, e)| e.unique).collect();
        if let Some((name, _)) = unique.iter().find(|(_, e)| taken.contains(&e.key) || seen.contains(&e.key)) {
            return Ok(Some(name.to_string()));
        }
        seen.extend(unique.into_iter().map(|(_, e)| e.key));
        Ok(None)
    }

    /// Buffers the entries of rows `rows` of `new` (checked already, or with `deferred` as
    /// inserts that the commit refuses where the key holds an entry).
    pub(crate) fn put(
        &self,
        txn: &Txn,
        def: &TableDef,
        new: &[ArrayRef],
        rows: &[usize],
        deferred: bool,
    ) -> Result<()> {
        for &row in rows {
            for (_, e) in self.entries(def, new, row, true)? {
                if deferred && e.unique {
                    txn.insert(e.shard, e.key, e.pk);
                } else {
                    txn.write(e.shard, e.key, Some(e.pk));
                }
            }
        }
        Ok(())
    }

    /// Rows replaced, `old[i]` by `new[i]` (every column of each): removes the entries that
    /// change, then adds the new ones, a unique one failing with 23505 if another row holds
    /// its key (old entries go first, so values shifting among the batch's rows do not
    /// collide).
    pub(crate) async fn replace(&self, txn: &Txn, def: &TableDef, old: &[ArrayRef], new: &[ArrayRef]) -> Result<()> {
        if self.list.is_empty() {
            return Ok(());
        }
        let mut added: Vec<(&str, IndexEntry)> = Vec::new();
        for row in 0..rows_of(old) {
            let before: HashMap<&str, IndexEntry> = self.entries(def, old, row, false)?.into_iter().collect();
            let after = self.entries(def, new, row, true)?;
            let same: HashSet<&str> = after.iter().filter(|(n, e)| before.get(n) == Some(e)).map(|(n, _)| *n).collect();
            for (name, e) in before {
                if !same.contains(name) {
                    txn.write(e.shard, e.key, None);
                }
            }
            added.extend(after.into_iter().filter(|(n, _)| !same.contains(n)));
        }
        let unique: Vec<(usize, &IndexEntry)> =
            added.iter().enumerate().filter(|(_, (_, e))| e.unique).map(|(i, (_, e))| (i, e)).collect();
        if !unique.is_empty() {
            let taken = read_existing(txn, unique.iter().map(|(_, e)| (e.shard, e.key.clone()))).await?;
            let mut seen = HashSet::with_capacity(unique.len());
            if let Some((i, _)) = unique.iter().find(|(_, e)| taken.contains_key(&e.key) || !seen.insert(&e.key)) {
                return Err(Error::UniqueViolation { constraint: added[*i].0.to_string() });
            }
        }
        for (_, e) in added {
            txn.write(e.shard, e.key, Some(e.pk));
        }
        Ok(())
    }

    /// For each row of `new`, the row (shard, key) that unique index `index` holds under its
    /// values (None: no row holds them, or one of them is NULL).
    pub(crate) async fn pointed(
        &self,
        txn: &Txn,
        def: &TableDef,
        new: &[ArrayRef],
        index: &str,
    ) -> Result<Vec<Option<(ShardId, Vec<u8>)>>> {
        let index =
            self.list.iter().find(|i| i.name == index && i.unique && i.writable()).ok_or_else(|| {
                Error::unsupported(format!("cached plan must be re-prepared: index \"{index}\" is gone"))
            })?;
        let mut keys = Vec::with_capacity(rows_of(new));
        for row in 0..rows_of(new) {
            let e = index_entry(index, new, row, &encode_pk(def, new, row)?)?;
            keys.push(e.unique.then_some((e.shard, e.key)));
        }
        let held = read_existing(txn, keys.iter().flatten().cloned()).await?;
        Ok(keys
            .into_iter()
            .map(|k| {
                let pk = held.get(&k?.1)?;
                Some((def.shards[bucket_of(pk, def.buckets) as usize], row_key(def, pk)))
            })
            .collect())
    }

    /// The index whose key space holds `key` (for a duplicate the commit found).
    pub(crate) fn owning(&self, key: &[u8]) -> Option<&str> {
        let id = key.get(1..5)?;
        self.list.iter().find(|i| i.id.to_be_bytes() == id).map(|i| i.name.as_str())
    }
}

/// Reads, through `txn`, which of `keys` (each with its shard) hold a row: key → value.
pub(crate) async fn read_existing(
    txn: &Txn,
    keys: impl IntoIterator<Item = (ShardId, Vec<u8>)>,
) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
    let mut by_shard: BTreeMap<ShardId, Vec<Vec<u8>>> = BTreeMap::new();
    for (shard, key) in keys {
        by_shard.entry(shard).or_default().push(key);
    }
    let reads = by_shard.into_iter().map(|(shard, keys)| txn.read(shard, ShardRead::MultiGet { keys }));
    let mut found = HashMap::new();
    for rows in futures::future::join_all(reads).await {
        found.extend(rows?.into_iter().map(|r| (r.key, r.value)));
    }
    Ok(found)
}

fn rows_of(columns: &[ArrayRef]) -> usize {
    columns.first().map(|a| a.len()).unwrap_or(0)
}
