//! A cluster of `raftable start` child processes, and helpers to drive and observe it.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use raftable_cluster::{Client, Op, OpResult};
use raftable_common::{Error, Result, Row, ShardId, ShardRead, ShardWrite, Ts, WriteOp};
use raftable_proto::{ShardStatus, StatusReply};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One node process.
pub struct Proc {
    pub id: u64,
    pub rpc: String,
    /// The Postgres listen address.
    pub pg: String,
    child: Option<Child>,
}

/// A cluster of node processes sharing one temp dir.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub nodes: Vec<Proc>,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts node 1 (bootstrap), then nodes 2..=n joining through node 1, and waits until
    /// every node is registered.
    pub async fn start(n: u64, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster
    }

    /// Starts one more node, joining through node 1 unless it is the first.
    pub async fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let join = self.nodes.first().map(|p| p.rpc.clone());
        let proc = self.spawn(id, "127.0.0.1:0", join).await;
        self.nodes.push(proc);
        let want = self.nodes.len();
        wait_for(&format!("node {id} registered"), Duration::from_secs(30), || async {
            let status = self.status(id).await.ok()?;
            (status.nodes.iter().filter(|n| n.alive).count() >= want).then_some(())
        })
        .await;
        id
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    async fn spawn(&self, id: u64, rpc: &str, join: Option<String>) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftable"));
        cmd.arg("start")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--rpc-addr", rpc, "--pg-addr", "127.0.0.1:0"])
            .args(&self.extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(join) = join {
            cmd.args(["--join", &join]);
        }
        let mut child = cmd.spawn().expect("spawn raftable");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), BufReader::new(stdout).lines().next_line())
            .await
            .expect("node printed its address in time")
            .unwrap()
            .expect("node printed a line");
        // "raftable node N rpc=ADDR pg=ADDR"
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).expect("address in start line").to_string()
        };
        Proc { id, rpc: field("rpc="), pg: field("pg="), child: Some(child) }
    }

    pub fn proc(&self, id: u64) -> &Proc {
        &self.nodes[id as usize - 1]
    }

    /// SIGKILL: the node gets no chance to flush or say goodbye.
    pub async fn kill(&mut self, id: u64) {
        let proc = &mut self.nodes[id as usize - 1];
        let mut child = proc.child.take().expect("node is running");
        child.kill().await.unwrap();
    }

    /// SIGTERM: a clean stop. The exit status if the process exits within `timeout`.
    pub async fn terminate(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let proc = &mut self.nodes[id as usize - 1];
        let child = proc.child.as_mut().expect("node is running");
        let pid = child.id().expect("a running node has a pid").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(timeout, child.wait()).await.ok()?.expect("wait for the node");
        proc.child = None;
        Some(status)
    }

    /// CPU time (user + system) the node's process has used so far, from `/proc` (Linux).
    pub fn cpu_time(&self, id: u64) -> Duration {
        let pid = self.proc(id).child.as_ref().and_then(Child::id).expect("node is running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
        // Fields after the command name (which may contain spaces) ends with ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on every Linux this runs on.
        Duration::from_millis(ticks * 10)
    }

    /// Restarts a stopped node from its data dir, at the same rpc address, without --join.
    pub async fn restart(&mut self, id: u64) {
        let rpc = self.proc(id).rpc.clone();
        let proc = self.spawn(id, &rpc, None).await;
        self.nodes[id as usize - 1] = proc;
    }

    /// A Postgres connection to node `id` (the connection task runs in the background).
    pub async fn sql(&self, id: u64) -> tokio_postgres::Client {
        let url = format!("postgres://raftable@{}/raftable", self.proc(id).pg);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect over pgwire");
        tokio::spawn(conn);
        client
    }

    /// Whether node `id`'s process is still running: it was not killed, did not exit and did
    /// not crash.
    pub fn is_running(&mut self, id: u64) -> bool {
        let child = self.nodes[id as usize - 1].child.as_mut();
        child.is_some_and(|c| c.try_wait().expect("poll the node process").is_none())
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|p| p.child.is_some()).map(|p| p.id).collect()
    }

    /// A client sending shard commands through node `via`.
    pub fn client(&self, via: u64) -> Client {
        Client::new(vec![self.proc(via).rpc.clone()])
    }

    pub async fn status(&self, id: u64) -> Result<StatusReply> {
        self.client(id).status(0, true).await
    }

    pub async fn create_shard(&self, via: u64, start: Vec<u8>, end: Vec<u8>) -> ShardId {
        self.client(via).create_shard(0, start, end).await.expect("create shard")
    }

    pub async fn write(&self, via: u64, shard: ShardId, ops: Vec<WriteOp>) -> Result<()> {
        match self.client(via).call_via(0, shard, Op::Write { write: ShardWrite::new(ops), after: Ts::MIN }).await? {
            OpResult::Written(_) => Ok(()),
            other => Err(Error::Internal(format!("unexpected {other:?}"))),
        }
    }

    pub async fn put(&self, via: u64, shard: ShardId, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(via, shard, vec![WriteOp::Put { key: key.to_vec(), value: value.to_vec() }]).await
    }

    pub async fn get(&self, via: u64, shard: ShardId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.client(via).call_via(0, shard, Op::Read(ShardRead::Get { key: key.to_vec() })).await? {
            OpResult::Rows(rows) => Ok(rows.into_iter().next().map(|r: Row| r.value)),
            other => Err(Error::Internal(format!("unexpected {other:?}"))),
        }
    }

    /// This node's own replica of `shard`, if it hosts one.
    pub async fn replica(&self, id: u64, shard: ShardId) -> Option<ShardStatus> {
        let status = self.status(id).await.ok()?;
        status.shards.into_iter().find(|s| s.shard == shard && s.hosted)
    }

    /// Waits until `shard` has a leader with `voters` voters that every running node agrees on.
    pub async fn wait_leader(&self, shard: ShardId, voters: usize) -> u64 {
        wait_for(&format!("shard {shard} leader with {voters} voters"), Duration::from_secs(30), || async {
            let mut leader = None;
            for id in self.running() {
                if let Some(r) = self.replica(id, shard).await {
                    if r.leader == id && r.voters.len() == voters {
                        leader = Some(id);
                    }
                }
            }
            leader
        })
        .await
    }

    /// Waits until every running replica of `shard` has the same applied index and data digest,
    /// and there are `replicas` of them.
    pub async fn wait_converged(&self, shard: ShardId, replicas: usize) -> Vec<ShardStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for id in self.running() {
                if let Some(r) = self.replica(id, shard).await {
                    seen.push(r);
                }
            }
            let same = seen.windows(2).all(|w| w[0].applied == w[1].applied && w[0].digest == w[1].digest);
            if seen.len() == replicas && same {
                return seen;
            }
            assert!(Instant::now() < deadline, "shard {shard}: replicas did not converge: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status of every shard as each running node reports its own replicas.
    pub async fn replicas(&self) -> HashMap<(u64, ShardId), ShardStatus> {
        let mut all = HashMap::new();
        for id in self.running() {
            if let Ok(status) = self.status(id).await {
                for s in status.shards.into_iter().filter(|s| s.hosted) {
                    all.insert((id, s.shard), s);
                }
            }
        }
        all
    }
}

/// Polls `check` until it returns `Some`, panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries a write until it succeeds or `timeout` passes. Returns whether the final outcome
/// is known-applied (true); an `Unknown` outcome ends the attempt as not acknowledged.
pub async fn write_until_ok<F, Fut>(timeout: Duration, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(e) if Instant::now() < deadline && (e.is_retryable() || matches!(e, Error::Unknown(_))) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("write failed for good: {e}"),
        }
    }
}

pub fn key(shard_prefix: u8, i: u32) -> Vec<u8> {
    let mut k = vec![0x01, shard_prefix];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

impl Drop for Cluster {
    /// On a failing test, show the end of every node's log: the first thing to read.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if std::env::var_os("RAFTABLE_KEEP_TEST_DIR").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("test dir kept at {}", dir.display());
        }
        for p in &self.nodes {
            let path = self.dir.path().join(format!("node{}.log", p.id));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- node {} log (last 40 lines) ----", p.id);
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}
