//! [`LocalShards`]: an unreplicated [`ShardClient`] over one local RocksDB, applying writes with
//! the same `shard::apply` as the Raft state machine (table shards at commit timestamps from
//! the local clock, kept increasing; no garbage collection). It lets the SQL layer be tested
//! without Raft or a network; it is not durable against crashes beyond RocksDB's own WAL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use raftable_common::{
    Error, KeyRange, Result, Row, ShardClient, ShardCommand, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome,
};
use tokio::sync::Mutex;

use crate::pending::Pending;
use crate::rocks::Rocks;
use crate::shard;
use crate::txn;

/// Shards held in one local database, without replication.
pub struct LocalShards {
    rocks: Arc<Rocks>,
    ranges: RwLock<HashMap<ShardId, KeyRange>>,
    /// Serializes writes (like a Raft log would): the last log index and commit timestamp.
    last: Mutex<(u64, Ts)>,
}

impl LocalShards {
    pub fn new(rocks: Arc<Rocks>) -> Self {
        Self { rocks, ranges: RwLock::default(), last: Mutex::new((0, Ts::MIN)) }
    }

    /// Declares a shard and its key range.
    pub fn add_shard(&self, shard: ShardId, range: KeyRange) {
        self.rocks.count_locks(shard, &range).expect("counting the shard's locks");
        self.ranges.write().expect("ranges lock").insert(shard, range);
    }

    /// Forgets a shard and deletes its rows, locks and records (a dropped table's).
    pub async fn remove_shard(&self, shard: ShardId) -> Result<()> {
        let range = self.range(shard)?;
        let _writes = self.last.lock().await;
        self.ranges.write().expect("ranges lock").remove(&shard);
        self.rocks.destroy_group(shard, &range).await
    }

    fn range(&self, shard: ShardId) -> Result<KeyRange> {
        let ranges = self.ranges.read().expect("ranges lock");
        ranges.get(&shard).cloned().ok_or_else(|| Error::InvalidInput(format!("no shard {shard}")))
    }
}

#[async_trait::async_trait]
impl ShardClient for LocalShards {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        shard::read(&self.rocks, shard, &self.range(shard)?, &read)
    }

    /// Writes are serialized and applied before they return, so nothing stamped at or below
    /// `ts` is still in flight once it is handed out.
    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        shard::read_at(&self.rocks, shard, &self.range(shard)?, &read, ts)
    }

    /// The local clock's time, or the last commit timestamp if above (rows written before this
    /// process opened the directory are below the clock); later writes are stamped above it.
    async fn snapshot(&self) -> Result<Ts> {
        let mut last = self.last.lock().await;
        last.1 = last.1.max(Ts::new(wall_ms(), 0));
        Ok(last.1)
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        let range = self.range(shard)?;
        if range.is_versioned() {
            self.apply(shard, &range, |ts| ShardCommand::Stamped { ts, write }).await
        } else {
            self.apply(shard, &range, |_| ShardCommand::Plain(write)).await
        }
    }

    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome> {
        let range = self.range(shard)?;
        if !range.is_versioned() {
            return Err(Error::InvalidInput(format!("shard {shard} holds no table rows")));
        }
        let read_ts = match &op {
            TxnOp::Commit { read_ts, .. } | TxnOp::Prepare { read_ts, .. } => *read_ts,
            _ => Ts::MIN,
        };
        self.apply(shard, &range, |ts| ShardCommand::Txn { ts: ts.max(read_ts.next()), op }).await
    }
}

impl LocalShards {
    /// Applies the command `make` builds from the next commit timestamp, as the next log entry.
    async fn apply(
        &self,
        shard: ShardId,
        range: &KeyRange,
        make: impl FnOnce(Ts) -> ShardCommand,
    ) -> Result<WriteOutcome> {
        let mut last = self.last.lock().await;
        let (index, ts) = (last.0 + 1, last.1.next().max(Ts::new(wall_ms(), 0)));
        let command = make(ts);
        let mut pending = Pending::new();
        let outcome = shard::apply(&self.rocks, &mut pending, range, &command, index, Ts::MIN)?;
        // Locks counted as the state machine counts them (`Coverage::locks`).
        let delta = match &command {
            ShardCommand::Txn { op, .. } => txn::lock_delta(op, &outcome),
            _ => 0,
        };
        let locks = &self.rocks.coverage(shard).locks;
        if delta > 0 {
            locks.fetch_add(delta, std::sync::atomic::Ordering::SeqCst);
        }
        self.rocks.write(pending.take())?;
        if delta < 0 {
            locks.fetch_add(delta, std::sync::atomic::Ordering::SeqCst);
        }
        let stamped = if range.is_versioned() { ts.max(Ts(outcome.version)) } else { last.1 };
        *last = (index, stamped);
        Ok(outcome)
    }
}

