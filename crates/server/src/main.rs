//! The `raftable` binary: parses the command line, sets up logging, runs the node, reports.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use raftable_server::Config;

#[derive(Parser)]
#[command(name = "raftable", version, about = "A PostgreSQL-compatible, distributed, highly available table store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start one node. Without --join on an empty data dir it bootstraps a new cluster; with
    /// --join it joins the cluster of that member; with an existing data dir it restarts.
    Start {
        /// This node's id (1 or more, unique in the cluster).
        #[arg(long)]
        node_id: u64,
        /// Directory for the node's data.
        #[arg(long)]
        data_dir: PathBuf,
        /// Listen address for node-to-node gRPC.
        #[arg(long)]
        rpc_addr: String,
        /// Listen address for Postgres clients.
        #[arg(long)]
        pg_addr: String,
        /// rpc address of any current member, to join its cluster.
        #[arg(long)]
        join: Option<String>,
        /// Build a Raft snapshot every N log entries.
        #[arg(long, hide = true)]
        snapshot_logs: Option<u64>,
        /// Log entries kept behind a snapshot.
        #[arg(long, hide = true)]
        keep_logs: Option<u64>,
        /// Raft heartbeat interval in ms (default 100).
        #[arg(long, hide = true)]
        heartbeat_ms: Option<u64>,
        /// Raft election timeout range in ms, as MIN-MAX (default 150-250).
        #[arg(long, hide = true)]
        election_timeout_ms: Option<String>,
        /// Replicas per shard (default 3, capped by the node count).
        #[arg(long, hide = true)]
        replication_factor: Option<usize>,
        /// Shards of a table created without WITH (shards = N) (default 4).
        #[arg(long, hide = true)]
        default_shards: Option<u16>,
        /// Accept injected faults (partitions, delays, fsync faults) from the chaos runner.
        #[arg(long, hide = true)]
        fault_injection: bool,
    },
    /// Print the cluster as one node sees it: nodes with liveness, shards with replicas and
    /// leaders.
    Status {
        /// rpc address of any node.
        #[arg(long, default_value = "127.0.0.1:5533")]
        rpc_addr: String,
    },
    /// Start a local cluster of node processes on loopback and print how to connect.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Directory holding every node's data dir and log.
        #[arg(long, default_value = "./raftable-data")]
        data_dir: PathBuf,
        /// Postgres port of node 1; node i uses pg-port + i - 1 (gRPC: pg-port + 100 + i - 1).
        #[arg(long, default_value_t = 5433)]
        pg_port: u16,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Start {
            node_id,
            data_dir,
            rpc_addr,
            pg_addr,
            join,
            snapshot_logs,
            keep_logs,
            heartbeat_ms,
            election_timeout_ms,
            replication_factor,
            default_shards,
            fault_injection,
        } => {
            let mut config = Config::new(node_id, data_dir, rpc_addr, pg_addr);
            config.join = join;
            config.default_shards = default_shards.unwrap_or(config.default_shards);
            config.fault_injection = fault_injection;
            let raft = &mut config.raft;
            raft.snapshot_logs = snapshot_logs.unwrap_or(raft.snapshot_logs);
            raft.keep_logs = keep_logs.unwrap_or(raft.keep_logs);
            raft.heartbeat_ms = heartbeat_ms.unwrap_or(raft.heartbeat_ms);
            raft.replication_factor = replication_factor.unwrap_or(raft.replication_factor);
            match election_timeout_ms.map(|r| parse_range(&r)).transpose() {
                Ok(range) => {
                    if let Some((min, max)) = range {
                        (raft.election_min_ms, raft.election_max_ms) = (min, max);
                    }
                    start(config)
                }
                Err(e) => Err(e),
            }
        }
        Command::Status { rpc_addr } => runtime().and_then(|rt| rt.block_on(raftable_server::print_status(&rpc_addr))),
        Command::Demo { nodes, data_dir, pg_port } => {
            let opts = raftable_server::DemoOptions { nodes, data_dir, pg_port };
            runtime().and_then(|rt| rt.block_on(raftable_server::demo(opts, shutdown_signal())))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftable: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> raftable_common::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Parses "MIN-MAX".
fn parse_range(s: &str) -> raftable_common::Result<(u64, u64)> {
    let bad = || raftable_common::Error::InvalidInput(format!("expected MIN-MAX in ms, got {s:?}"));
    let (min, max) = s.split_once('-').ok_or_else(bad)?;
    Ok((min.trim().parse().map_err(|_| bad())?, max.trim().parse().map_err(|_| bad())?))
}

fn start(config: Config) -> raftable_common::Result<()> {
    runtime()?.block_on(async move {
        let rpc = tokio::net::TcpListener::bind(&config.rpc_addr).await?;
        let pg = tokio::net::TcpListener::bind(&config.pg_addr).await?;
        // One line on stdout with the bound addresses, for scripts and tests that use port 0.
        println!("raftable node {} rpc={} pg={}", config.node_id, rpc.local_addr()?, pg.local_addr()?);
        raftable_server::run(config, rpc, pg, shutdown_signal()).await
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
