//! raftable's amendments to the `pg_catalog` of datafusion-pg-catalog: stable table OIDs,
//! primary keys, sequences and column defaults as PostgreSQL shows them.
//!
//! datafusion-pg-catalog builds `pg_class` and `pg_attribute` from DataFusion's catalogs, its
//! OIDs numbered per session as the catalog is first read, and knows no indexes (its
//! `pg_index` and `pg_constraint` hold only PostgreSQL's own system rows). So psql's `\d`,
//! SQLAlchemy's and pgJDBC's metadata calls found no primary key, and a RowDescription could
//! not name a column's table (pgJDBC asks `pg_attribute` by that OID for `isNullable`).
//! [`amend`] wraps that `pg_catalog` in [`Overlay`], which at every scan:
//! - gives each user table the OID [`TableDef::oid`] derives from its raftable id (the same in
//!   every session and on every node, as a PostgreSQL OID is), in `pg_class` and in
//!   `pg_attribute`;
//! - adds each table's primary key: a unique btree index `<table>_pkey` (a `pg_class` row of
//!   relkind 'i' and a `pg_index` row) and a constraint (`pg_constraint`, contype 'p'),
//!   described by `pg_get_indexdef` / `pg_get_constraintdef`;
//! - adds each table's CHECK constraints and foreign keys (`pg_constraint` contype 'c', 'f');
//! - adds the COMMENT ON texts of tables, views and columns (`pg_description`,
//!   `obj_description`, `col_description`);
//! - gives each view the OID [`ViewDef::oid`] derives (`pg_class` relkind 'v'), lists it in
//!   `pg_views`, and its query through `pg_get_viewdef`;
//! - adds each sequence (`pg_class` relkind 'S', `pg_sequence`) and each column default
//!   (`pg_attrdef`, whose `adbin` holds the text `pg_get_expr` returns, and `atthasdef` /
//!   `attidentity` in `pg_attribute`).
//!
//! (The result columns' origin in RowDescription, which uses the same OIDs, is
//! `columns::origin_field`.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use datafusion::arrow::array::{Array, ArrayRef, Int16Array, Int64Array, ListArray, StringArray, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, SchemaRef};
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

use super::cache::Catalog;
use super::provider::{CATALOG, PUBLIC};
use crate::ast::rewrite::{EXPAND, REGCLASS_OUT, SYSTEM_RELATIONS};
use crate::settings::Settings;
use crate::table::{
    split_name, ColumnDef, ForeignKeyDef, Identity, IndexDef, IndexState, KeyAction, SequenceDef, TableDef, ViewDef,
    INDOPTION_DESC, INDOPTION_NULLS_FIRST,
};
use crate::types::SqlType;

/// A user table's primary key index's OID is its table's ([`TableDef::oid`]) plus this, its
/// constraint's that plus twice this: datafusion-pg-catalog numbers the other objects upwards
/// from 16384, PostgreSQL's own are below that, so these never meet.
const INDEX_OID: i64 = 0x2000_0000;
/// A column default's `pg_attrdef` OID is this plus its table's id (low 16 bits) shifted left
/// 12 bits plus its column number: below 2^31, as the catalog's OID columns are int4.
const ATTRDEF_OID: i64 = 3 * INDEX_OID;
/// A CHECK constraint's OID: this plus its table's id (low 16 bits) shifted left 8 bits plus
/// its position among the table's checks.
const CHECK_OID: i64 = 0x7000_0000;
/// A FOREIGN KEY constraint's OID: this plus its table's id (low 16 bits) shifted left 8 bits
/// plus its position among the table's keys.
const FOREIGN_KEY_OID: i64 = 0x7100_0000;
/// `pg_am`'s OID of btree.
const BTREE: i64 = 403;
/// `pg_am`'s OID of the heap table access method.
const HEAP: i64 = 2;

/// Wraps the session's `pg_catalog` schema (registered by datafusion-pg-catalog) so it shows
/// primary keys, and registers `pg_get_indexdef` and `pg_get_constraintdef`.
pub(crate) fn amend(ctx: &SessionContext, catalog: Arc<Catalog>, settings: Settings) -> DfResult<()> {
    let schemas = ctx.catalog(CATALOG).ok_or_else(|| DataFusionError::Plan("no raftable catalog".into()))?;
    let inner = schemas.schema("pg_catalog").ok_or_else(|| DataFusionError::Plan("no pg_catalog".into()))?;
    schemas.register_schema("pg_catalog", Arc::new(Overlay { inner, catalog: catalog.clone(), settings }))?;
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_indexdef", catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_constraintdef", catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_expr", catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_viewdef", catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("pg_get_triggerdef", catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new(REGCLASS_OUT, catalog.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new("to_regclass", catalog.clone())));
    for name in ["pg_collation_is_visible", "pg_type_is_visible", "pg_function_is_visible", "pg_table_is_visible"] {
        ctx.register_udf(ScalarUDF::new_from_impl(Visible::new(name, catalog.clone())));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Visible::new("shobj_description", catalog.clone())));
    for name in ["pg_size_pretty", "pg_table_size", "pg_relation_size", "pg_total_relation_size", "pg_indexes_size"] {
        ctx.register_udf(ScalarUDF::new_from_impl(Size::new(name)));
    }
    for name in ["obj_description", "col_description"] {
        ctx.register_udf(ScalarUDF::new_from_impl(DefinitionUdf::new(name, catalog.clone())));
    }
    ctx.register_udf(encoding_name());
    Ok(())
}

/// `pg_collation_is_visible(oid)`, `pg_type_is_visible(oid)`, `pg_function_is_visible(oid)`:
/// true (the search path is `public`, where all user types and functions are, and
/// `pg_catalog`). `pg_table_is_visible(oid)`: true for those, false for the relations of the
/// other schemas: the system's (`raftable`, `information_schema`), which datafusion-pg-catalog
/// numbers in between (applications listing tables, SQLAlchemy, Alembic, Django, must not take
/// raftable's system tables for theirs), and those CREATE SCHEMA made. And
/// `shobj_description(oid, catalog)`: NULL (no shared object has a comment).
struct Visible {
    name: &'static str,
    signature: Signature,
    catalog: Arc<Catalog>,
}

impl Visible {
    fn new(name: &'static str, catalog: Arc<Catalog>) -> Self {
        Self { name, signature: Signature::variadic_any(Volatility::Stable), catalog }
    }

    /// The OIDs of the relations in schemas other than `public`: tables, their indexes, views
    /// and sequences.
    fn elsewhere(&self) -> HashSet<i64> {
        if self.catalog.cached_schemas().is_empty() {
            return HashSet::new();
        }
        let away = |name: &str| split_name(name).0 != PUBLIC;
        let mut oids = HashSet::new();
        for t in self.catalog.all().iter().filter(|t| away(&t.name)) {
            oids.insert(i64::from(t.oid()));
            oids.insert(i64::from(t.oid()) + INDEX_OID);
            oids.extend(t.indexes.iter().map(|i| i64::from(i.oid())));
        }
        oids.extend(self.catalog.cached_views().iter().filter(|v| away(&v.name)).map(|v| i64::from(v.oid())));
        oids.extend(self.catalog.sequences().iter().filter(|s| away(&s.name)).map(|s| i64::from(s.oid())));
        oids
    }

    fn describes(&self) -> bool {
        self.name.ends_with("description")
    }
}

impl std::fmt::Debug for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Visible {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Visible {}

impl std::hash::Hash for Visible {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for Visible {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(if self.describes() { DataType::Utf8 } else { DataType::Boolean })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if self.describes() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_null_array(
                &DataType::Utf8,
                args.number_rows,
            )));
        }
        let Some(oids) = args.args.first() else {
            return Err(DataFusionError::Plan(format!("{} needs an argument", self.name)));
        };
        let oids = oids.to_array(args.number_rows)?;
        let tables = self.name == "pg_table_is_visible";
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
        let oids = as_int64_array(&oids)?;
        let user = i64::from(TableDef::oid_base());
        let elsewhere = if tables { self.elsewhere() } else { HashSet::new() };
        let visible: datafusion::arrow::array::BooleanArray = (0..oids.len())
            .map(|i| {
                let oid = oids.value(i);
                let shown = !tables || oid < 16384 || (oid >= user && !elsewhere.contains(&oid));
                oids.is_valid(i).then_some(shown)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(visible)))
    }
}

/// `pg_encoding_to_char(encoding)`: PostgreSQL's name of an encoding number (`UTF8` for 6, the
/// only server encoding here; datafusion-pg-catalog's says `UTF-8`), '' for an unknown one.
fn encoding_name() -> ScalarUDF {
    let name = |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
        let codes = ColumnarValue::values_to_arrays(args)?;
        let codes = datafusion::arrow::compute::cast(&codes[0], &DataType::Int64)?;
        let names: StringArray = as_int64_array(&codes)?
            .iter()
            .map(|c| c.map(|c| ["SQL_ASCII", "", "", "", "", "", "UTF8"].get(c as usize).copied().unwrap_or("")))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(names)))
    };
    datafusion::logical_expr::create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(name),
    )
}

