//! Transactions across shards on three real nodes: transfers between rows of two shards led
//! by different nodes, coordinated from every node at once, commit atomically (two-phase,
//! over gRPC and Raft) beside whole-table sums at snapshots, and leave no lock behind; and a
//! coordinator that dies with its gateway node at each step of a commit leaves an outcome
//! decided once and locks that others clear.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftable_common::{
    Decision, Error, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Ts, TxnMeta, TxnOp, WriteOutcome,
};
use raftable_txn::settle::EXPIRY;
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

/// Where a coordinator dies during a two-shard commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// Once the first shard (the anchor, with the record) has prepared; the other shard's
    /// prepare never leaves.
    FirstPrepare,
    /// Once both shards have prepared, before the commit point.
    AllPrepares,
    /// Once the record says committed, before the other shard's locks are resolved.
    CommitPoint,
}

/// A coordinator's line to the cluster that goes dead at a [`Death`] point: nothing it sends
/// afterwards arrives, as if its gateway process had been killed there (the test then kills the
/// gateway node too).
struct Dying {
    inner: raftable_cluster::Client,
    death: Death,
    prepares: AtomicUsize,
    dead: AtomicBool,
    died: tokio::sync::Notify,
}

impl Dying {
    fn check(&self) -> Result<()> {
        match self.dead.load(Ordering::SeqCst) {
            true => Err(Error::Unknown("the coordinator's node died".into())),
            false => Ok(()),
        }
    }

    fn die(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_waiters();
    }
}

#[async_trait::async_trait]
impl ShardClient for Dying {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.check()?;
        self.inner.read(shard, read).await
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.check()?;
        self.inner.read_at(shard, read, ts).await
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.check()?;
        self.inner.snapshot().await
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.check()?;
        self.inner.write(shard, write).await
    }

    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome> {
        let prepare = matches!(op, TxnOp::Prepare { .. });
        let nth = if prepare { self.prepares.fetch_add(1, Ordering::SeqCst) } else { 0 };
        if prepare && nth > 0 && self.death == Death::FirstPrepare {
            // Held until the first prepare's reply kills the line.
            let died = self.died.notified();
            if !self.dead.load(Ordering::SeqCst) {
                died.await;
            }
        }
        self.check()?;
        let commits = matches!(op, TxnOp::End { decision: Decision::Commit(_), .. });
        let outcome = self.inner.txn(shard, op).await?;
        let dies = match self.death {
            Death::FirstPrepare => prepare,
            Death::AllPrepares => prepare && nth == 1,
            Death::CommitPoint => commits,
        };
        if dies {
            self.die();
        }
        Ok(outcome)
    }
}

/// Two accounts on two shards read and written in one transaction whose coordinator dies at
/// `death`; then its gateway node is killed. Another node's transaction sees the outcome (none
/// of it before the commit point, all of it after) within about the lock expiry, the record
/// answers a later abort with that same outcome, and the restarted node's replicas converge.
async fn die_during_commit(c: &mut Cluster, shards: (ShardId, ShardId), death: Death, via: u64) {
    let other = via % 3 + 1;
    let healthy = Coordinator::new(Arc::new(c.client(other)) as Arc<dyn ShardClient>, other);
    let case = via as u32 * 10;
    let (x, y) = ((shards.0, key(20, case)), (shards.1, key(21, case)));
    let setup = healthy.begin();
    for at in [&x, &y] {
        setup.write(at.0, at.1.clone(), Some(START.to_be_bytes().to_vec()));
    }
    setup.commit().await.expect("setup");

    let line = Arc::new(Dying {
        inner: c.client(via),
        death,
        prepares: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
        died: tokio::sync::Notify::new(),
    });
    let dying = Coordinator::new(line.clone() as Arc<dyn ShardClient>, via);
    let txn = dying.begin();
    let (bx, by) = (balance(&txn, x.clone()).await, balance(&txn, y.clone()).await);
    txn.write(x.0, x.1.clone(), Some((bx - 3).to_be_bytes().to_vec()));
    txn.write(y.0, y.1.clone(), Some((by + 3).to_be_bytes().to_vec()));
    let meta = TxnMeta { id: txn.id(), anchor: x.0, anchor_key: x.1.clone() };
    let result = txn.commit().await;
    assert!(line.dead.load(Ordering::SeqCst), "{death:?}: the commit never reached its death point: {result:?}");
    let died = Instant::now();
    c.kill(via).await;

    // What the dead coordinator left: the anchor's lock (released by the commit point itself),
    // and the other shard's once its prepare was sent.
    let left = (newest(c, other, &x).await, newest(c, other, &y).await);
    let locked = |r: &Result<Option<Vec<u8>>>| matches!(r, Err(Error::Locked { .. }));
    let left = (locked(&left.0), locked(&left.1));
    let expected = match death {
        Death::FirstPrepare => (true, false),
        Death::AllPrepares => (true, true),
        Death::CommitPoint => (false, true),
    };
    assert_eq!(left, expected, "{death:?}: locks (x, y) right after the death");

    // Another transaction meets the locks, waits out their expiry, pushes, and reads one
    // outcome on both shards.
    let reader = healthy.begin();
    let seen = (balance(&reader, x.clone()).await, balance(&reader, y.clone()).await);
    let cleared = died.elapsed();
    let outcome = if death == Death::CommitPoint { (START - 3, START + 3) } else { (START, START) };
    assert_eq!(seen, outcome, "{death:?}: balances after the coordinator died");
    assert!(cleared < EXPIRY + Duration::from_secs(10), "{death:?}: locks held for {cleared:?}");
    for at in [&x, &y] {
        let row = newest(c, other, at).await;
        assert!(row.as_ref().is_ok_and(Option::is_some), "{death:?}: a lock is left: {row:?}");
    }
    // Decided once: a later abort of the transaction gets the decision that was made.
    let end = TxnOp::End { txn: meta, decision: Decision::Abort, keys: Vec::new() };
    let decided = c.client(other).txn(x.0, end).await.expect("ask the record");
    assert_eq!(decided.version > 0, death == Death::CommitPoint, "{death:?}: the record changed its mind");
    eprintln!("{death:?}: died with {result:?}; locks cleared {cleared:?} after the death");

    c.restart(via).await;
    for shard in [shards.0, shards.1] {
        let replicas = c.wait_converged(shard, 3).await;
        assert!(replicas.iter().all(|r| r.digest == replicas[0].digest), "{death:?}: replicas differ");
    }
}

/// A plain read of the newest row of `at` through node `via`, once the shard has a leader
/// again (the dead gateway may have led it): the row, or the lock it met.
async fn newest(c: &Cluster, via: u64, at: &(ShardId, Vec<u8>)) -> Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get(via, at.0, &at.1).await {
            Err(e) if !matches!(e, Error::Locked { .. }) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_dying_mid_commit_leaves_one_outcome_and_no_locks() {
    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader(0, 3).await;
    let a = c.create_shard(1, vec![0x01, 20], vec![0x01, 21]).await;
    let b = c.create_shard(2, vec![0x01, 21], vec![0x01, 22]).await;
    c.wait_leader(a, 3).await;
    c.wait_leader(b, 3).await;
    for (via, death) in [(1, Death::FirstPrepare), (2, Death::AllPrepares), (3, Death::CommitPoint)] {
        die_during_commit(&mut c, (a, b), death, via).await;
    }
}
