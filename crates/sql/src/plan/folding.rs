//! PostgreSQL's constant folding (its planner's `eval_const_expressions`), an analyzer rule
//! after type coercion and `super::semantics`. What it decides is visible to users, because
//! DataFusion evaluates every operand of an expression over a whole batch where PostgreSQL
//! evaluates only what the folded expression still needs:
//!
//! - a strict operator or function of a NULL constant is NULL, its other operands never
//!   evaluated (`NULL - a * b` is NULL, never `integer out of range`), as is `NULLIF(NULL, x)`;
//! - CASE arms whose condition is constant false or NULL are dropped unevaluated, and a
//!   constant true arm ends the CASE; COALESCE stops at its first non-NULL constant; AND stops
//!   at a constant false, OR at a constant true;
//! - an expression of constants PostgreSQL computes at plan time ([`immutable`]) is computed
//!   here, and its error is the statement's error even when no row would reach it
//!   (`SELECT sqrt(-1) FROM t WHERE false` fails with 2201F, as in PostgreSQL). An error from an
//!   expression PostgreSQL leaves to run time (text to a date, `concat`) stays in the plan, as
//!   DataFusion leaves it. A quoted literal cast to a type is read wherever it stands, dead
//!   branches included, as PostgreSQL's parser reads it ([`literal_inputs`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::new_null_array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, Volatility};
use datafusion::optimizer::AnalyzerRule;

use super::semantics::each_expression;

/// The rule; see the module's text.
#[derive(Debug, Default)]
pub(crate) struct Folding;

impl AnalyzerRule for Folding {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        each_expression(plan, |e, schema, filter| {
            let mut folded = fold(literal_inputs(e.clone())?, schema)?;
            // A WHERE with a conjunct that is constant NULL or false keeps no row, and
            // PostgreSQL computes none of the others.
            let never = |c: &&Expr| matches!(c, Expr::Literal(ScalarValue::Boolean(None | Some(false)), _));
            if filter && split_conjunction(&folded).iter().any(never) {
                folded = Expr::Literal(ScalarValue::Boolean(Some(false)), None);
            }
            Ok(if folded == e { Transformed::no(e) } else { Transformed::yes(folded) })
        })
    }

    fn name(&self) -> &str {
        "raftable_folding"
    }
}

/// Every quoted literal cast to a type other than text or a date/time type, read at once,
/// wherever it stands: PostgreSQL reads such a literal as it parses the statement
/// (`COALESCE(1, 'x'::integer)` fails with 22P02).
fn literal_inputs(expr: Expr) -> DfResult<Expr> {
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    expr.transform_up(|e| {
        let Expr::Cast(c) = &e else { return Ok(Transformed::no(e)) };
        let target = c.field.data_type();
        let quoted = matches!(c.expr.as_ref(), Expr::Literal(v, _) if text(&v.data_type()) && !v.is_null());
        if !quoted || text(target) || target.is_temporal() || matches!(target, DataType::Interval(_)) {
            return Ok(Transformed::no(e));
        }
        Ok(Transformed::yes(Expr::Literal(evaluate(&e)?, None)))
    })
    .data()
}

/// `expr` folded as PostgreSQL folds it; an error is a constant expression's.
pub(crate) fn fold(expr: Expr, schema: &DFSchema) -> DfResult<Expr> {
    match expr {
        Expr::Literal(..) => Ok(expr),
        Expr::Case(case) if case.expr.is_none() => fold_case(case, schema),
        Expr::ScalarFunction(f) if f.func.name() == "coalesce" => {
            let ty = Expr::ScalarFunction(f.clone()).get_type(schema)?;
            let mut args = vec![];
            for arg in f.args {
                let arg = fold(arg, schema)?;
                match &arg {
                    Expr::Literal(v, _) if v.is_null() => continue,
                    Expr::Literal(..) => {
                        args.push(arg);
                        break;
                    }
                    _ => args.push(arg),
                }
            }
            Ok(match args.len() {
                0 => null(&ty)?,
                1 => args.pop().expect("one argument"),
                _ => Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(f.func, args)),
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let decides = ScalarValue::Boolean(Some(op == Operator::Or));
            let left = fold(*left, schema)?;
            if matches!(&left, Expr::Literal(v, _) if *v == decides) {
                return Ok(left);
            }
            let right = fold(*right, schema)?;
            if matches!(&right, Expr::Literal(v, _) if *v == decides) {
                return Ok(right);
            }
            let neutral =
                |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Boolean(Some(b)), _) if *b == (op == Operator::And));
            Ok(match (neutral(&left), neutral(&right)) {
                (true, _) => right,
                (_, true) => left,
                _ => Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))),
            })
        }
        // PostgreSQL's BETWEEN is two comparisons under AND (OR when negated), folded as such:
        // a bound that decides stops the other (`-1 BETWEEN 1 AND 100 + x` is false, `100 + x`
        // never computed), a NULL bound leaves the other to decide.
        Expr::Between(between) => {
            let (expr, low, high) = (*between.expr, *between.low, *between.high);
            let compared = if between.negated {
                expr.clone().lt(low).or(expr.gt(high))
            } else {
                expr.clone().gt_eq(low).and(expr.lt_eq(high))
            };
            fold(compared, schema)
        }
        // A name on a constant is dropped: it would hide the constant from what contains it
        // (the plan's own output names are restored by the caller).
        Expr::Alias(mut alias) => match fold(*alias.expr, schema)? {
            constant @ Expr::Literal(..) => Ok(constant),
            folded => {
                alias.expr = Box::new(folded);
                Ok(Expr::Alias(alias))
            }
        },
        other => {
            let node = other.map_children(|c| Ok(Transformed::yes(fold(c, schema)?)))?.data;
            fold_node(node, schema)
        }
    }
}

