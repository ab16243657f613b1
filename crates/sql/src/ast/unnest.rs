//! `unnest` in a FROM list and `ARRAY(subquery)`, rewritten into forms DataFusion runs.
//!
//! Catalog queries (Django's `get_constraints`, psql's `\d+`) unnest an array column of an
//! earlier FROM item (`pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY k(key, opt, n)`)
//! or of the enclosing query (`array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY ...)`),
//! and collect a subquery's rows with `ARRAY(subquery)`. DataFusion has no lateral joins, no
//! `WITH ORDINALITY` and no `ARRAY(subquery)`; it has `unnest` in a select list (several zip, the
//! shorter padded with NULLs, as PostgreSQL's multi-argument unnest does), `generate_series` as
//! an array function, and it decorrelates an aggregating scalar subquery. So:
//!
//! - [`lateral`]: an `unnest(a.x, ...)` item over an earlier FROM item `a` is joined into `a`:
//!   `(SELECT a.*, unnest(a.x) AS k, unnest(generate_series(1, cardinality(a.x))) AS n FROM t a)
//!   AS a`, the unnest's columns then named through `a`. One over a table `t o` of an enclosing
//!   query reads `(SELECT DISTINCT <the columns it uses> FROM t) AS o` instead, and the query is
//!   correlated with `o` by equality on those columns (which DataFusion decorrelates).
//! - [`array_subqueries`]: `ARRAY(SELECT e FROM ... ORDER BY o)` becomes
//!   `coalesce((SELECT array_agg(e ORDER BY o) FROM ...), make_array())` (an empty array, not
//!   NULL, when no row matches).
//!
//! Both apply to every statement whose text names `unnest` or `array` ([`may_apply`], a byte
//! scan that keeps the AST walks off the hot path), from `super::parse`, after
//! datafusion-pg-catalog's rewrites; the answers are PostgreSQL's.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, FunctionArguments, GroupByExpr, Ident, ObjectName,
    OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias,
    TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{call, ident, parsed_query, plain_args};

/// Whether `sql` may hold something [`rewrite`] changes: it names `unnest` or `array` in any
/// case. No allocation; a statement without either word is left alone.
pub(crate) fn may_apply(sql: &str) -> bool {
    let names = |word: &[u8]| sql.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    names(b"unnest") || names(b"array")
}

/// Both rewrites, lateral unnests first (an `ARRAY(subquery)` may read one).
pub(crate) fn rewrite(stmt: &mut Statement) {
    lateral(stmt);
    array_subqueries(stmt);
}

/// An `unnest(...)` FROM item: what it unnests, the name it binds, and its output columns.
struct Unnest {
    args: Vec<Expr>,
    binding: String,
    /// One per argument, then the ordinality column's if any.
    columns: Vec<String>,
    ordinality: bool,
}

impl Unnest {
    fn of(factor: &TableFactor) -> Option<Unnest> {
        let (args, alias, ordinality) = match factor {
            TableFactor::UNNEST { alias, array_exprs, with_offset: false, with_ordinality, .. } => {
                (array_exprs.clone(), alias, *with_ordinality)
            }
            TableFactor::Table { name, alias, args: Some(args), with_ordinality, .. } if is_unnest(name) => {
                (plain_args(&args.args)?, alias, *with_ordinality)
            }
            TableFactor::Function { name, args, with_ordinality, alias, .. } if is_unnest(name) => {
                (plain_args(args)?, alias, *with_ordinality)
            }
            _ => return None,
        };
        if args.is_empty() {
            return None;
        }
        let binding = alias.as_ref().map_or_else(|| "unnest".to_string(), |a| ident(&a.name));
        let named = |i: usize| alias.as_ref().and_then(|a| a.columns.get(i)).map(|c| ident(&c.name));
        let mut columns: Vec<String> = (0..args.len())
            .map(|i| named(i).unwrap_or_else(|| if args.len() == 1 { binding.clone() } else { "unnest".into() }))
            .collect();
        if ordinality {
            columns.push(named(args.len()).unwrap_or_else(|| "ordinality".into()));
        }
        Some(Unnest { args, binding, columns, ordinality })
    }

