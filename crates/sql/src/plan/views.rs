//! Views at the plan stage. [`expand`] replaces each view a statement names with the view's
//! query, as a derived table under the view's name and with its column names, before the rest
//! of the plan stage sees the statement (what PostgreSQL's rewriter does): a view is planned,
//! optimised and pushed down into like the query it stands for, and every node reads it from
//! the catalog it caches. [`plan_create`] plans CREATE VIEW: the query's `*` expanded to the
//! columns it means now (a column added to a table later does not appear in the view, as in
//! PostgreSQL), planned once for its column names and types, and the relations it reads.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    visit_relations, CreateView, Expr, Ident, JoinConstraint, JoinOperator, ObjectName, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableAliasColumnDef, TableFactor, TableWithJoins,
    Visit, VisitMut, Visitor, VisitorMut,
};
use raftable_common::{Error, Result};

use super::{query, Plan, Planned, Planner};
use crate::ast::{ident, limits, table_name, Stmt};
use crate::catalog::Catalog;
use crate::table::ViewDef;

/// How many view references one statement may expand, those in views' queries included.
const MAX_EXPANSIONS: usize = 256;

/// `stmt` with every view it reads replaced by the view's query (views in views too). A name
/// that a `WITH` of the statement defines is that common table expression, not a view.
pub(crate) fn expand(stmt: &mut Statement, views: &BTreeMap<String, Arc<ViewDef>>) -> Result<()> {
    if views.is_empty() {
        return Ok(());
    }
    let mut expander = Expander { views, ctes: HashSet::new(), expansions: 0 };
    match VisitMut::visit(stmt, &mut expander) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Expander<'a> {
    views: &'a BTreeMap<String, Arc<ViewDef>>,
    ctes: HashSet<String>,
    expansions: usize,
}

impl VisitorMut for Expander<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|c| ident(&c.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
        let Some(view) = self.view(name) else { return ControlFlow::Continue(()) };
        self.expansions += 1;
        if self.expansions > MAX_EXPANSIONS {
            return ControlFlow::Break(Error::ProgramLimitExceeded(format!(
                "more than {MAX_EXPANSIONS} views to expand in one statement (does view \"{}\" read itself?)",
                view.name
            )));
        }
        let subquery = match parse_query(&view.query) {
            Ok(q) => q,
            Err(e) => return ControlFlow::Break(e),
        };
        let mut alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: quoted(&view.name),
            columns: Vec::new(),
            at: None,
        });
        // Column aliases rename the view's first columns; the others keep the view's names.
        let named = alias.columns.len();
        alias.columns.extend(
            view.columns.iter().skip(named).map(|(c, _)| TableAliasColumnDef { name: quoted(c), data_type: None }),
        );
        *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
        ControlFlow::Continue(())
    }
}

impl Expander<'_> {
    fn view(&self, name: &ObjectName) -> Option<Arc<ViewDef>> {
        let n = table_name(name).ok()?;
        if name.0.len() == 1 && self.ctes.contains(&n) {
            return None;
        }
        self.views.get(&n).cloned()
    }
}

/// `name` as an identifier, quoted only where PostgreSQL would need it.
fn quoted(name: &str) -> Ident {
    if crate::catalog::pg_catalog::quoted(name) == name {
        Ident::new(name)
    } else {
        Ident::with_quote('"', name)
    }
}

/// A view's stored query text, parsed.
fn parse_query(text: &str) -> Result<Box<Query>> {
    let invalid = || Error::InvalidData(format!("stored view query: {text}"));
    match limits::parse(text)?.map_err(|_| invalid())?.pop() {
        Some(Stmt::Sql(Statement::Query(q))) => Ok(q),
        _ => Err(invalid()),
    }
}

/// Plans CREATE [OR REPLACE] VIEW: the definition to store (id 0: the executor allocates it).
pub(crate) async fn plan_create(planner: &Planner<'_>, create: &CreateView) -> Result<Planned> {
    if create.materialized || create.temporary || create.or_alter || create.to.is_some() {
        return Err(Error::unsupported("only plain views are supported (no MATERIALIZED, TEMPORARY)"));
    }
    let name = table_name(&create.name)?;
    let views = planner.catalog.views().await?;
    let mut text = create.query.clone();
    expand_wildcards(planner.catalog, &mut text, &views).await?;
    let mut stmt = Statement::Query(text.clone());
    expand(&mut stmt, &views)?;
    let (_, schema, params) = query::plan(planner, &stmt).await?;
    if !params.is_empty() {
        return Err(Error::InvalidInput("a view's query cannot take parameters".into()));
    }
    let schema = schema.ok_or_else(|| Error::Internal("a query without columns".into()))?;
    if create.columns.len() > schema.fields().len() {
        return Err(Error::SyntaxError("CREATE VIEW specifies more column names than columns".into()));
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let name = create.columns.get(i).map(|c| ident(&c.name)).unwrap_or_else(|| field.name().clone());
        if columns.iter().any(|(c, _)| *c == name) {
            return Err(Error::DuplicateColumn(format!("column \"{name}\" specified more than once")));
        }
        columns.push((name, field.data_type().to_string()));
    }
    let depends = relations_read(planner.catalog, &create.query).await?;
    if views.get(&name).is_some_and(|v| depends.contains(&v.id)) {
        return Err(Error::InvalidTableDefinition(format!("view \"{name}\" cannot read itself")));
    }
    let def = ViewDef { id: 0, name, query: text.to_string(), columns, depends, comment: None };
    Ok((Plan::CreateView { def: Box::new(def), or_replace: create.or_replace }, None, Vec::new()))
}