/// A node whose operands are folded: NULL if strict of a NULL, its value if constant.
fn fold_node(node: Expr, schema: &DFSchema) -> DfResult<Expr> {
    let mut operands = vec![];
    node.apply_children(|c| {
        operands.push(c.clone());
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let is_null = |c: &Expr| matches!(c, Expr::Literal(v, _) if v.is_null());
    let null_first =
        matches!(&node, Expr::ScalarFunction(f) if f.func.name() == "nullif") && operands.first().is_some_and(is_null);
    if null_first || strict(&node) && operands.iter().any(is_null) {
        return null(&node.get_type(schema)?);
    }
    let constants = operands.iter().all(|c| matches!(c, Expr::Literal(..)));
    if !operands.is_empty() && constants && immutable(&node) {
        return Ok(Expr::Literal(evaluate(&node)?, None));
    }
    Ok(node)
}

/// A searched CASE: arms with a constant false or NULL condition dropped unevaluated, a
/// constant true one the last (its result the ELSE).
fn fold_case(case: Case, schema: &DFSchema) -> DfResult<Expr> {
    let ty = Expr::Case(case.clone()).get_type(schema)?;
    let mut arms = vec![];
    let mut otherwise = None;
    for (when, then) in case.when_then_expr {
        match fold(*when, schema)? {
            Expr::Literal(ScalarValue::Boolean(Some(true)), _) => {
                otherwise = Some(fold(*then, schema)?);
                break;
            }
            Expr::Literal(v, _) if v.is_null() || v == ScalarValue::Boolean(Some(false)) => continue,
            when => arms.push((Box::new(when), Box::new(fold(*then, schema)?))),
        }
    }
    let otherwise = match (otherwise, case.else_expr) {
        (Some(result), _) => Some(result),
        (None, Some(e)) => Some(fold(*e, schema)?),
        (None, None) => None,
    };
    if arms.is_empty() {
        return otherwise.map_or_else(|| null(&ty), Ok);
    }
    Ok(Expr::Case(Case::new(None, arms, otherwise.map(Box::new))))
}

/// The NULL of a type.
fn null(ty: &DataType) -> DfResult<Expr> {
    Ok(Expr::Literal(ScalarValue::try_from(ty)?, None))
}

/// PostgreSQL's strict functions among those raftable plans: NULL in, NULL out.
const STRICT: &[&str] = &[
    "abs",
    "btrim",
    "ceil",
    "char_length",
    "character_length",
    "exp",
    "floor",
    "left",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "mod",
    "octet_length",
    "power",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rint",
    "round",
    "rpad",
    "rtrim",
    "sign",
    "sqrt",
    "strpos",
    "substr",
    "substring",
    "trunc",
    "upper",
    "float8out",
];

/// Whether a NULL operand makes `expr` NULL without evaluating the others.
fn strict(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryExpr(b) => {
            !matches!(b.op, Operator::And | Operator::Or | Operator::IsDistinctFrom | Operator::IsNotDistinctFrom)
        }
        Expr::Negative(_) | Expr::Not(_) | Expr::Cast(_) | Expr::TryCast(_) | Expr::Like(_) | Expr::SimilarTo(_) => {
            true
        }
        Expr::ScalarFunction(f) => STRICT.contains(&f.func.name()) || checked(f.func.name()),
        _ => false,
    }
}

/// `int4pl`, `float8div`, ...: `super::arithmetic`'s checked operators, strict and immutable.
fn checked(name: &str) -> bool {
    ["int2", "int4", "int8", "float4", "float8"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|s| ["pl", "mi", "mul", "div"].contains(&s)))
}

