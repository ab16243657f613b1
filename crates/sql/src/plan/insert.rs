//! INSERT: the rows to insert as a DataFusion plan (the source, already cast to the table's
//! columns; `DEFAULT` replaced by the column's default), what to do on a key conflict
//! ([`Conflict`]), and the RETURNING list. An INSERT of rows of parameters takes the fast path
//! (`super::point::ParamInsert`) instead.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{
    DmlStatement, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, WriteOp as DfWriteOp,
};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Assignment, AssignmentTarget, CastKind, ConflictTarget, DataType as AstType,
    ExactNumberInfo, Expr as AstExpr, Ident, Insert, ObjectName, OnConflictAction, OnInsert, SetExpr, Statement,
    TableObject, TimezoneInfo, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use raftable_common::{Error, Result};

use super::context::Tables;
use super::functions::async_values;
use super::params::{in_exprs, inferred, merge_types, typed, with_type};
use super::point::{target_columns, ParamInsert};
use super::returning::Returning;
use super::{Conflict, Plan, Planned, Planner};
use crate::ast::{call, column_name, ident, table_name};
use crate::error::from_datafusion;
use crate::offload::planning;
use crate::table::{Computed, Identity, IndexState, TableDef};
use crate::types::{bytea_from_text, SqlType};

/// An INSERT planned by DataFusion.
pub(crate) struct InsertPlan {
    pub def: Arc<TableDef>,
    /// The rows, in the table's visible columns.
    pub source: LogicalPlan,
    pub conflict: Conflict,
    pub returning: Option<Returning>,
}

/// Plans an INSERT.
pub(crate) async fn plan(planner: &Planner<'_>, insert: &Insert) -> Result<Planned> {
    let TableObject::TableName(name) = &insert.table else {
        return Err(Error::Unsupported("INSERT into a table function".into()));
    };
    let def = planner.table(name).await?;
    let normalized;
    let insert = if insert.source.is_none() && insert.assignments.is_empty() && insert.columns.is_empty() {
        normalized = with_default_values(insert, &def)?;
        &normalized
    } else if let Some(leading) = leading_columns(insert, &def)? {
        normalized = leading;
        &normalized
    } else {
        insert
    };
    let statement = Statement::Insert(insert.clone());
    let state = planner.ctx.state();
    let tables = Tables::resolve(&state, &statement, Vec::new()).await?;
    let alias = insert.table_alias.as_ref().map(|a| ident(&a.alias));
    let conflict = match &insert.on {
        None => Conflict::Fail,
        Some(OnInsert::OnConflict(c)) => {
            let arbiter = arbiter(&def, c.conflict_target.as_ref())?;
            match &c.action {
                OnConflictAction::DoNothing => Conflict::Ignore,
                OnConflictAction::DoUpdate(update) => {
                    let (assignments, selection) = (&update.assignments, update.selection.as_ref());
                    conflict_update(&tables, &def, alias.as_deref(), assignments, selection, arbiter)?
                }
            }
        }
        Some(other) => return Err(Error::unsupported(format!("{other}"))),
    };
    if matches!(conflict, Conflict::Ignore) && insert.returning.is_some() {
        return Err(Error::Unsupported("RETURNING with ON CONFLICT DO NOTHING is not supported yet".into()));
    }
    refuse_identity_values(insert, &def)?;
    if let Some(insert) = ParamInsert::plan(insert, &def, &conflict) {
        let params = typed(insert.param_types());
        return Ok((Plan::ParamInsert(insert), None, params));
    }
    let mut bare = insert.clone();
    bare.on = None;
    bare.returning = None;
    // The alias names the target in ON CONFLICT and RETURNING only, both planned above.
    bare.table_alias = None;
    replace_defaults(&mut bare, &def)?;
    let source = match bare.source.as_ref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(_)) | None => {
            let plan = planning(state.statement_to_plan(DfStatement::Statement(Box::new(Statement::Insert(bare)))))
                .await
                .map_err(from_datafusion)?;
            match plan {
                LogicalPlan::Dml(DmlStatement { op: DfWriteOp::Insert(_), input, .. }) => Arc::unwrap_or_clone(input),
                other => return Err(Error::Internal(format!("INSERT planned as {}", other.display()))),
            }
        }
        Some(_) => query_source(planner, &bare, &def).await?,
    };
    let source = async_values(source)?;
    let returning = match insert.returning.as_deref() {
        Some(items) => Some(Returning::plan(&tables, &def, alias.as_deref(), items)?),
        None => None,
    };
    let mut params = inferred(&source)?;
    let mut more = Vec::new();
    if let Conflict::Update { sets, filter, .. } = &conflict {
        more.extend(in_exprs(sets.iter().map(|(_, e)| e).chain(filter))?);
    }
    if let Some(r) = &returning {
        more.extend(in_exprs(&r.exprs)?);
    }
    merge_types(&mut params, more);
    let schema = returning.as_ref().map(|r| r.schema.clone());
    Ok((Plan::Insert(InsertPlan { def, source, conflict, returning }), schema, params))
}

