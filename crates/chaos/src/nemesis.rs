//! The nemesis: injects one fault at a time into the running cluster (`procs`), holds it, heals
//! it and waits until the cluster is healthy again (every node alive, every shard led). Leader
//! kills and pauses are timed by a probe client that writes to the victim's shard through
//! another node until a write succeeds: the failover figures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftable_proto::FaultsRequest;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::procs::Cluster;
use crate::workload::{call, Conn};

/// The faults the nemesis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Fault {
    /// SIGKILL a random node, restart it after the hold.
    KillRandom,
    /// SIGKILL the node the latest bank transfer sent its COMMIT through (a transaction
    /// coordinator, likely mid-commit), restart it after the hold.
    KillGateway,
    /// SIGKILL the leader of a probe shard (timed: the failover figure), restart it.
    KillLeader,
    /// SIGSTOP the leader of a probe shard for the hold (longer than the election timeout;
    /// timed like a kill), then SIGCONT.
    PauseLeader,
    /// Partition a shard leader from every other node, both ways.
    IsolateLeader,
    /// A shard leader cannot send to the others; they still reach it.
    OneWayLeader,
    /// Split the nodes into a minority and a majority, both ways.
    Halves,
    /// Delay every message a random node sends by 40 ms (openraft times an AppendEntries out
    /// after one heartbeat, 100 ms, delay included: a longer delay would be a partition).
    Delay,
    /// Delay every fsync of a random node by 200 ms.
    SlowFsync,
    /// Make a random node's next fsync fail: it must crash (never acknowledge); restart it.
    FailFsync,
    /// SIGKILL a minority of nodes at once, restart them.
    KillMinority,
    /// Isolate one node and SIGKILL another (5 nodes: a majority remains).
    IsolateAndKill,
    /// Jump a random node's wall clock 10 s forward or back for the hold (its liveness
    /// heartbeats, and timestamps if it leads the meta group): at most spurious aborts allowed.
    ClockJump,
}

/// How far `Fault::ClockJump` moves a clock.
const CLOCK_JUMP_MS: i64 = 10_000;

/// What one fault did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub fault: Fault,
    /// Nodes it hit.
    pub nodes: Vec<u64>,
    /// The shard whose leader it hit, for leader faults.
    pub shard: Option<u64>,
    /// Seconds since the run started.
    pub at_s: f64,
    pub held_ms: u64,
    /// For leader faults: fault → another node leads the shard, in ms.
    pub new_leader_ms: Option<f64>,
    /// For leader kills and pauses: fault → first successful write to the shard through
    /// another node, in ms.
    pub failover_ms: Option<f64>,
    /// How long the cluster took to be healthy again after the heal, in ms.
    pub recovered_ms: f64,
}

/// The probe table's key for each of its shards (found with EXPLAIN at setup).
#[derive(Debug, Clone, Default)]
pub struct ProbeKeys {
    pub by_shard: Vec<(u64, i64)>,
}

pub struct Nemesis {
    pub rng: StdRng,
    pub hold: (Duration, Duration),
    pub start: Instant,
    pub probe: ProbeKeys,
    /// Every data shard (the nemesis picks leaders of these).
    pub shards: Vec<u64>,
    /// The node (index in the cluster's ids, plus one; 0: none yet) of the latest COMMIT a
    /// bank client sent (`workload::Settings::gateway`).
    pub gateway: Arc<AtomicUsize>,
}

/// How long a fault's target may go without a leader before the nemesis gives up on it.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// How long the cluster may take to be healthy after a heal.
const RECOVERY: Duration = Duration::from_secs(60);

