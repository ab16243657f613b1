//! [`Catalog`]: the node's cache of table definitions ([`TableDef`]), kept as rows of the
//! meta group (shard 0) under `0x00 't' name`, so every node reads the same definitions and a
//! DDL statement is one replicated write.
//!
//! Each node caches the definitions ([`Catalog`]) under a lease: the cache is refreshed in the
//! background every [`REFRESH`], and a cache older than [`LEASE`] is not used (a lookup then
//! re-reads the meta group first). A lookup that misses re-reads at once, so a new table is
//! visible everywhere at the next statement; DROP TABLE waits out the lease after removing a
//! definition, so once it returns no node still uses the dropped table.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raftable_common::{Error, Expect, Result, ShardRead, ShardWrite, WriteOp, META_SHARD};

use crate::cluster::Cluster;
use crate::table::TableDef;

/// How often each node re-reads the catalog in the background.
pub const REFRESH: Duration = Duration::from_millis(200);

/// How long a cached catalog may be used after it was read.
pub const LEASE: Duration = Duration::from_millis(600);

fn table_key(name: &str) -> Vec<u8> {
    let mut k = vec![0x00, b't'];
    k.extend_from_slice(name.as_bytes());
    k
}

/// The node's cache of table definitions.
pub struct Catalog {
    cluster: Arc<dyn Cluster>,
    tables: RwLock<BTreeMap<String, Arc<TableDef>>>,
    /// When the read behind `tables` started (None: never read).
    read_at: RwLock<Option<Instant>>,
}

impl Catalog {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self { cluster, tables: RwLock::default(), read_at: RwLock::default() }
    }

    /// The definition, from the cache if its lease holds and it has the table, else re-read.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<TableDef>>> {
        let fresh = self.read_at.read().expect("catalog lock").is_some_and(|t| t.elapsed() < LEASE);
        if fresh {
            if let Some(t) = self.cached(name) {
                return Ok(Some(t));
            }
        }
        self.refresh().await?;
        Ok(self.cached(name))
    }

    pub fn cached(&self, name: &str) -> Option<Arc<TableDef>> {
        self.tables.read().expect("catalog lock").get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.tables.read().expect("catalog lock").keys().cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<TableDef>> {
        self.tables.read().expect("catalog lock").values().cloned().collect()
    }

    /// Re-reads every definition from the meta group.
    pub async fn refresh(&self) -> Result<()> {
        let started = Instant::now();
        let read = ShardRead::Scan { start: table_key(""), end: vec![0x00, b't' + 1], limit: None, reverse: false };
        let rows = self.cluster.read(META_SHARD, read).await?;
        let mut tables = BTreeMap::new();
        for row in rows {
            let def: TableDef =
                serde_json::from_slice(&row.value).map_err(|e| Error::InvalidData(format!("table definition: {e}")))?;
            tables.insert(def.name.clone(), Arc::new(def));
        }
        // Install only a read newer than the installed one (a slow older refresh must not
        // replace a newer map and then pass as fresh).
        let mut read_at = self.read_at.write().expect("catalog lock");
        if read_at.is_none_or(|t| t <= started) {
            *self.tables.write().expect("catalog lock") = tables;
            *read_at = Some(started);
        }
        Ok(())
    }

    /// Stores a new definition; fails with 42P07 if the name is taken.
    pub async fn insert(&self, def: TableDef) -> Result<()> {
        let value = serde_json::to_vec(&def).map_err(Error::internal)?;
        let op = WriteOp::PutIfAbsent { key: table_key(&def.name), value };
        match self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => {}
            Err(Error::DuplicateKey { .. }) => {
                return Err(Error::DuplicateTable(format!("relation \"{}\" already exists", def.name)))
            }
            Err(e) => return Err(e),
        }
        self.tables.write().expect("catalog lock").insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    /// Replaces the definition `old` with `new` (same name): fails with 40001 if the stored
    /// definition is no longer `old` (another DDL statement changed it), 42P01 if it is gone.
    pub async fn replace(&self, old: &TableDef, new: TableDef) -> Result<()> {
        let key = table_key(&old.name);
        let rows = self.cluster.read(META_SHARD, ShardRead::Get { key: key.clone() }).await?;
        let Some(row) = rows.first() else {
            return Err(Error::UndefinedTable(format!("relation \"{}\" does not exist", old.name)));
        };
        let stored: serde_json::Value =
            serde_json::from_slice(&row.value).map_err(|e| Error::InvalidData(format!("table definition: {e}")))?;
        if stored != serde_json::to_value(old).map_err(Error::internal)? {
            return Err(Error::TxnConflict(format!("table \"{}\" was changed concurrently", old.name)));
        }
        let value = serde_json::to_vec(&new).map_err(Error::internal)?;
        let op = WriteOp::CompareAndPut { key, expect: Expect::Version(row.version), value };
        match self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => {}
            Err(Error::ConditionFailed { .. }) => {
                return Err(Error::TxnConflict(format!("table \"{}\" was changed concurrently", old.name)))
            }
            Err(e) => return Err(e),
        }
        self.tables.write().expect("catalog lock").insert(new.name.clone(), Arc::new(new));
        Ok(())
    }

    /// Removes a definition (its rows are deleted by the caller first).
    pub async fn remove(&self, name: &str) -> Result<()> {
        let op = WriteOp::Delete { key: table_key(name) };
        self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await?;
        self.tables.write().expect("catalog lock").remove(name);
        Ok(())
    }
}
