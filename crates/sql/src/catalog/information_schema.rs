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
//! `pg_attrdef` shows it, `udt_schema` / `udt_name`, `is_identity`, `identity_generation`,
//! `is_generated`; and `views.view_definition`. It adds `table_constraints`,
//! `key_column_usage` (Metabase's field sync reads primary keys from them),
//! `referential_constraints` and `check_constraints` from the table definitions.

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
use crate::table::{qualify, split_name, Identity, IndexState, TableDef};
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
        let ours = [TABLE_CONSTRAINTS, KEY_COLUMN_USAGE, REFERENTIAL_CONSTRAINTS, CHECK_CONSTRAINTS].map(String::from);
        self.inner.table_names().into_iter().chain(ours).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(kind) = Constraints::kind(name) {
            return Ok(Some(Arc::new(Constraints::new(kind, self.catalog.clone()))));
        }
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        let kind = match name {
            "columns" => View::Columns,
            "views" => View::Views,
            _ => return Ok(Some(table)),
        };
        let schema = match kind {
            View::Columns => {
                let added = COLUMNS_ADDED.iter().map(|n| Field::new(*n, DataType::Utf8, true));
                // Positions are PostgreSQL's `cardinal_number`, an integer (DataFusion's are UInt64).
                let typed = |f: &Field| match f.name().as_str() {
                    "ordinal_position" => f.clone().with_data_type(DataType::Int32),
                    _ => f.clone(),
                };
                let fields: Vec<Field> = table.schema().fields().iter().map(|f| typed(f)).chain(added).collect();
                Arc::new(Schema::new_with_metadata(fields, table.schema().metadata().clone()))
            }
            View::Views => renamed(&table.schema(), "definition", "view_definition"),
        };
        Ok(Some(Arc::new(Amended { inner: table, kind, schema, catalog: self.catalog.clone() })))
    }

    fn table_exist(&self, name: &str) -> bool {
        Constraints::kind(name).is_some() || self.inner.table_exist(name)
    }
}

