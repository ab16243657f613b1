//! [`Catalog`]: the node's cache of table, sequence and view definitions ([`TableDef`],
//! [`SequenceDef`], [`ViewDef`]), kept as rows of the meta group (shard 0) under
//! `0x00 't' name`, `0x00 'q' name` and `0x00 'r' name`, so every node reads the same
//! definitions and a DDL statement is one replicated write. They share one namespace, as
//! PostgreSQL's relations do.
//!
//! Each node caches the definitions ([`Catalog`]) under a lease: the cache is refreshed in the
//! background every [`REFRESH`], and a cache older than [`LEASE`] is not used (a lookup then
//! re-reads the meta group first). A lookup that misses re-reads at once, so a new table is
//! visible everywhere at the next statement; DROP TABLE waits out the lease after removing a
//! definition, so once it returns no node still uses the dropped table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raftable_common::{Error, Expect, Result, ShardRead, ShardWrite, WriteOp, META_SHARD};

use crate::cluster::Cluster;
use crate::table::{split_name, SchemaDef, SequenceDef, TableDef, ViewDef, PUBLIC};

/// How often each node re-reads the catalog in the background.
pub const REFRESH: Duration = Duration::from_millis(200);

/// How long a cached catalog may be used after it was read.
pub const LEASE: Duration = Duration::from_millis(600);

const SCHEMA: u8 = b'p';
const TABLE: u8 = b't';
const SEQUENCE: u8 = b'q';
const VIEW: u8 = b'r';

fn table_key(name: &str) -> Vec<u8> {
    definition_key(TABLE, name)
}

fn definition_key(kind: u8, name: &str) -> Vec<u8> {
    let mut k = vec![0x00, kind];
    k.extend_from_slice(name.as_bytes());
    k
}

/// The node's cache of table definitions.
pub struct Catalog {
    cluster: Arc<dyn Cluster>,
    tables: RwLock<BTreeMap<String, Arc<TableDef>>>,
    sequences: RwLock<BTreeMap<String, Arc<SequenceDef>>>,
    views: RwLock<BTreeMap<String, Arc<ViewDef>>>,
    schemas: RwLock<BTreeMap<String, Arc<SchemaDef>>>,
    /// When the read behind `tables` started (None: never read).
    read_at: RwLock<Option<Instant>>,
    /// Counts the changes this node made to the cache (`Catalog::changed`): a refresh during
    /// which one happened may have read the meta group before it, and is not installed.
    local_changes: AtomicU64,
}

