//! The storage layer: one RocksDB per node holding the rows of every shard replica on the node,
//! the Raft log and the Raft state of every group. The only crate that names `rocksdb`.
//!
//! Flow: `cluster` hands openraft a [`LogStore`] and a [`StateMachine`] per group. openraft
//! appends entries through [`LogStore`] (written at once, made durable by the [`Rocks`] group
//! commit thread, which syncs the WAL once for all groups' pending appends), and applies
//! committed entries through [`StateMachine::apply`], which runs `shard::apply_write` and writes
//! the rows plus the applied log id in one write batch. Reads of a shard go to `shard::read`.
//! Table shards keep every version of a row at its commit timestamp ([`mvcc`]); the meta shard
//! keeps one version per key (docs/transactions.md).

mod keys;
mod local;
mod log_store;
pub mod mvcc;
mod pending;
mod rocks;
mod shard;
mod snapshot;
mod state_machine;
mod txn;
mod types;

pub use local::LocalShards;
pub use log_store::LogStore;
pub use rocks::{Rocks, SyncFault, SyncStats};
pub use shard::{digest, read, read_at, Digest};
pub use state_machine::StateMachine;
pub use txn::expired_records;
pub use types::{Entry, NodeInfo, Runtime, TypeConfig, WriteResult, RPC_TIMEOUT_FLOOR};
