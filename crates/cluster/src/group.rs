//! [`Group`]: one Raft group hosted on this node (a replica of one shard, or of the meta group),
//! with its leader-side read and write entry points. openraft's errors become raftable's in
//! `error`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::Raft;
use raftable_common::{
    Error, KeyRange, NodeId, Result, Row, ShardCommand, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome,
};
use raftable_storage::{expired_records, mvcc, Rocks, TypeConfig};

use crate::clock::ShardClock;
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
    /// Commit timestamps of the writes this replica proposes as leader; `None` on the meta
    /// group, whose rows are versioned by log index.
    clock: Option<ShardClock>,
    /// The applied index and threshold of the last complete garbage-collection pass.
    collected: std::sync::Mutex<Option<(u64, Ts)>>,
    /// Snapshot chunks received so far (see [`Group::receive_snapshot_chunk`]).
    snapshot_chunks: Arc<AtomicU64>,
}

/// How long after the last snapshot chunk a replica that stopped campaigning for the transfer
/// campaigns again (the leader's chunk timeout is 2 s).
const SNAPSHOT_QUIET: Duration = Duration::from_secs(3);

/// The most row versions one garbage-collection command drops.
const GC_BATCH: usize = 1_000;

impl Group {
    pub(crate) fn new(
        shard: ShardId,
        range: KeyRange,
        raft: Raft<TypeConfig>,
        rocks: Arc<Rocks>,
        lease: Arc<Lease>,
        votes_from: Instant,
        clock: Option<ShardClock>,
    ) -> Self {
        let reads = ReadIndex::default();
        let (collected, snapshot_chunks) = Default::default();
        Self { shard, range, raft, rocks, reads, lease, votes_from, clock, collected, snapshot_chunks }
    }

