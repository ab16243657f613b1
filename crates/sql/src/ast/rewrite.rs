//! AST rewrites applied before planning, and what planning reads off the AST.
//!
//! Rewrites: [`float_exponents`] (a literal with an exponent is a double, not NUMERIC),
//! [`catalog_query`] (what DataFusion needs to plan drivers' catalog queries),
//! [`partition_ancestors`] (psql's trigger lookup), [`text_type_casts`] (casts to jsonb and
//! uuid, text inside), [`ordinal_order_by`] (`ORDER BY 2` over an aggregation),
//! [`having_without_group_by`] (one group of all rows), the regclass casts of literals and
//! function texts ([`regclass_of_text`], [`regclass_arguments`]). Reads:
//! [`reads_catalog`] (whether a statement needs the catalog parser), [`param_hints`] (the
//! types PostgreSQL gives a `$n` from where it stands).

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, AccessExpr, BinaryOperator, CastKind,
    DataType as AstType, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr,
    Ident, LimitClause, ObjectName, OrderBy, OrderByKind, Query, SelectItem, SetExpr, Statement, Subscript,
    TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use super::{call, param_number};
use crate::types::SqlType;

/// Name of the function pgJDBC's `getPrimaryKeys` calls as `information_schema._pg_expandarray`
/// (a UDF of that name is registered by `catalog::pg_catalog`).
pub(crate) const EXPAND: &str = "_pg_expandarray";

/// The function a `::regclass` cast in a select list becomes ([`regclass_output`]): the
/// relation's name, as PostgreSQL prints a regclass (registered by `catalog::pg_catalog`).
pub(crate) const REGCLASS_OUT: &str = "regclassout";

/// The OIDs of PostgreSQL's own catalog tables that catalog queries name as
/// `'pg_class'::regclass` (to match `pg_depend.classid` and the like).
pub(crate) const SYSTEM_RELATIONS: &[(&str, i32)] = &[
    ("pg_class", 1259),
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_namespace", 2615),
    ("pg_constraint", 2606),
    ("pg_index", 2610),
    ("pg_attrdef", 2604),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_sequence", 2224),
    ("pg_am", 2601),
    ("pg_database", 1262),
];

