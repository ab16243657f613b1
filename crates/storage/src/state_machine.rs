//! [`StateMachine`]: openraft's state machine (storage-v2) for one group: the rows of the
//! group's key range in the `data` column family (and on a table shard its locks and
//! transaction records in `locks` and `txns`), plus its applied log id, membership and current
//! snapshot (metadata and file name; the file itself is `snapshot.rs`'s) in `raft_state`.
//!
//! Invariant: the rows and the applied log id change together, in one write batch, so after a
//! crash the state machine is exactly "everything up to applied", and openraft re-applies the
//! committed entries after it. Apply is deterministic; an I/O failure during apply aborts the
//! process instead of returning, since a replica that skipped an entry would diverge. A
//! snapshot install is too large for one batch: it is marked (`keys::INSTALLING`) durably
//! before it touches a row, written in bounded batches, and redone from its file at the next
//! open if a crash interrupted it.

// openraft's storage traits fix the error type (StorageError, ~224 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use raftable_common::{Error, KeyRange, Result, ShardCommand, Ts};
use rocksdb::WriteBatch;
use serde::Serialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::keys::{self, CF_RAFT_STATE};
use crate::pending::Pending;
use crate::rocks::{fatal, io, Coverage, Rocks};
use crate::snapshot::{self, Summary};
use crate::types::{Entry, NodeInfo, TypeConfig, WriteResult};
use crate::{shard, txn};

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
    /// The file the snapshot being received is written to, and how many were begun.
    receiving: Option<PathBuf>,
    received: u64,
}

/// Bytes of rows an install writes per RocksDB write.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

