//! The statement stage: SQL text to sqlparser's AST, and the helpers and rewrites every later
//! stage applies to it.
//!
//! - [`parse`]: the text split into statements ([`Stmt`]: sqlparser's, PostgreSQL dialect, or
//!   one of those [`dialect`] parses itself, such as `ALTER SEQUENCE`), catalog
//!   queries through datafusion-pg-catalog's parser and [`rewrite::catalog_query`], after
//!   [`limits`] bounded the statement's size and nesting (no statement can overflow a stack).
//! - [`rewrite`]: AST rewrites before planning (float literals with exponents, catalog queries)
//!   and what planning reads off the AST (parameter types a position implies, whether a
//!   statement reads the catalogs); [`decorrelate`]: catalog queries' per-row lookups as joins;
//!   [`unnest`]: lateral `unnest` in FROM and `ARRAY(subquery)` in forms DataFusion runs;
//!   [`from_functions`]: other functions in FROM, their columns named as PostgreSQL does;
//!   [`subqueries`]: IN / EXISTS subqueries outside WHERE conditions as aggregates.
//! - names: [`ident`] folds an identifier as PostgreSQL does, [`table_name`] resolves a table
//!   reference, [`param_number`] reads a `$n`.

mod decorrelate;
mod dialect;
mod from_functions;
pub(crate) mod limits;
pub(crate) mod rewrite;
pub(crate) mod subqueries;
mod unnest;

use datafusion::sql::sqlparser::ast::{Expr, Ident, ObjectName, Statement, Value};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
pub use dialect::{AlterSequence, SequenceChange, Stmt};
use raftable_common::{Error, Result};

use crate::table::qualify;

/// Parses a query string into statements; an empty query gives none. Catalog queries (psql's
/// `\d`, drivers' metadata) go through datafusion-pg-catalog's parser, whose rewrites
/// (pg_catalog qualifiers, `OPERATOR(pg_catalog.~)`, `::regclass`, ...) make them plannable,
/// after their per-row lookups became joins ([`decorrelate`]). Only those: its rewrites change
/// the meaning of some ordinary queries (correlated subqueries in a select list).
pub(crate) fn parse(sql: &str, catalog_parser: &PostgresCompatibilityParser) -> Result<Vec<Stmt>> {
    let syntax = |e: ParserError| Error::SyntaxError(e.to_string().replace("sql parser error: ", ""));
    let catalog_parse = |text: &str| -> std::result::Result<Vec<Stmt>, ParserError> {
        let mut statements = catalog_parser.parse(text)?;
        statements.iter_mut().for_each(rewrite::catalog_query);
        Ok(statements.into_iter().map(Stmt::Sql).collect())
    };
    let reads_catalog = |s: &Stmt| s.sql().is_some_and(rewrite::reads_catalog);
    let mut statements = match limits::parse(sql)? {
        Ok(statements) if !statements.iter().any(reads_catalog) => statements,
        Ok(statements) if statements.iter().all(|s| s.sql().is_some()) && limits::catalog_parsable(sql) => {
            // Lookups as joins first: datafusion-pg-catalog's parser would make them NULL.
            let mut statements: Vec<Statement> = statements.into_iter().filter_map(Stmt::into_sql).collect();
            let mut changed = false;
            for stmt in &mut statements {
                // Scalar functions in FROM first: datafusion-pg-catalog's parser replaces
                // Grafana's search-path subquery (which reads one) with '' (a wrong answer).
                // Not generate_series: psql's publication query reads one, and its parser
                // replaces that query with one DataFusion runs.
                changed |= from_functions::may_apply(sql) && from_functions::rewrite(stmt, false);
                changed |= rewrite::partition_ancestors(stmt);
                changed |= decorrelate::lookups_as_joins(stmt);
                changed |= rewrite::regclass_of_text(stmt);
            }
            if changed {
                let text = statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(";\n");
                catalog_parse(&text).map_err(syntax)?
            } else {
                catalog_parse(sql).map_err(syntax)?
            }
        }
        Ok(mut statements) => {
            statements.iter_mut().filter_map(Stmt::sql_mut).for_each(rewrite::catalog_query);
            statements
        }
        Err(e) if limits::catalog_parsable(sql) => catalog_parse(sql).map_err(|_| syntax(e))?,
        Err(e) => return Err(syntax(e)),
    };
    if rewrite::names_special_values(sql) {
        statements.iter_mut().filter_map(Stmt::sql_mut).for_each(rewrite::special_values);
    }
    if rewrite::names_text_types(sql) {
        statements.iter_mut().filter_map(Stmt::sql_mut).for_each(rewrite::text_type_casts);
    }
    if rewrite::names_substring(sql) {
        statements.iter_mut().filter_map(Stmt::sql_mut).for_each(rewrite::regex_substrings);
    }
    if subqueries::may_apply(sql) {
        statements.iter_mut().filter_map(Stmt::sql_mut).for_each(subqueries::rewrite);
    }
    if from_functions::may_apply(sql) {
        for stmt in statements.iter_mut().filter_map(Stmt::sql_mut) {
            from_functions::rewrite(stmt, true);
        }
    }
    if unnest::may_apply(sql) {
        statements.iter_mut().filter_map(Stmt::sql_mut).for_each(unnest::rewrite);
    }
    Ok(statements)
}