fn wall_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use raftable_common::{Expect, WriteOp};

    use super::*;

    fn put(k: &[u8], v: &[u8]) -> WriteOp {
        WriteOp::Put { key: k.to_vec(), value: v.to_vec() }
    }

    /// Rows written before the directory was reopened are in every later snapshot, and a write
    /// after a snapshot is not.
    #[tokio::test]
    async fn snapshots_see_rows_written_before_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let range = KeyRange::new(b"a".to_vec(), b"m".to_vec());
        let get = || ShardRead::Get { key: b"b".to_vec() };
        {
            let shards = LocalShards::new(Rocks::open(dir.path()).unwrap());
            shards.add_shard(1, range.clone());
            shards.write(1, ShardWrite::new(vec![put(b"b", b"1")])).await.unwrap();
        }
        let shards = LocalShards::new(Rocks::open(dir.path()).unwrap());
        shards.add_shard(1, range);
        let snapshot = shards.snapshot().await.unwrap();
        assert_eq!(shards.read_at(1, get(), snapshot).await.unwrap()[0].value, b"1");
        shards.write(1, ShardWrite::new(vec![put(b"b", b"2")])).await.unwrap();
        assert_eq!(shards.read_at(1, get(), snapshot).await.unwrap()[0].value, b"1");
        let later = shards.snapshot().await.unwrap();
        assert_eq!(shards.read_at(1, get(), later).await.unwrap()[0].value, b"2");
    }

    #[tokio::test]
    async fn batches_are_atomic_and_conditions_checked() {
        let dir = tempfile::tempdir().unwrap();
        let shards = LocalShards::new(Rocks::open(dir.path()).unwrap());
        shards.add_shard(1, KeyRange::new(b"a".to_vec(), b"m".to_vec()));
        let w = |ops| shards.write(1, ShardWrite::new(ops));

        let out = w(vec![put(b"b", b"1"), put(b"c", b"2")]).await.unwrap();
        assert_eq!(out.changed, vec![true, true]);
        // A duplicate in the middle rejects the whole batch, including the first op.
        let dup = WriteOp::PutIfAbsent { key: b"c".to_vec(), value: b"x".to_vec() };
        let err = w(vec![put(b"d", b"3"), dup]).await.unwrap_err();
        assert_eq!(err, Error::DuplicateKey { key: b"c".to_vec() });
        assert!(shards.read(1, ShardRead::Get { key: b"d".to_vec() }).await.unwrap().is_empty());

        // Compare-and-put on version: the first wins, the stale one fails.
        let row = shards.read(1, ShardRead::Get { key: b"b".to_vec() }).await.unwrap().remove(0);
        let cas = |v: &[u8]| WriteOp::CompareAndPut {
            key: b"b".to_vec(),
            expect: Expect::Version(row.version),
            value: v.to_vec(),
        };
        w(vec![cas(b"new")]).await.unwrap();
        assert!(matches!(w(vec![cas(b"stale")]).await, Err(Error::ConditionFailed { .. })));
        // Later ops in a batch see earlier ones.
        let del = WriteOp::CompareAndDelete { key: b"e".to_vec(), expect: Expect::Value(b"5".to_vec()) };
        let out = w(vec![put(b"e", b"5"), del, WriteOp::Delete { key: b"e".to_vec() }]).await.unwrap();
        assert_eq!(out.changed, vec![true, true, false]);
        // Outside the range.
        assert!(w(vec![put(b"z", b"1")]).await.is_err());

        let scan =
            |reverse, limit| shards.read(1, ShardRead::Scan { start: b"a".to_vec(), end: vec![], limit, reverse });
        let keys = |rows: Vec<Row>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(keys(scan(false, None).await.unwrap()), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(scan(true, Some(1)).await.unwrap()), vec![b"c".to_vec()]);
        let multi = ShardRead::MultiGet { keys: vec![b"c".to_vec(), b"q".to_vec(), b"b".to_vec()] };
        assert!(shards.read(1, multi).await.is_err(), "q is outside the range");
        let multi = ShardRead::MultiGet { keys: vec![b"c".to_vec(), b"d".to_vec(), b"b".to_vec()] };
        let rows = shards.read(1, multi).await.unwrap();
        assert_eq!(keys(rows), vec![b"c".to_vec(), b"b".to_vec()]);
    }
}
