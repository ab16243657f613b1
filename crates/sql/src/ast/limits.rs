//! Limits on what one statement may ask of a node, checked in [`parse`] before any syntax tree
//! is built: its size (SQLSTATE 54000, program_limit_exceeded), how deeply it nests and how
//! deeply its subquery expressions nest (54001, statement_too_complex, PostgreSQL's error for a
//! statement deeper than its `max_stack_depth`).
//!
//! Why: parsing, planning, optimizing, executing and dropping a statement recurse over its
//! syntax tree, its logical plan and its physical plan, one stack frame (or several) per level.
//! sqlparser builds chains of binary operators, casts and set operations in loops, so
//! `SELECT 1+1+...+1` with 20,000 terms is a tree 20,000 levels deep, and the code walking it
//! (derived `Clone` / `Drop` / `PartialEq`, DataFusion's rules and expression evaluation)
//! overflowed a worker thread's stack: that aborts the whole node process, every client's
//! connection and every shard replica with it. DataFusion and sqlparser move some of their own
//! recursion onto fresh stack segments (the `recursive` crate), not all of it.
//!
//! So a statement's nesting is bounded before it is parsed, and every thread that runs
//! statements has a stack known to hold the deepest statement the bound admits:
//! - [`nesting`] measures it on the statement's tokens, in one iterative pass: along any path
//!   into the brackets, the tokens of each list item the path passes through (a bracketed group
//!   counting as one token of the item it stands in), plus, over the whole statement, the
//!   constructs DataFusion turns into a chain of plan nodes whatever brackets they stand in
//!   (subqueries and `VALUES`, which become joins; window clauses, one plan node each; set
//!   operations). Commas separate list items (select lists, `VALUES` rows, `IN` lists,
//!   arguments: DataFusion keeps those flat) except in a `FROM` / `USING` list (each item is a
//!   join) and a `WITH` list (a CTE's plan is inlined into the next one that reads it, so their
//!   depths add up). Every level of any tree built from the statement takes at least one such
//!   token, so this over-estimates the depth of the syntax tree, of the plans and of their
//!   expressions by a constant factor, and it is at most the statement's length in bytes. The
//!   parser then takes the same tokens: a statement is tokenized once.
//! - [`MAX_DEPTH`] is chosen by measuring the stack the statement shapes that use the most per
//!   level need on the way through the node (parse, plan, optimize, execute, drop), at opt-level
//!   1 as tests build it: with [`THREAD_STACK_BYTES`] (the stack of the server's runtime
//!   threads) they stay well inside it at the limit. It is more than PostgreSQL's default
//!   allows for binary operators (about 4,000 terms of `1+1+...` at `max_stack_depth` 2MB).
//! - [`MAX_SUBQUERY_DEPTH`] bounds time, not stack: DataFusion plans nested subquery
//!   expressions in time exponential in their nesting.
//! - [`MAX_STATEMENT_BYTES`] bounds the memory a statement's tokens and tree take; it leaves room
//!   for bulk `INSERT`s of tens of thousands of rows.
//!
//! A statement within the limits is parsed as before (in the dialect of [`super::dialect`],
//! which parses nested calls in linear time), with sqlparser's own recursion limit
//! raised to match (its default, 50 nested expressions, is far below PostgreSQL's).

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use raftable_common::{Error, Result};

use super::dialect::{Postgres, Stmt};

/// The largest statement text accepted, in bytes.
pub(crate) const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// The deepest [`nesting`] accepted.
pub(crate) const MAX_DEPTH: usize = 10_000;

/// The most subquery expressions (`(SELECT ...)`, `IN (SELECT ...)`, `EXISTS (...)`) nested in
/// one another. DataFusion's optimizer takes time exponential in this nesting (measured on a
/// dev build: 12 deep 0.1 s, 15 deep 0.7 s, 18 deep 5 s, 25 deep over 20 s); subqueries in
/// `FROM` (derived tables) are planned in linear time and do not count.
pub(crate) const MAX_SUBQUERY_DEPTH: usize = 12;

