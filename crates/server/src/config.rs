//! Node configuration: one struct, nesting the settings of the layers below, each of which
//! defines its own defaults once ([`RaftSettings`], [`SqlConfig`]). Filled from the command
//! line by `main.rs`, which shows those defaults in its help; tests build it directly.

use std::path::PathBuf;

use raftable_cluster::RaftSettings;
use raftable_common::NodeId;
use raftable_sql::SqlConfig;
use serde::{Deserialize, Serialize};

/// Everything a node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// This node's id, unique in the cluster, never 0.
    pub node_id: NodeId,
    /// Where the node keeps its RocksDB (created if missing).
    pub data_dir: PathBuf,
    /// host:port the node-to-node gRPC server listens on (port 0: any free port).
    pub rpc_addr: String,
    /// host:port for Postgres clients (port 0: any free port).
    pub pg_addr: String,
    /// The rpc address of any current member, to join its cluster. Ignored once the node has
    /// joined or bootstrapped (its data dir remembers).
    pub join: Option<String>,
    /// Raft timing, snapshots and replication factor.
    pub raft: RaftSettings,
    /// SQL settings (the shard count of a new table).
    pub sql: SqlConfig,
    /// Accept injected faults (network partitions and delays, slow or failing fsync) through
    /// the `SetFaults` admin call: for the chaos runner only, never in production.
    pub fault_injection: bool,
}

impl Config {
    pub fn new(node_id: NodeId, data_dir: PathBuf, rpc_addr: String, pg_addr: String) -> Self {
        Self {
            node_id,
            data_dir,
            rpc_addr,
            pg_addr,
            join: None,
            raft: RaftSettings::default(),
            sql: SqlConfig::default(),
            fault_injection: false,
        }
    }
}
