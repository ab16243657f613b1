//! PostgreSQL's integer arithmetic: `+`, `-` and `*` on `smallint`, `integer` and `bigint`
//! fail with 22003 (`integer out of range`) when the result does not fit the type. DataFusion
//! plans them wrapping (`9223372036854775807 + 1` is a negative number: a wrong answer), so
//! [`checked`] (applied by `super::semantics` after type coercion) replaces each such operator
//! by PostgreSQL's function for it (`int8pl`, `int4mi`, `int2mul`, ...), which uses Arrow's
//! checked kernels; float `/` by zero fails with 22012 (`float8div`), where DataFusion answers
//! infinity. The functions are callable by name too, as in PostgreSQL. `sum(bigint)` sums in
//! numeric, as PostgreSQL's does ([`numeric_sum`]); ranking window functions are bigint
//! ([`BigintRanks`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::Float64Type;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, Projection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use raftable_common::pgtext::format_float8;

/// The integer types and PostgreSQL's names for them (in function names and messages).
const TYPES: [(DataType, &str, &str); 3] =
    [(DataType::Int16, "int2", "smallint"), (DataType::Int32, "int4", "integer"), (DataType::Int64, "int8", "bigint")];

/// The checked operators and the suffix of PostgreSQL's function for each.
const OPERATORS: [(Operator, &str); 3] = [(Operator::Plus, "pl"), (Operator::Minus, "mi"), (Operator::Multiply, "mul")];

/// The floating-point types, whose division by zero PostgreSQL refuses (22012; DataFusion
/// answers infinity or NaN): `float4div`, `float8div`.
const FLOATS: [(DataType, &str); 2] = [(DataType::Float32, "float4"), (DataType::Float64, "float8")];

/// The checked functions, built once: `(operator, type, function)`.
static CHECKED: LazyLock<Vec<(Operator, DataType, Arc<ScalarUDF>)>> = LazyLock::new(|| {
    let integers = TYPES.iter().flat_map(|(ty, _, _)| OPERATORS.iter().map(move |(op, _)| (*op, ty)));
    let floats = FLOATS.iter().map(|(ty, _)| (Operator::Divide, ty));
    integers
        .chain(floats)
        .filter_map(|(op, ty)| CheckedOp::new(op, ty))
        .map(|f| (f.op, f.signature_type(), Arc::new(ScalarUDF::new_from_impl(f))))
        .collect()
});

/// Every checked function (`int2pl` ... `int8mul`), to register in a session's context.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    CHECKED
        .iter()
        .map(|(_, _, f)| f.as_ref().clone())
        .chain([RINT.as_ref().clone(), FLOAT8_TEXT.as_ref().clone()])
        .collect()
}

/// `float8out(double precision)`: a float's text as PostgreSQL prints it (`0`, `1e+20`, `-0`),
/// for casts of floats to text ([`rounded_cast`]); Arrow's cast writes `0.0`, `1e20`.
static FLOAT8_TEXT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(FloatFunction::new("float8out", DataType::Utf8))));

/// `rint(double precision)`: rounds half to even, as PostgreSQL's cast of a float to an
/// integer does ([`rounded_cast`]).
static RINT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(FloatFunction::new("rint", DataType::Float64))));