impl StateMachine {
    /// Opens the state machine of `group` owning `range`, recording the range so the node can
    /// reopen the group after a restart.
    pub async fn open(rocks: Arc<Rocks>, group: u64, range: KeyRange) -> Result<Self> {
        let dir = snapshot::dir(&rocks);
        std::fs::create_dir_all(&dir)?;
        let current = stored_snapshot(&rocks, group)?;
        let get = |tag| rocks.db().get_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, tag));
        if get(keys::INSTALLING).map_err(io)?.is_some() {
            let (meta, name) =
                current.as_ref().ok_or_else(|| Error::InvalidData("install without a snapshot".into()))?;
            tracing::warn!(group, snapshot = %meta.snapshot_id, "redoing a snapshot install a crash interrupted");
            load(&rocks, group, &range, meta, dir.join(name)).await?;
        }
        snapshot::remove_stale(&dir, group, current.as_ref().map(|(_, name)| name.as_str()))?;
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
        let membership = membership.unwrap_or_default();
        Ok(Self { rocks, group, range, applied, membership, coverage, receiving: None, received: 0 })
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
        put_state(&self.rocks, batch, self.group, tag, value).map_err(|e| sm_write_err(&e))
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
        // The file is written here, while apply cannot run (we hold &mut self), so rows, applied
        // id and membership are one consistent cut. Apply waits for it (a sequential write of
        // the range: about a second per few hundred MB); memory stays bounded. On a
        // multi-threaded runtime the other tasks of this worker thread move to another one
        // meanwhile (`block_in_place`), so other groups' heartbeats do not wait for it.
        let (term, index) = log_position(self.applied);
        let name = snapshot::file_name(self.group, term, index);
        let building = snapshot::dir(&self.rocks).join(format!("{name}.building"));
        let threshold = Ts(self.coverage.gc_threshold.load(SeqCst));
        let write = || snapshot::write(&self.rocks, &self.range, threshold, &building);
        let written = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(write),
            _ => write(),
        };
        if let Err(e) = written {
            fatal(&format!("writing a snapshot of group {} failed: {e}", self.group));
        }
        SnapshotBuilder {
            rocks: self.rocks.clone(),
            group: self.group,
            applied: self.applied,
            membership: self.membership.clone(),
            building,
            name,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        self.coverage.installing.store(true, SeqCst);
        if let Some(abandoned) = self.receiving.take() {
            let _ = std::fs::remove_file(abandoned);
        }
        self.received += 1;
        let path = snapshot::dir(&self.rocks).join(format!("{}-receiving-{}", self.group, self.received));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| sm_write_err(&e))?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> StorageResult<()> {
        let mut file = *snapshot;
        let received = self.receiving.take();
        let dir = snapshot::dir(&self.rocks);
        let (term, index) = log_position(meta.last_log_id);
        let name = snapshot::file_name(self.group, term, index);
        let path = dir.join(&name);
        // openraft wrote the chunks into the file begun above; a snapshot handed over whole (a
        // file of another store, as openraft's test suite does) is copied first.
        let source = match received {
            Some(received) if same_file(&file, &received).await.map_err(|e| sm_read_err(&e))? => received,
            received => {
                let copy = dir.join(format!("{name}.copying"));
                let mut out = tokio::fs::File::create(&copy).await.map_err(|e| sm_write_err(&e))?;
                file.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| sm_read_err(&e))?;
                tokio::io::copy(&mut file, &mut out).await.map_err(|e| sm_write_err(&e))?;
                file = out;
                if let Some(received) = received {
                    let _ = std::fs::remove_file(received);
                }
                copy
            }
        };
        file.flush().await.map_err(|e| sm_write_err(&e))?;
        file.sync_all().await.map_err(|e| sm_write_err(&e))?;
        drop(file);
        let checked = {
            let (source, path, dir) = (source.clone(), path.clone(), dir.clone());
            blocking(move || {
                let summary = snapshot::verify(&source)?;
                std::fs::rename(&source, &path)?;
                snapshot::sync(&dir)?;
                Ok(summary)
            })
            .await
        };
        let summary = checked.map_err(|e| {
            let _ = std::fs::remove_file(&source);
            sm_write_err(&e)
        })?;
        {
            // It becomes the group's current snapshot, marked as being installed, before any
            // row changes.
            let _snapshot = self.coverage.snapshot.lock().await;
            let previous = stored_snapshot(&self.rocks, self.group).map_err(|e| sm_read_err(&e))?;
            make_current(&self.rocks, self.group, meta, &name, previous, true).await.map_err(|e| sm_write_err(&e))?;
        }
        // Locks counted before they appear, and no lower until the old ones are gone.
        self.coverage.locks.fetch_max(summary.locks as i64, SeqCst);
        let summary = load(&self.rocks, self.group, &self.range, meta, path).await.map_err(|e| sm_write_err(&e))?;
        self.coverage.gc_threshold.fetch_max(summary.gc_threshold.0, SeqCst);
        self.coverage.locks.store(summary.locks as i64, SeqCst);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.coverage.raise(self.applied.map(|l| l.index).unwrap_or(0));
        self.coverage.installing.store(false, SeqCst);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some((meta, name)) = stored_snapshot(&self.rocks, self.group).map_err(|e| sm_read_err(&e))? else {
            return Ok(None);
        };
        let path = snapshot::dir(&self.rocks).join(name);
        let file = tokio::fs::File::open(&path).await.map_err(|e| sm_read_err(&e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// Builds a snapshot from the file [`StateMachine::get_snapshot_builder`] wrote and keeps it as
/// the group's current snapshot.
pub struct SnapshotBuilder {
    rocks: Arc<Rocks>,
    group: u64,
    applied: Option<LogId<u64>>,
    membership: Membership,
    /// The file written, and its name once it is the current snapshot.
    building: PathBuf,
    name: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (term, index) = log_position(self.applied);
        let meta = Meta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{term}-{index}", self.group),
        };
        let building = self.building.clone();
        blocking(move || snapshot::sync(&building)).await.map_err(|e| sm_write_err(&e))?;
        let dir = snapshot::dir(&self.rocks);
        let coverage = self.rocks.coverage(self.group);
        let _snapshot = coverage.snapshot.lock().await;
        // A build runs beside apply and installs: if a newer snapshot was installed meanwhile,
        // keep that one as the group's current snapshot.
        let previous = stored_snapshot(&self.rocks, self.group).map_err(|e| sm_read_err(&e))?;
        let newest = previous.as_ref().is_none_or(|(m, _)| log_position(m.last_log_id).1 < index);
        let path = if newest {
            let path = dir.join(&self.name);
            std::fs::rename(&self.building, &path).map_err(|e| sm_write_err(&e))?;
            snapshot::sync(&dir).map_err(|e| sm_write_err(&e))?;
            make_current(&self.rocks, self.group, &meta, &self.name, previous, false)
                .await
                .map_err(|e| sm_write_err(&e))?;
            path
        } else {
            self.building.clone()
        };
        let file = tokio::fs::File::open(&path).await.map_err(|e| sm_read_err(&e))?;
        if !newest {
            // Open files outlive their name: the caller still reads this one.
            let _ = std::fs::remove_file(&path);
        }
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

/// Replaces the stored entries of `range` with those of the snapshot file at `path`, in
/// bounded batches, then records the snapshot's applied id, membership and threshold and
/// clears the install mark, durably. The caller marked the install first (`keys::INSTALLING`),
/// so a crash part way leaves a mark the next open acts on.
async fn load(rocks: &Arc<Rocks>, group: u64, range: &KeyRange, meta: &Meta, path: PathBuf) -> Result<Summary> {
    let summary = {
        let (rocks, range) = (rocks.clone(), range.clone());
        blocking(move || {
            let mut batch = WriteBatch::default();
            for family in snapshot::FAMILIES {
                batch.delete_range_cf(rocks.cf(family), range.start.clone(), range.end_or_max().to_vec());
            }
            let summary = snapshot::read(&path, |family, key, value| {
                batch.put_cf(rocks.cf(family), key, value);
                if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                    rocks.write(std::mem::take(&mut batch))?;
                }
                Ok(())
            })?;
            rocks.write(batch)?;
            Ok(summary)
        })
        .await?
    };
    let mut batch = WriteBatch::default();
    put_state(rocks, &mut batch, group, keys::APPLIED, &meta.last_log_id)?;
    put_state(rocks, &mut batch, group, keys::MEMBERSHIP, &meta.last_membership)?;
    put_state(rocks, &mut batch, group, keys::GC_THRESHOLD, &summary.gc_threshold)?;
    batch.delete_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, keys::INSTALLING));
    rocks.write_durable(batch).await?;
    Ok(summary)
}

