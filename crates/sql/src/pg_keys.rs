//! Primary keys in `pg_catalog`, as PostgreSQL shows them: each table's key is a unique btree
//! index `<table>_pkey` (a `pg_class` row of relkind 'i' and a `pg_index` row) and a constraint
//! (`pg_constraint`, contype 'p'), described by `pg_get_indexdef` / `pg_get_constraintdef`.
//!
//! datafusion-pg-catalog builds `pg_class` and `pg_attribute` from DataFusion's catalogs
//! (tables and columns, OIDs numbered per session) but knows no indexes: its `pg_index` and
//! `pg_constraint` are empty, and psql's `\d`, SQLAlchemy's and pgJDBC's metadata calls find no
//! primary key. [`amend`] wraps its `pg_catalog` schema in [`Overlay`], which amends those three
//! tables at every scan from the table OIDs its `pg_class` gives and the primary keys in
//! [`Catalog`], and registers the two functions over what the last scan found.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int16Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session as CatalogSession};
use datafusion::common::cast::as_int64_array;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::catalog::{Catalog, TableDef};
use crate::provider::{CATALOG, PUBLIC};

/// An index's OID is its table's plus this, its constraint's plus twice this: datafusion-pg-catalog
/// numbers tables upwards from 16384, so these never meet another relation's OID.
const INDEX_OID: i64 = 0x2000_0000;
/// `pg_am`'s OID of btree.
const BTREE: i64 = 403;

/// Wraps the session's `pg_catalog` schema (registered by datafusion-pg-catalog) so it shows
/// primary keys, and registers `pg_get_indexdef` and `pg_get_constraintdef`.
pub(crate) fn amend(ctx: &SessionContext, catalog: Arc<Catalog>) -> DfResult<()> {
    let schemas = ctx.catalog(CATALOG).ok_or_else(|| DataFusionError::Plan("no raftable catalog".into()))?;
    let inner = schemas.schema("pg_catalog").ok_or_else(|| DataFusionError::Plan("no pg_catalog".into()))?;
    let defs = Arc::new(Definitions::default());
    schemas.register_schema("pg_catalog", Arc::new(Overlay { inner, catalog, defs: defs.clone() }))?;
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_indexdef", defs.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_constraintdef", defs)));
    Ok(())
}

/// The definitions of the indexes and constraints the session's last catalog scan showed, by
/// OID: `pg_get_indexdef(oid)` is asked about rows `pg_index` has just returned.
#[derive(Debug, Default)]
struct Definitions(RwLock<HashMap<i64, String>>);

/// A table with a primary key, and its OID in this session.
struct Keyed {
    oid: i64,
    def: Arc<TableDef>,
}

impl Keyed {
    fn index_oid(&self) -> i64 {
        self.oid + INDEX_OID
    }

    fn constraint_oid(&self) -> i64 {
        self.oid + 2 * INDEX_OID
    }

    fn index_name(&self) -> String {
        format!("{}_pkey", self.def.name)
    }

    /// The key's column numbers (`attnum`, 1-based among the visible columns), in key order.
    fn attnums(&self) -> Vec<i16> {
        let visible = self.def.visible();
        self.def.pk.iter().filter_map(|c| visible.iter().position(|v| v == c).map(|p| p as i16 + 1)).collect()
    }

    fn key_columns(&self) -> String {
        self.def.pk.iter().map(|c| quoted(&self.def.columns[*c].name)).collect::<Vec<_>>().join(", ")
    }
}

