//! The timestamp oracle on three real nodes: timestamps asked for through every node increase
//! in real-time order (a call that began after another ended gets larger values), across
//! SIGKILLs of the meta group's leader, each time with the clocks of the nodes that may take
//! over set 10 s back: only the limit persisted through Raft keeps the values increasing then.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftable_cluster::{Op, OpResult};
use raftable_common::{Ts, META_SHARD};
use raftable_proto::FaultsRequest;

use crate::harness::{wait_for, Cluster};

/// One answered call: when it began and ended, and the values it got.
struct Call {
    start: Instant,
    end: Instant,
    first: Ts,
    last: Ts,
}

/// The distance between consecutive oracle values (`raftable_cluster`'s `tso::STEP`).
const STEP: u64 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_increase_in_real_time_order_across_meta_leader_kills() {
    let mut c = Cluster::start(3, &["--fault-injection"]).await;
    let mut leader = c.wait_leader(META_SHARD, 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for via in 1..=3 {
        let (client, stop, answered) = (c.client(via), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            for n in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let count = 1 + n % 4;
                let start = Instant::now();
                match client.call_via(0, META_SHARD, Op::Timestamps { count }).await {
                    Ok(OpResult::Timestamps(first)) => {
                        let last = Ts(first.0 + u64::from(count - 1) * STEP);
                        calls.push(Call { start, end: Instant::now(), first, last });
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(other) => panic!("unexpected answer {other:?}"),
                    // Its node is down, or the meta group is electing: nothing was handed out.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            calls
        }));
    }
    let answers_grow = |by: usize| {
        let target = answered.load(Ordering::Relaxed) + by;
        let answered = answered.clone();
        wait_for("timestamps to be answered", Duration::from_secs(30), move || {
            let done = answered.load(Ordering::Relaxed) >= target;
            async move { done.then_some(()) }
        })
    };
    answers_grow(100).await;
    for _ in 0..2 {
        for id in c.running().into_iter().filter(|id| *id != leader) {
            let back = FaultsRequest { clock_offset_ms: -10_000, ..Default::default() };
            c.client(id).set_faults(0, back).await.expect("set the clock back");
        }
        c.kill(leader).await;
        let killed = leader;
        leader = c.wait_leader(META_SHARD, 3).await;
        answers_grow(100).await;
        c.restart(killed).await;
    }
    answers_grow(100).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for client in clients {
        calls.extend(client.await.unwrap());
    }

    // No value twice.
    let mut values: Vec<u64> = calls.iter().flat_map(|c| (c.first.0..=c.last.0).step_by(STEP as usize)).collect();
    let total = values.len();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), total, "a timestamp was handed out twice");
    // Real-time order: every call's values exceed those of every call that ended before it began.
    let mut by_end: Vec<&Call> = calls.iter().collect();
    by_end.sort_by_key(|c| c.end);
    let mut by_start: Vec<&Call> = calls.iter().collect();
    by_start.sort_by_key(|c| c.start);
    let (mut ended, mut highest) = (0, Ts::MIN);
    for call in by_start {
        while ended < by_end.len() && by_end[ended].end < call.start {
            highest = highest.max(by_end[ended].last);
            ended += 1;
        }
        assert!(call.first > highest, "{} handed out after {} was", call.first, highest);
    }
    eprintln!("{} calls, {total} timestamps, in real-time order across 2 meta-leader kills", calls.len());
    assert!(calls.len() >= 400, "{} calls", calls.len());
}
