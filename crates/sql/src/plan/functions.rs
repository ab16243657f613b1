//! PostgreSQL functions DataFusion lacks, as functions of a session's context: the sequence
//! functions `nextval` and `setval` (asynchronous: they may write the sequence's counter, so
//! DataFusion runs them in its `AsyncFuncExec`), `currval`, `lastval`,
//! `pg_get_serial_sequence`; and `gen_random_uuid`, `json_build_object` /
//! `jsonb_build_object` (which SQLAlchemy's reflection calls), `format` (Metabase's sync),
//! `pg_typeof`. A sequence is named by text (`'s'`, `'public.s'`, `'"S"'`) or by its OID
//! (what `'s'::regclass` becomes in a catalog query). The values come from `crate::sequence`.
//! [`async_values`] lets VALUES lists call them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::cast::{as_boolean_array, as_int64_array, as_string_array};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Values, Volatility,
};
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result};

use crate::ast::subqueries::IN_ARRAY;
use crate::catalog::pg_catalog::{quoted, SUPERUSER_OID};
use crate::catalog::{Catalog, CATALOG};
use crate::cluster::Cluster;
use crate::error::{from_datafusion, to_datafusion};
use crate::sequence::{Sequences, SessionValues};
use crate::settings::{Settings, USER_SETTING};
use crate::table::{relation_name, split_name, SequenceDef};
use crate::types::SqlType;

/// What the functions of one session share: the node's catalog, cluster and sequence values,
/// and the session's `currval`s and settings.
#[derive(Clone)]
pub(crate) struct FunctionState {
    pub catalog: Arc<Catalog>,
    pub cluster: Arc<dyn Cluster>,
    pub sequences: Arc<Sequences>,
    pub session: Arc<SessionValues>,
    pub settings: Settings,
}

impl std::fmt::Debug for FunctionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FunctionState")
    }
}

impl FunctionState {
    /// The sequence a `nextval` / `setval` / `currval` argument names (text or OID).
    async fn resolve(&self, arg: &ArgValue) -> Result<Arc<SequenceDef>> {
        match arg {
            ArgValue::Name(text) => {
                let name = relation_name(text)?;
                match self.catalog.sequence(&name).await? {
                    Some(def) => Ok(def),
                    None => Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist"))),
                }
            }
            ArgValue::Oid(oid) => {
                let found = |c: &Catalog| c.sequences().into_iter().find(|s| i64::from(s.oid()) == *oid);
                if let Some(def) = found(&self.catalog) {
                    return Ok(def);
                }
                self.catalog.refresh().await?;
                found(&self.catalog)
                    .ok_or_else(|| Error::UndefinedTable(format!("could not open relation with OID {oid}")))
            }
        }
    }

    /// Like `resolve`, from the cache only (the synchronous functions).
    fn resolve_cached(&self, arg: &ArgValue) -> Result<Arc<SequenceDef>> {
        let def = match arg {
            ArgValue::Name(text) => {
                let name = relation_name(text)?;
                self.catalog.cached_sequence(&name).ok_or_else(|| name.clone())
            }
            ArgValue::Oid(oid) => self
                .catalog
                .sequences()
                .into_iter()
                .find(|s| i64::from(s.oid()) == *oid)
                .ok_or_else(|| format!("OID {oid}")),
        };
        def.map_err(|name| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))
    }
}