/// The ids of the tables and views `query` reads (names its `WITH` defines excepted).
async fn relations_read(catalog: &Catalog, query: &Query) -> Result<Vec<u32>> {
    let mut ctes = HashSet::new();
    collect_ctes(query, &mut ctes);
    let mut names = Vec::new();
    let _ = visit_relations(query, |name| {
        if let Ok(n) = table_name(name) {
            let cte = name.0.len() == 1 && ctes.contains(&n);
            if !cte && !names.contains(&n) {
                names.push(n);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let mut ids = Vec::new();
    for name in names {
        if let Some(t) = catalog.get(&name).await? {
            ids.push(t.id);
        } else if let Some(v) = catalog.view(&name).await? {
            ids.push(v.id);
        }
    }
    Ok(ids)
}

fn collect_ctes(query: &Query, ctes: &mut HashSet<String>) {
    struct Ctes<'a>(&'a mut HashSet<String>);
    impl Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0.extend(with.cte_tables.iter().map(|c| ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = Visit::visit(query, &mut Ctes(ctes));
}

/// The top-level `*` and `rel.*` of `query`'s select list as the columns they stand for now,
/// each qualified by its relation (`t.a, t.b`), as PostgreSQL stores a view. Left as written
/// where the relations' columns are not all known here (a derived table, a function, a join
/// with USING or NATURAL, which merge columns).
async fn expand_wildcards(catalog: &Catalog, query: &mut Query, views: &BTreeMap<String, Arc<ViewDef>>) -> Result<()> {
    let SetExpr::Select(select) = query.body.as_mut() else { return Ok(()) };
    let wildcard = |item: &SelectItem| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..));
    if !select.projection.iter().any(wildcard) {
        return Ok(());
    }
    let mut ctes = HashSet::new();
    collect_ctes(query, &mut ctes);
    let SetExpr::Select(select) = query.body.as_mut() else { return Ok(()) };
    let Some(factors) = plain_factors(&select.from) else { return Ok(()) };
    // Each relation: the name it is qualified by, and its columns.
    let mut relations: Vec<(Ident, Vec<String>)> = Vec::new();
    for (name, alias) in factors {
        let Ok(n) = table_name(name) else { return Ok(()) };
        if ctes.contains(&n) {
            return Ok(());
        }
        let columns = if let Some(view) = views.get(&n) {
            view.columns.iter().map(|(c, _)| c.clone()).collect()
        } else if let Some(t) = catalog.get(&n).await? {
            t.visible().iter().map(|i| t.columns[*i].name.clone()).collect()
        } else {
            return Ok(());
        };
        let qualifier = alias.map(|a| a.name.clone()).unwrap_or_else(|| quoted(&n));
        relations.push((qualifier, columns));
    }
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in std::mem::take(&mut select.projection) {
        let chosen: Vec<&(Ident, Vec<String>)> = match &item {
            SelectItem::Wildcard(options) if options.opt_exclude.is_none() && options.opt_except.is_none() => {
                relations.iter().collect()
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), options)
                if options.opt_exclude.is_none() && q.0.len() == 1 =>
            {
                let q = q.0[0].as_ident().map(ident);
                let found: Vec<_> = relations.iter().filter(|(r, _)| Some(ident(r)) == q).collect();
                if found.len() != 1 {
                    projection.push(item);
                    continue;
                }
                found
            }
            _ => {
                projection.push(item);
                continue;
            }
        };
        for (qualifier, columns) in chosen {
            projection.extend(
                columns
                    .iter()
                    .map(|c| SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![qualifier.clone(), quoted(c)]))),
            );
        }
    }
    select.projection = projection;
    Ok(())
}

