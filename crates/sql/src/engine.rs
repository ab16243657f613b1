//! [`Engine`]: the SQL layer of one node, shared by all its client sessions: the cluster
//! handle, the catalog cache and the row-id generator. Each connection gets a
//! [`Session`](crate::Session) from [`Engine::session`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::session::Session;

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
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) config: SqlConfig,
    last_rowid: AtomicU64,
    next_session: AtomicU64,
    /// sqlparser plus the rewrites of datafusion-pg-catalog (built once: it tokenizes its
    /// patterns).
    pub(crate) parser: datafusion_pg_catalog::sql::PostgresCompatibilityParser,
}

impl Engine {
    pub fn new(cluster: Arc<dyn Cluster>, config: SqlConfig) -> Arc<Self> {
        let catalog = Arc::new(Catalog::new(cluster.clone()));
        Arc::new(Self {
            cluster,
            catalog,
            config,
            last_rowid: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
            parser: datafusion_pg_catalog::sql::PostgresCompatibilityParser::new(),
        })
    }

    /// A new session for one client connection.
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone(), self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Keeps the catalog cache fresh (every `period`) until the engine is dropped elsewhere.
    pub fn spawn_refresh(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(engine) = weak.upgrade() else { return };
                if let Err(e) = engine.catalog.refresh().await {
                    tracing::debug!(error = %e, "catalog refresh failed");
                }
            }
        })
    }

    /// A cluster-unique row id for tables without a primary key: microseconds since the epoch
    /// (strictly increasing on this node) shifted left, with the node id in the low 8 bits.
    pub(crate) fn next_rowid(&self) -> i64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let mut last = self.last_rowid.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_rowid.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return ((next << 8) | (self.cluster.node_id() & 0xff)) as i64,
                Err(actual) => last = actual,
            }
        }
    }
}
