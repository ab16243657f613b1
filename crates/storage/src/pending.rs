//! [`Pending`]: what one Raft apply call has applied but not yet written to RocksDB (its write
//! batch), indexed by key so that later entries of the same call read it before RocksDB. Sits
//! under `shard` and `txn` (which read and write through it) and above `mvcc` and `rocks`; the
//! state machine owns one per apply call and writes it once at the end, so a run of entries
//! costs one RocksDB write, whatever their kind.
//!
//! It answers point reads only: a key's newest row and the `locks` / `txns` entry of a key.
//! Commands that scan ranges (a transaction validating what it read, `ResolveAll`) and garbage
//! collection (which deletes old versions the index cannot express) need what is pending
//! written first: see [`Pending::is_empty`] and `txn::scans`.

use std::collections::HashMap;

use raftable_common::{Result, Ts};
use rocksdb::WriteBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::CF_DATA;
use crate::mvcc;
use crate::rocks::{io, Rocks};

/// A key's state during apply: its live row as `(version, value)` (`None` when absent or
/// deleted), and on a table shard the version of its newest stored version, a deletion included
/// (a write at or below it is pushed above it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Current {
    pub row: Option<(u64, Vec<u8>)>,
    pub newest: Option<u64>,
}

/// An apply call's unwritten batch and, per key it wrote, what the key holds after it.
#[derive(Default)]
pub(crate) struct Pending {
    batch: WriteBatch,
    rows: HashMap<Vec<u8>, Current>,
    /// Entries of the `locks` and `txns` column families: `None` once deleted.
    cells: HashMap<(&'static str, Vec<u8>), Option<Vec<u8>>>,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is waiting to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The batch to write, leaving this empty: once it is written RocksDB answers for it.
    pub(crate) fn take(&mut self) -> WriteBatch {
        self.rows.clear();
        self.cells.clear();
        std::mem::take(&mut self.batch)
    }

    /// The batch, for writes no later entry reads (the applied log id, membership).
    pub(crate) fn batch(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// The decoded entry of `key` in column family `cf` (`locks` or `txns`), pending first.
    pub(crate) fn get<T: DeserializeOwned>(&self, rocks: &Rocks, cf: &'static str, key: &[u8]) -> Result<Option<T>> {
        let decode = |raw: &[u8]| bincode::deserialize(raw).map_err(Into::into);
        match self.cells.get(&(cf, key.to_vec())) {
            Some(raw) => raw.as_deref().map(decode).transpose(),
            None => rocks.db().get_pinned_cf(rocks.cf(cf), key).map_err(io)?.as_deref().map(decode).transpose(),
        }
    }

    /// Sets the entry of `key` in `cf` to `value`, encoded.
    pub(crate) fn put<T: Serialize>(&mut self, rocks: &Rocks, cf: &'static str, key: &[u8], value: &T) -> Result<()> {
        let raw = bincode::serialize(value)?;
        self.batch.put_cf(rocks.cf(cf), key, &raw);
        self.cells.insert((cf, key.to_vec()), Some(raw));
        Ok(())
    }

    /// Deletes the entry of `key` in `cf`.
    pub(crate) fn delete(&mut self, rocks: &Rocks, cf: &'static str, key: &[u8]) {
        self.batch.delete_cf(rocks.cf(cf), key);
        self.cells.insert((cf, key.to_vec()), None);
    }

    /// Deletes a stored version (garbage collection). Not indexed: the caller writes what is
    /// pending before any later entry reads.
    pub(crate) fn delete_version(&mut self, rocks: &Rocks, raw: &[u8]) {
        self.batch.delete_cf(rocks.cf(CF_DATA), raw);
    }

    /// The key's state before the entry being applied: this call's earlier writes, then RocksDB
    /// (its newest version on a table shard, `versioned`; its one row on the meta shard).
    pub(crate) fn row(&self, rocks: &Rocks, key: &[u8], versioned: bool) -> Result<Current> {
        if let Some(c) = self.rows.get(key) {
            return Ok(c.clone());
        }
        if versioned {
            return Ok(match mvcc::get_at(rocks, key, Ts::MAX)? {
                Some(v) => Current { row: v.value.map(|value| (v.ts.0, value)), newest: Some(v.ts.0) },
                None => Current::default(),
            });
        }
        let raw = rocks.db().get_pinned_cf(rocks.cf(CF_DATA), key).map_err(io)?;
        let row = raw.map(|raw| mvcc::decode_plain(key, &raw).map(|r| (r.version, r.value))).transpose()?;
        Ok(Current { newest: row.as_ref().map(|(v, _)| *v), row })
    }

    /// Writes the version of `key` at `ts` on a table shard: `value`, or a deletion.
    pub(crate) fn put_version(&mut self, rocks: &Rocks, key: &[u8], ts: Ts, value: Option<&[u8]>) {
        mvcc::put(rocks, &mut self.batch, key, ts, value);
        let row = value.map(|v| (ts.0, v.to_vec()));
        self.rows.insert(key.to_vec(), Current { row, newest: Some(ts.0) });
    }

    /// Writes the one row of `key` on the meta shard (`None`: deletes it).
    pub(crate) fn put_plain(&mut self, rocks: &Rocks, key: &[u8], version: u64, value: Option<&[u8]>) {
        let cf = rocks.cf(CF_DATA);
        match value {
            Some(value) => self.batch.put_cf(cf, key, mvcc::encode_plain(version, value)),
            None => self.batch.delete_cf(cf, key),
        }
        let row = value.map(|v| (version, v.to_vec()));
        self.rows.insert(key.to_vec(), Current { newest: row.as_ref().map(|(v, _)| *v), row });
    }
}
