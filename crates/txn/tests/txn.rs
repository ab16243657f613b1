//! The coordinator over two local shards (`storage::LocalShards`, which applies commands as the
//! Raft state machine does): own writes, savepoints, write skew, concurrent transfers against
//! whole-table sums, and locks left by a coordinator that died.

use std::sync::Arc;
use std::time::Duration;

use raftable_common::{
    Decision, Error, KeyRange, Result, ShardClient, ShardId, ShardRead, Ts, TxnId, TxnMeta, TxnOp, TxnWrite,
};
use raftable_storage::{LocalShards, Rocks};
use raftable_txn::settle::{settle, LockInfo};
use raftable_txn::{Coordinator, Txn};

const A: ShardId = 1;
const B: ShardId = 2;

struct Db {
    shards: Arc<LocalShards>,
    coordinator: Arc<Coordinator>,
    _dir: tempfile::TempDir,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let shards = Arc::new(LocalShards::new(Rocks::open(dir.path()).unwrap()));
    shards.add_shard(A, KeyRange::new(vec![1, 0], vec![1, 0x80]));
    shards.add_shard(B, KeyRange::new(vec![1, 0x80], vec![2]));
    let coordinator = Coordinator::new(shards.clone(), 1);
    Db { shards, coordinator, _dir: dir }
}

/// Key `i` (0..256): the low half on shard A, the high half on B.
fn key(i: u8) -> (ShardId, Vec<u8>) {
    (if i < 0x80 { A } else { B }, vec![1, i])
}

fn scan(shard: ShardId) -> ShardRead {
    let (start, end) = if shard == A { (vec![1, 0], vec![1, 0x80]) } else { (vec![1, 0x80], vec![2]) };
    ShardRead::Scan { start, end, limit: None, reverse: false }
}

async fn get(txn: &Txn, i: u8) -> Result<Option<i64>> {
    let (shard, k) = key(i);
    let rows = txn.read(shard, ShardRead::Get { key: k }).await?;
    Ok(rows.first().map(|r| i64::from_be_bytes(r.value.clone().try_into().unwrap())))
}

fn set(txn: &Txn, i: u8, v: i64) {
    let (shard, k) = key(i);
    txn.write(shard, k, Some(v.to_be_bytes().to_vec()));
}

/// The sum of every row, read by one read-only transaction.
async fn sum(db: &Db) -> Result<i64> {
    let txn = db.coordinator.begin();
    let mut total = 0;
    for shard in [A, B] {
        for row in txn.read(shard, scan(shard)).await? {
            total += i64::from_be_bytes(row.value.try_into().unwrap());
        }
    }
    assert_eq!(txn.commit().await?, None, "read-only");
    Ok(total)
}

#[tokio::test]
async fn a_transaction_sees_its_own_writes_and_savepoints_undo_them() {
    let db = db();
    let setup = db.coordinator.begin();
    for i in [1, 2, 3, 0x81] {
        set(&setup, i, 10);
    }
    assert!(setup.commit().await.unwrap().is_some());
    let txn = db.coordinator.begin();
    set(&txn, 2, 20);
    txn.write(A, key(3).1, None);
    set(&txn, 4, 40);
    assert_eq!(get(&txn, 2).await.unwrap(), Some(20));
    assert_eq!(get(&txn, 3).await.unwrap(), None);
    // A limited scan merges the buffered writes in key order: 1, 2 (own), 4 (own).
    let page = ShardRead::Scan { start: vec![1, 0], end: vec![1, 0x80], limit: Some(2), reverse: false };
    let rows = txn.read(A, page).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.key[1]).collect::<Vec<_>>(), [1, 2]);
    // Pages around its own deletion: 3 is gone, 4 is its own insert.
    let page = ShardRead::Scan { start: vec![1, 2, 0], end: vec![1, 0x80], limit: Some(1), reverse: false };
    assert_eq!(txn.read(A, page).await.unwrap().iter().map(|r| r.key[1]).collect::<Vec<_>>(), [4]);
    let back = ShardRead::Scan { start: vec![1, 0], end: vec![1, 4], limit: Some(2), reverse: true };
    assert_eq!(txn.read(A, back).await.unwrap().iter().map(|r| r.key[1]).collect::<Vec<_>>(), [2, 1]);
    let savepoint = txn.savepoint();
    set(&txn, 0x81, 0);
    assert_eq!(get(&txn, 0x81).await.unwrap(), Some(0));
    txn.rollback_to(&savepoint);
    assert_eq!(get(&txn, 0x81).await.unwrap(), Some(10));
    // Others do not see the buffered writes; after the commit everyone does.
    let other = db.coordinator.begin();
    assert_eq!(get(&other, 2).await.unwrap(), Some(10));
    txn.commit().await.unwrap();
    let after = db.coordinator.begin();
    assert_eq!(get(&after, 2).await.unwrap(), Some(20));
    assert_eq!(get(&after, 3).await.unwrap(), None);
    assert_eq!(get(&after, 4).await.unwrap(), Some(40));
    assert_eq!(get(&after, 0x81).await.unwrap(), Some(10));
}

