//! Versioned rows on real nodes: a table shard's replicas keep the same row versions (the
//! digest covers every version), reads see the newest, and garbage collection drops replaced
//! versions once they are older than `gc_ttl`.

use std::time::{Duration, Instant};

use raftable_cluster::Op;
use raftable_common::{ShardWrite, Ts, WriteOp};

use crate::harness::{key, wait_for, Cluster};

const GC_TTL_MS: u64 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_versions_are_replicated_then_collected() {
    let ttl = GC_TTL_MS.to_string();
    let c = Cluster::start(3, &["--gc-ttl-ms", &ttl, "--gc-interval-ms", "100"]).await;
    c.wait_leader(0, 3).await;
    let shard = c.create_shard(1, vec![0x01, 7], vec![0x01, 8]).await;
    c.wait_leader(shard, 3).await;

    // 40 versions of one row (through every node), a row written then deleted, a row written
    // once: 43 versions.
    let started = Instant::now();
    for i in 0..40u32 {
        let via = 1 + u64::from(i % 3);
        c.put(via, shard, &key(7, 0), format!("v{i}").as_bytes()).await.expect("put");
    }
    c.put(1, shard, &key(7, 1), b"gone").await.expect("put");
    c.write(2, shard, vec![WriteOp::Delete { key: key(7, 1) }]).await.expect("delete");
    c.put(3, shard, &key(7, 2), b"once").await.expect("put");
    let replicas = c.wait_converged(shard, 3).await;
    if started.elapsed() < Duration::from_millis(GC_TTL_MS) {
        // Nothing was old enough to collect yet.
        assert!(replicas.iter().all(|r| r.versions == 43), "every version kept: {replicas:?}");
    } else {
        eprintln!("writing took {:?}, longer than gc_ttl: versions may be collected", started.elapsed());
    }
    for via in 1..=3 {
        assert_eq!(c.get(via, shard, &key(7, 0)).await.unwrap(), Some(b"v39".to_vec()));
        assert_eq!(c.get(via, shard, &key(7, 1)).await.unwrap(), None);
    }

    // Once gc_ttl has passed, the leader collects: the two live rows' newest versions stay.
    wait_for("versions collected on every replica", Duration::from_secs(30), || async {
        let replicas = c.wait_converged(shard, 3).await;
        replicas.iter().all(|r| r.versions == 2).then_some(())
    })
    .await;
    for via in 1..=3 {
        assert_eq!(c.get(via, shard, &key(7, 0)).await.unwrap(), Some(b"v39".to_vec()));
        assert_eq!(c.get(via, shard, &key(7, 1)).await.unwrap(), None);
        assert_eq!(c.get(via, shard, &key(7, 2)).await.unwrap(), Some(b"once".to_vec()));
    }
}

/// Writes that follow one another through one node commit in that order, whichever shards (and
/// leaders) they go to: each carries the newest commit timestamp the node acknowledged. Without
/// it, two leaders stamping from their own clocks would order them at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_node_commit_in_order_across_shards() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(0, 3).await;
    let a = c.create_shard(1, vec![0x01, 9], vec![0x01, 10]).await;
    let b = c.create_shard(1, vec![0x01, 10], vec![0x01, 11]).await;
    let (leader_a, leader_b) = (c.wait_leader(a, 3).await, c.wait_leader(b, 3).await);
    eprintln!("leaders: shard {a} on node {leader_a}, shard {b} on node {leader_b}");
    let mut last = 0;
    for i in 0..60u32 {
        let (shard, prefix) = if i % 2 == 0 { (a, 9) } else { (b, 10) };
        let write = ShardWrite::new(vec![WriteOp::Put { key: key(prefix, i), value: b"x".to_vec() }]);
        let op = Op::Write { write, after: Ts::MIN };
        let outcome = c.client(1).call_via(0, shard, op).await.expect("write").into_written().unwrap();
        assert!(outcome.version > last, "write {i} committed at {} after {last}", outcome.version);
        last = outcome.version;
    }
}
