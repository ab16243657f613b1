//! Transaction state of table shards: locks (`locks` column family, keyed by the row key) and
//! transaction records (`txns`, keyed by `anchor key ‖ transaction id`), and the apply of the
//! transaction commands (`raftable_common::TxnOp`). Pure functions of the database contents and
//! the command, like `shard.rs`: Raft apply runs [`apply`] on every replica.
//!
//! A lock holds a prepared transaction's new value of its key and the stamp of its prepare: the
//! transaction commits at or above that stamp, so a read below it may ignore the lock, and any
//! other read of the key, and every write to it, waits until the lock is resolved (reads and
//! writes fail with `Error::Locked`; the caller settles the lock and retries).
//!
//! [`apply`] reads point entries through `Pending` (earlier entries of the same apply call
//! first) and scans RocksDB directly: the state machine writes what is pending before a command
//! that scans ([`scans`]).

use std::collections::HashSet;

use raftable_common::{
    Decision, Error, KeyRange, Result, Row, Span, Ts, TxnId, TxnMeta, TxnOp, TxnStatus, TxnWrite, WriteOutcome,
    RESOLVE_ALL_MAX,
};
use serde::{Deserialize, Serialize};

use crate::keys::{CF_LOCKS, CF_TXNS};
use crate::mvcc;
use crate::pending::Pending;
use crate::rocks::{io, Rocks};

/// A prepared transaction's lock on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lock {
    pub txn: TxnMeta,
    /// The stamp of the prepare: the transaction commits at or above it.
    pub ts: Ts,
    /// The key's new value (`None`: deleted) once the transaction commits.
    pub value: Option<Vec<u8>>,
}

impl Lock {
    fn conflict(self, key: &[u8]) -> Error {
        Error::Locked { key: key.to_vec(), txn: self.txn, ts: self.ts }
    }
}

fn record_key(txn: &TxnMeta) -> Vec<u8> {
    let mut k = Vec::with_capacity(txn.anchor_key.len() + 16);
    k.extend_from_slice(&txn.anchor_key);
    k.extend_from_slice(&txn.id.to_bytes());
    k
}

/// The lock on `key`, if any, as stored (for reads, outside apply).
fn lock(rocks: &Rocks, key: &[u8]) -> Result<Option<Lock>> {
    let raw = rocks.db().get_pinned_cf(rocks.cf(CF_LOCKS), key).map_err(io)?;
    raw.map(|raw| bincode::deserialize(&raw).map_err(Error::from)).transpose()
}

/// The lock on `key`, if any, as the entry being applied sees it.
pub(crate) fn pending_lock(rocks: &Rocks, pending: &Pending, key: &[u8]) -> Result<Option<Lock>> {
    pending.get(rocks, CF_LOCKS, key)
}

/// The first lock in `[start, end)` (an empty `end`: unbounded) that `blocks` says matters.
fn first_lock(
    rocks: &Rocks,
    start: &[u8],
    end: &[u8],
    blocks: impl Fn(&Lock) -> bool,
) -> Result<Option<(Vec<u8>, Lock)>> {
    let mut it = rocks.raw_range(CF_LOCKS, start, end);
    it.seek(start);
    while let (Some(key), Some(raw)) = (it.key(), it.value()) {
        let lock: Lock = bincode::deserialize(raw)?;
        if blocks(&lock) {
            return Ok(Some((key.to_vec(), lock)));
        }
        it.next();
    }
    it.status().map_err(io)?;
    Ok(None)
}

/// The keys in `range` locked by `txn`, at most `max` of them, in key order.
fn locked_by(rocks: &Rocks, range: &KeyRange, txn: TxnId, max: usize) -> Result<Vec<Vec<u8>>> {
    let mut it = rocks.raw_range(CF_LOCKS, &range.start, &range.end);
    it.seek(&range.start);
    let mut keys = Vec::new();
    while let (Some(key), Some(raw)) = (it.key(), it.value()) {
        if keys.len() >= max {
            break;
        }
        let lock: Lock = bincode::deserialize(raw)?;
        if lock.txn.id == txn {
            keys.push(key.to_vec());
        }
        it.next();
    }
    it.status().map_err(io)?;
    Ok(keys)
}

/// Whether a read at `ts` must wait for `lock` (`Ts::MAX`: a read of the newest rows waits for
/// every lock): its transaction may commit at or below `ts`.
fn blocks_read(lock: &Lock, ts: Ts) -> bool {
    ts == Ts::MAX || lock.ts <= ts
}

/// Fails with `Error::Locked` if `key` holds a lock a read at `ts` must wait for.
pub(crate) fn check_point(rocks: &Rocks, key: &[u8], ts: Ts) -> Result<()> {
    match lock(rocks, key)? {
        Some(lock) if blocks_read(&lock, ts) => Err(lock.conflict(key)),
        _ => Ok(()),
    }
}