/// The functions to register in a session's context.
pub(crate) fn udfs(state: FunctionState) -> Vec<ScalarUDF> {
    vec![
        nextval(state.clone()),
        AsyncScalarUDF::new(Arc::new(AsyncFn::new("setval", state.clone()))).into_scalar_udf(),
        ScalarUDF::new_from_impl(SyncFn::new("currval", 1, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("lastval", 0, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("pg_get_serial_sequence", 2, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("current_setting", 0, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("set_config", 3, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("current_database", 0, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("pg_get_userbyid", 1, state.clone())),
        ScalarUDF::new_from_impl(SyncFn::new("current_user", 0, state)).with_aliases([
            "user",
            "session_user",
            "current_role",
        ]),
        gen_random_uuid(),
        ScalarUDF::new_from_impl(BuildObject::new("json_build_object")),
        ScalarUDF::new_from_impl(BuildObject::new("jsonb_build_object")),
        ScalarUDF::new_from_impl(Format::new()),
        ScalarUDF::new_from_impl(InArray::new()),
        ScalarUDF::new_from_impl(PgTypeof { signature: Signature::any(1, Volatility::Immutable) }),
        ScalarUDF::new_from_impl(TextInput::new("jsonb", SqlType::Jsonb)),
        ScalarUDF::new_from_impl(TextInput::new("json", SqlType::Jsonb)),
        ScalarUDF::new_from_impl(TextInput::new("uuid", SqlType::Uuid)),
    ]
}

/// `jsonb(x)`, `json(x)`, `uuid(x)`: what `x::jsonb`, `x::json` and `x::uuid` become
/// (`ast::rewrite::text_type_casts`): the text a column of the type stores (jsonb normalised,
/// a UUID in its canonical form), 22P02 for text that is not one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextInput {
    name: &'static str,
    ty: SqlType,
    signature: Signature,
}

impl TextInput {
    fn new(name: &'static str, ty: SqlType) -> Self {
        Self { name, ty, signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TextInput {
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
        let scalar = matches!(args.args.as_slice(), [ColumnarValue::Scalar(_)]);
        let values = args.args[0].to_array(args.number_rows)?;
        let text = cast(&values, &DataType::Utf8)?;
        let stored = self.ty.coerce(self.name, &text).map_err(crate::error::to_datafusion)?;
        super::columnar(stored, scalar)
    }
}

/// `nextval(regclass)`: also what a column default of a SERIAL or identity column calls.
pub(crate) fn nextval(state: FunctionState) -> ScalarUDF {
    AsyncScalarUDF::new(Arc::new(AsyncFn::new("nextval", state))).into_scalar_udf()
}

/// `gen_random_uuid()`: DataFusion's `uuid()` under PostgreSQL's name.
fn gen_random_uuid() -> ScalarUDF {
    datafusion::functions::string::uuid().as_ref().clone().with_aliases(["gen_random_uuid"])
}

/// One row's sequence argument.
enum ArgValue {
    Name(String),
    Oid(i64),
}

/// The sequence arguments of `rows` rows (None: NULL).
fn sequence_args(arg: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<ArgValue>>> {
    let array = arg.to_array(rows)?;
    if array.data_type().is_integer() {
        let ints = cast(&array, &DataType::Int64)?;
        let ints = as_int64_array(&ints)?;
        return Ok(ints.iter().map(|v| v.map(ArgValue::Oid)).collect());
    }
    let texts = cast(&array, &DataType::Utf8)?;
    let texts = as_string_array(&texts)?;
    Ok(texts.iter().map(|v| v.map(|s| ArgValue::Name(s.to_string()))).collect())
}

/// Each row's value of `arg`, cast to `ty`.
fn column(arg: &ColumnarValue, rows: usize, ty: &DataType) -> DfResult<ArrayRef> {
    Ok(cast(&arg.to_array(rows)?, ty)?)
}

/// A DataFusion function implementation's identity: its name (each is registered once).
macro_rules! named_udf {
    ($t:ty) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.name() == other.name()
            }
        }
        impl Eq for $t {}
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.name().hash(state)
            }
        }
    };
}

/// `nextval(regclass)` and `setval(regclass, bigint [, boolean])`: they may write the
/// sequence's counter, so they run asynchronously.
struct AsyncFn {
    name: &'static str,
    signature: Signature,
    state: FunctionState,
}

named_udf!(AsyncFn);

impl AsyncFn {
    fn new(name: &'static str, state: FunctionState) -> Self {
        // nextval's second argument, when given, only tells equal calls apart
        // (`ast::rewrite::distinct_nextvals`).
        let arities = if name == "setval" { [2, 3] } else { [1, 2] };
        let signature = Signature::one_of(arities.map(TypeSignature::Any).to_vec(), Volatility::Volatile);
        Self { name, signature, state }
    }

    async fn nextval(&self, args: ScalarFunctionArgs) -> DfResult<Vec<Option<i64>>> {
        let rows = args.number_rows;
        let names = sequence_args(&args.args[0], rows)?;
        let mut out = Vec::with_capacity(rows);
        let mut last: Option<(String, Arc<SequenceDef>)> = None;
        for name in names {
            let Some(name) = name else {
                out.push(None);
                continue;
            };
            // The same sequence in every row, usually: resolved once.
            let key = match &name {
                ArgValue::Name(n) => n.clone(),
                ArgValue::Oid(o) => format!("#{o}"),
            };
            let def = match &last {
                Some((k, def)) if *k == key => def.clone(),
                _ => {
                    let def = self.state.resolve(&name).await.map_err(to_datafusion)?;
                    last = Some((key, def.clone()));
                    def
                }
            };
            let v = self.state.sequences.nextval(self.state.cluster.as_ref(), &def).await.map_err(to_datafusion)?;
            self.state.session.record(&def, v);
            out.push(Some(v));
        }
        Ok(out)
    }

    async fn setval(&self, args: ScalarFunctionArgs) -> DfResult<Vec<Option<i64>>> {
        let rows = args.number_rows;
        let names = sequence_args(&args.args[0], rows)?;
        let values = column(&args.args[1], rows, &DataType::Int64)?;
        let values = as_int64_array(&values)?;
        let called = match args.args.get(2) {
            Some(arg) => Some(column(arg, rows, &DataType::Boolean)?),
            None => None,
        };
        let called: Option<&BooleanArray> = called.as_ref().map(|c| as_boolean_array(c)).transpose()?;
        let mut out = Vec::with_capacity(rows);
        for (i, name) in names.into_iter().enumerate() {
            let is_called = called.map_or(Some(true), |c| c.is_valid(i).then(|| c.value(i)));
            let (Some(name), true, Some(is_called)) = (name, values.is_valid(i), is_called) else {
                out.push(None);
                continue;
            };
            let def = self.state.resolve(&name).await.map_err(to_datafusion)?;
            let value = values.value(i);
            let cluster = self.state.cluster.as_ref();
            self.state.sequences.setval(cluster, &def, value, is_called).await.map_err(to_datafusion)?;
            if is_called {
                self.state.session.record(&def, value);
            }
            out.push(Some(value));
        }
        Ok(out)
    }
}

impl ScalarUDFImpl for AsyncFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(to_datafusion(Error::Internal(format!("{} runs asynchronously", self.name))))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AsyncFn {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = if self.name == "setval" { self.setval(args).await? } else { self.nextval(args).await? };
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(values))))
    }
}

