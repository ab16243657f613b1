//! The [`ShardClient`] trait: the boundary between SQL and the cluster. `cluster::Router`
//! implements it over Raft and gRPC; `storage::LocalShards` implements it on one unreplicated
//! RocksDB so the layer above can be tested alone.

use crate::{Result, Row, ShardId, ShardRead, ShardWrite, WriteOutcome};

/// Reads and writes shards. Reads are linearizable; writes are durable on a quorum when `Ok`.
/// An `Err` that [`crate::Error::is_retryable`] certainly did not apply; an
/// [`crate::Error::Unknown`] may have.
#[async_trait::async_trait]
pub trait ShardClient: Send + Sync + 'static {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>>;
    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome>;
}
