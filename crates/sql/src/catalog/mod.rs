//! The catalog stage: which tables exist and how DataFusion and clients see them.
//!
//! - [`cache`]: the node's cache of table, sequence and view definitions, read from and
//!   written to the meta group.
//! - [`provider`]: the `raftable` catalog DataFusion's planner resolves names in (user tables
//!   as `scan::ShardedTable`s, the `raftable.nodes` / `raftable.shards` /
//!   `raftable.index_check` system tables).
//! - [`index_check`]: every secondary index checked against its table's rows.
//! - [`pg_catalog`]: raftable's amendments to datafusion-pg-catalog's `pg_catalog` (stable
//!   table OIDs, primary keys as indexes and constraints) for psql's `\d` and drivers;
//!   [`information_schema`]: DataFusion's, with PostgreSQL's types, defaults and view texts.
//!
//! Below it: `scan` (the table providers' reads), `table` (what a definition holds).

mod cache;
mod index_check;
pub(crate) mod information_schema;
pub(crate) mod pg_catalog;
mod provider;

pub(crate) use cache::{Catalog, LEASE, REFRESH};
pub(crate) use provider::{RaftableCatalog, CATALOG, PUBLIC};
