//! Reading and writing one shard's rows in the `data` column family. Pure functions of the
//! database contents and the command: [`apply_write`] runs inside Raft apply on every replica, so
//! it must decide the same way everywhere (no clocks, no randomness, no iteration over hash maps).
//!
//! Stored row value: the row's version (u64, big-endian: the log index of the write) followed by
//! the value bytes.

use std::collections::HashMap;

use raftable_common::{Error, Expect, KeyRange, Result, Row, ShardRead, ShardWrite, WriteOp, WriteOutcome};
use rocksdb::WriteBatch;

use crate::keys::CF_DATA;
use crate::rocks::{io, Rocks};

pub(crate) fn encode_row(version: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(value);
    v
}

pub(crate) fn decode_row(key: &[u8], raw: &[u8]) -> Result<Row> {
    if raw.len() < 8 {
        return Err(Error::InvalidData(format!("row {key:?} shorter than its version")));
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&raw[..8]);
    Ok(Row { key: key.to_vec(), value: raw[8..].to_vec(), version: u64::from_be_bytes(v) })
}

/// Serves a read of the shard owning `range` from the local replica. Linearizability is the
/// caller's business (read index on the leader before calling).
pub fn read(rocks: &Rocks, range: &KeyRange, read: &ShardRead) -> Result<Vec<Row>> {
    let cf = rocks.cf(CF_DATA);
    match read {
        ShardRead::Get { key } => {
            check_key(range, key)?;
            let raw = rocks.db().get_pinned_cf(cf, key).map_err(io)?;
            raw.map(|raw| decode_row(key, &raw)).into_iter().collect()
        }
        ShardRead::MultiGet { keys } => {
            for key in keys {
                check_key(range, key)?;
            }
            let found = rocks.db().batched_multi_get_cf(cf, keys, false);
            let mut rows = Vec::with_capacity(keys.len());
            for (key, raw) in keys.iter().zip(found) {
                if let Some(raw) = raw.map_err(io)? {
                    rows.push(decode_row(key, &raw)?);
                }
            }
            Ok(rows)
        }
        ShardRead::Scan { start, end, limit, reverse } => {
            // Clamp the scan to the shard: a scan may name a wider range than one shard holds.
            let lo = if start.as_slice() > range.start.as_slice() { start } else { &range.start };
            let hi = match (end.is_empty(), range.end.is_empty()) {
                (true, _) => range.end.clone(),
                (false, true) => end.clone(),
                (false, false) => std::cmp::min(end, &range.end).clone(),
            };
            scan(rocks, lo, &hi, limit.unwrap_or(u64::MAX), *reverse)
        }
    }
}

fn scan(rocks: &Rocks, start: &[u8], end: &[u8], limit: u64, reverse: bool) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for item in rocks.data_range(start, end, reverse) {
        if rows.len() as u64 >= limit {
            break;
        }
        let (key, raw) = item.map_err(io)?;
        rows.push(decode_row(&key, &raw)?);
    }
    Ok(rows)
}

fn check_key(range: &KeyRange, key: &[u8]) -> Result<()> {
    if range.contains(key) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("key {key:?} outside shard range")))
    }
}

/// A row's state during apply: `Some((version, value))`, or `None` when absent / deleted.
type RowState = Option<(u64, Vec<u8>)>;

/// Rows written earlier in the same apply call, so later operations see them before the batch
/// reaches RocksDB.
pub(crate) type Overlay = HashMap<Vec<u8>, RowState>;

/// Applies `write` at `version` into `batch`, or rejects the whole write with a deterministic
/// error (nothing added to `batch` or `overlay`). An `Error::Io` is not deterministic: the caller
/// must crash rather than return it.
pub(crate) fn apply_write(
    rocks: &Rocks,
    batch: &mut WriteBatch,
    overlay: &mut Overlay,
    range: &KeyRange,
    write: &ShardWrite,
    version: u64,
) -> Result<WriteOutcome> {
    write.check_range(range)?;
    // First pass: evaluate every operation against the state as it would be, without touching
    // the batch, so a failing operation leaves no trace.
    let mut staged: Vec<(Vec<u8>, RowState)> = Vec::with_capacity(write.ops.len());
    // Latest staged position per key: a batch of thousands of rows stays linear, not quadratic
    // (apply runs on the node's async runtime; a long apply delays its heartbeats).
    let mut latest: HashMap<Vec<u8>, usize> = HashMap::with_capacity(write.ops.len());
    let mut changed = Vec::with_capacity(write.ops.len());
    for op in &write.ops {
        let current = match latest.get(op.key()) {
            Some(&i) => staged[i].1.clone(),
            None => current(rocks, overlay, op.key())?,
        };
        let (new, did_change) = match op {
            WriteOp::Put { value, .. } => (Some(value), true),
            WriteOp::Delete { .. } => (None, current.is_some()),
            WriteOp::PutIfAbsent { key, value } => {
                if current.is_some() {
                    return Err(Error::DuplicateKey { key: key.clone() });
                }
                (Some(value), true)
            }
            WriteOp::InsertOrIgnore { value, .. } => {
                if current.is_some() {
                    changed.push(false);
                    continue;
                }
                (Some(value), true)
            }
            WriteOp::CompareAndPut { key, expect, value } => {
                check_expect(key, expect, current.as_ref())?;
                (Some(value), true)
            }
            WriteOp::CompareAndDelete { key, expect } => {
                check_expect(key, expect, current.as_ref())?;
                (None, current.is_some())
            }
        };
        latest.insert(op.key().to_vec(), staged.len());
        staged.push((op.key().to_vec(), new.map(|v| (version, v.clone()))));
        changed.push(did_change);
    }
    let cf = rocks.cf(CF_DATA);
    for (key, new) in staged {
        match &new {
            Some((version, value)) => batch.put_cf(cf, &key, encode_row(*version, value)),
            None => batch.delete_cf(cf, &key),
        }
        overlay.insert(key, new);
    }
    Ok(WriteOutcome { version, changed })
}

/// The row's current (version, value) before this write: earlier writes of this apply call,
/// then RocksDB.
fn current(rocks: &Rocks, overlay: &Overlay, key: &[u8]) -> Result<RowState> {
    if let Some(v) = overlay.get(key) {
        return Ok(v.clone());
    }
    let raw = rocks.db().get_pinned_cf(rocks.cf(CF_DATA), key).map_err(io)?;
    raw.map(|raw| decode_row(key, &raw).map(|r| (r.version, r.value))).transpose()
}

fn check_expect(key: &[u8], expect: &Expect, current: Option<&(u64, Vec<u8>)>) -> Result<()> {
    let ok = match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Value(want), Some((_, have))) => want == have,
        (Expect::Version(want), Some((have, _))) => want == have,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::ConditionFailed { key: key.to_vec() })
    }
}

/// A hash (64-bit FNV-1a) of every stored row of `range` (keys, versions and values) in key
/// order: replicas that applied the same entries have the same digest.
pub fn digest(rocks: &Rocks, range: &KeyRange) -> Result<u64> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for row in scan(rocks, &range.start, &range.end, u64::MAX, false)? {
        feed(&(row.key.len() as u64).to_be_bytes());
        feed(&row.key);
        feed(&row.version.to_be_bytes());
        feed(&row.value);
    }
    Ok(hash)
}