/// The stack every thread that runs statements ([`crate::Session`]'s methods and the streams
/// they return) needs for statements up to [`MAX_DEPTH`]: the server builds its runtime with
/// it.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// sqlparser's recursion limit: above what any statement within [`MAX_DEPTH`] needs (each token
/// nests at most a couple of its parse functions), so that its error is a backstop only.
const RECURSION_LIMIT: usize = 4 * MAX_DEPTH;

/// Parses `sql` (PostgreSQL dialect) after checking it against the limits. The outer error is
/// a limit the statement exceeds (it must not be parsed any other way); the inner one is
/// sqlparser's.
pub(crate) fn parse(sql: &str) -> Result<std::result::Result<Vec<Stmt>, ParserError>> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(Error::ProgramLimitExceeded(format!(
            "statement too large: {} bytes, at most {} are accepted; split it into smaller statements",
            sql.len(),
            MAX_STATEMENT_BYTES
        )));
    }
    let tokens = match Tokenizer::new(&Postgres, sql).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(e) => return Ok(Err(e.into())),
    };
    let Nesting { depth, subqueries } = nesting(&tokens);
    if depth > MAX_DEPTH {
        return Err(too_deep(&format!("it nests {depth} levels deep")));
    }
    if subqueries > MAX_SUBQUERY_DEPTH {
        return Err(Error::StackDepthExceeded(format!(
            "statement too complex: subqueries nested {subqueries} deep, at most {MAX_SUBQUERY_DEPTH} are \
             accepted (subqueries in FROM do not count); rewrite it with joins or WITH"
        )));
    }
    let mut parser = Parser::new(&Postgres).with_recursion_limit(RECURSION_LIMIT).with_tokens_with_locations(tokens);
    match super::dialect::parse_statements(&mut parser) {
        Err(ParserError::RecursionLimitExceeded) => Err(too_deep("its expressions nest too deeply")),
        parsed => Ok(parsed),
    }
}

/// The deepest nesting of calls (brackets right after a word: `f(`, `CAST(`, `ARRAY(`) in a
/// statement handed to datafusion-pg-catalog's parser. It parses with sqlparser's own
/// PostgreSQL dialect, which parses every call's arguments twice (see [`super::dialect`]): its
/// time doubles with each level. Catalog queries of drivers and tools nest a few levels.
const MAX_CATALOG_CALL_DEPTH: usize = 10;

/// Whether `sql` may go to the catalog parser: its calls nest at most
/// [`MAX_CATALOG_CALL_DEPTH`] deep (and it tokenizes).
pub(crate) fn catalog_parsable(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&Postgres, sql).tokenize() else { return false };
    // For each open bracket, whether it opens a call.
    let mut open: Vec<bool> = Vec::new();
    let mut calls = 0;
    let mut after_word = false;
    for token in tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen => {
                open.push(after_word);
                calls += usize::from(after_word);
                if calls > MAX_CATALOG_CALL_DEPTH {
                    return false;
                }
            }
            Token::RParen => calls -= usize::from(open.pop().unwrap_or(false)),
            _ => {}
        }
        after_word = matches!(token, Token::Word(_));
    }
    true
}

fn too_deep(why: &str) -> Error {
    Error::StackDepthExceeded(format!(
        "stack depth limit exceeded: {why} (operators, brackets, subqueries, joins, set operations), more \
         than the {MAX_DEPTH} levels accepted; simplify the statement or split it"
    ))
}

/// How a level treats its commas (see [`nesting`]).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Commas {
    /// They separate list items, which DataFusion keeps side by side.
    #[default]
    Separate,
    /// A `FROM` / `USING` list: each item is one more join.
    Join,
    /// A `WITH` list: a CTE's plan is inlined into the next one reading it, depths add up.
    Stack,
}

/// What [`nesting`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nesting {
    /// The bound on the depth of any tree built from the statement.
    pub depth: usize,
    /// The most subquery expressions nested in one another (see [`MAX_SUBQUERY_DEPTH`]).
    pub subqueries: usize,
}

