//! Every `.slt` file in-process: the real pgwire front end (`raftable_server::serve_pg`) over
//! the SQL layer on one unreplicated RocksDB in a temp dir (`raftable_sql::local`), no Raft, no
//! node processes. The same files run on real 1-node and 3-node clusters in the server's
//! cluster tests and against PostgreSQL in `run-postgres.sh`; this run checks the SQL layer
//! alone in seconds.

use std::path::PathBuf;
use std::time::Instant;

use raftable_sql::local::LocalCluster;
use raftable_sql::{Engine, SqlConfig};
use raftable_sql_tests::{run_file, slt_files, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slt_file_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(LocalCluster::open(dir.path()).unwrap(), SqlConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(raftable_server::serve_pg(engine, listener, async {
        let _ = stopped.await;
    }));

    let url = format!("postgres://raftable@{addr}/raftable");
    let files = slt_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt"));
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    let started = Instant::now();
    for file in &files {
        let at = Instant::now();
        match run_file(&url, file, Target::Raftable).await {
            Ok(()) => println!("ok    {} ({:.1} s)", file.display(), at.elapsed().as_secs_f64()),
            Err(e) => failures.push(format!("FAIL  {}\n{}", file.display(), e.trim_end())),
        }
    }
    println!("{} files in {:.1} s", files.len(), started.elapsed().as_secs_f64());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
