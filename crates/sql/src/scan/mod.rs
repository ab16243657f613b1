//! The scan stage: how DataFusion reads a table from its shards.
//!
//! - [`table`]: `ShardedTable`, a table as DataFusion sees it (a `TableProvider`), which
//!   accepts primary-key predicates for pushdown.
//! - [`keys`]: `keys::key_scan`, those predicates turned into what to read (point keys or a key
//!   range per bucket).
//! - [`exec`]: `ShardScanExec`, the execution plan reading one shard per partition, page by
//!   page, decoded by `encoding::RowDecoder`, all through the statement's [`Snapshot`] when it
//!   has one.
//! - [`snapshot`]: `Snapshot`, a statement's reads through its transaction.
//!
//! Projection and LIMIT are pushed down too. `EXPLAIN` shows the shards and key ranges read.

mod exec;
mod keys;
mod snapshot;
mod table;

pub use snapshot::Snapshot;
pub(crate) use table::computed_default;
pub use table::{Current, ShardedTable};