/// The source of `INSERT ... SELECT` (or any query but a bare VALUES), planned alone and then
/// mapped to the table's columns as DataFusion's INSERT planning maps it (each target column
/// cast to its type, every other column its default). DataFusion plans the whole source with
/// the target columns as the shape of every VALUES in it, so a VALUES inside the query (what
/// SQLAlchemy 2 sends for a batch of ORM objects: `INSERT INTO t (a, b) SELECT p0, p1 FROM
/// (VALUES (..., 0), (..., 1)) AS s(p0, p1, n) ORDER BY n RETURNING ...`) would not plan.
async fn query_source(planner: &Planner<'_>, insert: &Insert, def: &TableDef) -> Result<LogicalPlan> {
    let query = insert.source.clone().ok_or_else(|| Error::Internal("an INSERT without a source".into()))?;
    let state = planner.ctx.state();
    let source = super::query::statement_plan(&state, &Statement::Query(query)).await?;
    let mut columns = target_columns(insert, def)?;
    let given = source.schema().fields().len();
    // Without a column list the values fill the leading columns, as PostgreSQL takes them.
    if insert.columns.is_empty() && given < columns.len() {
        columns.truncate(given);
    }
    if given != columns.len() {
        return Err(Error::SyntaxError(match given > columns.len() {
            true => "INSERT has more expressions than target columns".into(),
            false => "INSERT has more target columns than expressions".into(),
        }));
    }
    let provider = planner.ctx.table_provider(def.name.as_str()).await.map_err(from_datafusion)?;
    let mut exprs = Vec::new();
    for c in def.visible() {
        let column = &def.columns[c];
        let ty = column.ty.arrow();
        let value = match columns.iter().position(|t| *t == c) {
            Some(j) => Expr::Column(Column::from(source.schema().qualified_field(j))).cast_to(&ty, source.schema()),
            None => provider
                .get_column_default(&column.name)
                .cloned()
                .unwrap_or(Expr::Literal(ScalarValue::Null, None))
                .cast_to(&ty, &DFSchema::empty()),
        };
        exprs.push(value.map_err(from_datafusion)?.alias(column.name.clone()));
    }
    LogicalPlanBuilder::from(source).project(exprs).and_then(|b| b.build()).map_err(from_datafusion)
}

/// `ON CONFLICT DO UPDATE SET ... [WHERE ...]` as expressions over the existing row and the
/// proposed one (`excluded`); [`Conflict::Overwrite`] when it sets every non-key column from
/// `excluded` without a condition.
fn conflict_update(
    tables: &Tables<'_>,
    def: &TableDef,
    alias: Option<&str>,
    assignments: &[Assignment],
    selection: Option<&AstExpr>,
    arbiter: Option<String>,
) -> Result<Conflict> {
    let existing = DFSchema::try_from(def.full_schema()).map_err(from_datafusion)?;
    let excluded = DFSchema::try_from_qualified_schema("excluded", &def.full_schema()).map_err(from_datafusion)?;
    let mut schema = existing;
    schema.merge(&excluded);
    let table = alias.unwrap_or(&def.name);
    let mut sets = Vec::new();
    let mut overwrite_all = selection.is_none();
    for a in assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return Err(Error::Unsupported("SET (a, b) = ... is not supported".into()));
        };
        let name = column_name(col);
        let i = def.column(&name)?;
        if def.pk.contains(&i) {
            return Err(Error::Unsupported("ON CONFLICT DO UPDATE of a primary key column is not supported".into()));
        }
        let value = tables.expr(&unqualified(&a.value, table), &schema)?;
        let from_excluded = matches!(&value, Expr::Column(c)
            if c.relation.as_ref().is_some_and(|r| r.table() == "excluded") && c.name == name);
        overwrite_all &= from_excluded;
        sets.push((i, with_type(value, def, i)));
    }
    let non_key = def.columns.iter().enumerate().filter(|(i, c)| !def.pk.contains(i) && c.is_visible()).count();
    if overwrite_all && sets.len() == non_key && arbiter.is_none() {
        return Ok(Conflict::Overwrite);
    }
    let filter = selection.map(|s| tables.expr(&unqualified(s, table), &schema)).transpose()?;
    Ok(Conflict::Update { sets, filter, schema: Arc::new(schema), arbiter })
}