/// Fails with `Error::Locked` if `[start, end)` holds a lock a read at `ts` must wait for.
pub(crate) fn check_range(rocks: &Rocks, start: &[u8], end: &[u8], ts: Ts) -> Result<()> {
    match first_lock(rocks, start, end, |l| blocks_read(l, ts))? {
        Some((key, lock)) => Err(lock.conflict(&key)),
        None => Ok(()),
    }
}

/// Serves `ShardRead::Unsettled` on a shard ranging `range`: `Error::Locked` for its first
/// lock, else the keys of up to `limit` records other than one-phase commits' (those only
/// answer a repeated command, which a dropped shard refuses anyway).
pub(crate) fn unsettled(rocks: &Rocks, range: &KeyRange, limit: u64) -> Result<Vec<Row>> {
    if let Some((key, lock)) = first_lock(rocks, &range.start, range.end_or_max(), |_| true)? {
        return Err(lock.conflict(&key));
    }
    let mut it = rocks.raw_range(CF_TXNS, &range.start, range.end_or_max());
    it.seek(&range.start);
    let mut rows = Vec::new();
    while let (Some(key), Some(raw)) = (it.key(), it.value()) {
        if rows.len() as u64 >= limit {
            break;
        }
        if !matches!(bincode::deserialize(raw)?, TxnStatus::Applied(_)) {
            rows.push(Row { key: key.to_vec(), value: Vec::new(), version: 0 });
        }
        it.next();
    }
    it.status().map_err(io)?;
    Ok(rows)
}

/// A transaction's read validation: fails with `Error::TxnConflict` if a span holds a version
/// newer than `since`, with `Error::Locked` if it holds a lock of another transaction than `own`
/// that a read at `at` must wait for.
pub(crate) fn validate(rocks: &Rocks, own: Option<TxnId>, since: Ts, spans: &[Span], at: Ts) -> Result<()> {
    for span in spans {
        let foreign = |l: &Lock| Some(l.txn.id) != own && blocks_read(l, at);
        if let Some((key, lock)) = first_lock(rocks, &span.start, &span.end, foreign)? {
            return Err(lock.conflict(&key));
        }
        if let Some((key, ts)) = mvcc::newer_than(rocks, &span.start, &span.end, since)? {
            return Err(Error::TxnConflict(format!(
                "key {} was written at {ts}, after this transaction read it at {since}",
                show(&key)
            )));
        }
    }
    Ok(())
}

