//! The gRPC services a node serves (`Raft`, `Shard`, `Meta` from `proto/raftable.proto`), the
//! [`serve`] entry point, and [`Client`], the remote client tools and tests use to talk to any
//! node. Errors cross as statuses both ways through `status` (handlers' errors with
//! `to_status`, failed calls with `from_status`); shard commands carry their result in the
//! reply payload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use raftable_common::{
    Error, KeyRange, NodeId, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Ts, TxnOp, WriteOutcome,
    META_SHARD,
};
use raftable_proto::meta_client::MetaClient;
use raftable_proto::meta_server::{Meta, MetaServer};
use raftable_proto::raft_server::{Raft, RaftServer};
use raftable_proto::shard_client::ShardClient as GrpcShardClient;
use raftable_proto::shard_server::{Shard, ShardServer};
use raftable_proto::{
    CompactReply, CompactRequest, CreateShardReply, CreateShardRequest, FaultsReply, FaultsRequest, JoinReply,
    JoinRequest, NodeStatus, OpenGroupReply, OpenGroupRequest, RaftMessage, ShardBatch, ShardBatchReply, ShardReply,
    ShardRequest, ShardStatus, StatusReply, StatusRequest,
};
use raftable_storage::NodeInfo;
use tonic::{Request, Response, Status};

use crate::error::{from_status, shard_reply, to_status};
use crate::group::Group;
use crate::meta::{self, NodeRecord};
use crate::network::{decode, encode, endpoint, NetFaults, MAX_MESSAGE};
use crate::node::{Op, OpResult};
use crate::placement::now_ms;
use crate::router::Router;

/// Serves the node's gRPC services on `listener` until `shutdown` resolves.
pub async fn serve(
    router: Arc<Router>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(RaftServer::new(RaftService { router: router.clone() }).max_decoding_message_size(MAX_MESSAGE))
        .add_service(ShardServer::new(ShardService { router: router.clone() }).max_decoding_message_size(MAX_MESSAGE))
        .add_service(MetaServer::new(MetaService { router }))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Io(format!("rpc server: {e}")))
}

struct RaftService {
    router: Arc<Router>,
}

impl RaftService {
    /// The group a Raft message is for, opened on demand: a peer only sends messages for a
    /// group this node is (becoming) a replica of, so its range is in the shard map.
    async fn group(&self, shard: ShardId) -> Result<Arc<Group>> {
        let node = self.router.node();
        if let Some(g) = node.group(shard) {
            return Ok(g);
        }
        let range = if shard == META_SHARD {
            meta::meta_range()
        } else {
            match self.router.shard(shard) {
                Some(s) => s.range,
                None => {
                    self.router.refresh().await?;
                    self.router.shard(shard).ok_or_else(|| Error::Retry(format!("shard {shard} unknown")))?.range
                }
            }
        };
        node.open_group(shard, range).await
    }
}

fn reply<T: serde::Serialize>(group: u64, value: &T) -> std::result::Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { group, payload: encode(value) }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn vote(&self, req: Request<RaftMessage>) -> std::result::Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let group = self.group(m.group).await.map_err(to_status)?;
        reply(m.group, &group.vote(decode(&m.payload).map_err(to_status)?).await)
    }

    async fn append(&self, req: Request<RaftMessage>) -> std::result::Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let group = self.group(m.group).await.map_err(to_status)?;
        reply(m.group, &group.raft.append_entries(decode(&m.payload).map_err(to_status)?).await)
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> std::result::Result<Response<RaftMessage>, Status> {
        let m = req.into_inner();
        let group = self.group(m.group).await.map_err(to_status)?;
        reply(m.group, &group.receive_snapshot_chunk(decode(&m.payload).map_err(to_status)?).await)
    }
}

struct ShardService {
    router: Arc<Router>,
}

#[tonic::async_trait]
impl Shard for ShardService {
    async fn call(&self, req: Request<ShardRequest>) -> std::result::Result<Response<ShardReply>, Status> {
        Ok(Response::new(self.serve(req.into_inner()).await?))
    }

    async fn call_many(&self, req: Request<ShardBatch>) -> std::result::Result<Response<ShardBatchReply>, Status> {
        let calls = req.into_inner().requests.into_iter().map(|r| self.serve(r));
        let replies = futures::future::join_all(calls).await.into_iter().collect::<std::result::Result<_, _>>()?;
        Ok(Response::new(ShardBatchReply { replies }))
    }
}

impl ShardService {
    async fn serve(&self, req: ShardRequest) -> std::result::Result<ShardReply, Status> {
        let op: Op = decode(&req.payload).map_err(to_status)?;
        let result = if req.forward {
            self.router.call(req.shard, op).await
        } else {
            self.router.node().local_call(req.shard, op).await
        };
        Ok(ShardReply { payload: encode(&result) })
    }
}

struct MetaService {
    router: Arc<Router>,
}