/// Numeric literals are NUMERIC (decimal) as in PostgreSQL, but a literal with an exponent
/// (`1e300`) is usually meant as a float and may not fit a decimal: it becomes a double.
pub(crate) fn float_exponents(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Number(n, _) = &v.value {
                if n.contains(['e', 'E']) {
                    *e = Expr::Cast {
                        kind: CastKind::Cast,
                        expr: Box::new(Expr::Value(Value::SingleQuotedString(n.clone()).with_empty_span())),
                        data_type: AstType::DoublePrecision,
                        array: false,
                        format: None,
                    };
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether a statement reads PostgreSQL's catalogs (`pg_catalog`, `information_schema`,
/// `pg_*` relations) or calls a `pg_catalog.`-qualified function.
pub(crate) fn reads_catalog(stmt: &Statement) -> bool {
    let qualified_call = visit_expressions(stmt, |e| match e {
        Expr::Function(f) if f.name.0.len() > 1 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if qualified_call.is_break() {
        return true;
    }
    let found = visit_relations(stmt, |name| {
        let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.to_lowercase()).collect();
        let catalog = parts.iter().any(|p| p == "pg_catalog" || p == "information_schema")
            || parts.last().is_some_and(|t| t.starts_with("pg_"));
        if catalog {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// `nextval('s'::regclass)` (and `currval`, `setval`) becomes `nextval('s')`: these functions
/// take the sequence's name as text (DataFusion knows no `regclass`). The text form is what
/// PostgreSQL shows as a SERIAL column's default, so users copy it.
pub(crate) fn regclass_arguments(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_lowercase());
            if let (Some("nextval" | "currval" | "setval"), FunctionArguments::List(list)) =
                (name.as_deref(), &mut f.args)
            {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first_mut() {
                    if let Expr::Cast { expr, data_type, .. } = arg {
                        let regclass = matches!(data_type, AstType::Regclass)
                            || data_type.to_string().to_lowercase().ends_with("regclass");
                        if regclass {
                            *arg = expr.as_ref().clone();
                        }
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Every `nextval(s)` of a select list after the first of the same argument gets a second
/// argument, its count (`nextval('s'), nextval('s', 1)`), which the function ignores:
/// DataFusion runs equal calls of an asynchronous function once and shows that value in each
/// place, where PostgreSQL calls each (`SELECT nextval('s'), nextval('s')` is 1, 2). Select
/// lists only (of a query, or an INSERT's): a VALUES column calls one `nextval` in every row
/// (`plan::functions::async_values`).
pub(crate) fn distinct_nextvals(stmt: &mut Statement) {
    fn selects(body: &mut SetExpr, seen: &mut std::collections::HashMap<String, u64>) {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    let _ = visit_expressions_mut(item, |e| {
                        count_nextval(e, seen);
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            SetExpr::Query(q) => selects(&mut q.body, seen),
            SetExpr::SetOperation { left, right, .. } => {
                selects(left, seen);
                selects(right, seen);
            }
            _ => {}
        }
    }
    let mut seen = std::collections::HashMap::new();
    match stmt {
        Statement::Query(q) => selects(&mut q.body, &mut seen),
        Statement::Insert(insert) => {
            if let Some(q) = insert.source.as_mut() {
                selects(&mut q.body, &mut seen);
            }
        }
        _ => {}
    }
}

/// [`distinct_nextvals`] of one expression: `seen` counts the calls of each argument so far.
fn count_nextval(e: &mut Expr, seen: &mut std::collections::HashMap<String, u64>) {
    let Expr::Function(f) = e else { return };
    let name = f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_lowercase());
    if let (Some("nextval"), FunctionArguments::List(list)) = (name.as_deref(), &mut f.args) {
        if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() {
            let count = seen.entry(arg.to_string()).or_insert(0);
            if *count > 0 {
                let n = Expr::Value(Value::Number(count.to_string(), false).with_empty_span());
                list.args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(n)));
            }
            *count += 1;
        }
    }
}

/// Rewrites a catalog query into what DataFusion plans:
/// - `information_schema._pg_expandarray(a)`, PostgreSQL's set-returning function of an
///   array's (element, position) pairs that pgJDBC's `getPrimaryKeys` calls, becomes
///   `unnest(_pg_expandarray(a))`;
/// - a field of a parenthesized composite, `(e).x`, becomes `e['x']`;
/// - `generate_subscripts(a, 1)` (SQLAlchemy's index reflection) becomes
///   `unnest(range(1, cardinality(a) + 1))` (in bigint), the same positions;
/// - a `::regclass` cast in a select list prints the relation's name ([`regclass_output`]);
/// - `x.tableoid` of a system catalog `x` is that catalog's OID ([`tableoids`]).
pub(crate) fn catalog_query(stmt: &mut Statement) {
    regclass_output(stmt);
    tableoids(stmt);
    let _ = visit_expressions_mut(stmt, |e| {
        match e {
            Expr::Function(f)
                if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value == "generate_subscripts") =>
            {
                if let FunctionArguments::List(list) = &f.args {
                    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first() {
                        // bigint throughout: `range` takes no NUMERIC (what literals are here).
                        let bigint = |expr| Expr::Cast {
                            kind: CastKind::Cast,
                            expr: Box::new(expr),
                            data_type: AstType::BigInt(None),
                            array: false,
                            format: None,
                        };
                        let one = || bigint(Expr::Value(Value::Number("1".into(), false).with_empty_span()));
                        let count = bigint(call("cardinality", vec![array.clone()]));
                        let end =
                            Expr::BinaryOp { left: Box::new(count), op: BinaryOperator::Plus, right: Box::new(one()) };
                        *e = call("unnest", vec![call("range", vec![one(), end])]);
                    }
                }
            }
            Expr::Function(f) if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value == EXPAND) => {
                let mut inner = f.clone();
                inner.name = ObjectName::from(vec![Ident::new(EXPAND)]);
                let mut unnest = f.clone();
                unnest.name = ObjectName::from(vec![Ident::new("unnest")]);
                unnest.args = FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(inner)))],
                    clauses: Vec::new(),
                });
                *e = Expr::Function(unnest);
            }
            // A regproc column of pg_type holds the function's name here; equal to pg_proc's
            // `oid` (Npgsql's type loading: `pg_proc AS proc ON proc.oid = typ.typreceive`), it
            // means the function of that name (each is the only one so named).
            Expr::BinaryOp { left, op: BinaryOperator::Eq, right }
                if regproc_match(left, right) || regproc_match(right, left) =>
            {
                for side in [left, right] {
                    if let Expr::CompoundIdentifier(parts) = side.as_mut() {
                        if let Some(last) = parts.last_mut().filter(|p| p.value.eq_ignore_ascii_case("oid")) {
                            *last = Ident::new("proname");
                        }
                    }
                }
            }
            // int2vector / oidvector subscripts count from 0 in PostgreSQL; the lists from 1.
            Expr::CompoundFieldAccess { root, access_chain } if vector_subscript(root, access_chain).is_some() => {
                let n = vector_subscript(root, access_chain).expect("checked");
                if let AccessExpr::Subscript(Subscript::Index { index }) = &mut access_chain[n] {
                    let one = Expr::Value(Value::Number("1".into(), false).with_empty_span());
                    let from_zero = Expr::Nested(Box::new(index.clone()));
                    *index =
                        Expr::BinaryOp { left: Box::new(from_zero), op: BinaryOperator::Plus, right: Box::new(one) };
                }
            }
            Expr::CompoundFieldAccess { root, access_chain } if matches!(root.as_ref(), Expr::Nested(_)) => {
                for access in access_chain.iter_mut() {
                    if let AccessExpr::Dot(Expr::Identifier(id)) = access {
                        let name = Value::SingleQuotedString(id.value.to_lowercase()).with_empty_span();
                        *access = AccessExpr::Subscript(Subscript::Index { index: Expr::Value(name) });
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `x.tableoid`, the system column of the table a row is in, where `x` binds one of
/// [`SYSTEM_RELATIONS`] in the same SELECT: that table's OID (pgAdmin joins
/// `dep.classid = cls.tableoid`). The catalog tables have no system columns here, and a column
/// of that name would show in their `*`.
fn tableoids(stmt: &mut Statement) {
    struct Selects;
    impl VisitorMut for Selects {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
            let mut bound = std::collections::HashMap::new();
            let items = select
                .from
                .iter()
                .flat_map(|f| std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation)));
            for item in items {
                let TableFactor::Table { name, alias, args: None, .. } = item else { continue };
                let Some(relation) = name.0.last().and_then(|p| p.as_ident()).map(super::ident) else { continue };
                let Some((_, oid)) = SYSTEM_RELATIONS.iter().find(|(n, _)| *n == relation) else { continue };
                bound.insert(alias.as_ref().map_or(relation, |a| super::ident(&a.name)), *oid);
            }
            if bound.is_empty() {
                return ControlFlow::Continue(());
            }
            let _ = visit_expressions_mut(select.as_mut(), |e| {
                if let Expr::CompoundIdentifier(parts) = e {
                    if let [binding, column] = parts.as_slice() {
                        let oid = bound.get(&super::ident(binding)).filter(|_| super::ident(column) == "tableoid");
                        if let Some(oid) = oid {
                            *e = Expr::Value(Value::Number(oid.to_string(), false).with_empty_span());
                        }
                    }
                }
                ControlFlow::<()>::Continue(())
            });
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Selects);
}

/// `ORDER BY 2` naming a computed select item (`SELECT d, count(*) * 100 ... GROUP BY d
/// ORDER BY 2`) as that item's expression: DataFusion resolves the position to the expression
/// and then refuses it over an aggregation ("Column in ORDER BY must be in GROUP BY"), while
/// the written expression plans (it is the select item's column). Plain columns keep their
/// position, as do items that hold a subquery, a window function or a volatile call (written
/// twice, it could be computed twice), items of a select that cannot aggregate (no GROUP BY,
/// HAVING or function call), the ORDER BY of a UNION or of a SELECT DISTINCT; a position
/// naming a literal is dropped (it sorts nothing).
pub(crate) fn ordinal_order_by(stmt: &mut Statement) {
    struct Queries;
    impl VisitorMut for Queries {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let (SetExpr::Select(select), Some(OrderBy { kind: OrderByKind::Expressions(order), .. })) =
                (query.body.as_ref(), query.order_by.as_mut())
            else {
                return ControlFlow::Continue(());
            };
            if select.distinct.is_some() {
                // DISTINCT sorts its output columns: positions plan there.
                return ControlFlow::Continue(());
            }
            let position = |e: &Expr| {
                let Expr::Value(v) = e else { return None };
                let Value::Number(n, _) = &v.value else { return None };
                let position = n.parse::<usize>().ok().filter(|p| *p >= 1)?;
                select.projection.get(position - 1)
            };
            let item_at = |e: &Expr| match position(e)? {
                SelectItem::UnnamedExpr(e) => Some(e),
                _ => None,
            };
            // A literal item, named or not, sorts nothing: its position goes (written, it
            // would be a position again).
            let literal = |e: &Expr| {
                let e = match position(e) {
                    Some(SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) => e,
                    _ => return false,
                };
                matches!(e, Expr::Value(_))
                    || matches!(e, Expr::UnaryOp { expr, .. } if matches!(expr.as_ref(), Expr::Value(_)))
            };
            order.retain(|item| !literal(&item.expr));
            // Only where there may be an aggregation: elsewhere DataFusion sorts by the
            // position's output column, and the expression written out could be planned over
            // other outputs (`SELECT 5, CASE WHEN f THEN 5 END ... ORDER BY 2` read its `5`
            // from the first output and failed the plan's sanity check).
            let grouped =
                !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty()) || select.having.is_some();
            let calls = |e: &Expr| {
                visit_expressions(e, |e| match e {
                    Expr::Function(_) => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                })
                .is_break()
            };
            for item in order.iter_mut() {
                let Some(e) = item_at(&item.expr) else { continue };
                let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                if !plain && (grouped || calls(e)) && repeatable(e) {
                    item.expr = e.clone();
                }
            }
            if order.is_empty() {
                query.order_by = None;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Queries);
}

/// A HAVING in a SELECT without GROUP BY, which PostgreSQL reads as one group of all the rows
/// (`SELECT 1 FROM t HAVING true` answers one row, even for an empty `t`), given the hidden
/// aggregate `count(1) IS NOT NULL` (always true) so DataFusion plans that group too: it
/// refuses a HAVING that names no aggregate, and a select item reading a column stays
/// refused (42803) as in PostgreSQL.
pub(crate) fn having_without_group_by(stmt: &mut Statement) {
    fn body(set: &mut SetExpr) {
        match set {
            SetExpr::Select(select) => {
                let ungrouped =
                    matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
                if let (true, Some(having)) = (ungrouped, select.having.as_mut()) {
                    let one = Expr::Value(Value::Number("1".into(), false).with_empty_span());
                    let count = call("count", vec![one]);
                    let grouped = Expr::IsNotNull(Box::new(count));
                    let written = std::mem::replace(having, grouped.clone());
                    *having = Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(written))),
                        op: BinaryOperator::And,
                        right: Box::new(grouped),
                    };
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                body(left);
                body(right);
            }
            _ => {}
        }
    }
    struct Queries;
    impl VisitorMut for Queries {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            body(query.body.as_mut());
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Queries);
}

/// Whether `e` may be written twice in one query and mean the same: no subquery, no window
/// function, no volatile call.
fn repeatable(e: &Expr) -> bool {
    const VOLATILE: [&str; 6] = ["random", "nextval", "gen_random_uuid", "uuid", "clock_timestamp", "setval"];
    let found = visit_expressions(e, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
        Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(super::ident).unwrap_or_default();
            if VOLATILE.contains(&name.as_str()) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_continue()
}

/// PostgreSQL's special values written without parentheses that sqlparser reads as column
/// names (`current_role`, `current_schema`) or as a function DataFusion lacks
/// (`current_catalog`): each the function call that answers it. (`current_user`, `user` and
/// `session_user` are functions of those names, `plan::functions`.)
const SPECIAL_VALUES: [(&str, &str); 3] =
    [("current_role", "current_user"), ("current_schema", "current_schema"), ("current_catalog", "current_database")];

/// Whether `sql` names one of [`SPECIAL_VALUES`] (a byte scan, no allocation).
pub(crate) fn names_special_values(sql: &str) -> bool {
    let names = |word: &[u8]| sql.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    names(b"current_role") || names(b"current_schema") || names(b"current_catalog")
}

/// Rewrites [`SPECIAL_VALUES`] into their function calls (an unquoted name only: a quoted one
/// is a column).
pub(crate) fn special_values(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        let name = match e {
            Expr::Identifier(i) if i.quote_style.is_none() => Some(i.value.to_lowercase()),
            Expr::Function(f) if matches!(f.args, FunctionArguments::None) && f.name.0.len() == 1 => {
                f.name.0[0].as_ident().filter(|i| i.quote_style.is_none()).map(|i| i.value.to_lowercase())
            }
            _ => None,
        };
        if let Some((_, function)) = name.and_then(|n| SPECIAL_VALUES.iter().find(|(v, _)| *v == n)) {
            *e = call(function, Vec::new());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The types kept as text whose casts DataFusion cannot plan ("Unsupported SQL type JSONB"),
/// and the function ([`plan::functions`]) each cast becomes: the text validated and stored as a
/// column of the type stores it (jsonb normalised, a UUID in its canonical form).
const TEXT_TYPES: [&str; 3] = ["jsonb", "json", "uuid"];

/// Whether `sql` may cast to one of [`TEXT_TYPES`] (a byte scan, no allocation).
pub(crate) fn names_text_types(sql: &str) -> bool {
    sql.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"json") || w.eq_ignore_ascii_case(b"uuid"))
}

/// `x::jsonb`, `CAST(x AS uuid)`, ... as calls of [`TEXT_TYPES`]' functions, in queries and
/// DML (a column default keeps its cast, as written).
pub(crate) fn text_type_casts(stmt: &mut Statement) {
    if !matches!(stmt, Statement::Query(_) | Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)) {
        return;
    }
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Cast { expr, data_type, .. } = e {
            let name = match data_type {
                AstType::JSONB => Some(TEXT_TYPES[0]),
                AstType::JSON => Some(TEXT_TYPES[1]),
                AstType::Uuid => Some(TEXT_TYPES[2]),
                _ => None,
            };
            if let Some(name) = name {
                let operand = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
                *e = call(name, vec![operand]);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether `sql` may hold a `substring(s FROM 'pattern')` (a byte scan, no allocation).
pub(crate) fn names_substring(sql: &str) -> bool {
    sql.as_bytes().windows(9).any(|w| w.eq_ignore_ascii_case(b"substring"))
}

/// `substring(s FROM 'pattern')`, PostgreSQL's regular-expression form (the text matching the
/// pattern's first parenthesized group, else the whole match; NULL without a match), which
/// DataFusion reads as a start position: `(regexp_match(s, 'pattern'))[1]`, whose list holds
/// the groups (or the match). Only for a pattern written as a text literal: a parameter or a
/// text column stays a position, and fails.
pub(crate) fn regex_substrings(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Substring { expr, substring_from: Some(from), substring_for: None, shorthand: false, .. } = e {
            if matches!(from.as_ref(), Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))) {
                let matched = call("regexp_match", vec![expr.as_ref().clone(), from.as_ref().clone()]);
                let one = Expr::Value(Value::Number("1".into(), false).with_empty_span());
                *e = Expr::CompoundFieldAccess {
                    root: Box::new(Expr::Nested(Box::new(matched))),
                    access_chain: vec![AccessExpr::Subscript(Subscript::Index { index: one })],
                };
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether `oid` is `x.oid` and `function` a regproc column of `pg_type` (`typreceive`, ...).
fn regproc_match(oid: &Expr, function: &Expr) -> bool {
    const REGPROC: [&str; 7] =
        ["typinput", "typoutput", "typreceive", "typsend", "typmodin", "typmodout", "typanalyze"];
    let last = |e: &Expr| match e {
        Expr::Identifier(i) => Some(i.value.to_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.to_lowercase()),
        _ => None,
    };
    matches!(oid, Expr::CompoundIdentifier(_))
        && last(oid).as_deref() == Some("oid")
        && last(function).is_some_and(|f| REGPROC.contains(&f.as_str()))
}

/// The position in `chain` of the one subscript of `root[.field...][i]` when what it
/// subscripts is one of `pg_index`'s vector columns (`int2vector`, `oidvector`), or pgJDBC's
/// alias of one (`getIndexInfo` reads `i.indoption AS i_indoption` in a subquery).
fn vector_subscript(root: &Expr, chain: &[AccessExpr]) -> Option<usize> {
    const VECTORS: [&str; 5] = ["indkey", "indoption", "indclass", "indcollation", "i_indoption"];
    let n = chain.len().checked_sub(1)?;
    if !matches!(chain[n], AccessExpr::Subscript(Subscript::Index { .. })) {
        return None;
    }
    let name = match (n, root) {
        (0, Expr::Identifier(i)) => i,
        (0, Expr::CompoundIdentifier(parts)) => parts.last()?,
        // A subscript of anything else: `(f(x))[1]`.
        (0, _) => return None,
        (_, _) => match &chain[n - 1] {
            AccessExpr::Dot(Expr::Identifier(i)) => i,
            _ => return None,
        },
    };
    VECTORS.contains(&name.value.to_lowercase().as_str()).then_some(n)
}

/// Whether `ty` is `regclass` (however qualified).
fn is_regclass(ty: &AstType) -> bool {
    matches!(ty, AstType::Regclass) || ty.to_string().to_lowercase().ends_with("regclass")
}

/// A `::regclass` cast of a column in a select list (psql's `conrelid::pg_catalog.regclass AS
/// ontable`) prints the relation's name in PostgreSQL, where datafusion-pg-catalog would
/// leave the number: it becomes `regclassout(x)` ([`REGCLASS_OUT`]). Only the output: a
/// regclass compared or joined is an OID.
/// Returns whether it changed anything.
pub(crate) fn regclass_output(stmt: &mut Statement) -> bool {
    struct Rewriter(bool);
    impl VisitorMut for Rewriter {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
            for item in select.projection.iter_mut() {
                let (expr, alias) = match item {
                    SelectItem::UnnamedExpr(expr) => (expr, None),
                    SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                    _ => continue,
                };
                let Expr::Cast { expr: inner, data_type, .. } = expr else { continue };
                if !is_regclass(data_type) || matches!(inner.as_ref(), Expr::Value(_)) {
                    continue;
                }
                // Unaliased, it keeps the function's name: PostgreSQL's (the column's, `oid`)
                // would clash with that column in an ORDER BY.
                let expr = call(REGCLASS_OUT, vec![inner.as_ref().clone()]);
                *item = match alias {
                    Some(alias) => SelectItem::ExprWithAlias { expr, alias },
                    None => SelectItem::UnnamedExpr(expr),
                };
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter(false);
    let _ = stmt.visit(&mut rewriter);
    rewriter.0
}

/// `pg_partition_ancestors(x) [WITH ORDINALITY] AS a(relid [, depth])` in a FROM list (psql's
/// `\d` looks a trigger's ancestor up so): no relation here is a partition, so x's ancestors
/// are x alone, at depth 1. The item goes and `a.relid` / `a.depth` become `x` / `1` in its
/// query (DataFusion cannot join a function of an outer query's column). Returns whether it
/// changed anything.
pub(crate) fn partition_ancestors(stmt: &mut Statement) -> bool {
    struct Rewriter(bool);
    impl VisitorMut for Rewriter {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
            let found = select.from.iter().position(|item| {
                item.joins.is_empty()
                    && matches!(&item.relation, TableFactor::Table { name, args: Some(_), alias: Some(_), .. }
                        if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("pg_partition_ancestors")))
            });
            let Some(at) = found.filter(|_| select.from.len() > 1) else { return ControlFlow::Continue(()) };
            let TableFactor::Table { args: Some(args), alias: Some(alias), .. } = &select.from[at].relation else {
                return ControlFlow::Continue(());
            };
            let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(of))) = args.args.first() else {
                return ControlFlow::Continue(());
            };
            let (of, table) = (of.clone(), alias.name.value.to_lowercase());
            let columns: Vec<String> = alias.columns.iter().map(|c| c.name.value.to_lowercase()).collect();
            select.from.remove(at);
            // Ordered by the depth, which is now a constant: no order at all (an `ORDER BY 1`
            // left behind would mean the first column).
            let is_depth = |e: &Expr| match e {
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [t, c] => t.value.to_lowercase() == table && columns.get(1) == Some(&c.value.to_lowercase()),
                    _ => false,
                },
                _ => false,
            };
            if let Some(OrderBy { kind: OrderByKind::Expressions(items), .. }) = &mut query.order_by {
                items.retain(|item| !is_depth(&item.expr));
                if items.is_empty() {
                    query.order_by = None;
                }
            }
            let one = Expr::Value(Value::Number("1".into(), false).with_empty_span());
            let _ = visit_expressions_mut(query, |e| {
                if let Expr::CompoundIdentifier(parts) = e {
                    if let [t, c] = parts.as_slice() {
                        if t.value.to_lowercase() == table {
                            match columns.iter().position(|n| *n == c.value.to_lowercase()) {
                                Some(0) => *e = of.clone(),
                                Some(1) => *e = one.clone(),
                                _ => {}
                            }
                        }
                    }
                }
                ControlFlow::<()>::Continue(())
            });
            self.0 = true;
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter(false);
    let _ = stmt.visit(&mut rewriter);
    rewriter.0
}

/// `CAST(f(...) AS regclass)` of a function's text (SQLAlchemy's
/// `pg_get_serial_sequence(...)::regclass`), or of a text literal (Alembic's
/// `'pg_class'::regclass`, `cast('t_id_seq' as regclass)`), becomes `to_regclass(...)`: the
/// name's OID, where datafusion-pg-catalog's rewrite would cast the text to an integer.
/// Returns whether it changed anything. (A column's cast is an OID already.)
pub(crate) fn regclass_of_text(stmt: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Cast { expr, data_type, .. } = e {
            let regclass =
                matches!(data_type, AstType::Regclass) || data_type.to_string().to_lowercase().ends_with("regclass");
            let text = matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
            if regclass && (text || matches!(expr.as_ref(), Expr::Function(_))) {
                *e = call("to_regclass", vec![(**expr).clone()]);
                changed = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// Types of `$n` that PostgreSQL takes from where they stand and DataFusion leaves unknown:
/// bigint for a LIMIT or OFFSET, the target type of a cast (`$1::bigint`). A client that sends
/// untyped text values (node-postgres, pgJDBC's metadata) would otherwise bind a string there.
pub(crate) fn param_hints(stmt: &Statement) -> Vec<(usize, DataType)> {
    struct Hints(Vec<(usize, DataType)>);
    impl Visitor for Hints {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            let (limit, offset) = match &q.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    (limit.as_ref(), offset.as_ref().map(|o| &o.value))
                }
                Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(limit), Some(offset)),
                None => (None, None),
            };
            for n in [limit, offset].into_iter().flatten().filter_map(param_number) {
                self.0.push((n, DataType::Int64));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Cast { expr, data_type, .. } = e {
                if let (Some(n), Ok(ty)) = (param_number(expr), SqlType::from_ast(data_type)) {
                    self.0.push((n, ty.arrow()));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut hints = Hints(Vec::new());
    let _ = stmt.visit(&mut hints);
    hints.0
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn one(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn regclass_casts_of_function_text_and_literals_resolve_names() {
        let mut stmt =
            one("SELECT CAST(CAST(pg_get_serial_sequence('t', 'id') AS REGCLASS) AS OID), a::regclass, 'x'::regclass");
        assert!(regclass_of_text(&mut stmt));
        assert_eq!(
            stmt.to_string(),
            "SELECT CAST(to_regclass(pg_get_serial_sequence('t', 'id')) AS OID), a::REGCLASS, to_regclass('x')"
        );
        assert!(!regclass_of_text(&mut one("SELECT a::regclass")));
    }

    #[test]
    fn regclass_outputs_print_names_and_comparisons_stay_oids() {
        let mut stmt = one("SELECT conrelid::pg_catalog.regclass AS ontable, c.oid::regclass, 'x'::regclass \
                            FROM pg_constraint c WHERE conrelid = 'x'::regclass");
        assert!(regclass_output(&mut stmt));
        let text = stmt.to_string();
        assert!(
            text.starts_with("SELECT regclassout(conrelid) AS ontable, regclassout(c.oid), 'x'::REGCLASS FROM"),
            "{text}"
        );
        assert!(text.ends_with("WHERE conrelid = 'x'::REGCLASS"), "{text}");
    }

    #[test]
    fn special_values_are_calls_unless_quoted() {
        let mut stmt = one("SELECT current_role, current_schema, \"current_role\", current_catalog, x");
        special_values(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT current_user(), current_schema(), \"current_role\", current_database(), x"
        );
    }

    #[test]
    fn substring_from_a_text_pattern_is_a_regex_match() {
        let mut stmt =
            one("SELECT substring(o FROM 'f=([0-9]*)'), substring(s FROM 2), substring(s FROM 1 FOR 2) FROM t");
        regex_substrings(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT (regexp_match(o, 'f=([0-9]*)'))[1], SUBSTRING(s FROM 2), SUBSTRING(s FROM 1 FOR 2) FROM t"
        );
    }

    #[test]
    fn tableoid_of_a_catalog_table_is_its_oid() {
        let mut stmt = one("SELECT t.tableoid FROM pg_catalog.pg_index i JOIN pg_class cls ON cls.oid = i.indexrelid \
                            LEFT JOIN pg_depend dep ON dep.classid = cls.tableoid, users t");
        tableoids(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT t.tableoid FROM pg_catalog.pg_index i JOIN pg_class cls ON cls.oid = i.indexrelid \
             LEFT JOIN pg_depend dep ON dep.classid = 1259, users t"
        );
    }

    #[test]
    fn subscripts_of_vector_columns_count_from_zero_and_others_stay() {
        let mut stmt = one("SELECT i.indkey[0], indoption[1], (parse_ident('a.b'))[1], x[1] FROM pg_index i");
        catalog_query(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT i.indkey[(0) + 1], indoption[(1) + 1], (parse_ident('a.b'))[1], x[1] FROM pg_index i"
        );
    }

    #[test]
    fn regproc_columns_join_pg_proc_by_name() {
        let mut stmt = one("SELECT 1 FROM pg_type AS typ LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive \
                            WHERE typ.typsend = p.oid AND p.oid = typ.oid");
        catalog_query(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT 1 FROM pg_type AS typ LEFT JOIN pg_proc AS proc ON proc.proname = typ.typreceive \
             WHERE typ.typsend = p.proname AND p.oid = typ.oid"
        );
    }

    #[test]
    fn partition_ancestors_of_a_relation_are_itself() {
        let mut stmt = one("SELECT (SELECT u.tgrelid FROM pg_trigger AS u, \
            pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth) \
            WHERE u.tgrelid = a.relid AND a.depth > 0 ORDER BY a.depth LIMIT 1) FROM pg_trigger t");
        assert!(partition_ancestors(&mut stmt));
        assert_eq!(
            stmt.to_string(),
            "SELECT (SELECT u.tgrelid FROM pg_trigger AS u WHERE u.tgrelid = t.tgrelid AND 1 > 0 LIMIT 1) FROM pg_trigger t"
        );
        assert!(!partition_ancestors(&mut one("SELECT pg_partition_ancestors(1)")));
    }

    #[test]
    fn exponent_literals_become_doubles() {
        let mut stmt = one("SELECT 1e300, 2.5, 3E-2");
        float_exponents(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT CAST('1e300' AS DOUBLE PRECISION), 2.5, CAST('3E-2' AS DOUBLE PRECISION)");
    }

    #[test]
    fn regclass_casts_of_sequence_arguments_go() {
        let mut stmt =
            one("SELECT nextval('s'::regclass), currval('t'::pg_catalog.regclass), setval('u', 3), x::regclass");
        regclass_arguments(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT nextval('s'), currval('t'), setval('u', 3), x::REGCLASS");
        let mut stmt = one("SELECT nextval('s'), nextval('t'), nextval('s') + nextval('s')");
        distinct_nextvals(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT nextval('s'), nextval('t'), nextval('s', 1) + nextval('s', 2)");
        let values = "SELECT v FROM (VALUES (nextval('s')), (nextval('s'))) AS x (v)";
        let mut stmt = one(values);
        distinct_nextvals(&mut stmt);
        assert_eq!(stmt.to_string(), values);
    }

    #[test]
    fn catalog_queries_are_recognised_and_rewritten() {
        assert!(reads_catalog(&one("SELECT relname FROM pg_class")));
        assert!(reads_catalog(&one("SELECT * FROM information_schema.tables")));
        assert!(reads_catalog(&one("SELECT pg_catalog.version()")));
        assert!(!reads_catalog(&one("SELECT * FROM t WHERE id = 1")));
        let mut stmt = one("SELECT (information_schema._pg_expandarray(i.indkey)).n AS s, (r.KEYS).x FROM i, r");
        catalog_query(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT (unnest(_pg_expandarray(i.indkey)))['n'] AS s, (r.KEYS)['x'] FROM i, r");
        // Vectors count from 0, arrays from 1.
        let mut stmt = one("SELECT i.indoption[p - 1], tmp.I_INDOPTION[0], c.conkey[1] FROM i");
        catalog_query(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT i.indoption[(p - 1) + 1], tmp.I_INDOPTION[(0) + 1], c.conkey[1] FROM i");
        let mut stmt = one("SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) FROM i");
        catalog_query(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT unnest(i.indkey), unnest(range(CAST(1 AS BIGINT), CAST(cardinality(i.indkey) AS BIGINT) + CAST(1 AS BIGINT))) FROM i"
        );
    }

    #[test]
    fn positions_give_parameter_types() {
        let hints = param_hints(&one("SELECT * FROM t WHERE a = $1::int4 LIMIT $2 OFFSET $3"));
        assert_eq!(hints, vec![(2, DataType::Int64), (3, DataType::Int64), (1, DataType::Int32)]);
    }
}
