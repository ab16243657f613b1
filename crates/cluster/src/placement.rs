//! The node's background loops, which move the cluster toward what the meta group says:
//! - heartbeat: the node re-writes its registry record every second (liveness);
//! - reconcile (every node, every 500 ms): refresh the shard map, open the replicas this node
//!   should host, bootstrap new groups this node is first replica of, for every group it
//!   leads, change the Raft membership to the record's replicas (learner, catch up, promote),
//!   and delete the replicas of released (dropped) shards;
//! - garbage collection (every `gc_interval`): each table shard this node leads drops the row
//!   versions older than `gc_ttl` that newer ones replaced;
//! - place (only on the meta leader): give every shard (and the meta group, up to 3) as many
//!   replicas as the replication factor and the live nodes allow, least-loaded nodes first,
//!   and release the dropped shards that no transaction needs any more (`meta::release`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftable_common::{Error, Result, ShardClient, ShardRead, Ts, META_SHARD};
use raftable_proto::meta_client::MetaClient;
use raftable_proto::OpenGroupRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::from_status;
use crate::group::Group;
use crate::meta::{self, NodeRecord, ShardRecord};
use crate::router::Router;

/// Milliseconds since the Unix epoch (node heartbeats; liveness is judged on the meta leader).
pub fn now_ms() -> u64 {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    wall.saturating_add_signed(CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

/// An injected clock jump of this node process (`Meta.SetFaults`), in ms.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Makes [`now_ms`] run `ms` ahead of the wall clock (behind if negative).
pub(crate) fn set_clock_offset(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, Ordering::Relaxed);
}

/// The running background loops of a node; dropped or [`Background::stop`]ped at shutdown.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub fn start(router: Arc<Router>) -> Self {
        let (stop, rx) = watch::channel(false);
        let changing = Arc::new(Mutex::new(HashSet::new()));
        let tasks = vec![
            every(Duration::from_secs(1), rx.clone(), {
                let router = router.clone();
                move || heartbeat(router.clone())
            }),
            every(Duration::from_millis(500), rx.clone(), {
                let router = router.clone();
                move || reconcile(router.clone(), changing.clone())
            }),
            every(Duration::from_millis(router.node().settings.gc_interval_ms), rx, move || {
                collect_garbage(router.clone())
            }),
        ];
        Self { stop, tasks }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut f: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        loop {
            if let Err(e) = f().await {
                tracing::debug!(error = %e, "background round failed");
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    })
}

/// Drops, on every table shard this node leads, the row versions older than the oracle's time
/// minus `gc_ttl` that a newer version replaced (`Group::collect_garbage`).
async fn collect_garbage(router: Arc<Router>) -> Result<()> {
    let node = router.node();
    let now = node.clock.fresh().await?;
    let Some(ms) = now.physical_ms().checked_sub(node.settings.gc_ttl_ms) else { return Ok(()) };
    let threshold = Ts::new(ms, 0);
    for group in node.groups() {
        let dropped = group.collect_garbage(threshold).await?;
        if dropped > 0 {
            tracing::debug!(shard = group.shard, dropped, %threshold, "collected garbage");
        }
    }
    Ok(())
}

async fn heartbeat(router: Arc<Router>) -> Result<()> {
    let node = router.node();
    let record = NodeRecord {
        id: node.id,
        rpc_addr: node.info.rpc_addr.clone(),
        pg_addr: node.info.pg_addr.clone(),
        heartbeat_ms: now_ms(),
    };
    meta::put_node(router.as_ref(), &record).await
}

