//! [`LogStore`]: openraft's log storage (storage-v2) for one group, in the `raft_log` and
//! `raft_state` column families of the node's [`Rocks`].
//!
//! `append` writes the entries at once (visible to replication reads) and reports them flushed
//! only when the group-commit thread has synced the WAL; `save_vote` waits for its sync. Both
//! are what Raft's safety needs: a vote or an acknowledged entry must survive a crash.

// openraft's storage traits fix the error type (StorageError, ~224 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::keys::{self, CF_RAFT_LOG, CF_RAFT_STATE};
use crate::rocks::{io, Rocks};
use crate::types::{Entry, TypeConfig};

type StorageResult<T> = Result<T, StorageError<u64>>;

/// The Raft log and vote of one group. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    rocks: Arc<Rocks>,
    group: u64,
}

impl LogStore {
    pub fn new(rocks: Arc<Rocks>, group: u64) -> Self {
        Self { rocks, group }
    }

    /// Writes entries to the log without waiting for durability (visible to readers at once).
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> StorageResult<()> {
        let cf = self.rocks.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            let raw = bincode::serialize(&entry).map_err(write_err)?;
            batch.put_cf(cf, keys::log_key(self.group, entry.log_id.index), raw);
        }
        self.rocks.write(batch).map_err(write_err)
    }

    /// Appends entries and waits until they are durable: the same write and group-commit sync
    /// as openraft's `append`, for callers outside openraft (benchmarks).
    pub async fn append_durable(&self, entries: Vec<Entry>) -> StorageResult<()> {
        self.write_entries(entries)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.rocks.sync(move || {
            let _ = tx.send(());
        });
        rx.await.map_err(write_err)
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, tag: u8) -> StorageResult<Option<T>> {
        let raw = self
            .rocks
            .db()
            .get_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, tag))
            .map_err(|e| read_err(io(e)))?;
        raw.map(|raw| bincode::deserialize(&raw).map_err(read_err)).transpose()
    }

    fn last_entry(&self) -> StorageResult<Option<Entry>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::log_key(self.group, 0).to_vec());
        opts.set_iterate_upper_bound(keys::log_key(self.group + 1, 0).to_vec());
        let mut iter = self.rocks.db().iterator_cf_opt(self.rocks.cf(CF_RAFT_LOG), opts, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (_, raw) = item.map_err(|e| read_err(io(e)))?;
                Ok(Some(bincode::deserialize(&raw).map_err(read_err)?))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(*i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let mut opts = ReadOptions::default();
        let upper = match end {
            Some(end) => keys::log_key(self.group, end),
            None => keys::log_key(self.group + 1, 0),
        };
        opts.set_iterate_upper_bound(upper.to_vec());
        let from = keys::log_key(self.group, start);
        let iter = self.rocks.db().iterator_cf_opt(
            self.rocks.cf(CF_RAFT_LOG),
            opts,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (_, raw) = item.map_err(|e| read_err(io(e)))?;
            entries.push(bincode::deserialize(&raw).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<u64>> = self.get_state(keys::PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        let raw = bincode::serialize(vote).map_err(write_err)?;
        batch.put_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, keys::VOTE), raw);
        self.rocks.write_durable(batch).await.map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_state(keys::VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        // Not synced: losing it only means re-applying from the last applied entry after a crash.
        let mut batch = WriteBatch::default();
        let raw = bincode::serialize(&committed).map_err(write_err)?;
        batch.put_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, keys::COMMITTED), raw);
        self.rocks.write(batch).map_err(write_err)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.get_state::<Option<LogId<u64>>>(keys::COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write_entries(entries)?;
        self.rocks.sync(move || callback.log_io_completed(Ok(())));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // Not synced on its own: the next append's sync covers it, and until then nothing
        // after the truncated entries was acknowledged.
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.rocks.cf(CF_RAFT_LOG),
            keys::log_key(self.group, log_id.index),
            keys::log_key(self.group + 1, 0),
        );
        self.rocks.write(batch).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // During a snapshot install, write the purge only after the installed state (see
        // rocks::Coverage). Bounded, so a stuck install cannot stall the group forever.
        let coverage = self.rocks.coverage(self.group);
        if coverage.installing.load(std::sync::atomic::Ordering::SeqCst) {
            let mut written = coverage.written.subscribe();
            let wait = written.wait_for(|v| *v >= log_id.index);
            if tokio::time::timeout(std::time::Duration::from_secs(30), wait).await.is_err() {
                tracing::warn!(group = self.group, index = log_id.index, "purging ahead of a slow snapshot install");
            }
        }
        let mut batch = WriteBatch::default();
        let raw = bincode::serialize(&log_id).map_err(write_err)?;
        batch.put_cf(self.rocks.cf(CF_RAFT_STATE), keys::state_key(self.group, keys::PURGED), raw);
        batch.delete_range_cf(
            self.rocks.cf(CF_RAFT_LOG),
            keys::log_key(self.group, 0),
            keys::log_key(self.group, log_id.index + 1),
        );
        self.rocks.write(batch).map_err(write_err)
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}
