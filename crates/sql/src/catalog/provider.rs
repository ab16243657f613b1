//! What DataFusion's planner sees of the catalog: the `raftable` catalog with schema `public`
//! and those CREATE SCHEMA made (user tables as [`ShardedTable`]s, their visible columns,
//! every shard; views as [`StoredView`]s, which list their columns and are never scanned),
//! schema
//! `raftable` (the cluster's `nodes` and `shards`, built fresh for every statement that reads
//! them). The internal reads of UPDATE and DELETE, which also need the hidden row id and may
//! be restricted to some shards, build their own [`ShardedTable`] (`plan::modify`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use raftable_common::ShardId;

use super::cache::Catalog;
use crate::cluster::ClusterRef;
use crate::error::to_datafusion;
use crate::scan::{Current, ShardedTable};
use crate::table::{qualify, split_name, ViewDef};

pub(crate) const CATALOG: &str = "raftable";
pub(crate) use crate::table::PUBLIC;
const SYSTEM: &str = "raftable";

#[derive(Debug)]
pub(crate) struct RaftableCatalog {
    public: Arc<UserSchema>,
    system: Arc<SystemSchema>,
    /// Schemas registered by others: `pg_catalog` (datafusion-pg-catalog).
    extra: std::sync::RwLock<std::collections::BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl RaftableCatalog {
    /// `nextval` is the session's function, which the defaults of SERIAL and identity columns
    /// call.
    pub(crate) fn new(catalog: Arc<Catalog>, cluster: ClusterRef, nextval: Arc<ScalarUDF>) -> Self {
        let public =
            UserSchema { name: PUBLIC.into(), catalog: CatalogRef(catalog.clone()), cluster: cluster.clone(), nextval };
        Self {
            public: Arc::new(public),
            system: Arc::new(SystemSchema { cluster, catalog: CatalogRef(catalog) }),
            extra: Default::default(),
        }
    }

    /// A schema CREATE SCHEMA made, as the cache knows it now.
    fn user_schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.public.catalog.0.cached_schema(name)?;
        let UserSchema { catalog, cluster, nextval, .. } = self.public.as_ref();
        let (catalog, cluster, nextval) = (CatalogRef(catalog.0.clone()), cluster.clone(), nextval.clone());
        Some(Arc::new(UserSchema { name: name.to_string(), catalog, cluster, nextval }))
    }
}

impl CatalogProvider for RaftableCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![PUBLIC.to_string(), SYSTEM.to_string()];
        names.extend(self.extra.read().expect("schemas lock").keys().cloned());
        names.extend(self.public.catalog.0.cached_schemas().iter().map(|s| s.name.clone()));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC => Some(self.public.clone()),
            SYSTEM => Some(self.system.clone()),
            other => {
                let extra = self.extra.read().expect("schemas lock").get(other).cloned();
                extra.or_else(|| self.user_schema(other))
            }
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if name == PUBLIC || name == SYSTEM {
            return Err(DataFusionError::Plan(format!("schema {name} cannot be replaced")));
        }
        Ok(self.extra.write().expect("schemas lock").insert(name.to_string(), schema))
    }
}

struct CatalogRef(Arc<Catalog>);

impl std::fmt::Debug for CatalogRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

/// Schema `public` or one CREATE SCHEMA made: the tables and views whose catalog names put
/// them in it (`table::qualify`), by their bare names.
#[derive(Debug)]
struct UserSchema {
    name: String,
    catalog: CatalogRef,
    cluster: ClusterRef,
    nextval: Arc<ScalarUDF>,
}

