//! `IN (subquery)` and `EXISTS (subquery)` where DataFusion cannot run them: anywhere but as a
//! condition of a WHERE or HAVING clause (a select list, a CASE, an ORDER BY, a JOIN's ON).
//!
//! DataFusion turns a subquery condition of a WHERE into a semi or anti join, and runs an
//! aggregating scalar subquery anywhere (decorrelated where the correlation is by equality),
//! but plans `SELECT x IN (SELECT ...)` or `CASE WHEN EXISTS (...)` into an error ("Physical
//! plan does not support logical expression InSubquery"); Grafana's table list asks
//! `CASE WHEN quote_ident(table_schema) IN (SELECT ...)`. So, from `super::parse`, such a
//! subquery becomes an aggregating one:
//!
//! - `x [NOT] IN (SELECT e FROM ...)`: `[NOT] in_array(x, coalesce((SELECT array_agg(e) FROM
//!   ...), make_array()))`, where `in_array` ([`IN_ARRAY`], `plan::functions`) answers as IN
//!   does: true on a match, else NULL when `x` is NULL or a value is NULL (and there is one),
//!   else false;
//! - `[NOT] EXISTS (SELECT ... FROM ...)`: `(SELECT count(*) FROM ...) > 0` (`= 0`).
//!
//! A subquery of one plain SELECT keeps its FROM and WHERE (so a correlation by equality stays
//! decorrelatable); one with GROUP BY, DISTINCT, LIMIT, a set operation and the like is read
//! as a derived table instead. A condition of a WHERE or HAVING (a conjunct, or its NOT) is
//! left to DataFusion's joins.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, BinaryOperator, Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, LimitClause,
    OrderByKind, Query, Select, SelectItem, SetExpr, Statement, UnaryOperator, Value, VisitMut, VisitorMut,
};

use super::{call, parsed_query};

/// The function `x IN (values)` becomes, over the values as an array.
pub(crate) const IN_ARRAY: &str = "in_array";

/// Whether `sql` may hold a subquery: it names `select` twice (a byte scan, no allocation).
pub(crate) fn may_apply(sql: &str) -> bool {
    sql.as_bytes().windows(6).filter(|w| w.eq_ignore_ascii_case(b"select")).nth(1).is_some()
}

/// Rewrites the subquery expressions of every query in `stmt` that are not WHERE / HAVING
/// conditions.
pub(crate) fn rewrite(stmt: &mut Statement) {
    struct Queries;
    impl VisitorMut for Queries {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let Some(order_by) = query.order_by.as_mut() {
                if let OrderByKind::Expressions(items) = &mut order_by.kind {
                    items.iter_mut().for_each(|o| own_level(&mut o.expr));
                }
            }
            if let SetExpr::Select(select) = query.body.as_mut() {
                rewrite_select(select);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Queries);
}

fn rewrite_select(select: &mut Select) {
    for item in &mut select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => {
                // The output keeps PostgreSQL's name for the expression rewritten: `exists` for
                // EXISTS, none (`?column?`) for NOT EXISTS and IN.
                let name = match e {
                    Expr::Exists { negated: false, .. } => Some("exists"),
                    Expr::Exists { .. } | Expr::InSubquery { .. } => Some("?column?"),
                    _ => None,
                };
                own_level(e);
                if let Some(name) = name {
                    *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::with_quote('"', name) };
                }
            }
            SelectItem::ExprWithAlias { expr: e, .. } => own_level(e),
            _ => {}
        }
    }
    for condition in [select.selection.as_mut(), select.having.as_mut()].into_iter().flatten() {
        conditions(condition);
    }
    for join in select.from.iter_mut().flat_map(|f| f.joins.iter_mut()) {
        use JoinOperator as J;
        let constraint = match &mut join.join_operator {
            J::Join(c)
            | J::Inner(c)
            | J::Left(c)
            | J::LeftOuter(c)
            | J::Right(c)
            | J::RightOuter(c)
            | J::FullOuter(c) => c,
            _ => continue,
        };
        if let JoinConstraint::On(on) = constraint {
            own_level(on);
        }
    }
}

/// A WHERE / HAVING condition: its subquery conditions, combined by AND, OR and NOT, stay
/// (DataFusion joins them); the subqueries inside anything else are rewritten.
fn conditions(e: &mut Expr) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And | BinaryOperator::Or, right } => {
            conditions(left);
            conditions(right);
        }
        Expr::Nested(inner) | Expr::UnaryOp { op: UnaryOperator::Not, expr: inner } => conditions(inner),
        Expr::InSubquery { .. } | Expr::Exists { .. } => {}
        other => own_level(other),
    }
}