/// The unique index an `ON CONFLICT (cols)` / `ON CONSTRAINT name` target names (None: the
/// primary key, or no target). A target matching no unique index is 42P10, as in PostgreSQL.
fn arbiter(def: &TableDef, target: Option<&ConflictTarget>) -> Result<Option<String>> {
    let public_unique = || def.indexes.iter().filter(|i| i.unique && i.state == IndexState::Public);
    match target {
        None => Ok(None),
        Some(ConflictTarget::Columns(columns)) => {
            let mut named = columns.iter().map(|c| def.column(&ident(c))).collect::<Result<Vec<_>>>()?;
            named.sort_unstable();
            named.dedup();
            let same = |cols: &[usize]| {
                let mut cols = cols.to_vec();
                cols.sort_unstable();
                cols == named
            };
            if same(&def.pk) && !def.has_rowid() {
                return Ok(None);
            }
            match public_unique().find(|i| same(&i.columns)) {
                Some(index) => Ok(Some(index.name.clone())),
                None => Err(Error::InvalidColumnReference(
                    "there is no unique or exclusion constraint matching the ON CONFLICT specification".into(),
                )),
            }
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let name = table_name(name)?;
            if name == def.pkey_name() && !def.has_rowid() {
                return Ok(None);
            }
            match public_unique().find(|i| i.constraint && i.name == name) {
                Some(index) => Ok(Some(index.name.clone())),
                None => Err(Error::UndefinedObject(format!(
                    "constraint \"{name}\" for table \"{}\" does not exist",
                    def.name
                ))),
            }
        }
    }
}

/// `expr` with `<table>.c` written `c`.
fn unqualified(expr: &AstExpr, table: &str) -> AstExpr {
    let mut e = expr.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let AstExpr::CompoundIdentifier(parts) = x {
            if parts.len() == 2 && ident(&parts[0]) == table {
                *x = AstExpr::Identifier(parts[1].clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    e
}

/// `DEFAULT` in an INSERT's VALUES becomes the column's default (or NULL), which DataFusion's
/// planner does not do itself; a text literal for a bytea column is read in bytea's input
/// format.
fn replace_defaults(insert: &mut Insert, def: &TableDef) -> Result<()> {
    let columns = target_columns(insert, def)?;
    let Some(source) = insert.source.as_mut() else { return Ok(()) };
    let SetExpr::Values(values) = source.body.as_mut() else { return Ok(()) };
    for row in &mut values.rows {
        for (i, e) in row.iter_mut().enumerate() {
            let Some(&col) = columns.get(i) else { continue };
            let c = &def.columns[col];
            if c.ty == SqlType::Bytea {
                // A text literal for a bytea column is in bytea's input format ('\x..' or
                // escapes), which DataFusion's text-to-binary cast would take byte for byte.
                if let AstExpr::Value(v) = e {
                    if let Value::SingleQuotedString(text) = &v.value {
                        let bytes = bytea_from_text(text)?;
                        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                        v.value = Value::HexStringLiteral(hex);
                    }
                }
                continue;
            }
            if !is_default_keyword(e) {
                continue;
            }
            let cast = |expr| AstExpr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(expr),
                data_type: cast_type(&c.ty),
                array: false,
                format: None,
            };
            *e = match (&c.default, &c.computed) {
                (_, Some(computed)) => cast(computed_call(computed)),
                (Some(text), None) => cast(AstExpr::Value(Value::SingleQuotedString(text.clone()).with_empty_span())),
                (None, None) => AstExpr::Value(Value::Null.with_empty_span()),
            };
        }
    }
    Ok(())
}

/// `INSERT INTO t DEFAULT VALUES` as `INSERT INTO t (c) VALUES (DEFAULT)`, `c` its first
/// visible column (every other column takes its default anyway).
/// `INSERT INTO t VALUES (...)` with fewer values per row than `t` has columns: the same
/// with the leading columns named (the others take their defaults, as in PostgreSQL); more
/// values than columns is 42601.
fn leading_columns(insert: &Insert, def: &TableDef) -> Result<Option<Insert>> {
    let values = match insert.source.as_ref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(values)) if insert.columns.is_empty() => values,
        _ => return Ok(None),
    };
    let Some(given) = values.rows.iter().map(|r| r.len()).max() else { return Ok(None) };
    let visible = def.visible();
    if given > visible.len() {
        return Err(Error::SyntaxError("INSERT has more expressions than target columns".into()));
    }
    if given == visible.len() {
        return Ok(None);
    }
    let mut insert = insert.clone();
    insert.columns = visible[..given]
        .iter()
        .map(|&c| ObjectName::from(vec![Ident::with_quote('"', &def.columns[c].name)]))
        .collect();
    Ok(Some(insert))
}

