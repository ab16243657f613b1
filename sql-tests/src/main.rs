//! `sql-tests`: runs the sqllogictest corpus (`sql-tests/slt/**/*.slt`) against a running raftable
//! node (`--raftable URL`) or a real PostgreSQL (`--external URL`), one file at a time on its own
//! connection, printing one line per file; exits non-zero if any file fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use raftable_sql_tests::{run_file, slt_files, Target};

#[derive(Parser, Debug)]
#[command(name = "sql-tests", about = "Run sqllogictest files over the PostgreSQL wire protocol")]
#[command(group(ArgGroup::new("server").required(true).args(["external", "raftable"])))]
struct Args {
    /// Run against real PostgreSQL at this URL (labels: `postgres`), e.g. postgres://postgres@127.0.0.1:5432/postgres
    #[arg(long, value_name = "URL")]
    external: Option<String>,
    /// Run against a running raftable node at this URL (labels: `raftable`)
    #[arg(long, value_name = "URL")]
    raftable: Option<String>,
    /// .slt files to run (default: every sql-tests/slt/**/*.slt)
    files: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (url, target) = match (args.external, args.raftable) {
        (Some(url), _) => (url, Target::Postgres),
        (None, Some(url)) => (url, Target::Raftable),
        (None, None) => unreachable!("clap requires --external or --raftable"),
    };
    let files = if args.files.is_empty() {
        slt_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt"))
    } else {
        args.files
    };
    if files.is_empty() {
        eprintln!("sql-tests: no .slt files found");
        return ExitCode::FAILURE;
    }
    let mut failed = 0usize;
    for file in &files {
        match run_file(&url, file, target).await {
            Ok(()) => println!("ok    {}", file.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL  {}\n{}", file.display(), e.trim_end());
            }
        }
    }
    println!("{} files, {} passed, {} failed ({})", files.len(), files.len() - failed, failed, target.label());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
