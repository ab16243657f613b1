//! [`StateMachine`]: openraft's state machine (storage-v2) for one group: the rows of the
//! group's key range in the `data` column family (and on a table shard its locks and
//! transaction records in `locks` and `txns`), plus its applied log id, membership and last
//! snapshot in `raft_state`.
//!
//! Invariant: the rows and the applied log id change together, in one write batch, so after a
//! crash the state machine is exactly "everything up to applied", and openraft re-applies the
//! committed entries after it. Apply is deterministic; an I/O failure during apply aborts the
//! process instead of returning, since a replica that skipped an entry would diverge.

// openraft's storage traits fix the error type (StorageError, ~224 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use raftable_common::{KeyRange, Result, ShardCommand, Ts};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::keys::{self, CF_DATA, CF_LOCKS, CF_RAFT_STATE, CF_TXNS};
use crate::pending::Pending;
use crate::rocks::{fatal, io, Coverage, Rocks};
use crate::shard;
use crate::txn;
use crate::types::{Entry, NodeInfo, TypeConfig, WriteResult};

type StorageResult<T> = std::result::Result<T, StorageError<u64>>;
type Membership = StoredMembership<u64, NodeInfo>;
type Meta = SnapshotMeta<u64, NodeInfo>;

/// The replicated state of one group: its key range's rows.
pub struct StateMachine {
    rocks: Arc<Rocks>,
    group: u64,
    range: KeyRange,
    applied: Option<LogId<u64>>,
    membership: Membership,
    coverage: Arc<Coverage>,
}

/// The snapshot payload: every stored entry of the range (key and value as stored: every
/// version of every row on a table shard), its locks and transaction records, and the
/// garbage-collection threshold.
#[derive(Serialize, Deserialize, Default)]
struct SnapshotRows {
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    locks: Vec<(Vec<u8>, Vec<u8>)>,
    txns: Vec<(Vec<u8>, Vec<u8>)>,
    gc_threshold: Ts,
}

