//! [`LocalCluster`]: the SQL layer's [`Cluster`] over `storage::LocalShards`, one unreplicated
//! RocksDB in a directory, no Raft, no network. It lets the SQL layer run whole: the sql
//! crate's own tests, and the in-process sqllogictest run (`sql-tests`), which serves it over
//! the real pgwire front end. Writes apply with the same `shard::apply_write` as the Raft state
//! machine; counters and the shard map live in memory (a fresh cluster per test).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raftable_common::{
    KeyRange, NodeId, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Ts, WriteOutcome, META_RANGE_END,
    META_SHARD,
};
use raftable_storage::{LocalShards, Rocks};

use crate::cluster::{Cluster, NodeStatus, ShardStatus};

/// One node holding every shard, unreplicated.
pub struct LocalCluster {
    shards: LocalShards,
    ranges: Mutex<BTreeMap<ShardId, KeyRange>>,
    next_shard: AtomicU64,
    counters: Mutex<BTreeMap<String, u64>>,
}

impl LocalCluster {
    /// A new cluster keeping its data in `dir` (created if missing), with the meta shard.
    pub fn open(dir: &Path) -> Result<Arc<Self>> {
        let shards = LocalShards::new(Rocks::open(dir)?);
        let meta = KeyRange::new(vec![0x00], META_RANGE_END.to_vec());
        shards.add_shard(META_SHARD, meta.clone());
        Ok(Arc::new(Self {
            shards,
            ranges: Mutex::new(BTreeMap::from([(META_SHARD, meta)])),
            next_shard: AtomicU64::new(META_SHARD + 1),
            counters: Mutex::default(),
        }))
    }
}

#[async_trait::async_trait]
impl ShardClient for LocalCluster {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.shards.read(shard, read).await
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.shards.read_at(shard, read, ts).await
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.shards.snapshot().await
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.shards.write(shard, write).await
    }

    async fn txn(&self, shard: ShardId, op: raftable_common::TxnOp) -> Result<WriteOutcome> {
        self.shards.txn(shard, op).await
    }
}

#[async_trait::async_trait]
impl Cluster for LocalCluster {
    fn node_id(&self) -> NodeId {
        1
    }

    async fn next_id(&self, name: &str) -> Result<u64> {
        let mut counters = self.counters.lock().expect("counters lock");
        let next = counters.entry(name.to_string()).or_insert(0);
        *next += 1;
        Ok(*next)
    }

    async fn create_shards(&self, ranges: Vec<KeyRange>) -> Result<Vec<ShardId>> {
        let mut ids = Vec::with_capacity(ranges.len());
        for range in ranges {
            let id = self.next_shard.fetch_add(1, Ordering::Relaxed);
            self.shards.add_shard(id, range.clone());
            self.ranges.lock().expect("ranges lock").insert(id, range);
            ids.push(id);
        }
        Ok(ids)
    }

    async fn drop_shards(&self, shards: Vec<ShardId>) -> Result<()> {
        for id in shards {
            self.ranges.lock().expect("ranges lock").remove(&id);
            self.shards.remove_shard(id).await?;
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        Ok(vec![NodeStatus { id: 1, rpc_addr: String::new(), pg_addr: String::new(), alive: true }])
    }

    async fn shards(&self) -> Result<Vec<ShardStatus>> {
        let ranges = self.ranges.lock().expect("ranges lock");
        Ok(ranges
            .iter()
            .map(|(id, range)| ShardStatus {
                id: *id,
                range: range.clone(),
                leader: Some(1),
                replicas: vec![1],
                table: None,
            })
            .collect())
    }
}