fn with_default_values(insert: &Insert, def: &TableDef) -> Result<Insert> {
    let first = def
        .visible()
        .first()
        .map(|&c| def.columns[c].name.clone())
        .ok_or_else(|| Error::Internal(format!("table \"{}\" has no visible column", def.name)))?;
    let values = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("VALUES (DEFAULT)")
        .and_then(|mut p| p.parse_query())
        .map_err(Error::internal)?;
    let mut insert = insert.clone();
    insert.columns = vec![ObjectName::from(vec![Ident::with_quote('"', first)])];
    insert.source = Some(values);
    Ok(insert)
}

/// A computed default as the function call DataFusion plans (`nextval` is the session's).
fn computed_call(computed: &Computed) -> AstExpr {
    let text = |t: &str| AstExpr::Value(Value::SingleQuotedString(t.to_string()).with_empty_span());
    match computed {
        Computed::Nextval(sequence) => call("nextval", vec![text(sequence)]),
        Computed::Now | Computed::CurrentTimestamp | Computed::LocalTimestamp => call("now", vec![]),
        Computed::CurrentDate => call("current_date", vec![]),
        Computed::RandomUuid => call("uuid", vec![]),
    }
}

/// An INSERT may not give a `GENERATED ALWAYS` identity column a value other than DEFAULT
/// (428C9; PostgreSQL's `OVERRIDING SYSTEM VALUE` is not parsed).
fn refuse_identity_values(insert: &Insert, def: &TableDef) -> Result<()> {
    let columns = target_columns(insert, def)?;
    let Some(source) = insert.source.as_ref() else { return Ok(()) };
    for (i, &col) in columns.iter().enumerate() {
        if def.columns[col].identity != Some(Identity::Always) {
            continue;
        }
        let all_default = match source.body.as_ref() {
            SetExpr::Values(values) => values.rows.iter().all(|row| row.get(i).is_none_or(is_default_keyword)),
            _ => false,
        };
        if !all_default {
            return Err(Error::GeneratedAlways(format!(
                "cannot insert a non-DEFAULT value into column \"{}\"",
                def.columns[col].name
            )));
        }
    }
    Ok(())
}

/// The bare keyword `DEFAULT` where a value stands.
pub(crate) fn is_default_keyword(e: &AstExpr) -> bool {
    matches!(e, AstExpr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
}

/// A type DataFusion's CAST accepts for a column type (its text types are all TEXT).
fn cast_type(ty: &SqlType) -> AstType {
    match ty {
        SqlType::SmallInt => AstType::SmallInt(None),
        SqlType::Integer => AstType::Integer(None),
        SqlType::BigInt => AstType::BigInt(None),
        SqlType::Real => AstType::Real,
        SqlType::Double => AstType::DoublePrecision,
        SqlType::Numeric(p, s) => AstType::Decimal(ExactNumberInfo::PrecisionAndScale(u64::from(*p), i64::from(*s))),
        SqlType::Boolean => AstType::Boolean,
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Uuid | SqlType::Jsonb | SqlType::Text => AstType::Text,
        SqlType::Bytea => AstType::Bytea,
        SqlType::Date => AstType::Date,
        SqlType::Timestamp => AstType::Timestamp(None, TimezoneInfo::None),
        SqlType::TimestampTz => AstType::Timestamp(None, TimezoneInfo::WithTimeZone),
    }
}
