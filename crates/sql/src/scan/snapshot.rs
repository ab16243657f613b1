//! [`Snapshot`]: what a statement's scans read through, its transaction (`raftable_txn::Txn`):
//! every shard at the transaction's one timestamp (so a query sees the whole database as of one
//! moment: a `sum()` over rows being moved between shards is exact), with the transaction's own
//! buffered writes applied, and each read recorded so that commit can check nothing read
//! changed. The executor puts one in the `TaskContext` of each statement it runs; every
//! `ShardScanExec` partition reads through it. The timestamp is taken from the oracle at the
//! first read, so a statement that reads no shard costs nothing.

use std::sync::Arc;

use raftable_common::{Result, Row, ShardId, ShardRead};
use raftable_txn::Txn;

/// A statement's reads: through its transaction.
pub struct Snapshot {
    txn: Arc<Txn>,
}

impl Snapshot {
    pub fn new(txn: Arc<Txn>) -> Self {
        Self { txn }
    }

    /// Reads `shard` as the transaction sees it.
    pub async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.txn.read(shard, read).await
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot(transaction {})", self.txn.id())
    }
}
