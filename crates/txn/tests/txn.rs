//! The coordinator over two local shards (`storage::LocalShards`, which applies commands as the
//! Raft state machine does): own writes, savepoints, write skew, concurrent transfers against
//! whole-table sums, locks left by a coordinator that died, and commits larger than one command
//! going in chunks; transaction status rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftable_common::{
    Decision, Error, KeyRange, Result, Row, ShardClient, ShardId, ShardRead, ShardWrite, Span, Ts, TxnId, TxnMeta,
    TxnOp, TxnWrite, WriteOutcome,
};
use raftable_storage::{LocalShards, Rocks};
use raftable_txn::settle::{settle, LockInfo};
use raftable_txn::status::{self, XactStatus};
use raftable_txn::{Coordinator, Txn, CHUNK_BYTES};

const A: ShardId = 1;
const B: ShardId = 2;

struct Db {
    shards: Arc<LocalShards>,
    coordinator: Arc<Coordinator>,
    _dir: tempfile::TempDir,
}

/// Bytes of writes a transaction keeps in memory in these tests.
const SPILL: usize = 100;

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let shards = Arc::new(LocalShards::new(Rocks::open(dir.path()).unwrap()));
    shards.add_shard(A, KeyRange::new(vec![1, 0], vec![1, 0x80]));
    shards.add_shard(B, KeyRange::new(vec![1, 0x80], vec![2]));
    // Transactions spill their writes to temporary files after every write or two.
    let coordinator = Coordinator::with_limits(shards.clone(), 1, CHUNK_BYTES, SPILL);
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

