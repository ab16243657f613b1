//! The DDL of sequences and of what calls them: `CREATE SEQUENCE` / `DROP SEQUENCE`, the
//! sequences of SERIAL and identity columns (made with their table, dropped with it), and column
//! defaults computed per row (`nextval(...)`, `now()`, `gen_random_uuid()`, ...).
//! `exec::ddl` calls these for CREATE / ALTER / DROP TABLE; the values themselves come from
//! `crate::sequence`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::ScalarFunctionArgs;
use datafusion::sql::sqlparser::ast::{
    DataType as AstType, Expr as AstExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    SequenceOptions, UnaryOperator, Value,
};
use raftable_common::{Error, Result};

use crate::ast::{ident, table_name, AlterSequence, SequenceChange};
use crate::catalog::{Catalog, LEASE, REFRESH};
use crate::cluster::Cluster;
use crate::error::from_datafusion;
use crate::sequence::Sequences;
use crate::table::{qualify, relation_name, split_name, ColumnDef, Computed, SequenceDef, TableDef};
use crate::types::SqlType;

/// `CREATE SEQUENCE [IF NOT EXISTS] name [AS type] [options] [OWNED BY t.c | NONE]`.
pub(crate) async fn create_sequence(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    name: &ObjectName,
    if_not_exists: bool,
    data_type: Option<&AstType>,
    options: &[SequenceOptions],
    owned_by: Option<&ObjectName>,
) -> Result<()> {
    let name = table_name(name)?;
    if if_not_exists && catalog.sequence(&name).await?.is_some() {
        return Ok(());
    }
    catalog.check_schema(&name).await?;
    let ty = match data_type {
        Some(t) => SqlType::from_ast(t)?,
        None => SqlType::BigInt,
    };
    let owned_by = match owned_by {
        None => None,
        Some(o) if o.to_string().eq_ignore_ascii_case("none") => None,
        Some(o) => Some(owner(catalog, o).await?),
    };
    let id = next_id(cluster).await?;
    let def = sequence_def(id, name, ty, options, owned_by)?;
    match catalog.insert_sequence(def).await {
        Err(Error::DuplicateTable(_)) if if_not_exists => Ok(()),
        other => other,
    }
}

/// `OWNED BY table.column`: both must exist.
async fn owner(catalog: &Catalog, name: &ObjectName) -> Result<(String, String)> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(ident).collect();
    let (table, column) = match parts.as_slice() {
        [t, c] => (t.clone(), c.clone()),
        [s, t, c] if s == "public" => (t.clone(), c.clone()),
        _ => return Err(Error::InvalidInput(format!("invalid OWNED BY option {name}"))),
    };
    let def = catalog
        .get(&table)
        .await?
        .ok_or_else(|| Error::UndefinedTable(format!("relation \"{table}\" does not exist")))?;
    def.column(&column)?;
    Ok((table, column))
}

/// An id from the counter of table ids: a sequence's OID never meets a table's.
async fn next_id(cluster: &dyn Cluster) -> Result<u32> {
    u32::try_from(cluster.next_id("table").await?).map_err(|_| Error::Internal("table ids exhausted".into()))
}

/// A sequence's definition from its options, with PostgreSQL's defaults and checks.
pub(crate) fn sequence_def(
    id: u32,
    name: String,
    ty: SqlType,
    options: &[SequenceOptions],
    owned_by: Option<(String, String)>,
) -> Result<SequenceDef> {
    let blank = SequenceDef { id, name, ty, start: 0, increment: 1, min: 0, max: 0, cache: 1, cycle: false, owned_by };
    with_options(blank, true, None, options)
}

/// `ALTER SEQUENCE [IF EXISTS] name { options | RENAME TO new }`: the definition changed in the
/// catalog, then the counter ([`Sequences::alter`]: `RESTART`, or the next value after the
/// last one handed out by the new increment).
pub(crate) async fn alter_sequence(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    sequences: &Sequences,
    alter: &AlterSequence,
) -> Result<()> {
    let name = table_name(&alter.name)?;
    let Some(old) = catalog.sequence(&name).await? else {
        if catalog.get(&name).await?.is_some() || catalog.view(&name).await?.is_some() {
            return Err(Error::WrongObjectType(format!("\"{name}\" is not a sequence")));
        }
        return match alter.if_exists {
            true => Ok(()),
            false => Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist"))),
        };
    };
    let syntax = match &alter.change {
        SequenceChange::Options(syntax) => syntax,
        SequenceChange::RenameTo(new) => return rename_sequence(catalog, &old, new).await,
    };
    let ty = syntax.data_type.as_ref().map(SqlType::from_ast).transpose()?;
    let mut new = with_options(old.as_ref().clone(), false, ty, &syntax.options)?;
    match &syntax.owned_by {
        None => {}
        Some(o) if o.to_string().eq_ignore_ascii_case("none") => new.owned_by = None,
        Some(o) => new.owned_by = Some(owner(catalog, o).await?),
    }
    let restart = match &syntax.restart {
        None => None,
        Some(value) => {
            let value = value.as_ref().map(number).transpose()?.unwrap_or(new.start);
            within_bounds("RESTART", value, &new)?;
            Some(value)
        }
    };
    catalog.replace_sequence(&old, new.clone()).await?;
    sequences.alter(cluster, &old, &new, restart).await
}