impl Nemesis {
    /// Injects `fault`, holds, heals, waits for recovery.
    pub async fn run(&mut self, cluster: &mut Cluster, fault: Fault) -> Result<FaultRecord, String> {
        let at = self.start.elapsed();
        let hold = self.rng.gen_range(self.hold.0..=self.hold.1);
        let mut record = FaultRecord {
            fault,
            nodes: Vec::new(),
            shard: None,
            at_s: at.as_secs_f64(),
            held_ms: hold.as_millis() as u64,
            new_leader_ms: None,
            failover_ms: None,
            recovered_ms: 0.0,
        };
        let ids = cluster.ids();
        match fault {
            Fault::KillRandom => {
                let victim = *ids.choose(&mut self.rng).expect("nodes");
                record.nodes = vec![victim];
                cluster.kill(victim).await?;
                tokio::time::sleep(hold).await;
                cluster.restart(victim).await?;
            }
            Fault::KillGateway => {
                let victim = match self.gateway.load(Ordering::Relaxed) {
                    0 => *ids.choose(&mut self.rng).expect("nodes"),
                    i => ids[(i - 1) % ids.len()],
                };
                record.nodes = vec![victim];
                cluster.kill(victim).await?;
                tokio::time::sleep(hold).await;
                cluster.restart(victim).await?;
            }
            Fault::KillLeader | Fault::PauseLeader => {
                let &(shard, key) = self.probe.by_shard.choose(&mut self.rng).ok_or("no probe shards")?;
                let victim = self.leader(cluster, shard).await?;
                let via = *ids.iter().find(|id| **id != victim).ok_or("no other node")?;
                let conn = Conn::open(&cluster.pg_url(via), &[PROBE_WRITE], Duration::from_secs(10))
                    .await
                    .ok_or_else(|| format!("probe could not connect to node {via}"))?;
                let urls: Vec<String> = ids.iter().filter(|id| **id != victim).map(|id| cluster.pg_url(*id)).collect();
                (record.nodes, record.shard) = (vec![victim], Some(shard));
                let kill = fault == Fault::KillLeader;
                if kill {
                    cluster.kill(victim).await?;
                } else {
                    cluster.pause(victim, true).await?;
                }
                let hit = Instant::now();
                let mut probe = tokio::spawn(probe(conn, urls, key, hit));
                let moved = hold_until_new_leader(cluster, shard, victim, hold).await;
                let took = match moved {
                    Ok(ms) => {
                        record.new_leader_ms = Some(ms);
                        tokio::time::timeout(Duration::from_secs(30), &mut probe).await
                    }
                    Err(e) => {
                        probe.abort();
                        return Err(e);
                    }
                };
                record.failover_ms = match took {
                    Ok(Ok(d)) => Some(d.as_secs_f64() * 1e3),
                    _ => {
                        probe.abort();
                        let what = if kill { "killing" } else { "pausing" };
                        return Err(format!("shard {shard}: no write succeeded within 30 s of {what} node {victim}"));
                    }
                };
                if kill {
                    cluster.restart(victim).await?;
                } else {
                    cluster.pause(victim, false).await?;
                }
            }
            Fault::IsolateLeader | Fault::OneWayLeader => {
                let shard = *self.shards.choose(&mut self.rng).ok_or("no shards")?;
                let victim = self.leader(cluster, shard).await?;
                (record.nodes, record.shard) = (vec![victim], Some(shard));
                let both = fault == Fault::IsolateLeader;
                self.partition(cluster, &[victim], both).await?;
                record.new_leader_ms = Some(hold_until_new_leader(cluster, shard, victim, hold).await?);
                heal(cluster).await?;
            }
            Fault::Halves => {
                let mut shuffled = ids.clone();
                shuffled.shuffle(&mut self.rng);
                let minority: Vec<u64> = shuffled[..(ids.len() - 1) / 2].to_vec();
                record.nodes = minority.clone();
                self.partition(cluster, &minority, true).await?;
                tokio::time::sleep(hold).await;
                heal(cluster).await?;
            }
            Fault::Delay => {
                let victim = *ids.choose(&mut self.rng).expect("nodes");
                record.nodes = vec![victim];
                let delay_to_ms = ids.iter().filter(|id| **id != victim).map(|id| (*id, 40)).collect();
                cluster.set_faults(victim, FaultsRequest { delay_to_ms, ..Default::default() }).await?;
                tokio::time::sleep(hold).await;
                heal(cluster).await?;
            }
            Fault::ClockJump => {
                let victim = *ids.choose(&mut self.rng).expect("nodes");
                record.nodes = vec![victim];
                let clock_offset_ms = if self.rng.gen_bool(0.5) { CLOCK_JUMP_MS } else { -CLOCK_JUMP_MS };
                cluster.set_faults(victim, FaultsRequest { clock_offset_ms, ..Default::default() }).await?;
                tokio::time::sleep(hold).await;
                heal(cluster).await?;
            }
            Fault::SlowFsync => {
                let victim = *ids.choose(&mut self.rng).expect("nodes");
                record.nodes = vec![victim];
                cluster.set_faults(victim, FaultsRequest { fsync_delay_ms: 200, ..Default::default() }).await?;
                tokio::time::sleep(hold).await;
                heal(cluster).await?;
            }
            Fault::FailFsync => {
                let victim = *ids.choose(&mut self.rng).expect("nodes");
                record.nodes = vec![victim];
                let log_before = cluster.log_len(victim);
                // The node may abort before it answers (its next fsync can come first): the
                // exit and its log decide.
                let set = cluster.set_faults(victim, FaultsRequest { fsync_fail: true, ..Default::default() }).await;
                // Nodes fsync at least once a second (liveness heartbeats go through Raft).
                let status = match cluster.wait_exit(victim, Duration::from_secs(20)).await {
                    Ok(status) => status,
                    Err(e) => return Err(set.err().map(|s| format!("{e} ({s})")).unwrap_or(e)),
                };
                if !cluster.aborted_on_injected_fsync(victim, log_before) {
                    return Err(format!("node {victim} exited ({status}) without reporting the failed fsync"));
                }
                tokio::time::sleep(hold).await;
                cluster.restart(victim).await?;
            }
            Fault::KillMinority => {
                let mut shuffled = ids.clone();
                shuffled.shuffle(&mut self.rng);
                let victims: Vec<u64> = shuffled[..(ids.len() - 1) / 2].to_vec();
                record.nodes = victims.clone();
                for v in &victims {
                    cluster.kill(*v).await?;
                }
                tokio::time::sleep(hold).await;
                for v in &victims {
                    cluster.restart(*v).await?;
                }
            }
            Fault::IsolateAndKill => {
                if ids.len() < 5 {
                    return Err("isolate-and-kill needs 5 nodes".into());
                }
                let mut shuffled = ids.clone();
                shuffled.shuffle(&mut self.rng);
                let (isolated, killed) = (shuffled[0], shuffled[1]);
                record.nodes = vec![isolated, killed];
                self.partition(cluster, &[isolated], true).await?;
                cluster.kill(killed).await?;
                tokio::time::sleep(hold).await;
                heal(cluster).await?;
                cluster.restart(killed).await?;
            }
        }
        let healed = Instant::now();
        cluster.wait("the cluster to recover", RECOVERY, |c| async move { c.healthy().await.then_some(()) }).await?;
        record.recovered_ms = healed.elapsed().as_secs_f64() * 1e3;
        Ok(record)
    }