/// `pg_size_pretty(bytes)`: a size as PostgreSQL prints it (`10239 bytes`, `10 kB`, `20 MB`,
/// rounded half away from zero). `pg_table_size(oid)`, `pg_relation_size`,
/// `pg_total_relation_size`, `pg_indexes_size`: NULL, unknown (a table's rows are spread over
/// its shards' replicas; nothing sums them yet), so psql's `\dt+` shows no size rather than a
/// wrong one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Size {
    name: &'static str,
    signature: Signature,
}

impl Size {
    fn new(name: &'static str) -> Self {
        Self { name, signature: Signature::variadic_any(Volatility::Stable) }
    }

    fn pretty(&self) -> bool {
        self.name == "pg_size_pretty"
    }
}

/// `bytes` as `pg_size_pretty` prints it: bytes below 10 kB, then the largest unit in which
/// it is below 20480 halves (kB, MB, GB, TB, PB), rounded half away from zero.
fn size_pretty(bytes: i64) -> String {
    if bytes.abs() < 10 * 1024 {
        return format!("{bytes} bytes");
    }
    let half_rounded = |x: i64| (x + x.signum()) / 2;
    // One extra bit kept for the rounding.
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < 20 * 1024 - 1 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

impl ScalarUDFImpl for Size {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(if self.pretty() { DataType::Utf8 } else { DataType::Int64 })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !self.pretty() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_null_array(
                &DataType::Int64,
                args.number_rows,
            )));
        }
        let Some(first) = args.args.first() else {
            return Err(DataFusionError::Plan("pg_size_pretty needs an argument".into()));
        };
        let sizes = datafusion::arrow::compute::cast(&first.to_array(args.number_rows)?, &DataType::Int64)?;
        let sizes = as_int64_array(&sizes)?;
        let out: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `_pg_expandarray(a)`: the list of `{x: element, n: position}` of an int2vector / array
/// (a list, or its text form as the catalog tables hold it: `1 3`, `{1,3}`, `[1, 3]`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn new() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }

    fn pair_fields() -> Fields {
        Fields::from(vec![Field::new("x", DataType::Int64, true), Field::new("n", DataType::Int64, true)])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        EXPAND
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Struct(Self::pair_fields()), true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let (mut xs, mut ns, mut lengths, mut valid) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..array.len() {
            let items: Vec<i64> = if array.is_null(i) {
                Vec::new()
            } else {
                match ScalarValue::try_from_array(&array, i)? {
                    ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)) | ScalarValue::LargeUtf8(Some(t)) => t
                        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
                        .filter(|s| !s.is_empty())
                        .filter_map(|s| s.parse().ok())
                        .collect(),
                    ScalarValue::List(l) => {
                        let values = datafusion::arrow::compute::cast(&l.value(0), &DataType::Int64)?;
                        as_int64_array(&values)?.iter().flatten().collect()
                    }
                    other => return Err(DataFusionError::Plan(format!("{EXPAND} of {}", other.data_type()))),
                }
            };
            for (n, x) in items.iter().enumerate() {
                xs.push(*x);
                ns.push(n as i64 + 1);
            }
            lengths.push(items.len());
            valid.push(!array.is_null(i));
        }
        let pairs = StructArray::new(
            Self::pair_fields(),
            vec![Arc::new(Int64Array::from(xs)) as ArrayRef, Arc::new(Int64Array::from(ns))],
            None,
        );
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Struct(Self::pair_fields()), true)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(pairs),
            Some(NullBuffer::from(valid)),
        );
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// An index as the catalog shows it: a table's primary key, or one of its secondary indexes
/// (not one being dropped), with the table's OID.
struct Keyed {
    oid: i64,
    def: Arc<TableDef>,
    /// None: the primary key.
    index: Option<IndexDef>,
}

/// The indexes of `def`: its primary key (unless the hidden row id), then its secondary
/// indexes that writers maintain.
fn keyed_of(def: &Arc<TableDef>) -> Vec<Keyed> {
    let oid = i64::from(def.oid());
    let pk = (!def.has_rowid() && !def.pk.is_empty()).then(|| Keyed { oid, def: def.clone(), index: None });
    let secondary = def.indexes.iter().filter(|i| i.writable());
    pk.into_iter().chain(secondary.map(|i| Keyed { oid, def: def.clone(), index: Some(i.clone()) })).collect()
}

/// What a scan of the amended tables needs: the keyed tables, `pg_class`'s rows (OIDs as
/// datafusion-pg-catalog numbers them), its OID of each user table mapped to
/// [`TableDef::oid`], every user table and sequence, and the OIDs of the schemas. Empty for the
/// tables whose rows come from the catalog alone ([`Amended::reads_classes`]).
#[derive(Default)]
struct Snapshot {
    keyed: Vec<Keyed>,
    classes: Vec<Row>,
    oids: HashMap<i64, i64>,
    tables: Vec<Arc<TableDef>>,
    sequences: Vec<Arc<SequenceDef>>,
    namespaces: HashMap<String, i64>,
}

impl Snapshot {
    /// The OID of the schema of the relation with catalog name `name`.
    fn namespace(&self, name: &str) -> Option<i64> {
        self.namespaces.get(split_name(name).0).copied()
    }
}

impl Keyed {
    fn index_oid(&self) -> i64 {
        match &self.index {
            None => self.oid + INDEX_OID,
            Some(i) => i64::from(i.oid()),
        }
    }

    fn constraint_oid(&self) -> i64 {
        self.index_oid() + INDEX_OID
    }

    fn index_name(&self) -> String {
        match &self.index {
            None => self.def.pkey_name(),
            Some(i) => i.name.clone(),
        }
    }

    fn columns(&self) -> &[usize] {
        match &self.index {
            None => &self.def.pk,
            Some(i) => &i.columns,
        }
    }

    fn unique(&self) -> bool {
        self.index.as_ref().is_none_or(|i| i.unique)
    }

    /// Its constraint's `contype`: 'p' for the primary key, 'u' for a UNIQUE constraint's
    /// index; none for an index of its own.
    fn contype(&self) -> Option<&'static str> {
        match &self.index {
            None => Some("p"),
            Some(i) if i.constraint => Some("u"),
            Some(_) => None,
        }
    }

    /// Whether queries may use it (`indisvalid`; a write-only index is `indisready` only).
    fn valid(&self) -> bool {
        self.index.as_ref().is_none_or(|i| i.state == IndexState::Public)
    }

    /// The key's column numbers, in key order.
    fn attnums(&self) -> Vec<i16> {
        self.columns().iter().filter_map(|c| self.def.attnum(*c)).collect()
    }

    fn key_columns(&self) -> String {
        self.columns().iter().map(|c| quoted(&self.def.columns[*c].name)).collect::<Vec<_>>().join(", ")
    }

    /// The `indoption` bits of each key column (none for a primary key or UNIQUE constraint).
    fn options(&self) -> Vec<i16> {
        let index = self.index.as_ref();
        (0..self.columns().len()).map(|n| index.map_or(0, |i| i.option(n))).collect()
    }

    /// The key columns as `pg_get_indexdef` prints them: with their order when not the default.
    fn ordered_columns(&self) -> String {
        let options = self.options();
        let column = |(n, c): (usize, &usize)| {
            let name = quoted(&self.def.columns[*c].name);
            let (desc, nulls_first) = (options[n] & INDOPTION_DESC != 0, options[n] & INDOPTION_NULLS_FIRST != 0);
            match (desc, nulls_first) {
                (false, false) => name,
                (false, true) => format!("{name} NULLS FIRST"),
                (true, true) => format!("{name} DESC"),
                (true, false) => format!("{name} DESC NULLS LAST"),
            }
        };
        self.columns().iter().enumerate().map(column).collect::<Vec<_>>().join(", ")
    }

    /// `pg_get_indexdef`.
    fn index_definition(&self) -> String {
        format!(
            "CREATE {}INDEX {} ON {}.{} USING btree ({})",
            if self.unique() { "UNIQUE " } else { "" },
            quoted(&self.index_name()),
            quoted(split_name(&self.def.name).0),
            quoted(self.def.bare_name()),
            self.ordered_columns()
        )
    }

    /// `pg_get_constraintdef`.
    fn constraint_definition(&self) -> Option<String> {
        match self.contype()? {
            "p" => Some(format!("PRIMARY KEY ({})", self.key_columns())),
            _ => Some(format!("UNIQUE ({})", self.key_columns())),
        }
    }
}

