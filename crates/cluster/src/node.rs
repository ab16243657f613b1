//! [`Node`]: the multi-raft host. It owns the node's RocksDB, the address book and channel pool,
//! and every Raft group replica on the node (opened at start from what the disk holds, on demand
//! when a peer sends a message for a group this node should host, or by the reconcile loop).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raftable_common::{
    Error, KeyRange, NodeId, Result, Row, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome, META_SHARD,
};
use raftable_storage::{LogStore, NodeInfo, Rocks, StateMachine};
use serde::{Deserialize, Serialize};

use crate::clock::{NodeClock, ShardClock};
use crate::config::RaftSettings;
use crate::group::Group;
use crate::lease::Lease;
use crate::network::{NetworkFactory, Peers};
use crate::tso::Oracle;

/// A shard command as it travels to the shard's leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    Read(ShardRead),
    /// A read of a table shard at a snapshot timestamp.
    ReadAt(ShardRead, Ts),
    /// A write; on a table shard, committed above `after` (a causality token: the newest commit
    /// timestamp the gateway node has acknowledged, see `crate::clock`).
    Write {
        write: ShardWrite,
        after: Ts,
    },
    /// A transaction command on a table shard, stamped like a write (and above `after`).
    Txn {
        op: TxnOp,
        after: Ts,
    },
    /// `count` timestamps from the timestamp oracle (`crate::tso`); meta group only.
    Timestamps {
        count: u32,
    },
}

/// The answer to an [`Op`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpResult {
    Rows(Vec<Row>),
    Written(WriteOutcome),
    /// The first of the timestamps handed out; the others follow at steps of `tso::STEP`.
    Timestamps(Ts),
}

impl OpResult {
    /// The rows a read answered with.
    pub fn into_rows(self) -> Result<Vec<Row>> {
        match self {
            OpResult::Rows(rows) => Ok(rows),
            other => Err(Error::internal(format!("{other:?} for a read"))),
        }
    }

    /// The first timestamp a [`Op::Timestamps`] call answered with.
    pub fn into_timestamps(self) -> Result<Ts> {
        match self {
            OpResult::Timestamps(first) => Ok(first),
            other => Err(Error::internal(format!("{other:?} for timestamps"))),
        }
    }

    /// The outcome a write answered with.
    pub fn into_written(self) -> Result<WriteOutcome> {
        match self {
            OpResult::Written(outcome) => Ok(outcome),
            other => Err(Error::internal(format!("{other:?} for a write"))),
        }
    }
}

/// One raftable node's Raft side.
pub struct Node {
    pub id: NodeId,
    pub info: NodeInfo,
    pub settings: RaftSettings,
    pub rocks: Arc<Rocks>,
    pub peers: Arc<Peers>,
    groups: RwLock<HashMap<ShardId, Arc<Group>>>,
    /// Serializes group creation so one group is never opened twice.
    opening: tokio::sync::Mutex<()>,
    /// Set when the node stops: no group opens after that.
    stopping: std::sync::atomic::AtomicBool,
    /// Whether the node accepts injected faults (`raftable start --fault-injection`).
    fault_injection: std::sync::atomic::AtomicBool,
    /// The timestamp oracle, serving while this node leads the meta group.
    tso: Oracle,
    /// This node's link to the oracle, for the commit timestamps of the groups it leads.
    pub clock: Arc<NodeClock>,
}

impl Node {
    pub fn new(id: NodeId, info: NodeInfo, settings: RaftSettings, rocks: Arc<Rocks>) -> Arc<Self> {
        let peers = Arc::new(Peers::default());
        peers.set(id, info.clone());
        Arc::new(Self {
            id,
            info,
            settings,
            rocks,
            peers,
            groups: RwLock::default(),
            opening: tokio::sync::Mutex::new(()),
            stopping: Default::default(),
            fault_injection: Default::default(),
            tso: Oracle::default(),
            clock: Arc::default(),
        })
    }

