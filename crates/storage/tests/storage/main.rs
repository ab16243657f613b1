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
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}