/// The columns of PostgreSQL's `information_schema.columns` that DataFusion's lacks (text).
const COLUMNS_ADDED: [&str; 5] = ["udt_schema", "udt_name", "is_identity", "identity_generation", "is_generated"];

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
        let mut columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| Ok(datafusion::arrow::compute::cast(c, f.data_type())?))
            .collect::<DfResult<Vec<_>>>()?;
        // The columns DataFusion's view lacks start NULL.
        for field in self.schema.fields().iter().skip(columns.len()) {
            columns.push(datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()));
        }
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
                // Other relations' columns (views, the system's) by their Arrow types.
                let arrow_types = text("data_type")?;
                let arrow_types = as_string_array(&arrow_types)?;
                let by_arrow: Vec<Option<(&str, &str)>> = (0..batch.num_rows())
                    .map(|row| arrow_types.is_valid(row).then(|| arrow_type_names(arrow_types.value(row))).flatten())
                    .collect();
                let data_type = |row: usize| match ty(row) {
                    Some(t) => Some(ScalarValue::Utf8(Some(t.base_name()))),
                    None => by_arrow[row].map(|(name, _)| ScalarValue::Utf8(Some(name.to_string()))),
                };
                set("data_type", &data_type)?;
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
                // An identity column has none (its values come from its identity).
                let default = |row: usize| {
                    let (def, c) = column(row)?;
                    let column = &def.columns[c];
                    Some(ScalarValue::Utf8(column.identity.is_none().then(|| default_text(column)).flatten()))
                };
                set("column_default", &default)?;
                let text = |v: Option<&str>| Some(ScalarValue::Utf8(v.map(String::from)));
                let udt = |row: usize| match ty(row) {
                    Some(t) => Some(t.type_name()),
                    None => by_arrow[row].map(|(_, udt)| udt),
                };
                set("udt_schema", &|row| udt(row).and_then(|_| text(Some("pg_catalog"))))?;
                set("udt_name", &|row| udt(row).and_then(|u| text(Some(u))))?;
                let identity = |row: usize| column(row).and_then(|(def, c)| def.columns[c].identity);
                set("is_identity", &|row| text(Some(if identity(row).is_some() { "YES" } else { "NO" })))?;
                let generation = |row: usize| match identity(row) {
                    Some(Identity::Always) => text(Some("ALWAYS")),
                    Some(Identity::ByDefault) => text(Some("BY DEFAULT")),
                    None => text(None),
                };
                set("identity_generation", &generation)?;
                set("is_generated", &|_| text(Some("NEVER")))?;
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// PostgreSQL's `data_type` and `udt_name` of a column DataFusion typed `arrow` (its Arrow
/// type as text): what a view's or a system table's column shows.
fn arrow_type_names(arrow: &str) -> Option<(&'static str, &'static str)> {
    crate::types::pg_type_names(&arrow.parse().ok()?)
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

const TABLE_CONSTRAINTS: &str = "table_constraints";
const KEY_COLUMN_USAGE: &str = "key_column_usage";
const REFERENTIAL_CONSTRAINTS: &str = "referential_constraints";
const CHECK_CONSTRAINTS: &str = "check_constraints";

#[derive(Debug, Clone, Copy, PartialEq)]
enum ConstraintView {
    /// Each user table's primary key, UNIQUE constraints, foreign keys and CHECK constraints.
    TableConstraints,
    /// The columns of each primary key, UNIQUE constraint and foreign key, in key order.
    KeyColumnUsage,
    /// Each foreign key: the key it references and its actions.
    ReferentialConstraints,
    /// Each CHECK constraint's expression.
    CheckConstraints,
}

/// A constraint as the two views show it.
struct Key {
    name: String,
    /// `constraint_type`.
    kind: &'static str,
    /// Its columns (indexes into the table's), in key order.
    columns: Vec<usize>,
    deferrable: bool,
    deferred: bool,
    /// A UNIQUE constraint's: whether NULLs are distinct.
    nulls_distinct: Option<bool>,
    /// A foreign key's: the position of each referenced column in the key it references.
    positions: Option<Vec<usize>>,
}

/// `table_constraints` and `key_column_usage`, from the table definitions.
struct Constraints {
    kind: ConstraintView,
    schema: SchemaRef,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for Constraints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{INFORMATION_SCHEMA}.{:?}", self.kind)
    }
}

impl Constraints {
    fn kind(name: &str) -> Option<ConstraintView> {
        match name {
            TABLE_CONSTRAINTS => Some(ConstraintView::TableConstraints),
            KEY_COLUMN_USAGE => Some(ConstraintView::KeyColumnUsage),
            REFERENTIAL_CONSTRAINTS => Some(ConstraintView::ReferentialConstraints),
            CHECK_CONSTRAINTS => Some(ConstraintView::CheckConstraints),
            _ => None,
        }
    }

    fn new(kind: ConstraintView, catalog: Arc<Catalog>) -> Self {
        Constraints { kind, schema: Self::columns(kind), catalog }
    }

