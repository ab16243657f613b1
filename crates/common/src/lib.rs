//! Shared vocabulary of every raftable layer: ids, the one [`Error`] type, the shard commands
//! ([`ShardRead`], [`ShardWrite`]) and the [`ShardClient`] trait through which the SQL layer
//! reaches the cluster without depending on it.
//!
//! Nothing here does I/O. `storage` applies the commands to RocksDB, `cluster` replicates and
//! routes them, `server` maps [`Error`] to SQLSTATE codes.

mod client;
mod command;
mod error;
mod ids;
pub mod pgtext;
mod ts;
mod txn;

pub use client::ShardClient;
pub use command::{Expect, KeyRange, Row, ShardCommand, ShardRead, ShardWrite, WriteOp, WriteOutcome, META_RANGE_END};
pub use error::{Error, Result};
pub use ids::{NodeId, ShardId, META_SHARD};
pub use ts::Ts;
pub use txn::{Decision, Span, TxnId, TxnMeta, TxnOp, TxnStatus, TxnWrite, RESOLVE_ALL_MAX};
