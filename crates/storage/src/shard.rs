//! Reading and writing one shard's rows in the `data` column family. Pure functions of the
//! database contents and the command: [`apply`] runs inside Raft apply on every replica, so it
//! must decide the same way everywhere (no clocks, no randomness, no iteration over hash maps).
//!
//! Two layouts, told apart by the range ([`KeyRange::is_versioned`]):
//! - table shards keep every version of a row (`mvcc`), stamped with its commit timestamp;
//!   reads here see the newest version (reads at a chosen timestamp come with transactions);
//! - the meta shard keeps one version per key: value = the version (u64, big-endian: the log
//!   index of the write) ‖ the value bytes.

use std::collections::HashMap;

use crate::keys::{CF_DATA, CF_LOCKS, CF_TXNS};
use crate::pending::Pending;
use crate::rocks::{io, Rocks};
use crate::{mvcc, txn};
use raftable_common::{
    Error, Expect, KeyRange, Result, Row, ShardCommand, ShardRead, ShardWrite, Ts, WriteOp, WriteOutcome,
};

fn live_row(version: mvcc::Version) -> Option<Row> {
    let mvcc::Version { key, ts, value } = version;
    value.map(|value| Row { key, value, version: ts.0 })
}

/// Serves a read of the shard owning `range` from the local replica. Linearizability is the
/// caller's business (read index on the leader before calling).
pub fn read(rocks: &Rocks, group: u64, range: &KeyRange, read: &ShardRead) -> Result<Vec<Row>> {
    if range.is_versioned() {
        return read_versions(rocks, group, range, read, Ts::MAX);
    }
    let cf = rocks.cf(CF_DATA);
    match read {
        ShardRead::Get { key } => {
            check_key(range, key)?;
            let raw = rocks.db().get_pinned_cf(cf, key).map_err(io)?;
            raw.map(|raw| mvcc::decode_plain(key, &raw)).into_iter().collect()
        }
        ShardRead::MultiGet { keys } => {
            for key in keys {
                check_key(range, key)?;
            }
            let found = rocks.db().batched_multi_get_cf(cf, keys, false);
            let mut rows = Vec::with_capacity(keys.len());
            for (key, raw) in keys.iter().zip(found) {
                if let Some(raw) = raw.map_err(io)? {
                    rows.push(mvcc::decode_plain(key, &raw)?);
                }
            }
            Ok(rows)
        }
        ShardRead::Scan { start, end, limit, reverse } => {
            let (lo, hi) = clamp(range, start, end);
            scan(rocks, lo, &hi, limit.unwrap_or(u64::MAX), *reverse)
        }
        ShardRead::Validate { .. } | ShardRead::Unsettled { .. } => {
            Err(Error::InvalidInput("the meta shard has no transactions".into()))
        }
    }
}

/// Serves a read of table shard `group` at snapshot `ts`: every row as the newest version at or
/// below `ts` left it. Refused below the shard's garbage-collection threshold, whose versions
/// may be gone. The caller makes sure no write at or below `ts` is still to be applied.
pub fn read_at(rocks: &Rocks, group: u64, range: &KeyRange, read: &ShardRead, ts: Ts) -> Result<Vec<Row>> {
    if !range.is_versioned() {
        return Err(Error::InvalidInput("only table shards are read at a timestamp".into()));
    }
    let threshold = Ts(rocks.coverage(group).gc_threshold.load(std::sync::atomic::Ordering::SeqCst));
    let oldest = match read {
        ShardRead::Validate { since, .. } => (*since).min(ts),
        _ => ts,
    };
    if oldest < threshold {
        return Err(Error::SnapshotTooOld(format!(
            "a read at {oldest} is below the garbage-collection threshold {threshold} of shard {group}"
        )));
    }
    read_versions(rocks, group, range, read, ts)
}