/// A relation's name as PostgreSQL prints one that may be off the search path: bare in
/// `public`, else qualified by its schema.
pub(crate) fn shown_name(name: &str) -> String {
    match split_name(name) {
        (PUBLIC, bare) => quoted(bare),
        (schema, bare) => format!("{}.{}", quoted(schema), quoted(bare)),
    }
}

/// An identifier as PostgreSQL prints it (`quote_ident`): quoted unless plain lower-case.
pub(crate) fn quoted(name: &str) -> String {
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
    /// The session's, which `pg_settings` shows.
    settings: Settings,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum Amended {
    Class,
    Attribute,
    Index,
    Constraint,
    Attrdef,
    Sequence,
    Depend,
    Views,
    Description,
    Settings,
    Database,
    Roles,
}

impl Amended {
    /// Whether the rows added need the [`Snapshot`] (which scans `pg_namespace` and `pg_class`).
    fn reads_classes(self) -> bool {
        !matches!(self, Amended::Views | Amended::Settings | Amended::Database | Amended::Roles)
    }
}

/// The settings `pg_settings` shows beside the session's and datafusion-pg-catalog's
/// (`standard_conforming_strings`): PostgreSQL 15's fixed limits and version, which drivers
/// read (pgJDBC's `getMaxIndexKeys`, asked by `getImportedKeys`), with their units; and the
/// names PostgreSQL spells in mixed case.
const SETTINGS: &[(&str, &str, Option<&str>)] = &[
    ("max_index_keys", "32", None),
    ("max_identifier_length", "63", None),
    ("max_function_args", "100", None),
    ("server_version", "15.0", None),
    ("server_version_num", "150000", None),
    ("server_encoding", "UTF8", None),
    ("client_encoding", "UTF8", None),
    ("block_size", "8192", None),
    ("integer_datetimes", "on", None),
    ("DateStyle", "ISO, MDY", None),
    ("IntervalStyle", "postgres", None),
    ("TimeZone", "UTC", None),
];

#[async_trait]
impl SchemaProvider for Overlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(ADDED_VIEWS.iter().map(|v| v.to_string()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if ADDED_VIEWS.contains(&name) {
            return self.added_view(name).map(Some);
        }
        let kind = match name {
            "pg_class" => Amended::Class,
            "pg_attribute" => Amended::Attribute,
            "pg_index" => Amended::Index,
            "pg_constraint" => Amended::Constraint,
            "pg_attrdef" => Amended::Attrdef,
            "pg_sequence" => Amended::Sequence,
            "pg_depend" => Amended::Depend,
            "pg_views" => Amended::Views,
            "pg_description" => Amended::Description,
            "pg_settings" => Amended::Settings,
            "pg_database" => Amended::Database,
            "pg_roles" => Amended::Roles,
            _ => return self.inner.table(name).await,
        };
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        let overlay =
            Overlay { inner: self.inner.clone(), catalog: self.catalog.clone(), settings: self.settings.clone() };
        let schema = with_arrays(&table.schema(), kind);
        Ok(Some(Arc::new(AmendedTable { table, kind, schema, overlay: Arc::new(overlay) })))
    }

    fn table_exist(&self, name: &str) -> bool {
        ADDED_VIEWS.contains(&name) || self.inner.table_exist(name)
    }
}

/// Views PostgreSQL has and datafusion-pg-catalog lacks, which pgAdmin reads at connect and
/// when it shows a schema or table ([`Overlay::added_view`]).
const ADDED_VIEWS: [&str; 2] = ["pg_user", "pg_seclabels"];

/// The OID of PostgreSQL's bootstrap superuser, which owns every object (`relowner`, `datdba`).
pub(crate) const SUPERUSER_OID: i32 = 10;

/// The session's user as a role (`pg_roles`): raftable has no roles yet (no authentication:
/// every user may do everything), so whoever connected is the superuser, of PostgreSQL's
/// bootstrap superuser's OID, which owns every object.
fn role_row(user: String) -> Vec<(&'static str, ScalarValue)> {
    let yes = || ScalarValue::Boolean(Some(true));
    vec![
        ("rolname", ScalarValue::Utf8(Some(user))),
        ("rolsuper", yes()),
        ("rolinherit", yes()),
        ("rolcreaterole", yes()),
        ("rolcreatedb", yes()),
        ("rolcanlogin", yes()),
        ("rolreplication", yes()),
        ("rolconnlimit", ScalarValue::Int32(Some(-1))),
        ("rolpassword", ScalarValue::Utf8(Some("********".into()))),
        ("rolbypassrls", yes()),
        ("oid", ScalarValue::Int32(Some(SUPERUSER_OID))),
    ]
}

impl Overlay {
    /// One of [`ADDED_VIEWS`]: `pg_user`, the session's user as in [`role_row`];
    /// `pg_seclabels`, empty (no security labels).
    fn added_view(&self, name: &str) -> DfResult<Arc<dyn TableProvider>> {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let list = |n: &str| Field::new(n, DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true);
        let (fields, rows) = match name {
            "pg_user" => {
                let flag = |n: &str| Field::new(n, DataType::Boolean, true);
                let fields = vec![
                    text("usename"),
                    Field::new("usesysid", DataType::Int64, true),
                    flag("usecreatedb"),
                    flag("usesuper"),
                    flag("userepl"),
                    flag("usebypassrls"),
                    text("passwd"),
                    Field::new(
                        "valuntil",
                        DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("+00:00".into())),
                        true,
                    ),
                    list("useconfig"),
                ];
                let user = self.settings.get(crate::settings::USER_SETTING).unwrap_or_default();
                let yes = || ScalarValue::Boolean(Some(true));
                let row = vec![
                    ("usename", ScalarValue::Utf8(Some(user))),
                    ("usesysid", ScalarValue::Int64(Some(i64::from(SUPERUSER_OID)))),
                    ("usecreatedb", yes()),
                    ("usesuper", yes()),
                    ("userepl", yes()),
                    ("usebypassrls", yes()),
                    ("passwd", ScalarValue::Utf8(Some("********".into()))),
                ];
                (fields, vec![row])
            }
            _ => {
                let oid = |n: &str| Field::new(n, DataType::Int64, true);
                let fields = vec![
                    oid("objoid"),
                    oid("classoid"),
                    Field::new("objsubid", DataType::Int32, true),
                    text("objtype"),
                    oid("objnamespace"),
                    text("objname"),
                    text("provider"),
                    text("label"),
                ];
                (fields, Vec::new())
            }
        };
        let schema: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let rows = rows.iter().map(|r| row_of(&schema, None, r)).collect::<DfResult<Vec<_>>>()?;
        let batches = match rows.is_empty() {
            true => Vec::new(),
            false => vec![batch_of(&schema, &rows)?],
        };
        Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
    }
}

