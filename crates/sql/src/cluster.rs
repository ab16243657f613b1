//! [`Cluster`]: everything the SQL layer needs from the cluster below it: the shard commands
//! (through the `ShardClient` supertrait) plus the few administrative operations DDL and the
//! `raftable.*` system tables need. `server` implements it over `cluster::Router`; tests can
//! implement it over `storage::LocalShards`. `sql` never depends on `cluster` itself.

use std::fmt;
use std::sync::Arc;

use raftable_common::{KeyRange, NodeId, Result, ShardClient, ShardId};

/// A node as `raftable.nodes` shows it.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub id: NodeId,
    pub rpc_addr: String,
    pub pg_addr: String,
    pub alive: bool,
}

/// A shard as `raftable.shards` shows it.
#[derive(Debug, Clone)]
pub struct ShardStatus {
    pub id: ShardId,
    pub range: KeyRange,
    pub leader: Option<NodeId>,
    pub replicas: Vec<NodeId>,
    /// The table whose rows the shard holds (filled in by the SQL layer; None for the meta
    /// group).
    pub table: Option<String>,
}

#[async_trait::async_trait]
pub trait Cluster: ShardClient {
    /// This node's id (part of generated row ids, so they are unique cluster-wide).
    fn node_id(&self) -> NodeId;

    /// The next value of a cluster-wide counter (table ids).
    async fn next_id(&self, name: &str) -> Result<u64>;

    /// Creates one shard per range and returns once every one of them serves requests.
    async fn create_shards(&self, ranges: Vec<KeyRange>) -> Result<Vec<ShardId>>;

    /// Drops shards nothing uses any more and no lock is left in (a dropped table's or
    /// index's): the cluster deletes each once no transaction needs its records.
    async fn drop_shards(&self, shards: Vec<ShardId>) -> Result<()>;

    /// The node registry.
    async fn nodes(&self) -> Result<Vec<NodeStatus>>;

    /// The shard map with each shard's current leader, if known.
    async fn shards(&self) -> Result<Vec<ShardStatus>>;
}

/// `Arc<dyn Cluster>` with a Debug impl, as DataFusion's traits require.
#[derive(Clone)]
pub struct ClusterRef(pub Arc<dyn Cluster>);

impl fmt::Debug for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cluster")
    }
}