/// `currval(regclass)`, `lastval()`, `pg_get_serial_sequence(table, column)`,
/// `current_setting(name [, missing_ok])`, `set_config(name, value, is_local)` and
/// `current_user` (also `user`, `session_user`, `current_role`: no roles to switch to),
/// `current_database()` (the database connected to: `Settings::database`), `pg_get_userbyid`:
/// answered from the session's values and settings and the cached catalog.
struct SyncFn {
    name: &'static str,
    signature: Signature,
    state: FunctionState,
}

named_udf!(SyncFn);

impl SyncFn {
    fn new(name: &'static str, args: usize, state: FunctionState) -> Self {
        let stable = matches!(name, "pg_get_serial_sequence" | "current_user" | "current_database" | "pg_get_userbyid");
        let volatility = if stable { Volatility::Stable } else { Volatility::Volatile };
        let signature = match name {
            "current_setting" => {
                Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable)
            }
            _ if args == 0 => Signature::nullary(volatility),
            _ => Signature::any(args, volatility),
        };
        Self { name, signature, state }
    }

    fn currval(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let names = sequence_args(&args.args[0], args.number_rows).map_err(crate::error::from_datafusion)?;
        let values = names
            .into_iter()
            .map(|n| n.map(|n| self.state.resolve_cached(&n).and_then(|d| self.state.session.currval(&d))).transpose())
            .collect::<Result<Int64Array>>()?;
        Ok(Arc::new(values))
    }

    /// `pg_get_userbyid(oid)`: the session's user for the superuser's OID, which owns every
    /// object (`catalog::pg_catalog`'s roles), `unknown (OID=n)` for any other, as PostgreSQL.
    fn user_by_id(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let oids = args.args[0].to_array(args.number_rows).map_err(from_datafusion)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64).map_err(Error::internal)?;
        let user = self.state.settings.get(USER_SETTING).unwrap_or_default();
        let names: StringArray = datafusion::common::cast::as_int64_array(&oids)
            .map_err(from_datafusion)?
            .iter()
            .map(|oid| {
                oid.map(|oid| match oid == i64::from(SUPERUSER_OID) {
                    true => user.clone(),
                    false => format!("unknown (OID={oid})"),
                })
            })
            .collect();
        Ok(Arc::new(names))
    }

    fn lastval(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let exists = |name: &str, id: u32| self.state.catalog.cached_sequence(name).is_some_and(|s| s.id == id);
        let v = self.state.session.lastval(exists)?;
        Ok(Arc::new(Int64Array::from(vec![v; args.number_rows])))
    }

    /// A setting's value; an unknown one is 42704, or NULL with `missing_ok`.
    fn current_setting(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let rows = args.number_rows;
        let de = crate::error::from_datafusion;
        let names = column(&args.args[0], rows, &DataType::Utf8).map_err(de)?;
        let names = as_string_array(&names).map_err(de)?;
        let missing_ok = match args.args.get(1) {
            Some(arg) => Some(column(arg, rows, &DataType::Boolean).map_err(de)?),
            None => None,
        };
        let missing_ok = missing_ok.as_ref().map(|m| as_boolean_array(m)).transpose().map_err(de)?;
        let out = (0..rows)
            .map(|i| {
                if names.is_null(i) {
                    return Ok(None);
                }
                let name = names.value(i).to_lowercase();
                match self.state.settings.get(&name) {
                    Some(v) => Ok(Some(v)),
                    None if missing_ok.is_some_and(|m| m.is_valid(i) && m.value(i)) => Ok(None),
                    None => Err(Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))),
                }
            })
            .collect::<Result<StringArray>>()?;
        Ok(Arc::new(out))
    }

    /// Sets each row's setting for the session and returns its value, as SET does (`is_local`
    /// as SET LOCAL: the session's value too, see docs/sql.md). pgAdmin sets `bytea_output`
    /// this way at connect.
    fn set_config(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let rows = args.number_rows;
        let de = crate::error::from_datafusion;
        let names = column(&args.args[0], rows, &DataType::Utf8).map_err(de)?;
        let values = column(&args.args[1], rows, &DataType::Utf8).map_err(de)?;
        let (names, values) = (as_string_array(&names).map_err(de)?, as_string_array(&values).map_err(de)?);
        let out = names
            .iter()
            .zip(values.iter())
            .map(|(name, value)| {
                let name = name?.to_lowercase();
                let value = value.unwrap_or_default().to_string();
                self.state.settings.set(name.clone(), value);
                self.state.settings.get(&name)
            })
            .collect::<StringArray>();
        Ok(Arc::new(out))
    }

    /// The sequence a table's column takes its default from, as `schema.name`.
    fn serial_sequence(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let rows = args.number_rows;
        let de = crate::error::from_datafusion;
        let tables = column(&args.args[0], rows, &DataType::Utf8).map_err(de)?;
        let columns = column(&args.args[1], rows, &DataType::Utf8).map_err(de)?;
        let (tables, columns) = (as_string_array(&tables).map_err(de)?, as_string_array(&columns).map_err(de)?);
        let out = tables
            .iter()
            .zip(columns.iter())
            .map(|(t, c)| {
                let (Some(t), Some(c)) = (t, c) else { return Ok(None) };
                let name = relation_name(t)?;
                // `attrelid::regclass::text` reaches here as the OID's digits in catalog queries
                // (datafusion-pg-catalog reads `::regclass` of a number as the number).
                let by_oid = || {
                    let oid = name.parse::<i64>().ok()?;
                    self.state.catalog.all().into_iter().find(|d| i64::from(d.oid()) == oid)
                };
                let def = self
                    .state
                    .catalog
                    .cached(&name)
                    .or_else(by_oid)
                    .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))?;
                let col = def.column(c)?;
                let qualified = |s: &str| {
                    let (schema, bare) = split_name(s);
                    format!("{}.{}", quoted(schema), quoted(bare))
                };
                Ok(def.columns[col].sequence().map(qualified))
            })
            .collect::<Result<StringArray>>()?;
        Ok(Arc::new(out))
    }
}

