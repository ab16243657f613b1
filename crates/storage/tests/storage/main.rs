//! Storage integration tests: openraft's own storage conformance suite against the RocksDB
//! log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftable_common::KeyRange;
use raftable_storage::{LogStore, Rocks, StateMachine, TypeConfig};

/// Builds a fresh store (own temp dir) per conformance test; the guard keeps the dir alive.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let rocks = Rocks::open(dir.path()).expect("open rocks");
        let sm =
            StateMachine::open(rocks.clone(), 3, KeyRange::new(vec![1], vec![2])).await.expect("open state machine");
        Ok((dir, LogStore::new(rocks, 3), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage conformance suite");
}

/// A reopened state machine (node restart) reports the applied log id and membership it had:
/// openraft's suite never reopens a store, and a wrong answer here makes a restarted node
/// purge its log.
#[tokio::test]
async fn state_machine_survives_reopen() {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
    use raftable_common::{ShardCommand, ShardWrite, Ts, WriteOp};
    use raftable_storage::NodeInfo;

    let dir = tempfile::tempdir().unwrap();
    let range = KeyRange::new(vec![1], vec![2]);
    let log_id = |index| LogId::new(CommittedLeaderId::new(2, 1), index);
    {
        let rocks = Rocks::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(rocks.clone(), 7, range.clone()).await.unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        let nodes = BTreeMap::from([(1, NodeInfo::default())]);
        let membership = Membership::new(vec![BTreeSet::from([1])], nodes);
        let put = WriteOp::Put { key: vec![1, 5], value: b"x".to_vec() };
        let entries = vec![
            Entry::<TypeConfig> { log_id: log_id(1), payload: EntryPayload::Membership(membership) },
            Entry::<TypeConfig> {
                log_id: log_id(2),
                payload: EntryPayload::Normal(ShardCommand::Stamped { ts: Ts(9), write: ShardWrite::new(vec![put]) }),
            },
        ];
        sm.apply(entries).await.unwrap();
        rocks.close();
    }
    let rocks = Rocks::open(dir.path()).unwrap();
    assert_eq!(StateMachine::stored_range(&rocks, 7).unwrap(), Some(range.clone()));
    let mut sm = StateMachine::open(rocks, 7, range).await.unwrap();
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2)));
    assert_eq!(membership.log_id(), &Some(log_id(1)));
    assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![1]);
}

/// A garbage-collection command raises the shard's threshold: reads at a snapshot below it are
/// refused (their versions may be gone), at or above it served; the threshold survives a
/// restart.
#[tokio::test]
async fn reads_below_the_gc_threshold_are_refused() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use raftable_common::{Error, ShardCommand, ShardRead, ShardWrite, Ts, WriteOp};

    let dir = tempfile::tempdir().unwrap();
    let range = KeyRange::new(vec![1], vec![2]);
    let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let put = |v: &[u8]| WriteOp::Put { key: vec![1, 5], value: v.to_vec() };
    let get = ShardRead::Get { key: vec![1, 5] };
    {
        let rocks = Rocks::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(rocks.clone(), 7, range.clone()).await.unwrap();
        let stamped = |ts, v| ShardCommand::Stamped { ts: Ts(ts), write: ShardWrite::new(vec![put(v)]) };
        let entries = vec![
            Entry::<TypeConfig> { log_id: log_id(1), payload: EntryPayload::Normal(stamped(10, b"old")) },
            Entry::<TypeConfig> { log_id: log_id(2), payload: EntryPayload::Normal(stamped(20, b"new")) },
        ];
        sm.apply(entries).await.unwrap();
        assert_eq!(raftable_storage::read_at(&rocks, 7, &range, &get, Ts(15)).unwrap()[0].value, b"old");
        let gc = ShardCommand::Gc { threshold: Ts(25), versions: Vec::new(), records: Vec::new() };
        sm.apply(vec![Entry::<TypeConfig> { log_id: log_id(3), payload: EntryPayload::Normal(gc) }]).await.unwrap();
        rocks.close();
    }
    let rocks = Rocks::open(dir.path()).unwrap();
    let _sm = StateMachine::open(rocks.clone(), 7, range.clone()).await.unwrap();
    let below = raftable_storage::read_at(&rocks, 7, &range, &get, Ts(15));
    assert!(matches!(below, Err(Error::SnapshotTooOld(_))), "{below:?}");
    assert_eq!(raftable_storage::read_at(&rocks, 7, &range, &get, Ts(25)).unwrap()[0].value, b"new");
}

