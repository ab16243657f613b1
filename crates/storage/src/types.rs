//! The openraft type configuration shared by the storage and cluster layers. It lives here
//! because the storage traits are implemented for it; `cluster` only uses it.

use raftable_common::{Error, ShardCommand, WriteOutcome};
use serde::{Deserialize, Serialize};

/// What a replica knows about a node: where to reach it. Stored in Raft memberships, so a group
/// can reach its peers even before the node registry is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// host:port of the node's gRPC server.
    pub rpc_addr: String,
    /// host:port of the node's Postgres wire-protocol listener.
    pub pg_addr: String,
}

/// The result of applying one [`ShardCommand`]: deterministic errors (duplicate key, failed
/// condition) are results, identical on every replica.
pub type WriteResult = Result<WriteOutcome, Error>;

openraft::declare_raft_types!(
    /// Raft types of every raftable group: the meta group and all shards.
    pub TypeConfig:
        D = ShardCommand,
        R = WriteResult,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// A Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
