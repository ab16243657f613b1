//! `information_schema` as PostgreSQL fills it, for the tools that read it rather than
//! `pg_catalog` (Grafana's and Metabase's column lists, DBeaver, pgJDBC's `getColumns` falls back
//! to it in places, ORMs' schema diffs).
//!
//! DataFusion's provider builds the views from the session's catalogs at each scan; it types
//! columns by their Arrow types (`Int32`, `Utf8`), leaves `column_default` NULL, and names
//! `views`' text `definition`. [`register`] puts a schema in its place (DataFusion's own is
//! switched off in `plan::context`) that serves its views, with `columns` and `views` amended
//! from the table definitions: `ordinal_position` from 1, `data_type` PostgreSQL's type name,
//! `character_maximum_length`, `numeric_precision` / `_radix` / `_scale`, `column_default` as
//! `pg_attrdef` shows it; and `views.view_definition`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, Session as CatalogSession};
use datafusion::common::cast::as_string_array;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::pg_catalog::{default_text, scan_all};
use super::{Catalog, CATALOG, PUBLIC};
use crate::table::{qualify, TableDef};
use crate::types::SqlType;

/// The schema's name.
const INFORMATION_SCHEMA: &str = "information_schema";

/// Registers the amended `information_schema` in the session's `raftable` catalog.
pub(crate) fn register(ctx: &SessionContext, catalog: Arc<Catalog>) -> DfResult<()> {
    let catalogs = WeakCatalogs(Arc::downgrade(ctx.state().catalog_list()));
    let inner = InformationSchemaProvider::new(Arc::new(catalogs));
    let raftable = ctx.catalog(CATALOG).ok_or_else(|| DataFusionError::Plan(format!("no catalog {CATALOG}")))?;
    raftable.register_schema(INFORMATION_SCHEMA, Arc::new(InformationSchema { inner, catalog }))?;
    Ok(())
}

/// The session's catalog list, held weakly: the list holds this schema (no cycle, no leak of a
/// closed session's context).
#[derive(Debug)]
struct WeakCatalogs(Weak<dyn CatalogProviderList>);

impl CatalogProviderList for WeakCatalogs {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.0.upgrade()?.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.0.upgrade().map(|l| l.catalog_names()).unwrap_or_default()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.0.upgrade()?.catalog(name)
    }
}

struct InformationSchema {
    inner: InformationSchemaProvider,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(INFORMATION_SCHEMA)
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        let kind = match name {
            "columns" => View::Columns,
            "views" => View::Views,
            _ => return Ok(Some(table)),
        };
        let schema = match kind {
            View::Columns => table.schema(),
            View::Views => renamed(&table.schema(), "definition", "view_definition"),
        };
        Ok(Some(Arc::new(Amended { inner: table, kind, schema, catalog: self.catalog.clone() })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `schema` with column `from` named `to`.
fn renamed(schema: &SchemaRef, from: &str, to: &str) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| if f.name() == from { f.as_ref().clone().with_name(to) } else { f.as_ref().clone() })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[derive(Debug, Clone, Copy)]
enum View {
    Columns,
    Views,
}

/// One of the amended views: DataFusion's rows, changed for the user tables' columns and views.
struct Amended {
    inner: Arc<dyn TableProvider>,
    kind: View,
    schema: SchemaRef,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for Amended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{INFORMATION_SCHEMA}.{:?}", self.kind)
    }
}

#[async_trait]
impl TableProvider for Amended {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = scan_all(&self.inner, state).await?;
        let batches = batches.iter().map(|b| self.amended(b)).collect::<DfResult<Vec<_>>>()?;
        MemTable::try_new(self.schema.clone(), vec![batches])?.scan(state, projection, filters, limit).await
    }
}