fn show(key: &[u8]) -> String {
    key.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

/// The record of `txn`, if any.
fn record(rocks: &Rocks, pending: &Pending, txn: &TxnMeta) -> Result<Option<TxnStatus>> {
    pending.get(rocks, CF_TXNS, &record_key(txn))
}

/// Where a one-phase commit's record lives: keyed like a transaction record, anchored at its
/// first written key.
fn applied_key(first_key: &[u8], txn: TxnId) -> Vec<u8> {
    record_key(&TxnMeta { id: txn, anchor: 0, anchor_key: first_key.to_vec() })
}

/// How long a one-phase commit's record outlives the garbage-collection threshold. Retries of
/// a command stop within the router's deadline (seconds), long before.
pub const APPLIED_MARGIN_MS: u64 = 60_000;

/// Whether a record at `key` is a one-phase commit's applied before `threshold` less
/// [`APPLIED_MARGIN_MS`]: nobody sends that command again, so the record may go.
pub(crate) fn expired_record(rocks: &Rocks, pending: &Pending, key: &[u8], threshold: Ts) -> Result<bool> {
    let record = pending.get(rocks, CF_TXNS, key)?;
    Ok(matches!(record, Some(TxnStatus::Applied(c)) if expired(c, threshold)))
}

fn expired(applied: Ts, threshold: Ts) -> bool {
    applied.physical_ms().saturating_add(APPLIED_MARGIN_MS) < threshold.physical_ms()
}

/// The keys of one-phase commit records in `[start, end)` that [`expired_record`] allows to
/// go, at most `max` of them: the records part of a `ShardCommand::Gc`.
pub fn expired_records(rocks: &Rocks, start: &[u8], end: &[u8], threshold: Ts, max: usize) -> Result<Vec<Vec<u8>>> {
    let mut it = rocks.raw_range(CF_TXNS, start, end);
    it.seek(start);
    let mut found = Vec::new();
    while let (Some(key), Some(raw)) = (it.key(), it.value()) {
        if found.len() >= max {
            break;
        }
        if matches!(bincode::deserialize(raw)?, TxnStatus::Applied(c) if expired(c, threshold)) {
            found.push(key.to_vec());
        }
        it.next();
    }
    it.status().map_err(io)?;
    Ok(found)
}

fn put_record(rocks: &Rocks, pending: &mut Pending, txn: &TxnMeta, status: TxnStatus) -> Result<()> {
    pending.put(rocks, CF_TXNS, &record_key(txn), &status)
}

/// Whether applying `op` scans ranges of RocksDB (validating reads, finding a transaction's
/// locks): the state machine writes what is pending first.
pub(crate) fn scans(op: &TxnOp) -> bool {
    match op {
        TxnOp::Commit { reads, .. } | TxnOp::Prepare { reads, .. } => !reads.is_empty(),
        TxnOp::ResolveAll { .. } => true,
        TxnOp::End { .. } | TxnOp::Resolve { .. } | TxnOp::Forget { .. } => false,
    }
}

/// Applies transaction command `op`, stamped `ts` by the leader, to the shard owning `range`, or
/// rejects it whole with a deterministic error (nothing added to `pending`). `gc_threshold` is the
/// shard's: a validation from below it could miss collected versions.
pub(crate) fn apply(
    rocks: &Rocks,
    pending: &mut Pending,
    range: &KeyRange,
    ts: Ts,
    op: &TxnOp,
    gc_threshold: Ts,
) -> Result<WriteOutcome> {
    for key in op.keys() {
        check_in(range, &key)?;
    }
    match op {
        TxnOp::Commit { txn, read_ts, reads, writes } => {
            // Sent again: answered from the record of its first application.
            let once = writes.first().map(|w| applied_key(&w.key, *txn));
            if let Some(key) = &once {
                if let Some(TxnStatus::Applied(c)) = pending.get(rocks, CF_TXNS, key)? {
                    return Ok(WriteOutcome { version: c.0, changed: vec![false; writes.len()] });
                }
            }
            check_reads(range, *read_ts, reads, gc_threshold)?;
            validate(rocks, None, *read_ts, reads, Ts::MAX)?;
            for w in writes {
                if let Some(lock) = pending_lock(rocks, pending, &w.key)? {
                    return Err(lock.conflict(&w.key));
                }
            }
            check_inserts(rocks, pending, writes)?;
            let outcome =
                write_versions(rocks, pending, ts, writes.iter().map(|w| (w.key.as_slice(), w.value.as_deref())))?;
            if let Some(key) = once {
                pending.put(rocks, CF_TXNS, &key, &TxnStatus::Applied(Ts(outcome.version)))?;
            }
            Ok(outcome)
        }
        TxnOp::Prepare { txn, anchor, read_ts, reads, writes } => {
            // Every check before anything goes into the batch: a refused command leaves nothing.
            check_reads(range, *read_ts, reads, gc_threshold)?;
            let create_record = if *anchor {
                check_in(range, &txn.anchor_key)?;
                match record(rocks, pending, txn)? {
                    None => true,
                    Some(TxnStatus::Pending { .. }) => false,
                    Some(TxnStatus::Aborted | TxnStatus::Committed(_) | TxnStatus::Applied(_)) => {
                        return Err(Error::TxnAborted(format!("transaction {} ended before it prepared", txn.id)))
                    }
                }
            } else {
                false
            };
            validate(rocks, Some(txn.id), *read_ts, reads, Ts::MAX)?;
            check_inserts(rocks, pending, writes)?;
            let changed = prepare_writes(rocks, pending, txn, ts, writes)?;
            if create_record {
                put_record(rocks, pending, txn, TxnStatus::Pending { since: ts })?;
            }
            Ok(WriteOutcome { version: ts.0, changed })
        }
        TxnOp::End { txn, decision, keys } => {
            check_in(range, &txn.anchor_key)?;
            let status = match (record(rocks, pending, txn)?, decision) {
                (Some(TxnStatus::Pending { .. }), Decision::Commit(c)) => TxnStatus::Committed(*c),
                (Some(TxnStatus::Committed(c) | TxnStatus::Applied(c)), _) => TxnStatus::Committed(c),
                (None | Some(TxnStatus::Aborted), Decision::Commit(_)) => {
                    return Err(Error::TxnAborted(format!("transaction {} was aborted before it committed", txn.id)))
                }
                (_, Decision::Abort) => TxnStatus::Aborted,
            };
            put_record(rocks, pending, txn, status)?;
            let commit = match status {
                TxnStatus::Committed(c) => Some(c),
                _ => None,
            };
            let changed = resolve(rocks, pending, txn.id, commit, keys)?;
            Ok(WriteOutcome { version: commit.map_or(0, |c| c.0), changed })
        }
        TxnOp::Resolve { txn, commit, keys } => {
            let changed = resolve(rocks, pending, *txn, *commit, keys)?;
            Ok(WriteOutcome { version: commit.map_or(0, |c| c.0), changed })
        }
        TxnOp::ResolveAll { txn, commit } => {
            let keys = locked_by(rocks, range, *txn, RESOLVE_ALL_MAX)?;
            let changed = resolve(rocks, pending, *txn, *commit, &keys)?;
            Ok(WriteOutcome { version: commit.map_or(0, |c| c.0), changed })
        }
        TxnOp::Forget { txn } => {
            check_in(range, &txn.anchor_key)?;
            let decided = matches!(
                record(rocks, pending, txn)?,
                Some(TxnStatus::Committed(_) | TxnStatus::Aborted | TxnStatus::Applied(_))
            );
            if decided {
                pending.delete(rocks, CF_TXNS, &record_key(txn));
            }
            Ok(WriteOutcome { version: 0, changed: vec![decided] })
        }
    }
}

fn check_in(range: &KeyRange, key: &[u8]) -> Result<()> {
    if range.contains(key) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("key {} outside shard range", show(key))))
    }
}