/// `ALTER SEQUENCE s RENAME TO new`: the sequence keeps its schema, counter and owner; the
/// column defaults calling it follow it in the same catalog write (PostgreSQL's defaults name
/// it by OID). Returns once every node knows the new name.
async fn rename_sequence(catalog: &Catalog, old: &SequenceDef, new: &Ident) -> Result<()> {
    let new = ident(new);
    if new.contains('.') {
        return Err(Error::SyntaxError("RENAME TO takes a name without a schema".into()));
    }
    let name = qualify(split_name(&old.name).0, &new);
    let calls = |t: &TableDef| t.columns.iter().any(|c| c.sequence() == Some(old.name.as_str()));
    let mut tables = Vec::new();
    for table in catalog.all().into_iter().filter(|t| calls(t)) {
        let mut next = (*table).clone();
        for c in next.columns.iter_mut().filter(|c| c.sequence() == Some(old.name.as_str())) {
            c.computed = Some(Computed::Nextval(name.clone()));
        }
        tables.push((table, next));
    }
    catalog.rename_sequence(old, &name, tables).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(())
}

/// `def` with `options` applied, as PostgreSQL's CREATE (`creating`: every option not given
/// takes its default) or ALTER SEQUENCE (`retyped`: the new type of `AS type`) does, and
/// checked. Defaults: MINVALUE 1 (ascending) or the type's least value, MAXVALUE the type's
/// greatest value or -1 (descending), START at MINVALUE (ascending) or MAXVALUE. ALTER with
/// `AS type` moves a bound that was the old type's limit to the new type's default; `NO
/// MINVALUE` / `NO MAXVALUE` set the default; START changes only what `RESTART` goes back to.
fn with_options(
    mut def: SequenceDef,
    creating: bool,
    retyped: Option<SqlType>,
    options: &[SequenceOptions],
) -> Result<SequenceDef> {
    let old_ty = def.ty;
    def.ty = retyped.unwrap_or(def.ty);
    let (type_min, type_max) = type_bounds(def.ty)?;
    let (mut reset_min, mut reset_max) = (creating, creating);
    if def.ty != old_ty {
        let (old_min, old_max) = type_bounds(old_ty)?;
        reset_min = def.min == old_min;
        reset_max = def.max == old_max;
    }
    let mut start = None;
    for option in options {
        match option {
            SequenceOptions::IncrementBy(e, _) => def.increment = number(e)?,
            SequenceOptions::MinValue(e) => {
                reset_min = e.is_none();
                def.min = e.as_ref().map(number).transpose()?.unwrap_or(def.min);
            }
            SequenceOptions::MaxValue(e) => {
                reset_max = e.is_none();
                def.max = e.as_ref().map(number).transpose()?.unwrap_or(def.max);
            }
            SequenceOptions::StartWith(e, _) => start = Some(number(e)?),
            SequenceOptions::Cache(e) => def.cache = number(e)?,
            // sqlparser's flag is `NO`.
            SequenceOptions::Cycle(no) => def.cycle = !*no,
        }
    }
    if def.increment == 0 {
        return Err(Error::InvalidInput("INCREMENT must not be zero".into()));
    }
    let ascending = def.increment > 0;
    if reset_min {
        def.min = if ascending { 1 } else { type_min };
    }
    if reset_max {
        def.max = if ascending { type_max } else { -1 };
    }
    let type_name = def.ty.pg_name();
    let (min, max) = (def.min, def.max);
    if min < type_min || min > type_max {
        return Err(Error::InvalidInput(format!(
            "MINVALUE ({min}) is out of range for sequence data type {type_name}"
        )));
    }
    if max < type_min || max > type_max {
        return Err(Error::InvalidInput(format!(
            "MAXVALUE ({max}) is out of range for sequence data type {type_name}"
        )));
    }
    if min >= max {
        return Err(Error::InvalidInput(format!("MINVALUE ({min}) must be less than MAXVALUE ({max})")));
    }
    def.start = match (start, creating) {
        (Some(start), _) => start,
        (None, true) => {
            if ascending {
                min
            } else {
                max
            }
        }
        (None, false) => def.start,
    };
    within_bounds("START", def.start, &def)?;
    if def.cache < 1 {
        return Err(Error::InvalidInput(format!("CACHE ({}) must be greater than zero", def.cache)));
    }
    Ok(def)
}