/// One bracket level (the statement itself at the bottom) while [`nesting`] scans.
#[derive(Default)]
struct Level {
    commas: Commas,
    /// The group stands where a `FROM` item does (after `FROM`, `JOIN`, `LATERAL` or a comma
    /// of a `FROM` list): a subquery in it is a derived table.
    derived: bool,
    /// Subquery expressions enclosing this level, itself included.
    subqueries: usize,
    /// Tokens of the current list item, a bracketed group counting as one.
    item: usize,
    /// The deepest group closed within the current item.
    inner: usize,
    /// The deepest item of this level so far (its tokens plus its deepest group).
    deepest: usize,
}

impl Level {
    fn end_item(&mut self) {
        self.deepest = self.deepest.max(self.item + self.inner);
        self.item = 0;
        self.inner = 0;
    }

    fn close(mut self) -> usize {
        self.end_item();
        self.deepest
    }

    fn add_group(&mut self, depth: usize) {
        match self.commas {
            Commas::Stack => self.item += depth,
            Commas::Separate | Commas::Join => self.inner = self.inner.max(depth),
        }
    }
}

/// An upper bound, up to a constant factor, of how deeply any tree built from these tokens
/// nests (see the module doc), the deepest of their statements (at most the number of bytes
/// the tokens were read from), and how deeply their subquery expressions nest. Iterative.
pub(crate) fn nesting(tokens: &[TokenWithSpan]) -> Nesting {
    let mut deepest = 0;
    let mut subqueries = 0;
    let mut after_comma = false;
    let mut levels = vec![Level::default()];
    // Plan-node chains, counted over the whole statement.
    let mut chains = 0;
    // The next group is a USING list (join columns: an AND of equalities).
    let mut using = false;
    let mut previous = Keyword::NoKeyword;
    for t in tokens {
        let keyword = match &t.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) => w.keyword,
            _ => Keyword::NoKeyword,
        };
        let nested = levels.len() > 1;
        let level = levels.last_mut().expect("the statement level stays");
        let opens_using = std::mem::take(&mut using);
        match &t.token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                level.item += 1;
                let commas = if opens_using { Commas::Join } else { Commas::Separate };
                let derived = matches!(previous, Keyword::FROM | Keyword::JOIN | Keyword::LATERAL)
                    || (after_comma && level.commas == Commas::Join);
                let subqueries = level.subqueries;
                levels.push(Level { commas, derived, subqueries, ..Level::default() });
            }
            Token::RParen | Token::RBracket | Token::RBrace if nested => close_group(&mut levels),
            Token::Comma if level.commas == Commas::Separate => level.end_item(),
            Token::SemiColon if !nested => {
                deepest = deepest.max(close_statement(&mut levels) + chains);
                chains = 0;
            }
            _ => {
                let starts_group = nested && level.item == 0 && !level.derived;
                if starts_group && matches!(keyword, Keyword::SELECT | Keyword::VALUES | Keyword::TABLE | Keyword::WITH)
                {
                    level.subqueries += 1;
                    subqueries = subqueries.max(level.subqueries);
                }
                level.item += 1;
                match keyword {
                    Keyword::SELECT | Keyword::VALUES | Keyword::TABLE => {
                        chains += 1;
                        level.commas = Commas::Separate;
                    }
                    Keyword::INSERT | Keyword::UPDATE | Keyword::DELETE => level.commas = Commas::Separate,
                    Keyword::OVER | Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT => chains += 1,
                    // Not `IS DISTINCT FROM`.
                    Keyword::FROM if previous != Keyword::DISTINCT => level.commas = Commas::Join,
                    Keyword::USING => {
                        level.commas = Commas::Join;
                        using = true;
                    }
                    Keyword::WITH => level.commas = Commas::Stack,
                    _ => {}
                }
            }
        }
        previous = keyword;
        after_comma = t.token == Token::Comma;
    }
    Nesting { depth: deepest.max(close_statement(&mut levels) + chains), subqueries }
}

/// Closes the innermost group, adding its depth to the level it stands in.
fn close_group(levels: &mut Vec<Level>) {
    let depth = levels.pop().expect("a group is open").close();
    levels.last_mut().expect("the statement level stays").add_group(depth);
}