impl UserSchema {
    /// The bare name of catalog name `name` if it is in this schema.
    fn member<'a>(&self, name: &'a str) -> Option<&'a str> {
        let (schema, bare) = split_name(name);
        (schema == self.name).then_some(bare)
    }
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        let views = self.catalog.0.cached_views();
        let names = self.catalog.0.names().into_iter().chain(views.iter().map(|v| v.name.clone()));
        names.filter_map(|n| self.member(&n).map(str::to_string)).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.contains('.') {
            return Ok(None);
        }
        let name = qualify(&self.name, name);
        if let Some(view) = self.catalog.0.cached_view(&name) {
            return Ok(Some(Arc::new(StoredView { schema: view.schema().map_err(to_datafusion)?, view })));
        }
        let Some(def) = self.catalog.0.get(&name).await.map_err(to_datafusion)? else { return Ok(None) };
        let catalog = self.catalog.0.clone();
        let current: Current = Arc::new(move |name| catalog.leased(name));
        Ok(Some(Arc::new(ShardedTable::new(def, self.cluster.clone(), &self.nextval, current))))
    }

    fn table_exist(&self, name: &str) -> bool {
        let full = qualify(&self.name, name);
        !name.contains('.') && (self.catalog.0.cached(&full).is_some() || self.catalog.0.cached_view(&full).is_some())
    }
}

/// A view as the catalogs list it (`pg_class` relkind 'v', `information_schema.views`). Never
/// scanned: the planner expands a view's query into the statement naming it
/// (`plan::views::expand`).
#[derive(Debug)]
struct StoredView {
    view: Arc<ViewDef>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StoredView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.view.query)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(format!("view \"{}\" reached the executor unexpanded", self.view.name)))
    }
}

#[derive(Debug)]
struct SystemSchema {
    cluster: ClusterRef,
    catalog: CatalogRef,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        vec!["nodes".into(), "shards".into(), "index_check".into()]
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "nodes" => nodes(&self.cluster).await?,
            "shards" => shards(&self.cluster, &self.catalog.0).await?,
            "index_check" => super::index_check::index_check(self.cluster.0.as_ref(), &self.catalog.0)
                .await
                .map_err(to_datafusion)?,
            _ => return Ok(None),
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(name, "nodes" | "shards" | "index_check")
    }
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> DfResult<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}

async fn nodes(cluster: &ClusterRef) -> DfResult<RecordBatch> {
    let nodes = cluster.0.nodes().await.map_err(to_datafusion)?;
    batch(
        vec![
            Field::new("node_id", DataType::Int64, false),
            Field::new("rpc_addr", DataType::Utf8, false),
            Field::new("pg_addr", DataType::Utf8, false),
            Field::new("alive", DataType::Boolean, false),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(nodes.iter().map(|n| n.id as i64))),
            Arc::new(StringArray::from_iter_values(nodes.iter().map(|n| n.rpc_addr.as_str()))),
            Arc::new(StringArray::from_iter_values(nodes.iter().map(|n| n.pg_addr.as_str()))),
            Arc::new(BooleanArray::from(nodes.iter().map(|n| n.alive).collect::<Vec<_>>())),
        ],
    )
}

async fn shards(cluster: &ClusterRef, catalog: &Catalog) -> DfResult<RecordBatch> {
    let mut shards = cluster.0.shards().await.map_err(to_datafusion)?;
    let _ = catalog.refresh().await;
    let owners: std::collections::HashMap<ShardId, String> =
        catalog.all().iter().flat_map(|t| t.shards.iter().map(|s| (*s, t.name.clone()))).collect();
    for s in &mut shards {
        s.table = owners.get(&s.id).cloned();
    }
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    batch(
        vec![
            Field::new("shard_id", DataType::Int64, false),
            Field::new("table_name", DataType::Utf8, true),
            Field::new("range_start", DataType::Utf8, false),
            Field::new("range_end", DataType::Utf8, false),
            Field::new("leader_node_id", DataType::Int64, true),
            Field::new("replica_node_ids", DataType::Utf8, false),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(shards.iter().map(|s| s.id as i64))),
            Arc::new(StringArray::from(shards.iter().map(|s| s.table.clone()).collect::<Vec<_>>())),
            Arc::new(StringArray::from_iter_values(shards.iter().map(|s| hex(&s.range.start)))),
            Arc::new(StringArray::from_iter_values(shards.iter().map(|s| hex(&s.range.end)))),
            Arc::new(Int64Array::from(shards.iter().map(|s| s.leader.map(|l| l as i64)).collect::<Vec<_>>())),
            Arc::new(StringArray::from_iter_values(
                shards.iter().map(|s| s.replicas.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",")),
            )),
        ],
    )
}
