//! Transactions across shards on three real nodes: transfers between rows of two shards led
//! by different nodes, coordinated from every node at once, commit atomically (two-phase,
//! over gRPC and Raft) beside whole-table sums at snapshots, and leave no lock behind.

use std::sync::Arc;

use raftable_common::{Error, ShardClient, ShardId, ShardRead};
use raftable_txn::{Coordinator, Txn};

use crate::harness::{key, Cluster};

const ACCOUNTS: u32 = 4;
const START: i64 = 100;

fn account(i: u32, shards: (ShardId, ShardId)) -> (ShardId, Vec<u8>) {
    if i.is_multiple_of(2) {
        (shards.0, key(20, i))
    } else {
        (shards.1, key(21, i))
    }
}

async fn balance(txn: &Txn, at: (ShardId, Vec<u8>)) -> i64 {
    let rows = txn.read(at.0, ShardRead::Get { key: at.1 }).await.expect("read");
    i64::from_be_bytes(rows[0].value.clone().try_into().unwrap())
}

/// The sum of every account in one snapshot.
async fn sum(coordinator: &Arc<Coordinator>, shards: (ShardId, ShardId)) -> i64 {
    let txn = coordinator.begin();
    let mut total = 0;
    for (shard, prefix) in [(shards.0, 20u8), (shards.1, 21)] {
        let scan = ShardRead::Scan { start: vec![1, prefix], end: vec![1, prefix + 1], limit: None, reverse: false };
        for row in txn.read(shard, scan).await.expect("scan") {
            total += i64::from_be_bytes(row.value.try_into().unwrap());
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_across_shards_commit_atomically() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(0, 3).await;
    let a = c.create_shard(1, vec![0x01, 20], vec![0x01, 21]).await;
    let b = c.create_shard(2, vec![0x01, 21], vec![0x01, 22]).await;
    let (la, lb) = (c.wait_leader(a, 3).await, c.wait_leader(b, 3).await);
    eprintln!("leaders: shard {a} on node {la}, shard {b} on node {lb}");
    let shards = (a, b);
    let coordinators: Vec<Arc<Coordinator>> =
        (1..=3).map(|via| Coordinator::new(Arc::new(c.client(via)) as Arc<dyn ShardClient>, via)).collect();
    let setup = coordinators[0].begin();
    for i in 0..ACCOUNTS {
        let (shard, k) = account(i, shards);
        setup.write(shard, k, Some(START.to_be_bytes().to_vec()));
    }
    setup.commit().await.expect("setup");
    let total = START * i64::from(ACCOUNTS);

    let workers = coordinators.iter().enumerate().map(|(w, coordinator)| {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let (mut committed, mut conflicts) = (0u32, 0u32);
            for n in 0..15u32 {
                let from = account((w as u32 + n) % ACCOUNTS, shards);
                let to = account((w as u32 + n + 1) % ACCOUNTS, shards);
                loop {
                    let txn = coordinator.begin();
                    let (x, y) = (balance(&txn, from.clone()).await, balance(&txn, to.clone()).await);
                    txn.write(from.0, from.1.clone(), Some((x - 3).to_be_bytes().to_vec()));
                    txn.write(to.0, to.1.clone(), Some((y + 3).to_be_bytes().to_vec()));
                    match txn.commit().await {
                        Ok(_) => {
                            committed += 1;
                            break;
                        }
                        Err(Error::TxnConflict(_) | Error::TxnAborted(_)) => conflicts += 1,
                        Err(e) => panic!("transfer failed: {e}"),
                    }
                }
            }
            (committed, conflicts)
        })
    });
    let workers: Vec<_> = workers.collect();
    let mut sums = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        assert_eq!(sum(&coordinators[sums % 3], shards).await, total, "a snapshot saw part of a transfer");
        sums += 1;
    }
    let (mut committed, mut conflicts) = (0, 0);
    for w in workers {
        let (c, f) = w.await.expect("worker");
        committed += c;
        conflicts += f;
    }
    eprintln!("{committed} transfers committed, {conflicts} conflicts retried, {sums} sums read meanwhile");
    assert_eq!(committed, 45);
    assert_eq!(sum(&coordinators[2], shards).await, total);
    // No lock is left: the newest rows read through every node without waiting.
    for via in 1..=3u64 {
        for i in 0..ACCOUNTS {
            let (shard, k) = account(i, shards);
            assert!(c.get(via, shard, &k).await.expect("read").is_some());
        }
    }
    let replicas = c.wait_converged(a, 3).await;
    assert!(replicas.iter().all(|r| r.digest == replicas[0].digest));
}