/// Read spans must lie in the shard, and above its garbage-collection threshold.
fn check_reads(range: &KeyRange, read_ts: Ts, reads: &[Span], gc_threshold: Ts) -> Result<()> {
    if !reads.is_empty() && read_ts < gc_threshold {
        return Err(Error::SnapshotTooOld(format!(
            "a transaction that read at {read_ts} cannot commit below the garbage-collection threshold {gc_threshold}"
        )));
    }
    for span in reads {
        if !range.covers(&span.start, &span.end) {
            return Err(Error::InvalidInput(format!("read span {} outside shard range", show(&span.start))));
        }
    }
    Ok(())
}

/// Fails with `Error::DuplicateKey` if a write that must insert finds a live row.
fn check_inserts(rocks: &Rocks, pending: &Pending, writes: &[TxnWrite]) -> Result<()> {
    for w in writes.iter().filter(|w| w.insert) {
        if pending.row(rocks, &w.key, true)?.row.is_some() {
            return Err(Error::DuplicateKey { key: w.key.clone() });
        }
    }
    Ok(())
}

/// Locks each written key for `txn` (a key it locked already stays as it is: a prepare sent
/// again changes nothing); another transaction's lock fails the whole command, before anything
/// is added to `pending`.
/// Returns per write whether it placed a new lock.
fn prepare_writes(
    rocks: &Rocks,
    pending: &mut Pending,
    txn: &TxnMeta,
    ts: Ts,
    writes: &[TxnWrite],
) -> Result<Vec<bool>> {
    let mut new = Vec::with_capacity(writes.len());
    for w in writes {
        match pending_lock(rocks, pending, &w.key)? {
            Some(lock) if lock.txn.id == txn.id => new.push(false),
            Some(lock) => return Err(lock.conflict(&w.key)),
            None => new.push(true),
        }
    }
    let mut placed = HashSet::new();
    let mut changed = Vec::with_capacity(writes.len());
    for (w, new) in writes.iter().zip(new) {
        // A key written twice in one command is locked once.
        let place = new && placed.insert(w.key.as_slice());
        if place {
            let lock = Lock { txn: txn.clone(), ts, value: w.value.as_ref().map(|v| v.to_vec()) };
            pending.put(rocks, CF_LOCKS, &w.key, &lock)?;
        }
        changed.push(place);
    }
    Ok(changed)
}

/// How many locks applying `op` with this outcome added (positive) or dropped (negative).
pub(crate) fn lock_delta(op: &TxnOp, outcome: &WriteOutcome) -> i64 {
    let n = outcome.changed.iter().filter(|c| **c).count() as i64;
    match op {
        TxnOp::Prepare { .. } => n,
        TxnOp::End { .. } | TxnOp::Resolve { .. } | TxnOp::ResolveAll { .. } => -n,
        TxnOp::Commit { .. } | TxnOp::Forget { .. } => 0,
    }
}

/// Resolves `txn`'s locks on `keys`: into versions at `commit`, or dropped. Returns per key
/// whether it held a lock of `txn`.
fn resolve(
    rocks: &Rocks,
    pending: &mut Pending,
    txn: TxnId,
    commit: Option<Ts>,
    keys: &[Vec<u8>],
) -> Result<Vec<bool>> {
    let mut changed = Vec::with_capacity(keys.len());
    let mut seen = HashSet::with_capacity(keys.len());
    let mut committed = Vec::new();
    for key in keys {
        let ours = match pending_lock(rocks, pending, key)? {
            Some(lock) if lock.txn.id == txn && seen.insert(key.as_slice()) => Some(lock),
            _ => None,
        };
        changed.push(ours.is_some());
        if let Some(lock) = ours {
            pending.delete(rocks, CF_LOCKS, key);
            if commit.is_some() {
                committed.push((key.as_slice(), lock.value));
            }
        }
    }
    if let Some(c) = commit {
        write_versions(rocks, pending, c, committed.iter().map(|(k, v)| (*k, v.as_deref())))?;
    }
    Ok(changed)
}

/// Writes each `(key, value or deletion)` as a version at `ts`, or just above the newest
/// version of any of the keys if that is at or above `ts` (deterministic, as for stamped
/// writes). A deletion of a key without a live row leaves no version. Returns the version used
/// and, per write, whether it changed a row.
fn write_versions<'a>(
    rocks: &Rocks,
    pending: &mut Pending,
    ts: Ts,
    writes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Result<WriteOutcome> {
    let mut staged = Vec::new();
    let mut version = ts;
    for (key, value) in writes {
        let current = pending.row(rocks, key, true)?;
        if let Some(newest) = current.newest {
            version = version.max(Ts(newest).next());
        }
        let existed = current.row.is_some();
        staged.push((key, value, existed));
    }
    let mut changed = Vec::with_capacity(staged.len());
    for (key, value, existed) in staged {
        if value.is_some() || existed {
            pending.put_version(rocks, key, version, value);
        }
        changed.push(value.is_some() || existed);
    }
    Ok(WriteOutcome { version: version.0, changed })
}