impl StateMachine {
    /// Opens the state machine of `group` owning `range`, recording the range so the node can
    /// reopen the group after a restart.
    pub async fn open(rocks: Arc<Rocks>, group: u64, range: KeyRange) -> Result<Self> {
        let get = |tag| rocks.db().get_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, tag));
        // APPLIED holds an Option<LogId> (None until the first entry is applied).
        let applied: Option<Option<LogId<u64>>> =
            get(keys::APPLIED).map_err(io)?.map(|raw| bincode::deserialize(&raw)).transpose()?;
        let applied = applied.flatten();
        let membership: Option<Membership> =
            get(keys::MEMBERSHIP).map_err(io)?.map(|raw| bincode::deserialize(&raw)).transpose()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, keys::RANGE), bincode::serialize(&range)?);
        rocks.write_durable(batch).await?;
        let threshold: Option<Ts> =
            get(keys::GC_THRESHOLD).map_err(io)?.map(|raw| bincode::deserialize(&raw)).transpose()?;
        let coverage = rocks.coverage(group);
        coverage.raise(applied.map(|l| l.index).unwrap_or(0));
        coverage.gc_threshold.store(threshold.unwrap_or(Ts::MIN).0, SeqCst);
        rocks.count_locks(group, &range)?;
        Ok(Self { rocks, group, range, applied, membership: membership.unwrap_or_default(), coverage })
    }

    /// The key range recorded for `group` on this node, if the group was ever opened here.
    pub fn stored_range(rocks: &Rocks, group: u64) -> Result<Option<KeyRange>> {
        let raw = rocks.db().get_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, keys::RANGE)).map_err(io)?;
        Ok(raw.map(|raw| bincode::deserialize(&raw)).transpose()?)
    }

    pub fn range(&self) -> &KeyRange {
        &self.range
    }

    fn state_put(&self, batch: &mut WriteBatch, tag: u8, value: &impl Serialize) -> StorageResult<()> {
        let raw = bincode::serialize(value).map_err(|e| sm_write_err(&e))?;
        batch.put_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, tag), raw);
        Ok(())
    }

    fn range_end(&self) -> Vec<u8> {
        self.range.end_or_max().to_vec()
    }

    /// Writes what an apply call applied up to `applied` (plus the membership if it changed)
    /// as one batch, so later entries read RocksDB as every replica sees it, however entries
    /// were grouped into apply calls; then drops the locks counted as `released`.
    fn flush(
        &self,
        pending: &mut Pending,
        released: &mut i64,
        applied: Option<LogId<u64>>,
        membership: bool,
    ) -> StorageResult<()> {
        self.state_put(pending.batch(), keys::APPLIED, &applied)?;
        if membership {
            self.state_put(pending.batch(), keys::MEMBERSHIP, &self.membership)?;
        }
        if let Err(e) = self.rocks.write(pending.take()) {
            fatal(&format!("writing applied entries of group {} failed: {e}", self.group));
        }
        // Locks are counted before they are written and dropped after (`Coverage::locks`:
        // reads skip the lock check while it is 0).
        self.coverage.locks.fetch_add(std::mem::take(released), SeqCst);
        Ok(())
    }

    /// Every stored entry of the range (rows, locks, records), read from one consistent
    /// RocksDB snapshot.
    fn dump_rows(&self) -> Result<SnapshotRows> {
        let snap = self.rocks.db().snapshot();
        let dump = |cf: &str| -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(self.range.start.clone());
            opts.set_iterate_upper_bound(self.range_end());
            let mut rows = Vec::new();
            for item in snap.iterator_cf_opt(self.rocks.cf(cf), opts, IteratorMode::Start) {
                let (k, v) = item.map_err(io)?;
                rows.push((k.to_vec(), v.to_vec()));
            }
            Ok(rows)
        };
        Ok(SnapshotRows {
            rows: dump(CF_DATA)?,
            locks: dump(CF_LOCKS)?,
            txns: dump(CF_TXNS)?,
            gc_threshold: Ts(self.coverage.gc_threshold.load(SeqCst)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<WriteResult>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // One batch for the whole call (`Pending`), written early only where an entry must
        // read RocksDB as every replica sees it.
        let mut pending = Pending::new();
        let mut released = 0;
        let mut results = Vec::new();
        let mut membership_changed = false;
        for entry in entries {
            let before = self.applied;
            self.applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(Default::default()),
                EntryPayload::Normal(command) => {
                    let index = entry.log_id.index;
                    let scans = matches!(&command, ShardCommand::Txn { op, .. } if txn::scans(op));
                    if scans && !pending.is_empty() {
                        // Its scans read RocksDB alone: write what this call applied so far.
                        self.flush(&mut pending, &mut released, before, membership_changed)?;
                    }
                    let threshold = Ts(self.coverage.gc_threshold.load(SeqCst));
                    let result = shard::apply(&self.rocks, &mut pending, &self.range, &command, index, threshold);
                    match (&command, result) {
                        (_, Err(e)) if !e.is_deterministic() => {
                            fatal(&format!("apply of group {} index {index} failed: {e}", self.group))
                        }
                        (ShardCommand::Gc { threshold, .. }, Ok(outcome)) => {
                            // Reads below the threshold are refused before its versions go.
                            let before = self.coverage.gc_threshold.fetch_max(threshold.0, SeqCst);
                            self.state_put(pending.batch(), keys::GC_THRESHOLD, &Ts(before.max(threshold.0)))?;
                            // `Pending` cannot express deletions of old versions: write what
                            // this call applied so far (with the applied id, as one batch).
                            self.flush(&mut pending, &mut released, self.applied, membership_changed)?;
                            Ok(outcome)
                        }
                        (ShardCommand::Txn { op, .. }, Ok(outcome)) => {
                            match txn::lock_delta(op, &outcome) {
                                placed if placed > 0 => {
                                    self.coverage.locks.fetch_add(placed, SeqCst);
                                }
                                dropped => released += dropped,
                            }
                            Ok(outcome)
                        }
                        (_, result) => result,
                    }
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    membership_changed = true;
                    Ok(Default::default())
                }
            };
            results.push(result);
        }
        self.flush(&mut pending, &mut released, self.applied, membership_changed)?;
        self.coverage.raise(self.applied.map(|l| l.index).unwrap_or(0));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The rows are copied here, while apply cannot run (we hold &mut self), so rows,
        // applied id and membership are one consistent cut. For simplicity the snapshot is held
        // in memory; a shard large enough for that to matter should be split.
        let rows = self.dump_rows().unwrap_or_else(|e| fatal(&format!("snapshot read failed: {e}")));
        SnapshotBuilder {
            rocks: self.rocks.clone(),
            group: self.group,
            applied: self.applied,
            membership: self.membership.clone(),
            rows,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        self.coverage.installing.store(true, SeqCst);
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let payload: SnapshotRows = bincode::deserialize(&data).map_err(|e| sm_write_err(&e))?;
        // Replace exactly this group's range: delete it whole, then write the snapshot's rows,
        // the applied id and the membership, all in one batch.
        let mut batch = WriteBatch::default();
        for (name, entries) in [(CF_DATA, &payload.rows), (CF_LOCKS, &payload.locks), (CF_TXNS, &payload.txns)] {
            let cf = self.rocks.cf(name);
            batch.delete_range_cf(cf, self.range.start.clone(), self.range_end());
            for (k, v) in entries {
                batch.put_cf(cf, k, v);
            }
        }
        self.state_put(&mut batch, keys::GC_THRESHOLD, &payload.gc_threshold)?;
        self.coverage.gc_threshold.fetch_max(payload.gc_threshold.0, SeqCst);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.state_put(&mut batch, keys::APPLIED, &self.applied)?;
        self.state_put(&mut batch, keys::MEMBERSHIP, &self.membership)?;
        self.state_put(&mut batch, keys::SNAPSHOT, &(meta, &data))?;
        let _snapshot = self.coverage.snapshot.lock().await;
        // Locks counted before they appear, and no lower until the old ones are gone.
        self.coverage.locks.fetch_max(payload.locks.len() as i64, SeqCst);
        self.rocks.write_durable(batch).await.map_err(|e| sm_write_err(&e))?;
        self.coverage.locks.store(payload.locks.len() as i64, SeqCst);
        self.coverage.raise(self.applied.map(|l| l.index).unwrap_or(0));
        self.coverage.installing.store(false, SeqCst);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let raw = self
            .rocks
            .db()
            .get_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, keys::SNAPSHOT))
            .map_err(|e| sm_read_err(&io(e)))?;
        let Some(raw) = raw else { return Ok(None) };
        let (meta, data): (Meta, Vec<u8>) = bincode::deserialize(&raw).map_err(|e| sm_read_err(&e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Builds a snapshot from rows captured by [`StateMachine::get_snapshot_builder`] and keeps it
/// as the group's current snapshot.
pub struct SnapshotBuilder {
    rocks: Arc<Rocks>,
    group: u64,
    applied: Option<LogId<u64>>,
    membership: Membership,
    rows: SnapshotRows,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let payload = std::mem::take(&mut self.rows);
        let data = bincode::serialize(&payload).map_err(|e| sm_write_err(&e))?;
        let index = self.applied.map(|l| l.index).unwrap_or(0);
        let term = self.applied.map(|l| l.leader_id.term).unwrap_or(0);
        let meta = Meta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{term}-{index}", self.group),
        };
        let coverage = self.rocks.coverage(self.group);
        let _snapshot = coverage.snapshot.lock().await;
        // A build runs beside apply and installs: if a newer snapshot was installed meanwhile,
        // keep that one as the group's current snapshot.
        if stored_snapshot_index(&self.rocks, self.group)?.is_none_or(|stored| stored < index) {
            let mut batch = WriteBatch::default();
            let raw = bincode::serialize(&(&meta, &data)).map_err(|e| sm_write_err(&e))?;
            batch.put_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, keys::SNAPSHOT), raw);
            self.rocks.write_durable(batch).await.map_err(|e| sm_write_err(&e))?;
        }
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

/// Last log index of the group's stored snapshot (`Some(0)` for an empty one), `None` when it
/// has none. Decodes only the metadata at the front of the stored (meta, data) pair.
fn stored_snapshot_index(rocks: &Rocks, group: u64) -> StorageResult<Option<u64>> {
    let raw = rocks
        .db()
        .get_pinned_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, keys::SNAPSHOT))
        .map_err(|e| sm_read_err(&io(e)))?;
    let Some(raw) = raw else { return Ok(None) };
    let meta: Meta = bincode::deserialize(&raw).map_err(|e| sm_read_err(&e))?;
    Ok(Some(meta.last_log_id.map(|l| l.index).unwrap_or(0)))
}

fn sm_write_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(e)).into()
}

fn sm_read_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::read_state_machine(AnyError::new(e)).into()
}
