//! The seeded query generator: typed expression trees (arithmetic, comparisons, casts, string and
//! date functions, CASE / COALESCE / NULLIF, aggregates, window functions, scalar / EXISTS / IN
//! subqueries, correlated or not) over joins of the [`schema`](super::schema) tables, rendered as
//! fully parenthesised SQL both engines read the same way. Every construct carries a feature name;
//! `minimise` shrinks a mismatching query and its features name the mismatch's category, and
//! `--exclude` leaves features out of the generation.
//!
//! Results are made deterministic by construction: `ORDER BY` always lists every output column (a
//! total order over distinct rows), `LIMIT` comes only with it, `row_number()` and `lag()` order
//! by the unique key, and scalar subqueries aggregate or look up a primary key.

use std::collections::BTreeSet;
use std::fmt::Write;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::schema::{Column, Table, TABLES};

/// The SQL types expressions are generated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    Int,
    BigInt,
    Numeric,
    Double,
    Text,
    Bool,
    Date,
}

impl Ty {
    const ALL: [Ty; 7] = [Ty::Int, Ty::BigInt, Ty::Numeric, Ty::Double, Ty::Text, Ty::Bool, Ty::Date];

    /// The type's name in a cast.
    pub fn sql(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::BigInt => "bigint",
            Ty::Numeric => "numeric",
            Ty::Double => "double precision",
            Ty::Text => "text",
            Ty::Bool => "boolean",
            Ty::Date => "date",
        }
    }

    /// A few literals of the type, the first the simplest (what `minimise` shrinks towards).
    fn literals(self) -> &'static [&'static str] {
        match self {
            Ty::Int => &[
                "CAST(1 AS integer)",
                "CAST(0 AS integer)",
                "CAST(7 AS integer)",
                "CAST(-1 AS integer)",
                "CAST(2147483647 AS integer)",
            ],
            Ty::BigInt => &[
                "CAST(1 AS bigint)",
                "CAST(0 AS bigint)",
                "CAST(-1 AS bigint)",
                "CAST(5 AS bigint)",
                "CAST(100 AS bigint)",
                "CAST(9223372036854775807 AS bigint)",
            ],
            Ty::Numeric => &[
                "CAST(1.50 AS numeric(10,2))",
                "CAST(0.50 AS numeric(10,2))",
                "CAST(-3.75 AS numeric(10,2))",
                "CAST(100.00 AS numeric(10,2))",
            ],
            Ty::Double => &[
                "CAST('1.5' AS double precision)",
                "CAST('0' AS double precision)",
                "CAST('-2.25' AS double precision)",
                "CAST('0.1' AS double precision)",
                "CAST('1e300' AS double precision)",
                "CAST('NaN' AS double precision)",
                "CAST('Infinity' AS double precision)",
            ],
            Ty::Text => &["'a'", "''", "'abc'", "'hello'", "'A'", "' x '", "'a%'", "'%l%'", "'7'", "'2.5'", "'h_llo'"],
            Ty::Bool => &["true", "false"],
            Ty::Date => &["DATE '2026-01-01'", "DATE '2000-02-29'", "DATE '1999-12-31'", "DATE '2026-12-07'"],
        }
    }
}

/// Integer literals as written (PostgreSQL types one that fits as integer); the literals of
/// [`Ty::literals`] are cast, so the feature `int-literal` can be left out on its own.
const INT_LITERALS: [&str; 9] = ["1", "0", "2", "3", "7", "42", "(-1)", "100", "2147483647"];

/// Numeric literals as written, each of its own scale (PostgreSQL keeps a value's scale; the
/// cast literals of [`Ty::literals`] share the columns' scale): feature `numeric-literal`.
const NUMERIC_LITERALS: [&str; 7] = ["1.5", "0.5", "1.25", "(-3.75)", "0.01", "100.00", "2.5"];

/// What a construct exercises: mismatches are grouped by the features of their minimised query.
pub type Feature = &'static str;