impl ScalarUDFImpl for SyncFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.name {
            "pg_get_serial_sequence"
            | "current_setting"
            | "set_config"
            | "current_user"
            | "current_database"
            | "pg_get_userbyid" => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let out = match self.name {
            "currval" => self.currval(&args),
            "lastval" => self.lastval(&args),
            "current_setting" => self.current_setting(&args),
            "set_config" => self.set_config(&args),
            "current_user" => {
                let user = self.state.settings.get(USER_SETTING);
                Ok(Arc::new(StringArray::from(vec![user; args.number_rows])) as ArrayRef)
            }
            "pg_get_userbyid" => self.user_by_id(&args),
            "current_database" => {
                let database = self.state.settings.database().unwrap_or_else(|| CATALOG.to_string());
                Ok(Arc::new(StringArray::from(vec![database; args.number_rows])) as ArrayRef)
            }
            _ => self.serial_sequence(&args),
        };
        out.map(ColumnarValue::Array).map_err(to_datafusion)
    }
}

/// A VALUES list whose column calls an asynchronous function (`nextval`) in every row, which
/// DataFusion cannot evaluate inside VALUES, becomes that function called in a projection
/// over the VALUES (the column a NULL placeholder there): one call per row, in row order.
pub(crate) fn async_values(plan: LogicalPlan) -> Result<LogicalPlan> {
    let is_async = |e: &Expr| {
        e.exists(|x| Ok(matches!(x, Expr::ScalarFunction(f) if f.func.as_async().is_some()))).unwrap_or(false)
    };
    let rewritten = plan.transform_up(|node| {
        let LogicalPlan::Values(values) = &node else { return Ok(Transformed::no(node)) };
        let fields = values.schema.fields();
        let columns: Vec<usize> =
            (0..fields.len()).filter(|c| values.values.iter().any(|row| is_async(&row[*c]))).collect();
        if columns.is_empty() {
            return Ok(Transformed::no(node));
        }
        let mut rows = values.values.clone();
        let mut projection: Vec<Expr> = fields.iter().map(|f| Expr::Column(Column::from_name(f.name()))).collect();
        for &c in &columns {
            let first = rows[0][c].clone();
            if rows.iter().any(|row| row[c] != first) {
                return Err(to_datafusion(Error::unsupported(
                    "nextval() in some rows of a VALUES column and other values in the others",
                )));
            }
            let null = ScalarValue::try_from(fields[c].data_type())?;
            for row in &mut rows {
                row[c] = Expr::Literal(null.clone(), None);
            }
            projection[c] = first.alias(fields[c].name());
        }
        // The placeholders are NULL: their fields become nullable.
        let fields: Vec<_> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| f.as_ref().clone().with_nullable(f.is_nullable() || columns.contains(&i)))
            .collect();
        let schema = DFSchema::try_from(Schema::new_with_metadata(fields, values.schema.metadata().clone()))?;
        let inner = LogicalPlan::Values(Values { schema: Arc::new(schema), values: rows });
        Ok(Transformed::yes(LogicalPlan::Projection(Projection::try_new(projection, Arc::new(inner))?)))
    });
    rewritten.map(|t| t.data).map_err(from_datafusion)
}