    /// Receives one chunk of a snapshot from the leader.
    ///
    /// openraft 0.9 files the chunks before the last without its core seeing them, so they do
    /// not count as contact with the leader, and the leader's heartbeats to this replica wait
    /// behind the transfer: a transfer longer than an election timeout made this replica
    /// campaign, the leader step down and the transfer start over, without end (a 120 MB shard
    /// never caught up a restarted replica). So while chunks keep coming this replica does not
    /// campaign (it could not win: its log is behind); it does again after the last chunk, or
    /// once chunks stop for [`SNAPSHOT_QUIET`].
    pub async fn receive_snapshot_chunk(
        &self,
        chunk: InstallSnapshotRequest<TypeConfig>,
    ) -> std::result::Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let received = self.snapshot_chunks.fetch_add(1, SeqCst) + 1;
        self.raft.runtime_config().elect(false);
        let last = chunk.done;
        let result = self.raft.install_snapshot(chunk).await;
        // Not before a restarted replica's own start-up wait is over (`Node` enables it then).
        let (raft, chunks, votes_from) = (self.raft.clone(), self.snapshot_chunks.clone(), self.votes_from);
        let quiet = if last || result.is_err() { Duration::ZERO } else { SNAPSHOT_QUIET };
        tokio::spawn(async move {
            tokio::time::sleep_until(votes_from.max(Instant::now() + quiet).into()).await;
            if chunks.load(SeqCst) == received {
                raft.runtime_config().elect(true);
            }
        });
        result
    }

    /// Replicates and applies `write` if this replica leads the group.
    ///
    /// openraft answers `ForwardToLeader` both when it refuses a proposal (not leader: nothing
    /// appended, safe to retry on the leader) and when it truncates a proposal it had appended
    /// after losing leadership (another replica may still hold that entry and a later leader
    /// commit it: the outcome is unknown). The two are told apart by asking first: a replica
    /// that does not believe it leads refuses without proposing; once proposed, a
    /// `ForwardToLeader` is reported as unknown. (Stale metrics only err towards unknown.)
    ///
    /// On a table shard the leader stamps the write with its commit timestamp
    /// (`crate::clock`), above `after` (a causality token), and proposes it under the shard
    /// clock's lock.
    pub async fn write(&self, write: ShardWrite, after: Ts) -> Result<WriteOutcome> {
        if let Some(refusal) = self.not_leading() {
            return Err(refusal);
        }
        if self.clock.is_none() {
            return self.propose(ShardCommand::Plain(write)).await;
        }
        let keys = write.ops.iter().map(|op| op.key().to_vec()).collect();
        self.stamped(keys, after, |ts| ShardCommand::Stamped { ts, write }).await
    }

    /// Replicates and applies a transaction command (`raftable_common::TxnOp`) on a table
    /// shard this replica leads, stamped like a write.
    pub async fn txn(&self, op: TxnOp, after: Ts) -> Result<WriteOutcome> {
        if let Some(refusal) = self.not_leading() {
            return Err(refusal);
        }
        if self.clock.is_none() {
            return Err(Error::InvalidInput(format!("shard {} holds no table rows", self.shard)));
        }
        // A transaction commits above everything it read.
        let after = match &op {
            TxnOp::Commit { read_ts, .. } | TxnOp::Prepare { read_ts, .. } => after.max(*read_ts),
            _ => after,
        };
        self.stamped(op.keys(), after, |ts| ShardCommand::Txn { ts, op }).await
    }

    /// Stamps the command `make` builds (latching `keys`) and proposes it, both under the
    /// shard clock's lock, so one leader's log holds its commands in timestamp order.
    async fn stamped(
        &self,
        keys: Vec<Vec<u8>>,
        after: Ts,
        make: impl FnOnce(Ts) -> ShardCommand,
    ) -> Result<WriteOutcome> {
        let clock = self.clock.as_ref().expect("table shards have a clock");
        let term = self.raft.metrics().borrow().current_term;
        let mut leading = clock.lock().await;
        let (ts, latch) = clock.stamp(&mut leading, term, keys, after).await?;
        // The oracle may have taken a while: propose only in the term stamped for.
        if let Some(refusal) = self.not_leading() {
            return Err(refusal);
        }
        if self.raft.metrics().borrow().current_term != term {
            return Err(Error::Retry(format!("shard {}: new term while stamping a write", self.shard)));
        }
        // From here on the proposal runs to its end even if the caller gives up on it (the
        // router abandons an attempt after its patience, a client goes away): it proposes
        // (still under the clock's lock) and holds the latch until the write applied or failed,
        // since the entry may still apply at `ts`, and a read at or above `ts` of its keys that
        // stopped waiting would miss it, and let a conflicting commit validate against what it
        // read.
        let (raft, shard, command) = (self.raft.clone(), self.shard, make(ts));
        RunToEnd::new(async move {
            let reply = raft.client_write_ff(command).await;
            drop(leading);
            let reply = reply.map_err(|f| proposed_write_error(shard, RaftError::Fatal(f)))?;
            let result = match reply.await {
                Ok(result) => {
                    result.map_err(|e| proposed_write_error(shard, RaftError::APIError(e))).and_then(|r| r.data)
                }
                Err(_) => Err(Error::Unknown(format!("shard {shard}: raft group stopped with a write proposed"))),
            };
            match &result {
                Ok(outcome) => latch.applied(term, Ts(outcome.version)).await,
                Err(_) => drop(latch),
            }
            result
        })
        .await
    }

    async fn propose(&self, command: ShardCommand) -> Result<WriteOutcome> {
        self.raft.client_write(command).await.map_err(|e| proposed_write_error(self.shard, e))?.data
    }

    /// One garbage-collection pass over a table shard this replica leads: drops, in commands of
    /// at most [`GC_BATCH`] versions, every version no read at or above `threshold` can see.
    /// Skipped when nothing was applied since a complete pass whose threshold was above every
    /// timestamp this leader chose (nothing can have become garbage since). Returns the
    /// versions dropped.
    pub async fn collect_garbage(&self, threshold: Ts) -> Result<usize> {
        let Some(clock) = &self.clock else { return Ok(0) };
        if self.not_leading().is_some() {
            return Ok(0);
        }
        let applied = self.progress().0;
        let term = self.raft.metrics().borrow().current_term;
        let last = *self.collected.lock().expect("collected lock");
        if let (Some((at, passed)), Some(newest)) = (last, clock.newest(term).await) {
            if at == applied && passed > newest {
                return Ok(0);
            }
        }
        let (mut start, end) = (self.range.start.clone(), self.range.end.clone());
        let mut dropped = 0;
        loop {
            let (rocks, from, to) = (self.rocks.clone(), start.clone(), end.clone());
            // A pass reads the whole range: off the async runtime's threads.
            let found = tokio::task::spawn_blocking(move || mvcc::garbage(&rocks, &from, &to, threshold, GC_BATCH))
                .await
                .map_err(|e| Error::internal(format!("garbage scan panicked: {e}")))??;
            if !found.versions.is_empty() {
                dropped += found.versions.len();
                self.propose(ShardCommand::Gc { threshold, versions: found.versions, records: Vec::new() }).await?;
            }
            match found.resume {
                Some(resume) => start = resume,
                None => break,
            }
        }
        // The records of one-phase commits that nobody will send again.
        loop {
            let (rocks, from, to) = (self.rocks.clone(), self.range.start.clone(), end.clone());
            let records = tokio::task::spawn_blocking(move || expired_records(&rocks, &from, &to, threshold, GC_BATCH))
                .await
                .map_err(|e| Error::internal(format!("record scan panicked: {e}")))??;
            if records.is_empty() {
                break;
            }
            let full = records.len() == GC_BATCH;
            dropped += records.len();
            self.propose(ShardCommand::Gc { threshold, versions: Vec::new(), records }).await?;
            if !full {
                break;
            }
        }
        *self.collected.lock().expect("collected lock") = Some((applied, threshold));
        Ok(dropped)
    }

    /// A linearizable read: confirm leadership (by the leader lease, else a shared read-index
    /// round), then read the applied rows.
    pub async fn read(&self, read: ShardRead) -> Result<Vec<Row>> {
        let metrics = self.raft.metrics();
        if !self.lease.valid(|| metrics.borrow()) {
            self.reads.wait(&self.raft).await?;
        }
        raftable_storage::read(&self.rocks, self.shard, &self.range, &read)
    }

    /// A read of a table shard at snapshot `ts`, linearizable like [`Group::read`]: after
    /// leadership is confirmed, writes stamped at or below `ts` on what it reads are waited for
    /// and later ones are stamped above `ts` (`ShardClock::before_read`).
    pub async fn read_at(&self, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        let Some(clock) = &self.clock else {
            return Err(Error::InvalidInput(format!("shard {} is not read at a timestamp", self.shard)));
        };
        let metrics = self.raft.metrics();
        if !self.lease.valid(|| metrics.borrow()) {
            self.reads.wait(&self.raft).await?;
        }
        clock.before_read(&read, ts).await;
        raftable_storage::read_at(&self.rocks, self.shard, &self.range, &read, ts)
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

/// A future that runs to its end even if its caller drops it first: polled in place by the
/// caller (no task, no hop to another worker thread on the common path), and handed to a task
/// of its own, its output discarded, if the caller drops it unfinished.
struct RunToEnd<F: Future + Send + 'static>(Option<Pin<Box<F>>>)
where
    F::Output: Send + 'static;

impl<F: Future + Send + 'static> RunToEnd<F>
where
    F::Output: Send + 'static,
{
    fn new(future: F) -> Self {
        Self(Some(Box::pin(future)))
    }
}

impl<F: Future + Send + 'static> Future for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self.0.as_mut().expect("RunToEnd polled after it finished");
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let (Some(future), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(future);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_dropped_run_to_end_still_finishes() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel();
        let mut call = RunToEnd::new(async move {
            wait.await.unwrap();
            done.send("finished").unwrap();
        });
        // The caller polls it once, then gives up on it (as after a timeout).
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut call).await.is_err());
        drop(call);
        go.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), finished).await;
        assert_eq!(outcome.expect("finished within the deadline").unwrap(), "finished");
        // Polled to its end in place, it is not run again.
        assert_eq!(RunToEnd::new(async { 7 }).await, 7);
    }
}