/// How an [`Expr::Op`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `(op a)`
    Prefix(&'static str),
    /// `(a op b)`
    Infix(&'static str),
    /// `(a suffix)`
    Postfix(&'static str),
    /// `name(a, b, …)`
    Call(&'static str),
    /// `CAST(a AS type)`
    Cast(Ty),
    /// `(a BETWEEN b AND c)`
    Between,
    /// `(a IN (b, c, …))` or `NOT IN`
    InList(bool),
    /// `name(a)` or `name(DISTINCT a)`; `count(*)` without arguments.
    Aggregate(&'static str, bool),
    /// `string_agg(a, ',' ORDER BY a)`
    StringAgg,
    /// `CASE WHEN a THEN b [WHEN c THEN d …] [ELSE e] END`: pairs, then the ELSE if odd.
    Case,
}

/// One expression tree; `ty` is the type both engines give it (PostgreSQL's rules).
#[derive(Debug, Clone)]
pub enum Expr {
    Column {
        qualifier: String,
        name: &'static str,
        ty: Ty,
    },
    Literal {
        sql: &'static str,
        ty: Ty,
    },
    Op {
        feature: Feature,
        form: Form,
        args: Vec<Expr>,
        ty: Ty,
    },
    /// `func(args) OVER (PARTITION BY … ORDER BY …)`; the ORDER BY entries are ascending.
    Window {
        func: &'static str,
        args: Vec<Expr>,
        partition: Vec<Expr>,
        order: Vec<Expr>,
        ty: Ty,
    },
    Subquery {
        kind: SubqueryKind,
        query: Box<Query>,
        ty: Ty,
    },
}

/// The shapes of subquery an expression can hold.
#[derive(Debug, Clone)]
pub enum SubqueryKind {
    /// `(SELECT …)`: one column, at most one row.
    Scalar,
    /// `[NOT] EXISTS (SELECT …)`
    Exists(bool),
    /// `(a [NOT] IN (SELECT …))`
    In(Box<Expr>, bool),
}

impl Expr {
    /// The expression's type.
    pub fn ty(&self) -> Ty {
        match self {
            Expr::Column { ty, .. }
            | Expr::Literal { ty, .. }
            | Expr::Op { ty, .. }
            | Expr::Window { ty, .. }
            | Expr::Subquery { ty, .. } => *ty,
        }
    }

    /// The tree's size, what shrinking reduces: a literal weighs less than a column.
    pub fn weight(&self) -> usize {
        match self {
            Expr::Literal { .. } => 1,
            Expr::Column { .. } => 2,
            Expr::Op { args, .. } => 2 + args.iter().map(Expr::weight).sum::<usize>(),
            Expr::Window { args, partition, order, .. } => {
                2 + args.iter().chain(partition).chain(order).map(Expr::weight).sum::<usize>()
            }
            Expr::Subquery { kind, query, .. } => {
                1 + query.weight() + if let SubqueryKind::In(arg, _) = kind { arg.weight() } else { 0 }
            }
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Expr::Column { qualifier, name, .. } => {
                let _ = write!(out, "{qualifier}.{name}");
            }
            Expr::Literal { sql, .. } => out.push_str(sql),
            Expr::Op { form, args, .. } => write_op(*form, args, out),
            Expr::Window { func, args, partition, order, .. } => {
                out.push_str(func);
                out.push('(');
                if *func == "count" && args.is_empty() {
                    out.push('*');
                }
                write_list(args, out);
                out.push_str(") OVER (");
                if !partition.is_empty() {
                    out.push_str("PARTITION BY ");
                    write_list(partition, out);
                }
                if !order.is_empty() {
                    out.push_str(if partition.is_empty() { "ORDER BY " } else { " ORDER BY " });
                    write_list(order, out);
                }
                out.push(')');
            }
            Expr::Subquery { kind, query, .. } => {
                match kind {
                    SubqueryKind::Scalar => out.push('('),
                    SubqueryKind::Exists(negated) => out.push_str(if *negated { "(NOT EXISTS (" } else { "(EXISTS (" }),
                    SubqueryKind::In(arg, negated) => {
                        out.push('(');
                        arg.write(out);
                        out.push_str(if *negated { " NOT IN (" } else { " IN (" });
                    }
                }
                query.write(out);
                out.push_str(if matches!(kind, SubqueryKind::Scalar) { ")" } else { "))" });
            }
        }
    }

    /// The features this tree exercises.
    fn features(&self, out: &mut BTreeSet<Feature>) {
        match self {
            Expr::Literal { sql, .. } => {
                if INT_LITERALS.contains(sql) {
                    out.insert("int-literal");
                } else if NUMERIC_LITERALS.contains(sql) {
                    out.insert("numeric-literal");
                }
            }
            Expr::Column { .. } => {}
            Expr::Op { feature, form, args, .. } => {
                out.insert(feature);
                if matches!(form, Form::Aggregate(_, true)) {
                    out.insert("aggregate-distinct");
                }
                args.iter().for_each(|a| a.features(out));
            }
            Expr::Window { func, args, partition, order, .. } => {
                out.insert(window_feature(func));
                args.iter().chain(partition).chain(order).for_each(|a| a.features(out));
            }
            Expr::Subquery { kind, query, .. } => {
                out.insert(match kind {
                    SubqueryKind::Scalar => "scalar-subquery",
                    SubqueryKind::Exists(_) => "exists",
                    SubqueryKind::In(_, true) => "not-in-subquery",
                    SubqueryKind::In(_, false) => "in-subquery",
                });
                if let SubqueryKind::In(arg, _) = kind {
                    arg.features(out);
                }
                if query.correlated {
                    out.insert("correlated");
                }
                query.features_into(out);
            }
        }
    }

    /// Simpler expressions of the same type: the simplest literal, each same-typed child, and this
    /// tree with one child simplified.
    pub fn shrink(&self) -> Vec<Expr> {
        let ty = self.ty();
        let mut out = Vec::new();
        if !matches!(self, Expr::Literal { .. }) {
            out.push(Expr::Literal { sql: ty.literals()[0], ty });
        }
        match self {
            Expr::Column { .. } | Expr::Literal { .. } => {}
            Expr::Op { feature, form, args, ty } => {
                out.extend(args.iter().filter(|a| a.ty() == *ty).cloned());
                for (i, arg) in args.iter().enumerate() {
                    for smaller in arg.shrink() {
                        let mut args = args.clone();
                        args[i] = smaller;
                        out.push(Expr::Op { feature, form: *form, args, ty: *ty });
                    }
                }
            }
            Expr::Window { func, args, partition, order, ty } => {
                for i in 0..partition.len() {
                    let mut partition = partition.clone();
                    partition.remove(i);
                    out.push(Expr::Window { func, args: args.clone(), partition, order: order.clone(), ty: *ty });
                }
            }
            Expr::Subquery { kind, query, ty } => {
                for smaller in query.shrink() {
                    out.push(Expr::Subquery { kind: kind.clone(), query: Box::new(smaller), ty: *ty });
                }
                if let SubqueryKind::In(arg, negated) = kind {
                    for smaller in arg.shrink() {
                        let kind = SubqueryKind::In(Box::new(smaller), *negated);
                        out.push(Expr::Subquery { kind, query: query.clone(), ty: *ty });
                    }
                }
            }
        }
        out
    }
}

fn window_feature(func: &str) -> Feature {
    match func {
        "row_number" => "window-row-number",
        "rank" | "dense_rank" => "window-rank",
        "lag" | "lead" => "window-lag",
        "sum" | "count" | "min" | "max" => "window-aggregate",
        _ => "window",
    }
}

fn write_list(exprs: &[Expr], out: &mut String) {
    for (i, e) in exprs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        e.write(out);
    }
}

fn write_op(form: Form, args: &[Expr], out: &mut String) {
    match form {
        Form::Prefix(op) => {
            let _ = write!(out, "({op} ");
            args[0].write(out);
            out.push(')');
        }
        Form::Infix(op) => {
            out.push('(');
            args[0].write(out);
            let _ = write!(out, " {op} ");
            args[1].write(out);
            out.push(')');
        }
        Form::Postfix(op) => {
            out.push('(');
            args[0].write(out);
            let _ = write!(out, " {op})");
        }
        Form::Call(name) => {
            let _ = write!(out, "{name}(");
            write_list(args, out);
            out.push(')');
        }
        Form::Cast(ty) => {
            out.push_str("CAST(");
            args[0].write(out);
            let _ = write!(out, " AS {})", ty.sql());
        }
        Form::Between => {
            out.push('(');
            args[0].write(out);
            out.push_str(" BETWEEN ");
            args[1].write(out);
            out.push_str(" AND ");
            args[2].write(out);
            out.push(')');
        }
        Form::InList(negated) => {
            out.push('(');
            args[0].write(out);
            out.push_str(if negated { " NOT IN (" } else { " IN (" });
            write_list(&args[1..], out);
            out.push_str("))");
        }
        Form::Aggregate(name, distinct) => {
            let _ = write!(out, "{name}(");
            if args.is_empty() {
                out.push('*');
            } else {
                if distinct {
                    out.push_str("DISTINCT ");
                }
                write_list(args, out);
            }
            out.push(')');
        }
        Form::StringAgg => {
            out.push_str("string_agg(");
            args[0].write(out);
            out.push_str(", ',' ORDER BY ");
            args[0].write(out);
            out.push(')');
        }
        Form::Case => {
            out.push_str("CASE");
            for pair in args.chunks(2) {
                if let [when, then] = pair {
                    out.push_str(" WHEN ");
                    when.write(out);
                    out.push_str(" THEN ");
                    then.write(out);
                } else {
                    out.push_str(" ELSE ");
                    pair[0].write(out);
                }
            }
            out.push_str(" END");
        }
    }
}

/// A table in FROM under its alias.
#[derive(Debug, Clone)]
pub struct TableRef {
    pub table: &'static Table,
    pub alias: String,
}

/// `[LEFT] JOIN table ON condition`
#[derive(Debug, Clone)]
pub struct Join {
    pub left: bool,
    pub table: TableRef,
    pub on: Expr,
}

/// The direction of one ORDER BY entry.
#[derive(Debug, Clone, Copy)]
pub struct Direction {
    pub desc: bool,
    /// `Some(true)`: NULLS FIRST; `None`: the default (PostgreSQL: NULLs sort as largest).
    pub nulls_first: Option<bool>,
}

/// One SELECT.
#[derive(Debug, Clone)]
pub struct Query {
    pub distinct: bool,
    pub select: Vec<Expr>,
    pub from: TableRef,
    pub joins: Vec<Join>,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    /// One direction per select item, ordered by every output column (`ORDER BY 1, 2, …`).
    pub order: Option<Vec<Direction>>,
    pub limit: Option<u32>,
    /// Whether the query (a subquery) reads columns of an enclosing query.
    pub correlated: bool,
}

impl Query {
    /// The SQL text.
    pub fn sql(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Whether the result's row order is fixed (compared in order rather than as a multiset).
    pub fn ordered(&self) -> bool {
        self.order.is_some()
    }

    fn write(&self, out: &mut String) {
        out.push_str(if self.distinct { "SELECT DISTINCT " } else { "SELECT " });
        write_list(&self.select, out);
        let _ = write!(out, " FROM {} {}", self.from.table.name, self.from.alias);
        for join in &self.joins {
            let _ = write!(
                out,
                " {} {} {} ON ",
                if join.left { "LEFT JOIN" } else { "JOIN" },
                join.table.table.name,
                join.table.alias
            );
            join.on.write(out);
        }
        if let Some(filter) = &self.filter {
            out.push_str(" WHERE ");
            filter.write(out);
        }
        if !self.group_by.is_empty() {
            out.push_str(" GROUP BY ");
            write_list(&self.group_by, out);
        }
        if let Some(having) = &self.having {
            out.push_str(" HAVING ");
            having.write(out);
        }
        if let Some(order) = &self.order {
            out.push_str(" ORDER BY ");
            for (i, dir) in order.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}", i + 1);
                if dir.desc {
                    out.push_str(" DESC");
                }
                match dir.nulls_first {
                    Some(true) => out.push_str(" NULLS FIRST"),
                    Some(false) => out.push_str(" NULLS LAST"),
                    None => {}
                }
            }
        }
        if let Some(limit) = self.limit {
            let _ = write!(out, " LIMIT {limit}");
        }
    }

    /// The query's size, what shrinking reduces: its expressions' and one per clause or join.
    pub fn weight(&self) -> usize {
        let clauses = [self.distinct, self.order.is_some(), self.limit.is_some()].iter().filter(|c| **c).count();
        let on: usize = self.joins.iter().map(|j| 1 + j.on.weight()).sum();
        let exprs: usize = self
            .select
            .iter()
            .chain(&self.filter)
            .chain(&self.group_by)
            .chain(&self.having)
            .map(|e| 1 + e.weight())
            .sum();
        clauses + on + exprs
    }

    /// The features the query exercises, clause by clause and expression by expression.
    pub fn features(&self) -> BTreeSet<Feature> {
        let mut out = BTreeSet::new();
        self.features_into(&mut out);
        out
    }

    fn features_into(&self, out: &mut BTreeSet<Feature>) {
        if self.distinct {
            out.insert("distinct");
        }
        for join in &self.joins {
            out.insert(if join.left { "left-join" } else { "join" });
            join.on.features(out);
        }
        if !self.group_by.is_empty() {
            out.insert("group-by");
        }
        if self.having.is_some() {
            out.insert("having");
        }
        if self.order.is_some() {
            out.insert("order-by");
        }
        if self.limit.is_some() {
            out.insert("limit");
        }
        for e in self.select.iter().chain(&self.filter).chain(&self.group_by).chain(&self.having) {
            e.features(out);
        }
    }

    /// Simpler variants: one clause, select item or join fewer, or one expression simplified.
    /// Invalid variants are fine: an error on both engines is no mismatch, so `minimise` drops them.
    pub fn shrink(&self) -> Vec<Query> {
        let mut out = Vec::new();
        let mut variant = |edit: &dyn Fn(&mut Query)| {
            let mut q = self.clone();
            edit(&mut q);
            out.push(q);
        };
        if self.limit.is_some() {
            variant(&|q| q.limit = None);
        } else if self.order.is_some() {
            variant(&|q| q.order = None);
        }
        if self.distinct {
            variant(&|q| q.distinct = false);
        }
        if self.filter.is_some() {
            variant(&|q| q.filter = None);
        }
        if self.having.is_some() {
            variant(&|q| q.having = None);
        }
        if !self.joins.is_empty() {
            variant(&|q| {
                q.joins.pop();
            });
        }
        if self.select.len() > 1 {
            for i in 0..self.select.len() {
                variant(&|q| {
                    q.select.remove(i);
                    if let Some(order) = &mut q.order {
                        order.remove(i);
                    }
                });
            }
        }
        for i in 0..self.group_by.len() {
            variant(&|q| {
                q.group_by.remove(i);
            });
        }
        for (i, item) in self.select.iter().enumerate() {
            for smaller in item.shrink() {
                let mut q = self.clone();
                q.select[i] = smaller;
                out.push(q);
            }
        }
        if let Some(filter) = &self.filter {
            for smaller in filter.shrink() {
                let mut q = self.clone();
                q.filter = Some(smaller);
                out.push(q);
            }
        }
        if let Some(having) = &self.having {
            for smaller in having.shrink() {
                let mut q = self.clone();
                q.having = Some(smaller);
                out.push(q);
            }
        }
        for (i, join) in self.joins.iter().enumerate() {
            for smaller in join.on.shrink() {
                let mut q = self.clone();
                q.joins[i].on = smaller;
                out.push(q);
            }
        }
        out
    }
}

/// The columns an expression may read: the query's own tables, then (for a subquery) the
/// enclosing query's, which make it correlated.
#[derive(Debug, Clone, Default)]
struct Scope {
    local: Vec<(String, Column)>,
    outer: Vec<(String, Column)>,
}

/// Where an expression stands: a row (WHERE, ON, an ungrouped select list) or a grouped select
/// list / HAVING, whose leaves are group keys and aggregates.
#[derive(Clone, Copy)]
enum Place<'a> {
    Row,
    Grouped(&'a [Expr]),
}

/// The generator: a seeded RNG and the features left out.
pub struct Generator {
    rng: StdRng,
    exclude: BTreeSet<String>,
    aliases: usize,
    /// Set while generating a subquery that read an outer column.
    correlated: bool,
}

const MAX_DEPTH: u32 = 3;

impl Generator {
    pub fn new(rng: StdRng, exclude: BTreeSet<String>) -> Self {
        Generator { rng, exclude, aliases: 0, correlated: false }
    }

    fn allowed(&self, feature: &str) -> bool {
        !self.exclude.contains(feature)
    }

    /// `true` with probability `p`, and only if `feature` is not excluded.
    fn chance(&mut self, feature: &str, p: f64) -> bool {
        self.allowed(feature) && self.rng.gen_bool(p)
    }

    fn table_ref(&mut self) -> TableRef {
        self.aliases += 1;
        TableRef { table: TABLES.choose(&mut self.rng).expect("tables"), alias: format!("s{}", self.aliases) }
    }

    /// A top-level query.
    pub fn query(&mut self) -> Query {
        self.aliases = 0;
        self.select_query(&Scope::default(), None, 0)
    }

    /// A SELECT; `single` asks for one column of that type (a subquery's).
    fn select_query(&mut self, outer: &Scope, single: Option<Ty>, level: u32) -> Query {
        let from = self.table_ref();
        let mut scope =
            Scope { local: columns(&from), outer: outer.local.iter().chain(&outer.outer).cloned().collect() };
        let mut joins = Vec::new();
        if single.is_none() && self.chance("join", 0.35) {
            let left = self.chance("left-join", 0.5);
            let table = self.table_ref();
            scope.local.extend(columns(&table));
            let on = self.join_condition(&from, &table, &scope, level);
            joins.push(Join { left, table, on });
        }
        let filter = self.rng.gen_bool(0.6).then(|| self.expr(Ty::Bool, &scope, Place::Row, 2, level));
        let grouped = self.chance("group-by", if single.is_some() { 0.15 } else { 0.3 });
        let aggregate_only = single.is_some() && !grouped && self.chance("aggregate", 0.5);
        let (group_by, select, having) = if grouped || aggregate_only {
            let keys: Vec<Expr> = if grouped {
                (0..self.rng.gen_range(1..=2)).map(|_| self.key_expr(&scope, level)).collect()
            } else {
                Vec::new()
            };
            let place = Place::Grouped(&keys);
            let select = match single {
                Some(ty) => vec![self.expr(ty, &scope, place, 2, level)],
                None => (0..self.rng.gen_range(1..=3))
                    .map(|i| {
                        if i < keys.len() && self.rng.gen_bool(0.7) {
                            keys[i].clone()
                        } else {
                            let ty = self.any_ty();
                            self.expr(ty, &scope, place, 2, level)
                        }
                    })
                    .collect(),
            };
            let having = self.chance("having", 0.25).then(|| self.expr(Ty::Bool, &scope, place, 2, level));
            (keys, select, having)
        } else {
            let select = match single {
                Some(ty) => vec![self.expr(ty, &scope, Place::Row, 2, level)],
                None => (0..self.rng.gen_range(1..=3))
                    .map(|_| {
                        if joins.is_empty() && level == 0 && self.chance("window", 0.15) {
                            self.window(&scope, &from)
                        } else {
                            let ty = self.any_ty();
                            self.expr(ty, &scope, Place::Row, MAX_DEPTH, level)
                        }
                    })
                    .collect(),
            };
            (Vec::new(), select, None)
        };
        let distinct = single.is_none() && self.chance("distinct", 0.1);
        let order = (single.is_none() && self.chance("order-by", 0.3)).then(|| {
            select
                .iter()
                .map(|_| Direction {
                    desc: self.rng.gen_bool(0.4),
                    nulls_first: match self.rng.gen_range(0..4) {
                        0 => Some(true),
                        1 => Some(false),
                        _ => None,
                    },
                })
                .collect()
        });
        let limit = (order.is_some() && self.chance("limit", 0.5)).then(|| self.rng.gen_range(0..5));
        Query { distinct, select, from, joins, filter, group_by, having, order, limit, correlated: false }
    }

    /// An ON condition: usually the foreign-key equality, sometimes any predicate.
    fn join_condition(&mut self, left: &TableRef, right: &TableRef, scope: &Scope, level: u32) -> Expr {
        if self.rng.gen_bool(0.7) {
            let (l, r) = match (left.table.name, right.table.name) {
                ("dt1", "dt2") => ("id", "t1_id"),
                ("dt2", "dt1") => ("t1_id", "id"),
                _ => ("id", "id"),
            };
            let column =
                |t: &TableRef, name: &'static str| Expr::Column { qualifier: t.alias.clone(), name, ty: Ty::Int };
            return op("cmp", Form::Infix("="), vec![column(left, l), column(right, r)], Ty::Bool);
        }
        self.expr(Ty::Bool, scope, Place::Row, 2, level)
    }

    /// A GROUP BY key: a column, or now and then an expression over one.
    fn key_expr(&mut self, scope: &Scope, level: u32) -> Expr {
        let (qualifier, column) = scope.local.choose(&mut self.rng).expect("columns").clone();
        let column = Expr::Column { qualifier, name: column.name, ty: column.ty };
        if self.rng.gen_bool(0.8) {
            return column;
        }
        let ty = column.ty();
        match self.expr(ty, scope, Place::Row, 1, level) {
            // An integer literal in GROUP BY is a select-list position.
            Expr::Literal { .. } => column,
            e => e,
        }
    }

    /// A type to generate at: any, but numeric only if feature `numeric` is allowed (its
    /// values keep their own scale in PostgreSQL, the column's in raftable).
    fn any_ty(&mut self) -> Ty {
        loop {
            let ty = *Ty::ALL.choose(&mut self.rng).expect("types");
            if ty != Ty::Numeric || self.allowed("numeric") {
                return ty;
            }
        }
    }

    /// A window function over the single table `from`.
    fn window(&mut self, scope: &Scope, from: &TableRef) -> Expr {
        let key = Expr::Column { qualifier: from.alias.clone(), name: "id", ty: Ty::Int };
        let partition = if self.rng.gen_bool(0.6) {
            let ty = self.any_ty();
            vec![self.expr(ty, scope, Place::Row, 1, 0)]
        } else {
            Vec::new()
        };
        let (func, args, order, ty) = match self.rng.gen_range(0..5) {
            0 if self.allowed("window-row-number") => ("row_number", Vec::new(), vec![key], Ty::BigInt),
            1 if self.allowed("window-rank") => {
                let ty = self.any_ty();
                let order = vec![self.expr(ty, scope, Place::Row, 1, 0)];
                (if self.rng.gen_bool(0.5) { "rank" } else { "dense_rank" }, Vec::new(), order, Ty::BigInt)
            }
            2 if self.allowed("window-lag") => {
                let ty = self.any_ty();
                ("lag", vec![self.expr(ty, scope, Place::Row, 1, 0)], vec![key], ty)
            }
            3 if self.allowed("window-aggregate") => {
                let arg = self.expr(Ty::Int, scope, Place::Row, 1, 0);
                ("sum", vec![arg], Vec::new(), Ty::BigInt)
            }
            _ => ("count", Vec::new(), Vec::new(), Ty::BigInt),
        };
        Expr::Window { func, args, partition, order, ty }
    }

    /// An expression of type `ty` at most `depth` operators deep.
    fn expr(&mut self, ty: Ty, scope: &Scope, place: Place<'_>, depth: u32, level: u32) -> Expr {
        if depth == 0 || self.rng.gen_bool(0.3) {
            return self.leaf(ty, scope, place, level);
        }
        for _ in 0..8 {
            if let Some(e) = self.compound(ty, scope, place, depth - 1, level) {
                return e;
            }
        }
        self.leaf(ty, scope, place, level)
    }

    /// A column, group key, aggregate or literal of type `ty`.
    fn leaf(&mut self, ty: Ty, scope: &Scope, place: Place<'_>, level: u32) -> Expr {
        match place {
            Place::Grouped(keys) => {
                let typed: Vec<&Expr> = keys.iter().filter(|k| k.ty() == ty).collect();
                if !typed.is_empty() && self.rng.gen_bool(0.4) {
                    return (*typed.choose(&mut self.rng).expect("keys")).clone();
                }
                if self.rng.gen_bool(0.8) {
                    if let Some(agg) = self.aggregate(ty, scope, level) {
                        return agg;
                    }
                }
                self.literal(ty)
            }
            Place::Row => {
                if self.rng.gen_bool(0.7) {
                    let outer = !scope.outer.is_empty() && self.chance("correlated", 0.3);
                    let pool = if outer { &scope.outer } else { &scope.local };
                    let typed: Vec<&(String, Column)> = pool.iter().filter(|(_, c)| c.ty == ty).collect();
                    if let Some((qualifier, column)) = typed.choose(&mut self.rng).copied() {
                        self.correlated |= outer;
                        return Expr::Column { qualifier: qualifier.clone(), name: column.name, ty };
                    }
                }
                self.literal(ty)
            }
        }
    }

    fn literal(&mut self, ty: Ty) -> Expr {
        if self.chance("null", 0.05) {
            return op("null", Form::Cast(ty), vec![Expr::Literal { sql: "NULL", ty }], ty);
        }
        if ty == Ty::Int && self.chance("int-literal", 0.5) {
            return Expr::Literal { sql: INT_LITERALS.choose(&mut self.rng).expect("literals"), ty };
        }
        if ty == Ty::Numeric && self.chance("numeric-literal", 0.6) {
            return Expr::Literal { sql: NUMERIC_LITERALS.choose(&mut self.rng).expect("literals"), ty };
        }
        Expr::Literal { sql: ty.literals().choose(&mut self.rng).expect("literals"), ty }
    }

    /// An aggregate call giving `ty`, its argument a row expression.
    fn aggregate(&mut self, ty: Ty, scope: &Scope, level: u32) -> Option<Expr> {
        // Its argument reads only this query's columns: an aggregate of an outer column
        // belongs to the outer query (and is refused in its WHERE).
        let local = Scope { local: scope.local.clone(), outer: Vec::new() };
        let arg = |g: &mut Self, t: Ty| g.expr(t, &local, Place::Row, 1, level);
        let distinct = self.chance("aggregate-distinct", 0.15);
        let (feature, name, args) = match (ty, self.rng.gen_range(0..4)) {
            (Ty::BigInt, 0) => ("count", "count", Vec::new()),
            (Ty::BigInt, 1) => (
                "count",
                "count",
                vec![{
                    let t = self.any_ty();
                    arg(self, t)
                }],
            ),
            (Ty::BigInt, _) => ("sum-int", "sum", vec![arg(self, Ty::Int)]),
            (Ty::Numeric, 0) => ("sum-bigint", "sum", vec![arg(self, Ty::BigInt)]),
            (Ty::Numeric, 1) => ("avg-int", "avg", vec![arg(self, Ty::Int)]),
            (Ty::Numeric, 2) => ("avg-numeric", "avg", vec![arg(self, Ty::Numeric)]),
            (Ty::Numeric, _) => ("sum-numeric", "sum", vec![arg(self, Ty::Numeric)]),
            (Ty::Double, 0 | 1) => ("avg-double", "avg", vec![arg(self, Ty::Double)]),
            (Ty::Double, _) => ("sum-double", "sum", vec![arg(self, Ty::Double)]),
            // PostgreSQL has no min / max of boolean.
            (Ty::Bool, 0 | 1) => ("bool-and-or", "bool_and", vec![arg(self, Ty::Bool)]),
            (Ty::Bool, _) => ("bool-and-or", "bool_or", vec![arg(self, Ty::Bool)]),
            (Ty::Text, 0) if self.allowed("string-agg") => {
                let a = arg(self, Ty::Text);
                return Some(op("string-agg", Form::StringAgg, vec![a], Ty::Text));
            }
            (_, _) => ("min-max", if self.rng.gen_bool(0.5) { "min" } else { "max" }, vec![arg(self, ty)]),
        };
        if !self.allowed(feature) || !self.allowed("aggregate") {
            return None;
        }
        let distinct = distinct && !args.is_empty();
        Some(op(feature, Form::Aggregate(name, distinct), args, ty))
    }

    /// One operator, function, cast, CASE or subquery giving `ty`, if the pick is allowed.
    fn compound(&mut self, ty: Ty, scope: &Scope, place: Place<'_>, depth: u32, level: u32) -> Option<Expr> {
        let sub = |g: &mut Self, t: Ty| g.expr(t, scope, place, depth, level);
        let pick = self.rng.gen_range(0..100);
        // Shapes any type can take.
        let generic = match pick {
            0..=5 => {
                let n = self.rng.gen_range(1..=2);
                let mut args = Vec::new();
                for _ in 0..n {
                    args.push(sub(self, Ty::Bool));
                    args.push(sub(self, ty));
                }
                if self.rng.gen_bool(0.6) {
                    args.push(sub(self, ty));
                }
                Some(("case", Form::Case, args))
            }
            6..=9 => Some(("coalesce", Form::Call("coalesce"), vec![sub(self, ty), sub(self, ty)])),
            10..=11 => Some(("nullif", Form::Call("nullif"), vec![sub(self, ty), sub(self, ty)])),
            12..=15 if level == 0 && matches!(place, Place::Row) && ty != Ty::Bool => {
                return self.allowed("scalar-subquery").then(|| self.subquery(SubqueryKind::Scalar, ty, scope, level));
            }
            _ => None,
        };
        if let Some((feature, form, args)) = generic {
            return self.allowed(feature).then(|| op(feature, form, args, ty));
        }
        let (feature, form, args): (Feature, Form, Vec<Expr>) = match ty {
            Ty::Int | Ty::BigInt => match pick % 9 {
                0..=3 => {
                    let ops = ["+", "-", "*", "/", "%"];
                    let o = ops[self.rng.gen_range(0..ops.len())];
                    let (a, b) =
                        if ty == Ty::BigInt && self.rng.gen_bool(0.3) { (Ty::BigInt, Ty::Int) } else { (ty, ty) };
                    let feature = match (ty, o) {
                        (Ty::Int, "/" | "%") => "int-division",
                        (Ty::Int, _) => "int-arithmetic",
                        (_, "/" | "%") => "bigint-division",
                        _ => "bigint-arithmetic",
                    };
                    (feature, Form::Infix(o), vec![sub(self, a), sub(self, b)])
                }
                4 => ("negate", Form::Prefix("-"), vec![sub(self, ty)]),
                5 => ("abs", Form::Call("abs"), vec![sub(self, ty)]),
                6 if ty == Ty::Int => ("length", Form::Call("length"), vec![sub(self, Ty::Text)]),
                6 => ("cast-int-bigint", Form::Cast(Ty::BigInt), vec![sub(self, Ty::Int)]),
                7 => {
                    let from =
                        *[Ty::Numeric, Ty::Double, Ty::Text, Ty::BigInt, Ty::Int].choose(&mut self.rng).expect("types");
                    (cast_feature(from, ty), Form::Cast(ty), vec![sub(self, from)])
                }
                _ if ty == Ty::Int && self.rng.gen_bool(0.5) => {
                    ("date-difference", Form::Infix("-"), vec![sub(self, Ty::Date), sub(self, Ty::Date)])
                }
                _ => (
                    "greatest-least",
                    Form::Call(if self.rng.gen_bool(0.5) { "greatest" } else { "least" }),
                    vec![sub(self, ty), sub(self, ty)],
                ),
            },
            Ty::Numeric if !self.allowed("numeric") => return None,
            Ty::Numeric => match pick % 6 {
                0 | 1 => {
                    let o = *["+", "-", "*"].choose(&mut self.rng).expect("ops");
                    ("numeric-arithmetic", Form::Infix(o), vec![sub(self, Ty::Numeric), sub(self, Ty::Numeric)])
                }
                2 => ("numeric-division", Form::Infix("/"), vec![sub(self, Ty::Numeric), sub(self, Ty::Numeric)]),
                3 => {
                    let places = Expr::Literal { sql: ["0", "1", "2"][self.rng.gen_range(0..3)], ty: Ty::Int };
                    ("round", Form::Call("round"), vec![sub(self, Ty::Numeric), places])
                }
                4 => ("abs", Form::Call("abs"), vec![sub(self, Ty::Numeric)]),
                _ => {
                    let from = *[Ty::Int, Ty::BigInt, Ty::Double, Ty::Text].choose(&mut self.rng).expect("types");
                    (cast_feature(from, ty), Form::Cast(ty), vec![sub(self, from)])
                }
            },
            Ty::Double => match pick % 5 {
                0 | 1 => {
                    let o = *["+", "-", "*", "/"].choose(&mut self.rng).expect("ops");
                    ("double-arithmetic", Form::Infix(o), vec![sub(self, Ty::Double), sub(self, Ty::Double)])
                }
                2 => {
                    let f = *["floor", "ceil", "abs", "sqrt"].choose(&mut self.rng).expect("functions");
                    (if f == "sqrt" { "sqrt" } else { "floor-ceil-abs" }, Form::Call(f), vec![sub(self, Ty::Double)])
                }
                _ => {
                    let from = *[Ty::Int, Ty::Numeric, Ty::Text].choose(&mut self.rng).expect("types");
                    (cast_feature(from, ty), Form::Cast(ty), vec![sub(self, from)])
                }
            },
            Ty::Text => match pick % 8 {
                0 => ("concat-operator", Form::Infix("||"), vec![sub(self, Ty::Text), sub(self, Ty::Text)]),
                1 => (
                    "upper-lower",
                    Form::Call(if self.rng.gen_bool(0.5) { "upper" } else { "lower" }),
                    vec![sub(self, Ty::Text)],
                ),
                2 => {
                    ("substr", Form::Call("substr"), vec![sub(self, Ty::Text), sub(self, Ty::Int), sub(self, Ty::Int)])
                }
                3 => (
                    "trim",
                    Form::Call(["trim", "ltrim", "rtrim"].choose(&mut self.rng).expect("functions")),
                    vec![sub(self, Ty::Text)],
                ),
                4 => (
                    "replace",
                    Form::Call("replace"),
                    vec![sub(self, Ty::Text), sub(self, Ty::Text), sub(self, Ty::Text)],
                ),
                5 => ("concat", Form::Call("concat"), vec![sub(self, Ty::Text), sub(self, Ty::Text)]),
                _ => {
                    let from = *[Ty::Int, Ty::BigInt, Ty::Numeric, Ty::Double, Ty::Bool, Ty::Date]
                        .choose(&mut self.rng)
                        .expect("types");
                    (cast_feature(from, ty), Form::Cast(ty), vec![sub(self, from)])
                }
            },
            Ty::Date => match pick % 3 {
                0 | 1 => (
                    "date-arithmetic",
                    Form::Infix(if self.rng.gen_bool(0.5) { "+" } else { "-" }),
                    vec![sub(self, Ty::Date), sub(self, Ty::Int)],
                ),
                _ => {
                    ("cast-text-date", Form::Cast(Ty::Date), vec![Expr::Literal { sql: "'2026-02-03'", ty: Ty::Text }])
                }
            },
            Ty::Bool => return self.predicate(scope, place, depth, level),
        };
        self.allowed(feature).then(|| op(feature, form, args, ty))
    }

    /// A boolean: a comparison, a connective, a NULL test, a list or pattern test, a subquery test.
    fn predicate(&mut self, scope: &Scope, place: Place<'_>, depth: u32, level: u32) -> Option<Expr> {
        let sub = |g: &mut Self, t: Ty| g.expr(t, scope, place, depth, level);
        let (feature, form, args): (Feature, Form, Vec<Expr>) = match self.rng.gen_range(0..14) {
            0..=3 => {
                let t = self.any_ty();
                let o = *["=", "<>", "<", "<=", ">", ">="].choose(&mut self.rng).expect("ops");
                ("cmp", Form::Infix(o), vec![sub(self, t), sub(self, t)])
            }
            4 | 5 => {
                let o = if self.rng.gen_bool(0.5) { "AND" } else { "OR" };
                ("and-or", Form::Infix(o), vec![sub(self, Ty::Bool), sub(self, Ty::Bool)])
            }
            6 => ("not", Form::Prefix("NOT"), vec![sub(self, Ty::Bool)]),
            7 => {
                let t = self.any_ty();
                (
                    "is-null",
                    Form::Postfix(if self.rng.gen_bool(0.5) { "IS NULL" } else { "IS NOT NULL" }),
                    vec![sub(self, t)],
                )
            }
            8 => {
                let t = self.any_ty();
                ("between", Form::Between, vec![sub(self, t), sub(self, t), sub(self, t)])
            }
            9 => {
                let t = self.any_ty();
                let negated = self.rng.gen_bool(0.4);
                let mut args = vec![sub(self, t)];
                for _ in 0..self.rng.gen_range(1..=3) {
                    args.push(self.literal(t));
                }
                (if negated { "not-in-list" } else { "in-list" }, Form::InList(negated), args)
            }
            10 => {
                let o = *["LIKE", "NOT LIKE", "ILIKE"].choose(&mut self.rng).expect("ops");
                ("like", Form::Infix(o), vec![sub(self, Ty::Text), self.literal(Ty::Text)])
            }
            11 => {
                let t = self.any_ty();
                let o = if self.rng.gen_bool(0.5) { "IS DISTINCT FROM" } else { "IS NOT DISTINCT FROM" };
                ("distinct-from", Form::Infix(o), vec![sub(self, t), sub(self, t)])
            }
            _ if level == 0 && matches!(place, Place::Row) => {
                let kind = if self.rng.gen_bool(0.5) {
                    if !self.allowed("exists") {
                        return None;
                    }
                    SubqueryKind::Exists(self.rng.gen_bool(0.3))
                } else {
                    let negated = self.rng.gen_bool(0.4);
                    if !self.allowed(if negated { "not-in-subquery" } else { "in-subquery" }) {
                        return None;
                    }
                    let t = *[Ty::Int, Ty::Text, Ty::BigInt].choose(&mut self.rng).expect("types");
                    SubqueryKind::In(Box::new(sub(self, t)), negated)
                };
                let ty = match &kind {
                    SubqueryKind::In(arg, _) => arg.ty(),
                    _ => self.any_ty(),
                };
                let mut subquery = self.subquery(kind, ty, scope, level);
                if let Expr::Subquery { ty, .. } = &mut subquery {
                    *ty = Ty::Bool;
                }
                return Some(subquery);
            }
            _ => return None,
        };
        self.allowed(feature).then(|| op(feature, form, args, Ty::Bool))
    }

    /// A subquery of one column of type `ty`, reading `scope`'s columns now and then. A scalar
    /// subquery aggregates or looks its row up by primary key, so it has at most one row.
    fn subquery(&mut self, kind: SubqueryKind, ty: Ty, scope: &Scope, level: u32) -> Expr {
        let was = std::mem::replace(&mut self.correlated, false);
        let mut query = self.select_query(scope, Some(ty), level + 1);
        if matches!(kind, SubqueryKind::Scalar) && query.group_by.is_empty() && !is_aggregate(&query.select[0]) {
            // Look the row up by key: `id = <int expression>`.
            let key = Expr::Column { qualifier: query.from.alias.clone(), name: "id", ty: Ty::Int };
            let inner =
                Scope { local: columns(&query.from), outer: scope.local.iter().chain(&scope.outer).cloned().collect() };
            let value = self.expr(Ty::Int, &inner, Place::Row, 1, level + 1);
            let lookup = op("cmp", Form::Infix("="), vec![key, value], Ty::Bool);
            query.filter = Some(match query.filter.take() {
                Some(f) => op("and-or", Form::Infix("AND"), vec![lookup, f], Ty::Bool),
                None => lookup,
            });
        }
        if matches!(kind, SubqueryKind::Scalar) && !query.group_by.is_empty() {
            // Grouped: keep it to one row.
            query.order = Some(vec![Direction { desc: false, nulls_first: None }]);
            query.limit = Some(1);
        }
        query.correlated = std::mem::replace(&mut self.correlated, was);
        self.correlated |= query.correlated;
        Expr::Subquery { kind, query: Box::new(query), ty }
    }
}

fn is_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Op { form: Form::Aggregate(..) | Form::StringAgg, .. } => true,
        Expr::Op { args, .. } => args.iter().any(is_aggregate),
        _ => false,
    }
}