impl Overlay {
    /// The user tables, their OIDs in `pg_class` and ours, and those with a primary key.
    async fn snapshot(&self, state: &dyn CatalogSession) -> DfResult<Snapshot> {
        let namespaces = self.rows("pg_namespace", state).await?;
        let namespaces: HashMap<String, i64> =
            namespaces.iter().filter_map(|r| Some((text(r, "nspname")?.to_string(), int(r, "oid")?))).collect();
        // The `pg_class` row of a relation: its bare name in its schema.
        let class = |r: &Row, name: &str, kind: &str| {
            let (schema, bare) = split_name(name);
            let namespace = namespaces.get(schema).copied();
            text(r, "relname") == Some(bare) && text(r, "relkind") == Some(kind) && int(r, "relnamespace") == namespace
        };
        let classes = self.rows("pg_class", state).await?;
        let mut keyed = Vec::new();
        let mut oids = HashMap::new();
        let tables = self.catalog.all();
        for def in tables.iter().cloned() {
            let row = classes.iter().find(|r| class(r, &def.name, "r"));
            let Some(theirs) = row.and_then(|r| int(r, "oid")) else { continue };
            let oid = i64::from(def.oid());
            oids.insert(theirs, oid);
            keyed.extend(keyed_of(&def));
        }
        let views = self.catalog.cached_views();
        for view in &views {
            let row = classes.iter().find(|r| class(r, &view.name, "v"));
            if let Some(theirs) = row.and_then(|r| int(r, "oid")) {
                oids.insert(theirs, i64::from(view.oid()));
            }
        }
        Ok(Snapshot { keyed, classes, oids, tables, sequences: self.catalog.sequences(), namespaces })
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

pub(super) async fn scan_all(table: &Arc<dyn TableProvider>, state: &dyn CatalogSession) -> DfResult<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// One of the amended tables: the inner table's rows plus (or, for `pg_class`, changed by) the
/// primary keys, built at each scan.
#[derive(Debug)]
struct AmendedTable {
    table: Arc<dyn TableProvider>,
    kind: Amended,
    /// The inner table's, with its vector columns as arrays ([`with_arrays`]).
    schema: SchemaRef,
    overlay: Arc<Overlay>,
}

/// The `int2vector`, `oidvector` and array columns of `pg_index` and `pg_constraint`, with
/// their element types and vector type (None: an array): datafusion-pg-catalog holds them as
/// text (`1 3`, `{1,3}`), so `unnest(indkey)` (SQLAlchemy's and Django's reflection) failed; the
/// overlay makes them lists, as PostgreSQL's are arrays, and marks the vectors
/// ([`crate::columns::vector_field`]) to go on the wire as PostgreSQL's text (`0 0`), which
/// SQLAlchemy splits at the spaces.
fn array_columns(kind: Amended) -> &'static [(&'static str, DataType, Option<&'static str>)] {
    match kind {
        Amended::Index => &[
            ("indkey", DataType::Int16, Some("int2vector")),
            ("indoption", DataType::Int16, Some("int2vector")),
            ("indclass", DataType::Int32, Some("oidvector")),
            ("indcollation", DataType::Int32, Some("oidvector")),
        ],
        Amended::Constraint => &[("conkey", DataType::Int16, None), ("confkey", DataType::Int16, None)],
        _ => &[],
    }
}

/// `schema` with [`array_columns`] as lists of their element type, `pg_class.reloptions`
/// (NULL: no storage options) and `relacl` (NULL: the default privileges), which
/// datafusion-pg-catalog lacks and SQLAlchemy, DBeaver and pgAdmin read.
fn with_arrays(schema: &SchemaRef, kind: Amended) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match array_columns(kind).iter().find(|(name, ..)| f.name() == name) {
            Some((_, element, vector)) if f.data_type() == &DataType::Utf8 => {
                let list =
                    Field::new(f.name(), DataType::List(Arc::new(Field::new_list_field(element.clone(), true))), true);
                match vector {
                    Some(type_name) => crate::columns::vector_field(list, type_name),
                    None => list,
                }
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    if matches!(kind, Amended::Class) {
        for name in ["reloptions", "relacl"].into_iter().filter(|n| schema.field_with_name(n).is_err()) {
            fields.push(Field::new(name, DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true));
        }
    }
    // PostgreSQL 15's collation version (pgAdmin reads it): NULL, as for the libc provider.
    if matches!(kind, Amended::Database) && schema.field_with_name("datcollversion").is_err() {
        fields.push(Field::new("datcollversion", DataType::Utf8, true));
    }
    Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// An inner batch in `schema` (the amended one): text vectors parsed into lists, the columns
/// added NULL.
fn arrays_parsed(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    for field in &schema.fields()[columns.len()..] {
        columns.push(datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()));
    }
    for (i, field) in schema.fields().iter().enumerate() {
        let DataType::List(element) = field.data_type() else { continue };
        if columns[i].data_type() != &DataType::Utf8 {
            continue;
        }
        let texts = datafusion::common::cast::as_string_array(&columns[i])?;
        let lists = texts
            .iter()
            .map(|t| {
                let t = t?;
                let items = t.trim_matches(|c| c == '{' || c == '}' || c == '[' || c == ']');
                let values: Vec<ScalarValue> = items
                    .split([' ', ','])
                    .filter(|x| !x.is_empty())
                    .map(|x| ScalarValue::Utf8(Some(x.to_string())).cast_to(element.data_type()))
                    .collect::<DfResult<_>>()
                    .ok()?;
                Some(ScalarValue::List(ScalarValue::new_list_nullable(&values, element.data_type())))
            })
            .map(|v| v.unwrap_or_else(|| ScalarValue::try_from(field.data_type()).expect("list type")))
            .collect::<Vec<_>>();
        columns[i] = ScalarValue::iter_to_array(lists)?;
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for AmendedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        let snapshot = match self.kind.reads_classes() {
            true => self.overlay.snapshot(state).await?,
            false => Snapshot::default(),
        };
        let Snapshot { keyed, classes, oids, .. } = &snapshot;
        let schema = self.schema();
        let mut batches = scan_all(&self.table, state)
            .await?
            .iter()
            .map(|b| arrays_parsed(b, &schema))
            .collect::<DfResult<Vec<_>>>()?;
        // pg_class's index rows copy their table's row, then change what differs.
        let theirs: HashMap<i64, i64> = oids.iter().map(|(theirs, ours)| (*ours, *theirs)).collect();
        let table_row = |oid: i64| classes.iter().find(|r| int(r, "oid") == theirs.get(&oid).copied());
        let added: Vec<(Option<&Row>, Vec<(&str, ScalarValue)>)> = match self.kind {
            Amended::Class => {
                let indexed: HashMap<i64, i64> = oids
                    .iter()
                    .filter(|(_, ours)| keyed.iter().any(|k| k.oid == **ours))
                    .map(|(t, o)| (*t, *o))
                    .collect();
                // psql's `\d` lists CHECK constraints when `relchecks` counts some.
                let checks: HashMap<i64, i64> =
                    snapshot.tables.iter().map(|t| (i64::from(t.oid()), t.checks.len() as i64)).collect();
                let checked: HashMap<i64, i64> = oids
                    .iter()
                    .filter(|(_, ours)| checks.get(ours).is_some_and(|n| *n > 0))
                    .map(|(t, o)| (*t, *o))
                    .collect();
                let count = |ours: i64| ScalarValue::Int64(checks.get(&ours).copied());
                // A table with foreign keys, either side, has PostgreSQL's triggers for them:
                // psql's `\d` lists the keys (and the tables referencing it) only then.
                let keyed_tables: std::collections::HashSet<i64> = snapshot
                    .tables
                    .iter()
                    .filter(|t| !t.foreign_keys.is_empty() || !t.referenced_by.is_empty())
                    .map(|t| i64::from(t.oid()))
                    .collect();
                let triggered: HashMap<i64, i64> =
                    oids.iter().filter(|(_, ours)| keyed_tables.contains(ours)).map(|(t, o)| (*t, *o)).collect();
                // A table's access method is heap (psql's `\d+` prints it); a view has none.
                let table_oids: std::collections::HashSet<i64> =
                    snapshot.tables.iter().map(|t| i64::from(t.oid())).collect();
                let heap: HashMap<i64, i64> =
                    oids.iter().filter(|(_, ours)| table_oids.contains(ours)).map(|(t, o)| (*t, *o)).collect();
                batches = batches
                    .iter()
                    .map(|b| owned_by_superuser(b, "relowner"))
                    .map(|b| replaced(&b?, "oid", "relhasindex", &indexed, |_| ScalarValue::Boolean(Some(true))))
                    .map(|b| replaced(&b?, "oid", "relam", &heap, |_| ScalarValue::Int64(Some(HEAP))))
                    .map(|b| replaced(&b?, "oid", "relchecks", &checked, count))
                    .map(|b| replaced(&b?, "oid", "relhastriggers", &triggered, |_| ScalarValue::Boolean(Some(true))))
                    .map(|b| replaced(&b?, "oid", "oid", oids, |oid| ScalarValue::Int64(Some(oid))))
                    .collect::<DfResult<_>>()?;
                let indexes = keyed.iter().map(|k| (table_row(k.oid), class_row(k)));
                let sequences =
                    snapshot.sequences.iter().map(|s| (None, sequence_class_row(s, snapshot.namespace(&s.name))));
                indexes.chain(sequences).collect()
            }
            Amended::Attribute => {
                batches = batches
                    .iter()
                    .map(|b| replaced(b, "attrelid", "attrelid", oids, |oid| ScalarValue::Int64(Some(oid))))
                    .map(|b| with_defaults(&b?, &snapshot.tables))
                    .collect::<DfResult<_>>()?;
                snapshot.tables.iter().flat_map(|t| system_column_rows(t)).map(|r| (None, r)).collect()
            }
            Amended::Index => keyed.iter().map(|k| (None, index_row(k, &schema))).collect(),
            Amended::Constraint => {
                let keys = keyed.iter().filter(|k| k.contype().is_some()).map(|k| (None, constraint_row(k, &schema)));
                let checks = snapshot.tables.iter().flat_map(|t| check_rows(t, &schema)).map(|r| (None, r));
                let tables = &snapshot.tables;
                let foreign = tables.iter().flat_map(|t| foreign_key_rows(t, tables, &schema)).map(|r| (None, r));
                // Each constraint is in its table's schema.
                let namespaces: HashMap<i64, Option<i64>> =
                    tables.iter().map(|t| (i64::from(t.oid()), snapshot.namespace(&t.name))).collect();
                let in_namespace = |mut row: Vec<(&'static str, ScalarValue)>| {
                    let table = row.iter().find(|(n, _)| *n == "conrelid").and_then(|(_, v)| match v {
                        ScalarValue::Int64(oid) => *oid,
                        _ => None,
                    });
                    let namespace = table.and_then(|t| namespaces.get(&t).copied().flatten());
                    row.push(("connamespace", ScalarValue::Int64(namespace)));
                    row
                };
                keys.chain(checks).chain(foreign).map(|(base, row)| (base, in_namespace(row))).collect()
            }
            Amended::Attrdef => snapshot.tables.iter().flat_map(|t| attrdef_rows(t)).map(|r| (None, r)).collect(),
            Amended::Sequence => snapshot.sequences.iter().map(|s| (None, sequence_row(s))).collect(),
            Amended::Depend => {
                let owned = snapshot.sequences.iter().filter_map(|s| owned_row(s, &snapshot.tables));
                let constraints = keyed.iter().filter(|k| k.contype().is_some()).map(constraint_index_row);
                owned.chain(constraints).map(|r| (None, r)).collect()
            }
            Amended::Views => self.overlay.catalog.cached_views().iter().map(|v| (None, view_row(v))).collect(),
            Amended::Settings => {
                // The session's settings (SET, `set_config`) under PostgreSQL's spelling of
                // their names, then the fixed ones it lacks; each name once.
                let mut shown: HashSet<String> = HashSet::new();
                for batch in &batches {
                    let names = datafusion::common::cast::as_string_array(batch.column(0))?;
                    shown.extend(names.iter().flatten().map(str::to_lowercase));
                }
                let session = self.overlay.settings.all().into_iter().map(|(name, value)| {
                    let fixed = SETTINGS.iter().find(|(n, ..)| n.eq_ignore_ascii_case(&name));
                    let spelled = fixed.map_or(name, |(n, ..)| n.to_string());
                    (spelled, value, fixed.and_then(|(.., unit)| *unit), "user")
                });
                let fixed = SETTINGS.iter().map(|(n, v, unit)| (n.to_string(), v.to_string(), *unit, "internal"));
                session
                    .chain(fixed)
                    .filter(|(name, ..)| shown.insert(name.to_lowercase()))
                    .map(|(name, setting, unit, context)| {
                        let row = vec![
                            ("name", ScalarValue::Utf8(Some(name))),
                            ("setting", ScalarValue::Utf8(Some(setting))),
                            ("unit", ScalarValue::Utf8(unit.map(String::from))),
                            ("context", ScalarValue::Utf8(Some(context.into()))),
                            ("source", ScalarValue::Utf8(Some("default".into()))),
                        ];
                        (None, row)
                    })
                    .collect()
            }
            Amended::Roles => {
                // The session's user, unless datafusion-pg-catalog lists it.
                let user = self.overlay.settings.get(crate::settings::USER_SETTING).unwrap_or_default();
                let mut listed = false;
                for batch in &batches {
                    let names = datafusion::common::cast::as_string_array(batch.column(0))?;
                    listed |= names.iter().flatten().any(|n| n == user);
                }
                match listed {
                    true => Vec::new(),
                    false => vec![(None, role_row(user))],
                }
            }
            Amended::Database => {
                // The one database, under the name the session connected with.
                if let Some(name) = self.overlay.settings.database() {
                    batches = batches.iter().map(|b| database_named(b, &name)).collect::<DfResult<_>>()?;
                }
                Vec::new()
            }
            Amended::Description => {
                let views = self.overlay.catalog.cached_views();
                let tables = snapshot.tables.iter().flat_map(|t| description_rows(t));
                let views = views.iter().filter_map(|v| Some(description_row(v.oid(), 0, v.comment.as_ref()?)));
                tables.chain(views).map(|r| (None, r)).collect()
            }
        };
        let extra = added.iter().map(|(base, values)| row_of(&schema, *base, values)).collect::<DfResult<Vec<_>>>()?;
        if !extra.is_empty() {
            batches.push(batch_of(&schema, &extra)?);
        }
        MemTable::try_new(schema, vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// PostgreSQL 15's system columns of a table (`attnum` < 0), which every table's
/// `pg_attribute` lists (DBeaver reads them): name, type OID, length, number, by value.
const SYSTEM_COLUMNS: [(&str, i64, i16, i16, bool); 6] = [
    ("tableoid", 26, 4, -6, true),
    ("cmax", 29, 4, -5, true),
    ("xmax", 28, 4, -4, true),
    ("cmin", 29, 4, -3, true),
    ("xmin", 28, 4, -2, true),
    ("ctid", 27, 6, -1, false),
];

/// The `pg_attribute` rows of `table`'s [`SYSTEM_COLUMNS`]. Listed only: a query cannot read
/// them (42703).
fn system_column_rows(table: &TableDef) -> impl Iterator<Item = Vec<(&'static str, ScalarValue)>> + '_ {
    SYSTEM_COLUMNS.iter().map(|&(name, ty, len, num, by_value)| {
        let text = |s: &str| ScalarValue::Utf8(Some(s.into()));
        let no = || ScalarValue::Boolean(Some(false));
        vec![
            ("attrelid", ScalarValue::Int64(Some(i64::from(table.oid())))),
            ("attname", text(name)),
            ("atttypid", ScalarValue::Int64(Some(ty))),
            ("attstattarget", ScalarValue::Int32(Some(0))),
            ("attlen", ScalarValue::Int16(Some(len))),
            ("attnum", ScalarValue::Int16(Some(num))),
            ("attcacheoff", ScalarValue::Int32(Some(-1))),
            ("atttypmod", ScalarValue::Int32(Some(-1))),
            ("attbyval", ScalarValue::Boolean(Some(by_value))),
            ("attalign", text(if by_value { "i" } else { "s" })),
            ("attstorage", text("p")),
            ("attnotnull", ScalarValue::Boolean(Some(true))),
            ("atthasdef", no()),
            ("atthasmissing", no()),
            ("attidentity", text("")),
            ("attgenerated", text("")),
            ("attisdropped", no()),
            ("attislocal", ScalarValue::Boolean(Some(true))),
        ]
    })
}

/// `batch` with every row's owner (`column`) [`SUPERUSER_OID`] (datafusion-pg-catalog's is 0).
fn owned_by_superuser(batch: &RecordBatch, column: &str) -> DfResult<RecordBatch> {
    let schema = batch.schema();
    let Ok(i) = schema.index_of(column) else { return Ok(batch.clone()) };
    let owner = ScalarValue::Int32(Some(SUPERUSER_OID)).cast_to(schema.field(i).data_type())?;
    let mut columns = batch.columns().to_vec();
    columns[i] = owner.to_array_of_size(batch.num_rows())?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A `pg_database` batch with the catalog's row named `name`.
fn database_named(batch: &RecordBatch, name: &str) -> DfResult<RecordBatch> {
    let schema = batch.schema();
    let Ok(i) = schema.index_of("datname") else { return Ok(batch.clone()) };
    let names = datafusion::common::cast::as_string_array(batch.column(i))?;
    // Another row of that name (datafusion-pg-catalog lists `postgres` too) goes.
    let keep: datafusion::arrow::array::BooleanArray =
        names.iter().map(|n| Some(n == Some(CATALOG) || n != Some(name))).collect();
    let renamed: StringArray = names.iter().map(|n| n.map(|n| if n == CATALOG { name } else { n })).collect();
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(renamed);
    let batch = RecordBatch::try_new(schema, columns)?;
    Ok(datafusion::arrow::compute::filter_record_batch(&batch, &keep)?)
}

/// `batch` with `column` replaced by `value(ours)` in the rows whose `key` column holds one of
/// datafusion-pg-catalog's table OIDs in `oids` (mapped to ours).
fn replaced(
    batch: &RecordBatch,
    key: &str,
    column: &str,
    oids: &HashMap<i64, i64>,
    value: impl Fn(i64) -> ScalarValue,
) -> DfResult<RecordBatch> {
    let schema = batch.schema();
    let (Ok(key), Ok(target)) = (schema.index_of(key), schema.index_of(column)) else { return Ok(batch.clone()) };
    let keys = datafusion::arrow::compute::cast(batch.column(key), &DataType::Int64)?;
    let keys = as_int64_array(&keys)?;
    let old = batch.column(target);
    let ty = schema.field(target).data_type();
    let values: Vec<ScalarValue> = (0..batch.num_rows())
        .map(|i| match oids.get(&keys.value(i)).filter(|_| keys.is_valid(i)) {
            Some(ours) => value(*ours).cast_to(ty),
            None => ScalarValue::try_from_array(old, i),
        })
        .collect::<DfResult<_>>()?;
    let mut columns = batch.columns().to_vec();
    columns[target] = ScalarValue::iter_to_array(values)?;
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
        ("relnatts", ScalarValue::Int64(Some(k.columns().len() as i64))),
    ]
}

fn sequence_class_row(s: &SequenceDef, namespace: Option<i64>) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("oid", ScalarValue::Int64(Some(i64::from(s.oid())))),
        ("relname", ScalarValue::Utf8(Some(split_name(&s.name).1.to_string()))),
        ("relnamespace", ScalarValue::Int64(namespace)),
        ("reltype", ScalarValue::Int64(Some(0))),
        ("relam", ScalarValue::Int64(Some(0))),
        ("relhasindex", ScalarValue::Boolean(Some(false))),
        ("relpersistence", ScalarValue::Utf8(Some("p".into()))),
        ("relkind", ScalarValue::Utf8(Some("S".into()))),
        ("relnatts", ScalarValue::Int64(Some(3))),
    ]
}

/// The `pg_description` rows of a table's comment and its columns' (`pg_class` objects).
fn description_rows(t: &TableDef) -> Vec<Vec<(&'static str, ScalarValue)>> {
    let table = t.comment.as_ref().map(|c| description_row(t.oid(), 0, c));
    let columns = t.visible().into_iter().filter_map(|i| {
        let comment = t.columns[i].comment.as_ref()?;
        Some(description_row(t.oid(), t.attnum(i)?, comment))
    });
    table.into_iter().chain(columns).collect()
}

fn description_row(oid: i32, subid: i16, text: &str) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("objoid", ScalarValue::Int64(Some(i64::from(oid)))),
        ("classoid", ScalarValue::Int64(Some(PG_CLASS))),
        ("objsubid", ScalarValue::Int64(Some(i64::from(subid)))),
        ("description", ScalarValue::Utf8(Some(text.to_string()))),
    ]
}

/// A view's `pg_views` row.
fn view_row(v: &ViewDef) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("schemaname", ScalarValue::Utf8(Some(split_name(&v.name).0.to_string()))),
        ("viewname", ScalarValue::Utf8(Some(split_name(&v.name).1.to_string()))),
        ("viewowner", ScalarValue::Utf8(Some("postgres".into()))),
        ("definition", ScalarValue::Utf8(Some(view_text(v)))),
    ]
}