impl Amended {
    fn amended(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let text = |name: &str| -> DfResult<ArrayRef> {
            let i = batch.schema().index_of(name)?;
            Ok(datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8)?)
        };
        let (schemas, tables) = (text("table_schema")?, text("table_name")?);
        let (schemas, tables) = (as_string_array(&schemas)?, as_string_array(&tables)?);
        // The catalog name of row i's relation (`s.t`, or `t` in public).
        let relation = |i: usize| -> Option<String> {
            (schemas.is_valid(i) && tables.is_valid(i)).then(|| match schemas.value(i) {
                PUBLIC => tables.value(i).to_string(),
                schema => qualify(schema, tables.value(i)),
            })
        };
        let mut columns = batch.columns().to_vec();
        let mut set = |name: &str, value: &dyn Fn(usize) -> Option<ScalarValue>| -> DfResult<()> {
            let i = self.schema.index_of(name)?;
            let ty = self.schema.field(i).data_type().clone();
            let values = (0..batch.num_rows())
                .map(|row| match value(row) {
                    Some(v) => v.cast_to(&ty),
                    None => ScalarValue::try_from_array(&columns[i], row),
                })
                .collect::<DfResult<Vec<_>>>()?;
            columns[i] = ScalarValue::iter_to_array(values)?;
            Ok(())
        };
        match self.kind {
            View::Views => {
                let views = self.catalog.cached_views();
                let by_name: HashMap<&str, _> = views.iter().map(|v| (v.name.as_str(), v)).collect();
                let definition = |row: usize| {
                    let view = by_name.get(relation(row)?.as_str())?;
                    Some(ScalarValue::Utf8(Some(format!("{};", view.query))))
                };
                set("view_definition", &definition)?;
            }
            View::Columns => {
                let names = text("column_name")?;
                let names = as_string_array(&names)?;
                let positions = batch.column(batch.schema().index_of("ordinal_position")?);
                let positions = datafusion::arrow::compute::cast(positions, &DataType::Int64)?;
                let positions = datafusion::common::cast::as_int64_array(&positions)?;
                let all = self.catalog.all();
                let by_name: HashMap<&str, &TableDef> = all.iter().map(|t| (t.name.as_str(), t.as_ref())).collect();
                // Each row's table and column, looked up once.
                let found: Vec<Option<(&TableDef, usize)>> = (0..batch.num_rows())
                    .map(|row| {
                        let def = *by_name.get(relation(row)?.as_str())?;
                        let c = def.visible().into_iter().find(|c| def.columns[*c].name == names.value(row))?;
                        Some((def, c))
                    })
                    .collect();
                let column = |row: usize| found[row];
                let ty = |row: usize| column(row).map(|(def, c)| def.columns[c].ty);
                set("data_type", &|row| ty(row).map(|t| ScalarValue::Utf8(Some(t.base_name()))))?;
                let length = |row| ty(row).map(|t| ScalarValue::Int64(t.max_chars().map(i64::from)));
                set("character_maximum_length", &length)?;
                let numeric = |row, part: fn((i64, i64, Option<i64>)) -> Option<i64>| {
                    ty(row).and_then(|t| precision(&t)).map(|p| ScalarValue::Int64(part(p)))
                };
                set("numeric_precision", &|row| numeric(row, |p| Some(p.0)))?;
                set("numeric_precision_radix", &|row| numeric(row, |p| Some(p.1)))?;
                set("numeric_scale", &|row| numeric(row, |p| p.2))?;
                // 1-based, the column's number in the table (DataFusion counts from 0).
                let position = |row: usize| match column(row) {
                    Some((def, c)) => def.attnum(c).map(|n| ScalarValue::Int64(Some(i64::from(n)))),
                    None => positions.is_valid(row).then(|| ScalarValue::Int64(Some(positions.value(row) + 1))),
                };
                set("ordinal_position", &position)?;
                let default = |row: usize| {
                    let (def, c) = column(row)?;
                    Some(ScalarValue::Utf8(default_text(&def.columns[c])))
                };
                set("column_default", &default)?;
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// A numeric type's precision, its radix and its scale, as PostgreSQL reports them (bits for
/// the integer types and the floats' mantissas, decimal digits for NUMERIC; floats have no scale).
fn precision(ty: &SqlType) -> Option<(i64, i64, Option<i64>)> {
    match ty {
        SqlType::SmallInt => Some((16, 2, Some(0))),
        SqlType::Integer => Some((32, 2, Some(0))),
        SqlType::BigInt => Some((64, 2, Some(0))),
        SqlType::Real => Some((24, 2, None)),
        SqlType::Double => Some((53, 2, None)),
        SqlType::Numeric(p, s) => Some((i64::from(*p), 10, Some(i64::from(*s)))),
        _ => None,
    }
}