/// Two transactions read both of two rows (on two shards) and each zeroes a different one:
/// serializable means the second to commit fails, so the rows never both end at 0.
#[tokio::test]
async fn write_skew_is_refused() {
    let db = db();
    let setup = db.coordinator.begin();
    set(&setup, 1, 1);
    set(&setup, 0x81, 1);
    setup.commit().await.unwrap();
    let (t1, t2) = (db.coordinator.begin(), db.coordinator.begin());
    for t in [&t1, &t2] {
        assert_eq!(get(t, 1).await.unwrap().unwrap() + get(t, 0x81).await.unwrap().unwrap(), 2);
    }
    set(&t1, 1, 0);
    set(&t2, 0x81, 0);
    t1.commit().await.unwrap();
    let second = t2.commit().await;
    assert!(matches!(second, Err(Error::TxnConflict(_))), "{second:?}");
    let check = db.coordinator.begin();
    assert_eq!(get(&check, 0x81).await.unwrap(), Some(1), "the failed transaction applied nothing");
    // A lost update too: both read a counter on one shard and write it plus one.
    let (t3, t4) = (db.coordinator.begin(), db.coordinator.begin());
    for t in [&t3, &t4] {
        let v = get(t, 0x81).await.unwrap().unwrap();
        set(t, 0x81, v + 1);
    }
    t3.commit().await.unwrap();
    assert!(matches!(t4.commit().await, Err(Error::TxnConflict(_))));
}

/// Concurrent transfers between rows on both shards, each retried until it commits, beside
/// whole-table sums: every sum is the total, and the final one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_keep_the_total_in_every_snapshot() {
    let db = Arc::new(db());
    let accounts: Vec<u8> = vec![1, 2, 3, 0x81, 0x82, 0x83];
    let setup = db.coordinator.begin();
    for &i in &accounts {
        set(&setup, i, 100);
    }
    setup.commit().await.unwrap();
    let total = 100 * accounts.len() as i64;
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let (db, accounts) = (db.clone(), accounts.clone());
        tasks.push(tokio::spawn(async move {
            let (mut committed, mut conflicts) = (0, 0);
            for n in 0..25u64 {
                let from = accounts[((worker * 7 + n) % 6) as usize];
                let to = accounts[((worker * 3 + n * 5 + 1) % 6) as usize];
                if from == to {
                    continue;
                }
                loop {
                    let txn = db.coordinator.begin();
                    let (a, b) = (get(&txn, from).await.unwrap().unwrap(), get(&txn, to).await.unwrap().unwrap());
                    let amount = (n as i64 % 7) + 1;
                    set(&txn, from, a - amount);
                    set(&txn, to, b + amount);
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
        }));
    }
    let reader = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut sums = 0;
            for _ in 0..40 {
                assert_eq!(sum(&db).await.unwrap(), total, "a snapshot saw part of a transfer");
                sums += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sums
        })
    };
    let mut committed = 0;
    for t in tasks {
        committed += t.await.unwrap().0;
    }
    assert!(reader.await.unwrap() == 40);
    assert!(committed >= 80, "{committed} transfers committed");
    assert_eq!(sum(&db).await.unwrap(), total);
}

/// A coordinator that died after preparing on both shards: its locks block reads and writes
/// until they are older than the expiry, then the first to settle one aborts the transaction
/// through its record and drops the lock. One that died after its commit point: settling
/// finds the commit and resolves the lock into the committed value.
#[tokio::test]
async fn a_dead_coordinators_locks_are_settled_by_its_record() {
    let db = db();
    let client: &dyn ShardClient = db.shards.as_ref();
    let write = |i: u8, v: i64| TxnWrite::put(key(i).1, v.to_be_bytes().to_vec());
    for (id, committed) in [(1u128, false), (2, true)] {
        let txn = TxnMeta { id: TxnId(id), anchor: A, anchor_key: key(id as u8).1 };
        let read_ts = client.snapshot().await.unwrap();
        let prepare = |anchor, w| TxnOp::Prepare { txn: txn.clone(), anchor, read_ts, reads: vec![], writes: w };
        let pa = client.txn(A, prepare(true, vec![write(id as u8, 7)])).await.unwrap();
        let pb = client.txn(B, prepare(false, vec![write(0x90 + id as u8, 7)])).await.unwrap();
        let commit = Ts(pa.version.max(pb.version));
        if committed {
            let end = TxnOp::End { txn: txn.clone(), decision: Decision::Commit(commit), keys: vec![key(id as u8).1] };
            client.txn(A, end).await.unwrap();
        }
        // The coordinator is gone. A read of B's key meets the lock.
        let read = ShardRead::Get { key: key(0x90 + id as u8).1 };
        let met = client.read(B, read.clone()).await.unwrap_err();
        let lock = LockInfo::from_error(B, &met).expect("a lock");
        // Young: settling only waits, the lock stays.
        settle(client, &lock, Duration::from_millis(1)).await.unwrap();
        assert!(matches!(client.read(B, read.clone()).await, Err(Error::Locked { .. })));
        // Expired (its stamp as seen from far in the future): pushed.
        let old = LockInfo { ts: Ts::new(1, 0), ..lock };
        settle(client, &old, Duration::from_millis(1)).await.unwrap();
        let rows = client.read(B, read).await.unwrap();
        if committed {
            assert_eq!(rows[0].value, 7i64.to_be_bytes(), "a committed transaction's write survives");
            assert_eq!(rows[0].version, commit.0);
        } else {
            assert!(rows.is_empty(), "an aborted transaction's write is gone");
            let late = TxnOp::End { txn: txn.clone(), decision: Decision::Commit(commit), keys: vec![] };
            assert!(matches!(client.txn(A, late).await, Err(Error::TxnAborted(_))), "decided once");
        }
    }
}