/// A view's query as `pg_get_viewdef` gives it: PostgreSQL ends it with a semicolon.
fn view_text(v: &ViewDef) -> String {
    format!("{};", v.query)
}

/// The OID of a table's `n`th CHECK constraint.
fn check_oid(t: &TableDef, n: usize) -> i64 {
    CHECK_OID + (i64::from(t.id & 0xffff) << 8) + n as i64
}

/// A CHECK constraint as `pg_get_constraintdef` prints it: the expression parenthesized, as
/// PostgreSQL deparses a comparison, except in `pretty` form (psql's `\d`).
fn check_text(expr: &str, pretty: bool) -> String {
    if pretty {
        format!("CHECK ({expr})")
    } else {
        format!("CHECK (({expr}))")
    }
}

/// `pg_constraint`'s rows of a table's CHECK constraints (contype 'c').
fn check_rows(t: &TableDef, schema: &SchemaRef) -> Vec<Vec<(&'static str, ScalarValue)>> {
    t.checks
        .iter()
        .enumerate()
        .map(|(n, check)| {
            let mut row = vec![
                ("oid", ScalarValue::Int64(Some(check_oid(t, n)))),
                ("conname", ScalarValue::Utf8(Some(check.name.clone()))),
                ("contype", ScalarValue::Utf8(Some("c".into()))),
                ("condeferrable", ScalarValue::Boolean(Some(false))),
                ("condeferred", ScalarValue::Boolean(Some(false))),
                ("convalidated", ScalarValue::Boolean(Some(true))),
                ("conrelid", ScalarValue::Int64(Some(i64::from(t.oid())))),
                ("conindid", ScalarValue::Int64(Some(0))),
                ("conislocal", ScalarValue::Boolean(Some(true))),
                ("connoinherit", ScalarValue::Boolean(Some(false))),
            ];
            // The columns it names, in table order.
            let attnums: Vec<i16> = (0..t.columns.len())
                .filter(|i| check.mentions(&t.columns[*i].name))
                .filter_map(|i| t.attnum(i))
                .collect();
            if let Ok(field) = schema.field_with_name("conkey") {
                row.push(("conkey", int2vector(field, &attnums, true)));
            }
            row
        })
        .collect()
}

