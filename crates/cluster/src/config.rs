//! Raft and placement settings of a node. Defaults are for a LAN: a leader crash is survived in
//! about half a second.
//!
//! How long a follower waits for a dead leader: openraft 0.9 honours the leader's lease
//! (= election timeout max) before granting or starting an election, so a follower elects after
//! `election_max + rand(election_min..election_max)` without a heartbeat (400–500 ms with the
//! defaults), checked on every tick (1.5 × heartbeat). The heartbeat cannot shrink much below
//! 100 ms: openraft also uses it as the AppendEntries timeout, follower fsync included. Shorter
//! elections fail over faster (120–200 ms: ~0.37 s median) but a starved machine then sees
//! spurious elections, each turning in-flight writes into unknown outcomes; 150–250 ms is the
//! compromise (~0.5 s median). Measured by the chaos runner: docs/reliability.md.

use serde::{Deserialize, Serialize};

/// Tunables for every Raft group on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftSettings {
    /// Leader heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout, in milliseconds.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout, in milliseconds.
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot (for followers slightly behind).
    pub keep_logs: u64,
    /// Replicas per shard (and meta group size), capped by the number of nodes.
    pub replication_factor: usize,
    /// How long the router keeps retrying a shard command through elections, in milliseconds.
    pub route_timeout_ms: u64,
    /// How long a row version stays readable after a newer one replaced it, in milliseconds:
    /// garbage collection drops versions older than the oracle's time minus this.
    pub gc_ttl_ms: u64,
    /// How often a shard leader looks for garbage, in milliseconds (only after writes).
    pub gc_interval_ms: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 150,
            election_max_ms: 250,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
            replication_factor: 3,
            route_timeout_ms: 10_000,
            gc_ttl_ms: 600_000,
            gc_interval_ms: 10_000,
        }
    }
}

impl RaftSettings {
    pub(crate) fn openraft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "raftable".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.keep_logs,
            install_snapshot_timeout: 2_000,
            ..Default::default()
        }
    }
}
