//! Leader leases: linearizable reads on a group's leader without a read-index round while a
//! quorum recently accepted its messages. Sits between `network::GroupClient` (which reports
//! every AppendEntries a peer accepted, with the time it was sent) and [`Group::read`]
//! (which asks [`Lease::valid`] before falling back to a shared read-index round).
//!
//! Why it is safe. A follower that accepts an AppendEntries carrying the leader's vote (any
//! answer but `HigherVote`) refuses every vote request for `election_timeout_max` after it
//! received it, and does not campaign itself for longer (openraft 0.9's leader lease). So
//! when a majority of every voter configuration accepted messages sent at or after `start`, no
//! other leader can be elected before `start + election_timeout_max`. The leader serves reads
//! until `start + lease`, `lease = election_timeout_min` (100 ms of margin with the defaults, for
//! clock-rate drift between machines). Everything else a read needs: the replica leads, in the
//! vote those messages carried, and has applied an entry of its own term (so every write
//! acknowledged before the read, by this or an earlier leader, is applied here).
//!
//! Three holes openraft leaves, and how they are closed:
//! - The leader itself grants votes: its own promise expires `election_timeout_max` after it
//!   was elected, and its metrics still show it leading for a moment after it granted one.
//!   `Group::vote` takes a [`Hold`] on the lease while openraft handles a vote request, and
//!   records the term of a granted vote: the lease then needs a leader term above it.
//! - Voter changes: metrics can show the old voters for a moment after this leader appended a
//!   new configuration; placement holds the lease across `change_membership` until openraft
//!   published metrics after it. (Placement only adds voters, so each step shares a majority
//!   with the one before; a change that removes the leader or shrinks to one voter would need
//!   more: openraft elects a sole voter without waiting for any lease.)
//! - A restarted replica forgets the promises it made before the crash: a group restored from
//!   disk neither votes nor campaigns during its first `election_timeout_max`
//!   (`Group::vote`, `node::Node::open_group`).
//!
//! The argument assumes every node runs the same election timeouts (`RaftSettings` defaults;
//! the flags that change them are hidden and for tests): a leader with a longer minimum than a
//! follower's maximum would overstay its lease.
//!
//! A group whose only voter is this replica is the degenerate case: the quorum is the leader
//! alone, the lease never expires, and reads never need a round.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{RaftMetrics, ServerState, Vote};
use raftable_common::NodeId;
use raftable_storage::NodeInfo;

/// The lease state of one group replica.
#[derive(Debug)]
pub(crate) struct Lease {
    /// How long after the quorum's send time the leader serves reads.
    duration: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per peer: the newest send time of an AppendEntries it accepted, and the vote it carried.
    acks: HashMap<NodeId, (Vote<NodeId>, Instant)>,
    /// Holds in force (vote requests being handled, voter changes in flight).
    holds: u32,
    /// When the last hold ended: only messages sent after it count.
    released: Option<Instant>,
    /// The highest term in which this replica granted a vote: it cannot lead in that term or
    /// an earlier one any more, whatever the metrics still say.
    granted_term: u64,
}

impl Lease {
    pub(crate) fn new(duration: Duration) -> Arc<Self> {
        Arc::new(Self { duration, state: Mutex::default() })
    }

    /// `target` accepted an AppendEntries carrying `vote`, sent at `sent`.
    pub(crate) fn accepted(&self, target: NodeId, vote: Vote<NodeId>, sent: Instant) {
        let mut state = self.state.lock().expect("lease lock");
        let newer = match state.acks.get(&target) {
            Some((v, t)) => vote > *v || (vote == *v && sent > *t),
            None => true,
        };
        if newer {
            state.acks.insert(target, (vote, sent));
        }
    }