/// An identifier as PostgreSQL prints it: quoted unless plain lower-case.
fn quoted(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// datafusion-pg-catalog's `pg_catalog`, with `pg_class`, `pg_index` and `pg_constraint`
/// showing primary keys.
struct Overlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
    defs: Arc<Definitions>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum Amended {
    Class,
    Index,
    Constraint,
}

#[async_trait]
impl SchemaProvider for Overlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let kind = match name {
            "pg_class" => Amended::Class,
            "pg_index" => Amended::Index,
            "pg_constraint" => Amended::Constraint,
            _ => return self.inner.table(name).await,
        };
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        let overlay = Overlay { inner: self.inner.clone(), catalog: self.catalog.clone(), defs: self.defs.clone() };
        Ok(Some(Arc::new(AmendedTable { table, kind, overlay: Arc::new(overlay) })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

impl Overlay {
    /// The user tables with a primary key, with the OIDs this session's `pg_class` gives them,
    /// and `pg_class`'s rows.
    async fn keyed(&self, state: &dyn CatalogSession) -> DfResult<(Vec<Keyed>, Vec<Row>)> {
        let namespaces = self.rows("pg_namespace", state).await?;
        let public = namespaces.iter().find(|r| text(r, "nspname") == Some(PUBLIC)).and_then(|r| int(r, "oid"));
        let classes = self.rows("pg_class", state).await?;
        let mut keyed = Vec::new();
        for def in self.catalog.all() {
            if def.has_rowid() || def.pk.is_empty() {
                continue;
            }
            let row = classes.iter().find(|r| {
                text(r, "relname") == Some(def.name.as_str())
                    && text(r, "relkind") == Some("r")
                    && int(r, "relnamespace") == public
            });
            if let Some(oid) = row.and_then(|r| int(r, "oid")) {
                keyed.push(Keyed { oid, def });
            }
        }
        let mut defs = self.defs.0.write().expect("definitions lock");
        defs.clear();
        for k in &keyed {
            let index = format!(
                "CREATE UNIQUE INDEX {} ON {PUBLIC}.{} USING btree ({})",
                quoted(&k.index_name()),
                quoted(&k.def.name),
                k.key_columns()
            );
            defs.insert(k.index_oid(), index);
            defs.insert(k.constraint_oid(), format!("PRIMARY KEY ({})", k.key_columns()));
        }
        drop(defs);
        Ok((keyed, classes))
    }

    /// Every row of an inner table, as (column name, value) maps.
    async fn rows(&self, name: &str, state: &dyn CatalogSession) -> DfResult<Vec<Row>> {
        let table = self.inner.table(name).await?.ok_or_else(|| DataFusionError::Plan(format!("no {name}")))?;
        let batches = scan_all(&table, state).await?;
        let mut rows = Vec::new();
        for batch in &batches {
            for i in 0..batch.num_rows() {
                let mut row = Row::new();
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    row.insert(field.name().clone(), ScalarValue::try_from_array(column, i)?);
                }
                rows.push(row);
            }
        }
        Ok(rows)
    }
}

type Row = HashMap<String, ScalarValue>;

fn text<'a>(row: &'a Row, column: &str) -> Option<&'a str> {
    match row.get(column)? {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

fn int(row: &Row, column: &str) -> Option<i64> {
    match row.get(column)?.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

async fn scan_all(table: &Arc<dyn TableProvider>, state: &dyn CatalogSession) -> DfResult<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// One of the amended tables: the inner table's rows plus (or, for `pg_class`, changed by) the
/// primary keys, built at each scan.
#[derive(Debug)]
struct AmendedTable {
    table: Arc<dyn TableProvider>,
    kind: Amended,
    overlay: Arc<Overlay>,
}

#[async_trait]
impl TableProvider for AmendedTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        self.table.table_type()
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (keyed, classes) = self.overlay.keyed(state).await?;
        let schema = self.schema();
        let mut batches = scan_all(&self.table, state)
            .await?
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let added: Vec<Vec<(&str, ScalarValue)>> = match self.kind {
            Amended::Class => {
                batches = batches.iter().map(|b| with_indexes(b, &keyed)).collect::<DfResult<_>>()?;
                keyed.iter().map(class_row).collect()
            }
            Amended::Index => keyed.iter().map(|k| index_row(k, &schema)).collect(),
            Amended::Constraint => keyed.iter().map(|k| constraint_row(k, &schema)).collect(),
        };
        // pg_class's index rows copy their table's row, then change what differs.
        let mut extra = Vec::new();
        for (k, values) in keyed.iter().zip(added) {
            let base = match self.kind {
                Amended::Class => classes.iter().find(|r| int(r, "oid") == Some(k.oid)),
                _ => None,
            };
            extra.push(row_of(&schema, base, &values)?);
        }
        if !extra.is_empty() {
            batches.push(batch_of(&schema, &extra)?);
        }
        MemTable::try_new(schema, vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// `batch` (of `pg_class`) with `relhasindex` set on the keyed tables' rows.
fn with_indexes(batch: &RecordBatch, keyed: &[Keyed]) -> DfResult<RecordBatch> {
    let schema = batch.schema();
    let (Ok(oid), Ok(has)) = (schema.index_of("oid"), schema.index_of("relhasindex")) else { return Ok(batch.clone()) };
    let oids = datafusion::arrow::compute::cast(batch.column(oid), &DataType::Int64)?;
    let oids = as_int64_array(&oids)?;
    let old = batch.column(has);
    let values: Vec<ScalarValue> = (0..batch.num_rows())
        .map(|i| {
            if keyed.iter().any(|k| oids.is_valid(i) && oids.value(i) == k.oid) {
                Ok(ScalarValue::Boolean(Some(true)))
            } else {
                ScalarValue::try_from_array(old, i)
            }
        })
        .collect::<DfResult<_>>()?;
    let mut columns = batch.columns().to_vec();
    columns[has] = ScalarValue::iter_to_array(values)?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn class_row(k: &Keyed) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("oid", ScalarValue::Int64(Some(k.index_oid()))),
        ("relname", ScalarValue::Utf8(Some(k.index_name()))),
        ("reltype", ScalarValue::Int64(Some(0))),
        ("relam", ScalarValue::Int64(Some(BTREE))),
        ("relhasindex", ScalarValue::Boolean(Some(false))),
        ("relkind", ScalarValue::Utf8(Some("i".into()))),
        ("relnatts", ScalarValue::Int64(Some(k.def.pk.len() as i64))),
    ]
}

fn index_row(k: &Keyed, schema: &SchemaRef) -> Vec<(&'static str, ScalarValue)> {
    let n = k.def.pk.len() as i64;
    let mut row = vec![
        ("indexrelid", ScalarValue::Int64(Some(k.index_oid()))),
        ("indrelid", ScalarValue::Int64(Some(k.oid))),
        ("indnatts", ScalarValue::Int64(Some(n))),
        ("indnkeyatts", ScalarValue::Int64(Some(n))),
        ("indisunique", ScalarValue::Boolean(Some(true))),
        ("indnullsnotdistinct", ScalarValue::Boolean(Some(false))),
        ("indisprimary", ScalarValue::Boolean(Some(true))),
        ("indisexclusion", ScalarValue::Boolean(Some(false))),
        ("indimmediate", ScalarValue::Boolean(Some(true))),
        ("indisclustered", ScalarValue::Boolean(Some(false))),
        ("indisvalid", ScalarValue::Boolean(Some(true))),
        ("indcheckxmin", ScalarValue::Boolean(Some(false))),
        ("indisready", ScalarValue::Boolean(Some(true))),
        ("indislive", ScalarValue::Boolean(Some(true))),
        ("indisreplident", ScalarValue::Boolean(Some(false))),
    ];
    let attnums = k.attnums();
    for (name, values) in [("indkey", attnums.clone()), ("indoption", vec![0; attnums.len()])] {
        if let Ok(field) = schema.field_with_name(name) {
            row.push((name, int2vector(field, &values, false)));
        }
    }
    row
}

fn constraint_row(k: &Keyed, schema: &SchemaRef) -> Vec<(&'static str, ScalarValue)> {
    let mut row = vec![
        ("oid", ScalarValue::Int64(Some(k.constraint_oid()))),
        ("conname", ScalarValue::Utf8(Some(k.index_name()))),
        ("contype", ScalarValue::Utf8(Some("p".into()))),
        ("condeferrable", ScalarValue::Boolean(Some(false))),
        ("condeferred", ScalarValue::Boolean(Some(false))),
        ("convalidated", ScalarValue::Boolean(Some(true))),
        ("conrelid", ScalarValue::Int64(Some(k.oid))),
        ("conindid", ScalarValue::Int64(Some(k.index_oid()))),
        ("conislocal", ScalarValue::Boolean(Some(true))),
        ("connoinherit", ScalarValue::Boolean(Some(true))),
    ];
    if let Ok(field) = schema.field_with_name("conkey") {
        row.push(("conkey", int2vector(field, &k.attnums(), true)));
    }
    row
}

/// An `int2vector` (`array`: an `int2[]`) value in whatever Arrow type the catalog table gives
/// the column: a list of Int16, or PostgreSQL's text form (`1 3`; `{1,3}`).
fn int2vector(field: &Field, values: &[i16], array: bool) -> ScalarValue {
    match field.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let array: ArrayRef = Arc::new(Int16Array::from(values.to_vec()));
            ScalarValue::List(Arc::new(datafusion::arrow::array::ListArray::new(
                Arc::new(Field::new_list_field(DataType::Int16, true)),
                datafusion::arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
                array,
                None,
            )))
        }
        _ => {
            let items = values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
            ScalarValue::Utf8(Some(if array { format!("{{{}}}", items.join(",")) } else { items.join(" ") }))
        }
    }
}

/// One row of `schema`: `values` by name (cast to the column's type), else `base`'s value, else
/// NULL where the column allows it, else the type's zero.
fn row_of(schema: &SchemaRef, base: Option<&Row>, values: &[(&str, ScalarValue)]) -> DfResult<Vec<ScalarValue>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let ty = f.data_type();
            if let Some((_, v)) = values.iter().find(|(n, _)| *n == f.name()) {
                return match v.cast_to(ty) {
                    Ok(v) => Ok(v),
                    Err(_) => ScalarValue::try_from(ty),
                };
            }
            if let Some(v) = base.and_then(|b| b.get(f.name())) {
                return Ok(v.clone());
            }
            if f.is_nullable() {
                ScalarValue::try_from(ty)
            } else {
                ScalarValue::new_default(ty)
            }
        })
        .collect()
}

