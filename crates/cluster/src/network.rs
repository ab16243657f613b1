//! Node-to-node transport: [`Peers`] keeps the address book and one gRPC channel per peer node,
//! shared by every Raft group and every shard call; [`NetworkFactory`] / `GroupClient` implement
//! openraft's network for one group on top of it, tagging each message with the group id.
//!
//! A failed Raft message becomes openraft's unreachable or network error here, by the
//! status mapping of `status` (which owns every `Status` ↔ [`Error`] conversion). Injected
//! network faults ([`NetFaults`], the chaos runner's partitions and delays) act here too: every
//! outbound message to a peer passes [`Peers::channel`], which drops or delays it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use raftable_common::{Error, NodeId};
use raftable_proto::raft_client::RaftClient;
use raftable_proto::RaftMessage;
use raftable_storage::{NodeInfo, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::error::{from_status, not_sent};
use crate::lease::Lease;

/// Largest gRPC message a node accepts (Raft appends and snapshot chunks, scan results).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Largest shard write accepted: a single Raft entry must fit a message with room to spare.
pub(crate) const MAX_WRITE: usize = 16 << 20;

/// Most bytes of Raft entries sent in one AppendEntries (a single larger entry goes alone).
/// openraft 0.9 gives an AppendEntries the heartbeat interval (100 ms) to be answered, the
/// follower's decode, write and fsync included, and sends a timed-out batch again whole: a
/// batch of many megabytes that a loaded follower cannot take in time is resent forever. Seen
/// under bulk-insert load with the benchmark's five clusters on 2 cores: a shard's writes
/// timed out after 10 s while its three idle-looking replicas kept 1.4 cores busy resending.
const APPEND_BUDGET: usize = 1 << 20;

/// The address book and the channel pool of a node.
#[derive(Default)]
pub struct Peers {
    addrs: RwLock<HashMap<NodeId, NodeInfo>>,
    channels: RwLock<HashMap<NodeId, (String, Channel)>>,
    faults: RwLock<NetFaults>,
}

/// Injected network faults of this node's outbound traffic (Raft messages, shard calls, admin
/// calls to peers). A dropped message fails before it is sent, like a refused connection, so a
/// dropped write is known not to have applied. Partitioning nodes A and B both ways takes
/// `drop_to` on both; on one side only, A cannot send to B while B's requests to A (and A's
/// replies) still pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetFaults {
    /// Peers this node cannot send to.
    pub drop_to: HashSet<NodeId>,
    /// Extra latency before each message to these peers.
    pub delay_to: HashMap<NodeId, Duration>,
    /// Extra latency before each snapshot chunk sent.
    pub snapshot_delay: Duration,
}

impl Peers {
    /// Records (or updates) where a node is.
    pub fn set(&self, id: NodeId, info: NodeInfo) {
        if info.rpc_addr.is_empty() {
            return;
        }
        self.addrs.write().expect("peers lock").insert(id, info);
    }

    pub fn get(&self, id: NodeId) -> Option<NodeInfo> {
        self.addrs.read().expect("peers lock").get(&id).cloned()
    }

    /// Every known node, ordered by id.
    pub fn all(&self) -> Vec<(NodeId, NodeInfo)> {
        let mut all: Vec<_> = self.addrs.read().expect("peers lock").iter().map(|(k, v)| (*k, v.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Replaces the injected network faults (an empty set heals).
    pub fn set_faults(&self, faults: NetFaults) {
        *self.faults.write().expect("faults lock") = faults;
    }

    /// Applies the injected faults to one message for `id`: fails if it is dropped, waits if
    /// it is delayed.
    async fn pass_faults(&self, id: NodeId) -> Result<(), Error> {
        let delay = {
            let faults = self.faults.read().expect("faults lock");
            if faults.drop_to.contains(&id) {
                return Err(Error::Retry(format!("node {id} unreachable (injected partition)")));
            }
            faults.delay_to.get(&id).copied()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// The channel to send one message to node `id` at `rpc_addr`, created lazily and reused;
    /// replaced when the node's address changed. Injected faults act here (see [`NetFaults`]).
    pub async fn channel(&self, id: NodeId, rpc_addr: &str) -> Result<Channel, Error> {
        self.pass_faults(id).await?;
        if let Some((addr, ch)) = self.channels.read().expect("channels lock").get(&id) {
            if addr == rpc_addr {
                return Ok(ch.clone());
            }
        }
        let ch = endpoint(rpc_addr)?.connect_lazy();
        self.channels.write().expect("channels lock").insert(id, (rpc_addr.to_string(), ch.clone()));
        Ok(ch)
    }

    /// The channel to node `id` by its known address.
    pub async fn channel_to(&self, id: NodeId) -> Result<Channel, Error> {
        let info = self.get(id).ok_or_else(|| Error::Retry(format!("address of node {id} unknown")))?;
        self.channel(id, &info.rpc_addr).await
    }
}

/// A gRPC endpoint with the timeouts of a LAN.
pub(crate) fn endpoint(rpc_addr: &str) -> Result<Endpoint, Error> {
    let uri = format!("http://{rpc_addr}");
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| Error::InvalidInput(format!("bad rpc address {rpc_addr}: {e}")))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2)))
}

/// Encodes a message payload (a command, a result, a Raft message).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("in-memory values always serialize")
}

