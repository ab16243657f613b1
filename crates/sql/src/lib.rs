//! The SQL layer: from SQL text to shard reads and writes, through DataFusion.
//!
//! A statement's way down, by stage (each a module; imports point down this list only):
//! 1. [`session`]: `server::pgwire` hands the text to [`Session::parse`], which calls
//!    `ast::parse` (sqlparser, PostgreSQL dialect; catalog queries through
//!    datafusion-pg-catalog's parser and `ast::rewrite::catalog_query`). The session keeps the
//!    connection's state (SET / SHOW, transaction status, notices) and runs those commands
//!    itself (`txid_current()` / `txid_status()` with [`xact`]'s status rows); everything
//!    else goes down.
//! 2. `plan`: [`Session::prepare`] calls `plan::Planner::prepare`, which matches on the
//!    [`Stmt`] once: `plan::query` (DataFusion's `statement_to_plan`, tables resolved
//!    through `catalog::RaftableCatalog`; `plan::point` for a prepared primary-key lookup),
//!    `plan::insert`, `plan::modify` (UPDATE / DELETE as a DataFusion plan built from the AST,
//!    reading every column of the matching rows), `plan::returning`; parameter types in
//!    `plan::params`. The result is a [`Prepared`].
//! 3. `exec`: [`Session::execute`] calls `exec::Executor::execute`, which binds the `$n` values
//!    and runs the plan: queries stream from DataFusion, writes go through `exec::write`
//!    (INSERT) and `exec::modify` (UPDATE / DELETE, re-run for shards that lost a race), each
//!    checking the table's CHECK constraints (`exec::checks`) and keeping its secondary
//!    indexes' entries (`exec::indexes`); DDL through `exec::ddl`, `exec::index_ddl` (online
//!    CREATE / DROP INDEX and the backfill) and `exec::sequences`, the fast paths through
//!    `exec::point`; commits through `exec::commit` (the schema-version check first).
//! 4. `catalog`: table and sequence definitions cached from the meta group
//!    (`catalog::Catalog`), the DataFusion catalog providers, the `pg_catalog` overlay.
//! 5. `scan`: a table as DataFusion reads it: `scan::ShardedTable` (a `TableProvider`), its
//!    primary-key pushdown (`scan::key_scan`), else the best index's (`scan::keys::index_scan`),
//!    and `ShardScanExec`, one partition per shard read, pages of rows (or of index entries,
//!    then their rows) read with `Cluster::read`.
//! 6. below them all: `sequence` (the values a node takes from a sequence's counter in the
//!    meta group, hands out to `nextval`, and a session's `currval`), `encoding` (key = table
//!    ‖ bucket ‖ memcomparable primary key; value = every column; index entries), `table`
//!    (what a definition holds: columns, defaults, CHECK constraints, indexes, its version;
//!    sequences), `types` (column types and
//!    PostgreSQL's coercions), `datetime` (PostgreSQL's date/time text: input forms,
//!    `to_char` patterns), `jsonb` (jsonb values: PostgreSQL's text of them, navigation,
//!    containment), `columns` (result columns named and typed as PostgreSQL
//!    does), `error` (DataFusion's errors as raftable's), and [`Cluster`], the shards as the
//!    `server` crate gives them (over `cluster::Router`; [`local`] over one unreplicated
//!    RocksDB for tests).
//!
//! Results travel back up as Arrow record batches in an [`Output`], which `server::pgwire`
//! encodes as DataRows.

mod ast;
mod catalog;
mod cluster;
mod columns;
mod datetime;
mod encoding;
mod engine;
mod error;
mod exec;
mod jsonb;
#[cfg(any(test, feature = "local"))]
pub mod local;
mod offload;
mod plan;
mod scan;
mod sequence;
mod session;
mod settings;
mod table;
mod types;
mod xact;

pub use ast::limits::THREAD_STACK_BYTES;
pub use ast::Stmt;
pub use cluster::{Cluster, NodeStatus, ShardStatus};
pub use columns::{origin as column_origin, vector_type};
pub use engine::{Engine, SqlConfig};
pub use error::from_datafusion;
pub use exec::Output;
pub use plan::Prepared;
pub use session::{Session, TransactionState};
pub use types::bytea_from_text;