#[cfg(test)]
mod tests {
    //! The transaction commands on two local shards (`LocalShards` applies them as Raft would):
    //! what locks block, what validation refuses, and how a record decides once.

    use raftable_common::{ShardClient, ShardCommand, ShardRead, ShardWrite, WriteOp};

    use super::*;
    use crate::LocalShards;

    const A: u64 = 1;
    const B: u64 = 2;

    fn shards() -> (tempfile::TempDir, LocalShards) {
        let dir = tempfile::tempdir().unwrap();
        let shards = LocalShards::new(Rocks::open(dir.path()).unwrap());
        shards.add_shard(A, KeyRange::new(vec![1, b'a'], vec![1, b'm']));
        shards.add_shard(B, KeyRange::new(vec![1, b'm'], vec![2]));
        (dir, shards)
    }

    fn k(name: &str) -> Vec<u8> {
        [&[1u8][..], name.as_bytes()].concat()
    }

    fn meta(id: u128) -> TxnMeta {
        TxnMeta { id: TxnId(id), anchor: A, anchor_key: k("a") }
    }

    async fn put(shards: &LocalShards, shard: u64, key: &str, value: &str) -> Result<WriteOutcome> {
        let op = WriteOp::Put { key: k(key), value: value.as_bytes().to_vec() };
        shards.write(shard, ShardWrite::new(vec![op])).await
    }

    async fn get_at(shards: &LocalShards, shard: u64, key: &str, ts: Ts) -> Result<Option<String>> {
        let rows = if ts == Ts::MAX {
            shards.read(shard, ShardRead::Get { key: k(key) }).await?
        } else {
            shards.read_at(shard, ShardRead::Get { key: k(key) }, ts).await?
        };
        Ok(rows.into_iter().next().map(|r| String::from_utf8(r.value).unwrap()))
    }

    fn prepare(id: u128, anchor: bool, read_ts: Ts, reads: Vec<Span>, writes: &[(&str, &str)]) -> TxnOp {
        let writes = writes.iter().map(|(key, v)| TxnWrite::put(k(key), v.as_bytes().to_vec())).collect();
        TxnOp::Prepare { txn: meta(id), anchor, read_ts, reads, writes }
    }

    /// Two-phase commit across shards: locks block reads that could see the commit and every
    /// write, reads below the prepare ignore them, and the decision turns them into versions.
    #[tokio::test]
    async fn prepared_locks_block_until_resolved_into_versions() {
        let (_dir, shards) = shards();
        put(&shards, A, "a", "a0").await.unwrap();
        put(&shards, B, "x", "x0").await.unwrap();
        let read_ts = shards.snapshot().await.unwrap();
        let pa = shards.txn(A, prepare(7, true, read_ts, vec![Span::point(&k("a"))], &[("a", "a1")])).await.unwrap();
        let pb = shards.txn(B, prepare(7, false, read_ts, vec![], &[("x", "x1"), ("y", "y1")])).await.unwrap();
        let (pa, pb) = (Ts(pa.version), Ts(pb.version));
        // Below the prepare: the old rows, no waiting. At or above, and the newest: locked,
        // also for a key the transaction inserts and for a scan over it.
        assert_eq!(get_at(&shards, B, "x", Ts(pb.0 - 1)).await.unwrap().as_deref(), Some("x0"));
        assert!(matches!(get_at(&shards, B, "x", pb).await, Err(Error::Locked { .. })));
        assert!(matches!(get_at(&shards, B, "y", Ts::MAX).await, Err(Error::Locked { .. })));
        let scan = ShardRead::Scan { start: k("m"), end: vec![], limit: None, reverse: false };
        assert!(matches!(shards.read(B, scan.clone()).await, Err(Error::Locked { key, .. }) if key == k("x")));
        // Writes to a locked key fail whole, whatever their kind.
        assert!(matches!(put(&shards, B, "y", "other").await, Err(Error::Locked { .. })));
        let other = prepare(8, false, read_ts, vec![], &[("x", "no")]);
        assert!(matches!(shards.txn(B, other).await, Err(Error::Locked { .. })));
        // A prepare sent again changes nothing.
        shards.txn(B, prepare(7, false, read_ts, vec![], &[("x", "x1"), ("y", "y1")])).await.unwrap();
        // The commit point on the anchor resolves its own locks; then the other shard's.
        let c = pa.max(pb);
        let end = TxnOp::End { txn: meta(7), decision: Decision::Commit(c), keys: vec![k("a")] };
        assert_eq!(shards.txn(A, end).await.unwrap().version, c.0);
        assert_eq!(get_at(&shards, A, "a", Ts::MAX).await.unwrap().as_deref(), Some("a1"));
        let resolve = TxnOp::Resolve { txn: TxnId(7), commit: Some(c), keys: vec![k("x"), k("y"), k("z")] };
        assert_eq!(shards.txn(B, resolve).await.unwrap().changed, [true, true, false]);
        assert_eq!(get_at(&shards, B, "y", c).await.unwrap().as_deref(), Some("y1"));
        assert_eq!(get_at(&shards, B, "x", Ts(c.0 - 1)).await.unwrap().as_deref(), Some("x0"));
        assert_eq!(shards.read(B, scan).await.unwrap().len(), 2);
        // Decided: the record may go; a second Forget finds nothing.
        assert_eq!(shards.txn(A, TxnOp::Forget { txn: meta(7) }).await.unwrap().changed, [true]);
        assert_eq!(shards.txn(A, TxnOp::Forget { txn: meta(7) }).await.unwrap().changed, [false]);
    }