fn columns(t: &TableRef) -> Vec<(String, Column)> {
    t.table.columns.iter().map(|c| (t.alias.clone(), *c)).collect()
}

fn op(feature: Feature, form: Form, args: Vec<Expr>, ty: Ty) -> Expr {
    Expr::Op { feature, form, args, ty }
}

fn cast_feature(from: Ty, to: Ty) -> Feature {
    match (from, to) {
        (Ty::Int, Ty::BigInt) | (Ty::BigInt, Ty::Int) | (Ty::Int, Ty::Int) | (Ty::BigInt, Ty::BigInt) => "cast-int-int",
        (Ty::Numeric | Ty::Double, Ty::Int | Ty::BigInt) => "cast-fraction-int",
        (Ty::Text, _) => "cast-from-text",
        // Its digits after the point are the numeric's scale, which differs where raftable's
        // unconstrained numeric does (docs/sql.md).
        (Ty::Numeric, Ty::Text) => "cast-numeric-text",
        (_, Ty::Text) => "cast-to-text",
        _ => "cast-numeric",
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_seed_gives_the_same_queries() {
        let run = |seed| {
            let mut g = Generator::new(StdRng::seed_from_u64(seed), BTreeSet::new());
            (0..50).map(|_| g.query().sql()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn excluded_features_are_not_generated() {
        let exclude: BTreeSet<String> = ["join", "scalar-subquery", "window"].iter().map(|s| s.to_string()).collect();
        let mut g = Generator::new(StdRng::seed_from_u64(1), exclude);
        for _ in 0..500 {
            let q = g.query();
            let features = q.features();
            assert!(!features.contains("join") && !features.contains("left-join"), "{}", q.sql());
            assert!(!features.contains("scalar-subquery"), "{}", q.sql());
            assert!(!q.sql().contains(" OVER ("), "{}", q.sql());
        }
    }

    #[test]
    fn shrinking_keeps_types_and_gets_smaller() {
        let mut g = Generator::new(StdRng::seed_from_u64(3), BTreeSet::new());
        for _ in 0..100 {
            let q = g.query();
            for smaller in q.shrink() {
                assert!(smaller.weight() < q.weight(), "{}\n{}", q.sql(), smaller.sql());
                for (a, b) in smaller.select.iter().zip(&q.select) {
                    if smaller.select.len() == q.select.len() {
                        assert_eq!(a.ty(), b.ty());
                    }
                }
            }
        }
    }

    #[test]
    fn order_by_names_every_output_column() {
        let mut g = Generator::new(StdRng::seed_from_u64(5), BTreeSet::new());
        let mut seen = 0;
        for _ in 0..300 {
            let q = g.query();
            if let Some(order) = &q.order {
                seen += 1;
                assert_eq!(order.len(), q.select.len());
                assert!(q.sql().contains("ORDER BY 1"), "{}", q.sql());
            } else {
                assert!(q.limit.is_none());
            }
        }
        assert!(seen > 0);
    }
}