    /// The select items that produce its columns, one row per element.
    fn items(&self) -> Vec<String> {
        let mut items: Vec<String> =
            self.args.iter().zip(&self.columns).map(|(a, c)| format!("unnest({a}) AS {}", quoted(c))).collect();
        if self.ordinality {
            let lengths: Vec<String> = self.args.iter().map(|a| format!("cardinality({a})")).collect();
            let length = match lengths.as_slice() {
                [one] => one.clone(),
                many => format!("greatest({})", many.join(", ")),
            };
            let name = quoted(self.columns.last().expect("ordinality column"));
            items.push(format!("unnest(generate_series(1, {length})) AS {name}"));
        }
        items
    }

    /// The table names its arguments qualify columns with; None when one is not a plain
    /// `name.column` (an unqualified column, or a longer name).
    fn reads(&self) -> Option<HashSet<String>> {
        let mut tables = HashSet::new();
        let mut plain = true;
        for arg in &self.args {
            let _ = visit_expressions(arg, |e| {
                match e {
                    Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                        tables.insert(ident(&parts[0]));
                    }
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => plain = false,
                    Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => plain = false,
                    _ => {}
                }
                ControlFlow::<()>::Continue(())
            });
        }
        plain.then_some(tables)
    }
}

fn is_unnest(name: &ObjectName) -> bool {
    name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"))
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// The name a FROM item binds (its alias, else its table's last name part), and the table it
/// reads when it is a plain table.
fn binding(factor: &TableFactor) -> Option<(String, Option<ObjectName>)> {
    match factor {
        TableFactor::Table { name, alias, args: None, .. } => {
            let bound = match alias {
                Some(a) => ident(&a.name),
                None => name.0.last().and_then(|p| p.as_ident()).map(ident)?,
            };
            Some((bound, Some(name.clone())))
        }
        TableFactor::Derived { alias: Some(a), .. } => Some((ident(&a.name), None)),
        other => Unnest::of(other).map(|u| (u.binding, None)),
    }
}

/// The names a select's FROM list binds.
fn scope(select: &Select) -> HashMap<String, Option<ObjectName>> {
    select
        .from
        .iter()
        .flat_map(|f| std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation)))
        .filter_map(binding)
        .collect()
}

fn derived(sql: &str, alias: &str) -> Option<TableFactor> {
    Some(TableFactor::Derived {
        lateral: false,
        subquery: Box::new(parsed_query(sql)?),
        alias: Some(TableAlias { explicit: true, name: quoted(alias), columns: Vec::new(), at: None }),
        sample: None,
    })
}

/// Rewrites the unnests of `stmt` over another FROM item or an enclosing query's table.
fn lateral(stmt: &mut Statement) {
    struct Scopes(Vec<HashMap<String, Option<ObjectName>>>);
    impl VisitorMut for Scopes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let outer: HashMap<String, Option<ObjectName>> =
                self.0.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            while join_into_earlier(query) {}
            let mut local = HashMap::new();
            if let SetExpr::Select(select) = query.body.as_mut() {
                while correlate(select, &outer) {}
                local = scope(select);
            }
            self.0.push(local);
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.0.pop();
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Scopes(Vec::new()));
}

/// Joins one unnest over an earlier item of the same FROM list into that item; whether it did.
fn join_into_earlier(query: &mut Query) -> bool {
    let SetExpr::Select(select) = query.body.as_mut() else { return false };
    let mut found = None;
    for (j, item) in select.from.iter().enumerate().skip(1) {
        let Some(unnest) = Unnest::of(&item.relation).filter(|_| item.joins.is_empty()) else { continue };
        let Some(reads) = unnest.reads() else { continue };
        let earlier = select.from[..j].iter().position(|f| {
            f.joins.is_empty() && binding(&f.relation).is_some_and(|(b, _)| reads.len() == 1 && reads.contains(&b))
        });
        if let Some(k) = earlier {
            found = Some((j, k, unnest));
            break;
        }
    }
    let Some((j, k, unnest)) = found else { return false };
    let Some((bound, _)) = binding(&select.from[k].relation) else { return false };
    let sql = format!("SELECT {}.*, {} FROM {}", quoted(&bound), unnest.items().join(", "), select.from[k].relation);
    let Some(factor) = derived(&sql, &bound) else { return false };
    select.from[k].relation = factor;
    select.from.remove(j);
    renamed(query, &unnest, &bound);
    true
}