    /// What a shard about to be dropped waits for: its locks (reported as `Locked`, to be
    /// settled), then the records of two-phase transactions (not one-phase commits'). Dropped,
    /// it is gone whole: rows, locks, records, Raft state; the other shard keeps its own.
    #[tokio::test]
    async fn unsettled_reports_locks_then_records_and_a_dropped_shard_is_gone() {
        let (_dir, shards) = shards();
        let unsettled = |limit| ShardRead::Unsettled { limit };
        put(&shards, A, "a", "a0").await.unwrap();
        let read_ts = shards.snapshot().await.unwrap();
        let writes = vec![TxnWrite::put(k("b"), b"b1".to_vec())];
        let commit = TxnOp::Commit { txn: TxnId(5), read_ts, reads: vec![], writes };
        shards.txn(A, commit).await.unwrap();
        assert!(shards.read(A, unsettled(10)).await.unwrap().is_empty(), "one-phase records do not count");
        let pa = shards.txn(A, prepare(7, true, read_ts, vec![], &[("a", "a1")])).await.unwrap();
        let pb = shards.txn(B, prepare(7, false, read_ts, vec![], &[("x", "x1")])).await.unwrap();
        assert!(matches!(shards.read(A, unsettled(0)).await, Err(Error::Locked { key, .. }) if key == k("a")));
        let c = Ts(pa.version.max(pb.version));
        let end = TxnOp::End { txn: meta(7), decision: Decision::Commit(c), keys: vec![k("a")] };
        shards.txn(A, end).await.unwrap();
        // No lock left on A; its record stays while B's lock may need it.
        assert_eq!(shards.read(A, unsettled(0)).await.unwrap().len(), 0);
        assert_eq!(shards.read(A, unsettled(10)).await.unwrap().len(), 1);
        shards.txn(B, TxnOp::ResolveAll { txn: TxnId(7), commit: Some(c) }).await.unwrap();
        shards.txn(A, TxnOp::Forget { txn: meta(7) }).await.unwrap();
        assert!(shards.read(A, unsettled(10)).await.unwrap().is_empty());

        // A prepared lock and a record left behind go with the shard.
        shards.txn(A, prepare(9, true, shards.snapshot().await.unwrap(), vec![], &[("c", "c1")])).await.unwrap();
        shards.remove_shard(A).await.unwrap();
        assert!(shards.read(A, ShardRead::Get { key: k("a") }).await.is_err(), "no shard A any more");
        assert_eq!(get_at(&shards, B, "x", Ts::MAX).await.unwrap().as_deref(), Some("x1"));
        shards.add_shard(A, KeyRange::new(vec![1, b'a'], vec![1, b'm']));
        let scan = ShardRead::Scan { start: k("a"), end: k("m"), limit: None, reverse: false };
        assert!(shards.read(A, scan).await.unwrap().is_empty(), "its rows are deleted");
        assert!(shards.read(A, unsettled(10)).await.unwrap().is_empty(), "its lock and record too");
    }