/// Rewrites the IN / EXISTS subqueries of `e` itself, not those inside its subqueries (each
/// query's own are rewritten when [`rewrite`] reaches it).
fn own_level(e: &mut Expr) {
    struct Level(usize);
    impl VisitorMut for Level {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if self.0 == 0 {
                if let Some(replacement) = aggregated(e) {
                    *e = replacement;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut Level(0));
}

/// The aggregating form of an IN / EXISTS subquery expression.
fn aggregated(e: &Expr) -> Option<Expr> {
    let not = |e: Expr, negated: bool| match negated {
        true => Expr::UnaryOp { op: UnaryOperator::Not, expr: Box::new(Expr::Nested(Box::new(e))) },
        false => e,
    };
    match e {
        Expr::InSubquery { expr, subquery, negated } => {
            let values = over(subquery, |item| call("array_agg", vec![item]))?;
            let values = call("coalesce", vec![Expr::Subquery(Box::new(values)), call("make_array", Vec::new())]);
            Some(not(call(IN_ARRAY, vec![(**expr).clone(), values]), *negated))
        }
        Expr::Exists { subquery, negated } => {
            // Whether any row exists does not depend on a positive LIMIT.
            let mut subquery = subquery.clone();
            if matches!(&subquery.limit_clause, Some(LimitClause::LimitOffset { limit: Some(Expr::Value(v)), offset: None, limit_by })
                if limit_by.is_empty() && matches!(&v.value, Value::Number(n, _) if n.parse::<u64>().is_ok_and(|n| n > 0)))
            {
                subquery.limit_clause = None;
            }
            let count = over(&subquery, |_| {
                call("count", vec![Expr::Value(Value::Number("1".into(), false).with_empty_span())])
            })?;
            let op = if *negated { BinaryOperator::Eq } else { BinaryOperator::Gt };
            let zero = Expr::Value(Value::Number("0".into(), false).with_empty_span());
            Some(Expr::BinaryOp { left: Box::new(Expr::Subquery(Box::new(count))), op, right: Box::new(zero) })
        }
        _ => None,
    }
}

/// `subquery` with its one select item replaced by `aggregate(item)`: in place when it is one
/// plain SELECT, else over it as a derived table.
fn over(subquery: &Query, aggregate: impl Fn(Expr) -> Expr) -> Option<Query> {
    if let Some(mut query) = plain(subquery) {
        let SetExpr::Select(select) = query.body.as_mut() else { return None };
        let item = match select.projection.first()? {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
            _ => Expr::Value(Value::Null.with_empty_span()),
        };
        select.projection = vec![SelectItem::UnnamedExpr(aggregate(item))];
        return Some(query);
    }
    let mut query = parsed_query(&format!("SELECT v FROM ({subquery}) AS __subquery (v)"))?;
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let item = Expr::Identifier(Ident::new("v"));
    select.projection = vec![SelectItem::UnnamedExpr(aggregate(item))];
    Some(query)
}

/// `q` without its ORDER BY when it is one SELECT an aggregate can replace the select list
/// of: one item (or `*` for EXISTS), no GROUP BY, HAVING, DISTINCT, window, LIMIT or CTE.
fn plain(q: &Query) -> Option<Query> {
    let SetExpr::Select(select) = q.body.as_ref() else { return None };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let simple = q.with.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && select.projection.len() == 1
        && !grouped
        && select.having.is_none()
        && select.distinct.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && !windowed(&select.projection);
    simple.then(|| Query { order_by: None, ..q.clone() })
}

/// Whether a select list calls a window function.
fn windowed(items: &[SelectItem]) -> bool {
    items.iter().any(|item| {
        visit_expressions(item, |e| match e {
            Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn subqueries_in_a_select_list_aggregate() {
        assert_eq!(
            rewritten("SELECT x IN (SELECT a FROM t WHERE t.k = o.k ORDER BY a), NOT EXISTS (SELECT * FROM t) FROM o"),
            "SELECT in_array(x, coalesce((SELECT array_agg(a) FROM t WHERE t.k = o.k), make_array())) AS \"?column?\", \
             (SELECT count(1) FROM t) = 0 AS \"?column?\" FROM o"
        );
        assert_eq!(
            rewritten("SELECT CASE WHEN x NOT IN (SELECT DISTINCT a FROM t) THEN 1 END"),
            "SELECT CASE WHEN NOT (in_array(x, coalesce((SELECT array_agg(v) FROM (SELECT DISTINCT a FROM t) AS \
             __subquery (v)), make_array()))) THEN 1 END"
        );
    }

    #[test]
    fn where_conditions_stay_for_datafusion_but_nested_ones_do_not() {
        let kept = "SELECT a FROM t WHERE a IN (SELECT b FROM u) AND NOT EXISTS (SELECT 1 FROM v) AND c > 1";
        assert_eq!(rewritten(kept), kept);
        let kept = "SELECT a FROM t WHERE NOT ((a = 1 AND EXISTS (SELECT 1 FROM v WHERE v.x = t.a LIMIT 1)) OR c > 1)";
        assert_eq!(rewritten(kept), kept);
        assert_eq!(
            rewritten("SELECT EXISTS (SELECT 1 FROM v WHERE v.x = t.a LIMIT 1) FROM t"),
            "SELECT (SELECT count(1) FROM v WHERE v.x = t.a) > 0 AS \"exists\" FROM t"
        );
        assert_eq!(
            rewritten("SELECT a FROM t WHERE CASE WHEN EXISTS (SELECT 1 FROM u) THEN a ELSE b END > 0"),
            "SELECT a FROM t WHERE CASE WHEN (SELECT count(1) FROM u) > 0 THEN a ELSE b END > 0"
        );
        assert_eq!(
            rewritten("SELECT (SELECT max(b) FROM u WHERE b IN (SELECT c FROM v)) FROM t ORDER BY a IN (SELECT 1)"),
            "SELECT (SELECT max(b) FROM u WHERE b IN (SELECT c FROM v)) FROM t \
             ORDER BY in_array(a, coalesce((SELECT array_agg(1)), make_array()))"
        );
    }
}