#[tonic::async_trait]
impl Meta for MetaService {
    async fn join(&self, req: Request<JoinRequest>) -> std::result::Result<Response<JoinReply>, Status> {
        let info = req.into_inner().node.ok_or_else(|| to_status(Error::InvalidInput("node missing".into())))?;
        let record = NodeRecord { id: info.id, rpc_addr: info.rpc_addr, pg_addr: info.pg_addr, heartbeat_ms: now_ms() };
        if record.id == 0 {
            return Err(to_status(Error::InvalidInput("node id 0 is reserved".into())));
        }
        let existing = meta::nodes(self.router.as_ref()).await.map_err(to_status)?;
        if let Some(other) = existing.iter().find(|n| n.id == record.id && n.rpc_addr != record.rpc_addr) {
            // A restarted node may rejoin at a new address only if the old one is dead.
            if other.alive(now_ms()) {
                let in_use = format!("node id {} is in use at {}", other.id, other.rpc_addr);
                return Err(to_status(Error::InvalidInput(in_use)));
            }
        }
        meta::put_node(self.router.as_ref(), &record).await.map_err(to_status)?;
        self.router.refresh().await.map_err(to_status)?;
        let nodes = self
            .router
            .nodes()
            .into_iter()
            .map(|n| raftable_proto::NodeInfo { id: n.id, rpc_addr: n.rpc_addr, pg_addr: n.pg_addr })
            .collect();
        Ok(Response::new(JoinReply { nodes }))
    }