/// The cast of a fraction to an integer as PostgreSQL rounds it: numeric half away from zero
/// (`2.5::numeric::int` is 3), double precision and real half to even (`2.5::float8::int` is
/// 2). Arrow's cast truncates (`-3.75::bigint` is -3: a wrong answer). The operand is rounded
/// first. A float cast to text prints as PostgreSQL's does. Its operands are not visited.
pub(crate) fn rounded_cast(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(cast) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let float =
        |e: &Expr| Ok::<_, DataFusionError>(matches!(e.get_type(schema)?, DataType::Float64 | DataType::Float32));
    if matches!(cast.field.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) && float(&cast.expr)?
    {
        let float = Expr::Cast(Cast::new(cast.expr.clone(), DataType::Float64));
        return Ok(Transformed::yes(Expr::Cast(Cast::new(
            Box::new(FLOAT8_TEXT.call(vec![float])),
            cast.field.data_type().clone(),
        ))));
    }
    // Rounded to a whole number already (`round(x)`, `rint(x)`): the rewrite runs as a function
    // rewrite and again after type coercion.
    let rounded = |e: &Expr| matches!(e, Expr::ScalarFunction(f) if f.args.len() == 1 && ["round", "rint"].contains(&f.func.name()));
    if !cast.field.data_type().is_integer() || rounded(&cast.expr) {
        return Ok(Transformed::no(expr));
    }
    let operand = cast.expr.as_ref().clone();
    let rounded = match operand.get_type(schema)? {
        DataType::Decimal128(..) => datafusion::functions::math::round().call(vec![operand]),
        DataType::Float64 | DataType::Float32 => {
            RINT.call(vec![Expr::Cast(Cast::new(Box::new(operand), DataType::Float64))])
        }
        _ => return Ok(Transformed::no(expr)),
    };
    let Expr::Cast(mut cast) = expr else { unreachable!("matched above") };
    cast.expr = Box::new(rounded);
    Ok(Transformed::yes(Expr::Cast(cast)))
}

/// A function of one double precision: `rint` (round half to even) or `float8out` (text).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatFunction {
    name: &'static str,
    returns: DataType,
    signature: Signature,
}

impl FloatFunction {
    fn new(name: &'static str, returns: DataType) -> Self {
        Self { name, returns, signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for FloatFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!("{} takes one argument", self.name)));
        };
        let scalar = matches!(value, ColumnarValue::Scalar(_));
        let array = value.to_array(args.number_rows)?;
        let floats = array.as_primitive::<Float64Type>();
        let result: ArrayRef = if self.returns == DataType::Utf8 {
            Arc::new(floats.iter().map(|v| v.map(format_float8)).collect::<StringArray>())
        } else {
            Arc::new(floats.unary::<_, Float64Type>(f64::round_ties_even))
        };
        super::columnar(result, scalar)
    }
}

/// `expr` (over `schema`) as a checked function if it is an integer `+`, `-` or `*` (its
/// operands of one type, as after type coercion); its operands are not visited.
pub(crate) fn checked(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !CHECKED.iter().any(|(o, _, _)| o == op) {
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
            Operator::Plus => Some(l.add_checked(r)),
            Operator::Minus => Some(l.sub_checked(r)),
            Operator::Multiply => Some(l.mul_checked(r)),
            _ => None,
        };
        if let Some(Ok(v)) = folded {
            return Ok(Transformed::yes(Expr::Literal(v, None)));
        }
    }
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(f), args))))
}

/// `sum(bigint)` as PostgreSQL computes it, in numeric (`NUMERIC(38, 0)` here), which does not
/// overflow where bigint would: DataFusion sums bigint in bigint, wrapping past its range (a
/// wrong answer). `sum` of smaller integers is bigint in both. An analyzer rule ahead of type
/// coercion, which then types what reads the sum (`HAVING sum(x) > 300`) as numeric. DataFusion
/// runs the function rewrites (our [`checked`] among them) ahead of every analyzer rule, so an
/// operator on a sum is a checked bigint function by then (`int8mi(sum(x), sum(x))`): such calls
/// above a changed sum go back to operators, checked again after type coercion.
#[derive(Debug, Default)]
pub(crate) struct NumericSum;

