//! `raftable demo`: a local cluster of real node processes on loopback, for trying raftable
//! out. Node i listens for Postgres on `pg_port + i - 1` and for gRPC on `pg_port + 100 + i - 1`
//! ([`DemoOptions::pg_addr`], [`DemoOptions::rpc_addr`]), keeps its data in
//! `data_dir/node<i>`, and is stopped with SIGTERM when the demo gets Ctrl-C. A second run finds
//! the data dirs and restarts the same cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use raftable_cluster::Client;
use raftable_common::{Error, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Options of `raftable demo`.
pub struct DemoOptions {
    /// Number of nodes.
    pub nodes: u64,
    /// Directory holding every node's data dir and log.
    pub data_dir: PathBuf,
    /// Postgres port of node 1; the other ports follow from it.
    pub pg_port: u16,
}

impl Default for DemoOptions {
    /// The defaults `raftable demo` shows in its help.
    fn default() -> Self {
        Self { nodes: 3, data_dir: PathBuf::from("./raftable-data"), pg_port: 5433 }
    }
}

impl DemoOptions {
    /// Node `i`'s (from 1) Postgres port.
    fn node_pg_port(&self, i: u64) -> u64 {
        u64::from(self.pg_port) + i - 1
    }

    /// Where node `i` (from 1) listens for Postgres.
    pub fn pg_addr(&self, i: u64) -> String {
        format!("127.0.0.1:{}", self.node_pg_port(i))
    }

    /// Where node `i` (from 1) listens for gRPC: 100 above its Postgres port.
    pub fn rpc_addr(&self, i: u64) -> String {
        format!("127.0.0.1:{}", self.node_pg_port(i) + 100)
    }
}

/// Starts the cluster, waits until every node is up and registered, prints how to connect, and
/// runs until `shutdown` resolves; then stops every node cleanly.
pub async fn demo(opts: DemoOptions, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut rpc_addrs = Vec::new();
    let first_rpc = opts.rpc_addr(1);
    for i in 1..=opts.nodes {
        let dir = opts.data_dir.join(format!("node{i}"));
        let fresh = !dir.join("db").exists();
        let pg = opts.pg_addr(i);
        let rpc = opts.rpc_addr(i);
        let join = (fresh && i > 1).then(|| first_rpc.clone());
        let child = spawn(&exe, i, &dir, &rpc, &pg, join.as_deref(), &opts.data_dir).await?;
        children.push(child);
        rpc_addrs.push(rpc);
    }
    wait_ready(&rpc_addrs, opts.nodes as usize).await?;
    let pg_addrs: Vec<String> = (1..=opts.nodes).map(|i| opts.pg_addr(i)).collect();
    wait_pg(&pg_addrs).await?;
    println!("raftable demo: {} nodes serving SQL, data in {}", opts.nodes, opts.data_dir.display());
    for (i, rpc) in (1..=opts.nodes).zip(&rpc_addrs) {
        let pg = opts.node_pg_port(i);
        println!("  node {i}:  psql -h 127.0.0.1 -p {pg} -U raftable raftable    (rpc {rpc})");
    }
    println!("  cluster state: SELECT * FROM raftable.nodes; SELECT * FROM raftable.shards;");
    println!("  logs: {}/node<i>.log   stop: Ctrl-C", opts.data_dir.display());
    shutdown.await;
    println!("raftable demo: stopping nodes");
    for child in &children {
        if let Some(pid) = child.id() {
            // SIGTERM: each node shuts down cleanly.
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    Ok(())
}

async fn spawn(exe: &Path, id: u64, dir: &Path, rpc: &str, pg: &str, join: Option<&str>, logs: &Path) -> Result<Child> {
    std::fs::create_dir_all(logs)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("node{id}.log")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("start")
        .args(["--node-id", &id.to_string(), "--rpc-addr", rpc, "--pg-addr", pg])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(join) = join {
        cmd.args(["--join", join]);
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| Error::internal("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(_))) => Ok(child),
        _ => Err(Error::Internal(format!("node {id} did not start; see {}/node{id}.log", logs.display()))),
    }
}

/// Waits until every node accepts Postgres connections.
async fn wait_pg(addrs: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in addrs {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                return Err(Error::Retry(format!("{addr} does not accept connections")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Waits until the first node reports every node alive.
async fn wait_ready(rpc_addrs: &[String], nodes: usize) -> Result<()> {
    let client = Client::new(rpc_addrs.to_vec());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(status) = client.status(0, false).await {
            if status.nodes.iter().filter(|n| n.alive).count() >= nodes {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Retry("cluster did not come up within 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