/// Closes a statement's groups left open (a syntax error for the parser to report) and the
/// statement; leaves a fresh statement level. Returns the statement's bracket nesting.
fn close_statement(levels: &mut Vec<Level>) -> usize {
    while levels.len() > 1 {
        close_group(levels);
    }
    std::mem::take(&mut levels[0]).close()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(sql: &str) -> usize {
        let tokens = Tokenizer::new(&Postgres, sql).tokenize_with_location().unwrap();
        nesting(&tokens).depth
    }

    fn subqueries(sql: &str) -> usize {
        let tokens = Tokenizer::new(&Postgres, sql).tokenize_with_location().unwrap();
        nesting(&tokens).subqueries
    }

    #[test]
    fn subquery_expressions_nest_derived_tables_do_not() {
        let scalar = |n| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        assert_eq!(subqueries(&scalar(13)), 13);
        let in_list =
            |n| format!("SELECT a FROM t WHERE {}true{}", "a IN (SELECT a FROM t WHERE ".repeat(n), ")".repeat(n));
        assert_eq!(subqueries(&in_list(5)), 5);
        assert_eq!(subqueries("SELECT EXISTS (VALUES (1)), 1 IN (TABLE t), (WITH c AS (SELECT 1) SELECT 2)"), 2);
        // Side by side: not nested.
        assert_eq!(subqueries(&format!("SELECT {}", vec!["(SELECT 1)"; 50].join(", "))), 1);
        // Derived tables, after FROM, JOIN, LATERAL or a comma of a FROM list, do not count;
        // a subquery expression inside one does.
        let derived = |n| format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(n), ") x".repeat(n));
        assert_eq!(subqueries(&derived(30)), 0);
        assert_eq!(subqueries("SELECT * FROM t, (SELECT 1) a JOIN (SELECT 2) b ON true, LATERAL (SELECT 3) c"), 0);
        assert_eq!(subqueries("SELECT * FROM (SELECT (SELECT 1) FROM t) x"), 1);
        // A comma of a select list is no FROM list.
        assert_eq!(subqueries("SELECT 1, (SELECT 2, (SELECT 3))"), 2);
        assert_eq!(subqueries("SELECT (1), 2"), 0);
        let sql = scalar(MAX_SUBQUERY_DEPTH + 1);
        assert!(matches!(parse(&sql), Err(Error::StackDepthExceeded(m)) if m.contains("subqueries nested 13 deep")));
        assert_eq!(parse(&scalar(MAX_SUBQUERY_DEPTH)).unwrap().unwrap().len(), 1);
    }

    fn repeat(item: &str, n: usize, separator: &str) -> String {
        vec![item; n].join(separator)
    }

    /// `f(0), f(1), ...` joined by `separator`.
    fn list(n: usize, separator: &str, f: impl Fn(usize) -> String) -> String {
        (0..n).map(f).collect::<Vec<_>>().join(separator)
    }

    #[test]
    fn chains_of_operators_count_their_tokens() {
        // Every token counts; the SELECT once more as a plan node.
        assert_eq!(depth("SELECT 1"), 2 + 1);
        assert_eq!(depth(&format!("SELECT {}", repeat("1", 1000, "+"))), 1 + 1999 + 1);
        assert_eq!(depth(&format!("SELECT 1{}", "::int8".repeat(1000))), 2 + 2000 + 1);
        assert_eq!(depth(&format!("SELECT {}true", "NOT ".repeat(1000))), 1 + 1001 + 1);
        assert_eq!(depth(&format!("SELECT {}1", "- ".repeat(1000))), 1 + 1001 + 1);
        assert_eq!(depth(&format!("SELECT {}", repeat("'x'", 1000, " || "))), 1 + 1999 + 1);
        let and = format!("SELECT a FROM t WHERE {}", repeat("a = a", 1000, " AND "));
        assert_eq!(depth(&and), 5 + 3 * 1000 + 999 + 1);
        // CASE is no list: DataFusion may rewrite a boolean one into a chain of ORs.
        let case = format!("SELECT CASE {} END", repeat("WHEN a = 1 THEN 'x'", 1000, " "));
        assert_eq!(depth(&case), 2 + 6 * 1000 + 1 + 1);
    }

    #[test]
    fn brackets_nest() {
        // SELECT and the outer bracket, then one bracket per level and the 1.
        assert_eq!(depth(&format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000))), 2 + 999 + 1 + 1);
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(1000), ")".repeat(1000));
        assert_eq!(depth(&subqueries), 2 + 2 * 1000 + 1001);
        // Each `[]` is an (empty) group of the item.
        assert_eq!(depth(&format!("SELECT '{{}}'::int{}", "[]".repeat(1000))), 4 + 1000 + 1);
    }

    #[test]
    fn list_items_do_not_add_up() {
        let in_list = format!("SELECT a FROM t WHERE a IN ({})", list(100_000, ",", |i| i.to_string()));
        assert_eq!(depth(&in_list), 8 + 1 + 1);
        // A `WITH` in a row (a type) makes its commas stack up, within the row only.
        let row = "(1, 'text', 2.5, '2024-01-01'::timestamp with time zone, NULL)";
        let insert = format!("INSERT INTO t (a, b, c, d, e) VALUES {}", repeat(row, 10_000, ", "));
        assert_eq!(depth(&insert), 6 + 8 + 1);
        let columns = format!("SELECT {} FROM t", list(1000, ", ", |i| format!("c{i}")));
        assert_eq!(depth(&columns), 3 + 1);
        // `IS DISTINCT FROM` is no FROM list.
        let distinct = format!("SELECT a IS DISTINCT FROM b, {} FROM t", repeat("c", 1000, ", "));
        assert_eq!(depth(&distinct), 6 + 1);
    }

    #[test]
    fn joins_set_operations_subqueries_and_windows_add_up() {
        let union = repeat("SELECT 1, 2", 1000, " UNION ALL ");
        assert!(depth(&union) >= 2000, "{}", depth(&union));
        let commas = format!("SELECT * FROM {}", list(1000, ", ", |i| format!("t t{i}")));
        assert!(depth(&commas) >= 2000, "{}", depth(&commas));
        let joins = format!("SELECT * FROM t0 {}", list(1000, " ", |i| format!("JOIN t{i} USING (a)")));
        assert!(depth(&joins) >= 4000, "{}", depth(&joins));
        let using = format!("SELECT * FROM a JOIN b USING ({})", list(1000, ", ", |i| format!("c{i}")));
        assert!(depth(&using) >= 1000, "{}", depth(&using));
        let scalar = format!("SELECT {}", repeat("(SELECT 1)", 1000, ", "));
        assert!(depth(&scalar) >= 1000, "{}", depth(&scalar));
        let windows = format!("SELECT {} FROM t", repeat("sum(a) OVER (ORDER BY a)", 1000, ", "));
        assert!(depth(&windows) >= 1000, "{}", depth(&windows));
        // CTEs reading each other: their plans stack up.
        let ctes = list(1000, ", ", |i| format!("c{} AS (SELECT a + 1 AS a FROM c{i})", i + 1));
        let with = format!("WITH c0 AS (SELECT 1 AS a), {ctes} SELECT a FROM c1000");
        assert!(depth(&with) >= 8 * 1000, "{}", depth(&with));
    }

    #[test]
    fn statements_are_measured_one_by_one() {
        let many = repeat(&format!("SELECT {}", repeat("1", 100, "+")), 100, "; ");
        assert_eq!(depth(&many), 1 + 199 + 1);
        assert_eq!(depth(""), 0);
        // Unbalanced brackets are a syntax error later, not a panic here.
        assert_eq!(depth("SELECT ((1"), 2 + 1 + 1 + 1);
        assert_eq!(depth("SELECT 1))) + 1"), 7 + 1);
    }

    #[test]
    fn the_depth_is_at_most_the_length() {
        for sql in [
            format!("SELECT {}", repeat("1", 5000, "+")),
            format!("SELECT {}", "NOT ".repeat(5000)),
            format!("SELECT {}1{}", "(SELECT ".repeat(500), ")".repeat(500)),
            format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000)),
            repeat("SELECT 1", 1000, " UNION ALL "),
            format!("SELECT * FROM {}", repeat("t", 1000, ",")),
            format!("SELECT {} FROM t", repeat("sum(a) OVER ()", 1000, ",")),
            format!("SELECT '{{}}'::int{}", "[]".repeat(1000)),
            format!("WITH {} SELECT 1", list(1000, ",", |i| format!("c{i} AS (TABLE t)"))),
        ] {
            assert!(depth(&sql) <= sql.len(), "{} > {} bytes: {}", depth(&sql), sql.len(), &sql[..40]);
        }
    }

    /// Parses `sql` on another thread: whether it finished within `deadline`.
    fn parses_within(sql: String, deadline: std::time::Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(move || tx.send(parse(&sql).is_ok())).unwrap();
        rx.recv_timeout(deadline).is_ok()
    }

    /// Shapes on which sqlparser 0.62 backtracks, each nested 60 deep: at twice the work per
    /// level, one would take longer than the universe has existed; in linear time, well under
    /// a millisecond. The deadline only tells the two apart.
    #[test]
    fn no_shape_parses_in_exponential_time() {
        let shapes = [
            ("SELECT abs(", "1", ")"),
            ("SELECT coalesce(", "1", ", 2)"),
            ("SELECT f(a => ", "1", ")"),
            ("SELECT CAST(CASE (", "1", ") WHEN 1 THEN 1 END AS INT)"),
            ("SELECT ", "1", "::int"),
            ("SELECT (", "1", ")"),
            ("SELECT * FROM (", "t", ")"),
            ("SELECT * FROM (SELECT * FROM ", "t", ")"),
            ("SELECT (SELECT ", "1", ")"),
            ("SELECT EXISTS (SELECT ", "1", ")"),
            ("SELECT 1 IN (", "1", ")"),
            ("SELECT ARRAY[", "1", "]"),
            ("SELECT ROW(", "1", ")"),
            ("SELECT * FROM t JOIN (", "t", ") ON true"),
            ("SELECT sum(", "1", ") OVER ()"),
        ];
        for (open, inner, close) in shapes {
            let sql = format!("{}{inner}{}", open.repeat(60), close.repeat(60));
            let done = parses_within(sql.clone(), std::time::Duration::from_secs(60));
            assert!(done, "parsing {sql} did not finish");
        }
    }

    #[test]
    fn deep_calls_stay_away_from_the_catalog_parser() {
        let calls = |n| format!("SELECT {}1{} FROM pg_class", "abs(".repeat(n), ")".repeat(n));
        assert!(catalog_parsable(&calls(MAX_CATALOG_CALL_DEPTH)));
        assert!(!catalog_parsable(&calls(MAX_CATALOG_CALL_DEPTH + 1)));
        // Brackets that open no call do not count; closed calls do not either.
        let parens = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
        assert!(catalog_parsable(&parens));
        let siblings = format!("SELECT {}", vec!["abs(abs(1))"; 100].join(", "));
        assert!(catalog_parsable(&siblings));
        assert!(!catalog_parsable("SELECT 'unterminated"));
    }

    #[test]
    fn statements_over_a_limit_are_refused_before_parsing() {
        let deep = format!("SELECT {}", repeat("1", MAX_DEPTH / 2, "+"));
        assert!(matches!(parse(&deep), Err(Error::StackDepthExceeded(_))));
        let big = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        assert!(matches!(parse(&big), Err(Error::ProgramLimitExceeded(_))));
        // Within the limits, short or long: parsed, nesting deeper than sqlparser's default
        // limit of 50 included.
        let nested = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(parse(&nested).unwrap().unwrap().len(), 1);
        let literal = format!("SELECT '{}'", "x".repeat(4 * MAX_DEPTH));
        assert_eq!(parse(&literal).unwrap().unwrap().len(), 1);
        let sum = format!("{}; SELECT {}", literal, repeat("1", MAX_DEPTH / 3, "+"));
        assert_eq!(parse(&sum).unwrap().unwrap().len(), 2);
        // A syntax error stays one.
        assert!(parse("SELEC 1").unwrap().is_err());
        assert!(parse(&format!("SELEC {}", repeat("1", MAX_DEPTH, ","))).unwrap().is_err());
    }
}
