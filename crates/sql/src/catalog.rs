//! The catalog: table definitions, kept as rows of the meta group (shard 0) under
//! `0x00 't' name`, so every node reads the same definitions and a DDL statement is one
//! replicated write.
//!
//! Each node caches the definitions ([`Catalog`]) under a lease: the cache is refreshed in the
//! background every [`REFRESH`], and a cache older than [`LEASE`] is not used (a lookup then
//! re-reads the meta group first). A lookup that misses re-reads at once, so a new table is
//! visible everywhere at the next statement; DROP TABLE waits out the lease after removing a
//! definition, so once it returns no node still uses the dropped table.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result, ShardId, ShardRead, ShardWrite, WriteOp, META_SHARD};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::types::SqlType;

/// How often each node re-reads the catalog in the background.
pub const REFRESH: Duration = Duration::from_millis(200);

/// How long a cached catalog may be used after it was read.
pub const LEASE: Duration = Duration::from_millis(600);

/// Name of the hidden row id column of a table declared without a primary key.
pub const ROWID: &str = "rowid";

/// One column of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// A constant default, already coerced to the column's type, as JSON-encoded text of the
    /// value (`None`: NULL).
    pub default: Option<String>,
    /// The generated row id of a table without a primary key: not shown by `SELECT *`.
    pub hidden: bool,
}

/// A table definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes of the primary key columns, in key order.
    pub pk: Vec<usize>,
    /// Number of hash buckets = shards.
    pub buckets: u16,
    /// Shard of each bucket.
    pub shards: Vec<ShardId>,
}

impl TableDef {
    /// The schema of every column, hidden ones included.
    pub fn full_schema(&self) -> Schema {
        Schema::new(self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable)).collect::<Vec<_>>())
    }

    /// The schema SQL sees: visible columns only.
    pub fn visible_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| !c.hidden)
                .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Indexes (into `columns`) of the visible columns.
    pub fn visible(&self) -> Vec<usize> {
        self.columns.iter().enumerate().filter(|(_, c)| !c.hidden).map(|(i, _)| i).collect()
    }

    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c.name == name).ok_or_else(|| {
            Error::UndefinedColumn(format!("column \"{name}\" of relation \"{}\" does not exist", self.name))
        })
    }

    /// The default value of column `i` as a scalar of its type.
    pub fn default_value(&self, i: usize) -> Result<ScalarValue> {
        let col = &self.columns[i];
        match &col.default {
            None => ScalarValue::try_from(&col.ty.arrow()).map_err(crate::error::from_datafusion),
            Some(text) => crate::types::coerce_scalar(&col.ty, &col.name, &ScalarValue::Utf8(Some(text.clone()))),
        }
    }

    pub fn has_rowid(&self) -> bool {
        self.pk.len() == 1 && self.columns[self.pk[0]].hidden
    }
}

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
        let value = serde_json::to_vec(&def).map_err(|e| Error::Internal(e.to_string()))?;
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

    /// Removes a definition (its rows are deleted by the caller first).
    pub async fn remove(&self, name: &str) -> Result<()> {
        let op = WriteOp::Delete { key: table_key(name) };
        self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await?;
        self.tables.write().expect("catalog lock").remove(name);
        Ok(())
    }
}
