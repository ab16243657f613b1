//! The SQL layer's view of the cluster: [`raftable_sql::Cluster`] implemented over the node's
//! [`Router`] (shard commands) and the meta group's records (ids, shard creation, node
//! registry, shard map). This is where `sql` and `cluster` meet; neither depends on the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftable_cluster::{meta, now_ms, Router};
use raftable_common::{
    Error, KeyRange, NodeId, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Ts, WriteOutcome,
};
use raftable_sql::{NodeStatus, ShardStatus};

/// How long CREATE TABLE waits for its new shards to elect leaders.
const SHARD_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqlCluster {
    router: Arc<Router>,
}

impl SqlCluster {
    pub fn new(router: Arc<Router>) -> Arc<Self> {
        Arc::new(Self { router })
    }
}

#[async_trait::async_trait]
impl ShardClient for SqlCluster {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.router.read(shard, read).await
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.router.read_at(shard, read, ts).await
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.router.snapshot().await
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.router.write(shard, write).await
    }

    async fn txn(&self, shard: ShardId, op: raftable_common::TxnOp) -> Result<WriteOutcome> {
        self.router.txn(shard, op).await
    }
}

#[async_trait::async_trait]
impl raftable_sql::Cluster for SqlCluster {
    fn node_id(&self) -> NodeId {
        self.router.node().id
    }

    async fn next_id(&self, name: &str) -> Result<u64> {
        meta::next_id(self.router.as_ref(), name).await
    }

    async fn create_shards(&self, ranges: Vec<KeyRange>) -> Result<Vec<ShardId>> {
        let rf = self.router.node().settings.replication_factor;
        let mut ids = Vec::with_capacity(ranges.len());
        for range in ranges {
            ids.push(meta::create_shard(self.router.as_ref(), range, rf, now_ms()).await?.id);
        }
        self.router.refresh().await?;
        // Each node's placement loop opens its replicas and the first replica bootstraps the
        // group; wait until every shard answers a read through its leader.
        let deadline = Instant::now() + SHARD_READY_TIMEOUT;
        let records: Vec<_> = ids.iter().filter_map(|id| self.router.shard(*id)).collect();
        let checks = records.into_iter().map(|record| async move {
            loop {
                let read = ShardRead::Scan {
                    start: record.range.start.clone(),
                    end: record.range.end.clone(),
                    limit: Some(1),
                    reverse: false,
                };
                match self.router.read(record.id, read).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.is_retryable() && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        });
        futures::future::try_join_all(checks).await?;
        if ids.is_empty() {
            return Err(Error::internal("no shards created"));
        }
        Ok(ids)
    }

    async fn drop_shards(&self, shards: Vec<ShardId>) -> Result<()> {
        meta::mark_dropped(self.router.as_ref(), &shards).await
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let now = now_ms();
        Ok(meta::nodes(self.router.as_ref())
            .await?
            .into_iter()
            .map(|n| NodeStatus { id: n.id, alive: n.alive(now), rpc_addr: n.rpc_addr, pg_addr: n.pg_addr })
            .collect())
    }

    async fn shards(&self) -> Result<Vec<ShardStatus>> {
        self.router.refresh().await?;
        Ok(self
            .router
            .shard_map()
            .into_iter()
            .map(|(s, _)| ShardStatus {
                id: s.id,
                leader: self.router.leader(s.id),
                range: s.range,
                replicas: s.replicas,
                table: None,
            })
            .collect())
    }
}
