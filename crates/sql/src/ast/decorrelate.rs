//! Catalog queries look a value up for each row with a correlated scalar subquery in the select
//! list: psql's `\d` takes a column's default as `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM
//! pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef)`,
//! SQLAlchemy's reflection the same inside a CASE. DataFusion cannot run these, and
//! datafusion-pg-catalog's parser replaces them with NULL, so every default read as none.
//!
//! [`lookups_as_joins`] rewrites such a subquery over one table into a LEFT JOIN of that table
//! on the subquery's WHERE clause, appended to the query's FROM item, and the subquery into
//! its select expression; another correlated subquery that does not aggregate (over a join,
//! say) into one of its value's `max`, which DataFusion decorrelates itself. The answer is the
//! same whenever at most one row matches, as for the catalog lookups by key it is for; it is
//! applied to catalog queries only (`super::parse`), before datafusion-pg-catalog's rewrites.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, GroupByExpr, Ident, Join, JoinConstraint,
    JoinOperator, Query, Select, SelectItem, SetExpr, Statement, TableFactor, VisitMut, VisitorMut,
};

use super::call;

/// Rewrites the one-table lookups in `stmt`'s select lists; whether it changed anything.
pub(crate) fn lookups_as_joins(stmt: &mut Statement) -> bool {
    struct Rewriter(bool);
    impl VisitorMut for Rewriter {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                self.0 |= rewrite_select(select);
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter(false);
    let _ = stmt.visit(&mut rewriter);
    rewriter.0
}

/// The names a select's FROM item binds: each table's alias, or its name's last part.
fn bound_names(factors: impl Iterator<Item = TableFactor>) -> HashSet<String> {
    factors
        .filter_map(|f| match f {
            TableFactor::Table { alias: Some(a), .. } => Some(a.name.value.to_lowercase()),
            TableFactor::Table { name, .. } => name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_lowercase()),
            TableFactor::Derived { alias: Some(a), .. } => Some(a.name.value.to_lowercase()),
            _ => None,
        })
        .collect()
}

fn rewrite_select(select: &mut Select) -> bool {
    let plain = select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if !plain || select.from.len() != 1 {
        return false;
    }
    let from = &select.from[0];
    let outer =
        bound_names(std::iter::once(from.relation.clone()).chain(from.joins.iter().map(|j| j.relation.clone())));
    let mut joins = Vec::new();
    let mut aggregated = false;
    let mut taken = outer.clone();
    for item in &mut select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let _ = visit_expressions_mut(expr, |e| {
            if let Expr::Subquery(q) = e {
                if let Some((value, join)) = lookup(q, &outer, &mut taken) {
                    *e = Expr::Nested(Box::new(value));
                    joins.push(join);
                } else {
                    aggregated |= aggregate_lookup(q, &outer);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    // A correlated subquery left as a select list item (it aggregates) is parenthesized when
    // DataFusion can decorrelate it: datafusion-pg-catalog's parser makes such an item NULL.
    let mut kept = false;
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            if matches!(e, Expr::Subquery(q) if correlated(q, &outer) && by_equality(q, &outer)) {
                *e = Expr::Nested(Box::new(e.clone()));
                kept = true;
            }
        }
    }
    let changed = !joins.is_empty() || aggregated || kept;
    select.from[0].joins.extend(joins);
    changed
}

/// Whether each condition of `q`'s WHERE clause that reads a column of `outer` is an equality
/// (what DataFusion's decorrelation turns into join keys).
fn by_equality(q: &Query, outer: &HashSet<String>) -> bool {
    fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                conjuncts(left, out);
                conjuncts(right, out);
            }
            Expr::Nested(inner) => conjuncts(inner, out),
            other => out.push(other),
        }
    }
    let SetExpr::Select(s) = q.body.as_ref() else { return false };
    let mut all = Vec::new();
    if let Some(c) = &s.selection {
        conjuncts(c, &mut all);
    }
    all.iter().all(|c| !references(c, outer) || matches!(c, Expr::BinaryOp { op: BinaryOperator::Eq, .. }))
}

/// Whether `q`'s WHERE clause reads a column of `outer`.
fn correlated(q: &Query, outer: &HashSet<String>) -> bool {
    matches!(q.body.as_ref(), SetExpr::Select(s) if s.selection.as_ref().is_some_and(|c| references(c, outer)))
}

/// Another correlated lookup (say over a join) that does not aggregate: its value becomes
/// `max(value)`, which DataFusion's decorrelation accepts (it refuses a scalar subquery that
/// could return more rows); the same answer when at most one row matches.
fn aggregate_lookup(q: &mut Query, outer: &HashSet<String>) -> bool {
    let correlated = correlated(q, outer);
    let SetExpr::Select(inner) = q.body.as_mut() else { return false };
    let plain = inner.distinct.is_none()
        && inner.having.is_none()
        && matches!(&inner.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] = inner.projection.as_slice()
    else {
        return false;
    };
    if !correlated || !plain || aggregates(value) {
        return false;
    }
    let value = value.clone();
    let max = call("max", vec![value.clone()]);
    // Named as the value was (PostgreSQL names a subquery's column after its select item).
    inner.projection[0] = match &inner.projection[0] {
        SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias { expr: max, alias: alias.clone() },
        _ => {
            let name = match &value {
                Expr::Identifier(i) => i.value.clone(),
                Expr::CompoundIdentifier(parts) => parts.last().map_or_else(String::new, |p| p.value.clone()),
                Expr::Function(f) => {
                    f.name.0.last().and_then(|p| p.as_ident()).map_or_else(String::new, |i| i.value.clone())
                }
                _ => "?column?".into(),
            };
            SelectItem::ExprWithAlias { expr: max, alias: Ident::with_quote('"', name.to_lowercase()) }
        }
    };
    true
}