/// 22023 unless the `what` value (START, RESTART) lies within the sequence's bounds.
fn within_bounds(what: &str, value: i64, def: &SequenceDef) -> Result<()> {
    if value < def.min {
        return Err(Error::InvalidInput(format!("{what} value ({value}) cannot be less than MINVALUE ({})", def.min)));
    }
    if value > def.max {
        return Err(Error::InvalidInput(format!(
            "{what} value ({value}) cannot be greater than MAXVALUE ({})",
            def.max
        )));
    }
    Ok(())
}

/// The least and greatest value of a sequence type.
fn type_bounds(ty: SqlType) -> Result<(i64, i64)> {
    match ty {
        SqlType::SmallInt => Ok((i64::from(i16::MIN), i64::from(i16::MAX))),
        SqlType::Integer => Ok((i64::from(i32::MIN), i64::from(i32::MAX))),
        SqlType::BigInt => Ok((i64::MIN, i64::MAX)),
        _ => Err(Error::InvalidInput("sequence type must be smallint, integer, or bigint".into())),
    }
}

/// An integer literal, possibly negated.
fn number(e: &AstExpr) -> Result<i64> {
    match e {
        AstExpr::Value(v) => match &v.value {
            Value::Number(n, _) => {
                n.parse().map_err(|_| Error::OutOfRange(format!("value \"{n}\" is out of range for type bigint")))
            }
            other => Err(Error::SyntaxError(format!("syntax error at or near \"{other}\""))),
        },
        AstExpr::UnaryOp { op: UnaryOperator::Minus, expr } => number(expr).map(|n| -n),
        AstExpr::UnaryOp { op: UnaryOperator::Plus, expr } => number(expr),
        other => Err(Error::SyntaxError(format!("syntax error at or near \"{other}\""))),
    }
}

/// The sequence a SERIAL or identity column of a new table gets: `<table>_<column>_seq`, or
/// with a number after it if that name is taken (as PostgreSQL chooses).
pub(crate) async fn column_sequence(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    table: &str,
    column: &ColumnDef,
    options: &[SequenceOptions],
) -> Result<SequenceDef> {
    let base = format!("{table}_{}_seq", column.name);
    let mut name = base.clone();
    let mut n = 0;
    while catalog.get(&name).await?.is_some() || catalog.sequence(&name).await?.is_some() {
        n += 1;
        name = format!("{base}{n}");
    }
    let ty = match column.ty {
        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => column.ty,
        _ => return Err(Error::InvalidInput("identity column type must be smallint, integer, or bigint".into())),
    };
    let id = next_id(cluster).await?;
    sequence_def(id, name, ty, options, Some((table.to_string(), column.name.clone())))
}

/// The type of a `SERIAL` / `BIGSERIAL` / `SMALLSERIAL` column (and their `serialN` names).
pub(crate) fn serial_type(ty: &AstType) -> Option<SqlType> {
    let AstType::Custom(name, modifiers) = ty else { return None };
    if !modifiers.is_empty() {
        return None;
    }
    match name.to_string().to_lowercase().as_str() {
        "serial" | "serial4" => Some(SqlType::Integer),
        "bigserial" | "serial8" => Some(SqlType::BigInt),
        "smallserial" | "serial2" => Some(SqlType::SmallInt),
        _ => None,
    }
}