    /// The record decides once: an abort before the anchor's prepare makes the prepare fail,
    /// a commit after an abort fails, an abort after a commit reports the commit.
    #[tokio::test]
    async fn the_record_decides_once() {
        let (_dir, shards) = shards();
        let read_ts = shards.snapshot().await.unwrap();
        let abort = |id| TxnOp::End { txn: meta(id), decision: Decision::Abort, keys: vec![] };
        // Pushed before its anchor prepared: the prepare fails, the locks elsewhere are dropped.
        shards.txn(B, prepare(1, false, read_ts, vec![], &[("x", "1")])).await.unwrap();
        assert_eq!(shards.txn(A, abort(1)).await.unwrap().version, 0);
        let late = shards.txn(A, prepare(1, true, read_ts, vec![], &[("a", "1")])).await;
        assert!(matches!(late, Err(Error::TxnAborted(_))), "{late:?}");
        let commit = TxnOp::End { txn: meta(1), decision: Decision::Commit(Ts(read_ts.0 + 9)), keys: vec![] };
        assert!(matches!(shards.txn(A, commit).await, Err(Error::TxnAborted(_))));
        shards.txn(B, TxnOp::Resolve { txn: TxnId(1), commit: None, keys: vec![k("x")] }).await.unwrap();
        assert_eq!(get_at(&shards, B, "x", Ts::MAX).await.unwrap(), None);
        // Committed first: a later abort (a pusher) learns the commit timestamp; the decision
        // sent again is answered the same.
        let p = shards.txn(A, prepare(2, true, read_ts, vec![], &[("b", "2")])).await.unwrap();
        let c = Ts(p.version);
        let end = TxnOp::End { txn: meta(2), decision: Decision::Commit(c), keys: vec![k("b")] };
        assert_eq!(shards.txn(A, end.clone()).await.unwrap().version, c.0);
        assert_eq!(shards.txn(A, end).await.unwrap().version, c.0);
        assert_eq!(shards.txn(A, abort(2)).await.unwrap().version, c.0);
        assert_eq!(get_at(&shards, A, "b", Ts::MAX).await.unwrap().as_deref(), Some("2"));
        // Whoever learns the outcome resolves every lock of it on a shard without its keys,
        // and only its locks.
        let writes: Vec<(&str, &str)> = vec![("p", "1"), ("q", "1"), ("r", "1")];
        shards.txn(B, prepare(2, false, read_ts, vec![], &writes)).await.unwrap();
        shards.txn(B, prepare(3, false, read_ts, vec![], &[("s", "3")])).await.unwrap();
        let all = TxnOp::ResolveAll { txn: TxnId(2), commit: Some(c) };
        assert_eq!(shards.txn(B, all.clone()).await.unwrap().changed, [true, true, true]);
        assert_eq!(get_at(&shards, B, "q", Ts::MAX).await.unwrap().as_deref(), Some("1"));
        assert!(matches!(get_at(&shards, B, "s", Ts::MAX).await, Err(Error::Locked { .. })));
        assert!(shards.txn(B, all).await.unwrap().changed.is_empty(), "nothing left");
    }

    /// One-phase commits and read validation refuse a read that a later write made stale, and
    /// another transaction's lock; a transaction's own locks, and locks above the validation
    /// timestamp, do not count.
    #[tokio::test]
    async fn validation_refuses_stale_reads() {
        let (_dir, shards) = shards();
        put(&shards, A, "c", "1").await.unwrap();
        let read_ts = shards.snapshot().await.unwrap();
        let range = Span::new(k("b"), k("d"));
        let one_pc = |txn, reads: Vec<Span>| TxnOp::Commit {
            txn: TxnId(txn),
            read_ts,
            reads,
            writes: vec![TxnWrite::put(k("c"), b"2".to_vec()), TxnWrite::delete(k("e"))],
        };
        // Nothing written since: commits, deleting an absent key changes nothing.
        let out = shards.txn(A, one_pc(1, vec![range.clone()])).await.unwrap();
        assert_eq!(out.changed, [true, false]);
        assert!(Ts(out.version) > read_ts);
        // Now `c` changed after `read_ts`: the same commit, and a validation, conflict; a span
        // beside it does not.
        let stale = shards.txn(A, one_pc(2, vec![range.clone()])).await;
        assert!(matches!(stale, Err(Error::TxnConflict(_))), "{stale:?}");
        let now = shards.snapshot().await.unwrap();
        let validate = |txn, spans| ShardRead::Validate { txn: TxnId(txn), since: read_ts, spans };
        let v = shards.read_at(A, validate(9, vec![range]), now).await;
        assert!(matches!(v, Err(Error::TxnConflict(_))), "{v:?}");
        shards.read_at(A, validate(9, vec![Span::new(k("d"), k("f"))]), now).await.unwrap();
        // A lock in the span: another transaction's conflicts, its own does not, and one
        // placed above the validation timestamp does not either.
        let p = shards.txn(A, prepare(5, true, now, vec![], &[("f", "x")])).await.unwrap();
        let since_now = |txn| ShardRead::Validate { txn: TxnId(txn), since: now, spans: vec![Span::point(&k("f"))] };
        let v = shards.read_at(A, since_now(6), Ts(p.version)).await;
        assert!(matches!(v, Err(Error::Locked { .. })), "{v:?}");
        shards.read_at(A, since_now(5), Ts(p.version)).await.unwrap();
        shards.read_at(A, since_now(6), Ts(p.version - 1)).await.unwrap();
        let blocked = TxnOp::Commit { txn: TxnId(3), read_ts: now, reads: vec![Span::point(&k("f"))], writes: vec![] };
        assert!(matches!(shards.txn(A, blocked).await, Err(Error::Locked { .. })));
    }

