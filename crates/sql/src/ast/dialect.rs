//! The SQL dialect the node parses: sqlparser's PostgreSQL dialect, minus one feature whose
//! parsing takes exponential time.
//!
//! sqlparser's `PostgreSqlDialect` accepts a function argument named by an expression
//! (`json_object('label': 'value')`, PostgreSQL 16). To find out whether an argument is one,
//! its parser parses the whole argument speculatively, and on failure rewinds and parses it
//! again: twice per level of nested calls, so `abs(abs(...abs(1)...))` 25 deep took over 20 s
//! of a core and 50 deep would take years (fixed upstream after sqlparser 0.62, the version
//! DataFusion 55 uses). PostgreSQL 15 names arguments only by identifiers (`f(a => 1)`,
//! `f(a := 1)`), which the identifier path of the same parser handles by looking one token
//! ahead. [`Postgres`] is `PostgreSqlDialect` in every other respect: it forwards each method
//! the PostgreSQL dialect overrides and reports its type, so that the parser's
//! `dialect_of!(... is PostgreSqlDialect)` checks still hold.

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// sqlparser's PostgreSQL dialect without expression-named function arguments.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Postgres;

const PG: PostgreSqlDialect = PostgreSqlDialect {};

impl Dialect for Postgres {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    /// The change: arguments are named by identifiers only (see the module doc).
    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        false
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        PG.identifier_quote_style(identifier)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        PG.is_delimited_identifier_start(ch)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        PG.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        PG.is_identifier_part(ch)
    }
    fn supports_unicode_string_literal(&self) -> bool {
        PG.supports_unicode_string_literal()
    }
    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        PG.is_reserved_for_identifier(kw)
    }
    fn is_custom_operator_part(&self, ch: char) -> bool {
        PG.is_custom_operator_part(ch)
    }
    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        PG.get_next_precedence(parser)
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        PG.supports_filter_during_aggregation()
    }
    fn supports_group_by_expr(&self) -> bool {
        PG.supports_group_by_expr()
    }
    fn prec_value(&self, prec: Precedence) -> u8 {
        PG.prec_value(prec)
    }
    fn allow_extract_custom(&self) -> bool {
        PG.allow_extract_custom()
    }
    fn allow_extract_single_quotes(&self) -> bool {
        PG.allow_extract_single_quotes()
    }
    fn supports_create_index_with_clause(&self) -> bool {
        PG.supports_create_index_with_clause()
    }
    fn supports_explain_with_utility_options(&self) -> bool {
        PG.supports_explain_with_utility_options()
    }
    fn supports_listen_notify(&self) -> bool {
        PG.supports_listen_notify()
    }
    fn supports_factorial_operator(&self) -> bool {
        PG.supports_factorial_operator()
    }
    fn supports_bitwise_shift_operators(&self) -> bool {
        PG.supports_bitwise_shift_operators()
    }
    fn supports_comment_on(&self) -> bool {
        PG.supports_comment_on()
    }
    fn supports_load_extension(&self) -> bool {
        PG.supports_load_extension()
    }
    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        PG.supports_named_fn_args_with_colon_operator()
    }
    fn supports_empty_projections(&self) -> bool {
        PG.supports_empty_projections()
    }
    fn supports_nested_comments(&self) -> bool {
        PG.supports_nested_comments()
    }
    fn supports_string_escape_constant(&self) -> bool {
        PG.supports_string_escape_constant()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        PG.supports_numeric_literal_underscores()
    }
    fn supports_array_typedef_with_brackets(&self) -> bool {
        PG.supports_array_typedef_with_brackets()
    }
    fn supports_geometric_types(&self) -> bool {
        PG.supports_geometric_types()
    }
    fn supports_set_names(&self) -> bool {
        PG.supports_set_names()
    }
    fn supports_alter_column_type_using(&self) -> bool {
        PG.supports_alter_column_type_using()
    }
    fn supports_notnull_operator(&self) -> bool {
        PG.supports_notnull_operator()
    }
    fn supports_interval_options(&self) -> bool {
        PG.supports_interval_options()
    }
    fn supports_insert_table_alias(&self) -> bool {
        PG.supports_insert_table_alias()
    }
    fn supports_create_table_like_parenthesized(&self) -> bool {
        PG.supports_create_table_like_parenthesized()
    }
    fn supports_select_wildcard_with_alias(&self) -> bool {
        PG.supports_select_wildcard_with_alias()
    }
    fn supports_comma_separated_trim(&self) -> bool {
        PG.supports_comma_separated_trim()
    }
    fn supports_xml_expressions(&self) -> bool {
        PG.supports_xml_expressions()
    }
    fn supports_comment_optimizer_hint(&self) -> bool {
        PG.supports_comment_optimizer_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL of every record in `sql-tests/slt/*.slt`: the lines after a `statement` or
    /// `query` line, up to a blank line or `----`.
    fn corpus() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-tests/slt");
        let mut statements = Vec::new();
        for entry in std::fs::read_dir(dir).expect("sql-tests/slt") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut current: Option<Vec<&str>> = None;
            for line in text.lines().chain([""]) {
                match current.as_mut() {
                    Some(lines) if line.trim().is_empty() || line == "----" => {
                        statements.push(lines.join("\n"));
                        current = None;
                    }
                    Some(lines) => lines.push(line),
                    None if line.starts_with("statement ") || line.starts_with("query ") => current = Some(Vec::new()),
                    None => {}
                }
            }
        }
        statements
    }

    #[test]
    fn parses_the_test_corpus_as_the_postgresql_dialect_does() {
        let statements = corpus();
        assert!(statements.len() >= 500, "{} statements", statements.len());
        for sql in statements {
            let ours = Parser::parse_sql(&Postgres, &sql).map_err(|e| e.to_string());
            let theirs = Parser::parse_sql(&PG, &sql).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{sql}");
        }
    }

    /// Named arguments parse as `FunctionArg::Named` (sqlparser's form for dialects without
    /// expression names) instead of `ExprNamed`: the same statement.
    #[test]
    fn names_arguments_by_identifiers() {
        for sql in ["SELECT f(a => 1, b := 2)", "SELECT make_interval(days => 10)"] {
            let ours = Parser::parse_sql(&Postgres, sql).unwrap();
            assert_eq!(ours[0].to_string(), Parser::parse_sql(&PG, sql).unwrap()[0].to_string());
            assert!(format!("{ours:?}").contains("Named {"), "{ours:?}");
        }
    }
}