/// Functions DataFusion calls immutable that PostgreSQL computes at run time (they read
/// settings or call a type's output function): never folded here.
const STABLE: &[&str] =
    &["concat", "concat_ws", "format", "to_char", "to_date", "to_timestamp", "date_trunc", "date_part"];

/// Whether PostgreSQL computes `expr` of constant operands at plan time.
fn immutable(expr: &Expr) -> bool {
    let temporal = |t: &DataType| t.is_temporal() || matches!(t, DataType::Interval(_) | DataType::Duration(_));
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    match expr {
        Expr::BinaryExpr(_)
        | Expr::Negative(_)
        | Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::Like(_)
        | Expr::Between(_)
        | Expr::InList(_) => true,
        Expr::Cast(c) => {
            let Expr::Literal(v, _) = c.expr.as_ref() else { return false };
            let (from, to) = (v.data_type(), c.field.data_type().clone());
            !((temporal(&from) && text(&to)) || (text(&from) && temporal(&to)))
        }
        Expr::ScalarFunction(f) => {
            f.func.signature().volatility == Volatility::Immutable && !STABLE.contains(&f.func.name())
        }
        _ => false,
    }
}

/// The one-row input a constant expression is evaluated over.
static ONE_ROW: LazyLock<(DFSchema, RecordBatch)> = LazyLock::new(|| {
    let schema = Arc::new(Schema::new(vec![Field::new(".", DataType::Null, true)]));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![new_null_array(&DataType::Null, 1)])
        .expect("a one-row batch of one NULL column");
    (DFSchema::try_from(schema).expect("a one-column schema"), batch)
});

/// A constant expression's value; its error is the statement's.
fn evaluate(expr: &Expr) -> DfResult<ScalarValue> {
    let (schema, batch) = &*ONE_ROW;
    let physical = datafusion::physical_expr::create_physical_expr(
        expr,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    match physical.evaluate(batch)? {
        ColumnarValue::Scalar(v) => Ok(v),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit, when};

    fn schema() -> DFSchema {
        let fields = vec![Field::new("a", DataType::Int32, true), Field::new("s", DataType::Utf8, true)];
        DFSchema::try_from(Schema::new(fields)).unwrap()
    }

    fn null_int() -> Expr {
        Expr::Literal(ScalarValue::Int32(None), None)
    }

    #[test]
    fn strict_operators_of_null_are_null_unevaluated() {
        let e = null_int() - (col("a") * col("a"));
        assert_eq!(fold(e, &schema()).unwrap(), null_int());
        // IS DISTINCT FROM is not strict; a column stays.
        let e =
            Expr::BinaryExpr(BinaryExpr::new(Box::new(null_int()), Operator::IsNotDistinctFrom, Box::new(col("a"))));
        assert_eq!(fold(e.clone(), &schema()).unwrap(), e);
    }

    #[test]
    fn dead_branches_are_dropped_and_live_constants_evaluated() {
        // The false arm's division by zero is never evaluated; the true arm ends the CASE.
        let e = when(lit(false), lit(1) / lit(0)).when(lit(true), lit(2) + lit(3)).otherwise(col("a")).unwrap();
        assert_eq!(fold(e, &schema()).unwrap(), lit(5));
        // AND stops at a constant false before its right side; OR at a constant true.
        let e = lit(false).and((lit(1) / lit(0)).gt(col("a")));
        assert_eq!(fold(e, &schema()).unwrap(), lit(false));
        let e = lit(true).or((lit(1) / lit(0)).gt(col("a")));
        assert_eq!(fold(e, &schema()).unwrap(), lit(true));
        // A constant that fails is the statement's error.
        assert!(fold(lit(1) / lit(0), &schema()).is_err());
        let root = fold(datafusion::functions::math::sqrt().call(vec![lit(-1.0)]), &schema()).unwrap_err();
        let e = crate::error::from_datafusion(root);
        assert!(matches!(e, raftable_common::Error::InvalidPowerArgument(_)), "{e:?}");
        // A column's expression is left to run time.
        let e = col("a") / lit(0);
        assert_eq!(fold(e.clone(), &schema()).unwrap(), e);
    }
}
