//! [`Engine`]: the SQL layer of one node, shared by all its client sessions: the cluster
//! handle, the transaction coordinator, the catalog cache, the row-id generator, the sequence
//! values the node took, and the catalog-query parser. Each
//! connection gets a [`Session`](crate::Session) from `Engine::session`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use raftable_common::ShardClient;
use raftable_txn::Coordinator;

use crate::catalog::{Catalog, REFRESH};
use crate::cluster::Cluster;
use crate::exec::write::RowIds;
use crate::sequence::Sequences;
use crate::xact::{XactShards, COLLECT_INTERVAL};

/// SQL settings of a node: the `sql` part of the node's configuration, and the one place their
/// defaults are defined (the command line shows them from here).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SqlConfig {
    /// Shards of a table created without `WITH (shards = N)`.
    pub default_shards: u16,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self { default_shards: 4 }
    }
}

pub struct Engine {
    pub(crate) cluster: Arc<dyn Cluster>,
    /// Starts the transactions of every statement and block run on this node.
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) config: SqlConfig,
    pub(crate) rowids: RowIds,
    pub(crate) next_session: AtomicU64,
    /// sqlparser plus the rewrites of datafusion-pg-catalog (built once: it tokenizes its
    /// patterns).
    pub(crate) parser: PostgresCompatibilityParser,
    /// Where transactions' status rows live (`txid_current()`, `txid_status()`).
    pub(crate) xacts: XactShards,
    /// The sequence values this node took and has not handed out yet.
    pub(crate) sequences: Arc<Sequences>,
}

impl Engine {
    pub fn new(cluster: Arc<dyn Cluster>, config: SqlConfig) -> Arc<Self> {
        let catalog = Arc::new(Catalog::new(cluster.clone()));
        let client: Arc<dyn ShardClient> = cluster.clone();
        Arc::new(Self {
            rowids: RowIds::new(cluster.node_id()),
            coordinator: Coordinator::new(client, cluster.node_id()),
            cluster,
            catalog,
            config,
            next_session: AtomicU64::new(1),
            parser: PostgresCompatibilityParser::new(),
            xacts: XactShards::default(),
            sequences: Arc::default(),
        })
    }

    /// The node's SQL housekeeping, until the engine is dropped elsewhere: keeps the catalog
    /// cache fresh (every [`REFRESH`]) and deletes the node's expired transaction status rows
    /// (every `xact::COLLECT_INTERVAL`).
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut collected = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(engine) = weak.upgrade() else { return };
                if let Err(e) = engine.catalog.refresh().await {
                    tracing::debug!(error = %e, "catalog refresh failed");
                }
                if collected.elapsed() >= COLLECT_INTERVAL {
                    // Apart from the refresh, which must not wait for it.
                    collected = tokio::time::Instant::now();
                    tokio::spawn(async move {
                        match engine.xacts.collect(engine.cluster.as_ref(), &engine.coordinator).await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(rows = n, "expired transaction status rows deleted"),
                            Err(e) => tracing::debug!(error = %e, "transaction status collection failed"),
                        }
                    });
                }
            }
        })
    }
}