/// Reads page through a transaction's own writes, spilled to many runs: every page, forward
/// and backward, is what the shard's rows with those writes applied hold, though own
/// deletions hide whole pages of the shard's rows; a savepoint rolls back across spills.
#[tokio::test]
async fn pages_merge_own_writes_spilled_to_disk() {
    let db = db();
    let setup = db.coordinator.begin();
    for i in 0..100 {
        set(&setup, i, 1);
    }
    setup.commit().await.unwrap();
    let txn = db.coordinator.begin();
    // The model: key -> value as the transaction sees it.
    let mut model: std::collections::BTreeMap<u8, i64> = (0..100).map(|i| (i, 1)).collect();
    for i in 0..0x80u8 {
        if i < 60 || i % 5 == 0 {
            txn.write(A, key(i).1, None);
            model.remove(&i);
        } else if i % 2 == 0 {
            set(&txn, i, i64::from(i) + 1000);
            model.insert(i, i64::from(i) + 1000);
        }
    }
    let savepoint = txn.savepoint();
    for i in 60..0x80u8 {
        txn.write(A, key(i).1, None);
    }
    assert!(txn.read(A, scan(A)).await.unwrap().is_empty());
    txn.rollback_to(&savepoint);
    for (limit, reverse) in [(1, false), (7, false), (3, true), (200, true)] {
        let (mut start, mut end, mut seen) = (vec![1, 0], vec![1, 0x80], Vec::new());
        loop {
            let read = ShardRead::Scan { start: start.clone(), end: end.clone(), limit: Some(limit), reverse };
            let rows = txn.read(A, read).await.unwrap();
            assert!(rows.len() <= limit as usize);
            for r in &rows {
                seen.push((r.key[1], i64::from_be_bytes(r.value.clone().try_into().unwrap())));
            }
            match rows.last() {
                Some(last) if rows.len() == limit as usize && reverse => end = last.key.clone(),
                Some(last) if rows.len() == limit as usize => start = [last.key.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        let mut expected: Vec<(u8, i64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected, "limit {limit}, reverse {reverse}");
    }
    txn.commit().await.unwrap();
    let after = db.coordinator.begin();
    let rows = after.read(A, scan(A)).await.unwrap();
    let committed: Vec<(u8, i64)> =
        rows.iter().map(|r| (r.key[1], i64::from_be_bytes(r.value.clone().try_into().unwrap()))).collect();
    assert_eq!(committed, model.into_iter().collect::<Vec<_>>());
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

/// Counts the transaction commands sent through it, by kind, and the largest one's bytes of
/// keys, values and read spans.
struct Counting {
    inner: Arc<LocalShards>,
    prepares: AtomicUsize,
    one_phase: AtomicUsize,
    largest: AtomicUsize,
}

fn payload(op: &TxnOp) -> usize {
    let writes =
        |w: &[TxnWrite]| -> usize { w.iter().map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len)).sum() };
    let spans = |s: &[Span]| -> usize { s.iter().map(|s| s.start.len() + s.end.len()).sum() };
    match op {
        TxnOp::Commit { reads, writes: w, .. } | TxnOp::Prepare { reads, writes: w, .. } => writes(w) + spans(reads),
        TxnOp::End { keys, .. } | TxnOp::Resolve { keys, .. } => keys.iter().map(Vec::len).sum(),
        TxnOp::ResolveAll { .. } | TxnOp::Forget { .. } => 0,
    }
}

#[async_trait::async_trait]
impl ShardClient for Counting {
    async fn read(&self, shard: ShardId, read: ShardRead) -> Result<Vec<Row>> {
        self.inner.read(shard, read).await
    }

    async fn read_at(&self, shard: ShardId, read: ShardRead, ts: Ts) -> Result<Vec<Row>> {
        self.inner.read_at(shard, read, ts).await
    }

    async fn snapshot(&self) -> Result<Ts> {
        self.inner.snapshot().await
    }

    async fn write(&self, shard: ShardId, write: ShardWrite) -> Result<WriteOutcome> {
        self.inner.write(shard, write).await
    }

    async fn txn(&self, shard: ShardId, op: TxnOp) -> Result<WriteOutcome> {
        match op {
            TxnOp::Prepare { .. } => self.prepares.fetch_add(1, Ordering::SeqCst),
            TxnOp::Commit { .. } => self.one_phase.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        self.largest.fetch_max(payload(&op), Ordering::SeqCst);
        self.inner.txn(shard, op).await
    }
}

/// Commands of at most 1 KiB, rows of 64 bytes: a transaction writing 100 rows on each shard.
const CHUNK: usize = 1024;
const ROW: usize = 64;

fn big_row(i: u8, fill: u8) -> Vec<u8> {
    let mut v = vec![fill; ROW];
    v[0] = i;
    v
}

fn counting(db: &Db) -> (Arc<Counting>, Arc<Coordinator>) {
    let counting = Arc::new(Counting {
        inner: db.shards.clone(),
        prepares: AtomicUsize::new(0),
        one_phase: AtomicUsize::new(0),
        largest: AtomicUsize::new(0),
    });
    let coordinator = Coordinator::with_limits(counting.clone(), 2, CHUNK, SPILL);
    (counting, coordinator)
}

/// A commit larger than one command prepares, validates and resolves in chunks of at most the
/// limit (one row over it at most), two-phase even on one shard, and commits whole.
#[tokio::test]
async fn a_commit_larger_than_a_command_goes_in_chunks() {
    let db = db();
    let (counting, coordinator) = counting(&db);
    let txn = coordinator.begin();
    // Read every key first: the reads are validated in chunks too.
    for shard in [A, B] {
        assert!(txn.read(shard, scan(shard)).await.unwrap().is_empty());
    }
    let keys: Vec<u8> = (0..100).chain(0x80..0xe4).collect();
    for &i in &keys {
        let (shard, k) = key(i);
        txn.write(shard, k, Some(big_row(i, 1)));
    }
    txn.commit().await.unwrap().expect("a commit timestamp");
    let prepares = counting.prepares.load(Ordering::SeqCst);
    assert!(prepares >= 2 * (100 * (ROW + 2)) / CHUNK, "{prepares} prepares");
    assert!(counting.largest.load(Ordering::SeqCst) <= CHUNK, "no command above the limit");
    let check = db.coordinator.begin();
    let mut rows = check.read(A, scan(A)).await.unwrap();
    rows.extend(check.read(B, scan(B)).await.unwrap());
    assert_eq!(rows.len(), keys.len());
    assert!(rows.iter().all(|r| r.value == big_row(r.key[1], 1)));

    // One shard over the limit: two-phase, not a one-phase commit.
    let txn = coordinator.begin();
    for i in 0..100u8 {
        let (shard, k) = key(i);
        txn.write(shard, k, Some(big_row(i, 2)));
    }
    let before = counting.prepares.load(Ordering::SeqCst);
    txn.commit().await.unwrap();
    assert_eq!(counting.one_phase.load(Ordering::SeqCst), 0);
    assert!(counting.prepares.load(Ordering::SeqCst) - before > 1);
    let rows = db.coordinator.begin().read(A, scan(A)).await.unwrap();
    assert!(rows.iter().all(|r| r.value == big_row(r.key[1], 2)));
}

/// A chunked commit refused part way (another transaction holds a lock on a key of a later
/// chunk) aborts: the chunks already prepared are rolled back, nothing is visible, no lock of
/// it is left.
#[tokio::test]
async fn a_chunked_commit_refused_midway_leaves_nothing() {
    let db = db();
    let client: &dyn ShardClient = db.shards.as_ref();
    let (_, coordinator) = counting(&db);
    // Transaction 99 holds a lock on the last key B's chunks reach.
    let blocker = TxnMeta { id: TxnId(99), anchor: B, anchor_key: key(0xe3).1 };
    let read_ts = client.snapshot().await.unwrap();
    let lock = TxnWrite::put(key(0xe3).1, vec![9]);
    let prepare = TxnOp::Prepare { txn: blocker.clone(), anchor: true, read_ts, reads: vec![], writes: vec![lock] };
    client.txn(B, prepare).await.unwrap();

    let txn = coordinator.begin();
    for i in (0..100).chain(0x80..0xe4) {
        let (shard, k) = key(i);
        txn.write(shard, k, Some(big_row(i, 3)));
    }
    let refused = txn.commit().await;
    assert!(matches!(refused, Err(Error::TxnConflict(_))), "{refused:?}");

    // Transaction 99 gives up; then nothing of the refused commit is there, and its keys take
    // a new commit at once (no lock of it left).
    let end = TxnOp::End { txn: blocker, decision: Decision::Abort, keys: vec![key(0xe3).1] };
    client.txn(B, end).await.unwrap();
    let check = db.coordinator.begin();
    assert!(check.read(A, scan(A)).await.unwrap().is_empty());
    assert!(check.read(B, scan(B)).await.unwrap().is_empty());
    let again = db.coordinator.begin();
    for i in (0..100).chain(0x80..0xe4) {
        let (shard, k) = key(i);
        again.write(shard, k, Some(big_row(i, 4)));
    }
    again.commit().await.unwrap();
}

/// Status rows (`txid_current()` / `txid_status()`): a committed transaction's id reads
/// committed; asking about one not ended fences it, so its commit fails and applies nothing;
/// an id past the retention is not known, and its row is collected by its node.
#[tokio::test]
async fn status_rows_settle_outcomes_and_expire() {
    let db = db();
    let prefix = vec![1, 0x90];
    let with_status = |txn: &Txn| {
        let xid = status::xid_of(txn.id()).unwrap();
        txn.insert_at_commit(B, status::status_key(&prefix, xid), status::COMMITTED.to_vec());
        xid
    };
    let ask = |xid| status::status(&db.coordinator, xid, B, &prefix);

    let committed = db.coordinator.begin();
    let xid = with_status(&committed);
    set(&committed, 1, 5);
    committed.commit().await.unwrap();
    assert_eq!(ask(xid).await.unwrap(), Some(XactStatus::Committed));

    let open = db.coordinator.begin();
    let fenced = with_status(&open);
    assert_ne!(fenced, xid);
    set(&open, 2, 7);
    assert_eq!(ask(fenced).await.unwrap(), Some(XactStatus::Aborted));
    assert!(matches!(open.commit().await, Err(Error::TxnAborted(_))));
    assert_eq!(get(&db.coordinator.begin(), 2).await.unwrap(), None);
    assert_eq!(ask(fenced).await.unwrap(), Some(XactStatus::Aborted));

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    let two_hours = 2 * 3600 * 1_000_000;
    let old = (1 << 56) | (now - two_hours);
    let write = db.coordinator.begin();
    write.write(B, status::status_key(&prefix, old), Some(status::COMMITTED.to_vec()));
    write.commit().await.unwrap();
    assert_eq!(ask(old).await.unwrap(), None, "too old to know");
    assert!(matches!(ask((1 << 56) | (now + two_hours)).await, Err(Error::InvalidInput(_))), "in the future");
    assert_eq!(status::collect(&db.coordinator, B, &prefix).await.unwrap(), 1);
    let rows = db.coordinator.begin().read(B, scan(B)).await.unwrap();
    let keys: Vec<&[u8]> = rows.iter().map(|r| r.key.as_slice()).filter(|k| k.starts_with(&prefix)).collect();
    assert_eq!(keys, [status::status_key(&prefix, xid), status::status_key(&prefix, fenced)]);
}