    /// Lets the node accept injected faults (`SetFaults`): for the chaos runner and tests only.
    pub fn allow_fault_injection(&self) {
        self.fault_injection.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn fault_injection_allowed(&self) -> bool {
        self.fault_injection.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn group(&self, shard: ShardId) -> Option<Arc<Group>> {
        self.groups.read().expect("groups lock").get(&shard).cloned()
    }

    /// Every group hosted here, ordered by shard id.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        let groups = self.groups.read().expect("groups lock");
        let mut all: Vec<_> = groups.values().cloned().collect();
        all.sort_by_key(|g| g.shard);
        all
    }

    /// Opens the replica of `shard` owning `range` (idempotent). A new replica starts empty and
    /// uninitialized: it learns its membership from the leader, or from [`Node::initialize`].
    pub async fn open_group(&self, shard: ShardId, range: KeyRange) -> Result<Arc<Group>> {
        if let Some(g) = self.group(shard) {
            return Ok(g);
        }
        let _guard = self.opening.lock().await;
        if let Some(g) = self.group(shard) {
            return Ok(g);
        }
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Retry("node is stopping".into()));
        }
        // The replica that ran here before a restart may have promised a leader not to vote or
        // campaign for election_timeout_max; openraft forgets such promises, so a group with
        // state on disk keeps them: no campaign and no vote during its first max timeout (the
        // lease module explains). A group new to this node promised nothing.
        let restored = StateMachine::stored_range(&self.rocks, shard)?.is_some();
        let votes_from =
            Instant::now() + Duration::from_millis(if restored { self.settings.election_max_ms } else { 0 });
        let mut config = self.settings.openraft_config();
        config.enable_elect = !restored;
        let config = config.validate().map_err(|e| Error::InvalidInput(format!("raft settings: {e}")))?;
        let log = LogStore::new(self.rocks.clone(), shard);
        let sm = StateMachine::open(self.rocks.clone(), shard, range.clone()).await?;
        let lease = Lease::new(Duration::from_millis(self.settings.election_min_ms));
        let network = NetworkFactory { group: shard, peers: self.peers.clone(), lease: lease.clone() };
        let raft = openraft::Raft::new(self.id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| Error::Internal(format!("starting raft group {shard}: {e}")))?;
        if restored {
            tokio::spawn({
                let raft = raft.clone();
                async move {
                    tokio::time::sleep_until(votes_from.into()).await;
                    raft.runtime_config().elect(true);
                }
            });
        }
        // Learn peer addresses from the membership stored on disk (a restarted node).
        for (id, info) in raft.metrics().borrow().membership_config.nodes() {
            self.peers.set(*id, info.clone());
        }
        let clock = range.is_versioned().then(|| ShardClock::new(self.clock.clone()));
        let group = Arc::new(Group::new(shard, range, raft, self.rocks.clone(), lease, votes_from, clock));
        self.groups.write().expect("groups lock").insert(shard, group.clone());
        tracing::debug!(shard, "opened raft group");
        Ok(group)
    }

    /// Reopens every group whose state is on disk (node restart).
    pub async fn reopen_groups(&self) -> Result<()> {
        for shard in self.rocks.group_ids()? {
            if let Some(range) = StateMachine::stored_range(&self.rocks, shard)? {
                self.open_group(shard, range).await?;
            }
        }
        Ok(())
    }

    /// Stops this node's replica of a dropped shard and deletes everything it kept (also when
    /// the replica is on disk but not open). Nothing reopens it: the shard has left the map.
    pub async fn drop_group(&self, shard: ShardId) -> Result<()> {
        if shard == META_SHARD {
            return Err(Error::InvalidInput("the meta group cannot be dropped".into()));
        }
        let _guard = self.opening.lock().await;
        let group = self.groups.write().expect("groups lock").remove(&shard);
        let range = match &group {
            Some(g) => Some(g.range.clone()),
            None => StateMachine::stored_range(&self.rocks, shard)?,
        };
        if let Some(group) = group {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(shard, error = %e, "raft group shutdown failed");
            }
        }
        if let Some(range) = range {
            self.rocks.destroy_group(shard, &range).await?;
            tracing::info!(shard, "deleted the replica of a dropped shard");
        }
        Ok(())
    }

    /// Bootstraps `shard`'s group with `members` as its first voters, from this node. Harmless
    /// when the group is already initialized.
    pub async fn initialize(&self, shard: ShardId, members: &[NodeId]) -> Result<()> {
        let group = self.group(shard).ok_or_else(|| Error::Internal(format!("group {shard} not open")))?;
        let mut nodes = BTreeMap::new();
        for id in members {
            let info = self.peers.get(*id).ok_or_else(|| Error::Retry(format!("address of node {id} unknown")))?;
            nodes.insert(*id, info);
        }
        match group.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Internal(format!("initializing group {shard}: {e}"))),
        }
    }

    /// Serves a shard command with the local replica, if this node leads the shard. The answer
    /// for a group this node does not host is `NotLeader` without a hint.
    pub async fn local_call(&self, shard: ShardId, op: Op) -> Result<OpResult> {
        let group = self.group(shard).ok_or(Error::NotLeader { leader: None })?;
        match op {
            Op::Read(read) => group.read(read).await.map(OpResult::Rows),
            Op::ReadAt(read, ts) => group.read_at(read, ts).await.map(OpResult::Rows),
            Op::Write { write, after } => group.write(write, after).await.map(OpResult::Written),
            Op::Txn { op, after } => group.txn(op, after).await.map(OpResult::Written),
            Op::Timestamps { count } if shard == META_SHARD => {
                self.tso.allocate(&group, count).await.map(OpResult::Timestamps)
            }
            Op::Timestamps { .. } => {
                Err(Error::InvalidInput(format!("timestamps come from the meta group, not shard {shard}")))
            }
        }
    }

    /// Builds a snapshot of every hosted group and purges the logs behind it; returns each
    /// group's snapshot index.
    pub async fn compact(&self) -> Result<BTreeMap<ShardId, u64>> {
        let mut out = BTreeMap::new();
        for group in self.groups() {
            let applied = group.progress().0;
            let stopped = |e| Error::Internal(format!("group {} stopped: {e}", group.shard));
            group.raft.trigger().snapshot().await.map_err(stopped)?;
            let deadline = std::time::Duration::from_secs(10);
            group
                .raft
                .wait(Some(deadline))
                .metrics(|m| m.snapshot.map(|s| s.index).unwrap_or(0) >= applied, "snapshot built")
                .await
                .map_err(|e| Error::Retry(format!("snapshot of group {}: {e}", group.shard)))?;
            let index = group.progress().1;
            group.raft.trigger().purge_log(index).await.map_err(stopped)?;
            out.insert(group.shard, index);
        }
        Ok(out)
    }

    /// Stops every group (graceful node shutdown); no group opens after this.
    pub async fn shutdown(&self) {
        {
            let _guard = self.opening.lock().await;
            self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        for group in self.groups() {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(shard = group.shard, error = %e, "raft group shutdown failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use raftable_common::WriteOp;

    use super::*;

    /// Oracle values from the wall clock, for a node without a meta group.
    struct WallOracle;

    #[async_trait::async_trait]
    impl crate::clock::Oracle for WallOracle {
        async fn fresh(&self) -> Result<Ts> {
            Ok(Ts::new(crate::now_ms(), 0))
        }
    }

    /// A one-node group in process: a write applies and linearizable reads see it. (Sharing of
    /// read-index rounds is tested deterministically in `read_index`.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_node_group_writes_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        let info = NodeInfo { rpc_addr: "127.0.0.1:1".into(), pg_addr: String::new() };
        let node = Node::new(1, info, RaftSettings::default(), rocks);
        let oracle: Arc<dyn crate::clock::Oracle> = Arc::new(WallOracle);
        node.clock.connect(Arc::downgrade(&oracle));
        let range = KeyRange::new(vec![1], vec![2]);
        let group = node.open_group(5, range).await.unwrap();
        node.initialize(5, &[1]).await.unwrap();
        group.raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leader").await.unwrap();

        let put = WriteOp::Put { key: vec![1, 1], value: b"v".to_vec() };
        let outcome = group.write(ShardWrite::new(vec![put]), Ts::MIN).await.unwrap();
        assert_eq!(outcome.changed, vec![true]);
        // A table shard's rows are versioned by commit timestamp: one above the oracle value
        // the leader's term started from (I1).
        let floor = node.clock.newest();
        assert!(outcome.version > floor.0 && outcome.version < floor.0 + crate::tso::STEP, "{outcome:?}");

        // Linearizable reads through the local leader see the write. The group's only voter
        // leads and has applied an entry of its term: no read-index round is needed.
        let in_term = |m: &openraft::RaftMetrics<u64, NodeInfo>| {
            m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term)
        };
        group.raft.wait(Some(Duration::from_secs(10))).metrics(in_term, "applied in term").await.unwrap();
        let mut reads = Vec::new();
        for _ in 0..16 {
            let node = node.clone();
            reads.push(tokio::spawn(
                async move { node.local_call(5, Op::Read(ShardRead::Get { key: vec![1, 1] })).await },
            ));
        }
        for r in reads {
            match r.await.unwrap().unwrap() {
                OpResult::Rows(rows) => assert_eq!(rows[0].value, b"v".to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(group.read_rounds(), 0);
        node.shutdown().await;
    }
}