/// Decodes a message payload; bytes that do not decode are a malformed request (or reply).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    bincode::deserialize(bytes).map_err(|e| Error::InvalidInput(format!("undecodable payload: {e}")))
}

/// Creates openraft network clients for one group.
pub struct NetworkFactory {
    pub(crate) group: u64,
    pub(crate) peers: Arc<Peers>,
    /// The group's leader lease, told of every AppendEntries a peer accepts.
    pub(crate) lease: Arc<Lease>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> GroupClient {
        self.peers.set(target, node.clone());
        GroupClient {
            group: self.group,
            target,
            addr: node.rpc_addr.clone(),
            peers: self.peers.clone(),
            lease: self.lease.clone(),
        }
    }
}

/// Sends one group's Raft messages to one peer.
pub struct GroupClient {
    group: u64,
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
    lease: Arc<Lease>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl GroupClient {
    /// Sends one encoded message and decodes the peer's answer.
    async fn send<Resp, E>(&self, kind: Kind, payload: Vec<u8>, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .peers
            .channel(self.target, &self.addr)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut client = RaftClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        let msg = RaftMessage { group: self.group, payload };
        let call = async {
            match kind {
                Kind::Vote => client.vote(msg).await,
                Kind::Append => client.append(msg).await,
                Kind::Snapshot => {
                    let delay = self.peers.faults.read().expect("faults lock").snapshot_delay;
                    tokio::time::sleep(delay).await;
                    client.install_snapshot(msg).await
                }
            }
        };
        // openraft's own timeout around this call is at least the floor too (`storage::Runtime`).
        let patience = option.hard_ttl().max(raftable_storage::RPC_TIMEOUT_FLOOR);
        let reply = match tokio::time::timeout(patience, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            // Only a peer that cannot be connected to is unreachable: openraft then stops
            // sending to it (heartbeats included) for a backoff period. Any other failure is a
            // network error, retried with the next heartbeat; treating it as unreachable
            // silenced a live follower long enough to elect another leader under load.
            Ok(Err(status)) if not_sent(&status) => {
                return Err(RPCError::Unreachable(Unreachable::new(&from_status(&status, false))));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&from_status(&status, false)))),
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Vote,
    Append,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for GroupClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        // A batch over the budget: ask openraft to send fewer entries (for its next few sends).
        let payload = encode(&rpc);
        let entries = rpc.entries.len();
        if entries > 1 && payload.len() > APPEND_BUDGET {
            let fit = (entries * APPEND_BUDGET / payload.len()).clamp(1, entries - 1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit as u64)));
        }
        // Taken before the message leaves: the peer's promise not to vote runs from when it
        // received the message, later than this.
        let sent = Instant::now();
        let reply = self.send(Kind::Append, payload, &option).await;
        // Any answer but HigherVote means the peer accepted this leader's vote.
        if matches!(&reply, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.lease.accepted(self.target, rpc.vote, sent);
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(Kind::Snapshot, encode(&rpc), &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.send(Kind::Vote, encode(&rpc), &option).await
    }

    fn backoff(&self) -> Backoff {
        // Retry an unreachable peer soon: on a LAN a restarted node is back within a second.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