    /// Whether this replica may serve a linearizable read now without a read-index round.
    /// The lease state is read before the metrics: a hold taken after this check began is a
    /// vote that arrived after the moment the read is linearized at.
    pub(crate) fn valid<M>(&self, metrics: impl FnOnce() -> M) -> bool
    where
        M: Deref<Target = RaftMetrics<NodeId, NodeInfo>>,
    {
        let state = self.state.lock().expect("lease lock");
        if state.holds > 0 {
            return false;
        }
        let now = Instant::now();
        let metrics = metrics();
        if metrics.vote.leader_id().term <= state.granted_term {
            return false;
        }
        let Some(start) = quorum_start(&state.acks, &metrics, now) else {
            return false;
        };
        state.released.is_none_or(|r| start > r) && now < start + self.duration
    }

    /// This replica granted `vote` to a candidate.
    pub(crate) fn granted(&self, vote: Vote<NodeId>) {
        let mut state = self.state.lock().expect("lease lock");
        state.granted_term = state.granted_term.max(vote.leader_id().term);
    }

    /// Suspends the lease until the returned hold is dropped; from then on only messages sent
    /// after the drop count.
    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        self.state.lock().expect("lease lock").holds += 1;
        Hold { lease: self.clone() }
    }
}

/// The earliest send time among the newest messages accepted by a majority of every voter
/// configuration (both halves of a joint one), counting this leader as "now"; `None` unless
/// this replica leads, in the vote the messages carried, with an entry of its term applied.
fn quorum_start(
    acks: &HashMap<NodeId, (Vote<NodeId>, Instant)>,
    m: &RaftMetrics<NodeId, NodeInfo>,
    now: Instant,
) -> Option<Instant> {
    let term = m.vote.leader_id().term;
    if m.state != ServerState::Leader
        || !m.vote.is_committed()
        || m.last_applied.is_none_or(|l| l.leader_id.term != term)
    {
        return None;
    }
    let mut start = now;
    for voters in m.membership_config.membership().get_joint_config() {
        let mut sent: Vec<Instant> = voters
            .iter()
            .filter_map(|id| match acks.get(id) {
                _ if *id == m.id => Some(now),
                Some((vote, at)) if *vote == m.vote => Some(*at),
                _ => None,
            })
            .collect();
        let majority = voters.len() / 2 + 1;
        if sent.len() < majority {
            return None;
        }
        sent.sort_unstable_by(|a, b| b.cmp(a));
        start = start.min(sent[majority - 1]);
    }
    Some(start)
}

/// Keeps a group's lease suspended while alive.
pub(crate) struct Hold {
    lease: Arc<Lease>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut state = self.lease.state.lock().expect("lease lock");
        state.holds -= 1;
        state.released = Some(Instant::now());
    }
}