/// A read of a table shard at `ts` (`Ts::MAX`: the newest version of every row). A lock of a
/// transaction that may commit at or below `ts` on what it reads fails it with `Error::Locked`
/// (`txn`): the caller settles the lock and reads again.
///
/// Locks are checked before the rows are read: a lock resolved in between has its versions
/// written in the same batch that drops it, so the rows read then include them. (Checked
/// after, a resolution in between would leave the read with the old rows and no lock: a
/// transaction seen on one shard and not on another.) A lock placed in between belongs to a
/// transaction stamped above `ts`: the caller waited for writes stamped at or below it.
fn read_versions(rocks: &Rocks, group: u64, range: &KeyRange, read: &ShardRead, ts: Ts) -> Result<Vec<Row>> {
    // No lock in the shard (the common case): nothing to check (`Coverage::locks`).
    let locks = rocks.coverage(group).locks.load(std::sync::atomic::Ordering::SeqCst) != 0;
    match read {
        ShardRead::Get { key } => {
            check_key(range, key)?;
            if locks {
                txn::check_point(rocks, key, ts)?;
            }
            Ok(mvcc::get_at(rocks, key, ts)?.and_then(live_row).into_iter().collect())
        }
        ShardRead::MultiGet { keys } => {
            for key in keys {
                check_key(range, key)?;
                if locks {
                    txn::check_point(rocks, key, ts)?;
                }
            }
            let mut rows = Vec::with_capacity(keys.len());
            for key in keys {
                rows.extend(mvcc::get_at(rocks, key, ts)?.and_then(live_row));
            }
            Ok(rows)
        }
        ShardRead::Scan { start, end, limit, reverse } => {
            let (lo, hi) = clamp(range, start, end);
            // The whole range, though a page may stop early: locks live only while their
            // transaction commits, so a page rarely waits for one beyond it.
            if locks {
                txn::check_range(rocks, lo, &hi, ts)?;
            }
            let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
            let versions = mvcc::scan_at(rocks, lo, &hi, ts, limit, *reverse)?;
            Ok(versions.into_iter().filter_map(live_row).collect())
        }
        ShardRead::Validate { txn, since, spans } => {
            if ts == Ts::MAX {
                return Err(Error::InvalidInput("a validation is a read at the commit timestamp".into()));
            }
            txn::validate(rocks, Some(*txn), *since, spans, ts)?;
            Ok(Vec::new())
        }
        ShardRead::Unsettled { limit } => txn::unsettled(rocks, range, *limit),
    }
}

/// A scan's bounds clamped to the shard: a scan may name a wider range than one shard holds.
fn clamp<'a>(range: &'a KeyRange, start: &'a Vec<u8>, end: &Vec<u8>) -> (&'a [u8], Vec<u8>) {
    let lo = if start.as_slice() > range.start.as_slice() { start } else { &range.start };
    let hi = match (end.is_empty(), range.end.is_empty()) {
        (true, _) => range.end.clone(),
        (false, true) => end.clone(),
        (false, false) => std::cmp::min(end, &range.end).clone(),
    };
    (lo, hi)
}

fn scan(rocks: &Rocks, start: &[u8], end: &[u8], limit: u64, reverse: bool) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for item in rocks.data_range(start, end, reverse) {
        if rows.len() as u64 >= limit {
            break;
        }
        let (key, raw) = item.map_err(io)?;
        rows.push(mvcc::decode_plain(&key, &raw)?);
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

/// Applies the replicated command of log entry `index` into `pending`, or rejects it whole with
/// a deterministic error (nothing added to `pending`). An `Error::Io` is not deterministic: the
/// caller must crash rather than return it. Before a transaction command that scans ranges
/// (`txn::scans`) and after a `Gc` command the caller must write what is pending: scans read
/// RocksDB alone, and `Pending` cannot express the old versions a `Gc` deletes.
pub(crate) fn apply(
    rocks: &Rocks,
    pending: &mut Pending,
    range: &KeyRange,
    command: &ShardCommand,
    index: u64,
    gc_threshold: Ts,
) -> Result<WriteOutcome> {
    match (command, range.is_versioned()) {
        (ShardCommand::Plain(write), false) => apply_write(rocks, pending, range, write, Stamp::Index(index)),
        (ShardCommand::Stamped { ts, write }, true) => apply_write(rocks, pending, range, write, Stamp::Commit(*ts)),
        (ShardCommand::Gc { threshold, versions, records }, true) => {
            for raw in versions {
                let (key, _) = mvcc::split_version_key(raw)?;
                check_key(range, key)?;
            }
            for key in records {
                check_key(range, key)?;
            }
            for raw in versions {
                pending.delete_version(rocks, raw);
            }
            for key in records {
                if txn::expired_record(rocks, pending, key, *threshold)? {
                    pending.delete(rocks, CF_TXNS, key);
                }
            }
            Ok(WriteOutcome::default())
        }
        (ShardCommand::Txn { ts, op }, true) => {
            debug_assert!(!txn::scans(op) || pending.is_empty(), "scans apply with nothing unwritten");
            txn::apply(rocks, pending, range, *ts, op, gc_threshold)
        }
        (command, _) => Err(Error::InvalidInput(format!(
            "{} command for a shard ranging {:?}..{:?}",
            match command {
                ShardCommand::Plain(_) => "an unversioned",
                ShardCommand::Stamped { .. } | ShardCommand::Gc { .. } | ShardCommand::Txn { .. } => "a versioned",
            },
            range.start,
            range.end
        ))),
    }
}

/// How a write versions the rows it writes.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// Meta shard: the log index, one version per key.
    Index(u64),
    /// Table shard: a new version at this commit timestamp, or above the newest version of a
    /// key it writes if that is at or above it.
    Commit(Ts),
}