impl Catalog {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self {
            cluster,
            tables: RwLock::default(),
            sequences: RwLock::default(),
            views: RwLock::default(),
            schemas: RwLock::default(),
            read_at: RwLock::default(),
            local_changes: AtomicU64::new(0),
        }
    }

    /// Applies to the cache a change this node stored: under the lock a refresh installs
    /// under, and counted, so that a refresh which began before it does not then replace it
    /// with what it read.
    fn changed(&self, change: impl FnOnce(&Self)) {
        let _installing = self.read_at.write().expect("catalog lock");
        self.local_changes.fetch_add(1, Ordering::SeqCst);
        change(self);
    }

    /// The table definition, from the cache if its lease holds and it has the table, else
    /// re-read.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<TableDef>>> {
        self.lookup(|c| c.cached(name)).await
    }

    /// What `cached` finds in the cache if its lease holds, else (or if it finds nothing) in
    /// the cache re-read.
    async fn lookup<T>(&self, cached: impl Fn(&Self) -> Option<T>) -> Result<Option<T>> {
        let fresh = self.read_at.read().expect("catalog lock").is_some_and(|t| t.elapsed() < LEASE);
        if fresh {
            if let Some(found) = cached(self) {
                return Ok(Some(found));
            }
        }
        self.refresh().await?;
        Ok(cached(self))
    }

    /// The table definition if the cache's lease holds (None: not known now, or no table).
    pub fn leased(&self, name: &str) -> Option<Arc<TableDef>> {
        let fresh = self.read_at.read().expect("catalog lock").is_some_and(|t| t.elapsed() < LEASE);
        fresh.then(|| self.cached(name)).flatten()
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

    /// The sequence definition, from the cache if its lease holds and it has it, else re-read.
    pub async fn sequence(&self, name: &str) -> Result<Option<Arc<SequenceDef>>> {
        self.lookup(|c| c.cached_sequence(name)).await
    }

    pub fn cached_sequence(&self, name: &str) -> Option<Arc<SequenceDef>> {
        self.sequences.read().expect("catalog lock").get(name).cloned()
    }

    pub fn sequences(&self) -> Vec<Arc<SequenceDef>> {
        self.sequences.read().expect("catalog lock").values().cloned().collect()
    }

    /// The view definition, from the cache if its lease holds and it has it, else re-read.
    pub async fn view(&self, name: &str) -> Result<Option<Arc<ViewDef>>> {
        self.lookup(|c| c.cached_view(name)).await
    }

    pub fn cached_view(&self, name: &str) -> Option<Arc<ViewDef>> {
        self.views.read().expect("catalog lock").get(name).cloned()
    }

    /// Every view, from a cache whose lease holds.
    pub async fn views(&self) -> Result<BTreeMap<String, Arc<ViewDef>>> {
        let fresh = self.read_at.read().expect("catalog lock").is_some_and(|t| t.elapsed() < LEASE);
        if !fresh {
            self.refresh().await?;
        }
        Ok(self.views.read().expect("catalog lock").clone())
    }

    pub fn cached_views(&self) -> Vec<Arc<ViewDef>> {
        self.views.read().expect("catalog lock").values().cloned().collect()
    }

    /// Schema `name` made by CREATE SCHEMA, from the cache if its lease holds and it has it,
    /// else re-read.
    pub async fn schema(&self, name: &str) -> Result<Option<Arc<SchemaDef>>> {
        self.lookup(|c| c.cached_schema(name)).await
    }

    pub fn cached_schema(&self, name: &str) -> Option<Arc<SchemaDef>> {
        self.schemas.read().expect("catalog lock").get(name).cloned()
    }

    pub fn cached_schemas(&self) -> Vec<Arc<SchemaDef>> {
        self.schemas.read().expect("catalog lock").values().cloned().collect()
    }

    /// 3F000 unless the schema of catalog name `name` exists (a relation about to be made).
    pub async fn check_schema(&self, name: &str) -> Result<()> {
        let (schema, _) = split_name(name);
        if schema == PUBLIC || self.schema(schema).await?.is_some() {
            return Ok(());
        }
        Err(Error::UndefinedSchema(format!("schema \"{schema}\" does not exist")))
    }

    /// Stores a new schema: 42P06 if it exists.
    pub async fn insert_schema(&self, def: SchemaDef) -> Result<()> {
        let value = serde_json::to_vec(&def).map_err(Error::internal)?;
        let op = WriteOp::PutIfAbsent { key: definition_key(SCHEMA, &def.name), value };
        match self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => {}
            Err(Error::DuplicateKey { .. }) => {
                return Err(Error::DuplicateSchema(format!("schema \"{}\" already exists", def.name)))
            }
            Err(e) => return Err(e),
        }
        self.changed(|c| {
            c.schemas.write().expect("catalog lock").insert(def.name.clone(), Arc::new(def));
        });
        Ok(())
    }

    /// Removes a schema's definition (the caller dropped what it held).
    pub async fn remove_schema(&self, name: &str) -> Result<()> {
        self.delete(SCHEMA, name).await?;
        self.changed(|c| {
            c.schemas.write().expect("catalog lock").remove(name);
        });
        Ok(())
    }

    /// Re-reads every definition from the meta group: schemas (`0x00 'p'`), sequences
    /// (`0x00 'q'`), views (`0x00 'r'`) and tables (`0x00 't'`) in one scan.
    pub async fn refresh(&self) -> Result<()> {
        let started = Instant::now();
        let changes = self.local_changes.load(Ordering::SeqCst);
        let read = ShardRead::Scan {
            start: definition_key(SCHEMA, ""),
            end: definition_key(TABLE + 1, ""),
            limit: None,
            reverse: false,
        };
        let rows = self.cluster.read(META_SHARD, read).await?;
        let mut tables = BTreeMap::new();
        let mut sequences = BTreeMap::new();
        let mut views = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        let invalid = |e: serde_json::Error| Error::InvalidData(format!("catalog definition: {e}"));
        for row in rows {
            match row.key.get(1) {
                Some(&TABLE) => {
                    let def: TableDef = serde_json::from_slice(&row.value).map_err(invalid)?;
                    tables.insert(def.name.clone(), Arc::new(def));
                }
                Some(&SEQUENCE) => {
                    let def: SequenceDef = serde_json::from_slice(&row.value).map_err(invalid)?;
                    sequences.insert(def.name.clone(), Arc::new(def));
                }
                Some(&VIEW) => {
                    let def: ViewDef = serde_json::from_slice(&row.value).map_err(invalid)?;
                    views.insert(def.name.clone(), Arc::new(def));
                }
                Some(&SCHEMA) => {
                    let def: SchemaDef = serde_json::from_slice(&row.value).map_err(invalid)?;
                    schemas.insert(def.name.clone(), Arc::new(def));
                }
                _ => {}
            }
        }
        // Install only a read newer than the installed one (a slow older refresh must not
        // replace a newer map and then pass as fresh).
        let mut read_at = self.read_at.write().expect("catalog lock");
        let unchanged = self.local_changes.load(Ordering::SeqCst) == changes;
        if unchanged && read_at.is_none_or(|t| t <= started) {
            *self.tables.write().expect("catalog lock") = tables;
            *self.sequences.write().expect("catalog lock") = sequences;
            *self.views.write().expect("catalog lock") = views;
            *self.schemas.write().expect("catalog lock") = schemas;
            *read_at = Some(started);
        }
        Ok(())
    }

    /// Whether a table, sequence, index or view has this name (42P07 then), as the catalog
    /// reads now (one read, whatever the kind).
    pub async fn taken(&self, name: &str) -> Result<bool> {
        self.refresh().await?;
        Ok(self.cached(name).is_some()
            || self.cached_sequence(name).is_some()
            || self.cached_view(name).is_some()
            || self.all().iter().any(|t| t.index(name).is_some()))
    }

    /// The table with the index `name`, from a cache whose lease holds.
    pub async fn index(&self, name: &str) -> Result<Option<Arc<TableDef>>> {
        let find = |c: &Self| c.all().into_iter().find(|t| t.index(name).is_some());
        self.lookup(find).await
    }

    /// The table with id `id` as a cache whose lease holds has it (None: dropped).
    pub async fn by_id(&self, id: u32) -> Result<Option<Arc<TableDef>>> {
        let fresh = self.read_at.read().expect("catalog lock").is_some_and(|t| t.elapsed() < LEASE);
        if !fresh {
            self.refresh().await?;
        }
        Ok(self.tables.read().expect("catalog lock").values().find(|t| t.id == id).cloned())
    }

    /// Stores a new sequence; fails with 42P07 if the name is taken by a table or sequence.
    pub async fn insert_sequence(&self, def: SequenceDef) -> Result<()> {
        self.put_new(definition_key(SEQUENCE, &def.name), &def.name, &def).await?;
        self.changed(|c| {
            c.sequences.write().expect("catalog lock").insert(def.name.clone(), Arc::new(def));
        });
        Ok(())
    }

    /// Removes a sequence definition (its counter row is the caller's).
    pub async fn remove_sequence(&self, name: &str) -> Result<()> {
        self.delete(SEQUENCE, name).await?;
        self.changed(|c| {
            c.sequences.write().expect("catalog lock").remove(name);
        });
        Ok(())
    }

    /// Deletes the stored definition of kind `kind` named `name`.
    async fn delete(&self, kind: u8, name: &str) -> Result<()> {
        let op = WriteOp::Delete { key: definition_key(kind, name) };
        self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await.map(|_| ())
    }

    /// Writes a new relation's definition under `key`: 42P07 if a relation of any kind has
    /// the name (or the key exists by the time it is written).
    async fn put_new(&self, key: Vec<u8>, name: &str, def: &impl serde::Serialize) -> Result<()> {
        if self.taken(name).await? {
            return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
        }
        let value = serde_json::to_vec(def).map_err(Error::internal)?;
        let op = WriteOp::PutIfAbsent { key, value };
        match self.cluster.write(META_SHARD, ShardWrite::new(vec![op])).await {
            Ok(_) => Ok(()),
            Err(Error::DuplicateKey { .. }) => {
                Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")))
            }
            Err(e) => Err(e),
        }
    }

    /// Stores a new table; fails with 42P07 if the name is taken by a table or sequence.
    pub async fn insert(&self, def: TableDef) -> Result<()> {
        self.put_new(table_key(&def.name), &def.name, &def).await?;
        self.changed(|c| {
            c.tables.write().expect("catalog lock").insert(def.name.clone(), Arc::new(def));
        });
        Ok(())
    }

    /// Replaces the definition `old` with `new` (same name): fails with 40001 if the stored
    /// definition is no longer `old` (another DDL statement changed it), 42P01 if it is gone.
    /// The new definition's version is one above the old one's; returns it as stored.
    pub async fn replace(&self, old: &TableDef, new: TableDef) -> Result<Arc<TableDef>> {
        self.replace_by(old, new, 1).await
    }

    /// [`Catalog::replace`] by a change that writes made with `old` must not survive: the
    /// version goes up by two, so that the transactions which wrote with `old` fail at commit
    /// (`exec::commit` lets a transaction one version behind commit).
    pub async fn replace_past(&self, old: &TableDef, new: TableDef) -> Result<Arc<TableDef>> {
        self.replace_by(old, new, 2).await
    }

    async fn replace_by(&self, old: &TableDef, mut new: TableDef, step: u64) -> Result<Arc<TableDef>> {
        new.version = old.version + step;
        self.compare_and_put(table_key(&old.name), &old.name, old, &new).await?;
        let new = Arc::new(new);
        self.changed(|c| {
            c.tables.write().expect("catalog lock").insert(new.name.clone(), new.clone());
        });
        Ok(new)
    }

    /// Writes `new` under `key` if the definition stored there is still `old`: 42P01 if there
    /// is none, 40001 if it changed (another DDL statement changed it meanwhile).
    async fn compare_and_put(
        &self,
        key: Vec<u8>,
        name: &str,
        old: &impl serde::Serialize,
        new: &impl serde::Serialize,
    ) -> Result<()> {
        let version = self.stored_version(&key, name, old).await?;
        let value = serde_json::to_vec(new).map_err(Error::internal)?;
        let op = WriteOp::CompareAndPut { key, expect: Expect::Version(version), value };
        self.conditional(vec![op], name).await
    }

    /// The version of the row under `key` if it holds `old` (42P01 if none, 40001 if other).
    async fn stored_version(&self, key: &[u8], name: &str, old: &impl serde::Serialize) -> Result<u64> {
        let rows = self.cluster.read(META_SHARD, ShardRead::Get { key: key.to_vec() }).await?;
        let Some(row) = rows.first() else {
            return Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist")));
        };
        let stored: serde_json::Value =
            serde_json::from_slice(&row.value).map_err(|e| Error::InvalidData(format!("definition: {e}")))?;
        if stored != serde_json::to_value(old).map_err(Error::internal)? {
            return Err(Error::TxnConflict(format!("relation \"{name}\" was changed concurrently")));
        }
        Ok(row.version)
    }

    /// One meta-group write whose conditions name relation `name`: a failed condition is 40001.
    async fn conditional(&self, ops: Vec<WriteOp>, name: &str) -> Result<()> {
        match self.cluster.write(META_SHARD, ShardWrite::new(ops)).await {
            Ok(_) => Ok(()),
            Err(Error::ConditionFailed { .. }) => {
                Err(Error::TxnConflict(format!("relation \"{name}\" was changed concurrently")))
            }
            Err(e) => Err(e),
        }
    }

    /// Renames table `old` in one meta-group write (its rows, indexes and keys know it by its
    /// id, not its name): 42P07 if `name` is taken, 40001 if `old` changed meanwhile. The
    /// version goes up by one, as for any change of the definition.
    pub async fn rename(&self, old: &TableDef, name: &str) -> Result<Arc<TableDef>> {
        let taken = || Error::DuplicateTable(format!("relation \"{name}\" already exists"));
        if self.taken(name).await? {
            return Err(taken());
        }
        let key = table_key(&old.name);
        let version = self.stored_version(&key, &old.name, old).await?;
        let new = TableDef { name: name.to_string(), version: old.version + 1, ..old.clone() };
        let encode = |d: &TableDef| serde_json::to_vec(d).map_err(Error::internal);
        let ops = vec![
            WriteOp::CompareAndPut { key: key.clone(), expect: Expect::Version(version), value: encode(old)? },
            WriteOp::Delete { key },
            WriteOp::PutIfAbsent { key: table_key(name), value: encode(&new)? },
        ];
        match self.conditional(ops, &old.name).await {
            Err(Error::DuplicateKey { .. }) => return Err(taken()),
            other => other?,
        }
        let new = Arc::new(new);
        self.changed(|c| {
            let mut tables = c.tables.write().expect("catalog lock");
            tables.remove(&old.name);
            tables.insert(new.name.clone(), new.clone());
        });
        Ok(new)
    }

    /// Renames sequence `old` to `name` and, in the same meta-group write, replaces the tables
    /// whose column defaults call it (`tables`: each stored definition with its replacement,
    /// whose version goes up by one here): 42P07 if `name` is taken, 40001 if the sequence or
    /// a table changed meanwhile. Its counter is kept by id and stays.
    pub async fn rename_sequence(
        &self,
        old: &SequenceDef,
        name: &str,
        tables: Vec<(Arc<TableDef>, TableDef)>,
    ) -> Result<()> {
        let taken = || Error::DuplicateTable(format!("relation \"{name}\" already exists"));
        if self.taken(name).await? {
            return Err(taken());
        }
        let key = definition_key(SEQUENCE, &old.name);
        let version = self.stored_version(&key, &old.name, old).await?;
        let new = SequenceDef { name: name.to_string(), ..old.clone() };
        let mut ops = vec![
            WriteOp::CompareAndPut { key: key.clone(), expect: Expect::Version(version), value: encoded(old)? },
            WriteOp::Delete { key },
            WriteOp::PutIfAbsent { key: definition_key(SEQUENCE, name), value: encoded(&new)? },
        ];
        let mut replaced = Vec::with_capacity(tables.len());
        for (stored, mut next) in tables {
            next.version = stored.version + 1;
            let key = table_key(&stored.name);
            let version = self.stored_version(&key, &stored.name, stored.as_ref()).await?;
            ops.push(WriteOp::CompareAndPut { key, expect: Expect::Version(version), value: encoded(&next)? });
            replaced.push(Arc::new(next));
        }
        match self.conditional(ops, &old.name).await {
            Err(Error::DuplicateKey { .. }) => return Err(taken()),
            other => other?,
        }
        self.changed(|c| {
            let mut sequences = c.sequences.write().expect("catalog lock");
            sequences.remove(&old.name);
            sequences.insert(new.name.clone(), Arc::new(new));
            let mut stored = c.tables.write().expect("catalog lock");
            for table in replaced {
                stored.insert(table.name.clone(), table);
            }
        });
        Ok(())
    }

    /// Replaces sequence definition `old` with `new` (same name): 40001 if it changed meanwhile.
    pub async fn replace_sequence(&self, old: &SequenceDef, new: SequenceDef) -> Result<()> {
        self.compare_and_put(definition_key(SEQUENCE, &old.name), &old.name, old, &new).await?;
        self.changed(|c| {
            c.sequences.write().expect("catalog lock").insert(new.name.clone(), Arc::new(new));
        });
        Ok(())
    }

    /// Stores a view: a new one (42P07 if the name is taken), or with `replacing` the view it
    /// replaces (40001 if that changed meanwhile).
    pub async fn put_view(&self, def: ViewDef, replacing: Option<&ViewDef>) -> Result<()> {
        let key = definition_key(VIEW, &def.name);
        match replacing {
            None => self.put_new(key, &def.name, &def).await?,
            Some(old) => self.compare_and_put(key, &old.name, old, &def).await?,
        }
        self.changed(|c| {
            c.views.write().expect("catalog lock").insert(def.name.clone(), Arc::new(def));
        });
        Ok(())
    }

    /// Removes a view definition.
    pub async fn remove_view(&self, name: &str) -> Result<()> {
        self.delete(VIEW, name).await?;
        self.changed(|c| {
            c.views.write().expect("catalog lock").remove(name);
        });
        Ok(())
    }

    /// Removes a definition (its rows are deleted by the caller first).
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.delete(TABLE, name).await?;
        self.changed(|c| {
            c.tables.write().expect("catalog lock").remove(name);
        });
        Ok(())
    }
}

/// A definition as the meta group stores it.
fn encoded(def: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(def).map_err(Error::internal)
}