async fn reconcile(router: Arc<Router>, changing: Arc<Mutex<HashSet<u64>>>) -> Result<()> {
    router.refresh().await?;
    let node = router.node().clone();
    for (record, _) in router.shard_map() {
        if record.replicas.contains(&node.id) && node.group(record.id).is_none() {
            if let Err(e) = open_local(&router, &record).await {
                tracing::warn!(shard = record.id, error = %e, "could not open replica");
            }
        }
        let Some(group) = node.group(record.id) else { continue };
        if let Err(e) = bootstrap_if_orphaned(&router, &record, &group).await {
            tracing::warn!(shard = record.id, error = %e, "could not bootstrap orphaned group");
        }
        if group.leader() == Some(node.id) {
            let desired: BTreeSet<u64> = record.replicas.iter().copied().collect();
            let voters: BTreeSet<u64> = group.voters().into_iter().collect();
            if desired != voters && changing.lock().expect("changing lock").insert(record.id) {
                let (router, changing) = (router.clone(), changing.clone());
                tokio::spawn(async move {
                    // Bounded: a new replica that never catches up (its node died) must not block
                    // later rounds from trying again.
                    let change = change_membership(&router, &group, desired);
                    let result = match tokio::time::timeout(Duration::from_secs(30), change).await {
                        Ok(result) => result,
                        Err(_) => Err(Error::Retry("membership change timed out".into())),
                    };
                    if let Err(e) = result {
                        tracing::warn!(shard = group.shard, error = %e, "membership change failed");
                    }
                    changing.lock().expect("changing lock").remove(&group.shard);
                });
            }
        }
    }
    delete_released(&router).await?;
    if router.node().group(META_SHARD).is_some_and(|g| g.leader() == Some(node.id)) {
        release_dropped(&router).await?;
        place(&router).await?;
    }
    Ok(())
}

/// Deletes the replicas this node hosts of shards released since (a restart reopens every
/// group on disk, so those are among the open ones). A hosted group missing from the map is
/// not enough (a shard created after the map was read is missing too): the meta group's
/// tombstone decides, read only then.
async fn delete_released(router: &Router) -> Result<()> {
    let node = router.node();
    let hosted: BTreeSet<u64> = node.groups().iter().map(|g| g.shard).collect();
    if hosted.iter().all(|id| *id == META_SHARD || router.shard(*id).is_some()) {
        return Ok(());
    }
    for id in meta::released(router).await? {
        if hosted.contains(&id) {
            node.drop_group(id).await?;
        }
    }
    Ok(())
}

/// How long the meta leader waits for a dropped shard to answer whether it is settled: one
/// whose replicas are all down must not hold the reconcile round (and placement) up for the
/// router's deadline; it is asked again next round.
const RELEASE_PROBE: Duration = Duration::from_secs(1);

/// On the meta leader: releases the dropped shards that hold no lock and no transaction
/// record another shard's locks may be resolved by (`ShardRead::Unsettled`). A record left by
/// a coordinator that died goes with the shard's garbage collection, so this waits at most
/// about `gc_ttl` for it.
async fn release_dropped(router: &Router) -> Result<()> {
    for id in meta::dropping(router).await? {
        if router.shard(id).is_some() {
            let probe = router.read(id, ShardRead::Unsettled { limit: 1 });
            match tokio::time::timeout(RELEASE_PROBE, probe).await {
                Ok(Ok(records)) if records.is_empty() => {}
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::debug!(shard = id, error = %e, "dropped shard not released yet");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(shard = id, "dropped shard did not answer; asked again next round");
                    continue;
                }
            }
        }
        meta::release(router, id).await?;
        tracing::info!(shard = id, "released a dropped shard");
    }
    Ok(())
}

/// Opens this node's replica of `record`, bootstrapping the group if this node is its first
/// initial replica and the group has no state yet.
pub(crate) async fn open_local(router: &Router, record: &ShardRecord) -> Result<()> {
    let node = router.node();
    let group = node.open_group(record.id, record.range.clone()).await?;
    let uninitialized = !group.raft.is_initialized().await.map_err(Error::internal)?;
    if uninitialized && record.initial.first() == Some(&node.id) {
        node.initialize(record.id, &record.initial).await?;
        tracing::info!(shard = record.id, replicas = ?record.initial, "bootstrapped shard group");
    }
    Ok(())
}