/// `json_build_object(key, value, ...)` and `jsonb_build_object(...)`: the pairs as a JSON
/// object's text, values as JSON numbers, booleans, null or strings, printed as PostgreSQL
/// prints each type: json keeps the pairs as given (`{"a" : 1, "b" : 2}`), jsonb keeps the last
/// of equal keys, orders them shorter first, then bytewise (`{"a": 1, "b": 2}`).
struct BuildObject {
    name: &'static str,
    signature: Signature,
}

named_udf!(BuildObject);

impl BuildObject {
    fn new(name: &'static str) -> Self {
        let signature = Signature::one_of(vec![TypeSignature::VariadicAny, TypeSignature::Nullary], Volatility::Stable);
        Self { name, signature }
    }

    /// One row's object text.
    fn object(&self, pairs: Vec<(String, serde_json::Value)>) -> String {
        let key = |k: &str| serde_json::Value::String(k.to_string()).to_string();
        if self.name == "json_build_object" {
            let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{} : {v}", key(k))).collect();
            return format!("{{{}}}", items.join(", "));
        }
        let mut unique: Vec<(String, serde_json::Value)> = Vec::new();
        for (k, v) in pairs {
            unique.retain(|(key, _)| *key != k);
            unique.push((k, v));
        }
        unique.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
        let items: Vec<String> = unique.iter().map(|(k, v)| format!("{}: {v}", key(k))).collect();
        format!("{{{}}}", items.join(", "))
    }
}

