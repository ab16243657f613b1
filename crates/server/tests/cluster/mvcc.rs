//! Versioned rows on real nodes: a table shard's replicas keep the same row versions (the
//! digest covers every version), reads see the newest, and garbage collection drops replaced
//! versions once they are older than `gc_ttl`.

use std::time::{Duration, Instant};

use raftable_common::WriteOp;

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
