//! Many shards on few nodes.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{key, wait_for, Cluster};

/// 100 shards on 3 nodes all elect leaders, spread leadership, and serve reads and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_shards_elect_leaders_and_serve() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(0, 3).await;
    let mut shards = Vec::new();
    for i in 0..100u8 {
        shards.push(c.create_shard(1 + (i as u64 % 3), vec![0x01, i], vec![0x01, i + 1]).await);
    }
    let leaders = wait_for("every shard has a leader with 3 voters", Duration::from_secs(60), || async {
        let replicas = c.replicas().await;
        let mut leaders = HashMap::new();
        for shard in &shards {
            let leader = (1..=3u64)
                .find(|n| replicas.get(&(*n, *shard)).is_some_and(|r| r.leader == *n && r.voters.len() == 3))?;
            leaders.insert(*shard, leader);
        }
        Some(leaders)
    })
    .await;
    for node in 1..=3u64 {
        let led = leaders.values().filter(|l| **l == node).count();
        assert!(led >= 15, "node {node} leads only {led} of 100 shards: leaders are not spread");
    }
    for (i, shard) in shards.iter().enumerate() {
        let via = 1 + (i as u64 % 3);
        c.put(via, *shard, &key(i as u8, 7), &[i as u8]).await.unwrap();
    }
    for (i, shard) in shards.iter().enumerate() {
        let via = 3 - (i as u64 % 3);
        assert_eq!(c.get(via, *shard, &key(i as u8, 7)).await.unwrap(), Some(vec![i as u8]));
    }
}

/// A shard created while its bootstrapping replica has just died (still counted alive for a
/// few seconds, so it was placed) still forms its group on the other replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_forms_when_its_first_replica_died() {
    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader(0, 3).await;
    // With no shards yet, placement makes node 1 the first (bootstrapping) replica.
    c.kill(1).await;
    let shard = c.create_shard(2, vec![0x01, 0x30], vec![0x01, 0x31]).await;
    let status = c.status(2).await.unwrap();
    let record = status.shards.iter().find(|s| s.shard == shard).unwrap();
    assert_eq!(record.replicas.first(), Some(&1), "node 1 was placed first: {record:?}");
    let k = key(0x30, 1);
    let ok = crate::harness::write_until_ok(Duration::from_secs(30), || c.put(2, shard, &k, b"v")).await;
    assert!(ok);
    assert_eq!(c.get(3, shard, &k).await.unwrap(), Some(b"v".to_vec()));
}
