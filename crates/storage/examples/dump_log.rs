//! Debug aid: prints the Raft log of one group from a node's RocksDB (the node must be
//! stopped). Run: `cargo run -p raftable-storage --example dump_log -- DATA_DIR/db GROUP`

use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;
use raftable_storage::{LogStore, Rocks};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rocks = Rocks::open(std::path::Path::new(&args[1])).unwrap();
    let group: u64 = args[2].parse().unwrap();
    let mut log = LogStore::new(rocks, group);
    println!("log state: {:?}", log.get_log_state().await.unwrap());
    println!("vote: {:?}", log.read_vote().await.unwrap());
    for entry in log.try_get_log_entries(..).await.unwrap() {
        println!("{} {:?}", entry.log_id, entry.payload);
    }
}