/// Replicas group the same log entries into apply calls differently (a leader applies many at
/// once, a follower catching up others): the outcome must not depend on it, garbage collection
/// included. A write after a `Gc` in the same call once read RocksDB without that call's
/// earlier writes (a long chaos run caught lost increments and diverged replicas).
#[tokio::test]
async fn apply_does_not_depend_on_how_entries_are_grouped() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use raftable_common::{
        Decision, Expect, ShardCommand, ShardWrite, Span, Ts, TxnId, TxnMeta, TxnOp, TxnWrite, WriteOp,
    };

    let range = KeyRange::new(vec![1], vec![2]);
    let key = vec![1, 5];
    let (locked, other) = (vec![1, 6], vec![1, 7]);
    let prepared = TxnMeta { id: TxnId(9), anchor: 7, anchor_key: locked.clone() };
    let one_phase = TxnOp::Commit {
        txn: TxnId(10),
        read_ts: Ts(45),
        reads: vec![Span::point(&key)],
        writes: vec![TxnWrite::put(other.clone(), b"o".to_vec())],
    };
    let stamped = |ts, op: WriteOp| ShardCommand::Stamped { ts: Ts(ts), write: ShardWrite::new(vec![op]) };
    let put = |v: &[u8]| WriteOp::Put { key: key.clone(), value: v.to_vec() };
    let cas = |version, v: &[u8]| WriteOp::CompareAndPut {
        key: key.clone(),
        expect: Expect::Version(version),
        value: v.to_vec(),
    };
    let old_version = raftable_storage::mvcc::version_key(&key, Ts(10));
    let commands = [
        stamped(10, put(b"1")),
        stamped(20, put(b"2")),
        ShardCommand::Gc { threshold: Ts(25), versions: vec![old_version], records: Vec::new() },
        stamped(30, cas(20, b"3")),
        stamped(40, cas(30, b"4")),
        // Transaction commands read what earlier entries of the call left pending, or (read
        // spans) RocksDB after it is written.
        ShardCommand::Txn {
            ts: Ts(50),
            op: TxnOp::Prepare {
                txn: prepared.clone(),
                anchor: true,
                read_ts: Ts(45),
                reads: Vec::new(),
                writes: vec![TxnWrite::put(locked.clone(), b"l".to_vec())],
            },
        },
        ShardCommand::Txn { ts: Ts(55), op: one_phase.clone() },
        ShardCommand::Txn { ts: Ts(56), op: one_phase },
        ShardCommand::Txn {
            ts: Ts(60),
            op: TxnOp::End { txn: prepared, decision: Decision::Commit(Ts(60)), keys: vec![locked.clone()] },
        },
        stamped(61, put(b"5")),
    ];
    let entries = || {
        commands.iter().enumerate().map(|(i, c)| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
            payload: EntryPayload::Normal(c.clone()),
        })
    };
    let mut outcomes = Vec::new();
    for grouped in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let rocks = Rocks::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(rocks.clone(), 7, range.clone()).await.unwrap();
        let mut results = Vec::new();
        if grouped {
            results = sm.apply(entries().collect::<Vec<_>>()).await.unwrap();
        } else {
            for entry in entries() {
                results.extend(sm.apply(vec![entry]).await.unwrap());
            }
        }
        assert!(results.iter().all(|r| r.is_ok()), "grouped {grouped}: {results:?}");
        outcomes.push((results, raftable_storage::digest(&rocks, &range).unwrap()));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}
