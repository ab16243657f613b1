//! Transactions over shards: the coordinator side of docs/transactions.md. A [`Txn`] reads
//! every shard at one snapshot and buffers its writes on the gateway node; at commit it
//! validates what it read and applies what it wrote, atomically across shards (1PC on one
//! shard, else 2PC with a record on the anchor shard). [`settle`] is what any request that met
//! a prepared transaction's lock does about it; [`status`] answers
//! whether a transaction committed, by its id (`txid_status`).
//!
//! Flow: `sql` (sessions) → this crate → `raftable_common::ShardClient` (`cluster::Router`, or
//! `storage::LocalShards` in tests) → the shards' leaders, which stamp and replicate the
//! commands, and `storage::txn`, which applies them.

mod buffer;
mod coordinator;
pub mod settle;
pub mod status;

pub use buffer::SPILL_BYTES;
pub use coordinator::{Coordinator, Savepoint, Txn, CHUNK_BYTES};
