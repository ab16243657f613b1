//! Functions in a FROM list, named and run as PostgreSQL does.
//!
//! PostgreSQL names the one column of a function in FROM after the item's alias, else after the
//! function: `generate_series(1, 3) AS i` has a column `i`, and `string_to_array(p, ',') s` is one
//! row whose column `s` holds the array. DataFusion names generate_series's column `value`, takes
//! only constant arguments for it, and has no scalar functions in FROM at all; Grafana's schema
//! queries read the search path with exactly such a FROM list (answered wrongly before). So, from
//! `super::parse`, for every statement whose text has a FROM ([`may_apply`]):
//!
//! - `generate_series(args) [AS] a`: its column named as PostgreSQL does, through an alias
//!   column list (`AS a(a)`); with arguments that are not constants it becomes
//!   `(SELECT unnest(generate_series(args)) AS a) AS a`, DataFusion's array function unnested.
//! - any function that is not a table function: `(SELECT f(args) AS a) AS a`, one row;
//!   but `pg_show_all_settings()` (pgAdmin reads it at connect) is the `pg_settings` view.
//!
//! `unnest` is [`super::unnest`]'s; items `WITH ORDINALITY` and table functions of several
//! columns (`pg_get_keywords()`) stay as they are. Arguments reading an earlier FROM item
//! (LATERAL) are not supported either way: the derived table cannot see that item.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, Expr, Ident, ObjectName, Statement, TableAlias, TableAliasColumnDef, TableFactor, VisitMut,
    VisitorMut,
};

use super::{ident, parsed_query, plain_args};

/// Table functions the session's context registers (DataFusion's and datafusion-pg-catalog's),
/// and `unnest`, which [`super::unnest`] and DataFusion handle. Any other function in FROM is run
/// as a scalar function giving one row.
const TABLE_FUNCTIONS: [&str; 4] = ["generate_series", "range", "pg_get_keywords", "unnest"];

/// Whether `sql` may hold a function in FROM: it names `from` in any case. No allocation.
pub(crate) fn may_apply(sql: &str) -> bool {
    sql.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"from"))
}

/// Rewrites every function item of every FROM list in `stmt` (subqueries included), those of
/// `generate_series` only with `series`; whether one changed.
pub(crate) fn rewrite(stmt: &mut Statement, series: bool) -> bool {
    struct Items {
        changed: bool,
        series: bool,
    }
    impl VisitorMut for Items {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            self.changed |= rewrite_item(factor, self.series);
            ControlFlow::Continue(())
        }
    }
    let mut items = Items { changed: false, series };
    let _ = stmt.visit(&mut items);
    items.changed
}

/// Rewrites one FROM item if it is a function call; whether it did.
fn rewrite_item(factor: &mut TableFactor, series: bool) -> bool {
    let TableFactor::Table { name, alias, args, with_ordinality: false, .. } = factor else {
        return false;
    };
    let Some(plain) = args.as_ref().and_then(|a| plain_args(&a.args)) else { return false };
    let function = name.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default();
    if function == "pg_show_all_settings" && plain.is_empty() {
        // The function behind the view, of the same columns.
        *name = ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("pg_settings")]);
        *args = None;
        return true;
    }
    let binding = alias.as_ref().map_or_else(|| Ident::new(&function), |a| a.name.clone());
    let column = match alias.as_ref().map(|a| a.columns.as_slice()) {
        Some([]) | None => binding.clone(),
        Some([one]) => one.name.clone(),
        Some(_) => return false,
    };
    let call =
        |name: &ObjectName| format!("{name}({})", plain.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
    let replacement = match function.as_str() {
        "generate_series" if !series => return false,
        "generate_series" if plain.iter().all(constant) => {
            let columns = vec![TableAliasColumnDef { name: column, data_type: None }];
            *alias = Some(TableAlias { explicit: true, name: binding, columns, at: None });
            return true;
        }
        "generate_series" => format!("SELECT unnest({}) AS {column}", call(name)),
        f if TABLE_FUNCTIONS.contains(&f) => return false,
        _ => format!("SELECT {} AS {column}", call(name)),
    };
    let Some(subquery) = parsed_query(&replacement) else { return false };
    *factor = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(subquery),
        alias: Some(TableAlias { explicit: true, name: binding, columns: Vec::new(), at: None }),
        sample: None,
    };
    true
}

/// Whether `e` is built of literals and operators only, which DataFusion folds into the
/// constant its table function needs (a function call might not be foldable).
fn constant(e: &Expr) -> bool {
    visit_expressions(e, |e| match e {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Function(_)
        | Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        let changed = rewrite(&mut stmt, true);
        assert_eq!(changed, stmt.to_string() != sql, "{sql}");
        stmt.to_string()
    }

    #[test]
    fn names_the_column_after_the_alias_or_the_function() {
        assert_eq!(
            rewritten("SELECT i FROM generate_series(1, 3) AS i"),
            "SELECT i FROM generate_series(1, 3) AS i (i)"
        );
        assert_eq!(
            rewritten("SELECT * FROM generate_series(1, 3)"),
            "SELECT * FROM generate_series(1, 3) AS generate_series (generate_series)"
        );
        assert_eq!(
            rewritten("SELECT g FROM generate_series(1, 3) t(g)"),
            "SELECT g FROM generate_series(1, 3) AS t (g)"
        );
    }

    #[test]
    fn runs_scalar_functions_and_computed_series_as_one_row_queries() {
        assert_eq!(
            rewritten("SELECT s[i] FROM generate_series(1, cardinality(x())) AS i, string_to_array('a,b', ',') s"),
            "SELECT s[i] FROM (SELECT unnest(generate_series(1, cardinality(x()))) AS i) AS i, \
             (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
        assert_eq!(rewritten("SELECT * FROM upper('a')"), "SELECT * FROM (SELECT upper('a') AS upper) AS upper");
        assert_eq!(
            rewritten("SELECT (SELECT c FROM lower('A') AS t(c))"),
            "SELECT (SELECT c FROM (SELECT lower('A') AS c) AS t)"
        );
    }

    #[test]
    fn leaves_tables_unnest_ordinality_and_wide_functions() {
        for sql in [
            "SELECT * FROM t AS a",
            "SELECT * FROM UNNEST(ARRAY[1, 2]) AS u",
            "SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS t (x, n)",
            "SELECT * FROM pg_get_keywords()",
            "SELECT * FROM f(1) AS t (a, b)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
        assert_eq!(
            rewritten("SELECT setting FROM pg_show_all_settings() WHERE name = 'x'"),
            "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'x'"
        );
    }
}
