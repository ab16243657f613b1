//! PostgreSQL's integer arithmetic: `+`, `-` and `*` on `smallint`, `integer` and `bigint`
//! fail with 22003 (`integer out of range`) when the result does not fit the type. DataFusion
//! plans them wrapping (`9223372036854775807 + 1` is a negative number: a wrong answer), so
//! [`checked`] (applied by `super::semantics` after type coercion) replaces each such operator
//! by PostgreSQL's function for it (`int8pl`, `int4mi`, `int2mul`, ...), which uses Arrow's
//! checked kernels. The functions are callable by name too, as in PostgreSQL. `sum(bigint)`
//! sums in numeric, as PostgreSQL's does ([`numeric_sum`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The integer types and PostgreSQL's names for them (in function names and messages).
const TYPES: [(DataType, &str, &str); 3] =
    [(DataType::Int16, "int2", "smallint"), (DataType::Int32, "int4", "integer"), (DataType::Int64, "int8", "bigint")];

/// The checked operators and the suffix of PostgreSQL's function for each.
const OPERATORS: [(Operator, &str); 3] = [(Operator::Plus, "pl"), (Operator::Minus, "mi"), (Operator::Multiply, "mul")];

/// The checked functions, built once: `(operator, type, function)`.
static CHECKED: LazyLock<Vec<(Operator, DataType, Arc<ScalarUDF>)>> = LazyLock::new(|| {
    TYPES
        .iter()
        .flat_map(|(ty, _, _)| OPERATORS.iter().filter_map(move |(op, _)| CheckedOp::new(*op, ty)))
        .map(|f| (f.op, f.signature_type(), Arc::new(ScalarUDF::new_from_impl(f))))
        .collect()
});

/// Every checked function (`int2pl` ... `int8mul`), to register in a session's context.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    CHECKED.iter().map(|(_, _, f)| f.as_ref().clone()).collect()
}

/// `expr` (over `schema`) as a checked function if it is an integer `+`, `-` or `*` (its
/// operands of one type, as after type coercion); its operands are not visited.
pub(crate) fn checked(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !OPERATORS.iter().any(|(o, _)| o == op) {
        return Ok(Transformed::no(expr));
    }
    let ty = left.get_type(schema)?;
    let Some((_, _, f)) = CHECKED.iter().find(|(o, t, _)| o == op && *t == ty) else {
        return Ok(Transformed::no(expr));
    };
    if ty != right.get_type(schema)? {
        return Ok(Transformed::no(expr));
    }
    // Constants fold here, checked (a long `1 + 1 + ...` stays flat); an overflow stays a
    // call, which fails when it runs.
    if let (Expr::Literal(l, _), Expr::Literal(r, _)) = (left.as_ref(), right.as_ref()) {
        let folded = match op {
            Operator::Plus => l.add_checked(r),
            Operator::Minus => l.sub_checked(r),
            _ => l.mul_checked(r),
        };
        if let Ok(v) = folded {
            return Ok(Transformed::yes(Expr::Literal(v, None)));
        }
    }
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(f), args))))
}

/// `sum(bigint)` as PostgreSQL computes it, in numeric (`NUMERIC(38, 0)` here), which does not
/// overflow where bigint would: DataFusion sums bigint in bigint, wrapping past its range (a
/// wrong answer). `sum` of smaller integers is bigint in both. An analyzer rule ahead of type
/// coercion, which then types what reads the sum (`HAVING sum(x) > 300`) as numeric.
#[derive(Debug, Default)]
pub(crate) struct NumericSum;

impl AnalyzerRule for NumericSum {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            if !matches!(plan, LogicalPlan::Aggregate(_)) {
                return Ok(Transformed::no(plan));
            }
            let schema = merge_schema(&plan.inputs());
            plan.map_expressions(|e| e.transform_up(|e| numeric_sum(e, &schema)))?
                .map_data(|plan| plan.recompute_schema())
        })
        .data()
    }

    fn name(&self) -> &str {
        "raftable_numeric_sum"
    }
}

fn numeric_sum(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::AggregateFunction(sum) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let [arg] = sum.params.args.as_slice() else {
        return Ok(Transformed::no(expr));
    };
    if sum.func.name() != "sum" || arg.get_type(schema)? != DataType::Int64 {
        return Ok(Transformed::no(expr));
    }
    let Expr::AggregateFunction(mut sum) = expr else { unreachable!("matched above") };
    let arg = sum.params.args.remove(0);
    sum.params.args.push(Expr::Cast(Cast::new(Box::new(arg), DataType::Decimal128(38, 0))));
    Ok(Transformed::yes(Expr::AggregateFunction(sum)))
}

/// One checked operator on one integer type: `int4pl(integer, integer) -> integer`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedOp {
    name: String,
    op: Operator,
    /// `integer out of range`, as PostgreSQL says it.
    overflow: String,
    signature: Signature,
}

