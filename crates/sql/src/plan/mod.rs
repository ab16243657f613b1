//! The plan stage: what each statement becomes, once, at prepare time ([`Planner::prepare`]).
//!
//! - [`query`]: SELECT / VALUES / EXPLAIN as DataFusion logical plans, optimised once where
//!   that is safe, their result columns named and typed as PostgreSQL does.
//! - [`point`]: the fast paths recognised from the statement's shape (a prepared SELECT by the
//!   full primary key, an INSERT of rows of parameters), which skip DataFusion.
//! - [`insert`]: INSERT's source as a DataFusion plan, ON CONFLICT as expressions over the
//!   existing and the proposed row.
//! - [`modify`]: UPDATE / DELETE as a DataFusion plan reading every column of the matching
//!   rows (and the new values) from the table's shards.
//! - [`returning`]: RETURNING lists as expressions over the rows written.
//! - [`views`]: each view a statement reads replaced by its query, first; CREATE VIEW.
//! - [`params`]: `$n` types at prepare, values bound at execute.
//! - [`context`]: the session's DataFusion context, and DataFusion's SQL planner over tables
//!   resolved ahead for the parts raftable assembles itself; PostgreSQL's meaning registered
//!   in it: [`functions`], [`datetime`] (date/time input, `to_char`) and [`arithmetic`]
//!   (checked integer operators), the last two applied to every expression by [`semantics`];
//!   [`correlated`]: the correlated subqueries DataFusion cannot decorrelate, run per row;
//!   [`jsonb`]: jsonb's operators (`->`, `->>`, `@>`, `?`, ...) and functions;
//!   [`folding`]: constants folded as PostgreSQL folds them, after [`semantics`];
//!   [`physical`]: no LIMIT below a window function, no projection before its filter.
//!
//! DDL needs nothing planned: `exec::ddl` works from the statement. Session commands (BEGIN,
//! SET, SHOW, ...) are the session's own (`crate::session`).

pub(crate) mod arithmetic;
pub(crate) mod context;
pub(crate) mod correlated;
pub(crate) mod datetime;
pub(crate) mod folding;
pub(crate) mod functions;
pub(crate) mod insert;
pub(crate) mod jsonb;
pub(crate) mod modify;
pub(crate) mod params;
pub(crate) mod physical;
pub(crate) mod point;
pub(crate) mod query;
pub(crate) mod returning;
pub(crate) mod semantics;
pub(crate) mod views;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchemaRef;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AlterTable, CommentObject, CreateIndex, CreateTable, ObjectName, ObjectType, SchemaName, Statement,
};
use raftable_common::{Error, Result};

use crate::ast::{first_words, ident, rewrite, schema_name, table_name, AlterSequence, Stmt};
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::table::{split_name, TableDef, ViewDef};
use crate::xact::XactCall;

/// A planned statement, ready to execute any number of times.
pub struct Prepared {
    /// Parameter types, in `$1..$n` order.
    pub params: Vec<DataType>,
    /// The columns it returns (`None`: a command without rows).
    pub schema: Option<SchemaRef>,
    pub(crate) plan: Plan,
}