/// An identifier as PostgreSQL folds it: lower-case unless quoted.
pub fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The catalog name of the relation `name` names (`table::qualify`): lower-cased unless
/// quoted; `t` and `public.t` are `t`, `s.t` is `s.t`. The system schemas hold no user
/// relations, and a name part with a dot in it is refused (it would read as a schema).
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(ident).collect();
    if parts.iter().any(|p| p.contains('.')) {
        return Err(Error::unsupported(format!("relation name {name}: names with a \".\" are not supported")));
    }
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [schema, _] if SYSTEM_SCHEMAS.contains(&schema.as_str()) => {
            Err(Error::unsupported(format!("relation name {name}: schema {schema} holds only system relations")))
        }
        [schema, t] => Ok(qualify(schema, t)),
        _ => Err(Error::unsupported(format!("relation name {name}: a database name is not supported"))),
    }
}

/// The schema name `name` gives (`CREATE SCHEMA`, `DROP SCHEMA`): one part, no dot.
pub(crate) fn schema_name(name: &ObjectName) -> Result<String> {
    match name.0.iter().filter_map(|p| p.as_ident()).map(ident).collect::<Vec<_>>().as_slice() {
        [s] if !s.contains('.') => Ok(s.clone()),
        _ => Err(Error::unsupported(format!("schema name {name} is not supported"))),
    }
}

/// Schemas of the system's own relations.
pub(crate) const SYSTEM_SCHEMAS: [&str; 3] = ["pg_catalog", "information_schema", "raftable"];

/// The last part of a possibly qualified column name (`t.c`, `c`), folded.
pub(crate) fn column_name(name: &ObjectName) -> String {
    name.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default()
}

/// `n` of a `$n` placeholder (1-based; `$0` is none).
pub(crate) fn param_number(e: &Expr) -> Option<usize> {
    let Expr::Value(v) = e else { return None };
    let Value::Placeholder(p) = &v.value else { return None };
    p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0)
}

/// `name(args...)` as an expression.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    use datafusion::sql::sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    };
    let args = args.into_iter().map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a))).collect();
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList { duplicate_treatment: None, args, clauses: Vec::new() }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// A function's arguments as expressions, when none is named or a wildcard.
fn plain_args(args: &[datafusion::sql::sqlparser::ast::FunctionArg]) -> Option<Vec<Expr>> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr};
    args.iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A query parsed from text a rewrite wrote; None if it does not parse (what it would have
/// replaced then stays).
fn parsed_query(sql: &str) -> Option<datafusion::sql::sqlparser::ast::Query> {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(q) => Some(*q),
        _ => None,
    }
}

/// The statement's first words, for an "unsupported" message.
pub(crate) fn first_words(stmt: &Statement) -> String {
    stmt.to_string().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