    /// The view's columns, all text but the positions.
    fn columns(kind: ConstraintView) -> SchemaRef {
        let names: &[&'static str] = match kind {
            ConstraintView::TableConstraints => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ],
            ConstraintView::KeyColumnUsage => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ],
            ConstraintView::ReferentialConstraints => &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ],
            ConstraintView::CheckConstraints => {
                &["constraint_catalog", "constraint_schema", "constraint_name", "check_clause"]
            }
        };
        let ty = |n: &str| if n.contains("position") { DataType::Int32 } else { DataType::Utf8 };
        Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, ty(n), true)).collect::<Vec<_>>()))
    }

    /// One row per constraint (or per key column), as (column, value) pairs in column order.
    fn rows(&self) -> Vec<Vec<ScalarValue>> {
        let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
        let yes_no = |b: bool| text(if b { "YES" } else { "NO" });
        let tables = self.catalog.all();
        let mut rows = Vec::new();
        for t in &tables {
            let (schema, table) = split_name(&t.name);
            let head =
                |name: &str| vec![text(CATALOG), text(schema), text(name), text(CATALOG), text(schema), text(table)];
            match self.kind {
                ConstraintView::ReferentialConstraints => {
                    for fk in &t.foreign_keys {
                        let Some(parent) = tables.iter().find(|p| p.id == fk.parent) else { continue };
                        let unique = match parent.referenced_key(&fk.parent_columns) {
                            Some(Some(index)) => index.name.clone(),
                            _ => parent.pkey_name(),
                        };
                        rows.push(vec![
                            text(CATALOG),
                            text(schema),
                            text(&fk.name),
                            text(CATALOG),
                            text(split_name(&parent.name).0),
                            text(&unique),
                            text("NONE"),
                            text(fk.on_update.rule()),
                            text(fk.on_delete.rule()),
                        ]);
                    }
                    continue;
                }
                ConstraintView::CheckConstraints => {
                    for c in &t.checks {
                        let clause = format!("(({}))", c.expr);
                        rows.push(vec![text(CATALOG), text(schema), text(&c.name), text(&clause)]);
                    }
                    continue;
                }
                ConstraintView::TableConstraints | ConstraintView::KeyColumnUsage => {}
            }
            let key = |name: &str, kind: &'static str, columns: &[usize]| Key {
                name: name.to_string(),
                kind,
                columns: columns.to_vec(),
                deferrable: false,
                deferred: false,
                nulls_distinct: None,
                positions: None,
            };
            let mut keys = Vec::new();
            if !t.has_rowid() {
                keys.push(key(&t.pkey_name(), "PRIMARY KEY", &t.pk));
            }
            for index in t.indexes.iter().filter(|i| i.constraint && i.unique && i.state == IndexState::Public) {
                keys.push(Key { nulls_distinct: Some(true), ..key(&index.name, "UNIQUE", &index.columns) });
            }
            for fk in &t.foreign_keys {
                let parent = tables.iter().find(|p| p.id == fk.parent);
                // Where each referenced column stands in the key it references.
                let referenced = parent.and_then(|p| match p.referenced_key(&fk.parent_columns)? {
                    None => Some(p.pk.clone()),
                    Some(index) => Some(index.columns.clone()),
                });
                let positions = referenced.map(|r| {
                    fk.parent_columns.iter().map(|c| r.iter().position(|x| x == c).unwrap_or(0) + 1).collect()
                });
                let (deferrable, deferred) = (fk.deferrable, fk.deferred);
                keys.push(Key { deferrable, deferred, positions, ..key(&fk.name, "FOREIGN KEY", &fk.columns) });
            }
            match self.kind {
                ConstraintView::TableConstraints => {
                    let checks = t.checks.iter().map(|c| key(&c.name, "CHECK", &[]));
                    for k in keys.into_iter().chain(checks) {
                        let mut row = head(&k.name);
                        row.extend([text(k.kind), yes_no(k.deferrable), yes_no(k.deferred), text("YES")]);
                        row.push(ScalarValue::Utf8(k.nulls_distinct.map(|d| if d { "YES" } else { "NO" }.to_string())));
                        rows.push(row);
                    }
                }
                ConstraintView::ReferentialConstraints | ConstraintView::CheckConstraints => {}
                ConstraintView::KeyColumnUsage => {
                    for k in &keys {
                        for (n, c) in k.columns.iter().enumerate() {
                            let mut row = head(&k.name);
                            row.push(text(&t.columns[*c].name));
                            row.push(ScalarValue::Int32(Some(n as i32 + 1)));
                            let position = k.positions.as_ref().and_then(|p| p.get(n)).map(|p| *p as i32);
                            row.push(ScalarValue::Int32(position));
                            rows.push(row);
                        }
                    }
                }
            }
        }
        rows
    }
}

#[async_trait]
impl TableProvider for Constraints {
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
        let schema = self.schema();
        let rows = self.rows();
        let columns = (0..schema.fields().len())
            .map(|i| {
                ScalarValue::iter_to_array(rows.iter().map(|r| r[i].clone())).or_else(|_| {
                    Ok::<_, DataFusionError>(datafusion::arrow::array::new_empty_array(schema.field(i).data_type()))
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