fn apply_write(
    rocks: &Rocks,
    pending: &mut Pending,
    range: &KeyRange,
    write: &ShardWrite,
    stamp: Stamp,
) -> Result<WriteOutcome> {
    write.check_range(range)?;
    let versioned = matches!(stamp, Stamp::Commit(_));
    // First pass: evaluate every operation against the state as it would be, without touching
    // the batch, so a failing operation leaves no trace.
    // (key, value after this op or None for absent, whether the key held a row before).
    let mut staged: Vec<(Vec<u8>, Option<Vec<u8>>, bool)> = Vec::with_capacity(write.ops.len());
    // Latest staged position per key: a batch of thousands of rows stays linear, not quadratic
    // (apply runs on the node's async runtime; a long apply delays its heartbeats).
    let mut latest: HashMap<Vec<u8>, usize> = HashMap::with_capacity(write.ops.len());
    let mut changed = Vec::with_capacity(write.ops.len());
    let mut newest = None;
    // The version a later op of this write sees for a key an earlier op wrote (a pushed commit
    // timestamp is known only after this pass).
    let provisional = match stamp {
        Stamp::Index(index) => index,
        Stamp::Commit(ts) => ts.0,
    };
    for op in &write.ops {
        if versioned {
            // A prepared transaction's key: nothing but its resolution may write it.
            if let Some(lock) = txn::pending_lock(rocks, pending, op.key())? {
                return Err(Error::Locked { key: op.key().to_vec(), txn: lock.txn, ts: lock.ts });
            }
        }
        let current = match latest.get(op.key()) {
            Some(&i) => staged[i].1.clone().map(|v| (provisional, v)),
            None => {
                let current = pending.row(rocks, op.key(), versioned)?;
                newest = newest.max(current.newest);
                current.row
            }
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
        staged.push((op.key().to_vec(), new.cloned(), current.is_some()));
        changed.push(did_change);
    }
    let version = match stamp {
        Stamp::Index(index) => index,
        Stamp::Commit(ts) => ts.0.max(newest.map_or(0, |n: u64| n + 1)),
    };
    for (key, new, existed) in staged {
        if !versioned {
            pending.put_plain(rocks, &key, version, new.as_deref());
        } else if new.is_some() || existed {
            // Deleting a key that holds no row leaves no version behind.
            pending.put_version(rocks, &key, Ts(version), new.as_deref());
        }
    }
    Ok(WriteOutcome { version, changed })
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

/// What a replica stores for a range, to compare replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// A hash (64-bit FNV-1a) of every stored entry (keys and values as stored, so every
    /// version of every row of a table shard, then its locks and transaction records) in key
    /// order: replicas that applied the same entries have the same hash.
    pub hash: u64,
    /// How many entries are stored (versions, locks and records, on a table shard).
    pub entries: u64,
}

/// The [`Digest`] of `range` on this replica: a full scan.
pub fn digest(rocks: &Rocks, range: &KeyRange) -> Result<Digest> {
    let mut entries = 0;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (tag, cf) in [(0u8, CF_DATA), (1, CF_LOCKS), (2, CF_TXNS)] {
        let mut it = rocks.raw_range(cf, &range.start, &range.end);
        it.seek(&range.start);
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            entries += 1;
            feed(&[tag]);
            feed(&(key.len() as u64).to_be_bytes());
            feed(key);
            feed(&(value.len() as u64).to_be_bytes());
            feed(value);
            it.next();
        }
        it.status().map_err(io)?;
    }
    Ok(Digest { hash, entries })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn put(key: &[u8], value: &str) -> WriteOp {
        WriteOp::Put { key: key.to_vec(), value: value.as_bytes().to_vec() }
    }

    fn stamped(ts: u64, ops: Vec<WriteOp>) -> ShardCommand {
        ShardCommand::Stamped { ts: Ts(ts), write: ShardWrite::new(ops) }
    }

    /// Applies `commands` as one apply call (one pending batch), like consecutive entries.
    fn apply_all(rocks: &Rocks, range: &KeyRange, commands: &[ShardCommand]) -> Vec<Result<WriteOutcome>> {
        let mut pending = Pending::new();
        let out = commands.iter().map(|c| apply(rocks, &mut pending, range, c, 1, Ts::MIN)).collect();
        rocks.write(pending.take()).unwrap();
        out
    }

    fn get(rocks: &Rocks, range: &KeyRange, key: &[u8]) -> Option<(u64, String)> {
        let rows = read(rocks, 1, range, &ShardRead::Get { key: key.to_vec() }).unwrap();
        rows.into_iter().next().map(|r| (r.version, String::from_utf8(r.value).unwrap()))
    }

    fn stored(rocks: &Rocks, range: &KeyRange) -> usize {
        rocks.data_range(&range.start, &range.end, false).count()
    }

    fn open() -> (tempfile::TempDir, Arc<Rocks>) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        (dir, rocks)
    }

    #[test]
    fn table_writes_keep_versions_and_never_go_below_the_newest() {
        let (_dir, rocks) = open();
        let table = KeyRange::new(vec![1], vec![2]);
        let (a, b) = ([1u8, b'a'].as_slice(), [1u8, b'b'].as_slice());
        let out = apply_all(&rocks, &table, &[stamped(10, vec![put(a, "a1")])]);
        assert_eq!(out[0].as_ref().unwrap().version, 10);
        // A write stamped below the key's newest version is written just above it.
        let out = apply_all(&rocks, &table, &[stamped(5, vec![put(a, "a2")])]);
        assert_eq!(out[0].as_ref().unwrap().version, 11);
        assert_eq!(get(&rocks, &table, a), Some((11, "a2".into())));
        // Later entries of one apply call see the earlier ones (pending), pushes included.
        let del = WriteOp::Delete { key: a.to_vec() };
        let insert = WriteOp::PutIfAbsent { key: a.to_vec(), value: b"a3".to_vec() };
        let out = apply_all(&rocks, &table, &[stamped(20, vec![del]), stamped(20, vec![insert])]);
        assert_eq!(out[0].as_ref().unwrap().changed, vec![true]);
        assert_eq!(out[1].as_ref().unwrap().version, 21, "pushed above the deletion at 20");
        assert_eq!(get(&rocks, &table, a), Some((21, "a3".into())));
        // Deleting a key that holds no row leaves no version; a failed write leaves nothing.
        let before = stored(&rocks, &table);
        let out = apply_all(&rocks, &table, &[stamped(30, vec![WriteOp::Delete { key: b.to_vec() }])]);
        assert_eq!(out[0].as_ref().unwrap().changed, vec![false]);
        let dup = WriteOp::PutIfAbsent { key: a.to_vec(), value: b"x".to_vec() };
        let out = apply_all(&rocks, &table, &[stamped(31, vec![put(b, "b1"), dup])]);
        assert!(matches!(out[0], Err(Error::DuplicateKey { .. })));
        assert_eq!(stored(&rocks, &table), before);
        assert_eq!(before, 4, "a1, a2, the deletion and a3");
        // Compare-and-put on the version reads the commit timestamp.
        let cas = WriteOp::CompareAndPut { key: a.to_vec(), expect: Expect::Version(21), value: b"a4".to_vec() };
        apply_all(&rocks, &table, &[stamped(40, vec![cas.clone()])])[0].as_ref().unwrap();
        assert!(matches!(apply_all(&rocks, &table, &[stamped(41, vec![cas])])[0], Err(Error::ConditionFailed { .. })));

        // A scan starting just after `a` (`a ‖ 0x00`, how pages resume) skips a's versions.
        apply_all(&rocks, &table, &[stamped(50, vec![put(b, "b1")])]);
        let scan = |start: Vec<u8>| {
            let rows = read(&rocks, 1, &table, &ShardRead::Scan { start, end: vec![], limit: None, reverse: false });
            rows.unwrap().into_iter().map(|r| r.key).collect::<Vec<_>>()
        };
        assert_eq!(scan(vec![1]), vec![a.to_vec(), b.to_vec()]);
        assert_eq!(scan([a, &[0]].concat()), vec![b.to_vec()]);

        // Garbage collection drops what no read at or above the threshold sees.
        let found = mvcc::garbage(&rocks, &table.start, &table.end, Ts(45), 100).unwrap();
        assert_eq!(found.versions.len(), 4, "a's four versions below a4 at 40");
        let gc = ShardCommand::Gc { threshold: Ts(45), versions: found.versions, records: Vec::new() };
        apply_all(&rocks, &table, &[gc])[0].as_ref().unwrap();
        assert_eq!(stored(&rocks, &table), 2);
        assert_eq!(get(&rocks, &table, a), Some((40, "a4".into())));
    }

    #[test]
    fn transaction_commands_of_one_apply_call_see_each_other() {
        use raftable_common::{Decision, TxnId, TxnMeta, TxnOp, TxnWrite};
        let (_dir, rocks) = open();
        let table = KeyRange::new(vec![1], vec![2]);
        let (a, b) = ([1u8, b'a'].to_vec(), [1u8, b'b'].to_vec());
        let txn = |ts, op| ShardCommand::Txn { ts: Ts(ts), op };
        let meta = TxnMeta { id: TxnId(7), anchor: 1, anchor_key: a.clone() };
        let prepare = TxnOp::Prepare {
            txn: meta.clone(),
            anchor: true,
            read_ts: Ts(5),
            reads: Vec::new(),
            writes: vec![TxnWrite::put(a.clone(), b"a1".to_vec())],
        };
        let one_phase = TxnOp::Commit {
            txn: TxnId(8),
            read_ts: Ts(5),
            reads: Vec::new(),
            writes: vec![TxnWrite::put(b.clone(), b"b1".to_vec())],
        };
        let end = TxnOp::End { txn: meta, decision: Decision::Commit(Ts(12)), keys: vec![a.clone()] };
        let out = apply_all(
            &rocks,
            &table,
            &[
                txn(10, prepare.clone()),
                // The lock placed just before blocks a write, and the same prepare again
                // changes nothing.
                stamped(11, vec![put(&a, "x")]),
                txn(11, prepare),
                // A one-phase commit, then the same command again: answered, not applied.
                txn(11, one_phase.clone()),
                txn(13, one_phase),
                // The end of the prepared transaction turns its lock into a version.
                txn(12, end),
                stamped(12, vec![put(&b, "b2")]),
            ],
        );
        assert!(matches!(out[1], Err(Error::Locked { .. })), "{:?}", out[1]);
        assert_eq!(out[2].as_ref().unwrap().changed, vec![false]);
        assert_eq!(out[3].as_ref().unwrap().version, 11);
        assert_eq!(out[4].as_ref().unwrap().version, 11, "answered from the record");
        assert_eq!(out[5].as_ref().unwrap().changed, vec![true]);
        assert_eq!(out[6].as_ref().unwrap().version, 12, "above b1 at 11");
        assert_eq!(get(&rocks, &table, &a), Some((12, "a1".into())));
        assert_eq!(get(&rocks, &table, &b), Some((12, "b2".into())));
        assert!(txn::pending_lock(&rocks, &Pending::new(), &a).unwrap().is_none(), "no lock left");
    }

    #[test]
    fn commands_must_match_the_shard_layout() {
        let (_dir, rocks) = open();
        let (table, meta) = (KeyRange::new(vec![1], vec![2]), KeyRange::new(vec![0], vec![1]));
        let plain = ShardCommand::Plain(ShardWrite::new(vec![put(&[1, 1], "x")]));
        assert!(matches!(apply_all(&rocks, &table, &[plain])[0], Err(Error::InvalidInput(_))));
        let out = apply_all(&rocks, &meta, &[stamped(5, vec![put(&[0, 1], "x")])]);
        assert!(matches!(out[0], Err(Error::InvalidInput(_))));
        // The meta shard versions by log index, one version per key.
        let plain = ShardCommand::Plain(ShardWrite::new(vec![put(&[0, 1], "x"), put(&[0, 1], "y")]));
        assert_eq!(apply_all(&rocks, &meta, &[plain])[0].as_ref().unwrap().version, 1);
        assert_eq!(get(&rocks, &meta, &[0, 1]), Some((1, "y".into())));
        assert_eq!(stored(&rocks, &meta), 1);
    }
}
