//! The cluster under test: `raftable start --fault-injection` child processes on loopback, one
//! data dir and log file each under the run's temp dir, and the controls the nemesis uses on
//! them: SIGKILL, SIGSTOP / SIGCONT, restart at the same addresses, injected faults through
//! the `SetFaults` admin call, and the observations the runner needs (Status of each node,
//! unexpected exits, panics in the logs).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use raftable_cluster::Client;
use raftable_proto::{FaultsRequest, StatusReply};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long an admin call may take before the node counts as unresponsive (a paused node
/// accepts the connection and never answers).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One node process and its fixed addresses (a restart binds the same ones, so clients and
/// peers find it again).
pub struct Proc {
    pub id: u64,
    pub rpc: String,
    pub pg: String,
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    extra: Vec<String>,
    pub nodes: Vec<Proc>,
}

impl Cluster {
    /// Starts node 1 (bootstrap) and nodes 2..=n joining through it; waits until each is
    /// registered alive.
    pub async fn start(bin: &Path, n: u64, extra: &[String]) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new().prefix("raftable-chaos-").tempdir().map_err(|e| e.to_string())?;
        let mut cluster = Cluster { dir, bin: bin.to_path_buf(), extra: extra.to_vec(), nodes: Vec::new() };
        for id in 1..=n {
            let join = cluster.nodes.first().map(|p| p.rpc.clone());
            let proc = cluster.spawn(id, "127.0.0.1:0", "127.0.0.1:0", join.as_deref()).await?;
            cluster.nodes.push(proc);
            let want = id as usize;
            cluster
                .wait("node registration", Duration::from_secs(60), |c| async move {
                    let status = c.status(1).await?;
                    (status.nodes.iter().filter(|n| n.alive).count() >= want).then_some(())
                })
                .await?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the run's directory (data dirs and logs) after the runner exits.
    pub fn keep_dir(self) -> PathBuf {
        self.dir.keep()
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    async fn spawn(&self, id: u64, rpc: &str, pg: &str, join: Option<&str>) -> Result<Proc, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .map_err(|e| format!("node {id} log: {e}"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("start")
            .args(["--node-id", &id.to_string(), "--rpc-addr", rpc, "--pg-addr", pg, "--fault-injection"])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args(&self.extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(join) = join {
            cmd.args(["--join", join]);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => return Err(format!("node {id} did not print its addresses:\n{}", self.log_tail(id, 20))),
        };
        // "raftable node N rpc=ADDR pg=ADDR"
        let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
        let (Some(rpc), Some(pg)) = (field("rpc="), field("pg=")) else {
            return Err(format!("node {id}: unexpected start line {line:?}"));
        };
        Ok(Proc { id, rpc, pg, child: Some(child), paused: false })
    }

    pub fn proc(&self, id: u64) -> &Proc {
        &self.nodes[id as usize - 1]
    }

    fn proc_mut(&mut self, id: u64) -> &mut Proc {
        &mut self.nodes[id as usize - 1]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|p| p.id).collect()
    }

    /// Nodes whose process runs (paused ones included).
    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|p| p.child.is_some()).map(|p| p.id).collect()
    }

    /// Nodes that run and are not paused: the ones that can answer.
    pub fn responsive(&self) -> Vec<u64> {
        self.nodes.iter().filter(|p| p.child.is_some() && !p.paused).map(|p| p.id).collect()
    }

    pub fn pg_url(&self, id: u64) -> String {
        format!("postgres://chaos@{}/raftable", self.proc(id).pg)
    }

    /// SIGKILL, and reap the process. A node that had already exited by itself is an error
    /// (its crash would otherwise pass as the injected kill).
    pub async fn kill(&mut self, id: u64) -> Result<(), String> {
        let proc = self.proc_mut(id);
        proc.paused = false;
        if let Some(mut child) = proc.child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("node {id} had exited by itself ({status}) before the kill"));
            }
            let _ = child.kill().await;
        }
        Ok(())
    }

    /// Restarts a stopped node from its data dir at its old addresses.
    pub async fn restart(&mut self, id: u64) -> Result<(), String> {
        let (rpc, pg) = (self.proc(id).rpc.clone(), self.proc(id).pg.clone());
        let proc = self.spawn(id, &rpc, &pg, None).await?;
        self.nodes[id as usize - 1] = proc;
        Ok(())
    }

    /// SIGSTOP (`pause = true`) or SIGCONT.
    pub async fn pause(&mut self, id: u64, pause: bool) -> Result<(), String> {
        let proc = self.proc_mut(id);
        let Some(pid) = proc.child.as_ref().and_then(|c| c.id()) else {
            return Err(format!("node {id} is not running"));
        };
        let signal = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("kill {signal} {pid} failed: {status}"));
        }
        proc.paused = pause;
        Ok(())
    }

    /// Replaces node `id`'s injected faults.
    pub async fn set_faults(&self, id: u64, faults: FaultsRequest) -> Result<(), String> {
        let client = Client::new(vec![self.proc(id).rpc.clone()]);
        match tokio::time::timeout(ADMIN_TIMEOUT, client.set_faults(0, faults)).await {
            Ok(result) => result.map_err(|e| format!("set faults on node {id}: {e}")),
            Err(_) => Err(format!("set faults on node {id}: timed out")),
        }
    }

    /// Node `id`'s view of the cluster, or None if it does not answer in time.
    pub async fn status(&self, id: u64) -> Option<StatusReply> {
        self.status_of(id, false).await
    }

    /// Node `id`'s view with the digest of each of its replicas (see `checks::divergent`).
    pub async fn status_of(&self, id: u64, digests: bool) -> Option<StatusReply> {
        let client = Client::new(vec![self.proc(id).rpc.clone()]);
        tokio::time::timeout(ADMIN_TIMEOUT, client.status(0, digests)).await.ok()?.ok()
    }

    /// The node that leads `shard`: it says so itself, and a majority of the replicas that
    /// answer name it (a deposed leader cut off from the others may still think it leads).
    pub async fn leader(&self, shard: u64) -> Option<u64> {
        let mut claims = Vec::new();
        let mut named = std::collections::HashMap::<u64, usize>::new();
        let mut replicas = 0;
        for id in self.responsive() {
            let Some(status) = self.status(id).await else { continue };
            if let Some(s) = status.shards.iter().find(|s| s.shard == shard && s.hosted) {
                replicas += 1;
                *named.entry(s.leader).or_default() += 1;
                if s.leader == id {
                    claims.push(id);
                }
            }
        }
        claims.into_iter().find(|id| named.get(id).copied().unwrap_or(0) * 2 > replicas)
    }

    /// Whether every node is registered alive and every shard has a responsive leader.
    pub async fn healthy(&self) -> bool {
        let mut all_alive = false;
        let mut shards = std::collections::BTreeSet::new();
        let mut led = std::collections::BTreeSet::new();
        for id in self.responsive() {
            let Some(status) = self.status(id).await else { return false };
            all_alive |= status.nodes.len() == self.nodes.len() && status.nodes.iter().all(|n| n.alive);
            for s in &status.shards {
                shards.insert(s.shard);
                if s.hosted && s.leader == id {
                    led.insert(s.shard);
                }
            }
        }
        all_alive && !shards.is_empty() && shards == led
    }

    /// Polls `check` every 100 ms until it returns Some, or fails after `timeout`.
    pub async fn wait<'a, T, F, Fut>(&'a self, what: &str, timeout: Duration, check: F) -> Result<T, String>
    where
        F: Fn(&'a Cluster) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check(self).await {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Nodes whose process ended without being killed by us, with how it ended. They are
    /// marked stopped.
    pub fn exited(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut exited = Vec::new();
        for proc in &mut self.nodes {
            if let Some(child) = proc.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push((proc.id, status));
                    proc.child = None;
                    proc.paused = false;
                }
            }
        }
        exited
    }

    /// Waits for node `id`'s process to end by itself (an injected crash).
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> Result<ExitStatus, String> {
        let proc = self.proc_mut(id);
        let Some(mut child) = proc.child.take() else { return Err(format!("node {id} is not running")) };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(format!("waiting for node {id}: {e}")),
            Err(_) => {
                proc.child = Some(child);
                Err(format!("node {id} did not exit within {timeout:?}"))
            }
        }
    }

    /// Lines of every node's log that show a panic or a fatal error, except the fatal errors
    /// the runner injected (failing fsync).
    pub fn log_failures(&self) -> Vec<String> {
        let mut found = Vec::new();
        for id in self.ids() {
            let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
            for line in log.lines() {
                let fatal = line.contains("panicked at") || line.contains("fatal storage error");
                if fatal && !line.contains("injected fsync failure") {
                    found.push(format!("node {id}: {line}"));
                }
            }
        }
        found
    }

    /// The size of node `id`'s log so far (logs accumulate over restarts).
    pub fn log_len(&self, id: u64) -> usize {
        std::fs::read(self.log_path(id)).map(|l| l.len()).unwrap_or(0)
    }

    /// Whether node `id`'s log after byte `from` says it aborted on the injected fsync failure.
    pub fn aborted_on_injected_fsync(&self, id: u64, from: usize) -> bool {
        let log = std::fs::read(self.log_path(id)).unwrap_or_default();
        String::from_utf8_lossy(log.get(from..).unwrap_or_default()).contains("injected fsync failure")
    }

    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
