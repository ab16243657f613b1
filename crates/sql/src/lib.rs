//! The SQL layer: from a parsed statement to shard reads and writes, through DataFusion.
//!
//! A query's way down, naming the function at each step:
//! 1. `server::pgwire` hands the SQL text to [`Session::parse`] (sqlparser, PostgreSQL
//!    dialect, the copy DataFusion re-exports) and each statement to [`Session::prepare`].
//! 2. `prepare` matches on the `Statement`: a query is planned by DataFusion
//!    (`SessionState::statement_to_plan`), resolving tables through
//!    [`provider::RaftableCatalog`] → [`catalog::Catalog`] (definitions in the meta group);
//!    DDL goes to [`ddl`]; INSERT / UPDATE / DELETE are planned as DataFusion reads plus a
//!    write step in [`dml`].
//! 3. [`Session::execute`] binds `$n` values and runs the plan. Scans reach
//!    [`scan::ShardedTable::scan`], which turns primary-key predicates into point reads or key
//!    ranges ([`scan::key_scan`]) and returns a [`scan::ShardScanExec`] with one partition per
//!    shard, each streaming pages of rows read with `ShardClient::read` and decoded by
//!    [`encoding::RowDecoder`].
//! 4. Writes encode rows ([`encoding`]: key = table ‖ bucket ‖ memcomparable primary key) and
//!    send one atomic `ShardWrite` per shard through [`Cluster`] (the `ShardClient` the
//!    `server` crate implements over the cluster's router).
//!
//! Prepared point statements (a SELECT by the full primary key, a single-row INSERT of
//! parameters) skip DataFusion after prepare: [`point`] binds, encodes the key and calls the
//! shard directly.
//!
//! Results travel back up as Arrow record batches in an [`Output`], their columns named and
//! typed as PostgreSQL would ([`columns`]), which `server::pgwire` encodes as DataRows.

pub mod catalog;
mod cluster;
mod columns;
pub mod ddl;
pub mod dml;
pub mod encoding;
mod engine;
pub mod error;
mod pg_catalog;
pub mod point;
pub mod provider;
pub mod scan;
mod session;
pub mod types;

pub use cluster::{Cluster, NodeStatus, ShardStatus};
pub use engine::{Engine, SqlConfig};
pub use pg_catalog::origin as column_origin;
pub use session::{Output, Prepared, Session};