impl ScalarUDFImpl for BuildObject {
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
        if !args.args.len().is_multiple_of(2) {
            return Err(to_datafusion(Error::InvalidInput("argument list must have even number of elements".into())));
        }
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut pairs = Vec::with_capacity(arrays.len() / 2);
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(to_datafusion(Error::InvalidInput("null value not allowed for object key".into())));
                }
                let key = match key {
                    ScalarValue::Utf8(Some(k)) | ScalarValue::Utf8View(Some(k)) | ScalarValue::LargeUtf8(Some(k)) => k,
                    other => other.to_string(),
                };
                pairs.push((key, json_value(&ScalarValue::try_from_array(&pair[1], row)?)));
            }
            out.push(self.object(pairs));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// `pg_typeof(any)`: the name of its argument's type, as PostgreSQL prints a `regtype`
/// (`integer`, `timestamp with time zone`, `text[]`).
struct PgTypeof {
    signature: Signature,
}

named_udf!(PgTypeof);

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = type_name(args.arg_fields[0].data_type());
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

fn type_name(ty: &DataType) -> String {
    match ty {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", type_name(item.data_type()))
        }
        other => crate::types::pg_type_names(other).map_or_else(|| other.to_string(), |(name, _)| name.to_string()),
    }
}

/// `format(formatstr, VARIADIC args)`: `%s` (the value as text, NULL as nothing), `%I` (an
/// identifier, quoted as needed), `%L` (a literal, NULL as `NULL`), `%%`, each with an
/// optional argument position (`%2$s`), `-` flag and width, as PostgreSQL's.
struct Format {
    signature: Signature,
}

named_udf!(Format);

impl Format {
    fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Stable) }
    }
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row).map(|v| pg_text(&v)))
                .collect::<DfResult<Vec<_>>>()?;
            match values.split_first() {
                Some((Some(format), args)) => out.push(Some(formatted(format, args).map_err(to_datafusion)?)),
                _ => out.push(None),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// A value's text as PostgreSQL prints it (booleans `t` / `f`, the rest `types::scalar_text`);
/// None for NULL.
fn pg_text(v: &ScalarValue) -> Option<String> {
    match v {
        _ if v.is_null() => None,
        ScalarValue::Boolean(Some(b)) => Some(if *b { "t" } else { "f" }.to_string()),
        other => Some(crate::types::scalar_text(other)),
    }
}

/// [`Format`] of one row: `format` with `args` (None: NULL).
fn formatted(format: &str, args: &[Option<String>]) -> Result<String> {
    let invalid = |m: String| Error::InvalidInput(m);
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // [position$] [-] [width] type
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let mut position = None;
        if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            position = Some(digits.parse::<usize>().map_err(|_| invalid("argument number is out of range".into()))?);
            digits.clear();
        }
        let mut left = false;
        if digits.is_empty() && chars.peek() == Some(&'-') {
            left = true;
            chars.next();
        }
        if digits.is_empty() {
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
        }
        let width: usize = if digits.is_empty() { 0 } else { digits.parse().unwrap_or(usize::MAX) };
        let kind = chars.next().ok_or_else(|| invalid("unterminated format() type specifier".into()))?;
        if !matches!(kind, 's' | 'I' | 'L') {
            return Err(invalid(format!("unrecognized format() type specifier \"{kind}\"")));
        }
        let index = match position {
            Some(0) => return Err(invalid("format specifies argument 0, but arguments are numbered from 1".into())),
            Some(p) => p - 1,
            None => next_arg,
        };
        next_arg = index + 1;
        let value = args.get(index).ok_or_else(|| invalid("too few arguments for format()".into()))?;
        let text = match (kind, value) {
            ('s', v) => v.clone().unwrap_or_default(),
            ('I', None) => {
                return Err(Error::NullValueNotAllowed("null values cannot be formatted as an SQL identifier".into()))
            }
            ('I', Some(v)) => quoted(v),
            (_, None) => "NULL".to_string(),
            (_, Some(v)) => quote_literal(v),
        };
        let pad = " ".repeat(width.saturating_sub(text.chars().count()));
        if left {
            out.push_str(&text);
            out.push_str(&pad);
        } else {
            out.push_str(&pad);
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// A string as a SQL literal, as `quote_literal` writes it: `E'...'` when it holds a backslash.
fn quote_literal(v: &str) -> String {
    let body = v.replace('\'', "''");
    if v.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A value as JSON: numbers and booleans as themselves, NULL as null, the rest as text.
fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if v.is_null() {
        return J::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_)
        | ScalarValue::Decimal128(..) => {
            serde_json::from_str(&v.to_string()).unwrap_or_else(|_| J::String(v.to_string()))
        }
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            J::String(s.clone())
        }
        other => J::String(other.to_string()),
    }
}