    /// A refused command leaves nothing behind: no record from an anchor prepare whose
    /// validation failed, no lock from one whose insert found the key taken.
    #[tokio::test]
    async fn refused_commands_leave_nothing() {
        let (_dir, shards) = shards();
        let read_ts = shards.snapshot().await.unwrap();
        put(&shards, A, "a", "later").await.unwrap();
        let stale = prepare(3, true, read_ts, vec![Span::point(&k("a"))], &[("b", "x")]);
        assert!(matches!(shards.txn(A, stale).await, Err(Error::TxnConflict(_))));
        let commit = TxnOp::End { txn: meta(3), decision: Decision::Commit(Ts(read_ts.0 + 1)), keys: vec![] };
        assert!(matches!(shards.txn(A, commit).await, Err(Error::TxnAborted(_))), "no record was created");
        assert_eq!(get_at(&shards, A, "b", Ts::MAX).await.unwrap(), None, "and no lock");
        // An insert of a taken key, in a prepare and in a one-phase commit.
        let now = shards.snapshot().await.unwrap();
        let insert = |key: &str| vec![TxnWrite::insert(k(key), b"new".to_vec()), TxnWrite::put(k("c"), b"c".to_vec())];
        let taken = TxnOp::Prepare { txn: meta(4), anchor: true, read_ts: now, reads: vec![], writes: insert("a") };
        assert_eq!(shards.txn(A, taken).await.unwrap_err(), Error::DuplicateKey { key: k("a") });
        assert_eq!(get_at(&shards, A, "c", Ts::MAX).await.unwrap(), None, "no lock left on c");
        let taken = TxnOp::Commit { txn: TxnId(10), read_ts: now, reads: vec![], writes: insert("a") };
        assert_eq!(shards.txn(A, taken).await.unwrap_err(), Error::DuplicateKey { key: k("a") });
        let free = TxnOp::Commit { txn: TxnId(11), read_ts: now, reads: vec![], writes: insert("d") };
        shards.txn(A, free).await.unwrap();
        assert_eq!(get_at(&shards, A, "d", Ts::MAX).await.unwrap().as_deref(), Some("new"));
    }

    /// A one-phase commit sent again (its reply lost, or retried at a new leader while the
    /// first attempt was still in flight) is answered with the first application's timestamp
    /// and applies nothing: an insert does not turn into a duplicate-key error, a read-write
    /// commit not into a conflict with itself. Its record goes with old versions.
    #[tokio::test]
    async fn a_one_phase_commit_sent_again_is_answered_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        let shards = LocalShards::new(rocks.clone());
        let range = KeyRange::new(k("a"), k("m"));
        shards.add_shard(A, range.clone());
        let now = shards.snapshot().await.unwrap();
        let insert = TxnOp::Commit {
            txn: TxnId(30),
            read_ts: now,
            reads: vec![Span::point(&k("g"))],
            writes: vec![TxnWrite::insert(k("g"), b"1".to_vec())],
        };
        let first = shards.txn(A, insert.clone()).await.unwrap();
        put(&shards, A, "h", "later").await.unwrap();
        let again = shards.txn(A, insert.clone()).await.unwrap();
        assert_eq!(again.version, first.version);
        let versions = rocks.data_range(&k("g"), &k("h"), false).count();
        assert_eq!(versions, 1, "applied once");
        // Another transaction's identical command is a new one.
        let other = TxnOp::Commit { txn: TxnId(31), read_ts: now, reads: vec![], writes: insert_writes(&insert) };
        assert_eq!(shards.txn(A, other).await.unwrap_err(), Error::DuplicateKey { key: k("g") });

        // Collected once the threshold is past its timestamp by the margin, not before.
        let rocks = rocks.as_ref();
        let applied = Ts(first.version).physical_ms();
        let early = Ts::new(applied + APPLIED_MARGIN_MS, 0);
        assert!(expired_records(rocks, &range.start, &range.end, early, 10).unwrap().is_empty());
        let late = Ts::new(applied + APPLIED_MARGIN_MS + 1, 0);
        let records = expired_records(rocks, &range.start, &range.end, late, 10).unwrap();
        assert_eq!(records.len(), 1);
        let mut pending = Pending::new();
        let gc = ShardCommand::Gc { threshold: late, versions: Vec::new(), records };
        crate::shard::apply(rocks, &mut pending, &range, &gc, 1, Ts::MIN).unwrap();
        rocks.write(pending.take()).unwrap();
        assert!(expired_records(rocks, &range.start, &range.end, late, 10).unwrap().is_empty());
        // Without its record the same command is judged anew (by then nobody sends it): its
        // read of `g` is stale now, which is what a lost reply's retry would have been told.
        let late_retry = shards.txn(A, insert).await;
        assert!(matches!(late_retry, Err(Error::TxnConflict(_))), "{late_retry:?}");
    }

    fn insert_writes(op: &TxnOp) -> Vec<TxnWrite> {
        match op {
            TxnOp::Commit { writes, .. } => writes.clone(),
            _ => unreachable!("a one-phase commit"),
        }
    }
}