/// The OID of a table's `n`th foreign key.
fn foreign_key_oid(t: &TableDef, n: usize) -> i64 {
    FOREIGN_KEY_OID + (i64::from(t.id & 0xffff) << 8) + n as i64
}

/// A foreign key as `pg_get_constraintdef` prints it (`parent`: the referenced table).
fn foreign_key_text(t: &TableDef, key: &ForeignKeyDef, parent: &TableDef) -> String {
    let names = |def: &TableDef, cols: &[usize]| {
        cols.iter().map(|c| quoted(&def.columns[*c].name)).collect::<Vec<_>>().join(", ")
    };
    let mut text = format!(
        "FOREIGN KEY ({}) REFERENCES {}({})",
        names(t, &key.columns),
        shown_name(&parent.name),
        names(parent, &key.parent_columns)
    );
    for (what, action) in [("UPDATE", key.on_update), ("DELETE", key.on_delete)] {
        if action != KeyAction::NoAction {
            text.push_str(&format!(" ON {what} {}", action.sql()));
        }
    }
    if key.deferrable {
        text.push_str(" DEFERRABLE");
    }
    if key.deferred {
        text.push_str(" INITIALLY DEFERRED");
    }
    text
}

/// `pg_constraint`'s rows of a table's foreign keys (contype 'f'); `tables`: every table, for
/// the referenced ones.
fn foreign_key_rows(
    t: &TableDef,
    tables: &[Arc<TableDef>],
    schema: &SchemaRef,
) -> Vec<Vec<(&'static str, ScalarValue)>> {
    let mut out = Vec::new();
    for (n, key) in t.foreign_keys.iter().enumerate() {
        let Some(parent) = tables.iter().find(|p| p.id == key.parent) else { continue };
        let index = match parent.referenced_key(&key.parent_columns) {
            Some(None) => i64::from(parent.oid()) + INDEX_OID,
            Some(Some(i)) => i64::from(i.oid()),
            None => 0,
        };
        let mut row = vec![
            ("oid", ScalarValue::Int64(Some(foreign_key_oid(t, n)))),
            ("conname", ScalarValue::Utf8(Some(key.name.clone()))),
            ("contype", ScalarValue::Utf8(Some("f".into()))),
            ("condeferrable", ScalarValue::Boolean(Some(key.deferrable))),
            ("condeferred", ScalarValue::Boolean(Some(key.deferred))),
            ("convalidated", ScalarValue::Boolean(Some(true))),
            ("conrelid", ScalarValue::Int64(Some(i64::from(t.oid())))),
            ("conindid", ScalarValue::Int64(Some(index))),
            ("confrelid", ScalarValue::Int64(Some(i64::from(parent.oid())))),
            ("confupdtype", ScalarValue::Utf8(Some(key.on_update.code().into()))),
            ("confdeltype", ScalarValue::Utf8(Some(key.on_delete.code().into()))),
            ("confmatchtype", ScalarValue::Utf8(Some("s".into()))),
            ("conislocal", ScalarValue::Boolean(Some(true))),
            ("connoinherit", ScalarValue::Boolean(Some(true))),
        ];
        let attnums = |def: &TableDef, cols: &[usize]| cols.iter().filter_map(|c| def.attnum(*c)).collect::<Vec<_>>();
        for (name, values) in [("conkey", attnums(t, &key.columns)), ("confkey", attnums(parent, &key.parent_columns))]
        {
            if let Ok(field) = schema.field_with_name(name) {
                row.push((name, int2vector(field, &values, true)));
            }
        }
        out.push(row);
    }
    out
}

/// `pg_class`'s own OID: the class of tables, indexes and sequences in `pg_depend`.
const PG_CLASS: i64 = 1259;
/// `pg_constraint`'s own OID: the class of constraints in `pg_depend`.
const PG_CONSTRAINT: i64 = 2606;

/// `pg_depend`'s row of a sequence owned by a column (SERIAL: deptype 'a'; identity: 'i'),
/// which Alembic and `pg_get_serial_sequence`'s callers read to tie the two.
fn owned_row(s: &SequenceDef, tables: &[Arc<TableDef>]) -> Option<Vec<(&'static str, ScalarValue)>> {
    let (table, column) = s.owned_by.as_ref()?;
    let def = tables.iter().find(|t| t.name == *table)?;
    let c = def.column(column).ok()?;
    let deptype = if def.columns[c].identity.is_some() { "i" } else { "a" };
    Some(vec![
        ("classid", ScalarValue::Int64(Some(PG_CLASS))),
        ("objid", ScalarValue::Int64(Some(i64::from(s.oid())))),
        ("objsubid", ScalarValue::Int64(Some(0))),
        ("refclassid", ScalarValue::Int64(Some(PG_CLASS))),
        ("refobjid", ScalarValue::Int64(Some(i64::from(def.oid())))),
        ("refobjsubid", ScalarValue::Int64(Some(i64::from(def.attnum(c)?)))),
        ("deptype", ScalarValue::Utf8(Some(deptype.into()))),
    ])
}