/// A DEFAULT computed per row, if `expr` is one: `nextval('s'[::regclass])` (the sequence must
/// exist), `now()`, `CURRENT_TIMESTAMP`, `LOCALTIMESTAMP`, `CURRENT_DATE`, `gen_random_uuid()`,
/// possibly cast. Checked against the column's type.
pub(crate) async fn computed_default(
    catalog: &Catalog,
    column: &ColumnDef,
    expr: &AstExpr,
) -> Result<Option<Computed>> {
    let mut expr = expr;
    while let AstExpr::Cast { expr: inner, .. } | AstExpr::Nested(inner) = expr {
        expr = inner;
    }
    let AstExpr::Function(f) = expr else { return Ok(None) };
    let name = f.name.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default();
    let args: Vec<&AstExpr> = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        FunctionArguments::Subquery(_) => return Ok(None),
    };
    let computed = match (name.as_str(), args.as_slice()) {
        ("now", []) => Computed::Now,
        ("current_timestamp", []) => Computed::CurrentTimestamp,
        ("localtimestamp", []) => Computed::LocalTimestamp,
        ("current_date", []) => Computed::CurrentDate,
        ("gen_random_uuid", []) => Computed::RandomUuid,
        ("nextval", [arg]) => {
            let mut arg = *arg;
            while let AstExpr::Cast { expr: inner, .. } = arg {
                arg = inner;
            }
            let AstExpr::Value(v) = arg else { return Ok(None) };
            let Value::SingleQuotedString(text) = &v.value else { return Ok(None) };
            let sequence = relation_name(text)?;
            if catalog.sequence(&sequence).await?.is_none() {
                return Err(Error::UndefinedTable(format!("relation \"{sequence}\" does not exist")));
            }
            Computed::Nextval(sequence)
        }
        _ => return Ok(None),
    };
    let fits = match &computed {
        Computed::Nextval(_) => {
            matches!(column.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt | SqlType::Numeric(..))
        }
        Computed::Now | Computed::CurrentTimestamp | Computed::LocalTimestamp | Computed::CurrentDate => {
            matches!(column.ty, SqlType::Timestamp | SqlType::TimestampTz | SqlType::Date)
        }
        Computed::RandomUuid => matches!(column.ty, SqlType::Uuid | SqlType::Text | SqlType::Varchar(_)),
    };
    if !fits {
        return Err(Error::unsupported(format!(
            "DEFAULT {} for a column of type {} is not supported",
            computed.display(),
            column.ty.pg_name()
        )));
    }
    Ok(Some(computed))
}

/// The values of defaults computed per row (`nextval`, `gen_random_uuid()`) for a column
/// being added: for the rows written while it is write-only (`exec::write`) and for the rows
/// stored before it (the ADD COLUMN's backfill, `exec::index_ddl::Pass::Fill`).
pub(crate) struct PerRow<'a> {
    pub cluster: &'a dyn Cluster,
    pub catalog: &'a Catalog,
    pub sequences: &'a Sequences,
}

impl PerRow<'_> {
    /// `rows` values of `col`'s default, of its type.
    pub(crate) async fn values(&self, col: &ColumnDef, rows: usize) -> Result<ArrayRef> {
        let values: ArrayRef = match &col.computed {
            Some(Computed::Nextval(name)) => {
                let def = self
                    .catalog
                    .sequence(name)
                    .await?
                    .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))?;
                let mut values = Vec::with_capacity(rows);
                for _ in 0..rows {
                    values.push(self.sequences.nextval(self.cluster, &def).await?);
                }
                Arc::new(Int64Array::from(values))
            }
            Some(Computed::RandomUuid) => random_uuids(rows)?,
            other => return Err(Error::Internal(format!("no per-row default: {other:?}"))),
        };
        col.ty.coerce(&col.name, &values)
    }
}

/// `rows` version 4 UUIDs as text, from DataFusion's `uuid()`.
fn random_uuids(rows: usize) -> Result<ArrayRef> {
    let args = ScalarFunctionArgs {
        args: Vec::new(),
        arg_fields: Vec::new(),
        number_rows: rows,
        return_field: Arc::new(Field::new("uuid", DataType::Utf8, false)),
        config_options: Arc::new(ConfigOptions::default()),
    };
    let values = datafusion::functions::string::uuid().invoke_with_args(args).map_err(from_datafusion)?;
    values.into_array(rows).map_err(from_datafusion)
}

/// Drops sequences, refusing (2BP01) one a column default calls unless `cascade`, which drops
/// those defaults first.
pub(crate) async fn drop_sequences(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    sequences: &Sequences,
    names: &[String],
    if_exists: bool,
    cascade: bool,
) -> Result<()> {
    let mut defs = Vec::new();
    for name in names {
        match catalog.sequence(name).await? {
            Some(def) => defs.push(def),
            None if if_exists => {}
            None => return Err(Error::UndefinedTable(format!("sequence \"{name}\" does not exist"))),
        }
    }
    for def in &defs {
        let users: Vec<_> =
            catalog.all().into_iter().filter(|t| t.columns.iter().any(|c| c.sequence() == Some(&def.name))).collect();
        if !users.is_empty() && !cascade {
            return Err(Error::DependentObjectsStillExist(format!(
                "cannot drop sequence {} because other objects depend on it",
                def.name
            )));
        }
        for table in users {
            let mut changed = (*table).clone();
            for c in &mut changed.columns {
                if c.sequence() == Some(&def.name) {
                    c.computed = None;
                    c.identity = None;
                }
            }
            catalog.replace(&table, changed).await?;
        }
    }
    for def in defs {
        catalog.remove_sequence(&def.name).await?;
        sequences.drop_counter(cluster, &def).await?;
    }
    Ok(())
}