fn batch_of(schema: &SchemaRef, rows: &[Vec<ScalarValue>]) -> DfResult<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let values = rows.iter().map(|r| r[c].clone());
            ScalarValue::iter_to_array(values)
                .and_then(|a| Ok(datafusion::arrow::compute::cast(&a, schema.field(c).data_type())?))
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `pg_get_indexdef(oid [, column, pretty])` / `pg_get_constraintdef(oid [, pretty])` for the
/// primary keys the catalog showed; NULL for any other OID.
#[derive(Debug)]
struct DefinitionUdf {
    name: &'static str,
    signature: Signature,
    defs: Arc<Definitions>,
}

impl DefinitionUdf {
    fn new(name: &'static str, defs: Arc<Definitions>) -> Self {
        Self { name, signature: Signature::variadic_any(Volatility::Stable), defs }
    }
}

impl PartialEq for DefinitionUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for DefinitionUdf {}

impl std::hash::Hash for DefinitionUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for DefinitionUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(first) = args.args.first() else {
            return Err(DataFusionError::Plan(format!("{} needs an OID", self.name)));
        };
        let oids = datafusion::arrow::compute::cast(&first.to_array(args.number_rows)?, &DataType::Int64)?;
        let oids = as_int64_array(&oids)?;
        let defs = self.defs.0.read().expect("definitions lock");
        let out: StringArray = oids.iter().map(|oid| oid.and_then(|o| defs.get(&o).cloned())).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_as_postgres_prints_them() {
        assert_eq!(quoted("t_psql"), "t_psql");
        assert_eq!(quoted("Mixed"), "\"Mixed\"");
        assert_eq!(quoted("1a"), "\"1a\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn rows_take_given_values_then_the_base_then_null_or_zero() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("relname", DataType::Utf8, false),
            Field::new("relkind", DataType::Utf8, false),
            Field::new("reloptions", DataType::Utf8, true),
            Field::new("relpages", DataType::Int32, false),
        ]));
        let base: Row = [("relkind".to_string(), ScalarValue::Utf8(Some("r".into())))].into_iter().collect();
        let row = row_of(
            &schema,
            Some(&base),
            &[("oid", ScalarValue::Int64(Some(7))), ("relname", ScalarValue::Utf8(Some("t_pkey".into())))],
        )
        .unwrap();
        assert_eq!(
            row,
            [
                ScalarValue::Int32(Some(7)),
                ScalarValue::Utf8(Some("t_pkey".into())),
                ScalarValue::Utf8(Some("r".into())),
                ScalarValue::Utf8(None),
                ScalarValue::Int32(Some(0)),
            ]
        );
        let batch = batch_of(&schema, &[row]).unwrap();
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn int2vectors_follow_the_column_type() {
        let list = Field::new("indkey", DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true))), true);
        let ScalarValue::List(l) = int2vector(&list, &[1, 3], false) else { panic!("not a list") };
        assert_eq!(l.value(0).len(), 2);
        let text = Field::new("indkey", DataType::Utf8, true);
        assert_eq!(int2vector(&text, &[1, 3], false), ScalarValue::Utf8(Some("1 3".into())));
        assert_eq!(int2vector(&text, &[1, 3], true), ScalarValue::Utf8(Some("{1,3}".into())));
    }
}
