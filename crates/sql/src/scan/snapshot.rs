//! [`Snapshot`]: the one timestamp a query reads every shard at, so it sees the whole database
//! as of one moment (a `sum()` over rows being moved between shards is exact). The executor puts
//! one in the `TaskContext` of each query it runs; every `ShardScanExec` partition reads at it.
//! Taken from the cluster (the timestamp oracle) on the first read, so a query that reads no
//! shard costs nothing.

use std::sync::Arc;

use raftable_common::{Result, Ts};
use tokio::sync::OnceCell;

use crate::cluster::Cluster;

/// A query's snapshot, taken lazily.
pub struct Snapshot {
    cluster: Arc<dyn Cluster>,
    ts: OnceCell<Ts>,
}

impl Snapshot {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster, ts: OnceCell::new() }
    }

    /// The snapshot timestamp: above the commit timestamp of every write acknowledged before
    /// the query's first read.
    pub async fn ts(&self) -> Result<Ts> {
        self.ts.get_or_try_init(|| self.cluster.snapshot()).await.copied()
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({:?})", self.ts.get())
    }
}