/// `query` with the unnest's columns named through `bound`, the item they now come from.
fn renamed(query: &mut Query, unnest: &Unnest, bound: &str) {
    if let SetExpr::Select(select) = query.body.as_mut() {
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            match item {
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _)
                    if name.0.len() == 1 && name.0[0].as_ident().map(ident).as_deref() == Some(&unnest.binding) =>
                {
                    projection.extend(
                        unnest
                            .columns
                            .iter()
                            .map(|c| SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![quoted(bound), quoted(c)]))),
                    )
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
    }
    let _ = visit_expressions_mut(query, |e| {
        if let Expr::CompoundIdentifier(parts) = e {
            if parts.len() == 2 && ident(&parts[0]) == unnest.binding {
                parts[0] = quoted(bound);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Rewrites one unnest of `select`'s FROM list over a table of an enclosing query (`outer`),
/// correlating `select` with it by equality; whether it did.
fn correlate(select: &mut Select, outer: &HashMap<String, Option<ObjectName>>) -> bool {
    let local = scope(select);
    for item in &mut select.from {
        let Some(unnest) = Unnest::of(&item.relation) else { continue };
        let Some(reads) = unnest.reads() else { continue };
        let [table] = reads.iter().collect::<Vec<_>>()[..] else { continue };
        let Some(Some(name)) = outer.get(table).filter(|_| !local.contains_key(table)) else { continue };
        let mut columns = Vec::new();
        for arg in &unnest.args {
            let _ = visit_expressions(arg, |e| {
                if let Expr::CompoundIdentifier(parts) = e {
                    let column = ident(&parts[1]);
                    if !columns.contains(&column) {
                        columns.push(column);
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
        let key = |c: &str| format!("__{table}_{c}");
        let keys: Vec<String> =
            columns.iter().map(|c| format!("{}.{} AS {}", quoted(table), quoted(c), quoted(&key(c)))).collect();
        let distinct: Vec<String> = columns.iter().map(|c| quoted(c).to_string()).collect();
        let sql = format!(
            "SELECT {}, {} FROM (SELECT DISTINCT {} FROM {name}) AS {}",
            keys.join(", "),
            unnest.items().join(", "),
            distinct.join(", "),
            quoted(table)
        );
        let Some(factor) = derived(&sql, &unnest.binding) else { continue };
        item.relation = factor;
        let correlation = columns.iter().map(|c| Expr::BinaryOp {
            left: Box::new(Expr::CompoundIdentifier(vec![quoted(&unnest.binding), quoted(&key(c))])),
            op: BinaryOperator::Eq,
            right: Box::new(Expr::CompoundIdentifier(vec![quoted(table), quoted(c)])),
        });
        select.selection = select.selection.take().into_iter().chain(correlation).reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        });
        return true;
    }
    false
}

/// Rewrites the `ARRAY(subquery)` expressions of `stmt` it can; a select list item that is one
/// keeps PostgreSQL's name for it, `array`.
fn array_subqueries(stmt: &mut Statement) {
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) = item {
                        if array_subquery(e).is_some() {
                            *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: quoted("array") };
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Names);
    let _ = visit_expressions_mut(stmt, |e| {
        if let Some(collected) = array_subquery(e).and_then(collected) {
            *e = call("coalesce", vec![Expr::Subquery(Box::new(collected)), call("make_array", vec![])]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The subquery of an `ARRAY(subquery)` expression.
fn array_subquery(e: &Expr) -> Option<&Query> {
    let Expr::Function(f) = e else { return None };
    match (&f.args, f.name.0.as_slice()) {
        (FunctionArguments::Subquery(q), [name])
            if name.as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case("array")) =>
        {
            Some(q)
        }
        _ => None,
    }
}

/// `q` (one output column) as a query of one row: its values' `array_agg`, in `q`'s order.
fn collected(q: &Query) -> Option<Query> {
    let order: Vec<_> = match q.order_by.as_ref().map(|o| &o.kind) {
        None => Vec::new(),
        Some(OrderByKind::Expressions(exprs)) => exprs.clone(),
        Some(OrderByKind::All(_)) => return None,
    };
    let simple = match q.body.as_ref() {
        SetExpr::Select(s) => {
            q.with.is_none()
                && q.limit_clause.is_none()
                && q.fetch.is_none()
                && s.distinct.is_none()
                && s.having.is_none()
                && matches!(&s.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
                && matches!(s.projection.as_slice(), [SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }])
        }
        _ => false,
    };
    if !simple {
        // Rows in an order array_agg cannot see: not rewritten.
        if !order.is_empty() {
            return None;
        }
        return parsed_query(&format!("SELECT array_agg(\"__array\".\"v\") FROM ({q}) AS \"__array\"(\"v\")"));
    }
    let SetExpr::Select(select) = q.body.as_ref() else { return None };
    let (value, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(ident(alias))),
        _ => return None,
    };
    // ORDER BY 1 or the output's alias name the value itself.
    let order: Vec<String> = order
        .into_iter()
        .map(|mut o| {
            let by_value = match &o.expr {
                Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
                Expr::Identifier(i) => alias.as_deref() == Some(ident(i).as_str()),
                _ => false,
            };
            if by_value {
                o.expr = value.clone();
            }
            o.to_string()
        })
        .collect();
    let order = if order.is_empty() { String::new() } else { format!(" ORDER BY {}", order.join(", ")) };
    let aggregate = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({value}{order})"))
        .ok()?
        .parse_expr()
        .ok()?;
    let mut collected = q.clone();
    collected.order_by = None;
    let SetExpr::Select(select) = collected.body.as_mut() else { return None };
    select.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    Some(collected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn an_unnest_over_an_earlier_item_joins_into_it() {
        let sql = rewritten(
            "SELECT i.indexrelid, koi.key, arridx FROM pg_index i, \
             unnest(i.indkey, i.indoption) WITH ORDINALITY koi(key, option, arridx) ORDER BY koi.arridx",
        );
        assert_eq!(
            sql,
            "SELECT i.indexrelid, \"i\".key, arridx FROM (SELECT \"i\".*, unnest(i.indkey) AS \"key\", \
             unnest(i.indoption) AS \"option\", unnest(generate_series(1, greatest(cardinality(i.indkey), \
             cardinality(i.indoption)))) AS \"arridx\" FROM pg_index i) AS \"i\" ORDER BY \"i\".arridx"
        );
        // Its wildcard names its columns; one argument, no column names: the alias names it.
        let sql = rewritten("SELECT x.* FROM pg_class c, pg_catalog.unnest(c.reloptions) x");
        assert_eq!(
            sql,
            "SELECT \"c\".\"x\" FROM (SELECT \"c\".*, unnest(c.reloptions) AS \"x\" FROM pg_class c) AS \"c\""
        );
    }

    #[test]
    fn an_unnest_over_an_enclosing_table_correlates_with_it() {
        let sql = rewritten(
            "SELECT c.conname, array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY cols(colid, arridx) \
             JOIN pg_attribute AS ca ON cols.colid = ca.attnum WHERE ca.attrelid = c.conrelid \
             ORDER BY cols.arridx) FROM pg_constraint AS c",
        );
        assert_eq!(
            sql,
            "SELECT c.conname, coalesce((SELECT array_agg(attname ORDER BY cols.arridx) FROM (SELECT \
             \"c\".\"conkey\" AS \"__c_conkey\", unnest(c.conkey) AS \"colid\", unnest(generate_series(1, \
             cardinality(c.conkey))) AS \"arridx\" FROM (SELECT DISTINCT \"conkey\" FROM pg_constraint) AS \"c\") \
             AS \"cols\" JOIN pg_attribute AS ca ON cols.colid = ca.attnum WHERE ca.attrelid = c.conrelid \
             AND \"cols\".\"__c_conkey\" = \"c\".\"conkey\"), make_array()) AS \"array\" FROM pg_constraint AS c"
        );
    }

    #[test]
    fn array_subqueries_aggregate_in_their_order() {
        assert_eq!(
            rewritten("SELECT array(SELECT rolname FROM pg_roles WHERE oid > 0 ORDER BY 1 DESC)"),
            "SELECT coalesce((SELECT array_agg(rolname ORDER BY rolname DESC) FROM pg_roles WHERE oid > 0), make_array()) AS \"array\""
        );
        assert_eq!(
            rewritten("SELECT 1 || ARRAY(SELECT DISTINCT v FROM t)"),
            "SELECT 1 || coalesce((SELECT array_agg(\"__array\".\"v\") FROM (SELECT DISTINCT v FROM t) AS \"__array\" (\"v\")), make_array())"
        );
        // A grouped subquery in an order array_agg cannot follow stays (and fails to plan).
        let sql = "SELECT 1 || ARRAY(SELECT v FROM t GROUP BY v ORDER BY v)";
        assert_eq!(rewritten(sql), sql);
    }
}
