//! The SQL dialect the node parses: sqlparser's PostgreSQL dialect, minus one feature whose
//! parsing takes exponential time, plus PostgreSQL's sequence options in any order and the
//! statements sqlparser does not parse.
//!
//! [`parse_statements`] splits the text as sqlparser does, and parses `ALTER SEQUENCE` and
//! `SET CONSTRAINTS` itself: a statement is a [`Stmt`], sqlparser's or one of those.
//!
//! Sequence options: sqlparser parses `CREATE SEQUENCE` options and those of an identity column
//! (`GENERATED ... AS IDENTITY (...)`) only in one fixed order (`INCREMENT`, `MINVALUE`,
//! `MAXVALUE`, `START`, `CACHE`, `CYCLE`), where PostgreSQL takes any order and `AS type` and
//! `OWNED BY` among them. [`Postgres`] parses both itself ([`sequence_options`]), into the
//! same AST.
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

use datafusion::sql::sqlparser::ast::{
    ColumnOption, DataType, Expr, GeneratedAs, Ident, ObjectName, SequenceOptions, Statement,
};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

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

    /// `CREATE [TEMP] SEQUENCE` with its options in any order.
    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        let [create, next, after] = parser.peek_tokens::<3>();
        let is = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
        let temporary = is(&next, Keyword::TEMP) || is(&next, Keyword::TEMPORARY);
        let sequence = if temporary { &after } else { &next };
        if !is(&create, Keyword::CREATE) || !is(sequence, Keyword::SEQUENCE) {
            return None;
        }
        Some(create_sequence(parser, temporary))
    }

    /// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY [(options)]` with the options in any order.
    fn parse_column_option(
        &self,
        parser: &mut Parser,
    ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError> {
        let generated_as =
            if parser.parse_keywords(&[Keyword::GENERATED, Keyword::ALWAYS, Keyword::AS, Keyword::IDENTITY]) {
                GeneratedAs::Always
            } else if parser.parse_keywords(&[
                Keyword::GENERATED,
                Keyword::BY,
                Keyword::DEFAULT,
                Keyword::AS,
                Keyword::IDENTITY,
            ]) {
                GeneratedAs::ByDefault
            } else {
                return Ok(None);
            };
        let options = if parser.consume_token(&Token::LParen) {
            let options = sequence_options(parser);
            options.and_then(|o| parser.expect_token(&Token::RParen).map(|_| o.options))
        } else {
            Ok(Vec::new())
        };
        Ok(Some(options.map(|options| {
            Some(ColumnOption::Generated {
                generated_as,
                sequence_options: Some(options),
                generation_expr: None,
                generation_expr_mode: None,
                generated_keyword: true,
            })
        })))
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

/// A statement: sqlparser's, or one of PostgreSQL's it does not parse. (sqlparser's is by far
/// the largest and the common one: not boxed, as it was not before.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Stmt {
    Sql(Statement),
    AlterSequence(AlterSequence),
    /// `SET CONSTRAINTS { ALL | name [, ...] } { DEFERRED | IMMEDIATE }` (`names` empty: ALL).
    SetConstraints {
        names: Vec<Ident>,
        deferred: bool,
    },
}

impl Stmt {
    /// sqlparser's statement, if it is one.
    pub fn sql(&self) -> Option<&Statement> {
        match self {
            Stmt::Sql(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn sql_mut(&mut self) -> Option<&mut Statement> {
        match self {
            Stmt::Sql(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn into_sql(self) -> Option<Statement> {
        match self {
            Stmt::Sql(s) => Some(s),
            _ => None,
        }
    }

    /// Whether running it only reads (a query or SHOW).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Stmt::Sql(Statement::Query(_) | Statement::ShowVariable { .. }))
    }
}

/// `ALTER SEQUENCE [IF EXISTS] name { options | RENAME TO new }`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterSequence {
    pub if_exists: bool,
    pub name: ObjectName,
    pub change: SequenceChange,
}

/// What an ALTER SEQUENCE changes.
#[derive(Debug, Clone, PartialEq)]
pub enum SequenceChange {
    /// Sequence options (at least one), `RESTART [[WITH] n]` among them.
    Options(Box<SequenceSyntax>),
    RenameTo(Ident),
}

/// Splits `parser`'s tokens into statements, as sqlparser's `parse_statements` does, parsing
/// the ones it does not parse ([`Stmt`]) here.
pub(crate) fn parse_statements(parser: &mut Parser) -> Result<Vec<Stmt>, ParserError> {
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            return Ok(statements);
        }
        let [first, second, third] = parser.peek_tokens::<3>();
        let is = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
        let constraints = matches!(&second, Token::Word(w) if w.value.eq_ignore_ascii_case("constraints"));
        let stmt = if is(&first, Keyword::SET) && constraints && third != Token::Eq && !is(&third, Keyword::TO) {
            set_constraints(parser)?
        } else if is(&first, Keyword::ALTER) && is(&second, Keyword::SEQUENCE) {
            alter_sequence(parser)?
        } else {
            Stmt::Sql(parser.parse_statement()?)
        };
        statements.push(stmt);
        let next = &parser.peek_token_ref().token;
        if *next != Token::SemiColon && *next != Token::EOF {
            return parser.expected_ref("end of statement", parser.peek_token_ref());
        }
    }
}

fn set_constraints(parser: &mut Parser) -> Result<Stmt, ParserError> {
    parser.expect_keyword(Keyword::SET)?;
    parser.next_token();
    let names = match parser.parse_keyword(Keyword::ALL) {
        true => Vec::new(),
        false => parser.parse_comma_separated(|p| p.parse_identifier())?,
    };
    let deferred = parser.expect_one_of_keywords(&[Keyword::DEFERRED, Keyword::IMMEDIATE])? == Keyword::DEFERRED;
    Ok(Stmt::SetConstraints { names, deferred })
}

fn alter_sequence(parser: &mut Parser) -> Result<Stmt, ParserError> {
    parser.expect_keywords(&[Keyword::ALTER, Keyword::SEQUENCE])?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let change = if parser.parse_keywords(&[Keyword::RENAME, Keyword::TO]) {
        SequenceChange::RenameTo(parser.parse_identifier()?)
    } else {
        let syntax = options(parser, true)?;
        if syntax == SequenceSyntax::default() {
            return parser.expected_ref("a sequence option", parser.peek_token_ref());
        }
        SequenceChange::Options(Box::new(syntax))
    };
    Ok(Stmt::AlterSequence(AlterSequence { if_exists, name, change }))
}

fn create_sequence(parser: &mut Parser, temporary: bool) -> Result<Statement, ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    if temporary && !parser.parse_keyword(Keyword::TEMP) {
        parser.expect_keyword(Keyword::TEMPORARY)?;
    }
    parser.expect_keyword(Keyword::SEQUENCE)?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let SequenceSyntax { options, data_type, owned_by, .. } = sequence_options(parser)?;
    Ok(Statement::CreateSequence { temporary, if_not_exists, name, data_type, sequence_options: options, owned_by })
}

/// What [`sequence_options`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceSyntax {
    pub options: Vec<SequenceOptions>,
    pub data_type: Option<DataType>,
    pub owned_by: Option<ObjectName>,
    /// `RESTART` (`Some(None)`) or `RESTART [WITH] n` (ALTER SEQUENCE only).
    pub restart: Option<Option<Expr>>,
}

/// Sequence options in any order, each at most once: `AS type`, `INCREMENT [BY] n`,
/// `MINVALUE n | NO MINVALUE`, `MAXVALUE n | NO MAXVALUE`, `START [WITH] n`, `CACHE n`,
/// `[NO] CYCLE`, `OWNED BY name | NONE`. `Cycle(b)` holds `NO` as sqlparser's does.
pub(crate) fn sequence_options(parser: &mut Parser) -> Result<SequenceSyntax, ParserError> {
    options(parser, false)
}

/// [`sequence_options`], and with `alter` also `RESTART [[WITH] n]`.
fn options(parser: &mut Parser, alter: bool) -> Result<SequenceSyntax, ParserError> {
    let mut syntax = SequenceSyntax::default();
    let mut seen = Vec::new();
    loop {
        let (what, option) = if alter && parser.parse_keyword(Keyword::RESTART) {
            let with = parser.parse_keyword(Keyword::WITH);
            let number = matches!(parser.peek_token_ref().token, Token::Number(..) | Token::Minus | Token::Plus);
            syntax.restart = Some(if with || number { Some(parser.parse_number()?) } else { None });
            ("RESTART", None)
        } else if parser.parse_keyword(Keyword::AS) {
            syntax.data_type = Some(parser.parse_data_type()?);
            ("AS", None)
        } else if parser.parse_keyword(Keyword::INCREMENT) {
            let by = parser.parse_keyword(Keyword::BY);
            ("INCREMENT", Some(SequenceOptions::IncrementBy(parser.parse_number()?, by)))
        } else if parser.parse_keyword(Keyword::MINVALUE) {
            ("MINVALUE", Some(SequenceOptions::MinValue(Some(parser.parse_number()?))))
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::MINVALUE]) {
            ("MINVALUE", Some(SequenceOptions::MinValue(None)))
        } else if parser.parse_keyword(Keyword::MAXVALUE) {
            ("MAXVALUE", Some(SequenceOptions::MaxValue(Some(parser.parse_number()?))))
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::MAXVALUE]) {
            ("MAXVALUE", Some(SequenceOptions::MaxValue(None)))
        } else if parser.parse_keyword(Keyword::START) {
            let with = parser.parse_keyword(Keyword::WITH);
            ("START", Some(SequenceOptions::StartWith(parser.parse_number()?, with)))
        } else if parser.parse_keyword(Keyword::CACHE) {
            ("CACHE", Some(SequenceOptions::Cache(parser.parse_number()?)))
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::CYCLE]) {
            ("CYCLE", Some(SequenceOptions::Cycle(true)))
        } else if parser.parse_keyword(Keyword::CYCLE) {
            ("CYCLE", Some(SequenceOptions::Cycle(false)))
        } else if parser.parse_keywords(&[Keyword::OWNED, Keyword::BY]) {
            syntax.owned_by = Some(parser.parse_object_name(false)?);
            ("OWNED BY", None)
        } else {
            // sqlparser's own order, so the statement is the one it would have parsed.
            syntax.options.sort_by_key(|o| match o {
                SequenceOptions::IncrementBy(..) => 0,
                SequenceOptions::MinValue(_) => 1,
                SequenceOptions::MaxValue(_) => 2,
                SequenceOptions::StartWith(..) => 3,
                SequenceOptions::Cache(_) => 4,
                SequenceOptions::Cycle(_) => 5,
            });
            return Ok(syntax);
        };
        if seen.contains(&what) {
            return Err(ParserError::ParserError(format!("conflicting or redundant options: {what}")));
        }
        seen.push(what);
        syntax.options.extend(option);
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
            let ours = statements_of(&sql);
            let theirs = Parser::parse_sql(&PG, &sql).map_err(|e| e.to_string());
            // Sequence options in an order sqlparser's own parser refuses: ours only.
            let reordered = theirs.is_err() && sql.contains("SEQUENCE") || sql.contains("IDENTITY (");
            match ours {
                Ok(ours) if ours.iter().all(|s| s.sql().is_some()) && !reordered => {
                    let ours: Vec<Statement> = ours.into_iter().filter_map(Stmt::into_sql).collect();
                    assert_eq!(Ok(ours), theirs, "{sql}");
                }
                Ok(_) => assert!(theirs.is_err(), "sqlparser parses {sql}"),
                Err(e) => assert!(reordered || theirs.is_err(), "{sql}: {e}"),
            }
        }
    }

    fn statements_of(sql: &str) -> Result<Vec<Stmt>, String> {
        let mut parser = Parser::new(&Postgres).try_with_sql(sql).map_err(|e| e.to_string())?;
        parse_statements(&mut parser).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_set_constraints() {
        assert_eq!(
            statements_of("SET CONSTRAINTS ALL DEFERRED").unwrap(),
            [Stmt::SetConstraints { names: Vec::new(), deferred: true }]
        );
        let parsed: [Stmt; 1] = statements_of("set constraints a, \"B\" immediate; ").unwrap().try_into().unwrap();
        let [Stmt::SetConstraints { names: parsed, deferred: false }] = parsed else { panic!("not SET CONSTRAINTS") };
        assert_eq!(parsed.iter().map(|i| i.value.as_str()).collect::<Vec<_>>(), ["a", "B"]);
        assert!(statements_of("SET CONSTRAINTS ALL").is_err());
        // A setting of that name is still a setting.
        let setting = statements_of("SET constraints = 1").unwrap().remove(0);
        assert_eq!(setting.sql().map(|s| s.to_string()).as_deref(), Some("SET constraints = 1"));
    }

    #[test]
    fn parses_alter_sequence_among_other_statements() {
        let parsed =
            statements_of("SELECT 1; ALTER SEQUENCE IF EXISTS s.q RESTART WITH -5 INCREMENT 2 AS int;").unwrap();
        assert_eq!(parsed.len(), 2);
        let Stmt::AlterSequence(AlterSequence { if_exists: true, name, change: SequenceChange::Options(o) }) =
            &parsed[1]
        else {
            panic!("{parsed:?}")
        };
        assert_eq!(name.to_string(), "s.q");
        assert_eq!(o.restart.as_ref().unwrap().as_ref().unwrap().to_string(), "-5");
        assert_eq!(o.options.len(), 1);
        assert!(o.data_type.is_some());
        let bare = statements_of("ALTER SEQUENCE s RESTART").unwrap();
        assert!(
            matches!(&bare[0], Stmt::AlterSequence(a) if matches!(&a.change, SequenceChange::Options(o) if o.restart == Some(None)))
        );
        let renamed = statements_of("alter sequence s rename to t").unwrap();
        assert!(matches!(&renamed[0], Stmt::AlterSequence(a) if a.change == SequenceChange::RenameTo(Ident::new("t"))));
        for bad in
            ["ALTER SEQUENCE s", "ALTER SEQUENCE s RESTART RESTART", "ALTER SEQUENCE s CACHE 2 x", "SELECT 1 SELECT 2"]
        {
            assert!(statements_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sequence_options_parse_in_any_order() {
        let parse = |sql: &str| Parser::parse_sql(&Postgres, sql).map(|s| s[0].to_string());
        for (ours, theirs) in [
            (
                "CREATE SEQUENCE s START WITH 5 AS integer CACHE 3 INCREMENT BY -1 NO CYCLE MINVALUE -9 MAXVALUE 9",
                "CREATE SEQUENCE s AS INTEGER INCREMENT BY -1 MINVALUE -9 MAXVALUE 9 START WITH 5 CACHE 3 NO CYCLE",
            ),
            (
                "CREATE SEQUENCE IF NOT EXISTS s OWNED BY t.c CYCLE",
                "CREATE SEQUENCE IF NOT EXISTS s CYCLE OWNED BY t.c",
            ),
            (
                "CREATE TABLE t (id INT GENERATED BY DEFAULT AS IDENTITY (START WITH 100 INCREMENT BY 10))",
                "CREATE TABLE t (id INT GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 10 START WITH 100))",
            ),
        ] {
            assert_eq!(parse(ours).unwrap(), Parser::parse_sql(&PG, theirs).unwrap()[0].to_string(), "{ours}");
        }
        assert!(parse("CREATE SEQUENCE s CACHE 1 CACHE 2").unwrap_err().to_string().contains("redundant"));
        assert!(parse("CREATE SEQUENCE s INCREMENT BY x").is_err());
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
