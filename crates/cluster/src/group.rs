//! [`Group`]: one Raft group hosted on this node (a replica of one shard, or of the meta group),
//! with its leader-side read and write entry points. openraft's errors become raftable's in
//! `error`.

use std::sync::Arc;
use std::time::Instant;

use openraft::error::RaftError;
use openraft::Raft;
use raftable_common::{Error, KeyRange, NodeId, Result, Row, ShardId, ShardRead, ShardWrite, WriteOutcome};
use raftable_storage::{Rocks, TypeConfig};

use crate::error::proposed_write_error;

use crate::lease::{Hold, Lease};
use crate::read_index::ReadIndex;

/// A Raft group replica on this node.
pub struct Group {
    pub shard: ShardId,
    pub range: KeyRange,
    pub raft: Raft<TypeConfig>,
    pub(crate) rocks: Arc<Rocks>,
    reads: ReadIndex,
    lease: Arc<Lease>,
    /// Until then this replica answers no vote request (see [`Group::vote`]).
    votes_from: Instant,
}

impl Group {
    pub(crate) fn new(
        shard: ShardId,
        range: KeyRange,
        raft: Raft<TypeConfig>,
        rocks: Arc<Rocks>,
        lease: Arc<Lease>,
        votes_from: Instant,
    ) -> Self {
        Self { shard, range, raft, rocks, reads: ReadIndex::default(), lease, votes_from }
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
        self.raft.client_write(write).await.map_err(|e| proposed_write_error(self.shard, e))?.data
    }

    /// A linearizable read: confirm leadership (by the leader lease, else a shared read-index
    /// round), then read the applied rows.
    pub async fn read(&self, read: ShardRead) -> Result<Vec<Row>> {
        let metrics = self.raft.metrics();
        if !self.lease.valid(|| metrics.borrow()) {
            self.reads.wait(&self.raft).await?;
        }
        raftable_storage::read(&self.rocks, &self.range, &read)
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

    /// Suspends the leader lease (reads take read-index rounds) until the hold is dropped:
    /// taken across a voter change, after which openraft's metrics may lag the voters.
    pub(crate) fn hold_lease(&self) -> Hold {
        self.lease.hold()
    }

    /// Hands a vote request to openraft, once this replica may vote: a group restored from
    /// disk votes only `election_timeout_max` after this process opened it, since the replica
    /// that ran before the restart may have promised a leader not to. Granting a vote ends this
    /// replica's leadership in every term up to the vote's, while openraft's metrics may still
    /// show it leading: the lease is suspended from before openraft sees the request until a
    /// granted vote's term is recorded as the floor the lease's term must exceed (lease module).
    pub(crate) async fn vote(
        &self,
        request: openraft::raft::VoteRequest<NodeId>,
    ) -> std::result::Result<openraft::raft::VoteResponse<NodeId>, RaftError<NodeId>> {
        tokio::time::sleep_until(self.votes_from.into()).await;
        let _hold = self.lease.hold();
        let response = self.raft.vote(request).await;
        match &response {
            Ok(r) if r.vote_granted => self.lease.granted(r.vote),
            _ => {}
        }
        response
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