/// Waits until openraft published metrics after this call, so they reflect everything it
/// processed before. openraft publishes at the end of every pass of its core loop (woken at
/// least by every tick, 1.5 × heartbeat); a stalled core keeps the caller waiting, and its
/// hold in force, until it moves or stops.
pub(crate) async fn metrics_caught_up(raft: &openraft::Raft<raftable_storage::TypeConfig>) {
    let mut rx = raft.metrics();
    rx.borrow_and_update();
    let _ = rx.changed().await;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};

    use super::*;

    const LEASE: Duration = Duration::from_millis(150);

    /// Metrics of node 1 leading term 3 with voters `configs` and an entry of term 3 applied.
    fn leader(configs: Vec<Vec<NodeId>>) -> RaftMetrics<NodeId, NodeInfo> {
        leader_in(3, configs)
    }

    /// Metrics of node 1 leading `term` with voters `configs` and an entry of `term` applied.
    fn leader_in(term: u64, configs: Vec<Vec<NodeId>>) -> RaftMetrics<NodeId, NodeInfo> {
        let mut m = RaftMetrics::new_initial(1);
        m.state = ServerState::Leader;
        m.vote = Vote::new_committed(term, 1);
        m.current_term = term;
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(term, 1), 7));
        let configs: Vec<BTreeSet<NodeId>> = configs.into_iter().map(|c| c.into_iter().collect()).collect();
        let nodes: BTreeMap<NodeId, NodeInfo> = configs.iter().flatten().map(|id| (*id, NodeInfo::default())).collect();
        let membership = Membership::new(configs, nodes);
        m.membership_config = Arc::new(StoredMembership::new(None, membership));
        m
    }

    #[test]
    fn a_majority_of_fresh_acks_in_the_leaders_vote_grants_the_lease() {
        let lease = Lease::new(LEASE);
        let m = leader(vec![vec![1, 2, 3]]);
        assert!(!lease.valid(|| &m), "no peer has accepted anything yet");
        lease.accepted(2, Vote::new_committed(2, 2), Instant::now());
        assert!(!lease.valid(|| &m), "an ack in an older leader's vote does not count");
        lease.accepted(3, Vote::new_committed(3, 1), Instant::now());
        assert!(lease.valid(|| &m), "leader + node 3 are a majority of three");
    }

    #[test]
    fn the_lease_expires_and_needs_an_applied_entry_of_the_term() {
        let lease = Lease::new(LEASE);
        let m = leader(vec![vec![1, 2, 3]]);
        let old = Instant::now() - LEASE - Duration::from_millis(1);
        lease.accepted(2, Vote::new_committed(3, 1), old);
        assert!(!lease.valid(|| &m), "the only ack was sent longer than the lease ago");
        lease.accepted(2, Vote::new_committed(3, 1), Instant::now());
        assert!(lease.valid(|| &m));
        let mut behind = m.clone();
        behind.last_applied = Some(LogId::new(CommittedLeaderId::new(2, 2), 6));
        assert!(!lease.valid(|| &behind), "nothing of this term applied yet");
        let mut follower = m.clone();
        follower.state = ServerState::Follower;
        assert!(!lease.valid(|| &follower));
    }

    #[test]
    fn a_joint_configuration_needs_a_majority_of_both_halves() {
        let lease = Lease::new(LEASE);
        let m = leader(vec![vec![1, 2, 3], vec![1, 4, 5]]);
        lease.accepted(2, Vote::new_committed(3, 1), Instant::now());
        assert!(!lease.valid(|| &m), "majority of the old voters only");
        lease.accepted(5, Vote::new_committed(3, 1), Instant::now());
        assert!(lease.valid(|| &m));
    }

    #[test]
    fn a_hold_suspends_the_lease_and_only_later_messages_restore_it() {
        let lease = Lease::new(LEASE);
        let m = leader(vec![vec![1, 2, 3]]);
        lease.accepted(2, Vote::new_committed(3, 1), Instant::now());
        let hold = lease.hold();
        assert!(!lease.valid(|| &m));
        lease.accepted(3, Vote::new_committed(3, 1), Instant::now());
        drop(hold);
        assert!(!lease.valid(|| &m), "both acks were sent before the hold ended");
        lease.accepted(2, Vote::new_committed(3, 1), Instant::now() + Duration::from_millis(1));
        assert!(lease.valid(|| &m));
    }

    #[test]
    fn a_granted_vote_ends_the_lease_in_its_term_and_earlier() {
        let lease = Lease::new(LEASE);
        let m = leader(vec![vec![1, 2, 3]]);
        lease.accepted(2, Vote::new_committed(3, 1), Instant::now());
        assert!(lease.valid(|| &m));
        lease.granted(Vote::new(4, 2));
        assert!(!lease.valid(|| &m), "the metrics still show term 3, but this replica voted in term 4");
        let later = leader_in(5, vec![vec![1, 2, 3]]);
        lease.accepted(2, Vote::new_committed(5, 1), Instant::now());
        assert!(lease.valid(|| &later), "leading again in a later term");
    }

    #[test]
    fn a_sole_voter_leader_needs_no_acks() {
        let lease = Lease::new(LEASE);
        let sole = leader(vec![vec![1]]);
        assert!(lease.valid(|| &sole));
        let hold = lease.hold();
        assert!(!lease.valid(|| &sole), "not while a voter change is in flight");
        drop(hold);
        assert!(lease.valid(|| &sole));
    }
}