impl AnalyzerRule for NumericSum {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            let rewritten = if matches!(plan, LogicalPlan::Aggregate(_)) {
                plan.map_expressions(|e| e.transform_up(|e| numeric_sum(e, &schema)))?
            } else {
                plan.map_expressions(|e| e.transform_up(|e| unchecked(e, &schema)))?
            };
            if rewritten.transformed {
                rewritten.map_data(|plan| plan.recompute_schema())
            } else {
                Ok(rewritten)
            }
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

/// `row_number()`, `rank()`, `dense_rank()` and `ntile()` as PostgreSQL types them, bigint:
/// DataFusion's are unsigned 64-bit, which the wire describes as numeric. An analyzer rule
/// ahead of type coercion: a projection over each window node casts such columns (same names),
/// and the nodes above recompute their schemas.
#[derive(Debug, Default)]
pub(crate) struct BigintRanks;

impl AnalyzerRule for BigintRanks {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let unsigned = |plan: &LogicalPlan| {
            matches!(plan, LogicalPlan::Window(_))
                && plan.schema().fields().iter().any(|f| f.data_type() == &DataType::UInt64)
        };
        if !plan.exists(|p| Ok(unsigned(p)))? {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|plan| {
            if !unsigned(&plan) {
                return Ok(Transformed::yes(plan.recompute_schema()?));
            }
            let exprs = plan
                .schema()
                .iter()
                .map(|(qualifier, field)| {
                    let column = Expr::Column(Column::from((qualifier, field)));
                    if field.data_type() == &DataType::UInt64 {
                        Expr::Cast(Cast::new(Box::new(column), DataType::Int64))
                            .alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        column
                    }
                })
                .collect();
            Ok(Transformed::yes(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?)))
        })
        .data()
    }

    fn name(&self) -> &str {
        "raftable_bigint_ranks"
    }
}

/// A checked function whose operands are no longer of its type, back as the operator.
fn unchecked(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::ScalarFunction(call) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let Some((op, ty, _)) = CHECKED.iter().find(|(_, _, f)| f.name() == call.func.name()) else {
        return Ok(Transformed::no(expr));
    };
    let [left, right] = call.args.as_slice() else {
        return Ok(Transformed::no(expr));
    };
    if left.get_type(schema)? == *ty && right.get_type(schema)? == *ty {
        return Ok(Transformed::no(expr));
    }
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(left.clone()), *op, Box::new(right.clone())))))
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
        let signature = Signature::exact(vec![ty.clone(), ty.clone()], Volatility::Immutable);
        if op == Operator::Divide {
            let (_, prefix) = FLOATS.iter().find(|(t, _)| t == ty)?;
            return Some(Self { name: format!("{prefix}div"), op, overflow: String::new(), signature });
        }
        let (_, prefix, type_name) = TYPES.iter().find(|(t, _, _)| t == ty)?;
        let (_, suffix) = OPERATORS.iter().find(|(o, _)| *o == op)?;
        Some(Self { name: format!("{prefix}{suffix}"), op, overflow: format!("{type_name} out of range"), signature })
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
        if self.op == Operator::Divide && divides_by_zero(left, right)? {
            return Err(DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None));
        }
        let (l, r) = (datum(left)?, datum(right)?);
        let result = match self.op {
            Operator::Divide => numeric::div(l.as_ref(), r.as_ref()),
            Operator::Plus => numeric::add(l.as_ref(), r.as_ref()),
            Operator::Minus => numeric::sub(l.as_ref(), r.as_ref()),
            _ => numeric::mul(l.as_ref(), r.as_ref()),
        }
        .map_err(|e| match e {
            ArrowError::ArithmeticOverflow(_) => {
                DataFusionError::ArrowError(Box::new(ArrowError::ArithmeticOverflow(self.overflow.clone())), None)
            }
            other => DataFusionError::ArrowError(Box::new(other), None),
        })?;
        let scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        super::columnar(result, scalar)
    }
}

/// Whether a float division meets a zero divisor with a dividend that is not NaN (PostgreSQL's
/// `float8div` answers NaN / 0 with NaN, any other / 0 with 22012).
fn divides_by_zero(left: &ColumnarValue, right: &ColumnarValue) -> DfResult<bool> {
    let rows = [left, right]
        .iter()
        .map(|v| match v {
            ColumnarValue::Array(a) => a.len(),
            ColumnarValue::Scalar(_) => 1,
        })
        .max()
        .unwrap_or(1);
    let floats = |v: &ColumnarValue| -> DfResult<ArrayRef> { Ok(cast(&v.to_array(rows)?, &DataType::Float64)?) };
    let (l, r) = (floats(left)?, floats(right)?);
    let (l, r) = (l.as_primitive::<Float64Type>(), r.as_primitive::<Float64Type>());
    Ok(l.iter().zip(r.iter()).any(|(l, r)| r == Some(0.0) && l.is_some_and(|l| !l.is_nan())))
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