/// `in_array(x, values)`: `x IN (subquery)` over the subquery's values as an array
/// (`ast::subqueries`), as PostgreSQL answers IN: true if a value equals `x`; else NULL when
/// `x` is NULL (and there are values) or a value is NULL; else false.
#[derive(Debug, PartialEq, Eq, Hash)]
struct InArray {
    signature: Signature,
}

impl InArray {
    fn new() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for InArray {
    fn name(&self) -> &str {
        IN_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let needles = args.args[0].to_array(rows)?;
        let lists = args.args[1].to_array(rows)?;
        let lists = datafusion::common::cast::as_list_array(&lists)?;
        let mut out = BooleanArray::builder(rows);
        for i in 0..rows {
            if lists.is_null(i) {
                out.append_null();
                continue;
            }
            let values = lists.value(i);
            if values.is_empty() {
                out.append_value(false);
            } else if needles.is_null(i) || values.data_type() == &DataType::Null {
                out.append_null();
            } else {
                let needle = cast(&needles.slice(i, 1), values.data_type())?;
                let equal = datafusion::arrow::compute::kernels::cmp::eq(
                    &values,
                    &datafusion::arrow::array::Scalar::new(needle),
                )?;
                match (equal.true_count() > 0, values.null_count() > 0) {
                    (true, _) => out.append_value(true),
                    (false, true) => out.append_null(),
                    (false, false) => out.append_value(false),
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_typed() {
        assert_eq!(json_value(&ScalarValue::Int64(Some(-3))), serde_json::json!(-3));
        assert_eq!(json_value(&ScalarValue::Boolean(Some(true))), serde_json::json!(true));
        assert_eq!(json_value(&ScalarValue::Float64(Some(f64::NAN))), serde_json::json!("NaN"));
        assert_eq!(json_value(&ScalarValue::Utf8(None)), serde_json::Value::Null);
        assert_eq!(json_value(&ScalarValue::Utf8(Some("a\"b".into()))), serde_json::json!("a\"b"));
    }

    #[test]
    fn format_follows_postgres() {
        let args = |v: &[Option<&str>]| v.iter().map(|a| a.map(String::from)).collect::<Vec<_>>();
        let f = |fmt: &str, v: &[Option<&str>]| formatted(fmt, &args(v)).map_err(|e| e.to_string());
        assert_eq!(f("%s.%I", &[Some("a"), Some("Users")]).unwrap(), "a.\"Users\"");
        assert_eq!(f("%I.%I", &[Some("public"), Some("t")]).unwrap(), "public.t");
        assert_eq!(f("%L, %L, %s|", &[Some("it's"), None, None]).unwrap(), "'it''s', NULL, |");
        assert_eq!(f("%L", &[Some("a\\b")]).unwrap(), "E'a\\\\b'");
        assert_eq!(f("%2$s %1$s %s", &[Some("x"), Some("y")]).unwrap(), "y x y");
        assert_eq!(f("[%5s][%-5s]%%", &[Some("ab"), Some("cd")]).unwrap(), "[   ab][cd   ]%");
        assert!(f("%s %s", &[Some("a")]).unwrap_err().contains("too few arguments"));
        assert!(f("%x", &[Some("a")]).unwrap_err().contains("unrecognized format() type specifier \"x\""));
        assert!(f("%I", &[None]).unwrap_err().contains("cannot be formatted as an SQL identifier"));
    }
}
