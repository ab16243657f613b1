//! The [`ShardClient`] trait: the boundary between SQL and the cluster. `cluster::Router`
//! implements it over Raft and gRPC; `storage::LocalShards` implements it on one unreplicated
//! RocksDB so the layer above can be tested alone.

use crate::{Result, Row, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome};

/// Reads and writes shards. Reads are linearizable; writes are durable on a quorum when `Ok`.
/// An `Err` that [`crate::Error::is_retryable`] certainly did not apply; an
/// [`crate::Error::Unknown`] may have.
#[async_trait::async_trait]
pub trait ShardClient: Send + Sync + 'static {
    /// A linearizable read of the newest rows.
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>>;
    /// A read of a table shard at snapshot `ts` (from [`ShardClient::snapshot`]): every row as
    /// the newest version at or below `ts` left it. Reads of many shards at one `ts` see one
    /// consistent state; a `ts` older than the shard's garbage-collection horizon fails with
    /// [`crate::Error::SnapshotTooOld`].
    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>>;
    /// A snapshot timestamp: above the commit timestamp of every write acknowledged before this
    /// call began.
    async fn snapshot(&self) -> Result<Ts>;
    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome>;
    /// A transaction command on a table shard (`crate::TxnOp`), replicated like a write: an
    /// [`crate::Error::Unknown`] may have applied.
    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome>;
}