/// If the first initial replica of a shard died before bootstrapping its group, another
/// initial replica does it. openraft allows several nodes to initialize a group with the same
/// membership (it is like several candidates in one election), so this is safe; it waits for
/// the first replica to count as dead only to avoid needless elections.
async fn bootstrap_if_orphaned(router: &Router, record: &ShardRecord, group: &Group) -> Result<()> {
    let node = router.node();
    if !group.voters().is_empty() || !record.initial.contains(&node.id) {
        return Ok(());
    }
    let now = now_ms();
    let first_alive =
        record.initial.first().is_some_and(|first| router.nodes().iter().any(|n| n.id == *first && n.alive(now)));
    if first_alive || record.initial.first() == Some(&node.id) {
        return Ok(());
    }
    node.initialize(record.id, &record.initial).await?;
    tracing::warn!(shard = record.id, replicas = ?record.initial, "bootstrapped shard group for a dead first replica");
    Ok(())
}

/// Asks every replica of a new shard to open its group now (best effort: the reconcile loop
/// does it anyway, a little later).
pub(crate) async fn open_on_replicas(router: &Arc<Router>, record: &ShardRecord) {
    let node = router.node();
    for id in &record.replicas {
        let result = if *id == node.id {
            open_local(router, record).await
        } else {
            match node.peers.channel_to(*id).await {
                Ok(ch) => MetaClient::new(ch)
                    .open_group(OpenGroupRequest { shard: record.id, initialize: record.initial.first() == Some(id) })
                    .await
                    .map(|_| ())
                    .map_err(|s| from_status(&s, false)),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            tracing::debug!(shard = record.id, node = id, error = %e, "could not open new shard replica yet");
        }
    }
}

/// Brings a group's voters to `desired`: each new node joins as a learner and catches up
/// (blocking add_learner), then one membership change promotes them together.
async fn change_membership(router: &Router, group: &Group, desired: BTreeSet<u64>) -> Result<()> {
    let node = router.node();
    let voters: BTreeSet<u64> = group.voters().into_iter().collect();
    for id in desired.difference(&voters) {
        let info = node.peers.get(*id).ok_or_else(|| Error::Retry(format!("address of node {id} unknown")))?;
        tracing::info!(shard = group.shard, node = id, "adding replica as learner");
        group.raft.add_learner(*id, info, true).await.map_err(|e| Error::Retry(e.to_string()))?;
    }
    // openraft's metrics may show the old voters for a moment after the change: no lease
    // reads until they show its outcome (lease module).
    let hold = group.hold_lease();
    let changed = group.raft.change_membership(desired.clone(), false).await;
    crate::lease::metrics_caught_up(&group.raft).await;
    drop(hold);
    changed.map_err(|e| Error::Retry(e.to_string()))?;
    tracing::info!(shard = group.shard, voters = ?desired, "membership changed");
    Ok(())
}

/// On the meta leader: add replicas to shards below the replication factor.
async fn place(router: &Router) -> Result<()> {
    let rf = router.node().settings.replication_factor;
    let now = now_ms();
    let live: Vec<u64> = router.nodes().iter().filter(|n| n.alive(now)).map(|n| n.id).collect();
    let mut records: BTreeMap<u64, (ShardRecord, u64)> =
        router.shard_map().into_iter().map(|(s, v)| (s.id, (s, v))).collect();
    let ids: Vec<u64> = records.keys().copied().collect();
    for id in ids {
        let (record, version) = records[&id].clone();
        let target = if id == META_SHARD { rf.min(3) } else { rf }.min(live.len());
        if record.replicas.len() >= target {
            continue;
        }
        let all: Vec<ShardRecord> = records.values().map(|(s, _)| s.clone()).collect();
        let add = meta::place(&live, &all, &record.replicas, target);
        if add.is_empty() {
            continue;
        }
        let mut updated = record.clone();
        updated.replicas.extend(add);
        updated.epoch += 1;
        if meta::update_shard(router, &updated, version).await? {
            tracing::info!(shard = id, replicas = ?updated.replicas, "placed new replicas");
            records.insert(id, (updated, version));
        }
    }
    Ok(())
}
