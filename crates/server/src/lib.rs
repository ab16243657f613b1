//! The raftable server: wires one node together from its layers and runs it.
//!
//! [`run`] opens the node's RocksDB (`storage`), builds the multi-raft [`Node`] and its
//! [`Router`] (`cluster`), serves the node-to-node gRPC services on the bound rpc listener, then
//! brings the node into a cluster: it reopens the groups on disk (restart), or bootstraps a new
//! cluster (first node), or joins one through `--join`. Background loops (heartbeat, reconcile,
//! placement) then keep the node's replicas in line with the meta group until shutdown. Once the
//! node is in the cluster it serves SQL on the pg listener: [`pgwire::serve`] runs one
//! `raftable_sql::Session` per connection over the node's [`SqlCluster`].

mod config;
mod demo;
mod pgwire;
mod sql_cluster;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use demo::{demo, DemoOptions};
/// The PostgreSQL front end alone, over any `raftable_sql::Engine` (the in-process SQL tests
/// serve one over `raftable_sql::local`).
pub use pgwire::serve as serve_pg;
use raftable_cluster::{Background, Client, Node, RaftSettings, Router};
use raftable_common::{Error, NodeId, Result, META_SHARD};
use raftable_storage::{NodeInfo, Rocks};
use serde::{Deserialize, Serialize};
pub use sql_cluster::SqlCluster;

/// Tag of the node identity record in the node's RocksDB.
const IDENTITY: u8 = b'i';

/// What a data dir remembers about its node, written once it has bootstrapped or joined.
#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    /// Nodes known when it joined, to find the meta group again after a restart.
    seeds: Vec<(NodeId, NodeInfo)>,
}

/// Runs a node on already bound rpc and pg listeners until `shutdown` resolves, then stops it
/// cleanly (SQL sessions, background loops, Raft groups, RPC server, RocksDB sync thread).
pub async fn run(
    config: Config,
    rpc: tokio::net::TcpListener,
    pg: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if config.node_id == 0 {
        return Err(Error::InvalidInput("--node-id must be at least 1".into()));
    }
    let rpc_addr = rpc.local_addr()?.to_string();
    let pg_addr = pg.local_addr()?.to_string();
    let info = NodeInfo { rpc_addr: rpc_addr.clone(), pg_addr: pg_addr.clone() };
    let rocks = Rocks::open(&config.data_dir.join("db"))?;
    let node = Node::new(config.node_id, info.clone(), config.raft.clone(), rocks.clone());
    if config.fault_injection {
        tracing::warn!("fault injection is on: any peer with network access can partition this node");
        node.allow_fault_injection();
    }
    let router = Router::new(node.clone());

    let (stop_rpc, rpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(raftable_cluster::serve(router.clone(), rpc, async {
        let _ = rpc_stopped.await;
    }));

    enter_cluster(&config, &node, &router, &info).await?;
    let background = Background::start(router.clone());
    let engine = raftable_sql::Engine::new(SqlCluster::new(router.clone()), config.sql.clone());
    let background_sql = engine.spawn_background();
    let (stop_pg, pg_stopped) = tokio::sync::oneshot::channel::<()>();
    let pg_server = tokio::spawn(pgwire::serve(engine, pg, async {
        let _ = pg_stopped.await;
    }));
    tracing::info!(node = config.node_id, rpc = %rpc_addr, pg = %pg_addr, "node started");

    shutdown.await;
    tracing::info!(node = config.node_id, "stopping");
    let _ = stop_pg.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), pg_server).await;
    background_sql.abort();
    background.stop().await;
    // Groups first (no group opens after this), then the rpc server, then the sync thread
    // (a late write of a stopped group's task is synced inline).
    node.shutdown().await;
    let _ = stop_rpc.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "rpc server stopped with an error"),
        Err(_) => tracing::warn!("rpc server did not stop in time"),
        _ => {}
    }
    rocks.close();
    Ok(())
}

/// Restart, bootstrap or join, depending on the data dir and `--join`.
async fn enter_cluster(config: &Config, node: &Arc<Node>, router: &Arc<Router>, info: &NodeInfo) -> Result<()> {
    if let Some(raw) = node.rocks.node_record(IDENTITY)? {
        let identity: Identity = bincode::deserialize(&raw)?;
        if identity.node_id != config.node_id {
            return Err(Error::InvalidInput(format!(
                "data dir belongs to node {}, not {}",
                identity.node_id, config.node_id
            )));
        }
        for (id, seed) in identity.seeds {
            if id != node.id {
                node.peers.set(id, seed);
            }
        }
        node.reopen_groups().await?;
        tracing::info!(groups = node.groups().len(), "restarted from data dir");
        return Ok(());
    }
    let seeds = match &config.join {
        None => {
            bootstrap(node, router, info).await?;
            Vec::new()
        }
        Some(addr) => join(node, addr, info, &config.raft).await?,
    };
    let identity = Identity { node_id: node.id, seeds };
    node.rocks.put_node_record(IDENTITY, &bincode::serialize(&identity)?).await
}

/// First node of a new cluster: create the meta group on this node alone and register.
async fn bootstrap(node: &Arc<Node>, router: &Arc<Router>, info: &NodeInfo) -> Result<()> {
    node.open_group(META_SHARD, raftable_common::KeyRange::new(vec![0x00], raftable_common::META_RANGE_END.to_vec()))
        .await?;
    node.initialize(META_SHARD, &[node.id]).await?;
    raftable_cluster::meta_bootstrap(router.as_ref(), node.id, info).await?;
    tracing::info!(node = node.id, "bootstrapped a new cluster");
    Ok(())
}

/// Joins through `addr`, retrying while the member is unreachable or electing.
async fn join(
    node: &Arc<Node>,
    addr: &str,
    info: &NodeInfo,
    settings: &RaftSettings,
) -> Result<Vec<(NodeId, NodeInfo)>> {
    let client = Client::new(vec![addr.to_string()]);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(settings.route_timeout_ms * 3);
    // Joining again writes the same registry record: a join whose outcome is unknown (the
    // member's write of it timed out, say) is retried like a refused one.
    let again = |e: &Error| e.is_retryable() || matches!(e, Error::Unknown(_));
    loop {
        match client.join(node.id, info).await {
            Ok(nodes) => {
                for (id, n) in &nodes {
                    node.peers.set(*id, n.clone());
                }
                tracing::info!(via = addr, nodes = nodes.len(), "joined cluster");
                return Ok(nodes);
            }
            Err(e) if again(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "join not possible yet, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints the cluster as the node at `rpc_addr` sees it (`raftable status`).
pub async fn print_status(rpc_addr: &str) -> Result<()> {
    let status = Client::new(vec![rpc_addr.to_string()]).status(0, false).await?;
    println!("{:>5}  {:<22} {:<22} alive", "node", "rpc", "pg");
    for n in &status.nodes {
        if let Some(info) = &n.node {
            println!("{:>5}  {:<22} {:<22} {}", info.id, info.rpc_addr, info.pg_addr, n.alive);
        }
    }
    println!();
    println!("{:>5}  {:<24} {:<24} {:>6}  replicas", "shard", "start", "end", "leader");
    for s in &status.shards {
        let leader = if s.leader == 0 { "?".to_string() } else { s.leader.to_string() };
        println!("{:>5}  {:<24} {:<24} {:>6}  {:?}", s.shard, hex(&s.start), hex(&s.end), leader, s.replicas);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(end)".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
