//! Multi-raft: many openraft groups per node, the gRPC services between nodes, the router that
//! sends shard commands to their leaders, and the meta group that knows the cluster.
//!
//! The path of a write, from a caller holding a [`Router`] (the SQL layer, through the
//! `ShardClient` trait):
//! 1. [`Router::write`] finds the shard's leader (leader cache, else the shard map's replicas),
//!    and calls it: in process via [`Node::local_call`], or over the `Shard` gRPC service
//!    (`service::ShardService::call` on the leader's node, which also ends in `local_call`).
//! 2. [`Group::write`] proposes the `ShardWrite` with `Raft::client_write`.
//! 3. openraft appends it through `storage::LogStore::append` on every replica (synced by group
//!    commit) via `network::GroupClient::append_entries` → `service::RaftService::append`,
//!    commits on a quorum, and applies it with `storage::StateMachine::apply`.
//! 4. The apply result travels back: leader → router → caller. A `NotLeader` or election on the
//!    way makes the router retry elsewhere until its deadline.
//!
//! A read is the same up to step 2 (point reads forwarded to one peer share gRPC calls under load:
//! `coalesce::Coalescer`), where [`Group::read`] confirms leadership by the leader
//! lease (`lease::Lease`, kept up by the acknowledgements of heartbeats and appends), or else by
//! joining a shared read-index round (`read_index::ReadIndex`), and then reads the leader's
//! applied rows (`storage::read`).
//!
//! Timestamps for transactions come from the timestamp oracle on the meta group's leader
//! (`tso::Oracle`, reached with [`Router::timestamps`] like any shard command of the meta group).
//! A table shard's leader stamps each write with a commit timestamp derived from them
//! (`clock::ShardClock`, fed by the node's `clock::NodeClock`) before step 2 proposes it;
//! the leader's background loop drops versions older than `gc_ttl` (`Group::collect_garbage`).
//!
//! Errors cross node boundaries as gRPC statuses and come out of openraft as its own types;
//! `error` converts both to and from raftable's one `Error`, and nothing else does.

mod clock;
mod coalesce;
mod config;
mod error;
mod group;
mod lease;
pub mod meta;
mod network;
mod node;
mod placement;
mod read_index;
mod router;
mod service;
mod tso;

pub use clock::NodeClock;
pub use config::RaftSettings;
pub use group::Group;
pub use meta::{NodeRecord, ShardRecord};
pub use network::{NetFaults, Peers};
pub use node::{Node, Op, OpResult};
pub use placement::{now_ms, Background};
pub use router::Router;
pub use service::{serve, Client};

/// Writes the records of a brand-new cluster's meta group (its own shard record and this first
/// node's registry entry), through `client` (the bootstrapping node's router).
pub async fn meta_bootstrap(
    client: &dyn raftable_common::ShardClient,
    id: raftable_common::NodeId,
    info: &raftable_storage::NodeInfo,
) -> raftable_common::Result<()> {
    meta::bootstrap(client, id).await?;
    let record = NodeRecord {
        id,
        rpc_addr: info.rpc_addr.clone(),
        pg_addr: info.pg_addr.clone(),
        heartbeat_ms: placement::now_ms(),
    };
    meta::put_node(client, &record).await
}
