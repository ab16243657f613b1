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
    /// Set before this replica proposes a voter change: from then on `sole_leader` is false
    /// (metrics may still show the old voters while the change is being decided).
    voters_changing: std::sync::atomic::AtomicBool,
}

impl Group {
    pub(crate) fn new(shard: ShardId, range: KeyRange, raft: Raft<TypeConfig>, rocks: Arc<Rocks>) -> Self {
        Self { shard, range, raft, rocks, reads: ReadIndex::default(), voters_changing: Default::default() }
    }

    /// Replicates and applies `write` if this replica leads the group.
    ///
    /// openraft answers `ForwardToLeader` both when it refuses a proposal (not leader: nothing
    /// appended, safe to retry on the leader) and when it truncates a proposal it had appended
    /// after losing leadership (another replica may still hold that entry and a later leader
    /// commit it: the outcome is unknown). The two are told apart by asking first: a replica
    /// that does not believe it leads refuses without proposing; once proposed, a
    /// `ForwardToLeader` is reported as unknown. (Stale metrics only err towards unknown.)
    pub async fn write(&self, write: ShardWrite) -> Result<WriteOutcome> {
        if let Some(refusal) = self.not_leading() {
            return Err(refusal);
        }
        match self.raft.client_write(write).await {
            Ok(resp) => resp.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(Error::Unknown(format!(
                "shard {}: leadership lost with the write proposed (leader now {:?})",
                self.shard, f.leader_id
            ))),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Internal(format!("membership error on a plain write: {e}")))
            }
            // The group stopped (node shutting down) with the proposal possibly in its log.
            Err(RaftError::Fatal(f)) => Err(Error::Unknown(format!("raft group stopped: {f}"))),
        }
    }

    /// A linearizable read: confirm leadership (shared round), then read the applied rows.
    /// A group whose only voter is this leader skips the round (see [`Group::sole_leader`]).
    pub async fn read(&self, read: ShardRead) -> Result<Vec<Row>> {
        if !self.sole_leader() {
            self.reads.wait(&self.raft).await?;
        }
        raftable_storage::read(&self.rocks, &self.range, &read)
    }

    /// Whether this replica is the leader of a group with no other voter and has applied an
    /// entry of its own term. Then no other leader can exist (an election needs this voter,
    /// also in a joint configuration, whose voters metrics report as a union), every
    /// acknowledged write is applied here (openraft acknowledges after apply), and everything
    /// committed before this term is applied (it precedes the term's first entry): a read
    /// needs no read-index round. Found by profiling RF=1 point reads: the round is a hop
    /// through the Raft core task and back per read batch.
    ///
    /// Metrics are published between passes of openraft's core loop, so they can still show the
    /// sole voter after this leader appended a configuration adding voters (which can elect
    /// another leader before the metrics catch up): [`Group::voters_may_change`] turns the
    /// shortcut off for good before such a change is proposed.
    fn sole_leader(&self) -> bool {
        if self.voters_changing.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let mut voters = m.membership_config.membership().voter_ids();
        m.state == openraft::ServerState::Leader
            && voters.next() == Some(m.id)
            && voters.next().is_none()
            && m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term)
    }

    /// Read-index rounds this replica has run (each serves every read that waited for it).
    pub fn read_rounds(&self) -> u64 {
        self.reads.rounds()
    }

    /// `NotLeader` (with the known leader as hint) unless this replica believes it leads.
    fn not_leading(&self) -> Option<Error> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state == openraft::ServerState::Leader {
            return None;
        }
        let leader = m.current_leader.and_then(|id| {
            let node = m.membership_config.membership().get_node(&id)?;
            Some((id, node.rpc_addr.clone()))
        });
        Some(Error::NotLeader { leader })
    }

    /// Called before proposing a change of voters through this replica: reads confirm
    /// leadership with a read-index round from now on (see [`Group::sole_leader`]).
    pub(crate) fn voters_may_change(&self) {
        self.voters_changing.store(true, std::sync::atomic::Ordering::Release);
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