/// `pg_depend`'s row of a primary key's or UNIQUE constraint's index, which the constraint
/// owns (deptype 'i'): pgAdmin finds an index's constraint through it.
fn constraint_index_row(k: &Keyed) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("classid", ScalarValue::Int64(Some(PG_CLASS))),
        ("objid", ScalarValue::Int64(Some(k.index_oid()))),
        ("objsubid", ScalarValue::Int64(Some(0))),
        ("refclassid", ScalarValue::Int64(Some(PG_CONSTRAINT))),
        ("refobjid", ScalarValue::Int64(Some(k.constraint_oid()))),
        ("refobjsubid", ScalarValue::Int64(Some(0))),
        ("deptype", ScalarValue::Utf8(Some("i".into()))),
    ]
}

/// `pg_sequence`'s row of a sequence.
fn sequence_row(s: &SequenceDef) -> Vec<(&'static str, ScalarValue)> {
    let type_oid = match s.ty {
        SqlType::SmallInt => 21,
        SqlType::Integer => 23,
        _ => 20,
    };
    vec![
        ("seqrelid", ScalarValue::Int64(Some(i64::from(s.oid())))),
        ("seqtypid", ScalarValue::Int64(Some(type_oid))),
        ("seqstart", ScalarValue::Int64(Some(s.start))),
        ("seqincrement", ScalarValue::Int64(Some(s.increment))),
        ("seqmax", ScalarValue::Int64(Some(s.max))),
        ("seqmin", ScalarValue::Int64(Some(s.min))),
        ("seqcache", ScalarValue::Int64(Some(s.cache))),
        ("seqcycle", ScalarValue::Boolean(Some(s.cycle))),
    ]
}

/// The column default as `pg_attrdef.adbin` (and `pg_get_expr`) show it, if it has one.
pub(super) fn default_text(c: &ColumnDef) -> Option<String> {
    if let Some(computed) = &c.computed {
        return Some(computed.display());
    }
    let text = c.default.as_ref()?;
    let literal = format!("'{}'", text.replace('\'', "''"));
    // The cast names the type without its modifiers, as PostgreSQL's deparsing does; a
    // negative number keeps its literal's type (`'-1'::integer` on a bigint column).
    let cast = match c.ty {
        SqlType::Char(_) => "bpchar".to_string(),
        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt | SqlType::Numeric(..) => {
            if text.parse::<i32>().is_ok() {
                "integer".into()
            } else if text.parse::<i64>().is_ok() {
                "bigint".into()
            } else {
                "numeric".into()
            }
        }
        _ => c.ty.base_name(),
    };
    Some(match c.ty {
        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt | SqlType::Numeric(..) if !text.starts_with('-') => {
            text.clone()
        }
        SqlType::Boolean => text.clone(),
        _ => format!("{literal}::{cast}"),
    })
}

/// `pg_attrdef`'s rows of a table: one per column with a default.
fn attrdef_rows(t: &TableDef) -> Vec<Vec<(&'static str, ScalarValue)>> {
    (0..t.columns.len())
        .filter_map(|i| {
            let text = default_text(&t.columns[i])?;
            let attnum = i64::from(t.attnum(i)?);
            Some(vec![
                ("oid", ScalarValue::Int64(Some(ATTRDEF_OID + (i64::from(t.id & 0xffff) << 12) + attnum))),
                ("adrelid", ScalarValue::Int64(Some(i64::from(t.oid())))),
                ("adnum", ScalarValue::Int64(Some(attnum))),
                ("adbin", ScalarValue::Utf8(Some(text))),
            ])
        })
        .collect()
}