/// What a statement does when executed.
pub(crate) enum Plan {
    /// A primary-key lookup, executed without DataFusion.
    PointSelect(point::PointSelect),
    /// An insert of rows of parameters, executed without DataFusion.
    ParamInsert(point::ParamInsert),
    Query(query::QueryPlan),
    Insert(insert::InsertPlan),
    /// UPDATE or DELETE.
    Modify(modify::ModifyPlan),
    /// TRUNCATE: a DELETE of every row of each table, in the statement's transaction; with
    /// `RESTART IDENTITY`, the tables' own sequences start over.
    Truncate {
        tables: Vec<modify::ModifyPlan>,
        restart_identity: bool,
    },
    CreateTable(Box<CreateTable>),
    AlterTable(Box<AlterTable>),
    /// `CASCADE`: the foreign keys of other tables referencing them go too.
    DropTable {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    CreateIndex(Box<CreateIndex>),
    DropIndex {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `CREATE SEQUENCE` (the statement itself).
    CreateSequence(Box<Statement>),
    AlterSequence(Box<AlterSequence>),
    DropSequence {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `CREATE [OR REPLACE] VIEW`: the definition to store (`views::plan_create`).
    CreateView {
        def: Box<ViewDef>,
        or_replace: bool,
    },
    DropView {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    CreateSchema {
        name: String,
        owner: Option<String>,
        if_not_exists: bool,
    },
    DropSchema {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `COMMENT ON ... IS 'text' | NULL` (an empty text is NULL, as in PostgreSQL).
    Comment {
        on: CommentOn,
        comment: Option<String>,
    },
    /// A command on the session's own state, run by the session.
    Session(SessionCommand),
}

/// What a COMMENT ON describes.
#[derive(Debug, Clone)]
pub(crate) enum CommentOn {
    Table(String),
    View(String),
    /// A table's column: (table, column).
    Column(String, String),
}

/// What an INSERT does with a row whose key exists.
#[derive(Debug, Clone)]
pub(crate) enum Conflict {
    /// Fail the statement with 23505.
    Fail,
    /// Skip the row.
    Ignore,
    /// Overwrite the whole row (every non-key column is set from `excluded`).
    Overwrite,
    /// `DO UPDATE SET ... [WHERE ...]`, evaluated per existing row: `sets` pairs a column index
    /// with an expression over `schema`, the existing row's columns (unqualified: the table's
    /// name or alias is dropped, as PostgreSQL resolves an unqualified name to the target
    /// table) followed by the proposed row's (qualified `excluded`).
    /// `arbiter`: the unique index whose values decide the conflict (None: the primary key).
    Update { sets: Vec<(usize, Expr)>, filter: Option<Expr>, schema: DFSchemaRef, arbiter: Option<String> },
}

/// A statement about the session itself rather than the data.
#[derive(Debug, Clone)]
pub(crate) enum SessionCommand {
    /// `BEGIN` / `START TRANSACTION`, `READ ONLY` or not if it says.
    Begin {
        read_only: Option<bool>,
    },
    Commit,
    Rollback,
    Savepoint(String),
    RollbackTo(String),
    Release(String),
    SetTransaction {
        read_only: Option<bool>,
    },
    /// `SET CONSTRAINTS { ALL | names } { DEFERRED | IMMEDIATE }` (`names` empty: ALL).
    SetConstraints {
        names: Vec<String>,
        deferred: bool,
    },
    /// `SET name = value` (`None`: `DEFAULT`).
    Set {
        name: String,
        value: Option<String>,
    },
    Show(String),
    /// `SELECT txid_current()` / `SELECT txid_status(id)` (`crate::xact`).
    Xact(XactCall),
}

impl Prepared {
    /// A session command, prepared.
    pub(crate) fn session(command: SessionCommand, schema: Option<SchemaRef>) -> Self {
        Prepared { params: Vec::new(), schema, plan: Plan::Session(command) }
    }

    /// The table a prepared write or point read was planned against (it must still be the
    /// current table of that name when the statement runs).
    pub(crate) fn target(&self) -> Option<&Arc<TableDef>> {
        match &self.plan {
            Plan::PointSelect(p) => Some(&p.def),
            Plan::ParamInsert(p) => Some(&p.def),
            Plan::Insert(p) => Some(&p.def),
            Plan::Modify(p) => Some(&p.def),
            _ => None,
        }
    }

    /// Whether running it writes rows.
    pub(crate) fn writes(&self) -> bool {
        matches!(self.plan, Plan::ParamInsert(_) | Plan::Insert(_) | Plan::Modify(_) | Plan::Truncate { .. })
    }

    /// The command a write is, as errors name it.
    pub(crate) fn command(&self) -> &'static str {
        match &self.plan {
            Plan::ParamInsert(_) | Plan::Insert(_) => "INSERT",
            Plan::Modify(m) => m.command(),
            Plan::Truncate { .. } => "TRUNCATE TABLE",
            _ => "this statement",
        }
    }
}

/// What a planned statement needs: the session's DataFusion context, the catalog and the
/// cluster (whose shards the internal reads of writes scan).
pub(crate) struct Planner<'a> {
    pub ctx: &'a SessionContext,
    pub catalog: &'a Arc<Catalog>,
    pub cluster: &'a Arc<dyn Cluster>,
}

/// A statement's plan, the columns it returns and the parameter types known from the plan
/// (`Null` where unknown).
pub(crate) type Planned = (Plan, Option<SchemaRef>, Vec<DataType>);

impl Planner<'_> {
    /// Plans a data statement (queries, DML, DDL). `declared` are the parameter types the
    /// client gave (None: infer).
    pub(crate) async fn prepare(&self, stmt: &Stmt, declared: &[Option<DataType>]) -> Result<Prepared> {
        let stmt = match stmt {
            Stmt::Sql(stmt) => stmt,
            Stmt::AlterSequence(alter) => {
                let plan = Plan::AlterSequence(Box::new(alter.clone()));
                return Ok(Prepared { params: Vec::new(), schema: None, plan });
            }
            Stmt::SetConstraints { .. } => return Err(Error::Internal("SET CONSTRAINTS planned as data".into())),
        };
        let mut stmt = stmt.clone();
        rewrite::float_exponents(&mut stmt);
        rewrite::regclass_arguments(&mut stmt);
        rewrite::distinct_nextvals(&mut stmt);
        rewrite::regclass_of_text(&mut stmt);
        rewrite::ordinal_order_by(&mut stmt);
        rewrite::having_without_group_by(&mut stmt);
        if !matches!(stmt, Statement::CreateView(_)) {
            let views = self.catalog.views().await?;
            if let Some(target) = write_target(&stmt).filter(|_| !views.is_empty()) {
                if views.contains_key(&table_name(target)?) {
                    self.table(target).await?;
                }
            }
            views::expand(&mut stmt, &views)?;
        }
        let (plan, schema, inferred) = match &stmt {
            Statement::Query(_) | Statement::Explain { .. } => query::plan(self, &stmt).await?,
            Statement::Insert(insert) => insert::plan(self, insert).await?,
            Statement::Update(update) => modify::plan_update(self, update).await?,
            Statement::Delete(delete) => modify::plan_delete(self, delete).await?,
            Statement::Truncate(truncate) => modify::plan_truncate(self, truncate).await?,
            Statement::CreateTable(create) => (Plan::CreateTable(Box::new(create.clone())), None, Vec::new()),
            Statement::AlterTable(alter) => (Plan::AlterTable(Box::new(alter.clone())), None, Vec::new()),
            Statement::Drop { object_type: ObjectType::Table, if_exists, names, cascade, .. } => {
                let names = names.iter().map(table_name).collect::<Result<_>>()?;
                (Plan::DropTable { names, if_exists: *if_exists, cascade: *cascade }, None, Vec::new())
            }
            Statement::CreateIndex(create) => (Plan::CreateIndex(Box::new(create.clone())), None, Vec::new()),
            Statement::Drop { object_type: ObjectType::Index, if_exists, names, .. } => {
                // Index names are unique across schemas here: `s.i` is `i`.
                let bare = |n: &ObjectName| table_name(n).map(|n| split_name(&n).1.to_string());
                let names = names.iter().map(bare).collect::<Result<_>>()?;
                (Plan::DropIndex { names, if_exists: *if_exists }, None, Vec::new())
            }
            Statement::CreateSequence { temporary: false, .. } => {
                (Plan::CreateSequence(Box::new(stmt.clone())), None, Vec::new())
            }
            Statement::Drop { object_type: ObjectType::Sequence, if_exists, names, cascade, .. } => {
                let names = names.iter().map(table_name).collect::<Result<_>>()?;
                (Plan::DropSequence { names, if_exists: *if_exists, cascade: *cascade }, None, Vec::new())
            }
            Statement::CreateView(create) => views::plan_create(self, create).await?,
            Statement::Comment { object_type, object_name, comment, .. } => {
                let on = match object_type {
                    CommentObject::Table => CommentOn::Table(table_name(object_name)?),
                    CommentObject::View => CommentOn::View(table_name(object_name)?),
                    CommentObject::Column => {
                        let (table, column) = object_name.0.split_at(object_name.0.len().saturating_sub(1));
                        let column = column.first().and_then(|c| c.as_ident()).map(crate::ast::ident);
                        let column =
                            column.ok_or_else(|| Error::SyntaxError("COMMENT ON COLUMN needs table.column".into()))?;
                        CommentOn::Column(table_name(&ObjectName(table.to_vec()))?, column)
                    }
                    other => return Err(Error::unsupported(format!("COMMENT ON {other} is not supported"))),
                };
                let comment = comment.clone().filter(|c| !c.is_empty());
                (Plan::Comment { on, comment }, None, Vec::new())
            }
            Statement::CreateSchema { schema_name: name, if_not_exists, .. } => {
                let (name, owner) = match name {
                    SchemaName::Simple(name) => (schema_name(name)?, None),
                    SchemaName::NamedAuthorization(name, role) => (schema_name(name)?, Some(ident(role))),
                    SchemaName::UnnamedAuthorization(role) => (ident(role), Some(ident(role))),
                };
                (Plan::CreateSchema { name, owner, if_not_exists: *if_not_exists }, None, Vec::new())
            }
            Statement::Drop { object_type: ObjectType::Schema, if_exists, names, cascade, .. } => {
                let names = names.iter().map(schema_name).collect::<Result<_>>()?;
                (Plan::DropSchema { names, if_exists: *if_exists, cascade: *cascade }, None, Vec::new())
            }
            Statement::Drop { object_type: ObjectType::View, if_exists, names, cascade, .. } => {
                let names = names.iter().map(table_name).collect::<Result<_>>()?;
                (Plan::DropView { names, if_exists: *if_exists, cascade: *cascade }, None, Vec::new())
            }
            other => return Err(Error::unsupported(format!("statement not supported: {}", first_words(other)))),
        };
        let params = params::resolve(inferred, &rewrite::param_hints(&stmt), declared);
        Ok(Prepared { params, schema, plan })
    }

    /// The definition of the table `name` names, to write to; 42P01 if there is none, 0A000
    /// for a view (raftable's views are read-only).
    pub(crate) async fn table(&self, name: &ObjectName) -> Result<Arc<TableDef>> {
        let name = table_name(name)?;
        if let Some(def) = self.catalog.get(&name).await? {
            return Ok(def);
        }
        if self.catalog.view(&name).await?.is_some() {
            return Err(Error::unsupported(format!("cannot change view \"{name}\": views are read-only")));
        }
        Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist")))
    }
}

/// The table an UPDATE or DELETE writes (checked before views are expanded: a view written is
/// refused, not expanded).
fn write_target(stmt: &Statement) -> Option<&ObjectName> {
    use datafusion::sql::sqlparser::ast::{FromTable, TableFactor};
    let relation = match stmt {
        Statement::Update(update) => &update.table.relation,
        Statement::Delete(delete) => match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => &from.first()?.relation,
        },
        _ => return None,
    };
    match relation {
        TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

/// A function's result: a scalar when every argument was one (the functions of [`datetime`],
/// [`arithmetic`], ...).
fn columnar(
    array: datafusion::arrow::array::ArrayRef,
    scalar: bool,
) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    if scalar {
        Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}
