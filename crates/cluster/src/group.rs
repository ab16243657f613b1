//! [`Group`]: one Raft group hosted on this node (a replica of one shard, or of the meta group),
//! with its leader-side read and write entry points and the mapping of openraft's errors to
//! raftable's.

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::Raft;
use raftable_common::{Error, KeyRange, NodeId, Result, Row, ShardId, ShardRead, ShardWrite, WriteOutcome};
use raftable_storage::{NodeInfo, Rocks, TypeConfig};

use crate::read_index::ReadIndex;

/// A Raft group replica on this node.
pub struct Group {
    pub shard: ShardId,
    pub range: KeyRange,
    pub raft: Raft<TypeConfig>,
    pub(crate) rocks: Arc<Rocks>,
    reads: ReadIndex,
}

impl Group {
    pub(crate) fn new(shard: ShardId, range: KeyRange, raft: Raft<TypeConfig>, rocks: Arc<Rocks>) -> Self {
        Self { shard, range, raft, rocks, reads: ReadIndex::default() }
    }

    /// Replicates and applies `write` if this replica leads the group.
    pub async fn write(&self, write: ShardWrite) -> Result<WriteOutcome> {
        match self.raft.client_write(write).await {
            Ok(resp) => resp.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Internal(format!("membership error on a plain write: {e}")))
            }
            // The group stopped (node shutting down) with the proposal possibly in its log.
            Err(RaftError::Fatal(f)) => Err(Error::Unknown(format!("raft group stopped: {f}"))),
        }
    }

    /// A linearizable read: confirm leadership (shared round), then read the applied rows.
    pub async fn read(&self, read: ShardRead) -> Result<Vec<Row>> {
        self.reads.wait(&self.raft).await?;
        raftable_storage::read(&self.rocks, &self.range, &read)
    }

    /// Read-index rounds this replica has run (each serves every read that waited for it).
    pub fn read_rounds(&self) -> u64 {
        self.reads.rounds()
    }

    /// The leader this replica currently knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Voters of the group's current membership (the last one in a joint config).
    pub fn voters(&self) -> Vec<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let voters = m.membership_config.membership().voter_ids().collect();
        voters
    }

    /// (applied index, snapshot index, purged index) of this replica.
    pub fn progress(&self) -> (u64, u64, u64) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let index = |l: Option<openraft::LogId<NodeId>>| l.map(|l| l.index).unwrap_or(0);
        (index(m.last_applied), index(m.snapshot), index(m.purged))
    }
}

fn not_leader(f: ForwardToLeader<NodeId, NodeInfo>) -> Error {
    let leader = match (f.leader_id, f.leader_node) {
        (Some(id), Some(node)) => Some((id, node.rpc_addr)),
        _ => None,
    };
    Error::NotLeader { leader }
}

/// Maps a failed read-index round. Every failure leaves nothing applied, so all are retryable.
pub(crate) fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeInfo>>) -> Error {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            Error::Retry(format!("leadership not confirmed by a quorum: {q}"))
        }
        RaftError::Fatal(f) => Error::Retry(format!("raft group stopped: {f}")),
    }
}