/// Records the file `name` (in the snapshot directory) as the group's current snapshot, durably,
/// with the install mark if `installing`, then deletes the file of the `previous` one.
async fn make_current(
    rocks: &Rocks,
    group: u64,
    meta: &Meta,
    name: &str,
    previous: Option<(Meta, String)>,
    installing: bool,
) -> Result<()> {
    let mut batch = WriteBatch::default();
    put_state(rocks, &mut batch, group, keys::SNAPSHOT, &(meta, name))?;
    if installing {
        put_state(rocks, &mut batch, group, keys::INSTALLING, &())?;
    }
    rocks.write_durable(batch).await?;
    if let Some((_, old)) = previous.filter(|(_, old)| old != name) {
        let _ = std::fs::remove_file(snapshot::dir(rocks).join(old));
    }
    Ok(())
}

fn put_state(rocks: &Rocks, batch: &mut WriteBatch, group: u64, tag: u8, value: &impl Serialize) -> Result<()> {
    batch.put_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, tag), bincode::serialize(value)?);
    Ok(())
}

/// The term and index of a log position (zeros before the first entry).
fn log_position(log: Option<LogId<u64>>) -> (u64, u64) {
    log.map_or((0, 0), |l| (l.leader_id.term, l.index))
}

/// Runs file work off the async runtime's threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::internal(format!("snapshot file task failed: {e}")))?
}

/// Whether `file` is the file at `path`.
async fn same_file(file: &tokio::fs::File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (open, named) = (file.metadata().await?, tokio::fs::metadata(path).await?);
    Ok((open.dev(), open.ino()) == (named.dev(), named.ino()))
}

/// The group's current snapshot: its metadata and file name.
fn stored_snapshot(rocks: &Rocks, group: u64) -> Result<Option<(Meta, String)>> {
    let raw = rocks.db().get_pinned_cf(rocks.cf(CF_RAFT_STATE), keys::state_key(group, keys::SNAPSHOT)).map_err(io)?;
    Ok(raw.map(|raw| bincode::deserialize(&raw)).transpose()?)
}

fn sm_write_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(e)).into()
}

fn sm_read_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::read_state_machine(AnyError::new(e)).into()
}

#[cfg(test)]
mod tests {
    //! Snapshots end to end on two local state machines: built to a file, received in chunks,
    //! installed, and an install a crash interrupted redone at the next open.

    use openraft::{CommittedLeaderId, Entry, EntryPayload};
    use raftable_common::{ShardWrite, TxnId, TxnMeta, TxnOp, TxnWrite, WriteOp};
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::shard::digest;

    const GROUP: u64 = 4;