/// `pg_attribute`'s batch with `atthasdef` and `attidentity` set for the user tables' columns
/// (`attrelid` already our OIDs).
fn with_defaults(batch: &RecordBatch, tables: &[Arc<TableDef>]) -> DfResult<RecordBatch> {
    let schema = batch.schema();
    let (Ok(relid), Ok(name)) = (schema.index_of("attrelid"), schema.index_of("attname")) else {
        return Ok(batch.clone());
    };
    let relids = datafusion::arrow::compute::cast(batch.column(relid), &DataType::Int64)?;
    let relids = as_int64_array(&relids)?;
    let names = datafusion::arrow::compute::cast(batch.column(name), &DataType::Utf8)?;
    let names = datafusion::common::cast::as_string_array(&names)?;
    let by_oid: HashMap<i64, &Arc<TableDef>> = tables.iter().map(|t| (i64::from(t.oid()), t)).collect();
    let column_of = |i: usize| {
        let t = by_oid.get(&relids.value(i))?;
        t.columns.iter().find(|c| names.is_valid(i) && c.name == names.value(i) && c.is_visible())
    };
    let mut columns = batch.columns().to_vec();
    // Types with a modifier, which the Arrow type alone does not tell: (type OID, typmod).
    let modified = |c: &ColumnDef| match c.ty {
        SqlType::Varchar(Some(n)) => Some((1043, i64::from(n) + 4)),
        SqlType::Varchar(None) => Some((1043, -1)),
        SqlType::Char(n) => Some((1042, i64::from(n) + 4)),
        SqlType::Numeric(p, s) => Some((1700, ((i64::from(p) << 16) | i64::from(s as u8)) + 4)),
        _ => None,
    };
    for (target, value) in [
        (
            "atthasdef",
            &(|c: &ColumnDef| Some(ScalarValue::Boolean(Some(c.has_default() || c.identity.is_some()))))
                as &dyn Fn(&ColumnDef) -> Option<ScalarValue>,
        ),
        ("attidentity", &|c: &ColumnDef| {
            let code = match c.identity {
                Some(Identity::Always) => "a",
                Some(Identity::ByDefault) => "d",
                None => "",
            };
            Some(ScalarValue::Utf8(Some(code.into())))
        }),
        ("atttypid", &|c: &ColumnDef| modified(c).map(|(oid, _)| ScalarValue::Int64(Some(oid)))),
        ("atttypmod", &|c: &ColumnDef| modified(c).map(|(_, typmod)| ScalarValue::Int64(Some(typmod)))),
    ] {
        let Ok(index) = schema.index_of(target) else { continue };
        let ty = schema.field(index).data_type();
        let values = (0..batch.num_rows())
            .map(|i| match column_of(i).filter(|_| relids.is_valid(i)).and_then(value) {
                Some(v) => v.cast_to(ty),
                None => ScalarValue::try_from_array(&columns[index], i),
            })
            .collect::<DfResult<Vec<_>>>()?;
        columns[index] = ScalarValue::iter_to_array(values)?;
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn index_row(k: &Keyed, schema: &SchemaRef) -> Vec<(&'static str, ScalarValue)> {
    let n = k.columns().len() as i64;
    let mut row = vec![
        ("indexrelid", ScalarValue::Int64(Some(k.index_oid()))),
        ("indrelid", ScalarValue::Int64(Some(k.oid))),
        ("indnatts", ScalarValue::Int64(Some(n))),
        ("indnkeyatts", ScalarValue::Int64(Some(n))),
        ("indisunique", ScalarValue::Boolean(Some(k.unique()))),
        ("indnullsnotdistinct", ScalarValue::Boolean(Some(false))),
        ("indisprimary", ScalarValue::Boolean(Some(k.index.is_none()))),
        ("indisexclusion", ScalarValue::Boolean(Some(false))),
        ("indimmediate", ScalarValue::Boolean(Some(true))),
        ("indisclustered", ScalarValue::Boolean(Some(false))),
        ("indisvalid", ScalarValue::Boolean(Some(k.valid()))),
        ("indcheckxmin", ScalarValue::Boolean(Some(false))),
        ("indisready", ScalarValue::Boolean(Some(true))),
        ("indislive", ScalarValue::Boolean(Some(true))),
        ("indisreplident", ScalarValue::Boolean(Some(false))),
    ];
    let attnums = k.attnums();
    for (name, values) in [("indkey", attnums.clone()), ("indoption", k.options())] {
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
        ("contype", ScalarValue::Utf8(k.contype().map(String::from))),
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
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Int16, true)),
                OffsetBuffer::from_lengths([values.len()]),
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

/// `pg_get_indexdef(oid [, column, pretty])` / `pg_get_constraintdef(oid [, pretty])` of the
/// primary keys (from the table definitions: their OIDs derive from the table's); NULL for any
/// other OID. With a column number other than 0, `pg_get_indexdef` gives that key column only.
/// And `pg_get_expr(adbin, relid [, pretty])`: raftable's `pg_attrdef.adbin` holds the default
/// as PostgreSQL prints it already, so it gives that back (datafusion-pg-catalog's gives '').
/// And `pg_get_viewdef(oid [, pretty])`: a view's query; `obj_description(oid [, catalog])`,
/// `col_description(oid, column)`: the COMMENT ON text of a table or view, of a column.
struct DefinitionUdf {
    name: &'static str,
    signature: Signature,
    catalog: Arc<Catalog>,
}

impl DefinitionUdf {
    fn new(name: &'static str, catalog: Arc<Catalog>) -> Self {
        Self { name, signature: Signature::variadic_any(Volatility::Stable), catalog }
    }

    /// `to_regclass(name)`: the OID of the table, sequence, index or view `name` names (optionally
    /// `public.`-qualified or quoted), or of PostgreSQL's own relations by number; None if
    /// there is none.
    fn relation_oid(&self, name: &str) -> Option<i32> {
        if let Ok(oid) = name.parse::<i32>() {
            return Some(oid);
        }
        let system = name.strip_prefix("pg_catalog.").unwrap_or(name);
        if let Some((_, oid)) = SYSTEM_RELATIONS.iter().find(|(n, _)| *n == system) {
            return Some(*oid);
        }
        let name = crate::table::relation_name(name).ok()?;
        if let Some(t) = self.catalog.cached(&name) {
            return Some(t.oid());
        }
        if let Some(s) = self.catalog.cached_sequence(&name) {
            return Some(s.oid());
        }
        if let Some(v) = self.catalog.cached_view(&name) {
            return Some(v.oid());
        }
        // An index is named without its schema here; it is its table's.
        let (schema, bare) = split_name(&name);
        let tables = self.catalog.all();
        tables.iter().filter(|t| split_name(&t.name).0 == schema).find_map(|t| t.index(bare).map(|i| i.oid()))
    }

    /// The name `oid::regclass` prints: the relation's, qualified when off the search path
    /// (PostgreSQL's), else the number.
    fn relation_text(&self, oid: i64) -> String {
        if let Some((name, _)) = SYSTEM_RELATIONS.iter().find(|(_, o)| i64::from(*o) == oid) {
            return (*name).to_string();
        }
        let tables = self.catalog.all();
        let named = tables.iter().find_map(|t| {
            if i64::from(t.oid()) == oid {
                return Some(shown_name(&t.name));
            }
            let (schema, _) = split_name(&t.name);
            let index = keyed_of(t).into_iter().find(|k| k.index_oid() == oid)?;
            Some(shown_name(&crate::table::qualify(schema, &index.index_name())))
        });
        let view =
            || self.catalog.cached_views().iter().find(|v| i64::from(v.oid()) == oid).map(|v| shown_name(&v.name));
        let sequence =
            || self.catalog.sequences().iter().find(|s| i64::from(s.oid()) == oid).map(|s| shown_name(&s.name));
        named.or_else(view).or_else(sequence).unwrap_or_else(|| oid.to_string())
    }

    /// The definition of index or constraint `oid` (`column` > 0: that index column's name).
    fn definition(&self, oid: i64, column: i64) -> Option<String> {
        if self.name == REGCLASS_OUT {
            return Some(self.relation_text(oid));
        }
        if self.name == "pg_get_triggerdef" {
            // No relation has triggers here (`pg_trigger` is empty).
            return None;
        }
        if self.name == "obj_description" {
            let tables = self.catalog.all();
            let table = tables.iter().find(|t| i64::from(t.oid()) == oid).map(|t| t.comment.clone());
            let view =
                || self.catalog.cached_views().iter().find(|v| i64::from(v.oid()) == oid).map(|v| v.comment.clone());
            return table.or_else(view).flatten();
        }
        if self.name == "col_description" {
            let tables = self.catalog.all();
            let t = tables.iter().find(|t| i64::from(t.oid()) == oid)?;
            let c = t.visible().into_iter().find(|c| t.attnum(*c).map(i64::from) == Some(column))?;
            return t.columns[c].comment.clone();
        }
        if self.name == "pg_get_viewdef" {
            return self.catalog.cached_views().iter().find(|v| i64::from(v.oid()) == oid).map(|v| view_text(v));
        }
        if self.name == "pg_get_constraintdef" && oid >= FOREIGN_KEY_OID {
            let tables = self.catalog.all();
            return tables.iter().find_map(|t| {
                let n = (0..t.foreign_keys.len()).find(|n| foreign_key_oid(t, *n) == oid)?;
                let key = &t.foreign_keys[n];
                let parent = tables.iter().find(|p| p.id == key.parent)?;
                Some(foreign_key_text(t, key, parent))
            });
        }
        if self.name == "pg_get_constraintdef" && oid >= CHECK_OID {
            let tables = self.catalog.all();
            return tables.iter().find_map(|t| {
                let n = (0..t.checks.len()).find(|n| check_oid(t, *n) == oid)?;
                Some(check_text(&t.checks[n].expr, column == 1))
            });
        }
        let keyed =
            self.catalog.all().iter().flat_map(keyed_of).find(|k| k.index_oid() == oid || k.constraint_oid() == oid)?;
        if keyed.constraint_oid() == oid {
            return (self.name == "pg_get_constraintdef").then(|| keyed.constraint_definition()).flatten();
        }
        if self.name != "pg_get_indexdef" {
            return None;
        }
        if column > 0 {
            let c = *keyed.columns().get(usize::try_from(column - 1).ok()?)?;
            return Some(quoted(&keyed.def.columns[c].name));
        }
        Some(keyed.index_definition())
    }
}

impl std::fmt::Debug for DefinitionUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
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
        Ok(if self.name == "to_regclass" { DataType::Int32 } else { DataType::Utf8 })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(first) = args.args.first() else {
            return Err(DataFusionError::Plan(format!("{} needs an argument", self.name)));
        };
        if self.name == "to_regclass" {
            let names = datafusion::arrow::compute::cast(&first.to_array(args.number_rows)?, &DataType::Utf8)?;
            let names = names.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
            let oids: datafusion::arrow::array::Int32Array =
                names.iter().map(|n| n.and_then(|n| self.relation_oid(n))).collect();
            return Ok(ColumnarValue::Array(Arc::new(oids)));
        }
        if self.name == "pg_get_expr" {
            let text = datafusion::arrow::compute::cast(&first.to_array(args.number_rows)?, &DataType::Utf8)?;
            return Ok(ColumnarValue::Array(text));
        }
        let as_ints = |arg: &ColumnarValue| -> DfResult<ArrayRef> {
            Ok(datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Int64)?)
        };
        let oids = as_ints(first)?;
        let oids = as_int64_array(&oids)?;
        // pg_get_indexdef's and col_description's second argument is a column number;
        // pg_get_constraintdef's is `pretty` (1), obj_description's a catalog's name.
        let columns = match args.args.get(1) {
            Some(arg) if matches!(self.name, "pg_get_indexdef" | "col_description" | "pg_get_constraintdef") => {
                Some(as_ints(arg)?)
            }
            _ => None,
        };
        let columns = columns.as_ref().map(|c| as_int64_array(c)).transpose()?;
        let out: StringArray = (0..oids.len())
            .map(|i| {
                let column = columns.map_or(0, |c| if c.is_valid(i) { c.value(i) } else { 0 });
                oids.is_valid(i).then(|| self.definition(oids.value(i), column)).flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Schema;

    use super::*;

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        let cases = [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (20_971_519, "20 MB"),
            (1_048_576, "1024 kB"),
            (123_456_789_012, "115 GB"),
            (-20_000, "-20 kB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(size_pretty(bytes), text, "{bytes}");
        }
    }

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
    fn replaced_maps_only_the_rows_of_known_oids() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("attrelid", DataType::Int32, false),
            Field::new("attname", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![16390, 1259])),
                Arc::new(StringArray::from(vec!["id", "relname"])),
            ],
        )
        .unwrap();
        let oids = HashMap::from([(16390, 0x1000_0003)]);
        let out = replaced(&batch, "attrelid", "attrelid", &oids, |o| ScalarValue::Int64(Some(o))).unwrap();
        let col = out.column(0).as_any().downcast_ref::<datafusion::arrow::array::Int32Array>().unwrap();
        assert_eq!((col.value(0), col.value(1)), (0x1000_0003, 1259));
    }

    #[test]
    fn expand_array_pairs_elements_with_positions() {
        let udf = ExpandArray::new();
        let input = Arc::new(StringArray::from(vec![Some("3 1"), None, Some("{7}")])) as ArrayRef;
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(input)],
            arg_fields: vec![Arc::new(Field::new("a", DataType::Utf8, true))],
            number_rows: 3,
            return_field: Arc::new(Field::new("r", udf.return_type(&[]).unwrap(), true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).unwrap() else { panic!("not an array") };
        let list = out.as_any().downcast_ref::<ListArray>().unwrap();
        assert!(list.is_null(1));
        let first = list.value(0);
        let pairs = first.as_any().downcast_ref::<StructArray>().unwrap();
        let column = |i: usize| as_int64_array(pairs.column(i)).unwrap().values().to_vec();
        assert_eq!((column(0), column(1)), (vec![3, 1], vec![1, 2]));
        assert_eq!(list.value(2).len(), 1);
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
