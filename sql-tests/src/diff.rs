//! `sql-diff`: the differential tester. Runs seeded random queries on PostgreSQL (`--postgres`)
//! and on raftable (`--raftable`), prints the mismatch categories with a minimised example each,
//! optionally writes those examples as `.slt` records (`--record`), and exits non-zero if any
//! query's outcome differed. See `raftable_sql_tests::differential`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use raftable_sql_tests::differential::{run, Config};

#[derive(Parser, Debug)]
#[command(name = "sql-diff", about = "Compare random queries' outcomes on PostgreSQL and raftable")]
struct Args {
    /// PostgreSQL 15 to compare with, e.g. postgres://postgres@127.0.0.1:5432/postgres
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// The raftable node, e.g. postgres://postgres@127.0.0.1:5433/raftable
    #[arg(long, value_name = "URL")]
    raftable: String,
    /// Seed of the query generator: a seed gives the same queries every time.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many queries to generate.
    #[arg(long, default_value_t = 1000)]
    queries: u64,
    /// Features to leave out, comma-separated (names as the report prints them).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Query executions spent minimising one mismatch.
    #[arg(long, default_value_t = 400)]
    minimise_budget: usize,
    /// Write each category's minimised example as .slt records (PostgreSQL's outcome expected).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        postgres: args.postgres,
        raftable: args.raftable,
        seed: args.seed,
        queries: args.queries,
        exclude: args.exclude.into_iter().filter(|f| !f.is_empty()).collect::<BTreeSet<_>>(),
        minimise_budget: args.minimise_budget,
    };
    let started = Instant::now();
    let report = match run(&config, |r| {
        eprintln!("sql-diff: {} queries, {} mismatches ({:.0?})", r.queries, r.mismatches, started.elapsed())
    })
    .await
    {
        Ok(report) => report,
        Err(e) => {
            eprintln!("sql-diff: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    println!("seed {}, {:.1?}", config.seed, started.elapsed());
    if let Some(path) = args.record {
        if let Err(e) = std::fs::write(&path, report.slt(config.seed)) {
            eprintln!("sql-diff: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
