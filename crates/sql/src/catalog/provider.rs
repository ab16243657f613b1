//! What DataFusion's planner sees of the catalog: the `raftable` catalog with schema `public`
//! (user tables as [`ShardedTable`]s, their visible columns, every shard; views as
//! [`StoredView`]s, which list their columns and are never scanned) and schema
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
use crate::table::ViewDef;

pub(crate) const CATALOG: &str = "raftable";
pub(crate) const PUBLIC: &str = "public";
const SYSTEM: &str = "raftable";

#[derive(Debug)]
pub(crate) struct RaftableCatalog {
    public: Arc<PublicSchema>,
    system: Arc<SystemSchema>,
    /// Schemas registered by others: `pg_catalog` (datafusion-pg-catalog).
    extra: std::sync::RwLock<std::collections::BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl RaftableCatalog {
    /// `nextval` is the session's function, which the defaults of SERIAL and identity columns
    /// call.
    pub(crate) fn new(catalog: Arc<Catalog>, cluster: ClusterRef, nextval: Arc<ScalarUDF>) -> Self {
        Self {
            public: Arc::new(PublicSchema { catalog: CatalogRef(catalog.clone()), cluster: cluster.clone(), nextval }),
            system: Arc::new(SystemSchema { cluster, catalog: CatalogRef(catalog) }),
            extra: Default::default(),
        }
    }
}

impl CatalogProvider for RaftableCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![PUBLIC.to_string(), SYSTEM.to_string()];
        names.extend(self.extra.read().expect("schemas lock").keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC => Some(self.public.clone()),
            SYSTEM => Some(self.system.clone()),
            other => self.extra.read().expect("schemas lock").get(other).cloned(),
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

#[derive(Debug)]
struct PublicSchema {
    catalog: CatalogRef,
    cluster: ClusterRef,
    nextval: Arc<ScalarUDF>,
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.catalog.0.names();
        names.extend(self.catalog.0.cached_views().iter().map(|v| v.name.clone()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.catalog.0.cached_view(name) {
            return Ok(Some(Arc::new(StoredView { schema: view.schema().map_err(to_datafusion)?, view })));
        }
        let Some(def) = self.catalog.0.get(name).await.map_err(to_datafusion)? else { return Ok(None) };
        let catalog = self.catalog.0.clone();
        let current: Current = Arc::new(move |name| catalog.leased(name));
        Ok(Some(Arc::new(ShardedTable::new(def, self.cluster.clone(), &self.nextval, current))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.0.cached(name).is_some() || self.catalog.0.cached_view(name).is_some()
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
