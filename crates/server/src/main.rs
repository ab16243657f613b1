//! The `raftable` binary: parses the command line, sets up logging, runs the node, reports.
//!
//! Every default a flag shows comes from the settings it fills (`RaftSettings`, `SqlConfig`,
//! `DemoOptions`), where it is defined once.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand};
use raftable_cluster::RaftSettings;
use raftable_server::{Config, DemoOptions};
use raftable_sql::SqlConfig;

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
    Start(StartArgs),
    /// Print the cluster as one node sees it: nodes with liveness, shards with replicas and
    /// leaders.
    Status {
        /// rpc address of any node (by default, node 1 of `raftable demo`).
        #[arg(long, default_value_t = DemoOptions::default().rpc_addr(1))]
        rpc_addr: String,
    },
    /// Start a local cluster of node processes on loopback and print how to connect.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = DemoOptions::default().nodes)]
        nodes: u64,
        /// Directory holding every node's data dir and log.
        #[arg(long, default_value_os_t = DemoOptions::default().data_dir)]
        data_dir: PathBuf,
        /// Postgres port of node 1; node i uses pg-port + i - 1 (gRPC: pg-port + 100 + i - 1).
        #[arg(long, default_value_t = DemoOptions::default().pg_port)]
        pg_port: u16,
    },
}

/// The flags of `raftable start`.
#[derive(clap::Args)]
struct StartArgs {
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
    #[arg(long, hide = true, default_value_t = RaftSettings::default().snapshot_logs)]
    snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, hide = true, default_value_t = RaftSettings::default().keep_logs)]
    keep_logs: u64,
    /// Raft heartbeat interval in ms.
    #[arg(long, hide = true, default_value_t = RaftSettings::default().heartbeat_ms)]
    heartbeat_ms: u64,
    /// Raft election timeout range in ms, as MIN-MAX.
    #[arg(long, hide = true, default_value_t = MsRange::election(&RaftSettings::default()))]
    election_timeout_ms: MsRange,
    /// Replicas per shard (capped by the node count).
    #[arg(long, hide = true, default_value_t = RaftSettings::default().replication_factor)]
    replication_factor: usize,
    /// How long replaced row versions are kept, in ms (garbage collection).
    #[arg(long, hide = true, default_value_t = RaftSettings::default().gc_ttl_ms)]
    gc_ttl_ms: u64,
    /// How often shard leaders collect garbage, in ms.
    #[arg(long, hide = true, default_value_t = RaftSettings::default().gc_interval_ms)]
    gc_interval_ms: u64,
    /// Shards of a table created without WITH (shards = N).
    #[arg(long, hide = true, default_value_t = SqlConfig::default().default_shards)]
    default_shards: u16,
    /// Accept injected faults (partitions, delays, fsync faults) from the chaos runner.
    #[arg(long, hide = true)]
    fault_injection: bool,
}

impl StartArgs {
    /// The node configuration these flags ask for.
    fn config(self) -> Config {
        let mut config = Config::new(self.node_id, self.data_dir, self.rpc_addr, self.pg_addr);
        config.join = self.join;
        config.fault_injection = self.fault_injection;
        config.sql.default_shards = self.default_shards;
        config.raft = RaftSettings {
            snapshot_logs: self.snapshot_logs,
            keep_logs: self.keep_logs,
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_timeout_ms.min,
            election_max_ms: self.election_timeout_ms.max,
            replication_factor: self.replication_factor,
            gc_ttl_ms: self.gc_ttl_ms,
            gc_interval_ms: self.gc_interval_ms,
            ..config.raft
        };
        config
    }
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
        Command::Start(args) => start(args.config()),
        Command::Status { rpc_addr } => runtime().and_then(|rt| rt.block_on(raftable_server::print_status(&rpc_addr))),
        Command::Demo { nodes, data_dir, pg_port } => {
            let opts = DemoOptions { nodes, data_dir, pg_port };
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

/// The node's runtime. Its threads run statements, whose stack need is bounded by the SQL
/// layer's limits for this stack size (`raftable_sql::THREAD_STACK_BYTES`).
fn runtime() -> raftable_common::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(raftable_sql::THREAD_STACK_BYTES)
        .enable_all()
        .build()?)
}

/// A range of milliseconds written `MIN-MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MsRange {
    min: u64,
    max: u64,
}

impl MsRange {
    fn election(settings: &RaftSettings) -> Self {
        MsRange { min: settings.election_min_ms, max: settings.election_max_ms }
    }
}

impl FromStr for MsRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected MIN-MAX in ms, got {s:?}");
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        Ok(MsRange { min: min.trim().parse().map_err(|_| bad())?, max: max.trim().parse().map_err(|_| bad())? })
    }
}

impl fmt::Display for MsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

fn start(config: Config) -> raftable_common::Result<()> {
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let rpc = tokio::net::TcpListener::bind(&config.rpc_addr).await?;
        let pg = tokio::net::TcpListener::bind(&config.pg_addr).await?;
        // One line on stdout with the bound addresses, for scripts and tests that use port 0.
        println!("raftable node {} rpc={} pg={}", config.node_id, rpc.local_addr()?, pg.local_addr()?);
        raftable_server::run(config, rpc, pg, shutdown_signal()).await
    });
    // The node is stopped and RocksDB closed. A worker thread may still be inside one long
    // synchronous step of a statement (planning a very long expression chain can take
    // minutes): dropping the runtime would wait for it, and the process would ignore SIGTERM
    // that long. Stop waiting after a moment; exiting ends such threads.
    rt.shutdown_timeout(RUNTIME_STOP);
    result
}

/// How long a stopping node waits for its runtime's threads once everything else stopped.
const RUNTIME_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(flags: &[&str]) -> Result<Config, clap::Error> {
        let args = ["raftable", "start", "--node-id", "1", "--data-dir", "d", "--rpc-addr", "r:1", "--pg-addr", "p:2"];
        match Cli::try_parse_from(args.iter().chain(flags))?.command {
            Command::Start(args) => Ok(args.config()),
            _ => panic!("not start"),
        }
    }

    #[test]
    fn flags_default_to_the_settings_defaults() {
        let config = start(&[]).unwrap();
        assert_eq!(config.raft, RaftSettings::default());
        assert_eq!(config.sql, SqlConfig::default());
        assert!(config.join.is_none() && !config.fault_injection);
    }

    #[test]
    fn flags_set_the_settings() {
        let config =
            start(&["--election-timeout-ms", "300-450", "--default-shards", "8", "--replication-factor", "1"]).unwrap();
        assert_eq!((config.raft.election_min_ms, config.raft.election_max_ms), (300, 450));
        assert_eq!(config.raft.replication_factor, 1);
        assert_eq!(config.sql.default_shards, 8);
        assert_eq!(config.raft.route_timeout_ms, RaftSettings::default().route_timeout_ms);
        assert!(start(&["--election-timeout-ms", "300"]).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!("150-250".parse::<MsRange>(), Ok(MsRange { min: 150, max: 250 }));
        assert_eq!(MsRange { min: 150, max: 250 }.to_string(), "150-250");
        assert!("150".parse::<MsRange>().is_err());
        assert!("a-b".parse::<MsRange>().is_err());
    }

    #[test]
    fn status_defaults_to_the_demos_first_node() {
        match Cli::try_parse_from(["raftable", "status"]).expect("valid").command {
            Command::Status { rpc_addr } => assert_eq!(rpc_addr, DemoOptions::default().rpc_addr(1)),
            _ => panic!("not status"),
        }
    }
}