impl CheckedOp {
    /// The function for `op` on `ty`, if both are checked ones.
    fn new(op: Operator, ty: &DataType) -> Option<Self> {
        let (_, prefix, type_name) = TYPES.iter().find(|(t, _, _)| t == ty)?;
        let (_, suffix) = OPERATORS.iter().find(|(o, _)| *o == op)?;
        Some(Self {
            name: format!("{prefix}{suffix}"),
            op,
            overflow: format!("{type_name} out of range"),
            signature: Signature::exact(vec![ty.clone(), ty.clone()], Volatility::Immutable),
        })
    }

    /// The integer type it takes and returns.
    fn signature_type(&self) -> DataType {
        match &self.signature.type_signature {
            TypeSignature::Exact(types) => types[0].clone(),
            _ => unreachable!("checked operators have exact signatures"),
        }
    }
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!("{} takes two arguments", self.name)));
        };
        let (l, r) = (datum(left)?, datum(right)?);
        let result = match self.op {
            Operator::Plus => numeric::add(l.as_ref(), r.as_ref()),
            Operator::Minus => numeric::sub(l.as_ref(), r.as_ref()),
            _ => numeric::mul(l.as_ref(), r.as_ref()),
        }
        .map_err(|e| match e {
            datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => DataFusionError::ArrowError(
                Box::new(datafusion::arrow::error::ArrowError::ArithmeticOverflow(self.overflow.clone())),
                None,
            ),
            other => DataFusionError::ArrowError(Box::new(other), None),
        })?;
        let scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        super::columnar(result, scalar)
    }
}

/// An argument as an Arrow datum: a scalar stays one (the kernels broadcast it).
fn datum(value: &ColumnarValue) -> DfResult<Arc<dyn datafusion::arrow::array::Datum>> {
    Ok(match value {
        ColumnarValue::Array(a) => Arc::new(a.clone()),
        ColumnarValue::Scalar(s) => Arc::new(s.to_scalar()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::config::ConfigOptions;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::{col, lit};
    use datafusion::scalar::ScalarValue;

    fn schema() -> DFSchema {
        use datafusion::arrow::datatypes::{Field, Schema};
        let fields = vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ];
        DFSchema::try_from(Schema::new(fields)).unwrap()
    }

    fn functions(e: &Expr) -> Vec<String> {
        let mut names = vec![];
        e.apply(|e| {
            if let Expr::ScalarFunction(f) = e {
                names.push(f.name().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        names
    }

    #[test]
    fn integer_operators_become_checked_functions() {
        let e = (col("a") + col("a")) * col("a") - (col("b") + lit(1i64));
        let out = e.transform_up(|e| checked(e, &schema())).unwrap();
        assert!(out.transformed);
        // Pre-order; the outer `-` mixes integer and bigint: it waits for type coercion.
        assert_eq!(functions(&out.data), ["int4mul", "int4pl", "int8pl"]);
        // Floating point and division are left to DataFusion (they do not wrap).
        let untouched = (col("f") + col("f") + col("b") / lit(2i64)).transform_up(|e| checked(e, &schema())).unwrap();
        assert!(!untouched.transformed);
    }

    fn run(op: Operator, ty: &DataType, l: ScalarValue, r: ScalarValue) -> DfResult<ScalarValue> {
        use datafusion::arrow::datatypes::Field;
        let f = CheckedOp::new(op, ty).unwrap();
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Scalar(l), ColumnarValue::Scalar(r)],
            arg_fields: (0..2).map(|_| Arc::new(Field::new("x", ty.clone(), true))).collect(),
            number_rows: 1,
            return_field: Arc::new(Field::new("r", ty.clone(), true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match f.invoke_with_args(args)? {
            ColumnarValue::Scalar(s) => Ok(s),
            ColumnarValue::Array(_) => panic!("scalar arguments gave an array"),
        }
    }

    #[test]
    fn overflow_is_an_error_named_like_postgres() {
        let max = ScalarValue::Int64(Some(i64::MAX));
        let err = run(Operator::Plus, &DataType::Int64, max.clone(), ScalarValue::Int64(Some(1))).unwrap_err();
        assert!(err.to_string().contains("bigint out of range"), "{err}");
        let err =
            run(Operator::Multiply, &DataType::Int32, ScalarValue::Int32(Some(65536)), ScalarValue::Int32(Some(65536)))
                .unwrap_err();
        assert!(err.to_string().contains("integer out of range"), "{err}");
        let err = run(Operator::Minus, &DataType::Int16, ScalarValue::Int16(Some(-32768)), ScalarValue::Int16(Some(1)))
            .unwrap_err();
        assert!(err.to_string().contains("smallint out of range"), "{err}");
        assert_eq!(
            run(Operator::Minus, &DataType::Int64, max, ScalarValue::Int64(Some(1))).unwrap(),
            ScalarValue::Int64(Some(i64::MAX - 1))
        );
        // NULL in, NULL out.
        assert_eq!(
            run(Operator::Plus, &DataType::Int32, ScalarValue::Int32(None), ScalarValue::Int32(Some(1))).unwrap(),
            ScalarValue::Int32(None)
        );
    }
}