    fn range() -> KeyRange {
        KeyRange::new(vec![1], vec![2])
    }

    async fn open(dir: &Path) -> (Arc<Rocks>, StateMachine) {
        let rocks = Rocks::open(dir).unwrap();
        let sm = StateMachine::open(rocks.clone(), GROUP, range()).await.unwrap();
        (rocks, sm)
    }

    /// Rows (several versions each), a lock and a transaction record, applied at indexes 1..=n.
    async fn fill(sm: &mut StateMachine, rows: u8) -> LogId<u64> {
        let mut entries = Vec::new();
        let log_id = |index| LogId::new(CommittedLeaderId::new(3, 1), index);
        for i in 0..rows {
            let write = ShardWrite::new(vec![WriteOp::Put { key: vec![1, i], value: vec![i; 100] }]);
            for version in 0..3u64 {
                let command = ShardCommand::Stamped { ts: Ts(10 + version), write: write.clone() };
                entries.push(EntryPayload::Normal(command));
            }
        }
        let txn = TxnMeta { id: TxnId(5), anchor: GROUP, anchor_key: vec![1, 200] };
        let prepare = TxnOp::Prepare {
            txn,
            anchor: true,
            read_ts: Ts(20),
            reads: Vec::new(),
            writes: vec![TxnWrite::put(vec![1, 200], b"locked".to_vec())],
        };
        entries.push(EntryPayload::Normal(ShardCommand::Txn { ts: Ts(30), op: prepare }));
        let entries: Vec<_> = entries
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Entry { log_id: log_id(i as u64 + 1), payload })
            .collect();
        let last = entries.last().unwrap().log_id;
        let results = sm.apply(entries).await.unwrap();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        last
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_travels_in_chunks_and_a_crashed_install_is_redone() {
        let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (leader_rocks, mut leader) = open(leader_dir.path()).await;
        let last = fill(&mut leader, 200).await;
        let built = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(last));
        let mut sent = leader.get_current_snapshot().await.unwrap().expect("a current snapshot");
        assert_eq!(sent.meta, built.meta);

        // The follower receives it in 1 KiB chunks, as openraft writes them.
        let (follower_rocks, mut follower) = open(follower_dir.path()).await;
        let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
        let mut chunk = vec![0u8; 1024];
        loop {
            let n = sent.snapshot.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            receiving.write_all(&chunk[..n]).await.unwrap();
        }
        follower.install_snapshot(&sent.meta, receiving).await.unwrap();
        let source = digest(&leader_rocks, &range()).unwrap();
        assert_eq!(source.entries, 200 * 3 + 2, "versions, the lock and the record");
        assert_eq!(digest(&follower_rocks, &range()).unwrap(), source);
        assert_eq!(follower.applied_state().await.unwrap().0, Some(last));
        assert_eq!(follower.coverage.locks.load(SeqCst), 1);
        let files = |dir: &Path| std::fs::read_dir(snapshot::dir_at(dir)).unwrap().count();
        assert_eq!(files(follower_dir.path()), 1, "the received file became the current snapshot");

        // A crash part way through an install: the mark is set and half the rows are gone.
        let mut batch = WriteBatch::default();
        put_state(&follower_rocks, &mut batch, GROUP, keys::INSTALLING, &()).unwrap();
        put_state(&follower_rocks, &mut batch, GROUP, keys::APPLIED, &None::<LogId<u64>>).unwrap();
        batch.delete_range_cf(follower_rocks.cf(crate::keys::CF_DATA), vec![1, 100], vec![2]);
        follower_rocks.write(batch).unwrap();
        std::fs::write(snapshot::dir_at(follower_dir.path()).join(format!("{GROUP}-receiving-9")), b"x").unwrap();
        drop(follower);
        follower_rocks.close();
        drop(follower_rocks);
        let (follower_rocks, mut follower) = open(follower_dir.path()).await;
        assert_eq!(digest(&follower_rocks, &range()).unwrap(), source, "the install was redone");
        assert_eq!(follower.applied_state().await.unwrap().0, Some(last));
        assert!(follower_rocks
            .db()
            .get_cf(follower_rocks.cf(CF_RAFT_STATE), keys::state_key(GROUP, keys::INSTALLING))
            .unwrap()
            .is_none());
        assert_eq!(files(follower_dir.path()), 1, "what the crash left behind is gone");
    }
}