/// `(SELECT v FROM t [x] WHERE c)`, correlated with `outer`, as `v` and `LEFT JOIN t [x] ON c`;
/// None for any other shape, or when `t`'s name is bound already (`taken`).
fn lookup(q: &Query, outer: &HashSet<String>, taken: &mut HashSet<String>) -> Option<(Expr, Join)> {
    let limit_one = match &q.limit_clause {
        None => true,
        Some(datafusion::sql::sqlparser::ast::LimitClause::LimitOffset { limit: Some(l), offset: None, .. }) => {
            l.to_string() == "1"
        }
        _ => false,
    };
    if q.with.is_some() || q.order_by.is_some() || q.fetch.is_some() || !limit_one {
        return None;
    }
    let SetExpr::Select(inner) = q.body.as_ref() else { return None };
    let [from] = inner.from.as_slice() else { return None };
    let simple = from.joins.is_empty()
        && inner.distinct.is_none()
        && inner.having.is_none()
        && matches!(&inner.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
        && matches!(from.relation, TableFactor::Table { args: None, .. });
    let value = match inner.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => e.clone(),
        _ => return None,
    };
    let condition = inner.selection.clone()?;
    if !simple || aggregates(&value) || !references(&condition, outer) {
        return None;
    }
    let name = bound_names(std::iter::once(from.relation.clone())).into_iter().next()?;
    if !taken.insert(name) {
        return None;
    }
    let join = Join {
        relation: from.relation.clone(),
        global: false,
        join_operator: JoinOperator::LeftOuter(JoinConstraint::On(condition)),
    };
    Some((value, join))
}

/// Whether `e` names a column qualified by one of `names` (the subquery is correlated).
fn references(e: &Expr, names: &HashSet<String>) -> bool {
    visit_expressions(e, |x| match x {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let table = parts[parts.len() - 2].value.to_lowercase();
            if names.contains(&table) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether `e` calls an aggregate (a subquery that aggregates is not a lookup).
fn aggregates(e: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "bool_and",
        "bool_or",
    ];
    visit_expressions(e, |x| match x {
        Expr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| AGGREGATES.contains(&i.value.to_lowercase().as_str())) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> (bool, String) {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        let changed = lookups_as_joins(&mut stmt);
        (changed, stmt.to_string())
    }

    #[test]
    fn one_table_lookups_become_left_joins() {
        let (changed, sql) = rewritten(
            "SELECT a.attname, (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d \
             WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull \
             FROM pg_attribute a WHERE a.attnum > 0",
        );
        assert!(changed);
        assert_eq!(
            sql,
            "SELECT a.attname, (pg_get_expr(d.adbin, d.adrelid)), a.attnotnull FROM pg_attribute a \
             LEFT OUTER JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef \
             WHERE a.attnum > 0"
        );
        // Inside a CASE, tables named without aliases.
        let (changed, sql) = rewritten(
            "SELECT CASE WHEN pg_attribute.atthasdef THEN (SELECT pg_attrdef.adbin FROM pg_attrdef \
             WHERE pg_attrdef.adrelid = pg_attribute.attrelid) ELSE NULL END FROM pg_class JOIN pg_attribute \
             ON pg_class.oid = pg_attribute.attrelid",
        );
        assert!(changed);
        assert!(sql.contains("THEN (pg_attrdef.adbin) ELSE NULL END"), "{sql}");
        assert!(sql.ends_with("LEFT OUTER JOIN pg_attrdef ON pg_attrdef.adrelid = pg_attribute.attrelid"), "{sql}");
        // Over a join: aggregated instead.
        let (changed, sql) = rewritten("SELECT (SELECT t.v FROM t JOIN s ON t.a = s.a WHERE t.a = u.a) FROM u");
        assert!(changed);
        assert_eq!(sql, "SELECT ((SELECT max(t.v) AS \"v\" FROM t JOIN s ON t.a = s.a WHERE t.a = u.a)) FROM u");
        // Aggregating, as an item: parenthesized (datafusion-pg-catalog would make it NULL).
        let (changed, sql) = rewritten("SELECT (SELECT count(*) FROM t WHERE t.a = u.a) AS n FROM u");
        assert!(changed);
        assert_eq!(sql, "SELECT ((SELECT count(*) FROM t WHERE t.a = u.a)) AS n FROM u");
    }

    #[test]
    fn other_subqueries_stay() {
        for sql in [
            // not correlated
            "SELECT (SELECT max(x) FROM t) FROM u",
            // aggregates, inside an expression
            "SELECT 1 + (SELECT count(*) FROM t WHERE t.a = u.a) FROM u",
            // the inner table's name is bound outside already
            "SELECT (SELECT u.v FROM u WHERE u.a = x.a) FROM u AS x, u",
            // outer GROUP BY
            "SELECT u.a, (SELECT t.v FROM t WHERE t.a = u.a) FROM u GROUP BY u.a",
        ] {
            assert_eq!(rewritten(sql), (false, Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0].to_string()));
        }
    }
}