/// The sequences `table` owns (made for its SERIAL and identity columns).
pub(crate) fn owned(catalog: &Catalog, table: &TableDef) -> Vec<String> {
    catalog
        .sequences()
        .into_iter()
        .filter(|s| s.owned_by.as_ref().is_some_and(|(t, _)| *t == table.name))
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(sql: &str) -> Vec<SequenceOptions> {
        use datafusion::sql::sqlparser::ast::Statement;
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        let stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        match stmt {
            Statement::CreateSequence { sequence_options, .. } => sequence_options,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn sequence_options_take_postgres_defaults_and_checks() {
        let s = sequence_def(1, "s".into(), SqlType::BigInt, &[], None).unwrap();
        assert_eq!((s.start, s.increment, s.min, s.max, s.cache, s.cycle), (1, 1, 1, i64::MAX, 1, false));
        let down =
            sequence_def(1, "s".into(), SqlType::Integer, &opts("CREATE SEQUENCE s INCREMENT BY -2"), None).unwrap();
        assert_eq!((down.start, down.min, down.max), (-1, i64::from(i32::MIN), -1));
        let custom = sequence_def(
            1,
            "s".into(),
            SqlType::SmallInt,
            &opts("CREATE SEQUENCE s MAXVALUE 9 START WITH 5 CACHE 3 CYCLE"),
            None,
        )
        .unwrap();
        assert_eq!((custom.start, custom.max, custom.cache, custom.cycle), (5, 9, 3, true));
        let bad = |sql: &str, ty| sequence_def(1, "s".into(), ty, &opts(sql), None).unwrap_err().to_string();
        assert_eq!(bad("CREATE SEQUENCE s INCREMENT 0", SqlType::BigInt), "invalid input: INCREMENT must not be zero");
        assert!(bad("CREATE SEQUENCE s MAXVALUE 40000", SqlType::SmallInt)
            .contains("out of range for sequence data type smallint"));
        assert!(bad("CREATE SEQUENCE s START 0", SqlType::BigInt).contains("cannot be less than MINVALUE (1)"));
        assert!(bad("CREATE SEQUENCE s MINVALUE 5 MAXVALUE 5", SqlType::BigInt).contains("must be less than MAXVALUE"));
        assert!(bad("CREATE SEQUENCE s", SqlType::Text).contains("must be smallint, integer, or bigint"));
    }

    #[test]
    fn alter_keeps_what_it_does_not_name_and_retypes_bounds_at_the_type_limit() {
        let int =
            sequence_def(1, "s".into(), SqlType::Integer, &opts("CREATE SEQUENCE s START 5 CACHE 4"), None).unwrap();
        let alter = |def: &SequenceDef, ty, sql: &str| with_options(def.clone(), false, ty, &opts(sql));
        let wider = alter(&int, Some(SqlType::BigInt), "CREATE SEQUENCE s").unwrap();
        assert_eq!((wider.min, wider.max, wider.start, wider.cache), (1, i64::MAX, 5, 4));
        let capped = alter(&int, None, "CREATE SEQUENCE s MAXVALUE 100").unwrap();
        // A bound below the old type's limit stays when the type changes.
        assert_eq!(alter(&capped, Some(SqlType::BigInt), "CREATE SEQUENCE s").unwrap().max, 100);
        let down = alter(&capped, None, "CREATE SEQUENCE s INCREMENT -1 NO MINVALUE").unwrap();
        assert_eq!((down.increment, down.min, down.max), (-1, i64::from(i32::MIN), 100));
        let narrow = alter(&int, Some(SqlType::SmallInt), "CREATE SEQUENCE s").unwrap();
        assert_eq!(narrow.max, i64::from(i16::MAX));
        let err = alter(&int, None, "CREATE SEQUENCE s MAXVALUE 4").unwrap_err().to_string();
        assert!(err.contains("START value (5) cannot be greater than MAXVALUE (4)"), "{err}");
    }
}