/// The named relations of a FROM list (name and alias), if that is all it holds and no join
/// merges columns.
fn plain_factors(from: &[TableWithJoins]) -> Option<Vec<(&ObjectName, Option<&TableAlias>)>> {
    let mut out = Vec::new();
    for t in from {
        let factors = std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation));
        for (i, factor) in factors.enumerate() {
            if i > 0 && !keeps_columns(&t.joins[i - 1].join_operator) {
                return None;
            }
            let TableFactor::Table { name, alias, args: None, .. } = factor else { return None };
            out.push((name, alias.as_ref()));
        }
    }
    Some(out)
}

/// Whether a join shows every column of both sides (ON or no condition; not USING, NATURAL).
fn keeps_columns(op: &JoinOperator) -> bool {
    let constraint = match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c) => c,
        _ => return false,
    };
    matches!(constraint, JoinConstraint::On(_) | JoinConstraint::None)
}

/// A view's query text with relation `old` renamed `new`. Where the query names the relation
/// without an alias, it gets `old` as its alias, so that the columns qualified by `old` keep
/// their meaning.
pub(crate) fn renamed_relation(query: &str, old: &str, new: &str) -> Result<String> {
    let mut query = parse_query(query)?;
    let mut ctes = HashSet::new();
    collect_ctes(&query, &mut ctes);
    if ctes.contains(old) {
        return Err(Error::unsupported(format!(
            "cannot rename \"{old}\": a view reads a common table expression of that name"
        )));
    }
    struct Rename<'a> {
        old: &'a str,
        new: &'a str,
    }
    impl VisitorMut for Rename<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor {
                if table_name(name).is_ok_and(|n| n == self.old) {
                    *name = ObjectName::from(vec![quoted(self.new)]);
                    alias.get_or_insert_with(|| TableAlias {
                        explicit: true,
                        name: quoted(self.old),
                        columns: Vec::new(),
                        at: None,
                    });
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(query.as_mut(), &mut Rename { old, new });
    Ok(query.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, query: &str, columns: &[&str]) -> (String, Arc<ViewDef>) {
        let columns = columns.iter().map(|c| (c.to_string(), "Int32".to_string())).collect();
        let def =
            ViewDef { id: 1, name: name.into(), query: query.into(), columns, depends: Vec::new(), comment: None };
        (name.to_string(), Arc::new(def))
    }

    fn expanded(sql: &str, views: &BTreeMap<String, Arc<ViewDef>>) -> Result<String> {
        let mut stmt = limits::parse(sql).unwrap().unwrap().remove(0).into_sql().unwrap();
        expand(&mut stmt, views)?;
        Ok(stmt.to_string())
    }

    #[test]
    fn views_become_derived_tables_named_as_the_view() {
        let views = BTreeMap::from([view("v", "SELECT a, b FROM t WHERE a > 1", &["a", "b"])]);
        assert_eq!(
            expanded("SELECT b FROM v WHERE a = 2", &views).unwrap(),
            "SELECT b FROM (SELECT a, b FROM t WHERE a > 1) AS v (a, b) WHERE a = 2"
        );
        // An alias keeps its name and renames the first columns only.
        assert_eq!(
            expanded("SELECT x.c FROM public.v AS x (c)", &views).unwrap(),
            "SELECT x.c FROM (SELECT a, b FROM t WHERE a > 1) AS x (c, b)"
        );
    }

    #[test]
    fn views_in_views_expand_and_ctes_shadow_views() {
        let views = BTreeMap::from([view("v", "SELECT a FROM t", &["a"]), view("w", "SELECT a FROM v", &["a"])]);
        assert_eq!(
            expanded("SELECT a FROM w", &views).unwrap(),
            "SELECT a FROM (SELECT a FROM (SELECT a FROM t) AS v (a)) AS w (a)"
        );
        assert_eq!(
            expanded("WITH v AS (SELECT 1 AS a) SELECT a FROM v", &views).unwrap(),
            "WITH v AS (SELECT 1 AS a) SELECT a FROM v"
        );
    }

    #[test]
    fn a_view_reading_itself_is_an_error_not_a_loop() {
        let views = BTreeMap::from([view("v", "SELECT a FROM v", &["a"])]);
        assert!(matches!(expanded("SELECT * FROM v", &views), Err(Error::ProgramLimitExceeded(_))));
    }

    #[test]
    fn a_renamed_relation_keeps_its_old_name_as_alias() {
        assert_eq!(
            renamed_relation("SELECT t.a FROM t JOIN u AS x ON x.a = t.a", "t", "t2").unwrap(),
            "SELECT t.a FROM t2 AS t JOIN u AS x ON x.a = t.a"
        );
        assert_eq!(renamed_relation("SELECT x.a FROM t AS x", "t", "t2").unwrap(), "SELECT x.a FROM t2 AS x");
    }
}
