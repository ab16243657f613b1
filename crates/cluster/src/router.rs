//! [`Router`]: the node's [`ShardClient`]. It sends each shard command to the shard's leader,
//! in process when the leader is this node, else over the `Shard` gRPC service, and retries
//! through elections and stale routing until its deadline. It also caches the shard map and the
//! node registry read from the meta group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use raftable_common::{
    Error, NodeId, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome, META_SHARD,
};
use raftable_proto::shard_client::ShardClient as GrpcShardClient;
use raftable_proto::ShardRequest;
use raftable_storage::NodeInfo;

use crate::clock::Oracle;
use crate::coalesce::Coalescer;
use crate::error::shard_reply;
use crate::meta::{self, NodeRecord, ShardRecord};
use crate::network::{encode, MAX_MESSAGE, MAX_WRITE};
use crate::node::{Node, Op, OpResult};

/// Routes shard commands to leaders. One per node, shared.
pub struct Router {
    node: Arc<Node>,
    shards: RwLock<HashMap<ShardId, (ShardRecord, u64)>>,
    nodes: RwLock<Vec<NodeRecord>>,
    leaders: Mutex<HashMap<ShardId, NodeId>>,
    reads: Arc<Coalescer>,
    timeout: Duration,
}

impl Router {
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        let timeout = Duration::from_millis(node.settings.route_timeout_ms);
        let reads = Coalescer::new(node.peers.clone());
        let router = Arc::new(Self {
            node,
            shards: RwLock::default(),
            nodes: RwLock::default(),
            leaders: Mutex::default(),
            reads,
            timeout,
        });
        let oracle: Weak<dyn Oracle> = Arc::downgrade(&router) as Weak<dyn Oracle>;
        router.node.clock.connect(oracle);
        router
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The cached shard map (refreshed by [`Router::refresh`]), ordered by shard id.
    pub fn shard_map(&self) -> Vec<(ShardRecord, u64)> {
        let mut all: Vec<_> = self.shards.read().expect("shard map lock").values().cloned().collect();
        all.sort_by_key(|(s, _)| s.id);
        all
    }

    pub fn shard(&self, shard: ShardId) -> Option<ShardRecord> {
        self.shards.read().expect("shard map lock").get(&shard).map(|(s, _)| s.clone())
    }

