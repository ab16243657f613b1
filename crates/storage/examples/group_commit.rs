//! Benchmark: synced Raft log appends per second through group commit, with 1, 8 and 64 groups
//! appending concurrently (each group waits for its append to be durable before the next, as a
//! Raft leader with one client would).
//!
//! Run: `cargo run -p raftable-storage --example group_commit -- [SECONDS] [DIR]`
//! (DIR defaults to a temp dir under the current directory, so it measures the disk you run on;
//! compare with `pg_test_fsync -f DIR/file`). Results go in docs/benchmarks.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raftable_common::{ShardCommand, ShardWrite, WriteOp};
use raftable_storage::{Entry, LogStore, Rocks};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let base = args.get(2).map(std::path::PathBuf::from).unwrap_or_else(|| std::env::current_dir().unwrap());
    println!("| groups | appends/s | fsyncs/s | appends per fsync | mean append latency |");
    println!("|---:|---:|---:|---:|---:|");
    for groups in [1u64, 8, 64] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        let appends = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for group in 1..=groups {
            let store = LogStore::new(rocks.clone(), group);
            let appends = appends.clone();
            tasks.push(tokio::spawn(async move {
                let mut index: u64 = 0;
                while Instant::now() < deadline {
                    index += 1;
                    let op = WriteOp::Put { key: index.to_be_bytes().to_vec(), value: vec![b'x'; 100] };
                    let entry = Entry {
                        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                        payload: EntryPayload::Normal(ShardCommand::Plain(ShardWrite::new(vec![op]))),
                    };
                    store.append_durable(vec![entry]).await.unwrap();
                    appends.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let n = appends.load(Ordering::Relaxed) as f64;
        let syncs = rocks.stats().syncs.load(Ordering::Relaxed) as f64;
        println!(
            "| {groups} | {:.0} | {:.0} | {:.1} | {:.2} ms |",
            n / elapsed,
            syncs / elapsed,
            n / syncs.max(1.0),
            elapsed * 1000.0 * groups as f64 / n.max(1.0)
        );
    }
}
