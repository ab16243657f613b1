//! `raftable-bench`: runs the same Postgres-protocol workloads against several targets
//! (raftable clusters, PostgreSQL) in interleaved rounds (A, B, A, B, ...) so that noise on a
//! shared machine hits every target alike, and prints medians and ratios side by side.
//!
//! ```text
//! raftable-bench --target postgres=postgres://postgres@127.0.0.1:5432/postgres \
//!                --target raftable=postgres://bench@127.0.0.1:5433/bench --clients 16 --duration 10
//! ```
//! `scripts/bench` starts PostgreSQL 15 and raftable clusters and runs this; see
//! docs/benchmarks.md.

mod stats;
mod workload;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;

use crate::stats::Results;
use crate::workload::Workload;

#[derive(Parser)]
#[command(name = "raftable-bench", about = "Postgres-protocol load generator comparing targets side by side")]
struct Cli {
    /// NAME=URL of a target (repeatable); ratios are against the first.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Concurrent clients per workload (upsert-1c always uses one).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds measured per workload, target and round.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured warm-up before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rows of the point-workload table `kv`.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// Rows of the scan table `kv_scan` (scan-agg, range-scan).
    #[arg(long, default_value_t = 1_000_000)]
    scan_rows: i64,
    /// Rounds (each runs every target once per workload, interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Comma-separated workloads (default: all).
    #[arg(long)]
    workloads: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Skip loading (the tables exist from an earlier run).
    #[arg(long)]
    no_load: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftable-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let targets: Vec<(String, String)> = cli
        .targets
        .iter()
        .map(|t| {
            t.split_once('=')
                .map(|(n, u)| (n.to_string(), u.to_string()))
                .ok_or(format!("--target {t}: expected NAME=URL"))
        })
        .collect::<Result<_, _>>()?;
    let workloads: Vec<Workload> = match &cli.workloads {
        None => Workload::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|w| Workload::parse(w.trim()).ok_or(format!("unknown workload {w}")))
            .collect::<Result<_, _>>()?,
    };
    if !cli.no_load {
        for (name, url) in &targets {
            workload::prepare(url, name, &workloads, cli.rows, cli.scan_rows, cli.clients).await?;
        }
    }
    let mut results = Results { targets: targets.iter().map(|(n, _)| n.clone()).collect(), ..Default::default() };
    let (warmup, duration) = (Duration::from_secs(cli.warmup), Duration::from_secs(cli.duration));
    for round in 1..=cli.rounds {
        for w in &workloads {
            for (name, url) in &targets {
                let run = workload::run(url, *w, cli.clients, warmup, duration, cli.rows, cli.scan_rows).await?;
                eprintln!(
                    "round {round} {:<13} {:<12} {:>10.0} {:<9} p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                    w.name(),
                    name,
                    run.rate,
                    w.unit(),
                    run.p50_us as f64 / 1000.0,
                    run.p99_us as f64 / 1000.0,
                    run.errors
                );
                results.add(w.name(), name, run);
            }
        }
    }
    let units: BTreeMap<String, &'static str> = workloads.iter().map(|w| (w.name().to_string(), w.unit())).collect();
    println!(
        "\nmedians of {} interleaved rounds, {} clients, {} s each (+{} s warm-up):\n",
        cli.rounds, cli.clients, cli.duration, cli.warmup
    );
    println!("{}", results.table(&units));
    if let Some(path) = cli.json {
        let text = serde_json::to_string_pretty(&results.json()).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