    /// The cached node registry.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.read().expect("nodes lock").clone()
    }

    /// The leader last seen for `shard`: the local replica's view if hosted, else the cache.
    pub fn leader(&self, shard: ShardId) -> Option<NodeId> {
        match self.node.group(shard) {
            Some(g) => g.leader(),
            None => self.leaders.lock().expect("leaders lock").get(&shard).copied(),
        }
    }

    /// Re-reads the shard map and node registry from the meta group.
    pub async fn refresh(&self) -> Result<()> {
        let nodes = meta::nodes(self).await?;
        let shards = meta::shards(self).await?;
        for n in &nodes {
            self.node.peers.set(n.id, NodeInfo { rpc_addr: n.rpc_addr.clone(), pg_addr: n.pg_addr.clone() });
        }
        *self.nodes.write().expect("nodes lock") = nodes;
        *self.shards.write().expect("shard map lock") = shards.into_iter().map(|(s, v)| (s.id, (s, v))).collect();
        Ok(())
    }

    /// Where to try `shard` on attempt `attempt`: the cached leader first, then the replicas in
    /// turn, and for the meta group with no record yet, every known node.
    fn pick(&self, shard: ShardId, attempt: usize) -> Option<NodeId> {
        if attempt == 0 {
            // The cache holds the last leader that answered or was hinted: fresher than a
            // local replica's possibly lagging view.
            let cached = self.leaders.lock().expect("leaders lock").get(&shard).copied();
            if let Some(leader) = cached.or_else(|| self.leader(shard)) {
                return Some(leader);
            }
        }
        let mut candidates = self.shard(shard).map(|s| s.replicas).unwrap_or_default();
        if candidates.is_empty() && shard == META_SHARD {
            candidates = self.node.peers.all().into_iter().map(|(id, _)| id).collect();
        }
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[attempt % candidates.len()])
    }

    /// Sends `op` to the leader of `shard`, retrying retryable failures until the deadline.
    ///
    /// Reads and transaction commands may be sent again (a one-phase commit is applied at most
    /// once: `TxnOp::Commit`; the others change nothing the second time), so for them an attempt
    /// that gets no answer within its patience (the election timeout; doubling from the third
    /// such attempt on, so a slow leader still gets there) is abandoned and retried, at the new
    /// leader once there is one, and a reply lost with a leader that died is asked for again:
    /// only when the deadline passes without an answer is the outcome unknown. A hung leader
    /// (paused, cut off) so stalls them for about an election, not until the connection's
    /// keep-alive gives up. Plain writes are sent once.
    ///
    /// A write to a table shard carries the newest commit timestamp this node has acknowledged
    /// (`clock::NodeClock::observed`) and raises it with its own: writes that follow one another
    /// through this node commit in that order, whichever shards they go to.
    pub async fn call(&self, shard: ShardId, mut op: Op) -> Result<OpResult> {
        let write = match &mut op {
            Op::Write { write, after } => {
                if bincode::serialized_size(write).unwrap_or(0) > MAX_WRITE as u64 {
                    return Err(Error::InvalidInput(format!("write of more than {MAX_WRITE} bytes")));
                }
                *after = (*after).max(self.node.clock.observed());
                true
            }
            Op::Txn { op, after } => {
                if bincode::serialized_size(op).unwrap_or(0) > MAX_WRITE as u64 {
                    return Err(Error::InvalidInput(format!("transaction command of more than {MAX_WRITE} bytes")));
                }
                *after = (*after).max(self.node.clock.observed());
                true
            }
            Op::Read(_) | Op::ReadAt(..) | Op::Timestamps { .. } => false,
        };
        let resend = !write || matches!(op, Op::Txn { .. });
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0usize;
        let mut hops = 0u32;
        let mut refreshed = false;
        let mut patience = Duration::from_millis(self.node.settings.election_max_ms.max(50));
        let mut unanswered = 0u32;
        // Why an earlier attempt's outcome is unknown (it may have applied).
        let mut unknown: Option<String> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = if resend { remaining.min(patience) } else { remaining };
            let sent = Instant::now();
            let target = self.pick(shard, attempt);
            let result = match target {
                Some(id) if id == self.node.id => local(&self.node, shard, op.clone(), budget, write).await,
                Some(id) => self.remote(id, shard, &op, budget, write).await,
                None if !refreshed && shard != META_SHARD => {
                    refreshed = true;
                    self.refresh().await.and(Err(Error::Retry(format!("shard {shard} not in the shard map"))))
                }
                None => Err(Error::InvalidInput(format!("shard {shard} does not exist"))),
            };
            match result {
                Ok(result) => {
                    if let Some(id) = target {
                        self.leaders.lock().expect("leaders lock").insert(shard, id);
                    }
                    if let (OpResult::Written(outcome), true) = (&result, shard != META_SHARD) {
                        self.node.clock.observe(Ts(outcome.version));
                    }
                    return Ok(result);
                }
                Err(Error::NotLeader { leader: Some((id, addr)) }) if Some(id) != target => {
                    let known = self.node.peers.get(id);
                    if known.as_ref().map(|i| &i.rpc_addr) != Some(&addr) {
                        let pg_addr = known.map(|i| i.pg_addr).unwrap_or_default();
                        self.node.peers.set(id, NodeInfo { rpc_addr: addr, pg_addr });
                    }
                    self.leaders.lock().expect("leaders lock").insert(shard, id);
                    attempt = 0;
                    // Follow the first hint at once; hints bouncing between nodes that disagree
                    // during an election get a growing pause.
                    hops += 1;
                    if hops > 1 {
                        let pause = Duration::from_millis(u64::from(hops.min(20)) * 5);
                        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                    }
                }
                Err(e) if e.is_retryable() || (resend && matches!(e, Error::Unknown(_))) => {
                    if let Error::Unknown(why) = &e {
                        unknown = Some(why.clone());
                    }
                    if sent.elapsed() >= budget {
                        // No answer in time. A new leader takes about an election to appear;
                        // after that, a slow leader gets longer each time.
                        unanswered += 1;
                        if unanswered >= 3 {
                            patience *= 2;
                        }
                    }
                    self.leaders.lock().expect("leaders lock").remove(&shard);
                    attempt += 1;
                    if Instant::now() >= deadline {
                        return Err(match unknown {
                            Some(why) => {
                                Error::Unknown(format!("shard {shard}: no answer in {:?}: {why}", self.timeout))
                            }
                            None => {
                                Error::Retry(format!("shard {shard}: no leader reached in {:?}: {e}", self.timeout))
                            }
                        });
                    }
                    let backoff = Duration::from_millis((5u64 << attempt.min(5)).min(100));
                    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
                // A one-phase commit refused after an attempt with no answer: that attempt may
                // still apply (its entry may be in flight), so the refusal proves nothing.
                Err(e) if unknown.is_some() && matches!(op, Op::Txn { op: TxnOp::Commit { .. }, .. }) => {
                    return Err(Error::Unknown(format!(
                        "shard {shard}: a retry was refused ({e}) after an attempt with no answer: {}",
                        unknown.unwrap_or_default()
                    )));
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(match unknown {
                    Some(why) => Error::Unknown(format!("shard {shard}: no answer in {:?}: {why}", self.timeout)),
                    None => Error::Retry(format!("shard {shard}: no leader reached in {:?}", self.timeout)),
                });
            }
        }
    }

    /// `count` timestamps from the timestamp oracle on the meta group's leader: the first; the
    /// others follow at steps of `tso::STEP`. Each is larger than any timestamp handed out
    /// before this call began.
    pub async fn timestamps(&self, count: u32) -> Result<Ts> {
        self.call(META_SHARD, Op::Timestamps { count }).await?.into_timestamps()
    }

    async fn remote(&self, id: NodeId, shard: ShardId, op: &Op, remaining: Duration, write: bool) -> Result<OpResult> {
        let request = ShardRequest { shard, forward: false, payload: encode(op) };
        // A leader that stopped answering (paused, cut off) fails the call once the channel's
        // HTTP/2 keep-alive gives up on it (~3 s); a slow answer (a big page, a leader catching
        // up) is waited for.
        if matches!(op, Op::Read(ShardRead::Get { .. })) {
            // Point reads to one peer share gRPC calls under load (crate::coalesce).
            return match tokio::time::timeout(remaining, self.reads.read(id, request)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Retry(format!("read of shard {shard} timed out"))),
            };
        }
        let channel = self.node.peers.channel_to(id).await?;
        let mut client = GrpcShardClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        match tokio::time::timeout(remaining, client.call(request)).await {
            Ok(reply) => shard_reply(reply.map(tonic::Response::into_inner), write),
            Err(_) if write => Err(Error::Unknown(format!("write to shard {shard} timed out on node {id}"))),
            Err(_) => Err(Error::Retry(format!("read of shard {shard} timed out"))),
        }
    }
}

/// A call to a local replica, bounded by the router's remaining time.
async fn local(node: &Node, shard: ShardId, op: Op, remaining: Duration, write: bool) -> Result<OpResult> {
    match tokio::time::timeout(remaining, node.local_call(shard, op)).await {
        Ok(result) => result,
        Err(_) if write => Err(Error::Unknown(format!("write to shard {shard} timed out"))),
        Err(_) => Err(Error::Retry(format!("read of shard {shard} timed out"))),
    }
}

/// The node's clock takes fresh oracle values through the router.
#[async_trait::async_trait]
impl Oracle for Router {
    async fn fresh(&self) -> Result<Ts> {
        self.timestamps(1).await
    }
}

#[async_trait::async_trait]
impl ShardClient for Router {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.call(shard, Op::Read(read)).await?.into_rows()
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.call(shard, Op::ReadAt(read, ts)).await?.into_rows()
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.node.clock.fresh().await
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.call(shard, Op::Write { write, after: Ts::MIN }).await?.into_written()
    }

    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome> {
        self.call(shard, Op::Txn { op, after: Ts::MIN }).await?.into_written()
    }
}