    /// The current leader of `shard`, waiting through an election.
    async fn leader(&self, cluster: &Cluster, shard: u64) -> Result<u64, String> {
        cluster.wait(&format!("a leader of shard {shard}"), LEADER_WAIT, |c| c.leader(shard)).await
    }

    /// Cuts `side` off from every other node: both directions, or only `side`'s sends.
    async fn partition(&self, cluster: &Cluster, side: &[u64], both: bool) -> Result<(), String> {
        let others: Vec<u64> = cluster.ids().into_iter().filter(|id| !side.contains(id)).collect();
        for id in side {
            cluster.set_faults(*id, FaultsRequest { drop_to: others.clone(), ..Default::default() }).await?;
        }
        if both {
            for id in &others {
                cluster.set_faults(*id, FaultsRequest { drop_to: side.to_vec(), ..Default::default() }).await?;
            }
        }
        Ok(())
    }
}

/// Holds a fault on `shard`'s leader `victim` for at least `hold` and until another node leads
/// the shard (proof that the fault bit); returns when that happened, in ms after the fault.
/// A shard still led by `victim` 10 s after the hold is an error: the fault had no effect.
async fn hold_until_new_leader(cluster: &Cluster, shard: u64, victim: u64, hold: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let mut moved = None;
    loop {
        if moved.is_none() {
            for id in cluster.responsive().into_iter().filter(|id| *id != victim) {
                if let Some(status) = cluster.status(id).await {
                    if status.shards.iter().any(|s| s.shard == shard && s.hosted && s.leader == id) {
                        moved = Some(start.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                }
            }
        }
        let elapsed = start.elapsed();
        match moved {
            Some(ms) if elapsed >= hold => return Ok(ms),
            None if elapsed >= hold + Duration::from_secs(10) => {
                return Err(format!("shard {shard}: no other node took over from node {victim} in {elapsed:?}"))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Clears the injected faults of every responsive node.
pub async fn heal(cluster: &Cluster) -> Result<(), String> {
    for id in cluster.responsive() {
        cluster.set_faults(id, FaultsRequest::default()).await?;
    }
    Ok(())
}

const PROBE_WRITE: &str = "INSERT INTO probe (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";

/// Writes `key` until a write succeeds; returns the time since `since`. Starts on `conn`, moves
/// to the next of `urls` when a connection breaks.
async fn probe(conn: Conn, urls: Vec<String>, key: i64, since: Instant) -> Duration {
    let mut conn = Some(conn);
    let mut next = 0usize;
    let mut n = 0i64;
    loop {
        let c = match conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => {
                next += 1;
                match Conn::open(&urls[next % urls.len()], &[PROBE_WRITE], Duration::from_secs(2)).await {
                    Some(c) => c,
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        n += 1;
        if call(Duration::from_secs(5), c.client.execute(c.statement(0), &[&key, &n])).await.is_ok() {
            return since.elapsed();
        }
        conn = Some(c);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