    async fn create_shard(
        &self,
        req: Request<CreateShardRequest>,
    ) -> std::result::Result<Response<CreateShardReply>, Status> {
        let req = req.into_inner();
        let rf = self.router.node().settings.replication_factor;
        let record = meta::create_shard(self.router.as_ref(), KeyRange::new(req.start, req.end), rf, now_ms())
            .await
            .map_err(to_status)?;
        crate::placement::open_on_replicas(&self.router, &record).await;
        Ok(Response::new(CreateShardReply { shard: record.id }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> std::result::Result<Response<StatusReply>, Status> {
        let digests = req.into_inner().digests;
        // Best effort and brief: a node cut off from the meta group (or waiting out its
        // election) still reports its own replicas at once.
        match tokio::time::timeout(Duration::from_millis(300), self.router.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "status: shard map refresh failed"),
            Err(_) => tracing::debug!("status: shard map refresh timed out"),
        }
        let now = now_ms();
        let nodes = self
            .router
            .nodes()
            .into_iter()
            .map(|n| NodeStatus {
                alive: n.alive(now),
                node: Some(raftable_proto::NodeInfo { id: n.id, rpc_addr: n.rpc_addr, pg_addr: n.pg_addr }),
            })
            .collect();
        let mut shards = Vec::new();
        let mut records: HashMap<ShardId, _> = self.router.shard_map().into_iter().map(|(s, _)| (s.id, s)).collect();
        let node = self.router.node();
        for group in node.groups() {
            let record = records.remove(&group.shard);
            let (applied, snapshot, purged) = group.progress();
            let digest = match digests {
                true => Some(raftable_storage::digest(&node.rocks, &group.range).map_err(to_status)?),
                false => None,
            };
            shards.push(ShardStatus {
                shard: group.shard,
                start: group.range.start.clone(),
                end: group.range.end.clone(),
                replicas: record.as_ref().map(|r| r.replicas.clone()).unwrap_or_default(),
                epoch: record.as_ref().map(|r| r.epoch).unwrap_or(0),
                leader: group.leader().unwrap_or(0),
                hosted: true,
                voters: group.voters(),
                applied,
                snapshot,
                digest: digest.map_or(0, |d| d.hash),
                versions: digest.map_or(0, |d| d.entries),
                purged,
            });
        }
        for (id, record) in records {
            shards.push(ShardStatus {
                shard: id,
                start: record.range.start,
                end: record.range.end,
                replicas: record.replicas,
                epoch: record.epoch,
                leader: self.router.leader(id).unwrap_or(0),
                ..Default::default()
            });
        }
        shards.sort_by_key(|s| s.shard);
        Ok(Response::new(StatusReply { nodes, shards }))
    }

    async fn open_group(
        &self,
        req: Request<OpenGroupRequest>,
    ) -> std::result::Result<Response<OpenGroupReply>, Status> {
        let req = req.into_inner();
        self.router.refresh().await.map_err(to_status)?;
        let record = self
            .router
            .shard(req.shard)
            .ok_or_else(|| to_status(Error::Retry(format!("shard {} not in the shard map yet", req.shard))))?;
        crate::placement::open_local(&self.router, &record).await.map_err(to_status)?;
        Ok(Response::new(OpenGroupReply {}))
    }

    async fn compact(&self, _req: Request<CompactRequest>) -> std::result::Result<Response<CompactReply>, Status> {
        let snapshot_index = self.router.node().compact().await.map_err(to_status)?.into_iter().collect();
        Ok(Response::new(CompactReply { snapshot_index }))
    }

    async fn set_faults(&self, req: Request<FaultsRequest>) -> std::result::Result<Response<FaultsReply>, Status> {
        let node = self.router.node();
        if !node.fault_injection_allowed() {
            let off = "fault injection is off (start the node with --fault-injection)";
            return Err(to_status(Error::InvalidInput(off.into())));
        }
        let req = req.into_inner();
        let faults = NetFaults {
            drop_to: req.drop_to.into_iter().collect(),
            delay_to: req.delay_to_ms.into_iter().map(|(id, ms)| (id, Duration::from_millis(ms))).collect(),
            snapshot_delay: Duration::from_millis(req.snapshot_delay_ms),
        };
        tracing::warn!(
            ?faults,
            fsync_delay_ms = req.fsync_delay_ms,
            fsync_fail = req.fsync_fail,
            clock_offset_ms = req.clock_offset_ms,
            "injected faults set"
        );
        crate::placement::set_clock_offset(req.clock_offset_ms);
        node.peers.set_faults(faults);
        node.rocks.sync_fault().set(Duration::from_millis(req.fsync_delay_ms), req.fsync_fail);
        Ok(Response::new(FaultsReply {}))
    }
}

/// A remote client of a raftable cluster over gRPC, for tools and tests: shard commands go to
/// one node which routes them (`forward`), admin calls go to the node named.
#[derive(Clone)]
pub struct Client {
    addrs: Vec<String>,
}

impl Client {
    /// A client for nodes at these rpc addresses (shard commands use the first one).
    pub fn new(addrs: Vec<String>) -> Self {
        Self { addrs }
    }

    fn channel(&self, i: usize) -> Result<tonic::transport::Channel> {
        let addr = self.addrs.get(i).ok_or_else(|| Error::InvalidInput(format!("no node #{i}")))?;
        Ok(endpoint(addr)?.connect_lazy())
    }

    fn meta(&self, i: usize) -> Result<MetaClient<tonic::transport::Channel>> {
        Ok(MetaClient::new(self.channel(i)?))
    }

    /// Sends a shard command through node #`i`, which routes it to the leader.
    pub async fn call_via(&self, i: usize, shard: ShardId, op: Op) -> Result<OpResult> {
        let write = matches!(op, Op::Write { .. } | Op::Txn { .. });
        let mut client = GrpcShardClient::new(self.channel(i)?).max_decoding_message_size(MAX_MESSAGE);
        let request = ShardRequest { shard, forward: true, payload: encode(&op) };
        match tokio::time::timeout(Duration::from_secs(30), client.call(request)).await {
            Ok(reply) => shard_reply(reply.map(Response::into_inner), write),
            Err(_) if write => Err(Error::Unknown("request timed out".into())),
            Err(_) => Err(Error::Retry("request timed out".into())),
        }
    }

    /// Asks a node to join `self`'s cluster: used by a starting node with `--join`.
    pub async fn join(&self, id: NodeId, info: &NodeInfo) -> Result<Vec<(NodeId, NodeInfo)>> {
        let node = raftable_proto::NodeInfo { id, rpc_addr: info.rpc_addr.clone(), pg_addr: info.pg_addr.clone() };
        let reply = self.meta(0)?.join(JoinRequest { node: Some(node) }).await.map_err(|s| from_status(&s, false))?;
        Ok(reply
            .into_inner()
            .nodes
            .into_iter()
            .map(|n| (n.id, NodeInfo { rpc_addr: n.rpc_addr, pg_addr: n.pg_addr }))
            .collect())
    }

    /// Creates a shard for `[start, end)` through node #`i`.
    pub async fn create_shard(&self, i: usize, start: Vec<u8>, end: Vec<u8>) -> Result<ShardId> {
        let reply =
            self.meta(i)?.create_shard(CreateShardRequest { start, end }).await.map_err(|s| from_status(&s, true))?;
        Ok(reply.into_inner().shard)
    }

    /// Node #`i`'s view of the cluster, with a digest of each of its replicas' rows if
    /// `digests` (a full scan of every hosted replica).
    pub async fn status(&self, i: usize, digests: bool) -> Result<StatusReply> {
        let request = StatusRequest { digests };
        Ok(self.meta(i)?.status(request).await.map_err(|s| from_status(&s, false))?.into_inner())
    }

    /// Replaces node #`i`'s injected faults (see `SetFaults` in the proto).
    pub async fn set_faults(&self, i: usize, faults: FaultsRequest) -> Result<()> {
        self.meta(i)?.set_faults(faults).await.map_err(|s| from_status(&s, false))?;
        Ok(())
    }

    /// Snapshots every group on node #`i` and purges its logs.
    pub async fn compact(&self, i: usize) -> Result<HashMap<u64, u64>> {
        Ok(self
            .meta(i)?
            .compact(CompactRequest {})
            .await
            .map_err(|s| from_status(&s, false))?
            .into_inner()
            .snapshot_index)
    }
}

#[async_trait::async_trait]
impl ShardClient for Client {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.call_via(0, shard, Op::Read(read)).await?.into_rows()
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.call_via(0, shard, Op::ReadAt(read, ts)).await?.into_rows()
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.call_via(0, META_SHARD, Op::Timestamps { count: 1 }).await?.into_timestamps()
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.call_via(0, shard, Op::Write { write, after: Ts::MIN }).await?.into_written()
    }

    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome> {
        self.call_via(0, shard, Op::Txn { op, after: Ts::MIN }).await?.into_written()
    }
}
