//! `raftable-chaos`: runs one chaos profile against a fresh local cluster and prints the
//! verdict. Exit status 0: passed; 1: a violation (lost write, checker failure, divergence,
//! unexpected crash); 2: the run itself could not be carried out.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use raftable_chaos::nemesis::Fault;
use raftable_chaos::runner::{self, Options, Report};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Profile {
    /// 3 nodes, about a minute of faults: leader kill, pause, partitions, random kill, failing
    /// fsync. Part of the test suite.
    Short,
    /// 5 nodes, 15 minutes, every fault and the combined ones.
    Long,
}

#[derive(Parser)]
#[command(name = "raftable-chaos", about = "Fault-injection runs against a local raftable cluster")]
struct Cli {
    #[arg(long, value_enum, default_value = "short")]
    profile: Profile,
    /// Nodes (default: 3 short, 5 long).
    #[arg(long)]
    nodes: Option<u64>,
    /// Seconds of fault injection (default: 60 short, 900 long).
    #[arg(long)]
    duration: Option<u64>,
    /// Seed of the fault schedule and the clients (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to cycle through, instead of the profile's.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Option<Vec<Fault>>,
    /// The raftable binary (default: next to this one).
    #[arg(long)]
    raftable: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// An extra argument for every `raftable start` (repeatable), e.g.
    /// `--node-arg=--election-timeout-ms=150-250`.
    #[arg(long, allow_hyphen_values = true)]
    node_arg: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = options(&cli);
    eprintln!(
        "raftable-chaos: profile {:?}, {} nodes, {} s of faults, seed {}",
        cli.profile,
        opts.nodes,
        opts.duration.as_secs(),
        opts.seed
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(runner::run(&opts)) {
        Ok(report) => {
            print(&report);
            if let Some(path) = &cli.json {
                let json = serde_json::to_string_pretty(&report).expect("report serializes");
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("raftable-chaos: writing {}: {e}", path.display());
                }
            }
            if report.violations.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("raftable-chaos: run failed: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn options(cli: &Cli) -> Options {
    let short = matches!(cli.profile, Profile::Short);
    let faults = cli.faults.clone().unwrap_or_else(|| {
        use Fault::*;
        if short {
            vec![
                KillLeader,
                PauseLeader,
                KillGateway,
                IsolateLeader,
                KillRandom,
                OneWayLeader,
                FailFsync,
                Halves,
                ClockJump,
            ]
        } else {
            vec![
                KillLeader,
                PauseLeader,
                IsolateLeader,
                KillRandom,
                KillGateway,
                OneWayLeader,
                Delay,
                Halves,
                SlowFsync,
                KillLeader,
                FailFsync,
                KillMinority,
                IsolateAndKill,
                ClockJump,
            ]
        }
    });
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let raftable = cli.raftable.clone().unwrap_or_else(|| {
        let me = std::env::current_exe().expect("own path");
        me.with_file_name("raftable")
    });
    Options {
        profile: format!("{:?}", cli.profile).to_lowercase(),
        nodes: cli.nodes.unwrap_or(if short { 3 } else { 5 }),
        duration: Duration::from_secs(cli.duration.unwrap_or(if short { 60 } else { 900 })),
        seed,
        raftable,
        faults,
        hold: if short {
            (Duration::from_millis(1500), Duration::from_millis(3000))
        } else {
            (Duration::from_secs(2), Duration::from_secs(6))
        },
        register_clients: if short { 6 } else { 10 },
        set_clients: if short { 2 } else { 3 },
        counter_clients: if short { 2 } else { 3 },
        bank_clients: if short { 3 } else { 4 },
        list_append_clients: if short { 2 } else { 4 },
        keys: if short { 12 } else { 20 },
        think: Duration::from_millis(10),
        op_timeout: Duration::from_secs(5),
        node_args: cli.node_arg.clone(),
    }
}

fn print(r: &Report) {
    println!("profile {} · {} nodes · seed {} · {:.0} s", r.profile, r.nodes, r.seed, r.elapsed_s);
    println!("faults injected: {}", r.faults.len());
    for f in &r.faults {
        let failover = f.failover_ms.map(|ms| format!(", failover {ms:.0} ms")).unwrap_or_default();
        let moved = f.new_leader_ms.map(|ms| format!(", new leader after {ms:.0} ms")).unwrap_or_default();
        let shard = f.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
        println!(
            "  {:>7.1} s  {:?} nodes {:?}{shard}, held {} ms{moved}{failover}, recovered in {:.0} ms",
            f.at_s, f.fault, f.nodes, f.held_ms, f.recovered_ms
        );
    }
    println!(
        "register ops: {} ok, {} failed, {} unknown ({} at the client's timeout, the rest broken connections or 08007)",
        r.register.ok, r.register.failed, r.register.unknown, r.register_timed_out
    );
    println!(
        "lost COMMIT answers settled by txid_status: {} committed, {} aborted, {} unsettled",
        r.settled.ok, r.settled.failed, r.settled.unknown
    );
    println!(
        "set: {} acknowledged, {} failed, {} unknown, {} present; lost {}",
        r.set.acknowledged,
        r.set.failed,
        r.set.unknown,
        r.set.present,
        r.set.lost.len()
    );
    println!("indexes checked against their rows: {}", r.indexes.join("; "));
    println!(
        "counter: {} acknowledged, {} failed, {} unknown, final {}",
        r.counter.acknowledged, r.counter.failed, r.counter.unknown, r.counter.final_value
    );
    println!(
        "bank: {} transfers acknowledged ({} moved money), {} failed, {} unknown; {} reads, {} bad; final {:?}",
        r.bank.transfers.ok,
        r.bank.moved,
        r.bank.transfers.failed,
        r.bank.transfers.unknown,
        r.bank.reads,
        r.bank.bad_reads.len(),
        r.bank.final_read
    );
    let la = &r.list_append;
    println!(
        "list-append: {} transactions committed, {} failed, {} unknown; {} reads, {} appends over {} keys; \
         {} ww / {} wr / {} rw edges; anomalies {:?}",
        la.txns.ok,
        la.txns.failed,
        la.txns.unknown,
        la.reads,
        la.appends,
        la.keys,
        la.edges[0],
        la.edges[1],
        la.edges[2],
        la.anomalies
    );
    match (r.failover_median_ms, r.failover_max_ms) {
        (Some(median), Some(max)) => {
            println!("leader-kill failover ({} kills): median {median:.0} ms, max {max:.0} ms", r.failovers)
        }
        _ => println!("leader-kill failover: no leader kills timed"),
    }
    if let (Some(median), Some(max)) = (r.pause_median_ms, r.pause_max_ms) {
        println!("leader-pause failover ({} pauses): median {median:.0} ms, max {max:.0} ms", r.pauses);
    }
    if r.violations.is_empty() {
        println!("PASS: no lost writes, no checker violations, replicas converged, no unexpected crash");
    } else {
        println!("FAIL: {} violation(s)", r.violations.len());
        for v in &r.violations {
            println!("  - {v}");
        }
        if let Some(dir) = &r.dir {
            println!("run dir (node logs, data, history.json) kept at {dir}");
        }
    }
}
