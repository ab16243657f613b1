//! PostgreSQL's jsonb operators and functions, over jsonb's text (`crate::jsonb`): `->` and
//! `->>` (a key or an array index), `#>` and `#>>` (a path, `'{a,0}'` or an array), `@>` and
//! `<@` (containment), `?`, `?|` and `?&` (key existence), and the functions behind them by
//! PostgreSQL's names (`jsonb_object_field`, `jsonb_extract_path_text`, `jsonb_contains`, ...)
//! with `jsonb_typeof` and `jsonb_array_length`. DataFusion's SQL planner refuses these
//! operators ("Operator ->> is not yet supported"; `@>` it plans as array containment, which
//! fails on text), so [`JsonbOperators`], an expression planner ahead of DataFusion's own,
//! plans each as its function; `@>` and `<@` on arrays stay DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use raftable_common::{Error, Result};

use crate::error::to_datafusion;
use crate::jsonb::Jsonb;

/// What a jsonb function does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    /// `->` / `->>` with a key (`text`: `->>`, the value as text).
    Field {
        text: bool,
    },
    /// `->` / `->>` with an index.
    Element {
        text: bool,
    },
    /// `#>` / `#>>`: the path one array (`'{a,0}'` or `ARRAY[...]`), or, as the functions
    /// `jsonb_extract_path[_text]` are called, one argument per step (`variadic`).
    Path {
        text: bool,
        variadic: bool,
    },
    /// `@>` (`contained`: `<@`).
    Contains {
        contained: bool,
    },
    /// `?`.
    Exists,
    /// `?|` (`all`: `?&`).
    ExistsAny {
        all: bool,
    },
    TypeOf,
    ArrayLength,
}

/// The functions, by PostgreSQL's names (the operators' under names of raftable's own where
/// PostgreSQL's function takes its path differently).
const FUNCTIONS: [(&str, Op); 15] = [
    ("jsonb_object_field", Op::Field { text: false }),
    ("jsonb_object_field_text", Op::Field { text: true }),
    ("jsonb_array_element", Op::Element { text: false }),
    ("jsonb_array_element_text", Op::Element { text: true }),
    ("jsonb_extract_path", Op::Path { text: false, variadic: true }),
    ("jsonb_extract_path_text", Op::Path { text: true, variadic: true }),
    ("jsonb_extract_path_op", Op::Path { text: false, variadic: false }),
    ("jsonb_extract_path_text_op", Op::Path { text: true, variadic: false }),
    ("jsonb_contains", Op::Contains { contained: false }),
    ("jsonb_contained", Op::Contains { contained: true }),
    ("jsonb_exists", Op::Exists),
    ("jsonb_exists_any", Op::ExistsAny { all: false }),
    ("jsonb_exists_all", Op::ExistsAny { all: true }),
    ("jsonb_typeof", Op::TypeOf),
    ("jsonb_array_length", Op::ArrayLength),
];

/// Every jsonb function, to register in a session's context.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    FUNCTIONS.iter().map(|(name, op)| op_udf(name, *op)).collect()
}

fn op_udf(name: &'static str, op: Op) -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonbFunction { name, op, signature: Signature::variadic_any(Volatility::Immutable) })
}

/// Plans the jsonb operators as their functions.
#[derive(Debug)]
pub(crate) struct JsonbOperators;

impl ExprPlanner for JsonbOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
        let list = |e: &Expr| e.get_type(schema).is_ok_and(|t| matches!(t, DataType::List(_) | DataType::LargeList(_)));
        let (name, op) = match &expr.op {
            BinaryOperator::Arrow if integer(&expr.right) => ("jsonb_array_element", Op::Element { text: false }),
            BinaryOperator::Arrow => ("jsonb_object_field", Op::Field { text: false }),
            BinaryOperator::LongArrow if integer(&expr.right) => {
                ("jsonb_array_element_text", Op::Element { text: true })
            }
            BinaryOperator::LongArrow => ("jsonb_object_field_text", Op::Field { text: true }),
            BinaryOperator::HashArrow => ("jsonb_extract_path_op", Op::Path { text: false, variadic: false }),
            BinaryOperator::HashLongArrow => ("jsonb_extract_path_text_op", Op::Path { text: true, variadic: false }),
            // Array containment stays DataFusion's.
            BinaryOperator::AtArrow | BinaryOperator::ArrowAt if list(&expr.left) || list(&expr.right) => {
                return Ok(PlannerResult::Original(expr))
            }
            BinaryOperator::AtArrow => ("jsonb_contains", Op::Contains { contained: false }),
            BinaryOperator::ArrowAt => ("jsonb_contained", Op::Contains { contained: true }),
            BinaryOperator::Question => ("jsonb_exists", Op::Exists),
            BinaryOperator::QuestionPipe => ("jsonb_exists_any", Op::ExistsAny { all: false }),
            BinaryOperator::QuestionAnd => ("jsonb_exists_all", Op::ExistsAny { all: true }),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(op_udf(name, op).call(vec![expr.left, expr.right])))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonbFunction {
    name: &'static str,
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for JsonbFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.op {
            Op::Contains { .. } | Op::Exists | Op::ExistsAny { .. } => DataType::Boolean,
            Op::ArrayLength => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let result = self.evaluate(&arrays, rows).map_err(to_datafusion)?;
        super::columnar(result, scalar)
    }
}

impl JsonbFunction {
    fn evaluate(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let arity = match self.op {
            Op::Path { variadic: true, .. } => 1..=usize::MAX,
            Op::TypeOf | Op::ArrayLength => 1..=1,
            _ => 2..=2,
        };
        if !arity.contains(&args.len()) {
            return Err(Error::UndefinedFunction(format!(
                "function {}() with {} arguments does not exist",
                self.name,
                args.len()
            )));
        }
        let values = texts(&args[0])?;
        // Each row's jsonb, read once (a constant once for every row).
        let jsonb = |row: usize| -> Result<Option<Jsonb>> {
            let v = if values.len() == 1 { 0 } else { row };
            values.is_valid(v).then(|| Jsonb::parse(values.value(v))).transpose()
        };
        let out: ArrayRef = match self.op {
            Op::Field { text } => {
                let keys = texts(&args[1])?;
                let found = (0..rows).map(|r| {
                    let key = keys.is_valid(r).then(|| keys.value(r));
                    Ok(jsonb(r)?.zip(key).and_then(|(j, k)| j.field(k).and_then(|v| shown(v, text))))
                });
                Arc::new(found.collect::<Result<StringArray>>()?)
            }
            Op::Element { text } => {
                let indexes = cast(&args[1], &DataType::Int64).map_err(Error::internal)?;
                let indexes = indexes.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let found = (0..rows).map(|r| {
                    let index = indexes.is_valid(r).then(|| indexes.value(r));
                    Ok(jsonb(r)?.zip(index).and_then(|(j, i)| j.element(i).and_then(|v| shown(v, text))))
                });
                Arc::new(found.collect::<Result<StringArray>>()?)
            }
            Op::Path { text, variadic } => {
                let paths: Vec<Option<Vec<Option<String>>>> = if variadic {
                    let steps = args[1..].iter().map(texts).collect::<Result<Vec<_>>>()?;
                    (0..rows)
                        .map(|r| Some(steps.iter().map(|s| s.is_valid(r).then(|| s.value(r).to_string())).collect()))
                        .collect()
                } else {
                    text_arrays(&args[1], rows)?
                };
                let found = paths.into_iter().enumerate().map(|(r, path)| {
                    // A NULL path, or a NULL step in it, makes the result NULL.
                    let path: Option<Vec<String>> = path.and_then(|p| p.into_iter().collect());
                    Ok(jsonb(r)?
                        .zip(path)
                        .and_then(|(j, p)| j.at_path(p.iter().map(String::as_str)).and_then(|v| shown(v, text))))
                });
                Arc::new(found.collect::<Result<StringArray>>()?)
            }
            Op::Contains { contained } => {
                let others = texts(&args[1])?;
                let found = (0..rows).map(|r| {
                    let other = others.is_valid(r).then(|| Jsonb::parse(others.value(r))).transpose()?;
                    Ok(jsonb(r)?.zip(other).map(|(a, b)| if contained { b.contains(&a) } else { a.contains(&b) }))
                });
                Arc::new(found.collect::<Result<BooleanArray>>()?)
            }
            Op::Exists => {
                let keys = texts(&args[1])?;
                let found = (0..rows).map(|r| {
                    let key = keys.is_valid(r).then(|| keys.value(r));
                    Ok(jsonb(r)?.zip(key).map(|(j, k)| j.exists(k)))
                });
                Arc::new(found.collect::<Result<BooleanArray>>()?)
            }
            Op::ExistsAny { all } => {
                let keys = text_arrays(&args[1], rows)?;
                let found = (0..rows).map(|r| {
                    Ok(jsonb(r)?.zip(keys[r].as_ref()).map(|(j, ks)| {
                        // NULL keys are ignored, as in PostgreSQL.
                        let mut present = ks.iter().flatten().map(|k| j.exists(k));
                        if all {
                            present.all(|p| p)
                        } else {
                            present.any(|p| p)
                        }
                    }))
                });
                Arc::new(found.collect::<Result<BooleanArray>>()?)
            }
            Op::TypeOf => {
                let found = (0..rows).map(|r| Ok(jsonb(r)?.map(|j| j.type_name())));
                Arc::new(found.collect::<Result<StringArray>>()?)
            }
            Op::ArrayLength => {
                let found = (0..rows).map(|r| {
                    jsonb(r)?
                        .map(|j| match j {
                            Jsonb::Array(items) => i32::try_from(items.len()).map_err(Error::internal),
                            Jsonb::Object(_) => {
                                Err(Error::InvalidInput("cannot get array length of a non-array".into()))
                            }
                            _ => Err(Error::InvalidInput("cannot get array length of a scalar".into())),
                        })
                        .transpose()
                });
                Arc::new(found.collect::<Result<Int32Array>>()?)
            }
        };
        Ok(out)
    }
}

/// A value as `->` (jsonb text) or `->>` (text; NULL for JSON's null) gives it.
fn shown(value: &Jsonb, text: bool) -> Option<String> {
    if text {
        value.text()
    } else {
        Some(value.to_string())
    }
}

/// An argument's values as text.
fn texts(array: &ArrayRef) -> Result<StringArray> {
    let text = cast(array, &DataType::Utf8).map_err(Error::internal)?;
    Ok(text.as_string::<i32>().clone())
}

/// An argument of text arrays, per row: an array (`ARRAY['a', 'b']`) or PostgreSQL's text of
/// one (`'{a,b}'`); NULL elements stay NULL.
fn text_arrays(array: &ArrayRef, rows: usize) -> Result<Vec<Option<Vec<Option<String>>>>> {
    match array.data_type() {
        DataType::List(_) | DataType::LargeList(_) => {
            let list = cast(
                array,
                &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true))),
            )
            .map_err(Error::internal)?;
            let list = list.as_list::<i32>();
            Ok((0..rows)
                .map(|r| {
                    list.is_valid(r).then(|| {
                        let items = list.value(r);
                        let items = items.as_string::<i32>();
                        items.iter().map(|v| v.map(str::to_string)).collect()
                    })
                })
                .collect())
        }
        _ => {
            let text = texts(array)?;
            (0..rows).map(|r| text.is_valid(r).then(|| array_text(text.value(r))).transpose()).collect()
        }
    }
}

/// PostgreSQL's text of a one-dimensional text array (`{a,"b c",NULL}`).
fn array_text(text: &str) -> Result<Vec<Option<String>>> {
    let invalid = || Error::InvalidText(format!("malformed array literal: \"{text}\""));
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(invalid)?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Ok(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => item.push(chars.next().ok_or_else(invalid)?),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(invalid()),
                }
            }
            items.push(Some(item));
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                match c {
                    '\\' => item.push(chars.next().ok_or_else(invalid)?),
                    '{' | '}' | '"' => return Err(invalid()),
                    c => item.push(c),
                }
            }
            let item = item.trim_end();
            if item.is_empty() {
                return Err(invalid());
            }
            items.push(unquoted(item));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some(',') => continue,
            None => return Ok(items),
            Some(_) => return Err(invalid()),
        }
    }
}

/// An unquoted array element: `NULL` (any case) is NULL.
fn unquoted(item: &str) -> Option<String> {
    (!item.eq_ignore_ascii_case("null")).then(|| item.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postgresql_array_text() {
        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(array_text("{a,b}").unwrap(), some(&["a", "b"]));
        assert_eq!(array_text("{ a , \"b c\" ,\"d\\\"e\"}").unwrap(), some(&["a", "b c", "d\"e"]));
        assert_eq!(array_text("{a,NULL}").unwrap(), vec![Some("a".to_string()), None]);
        assert_eq!(array_text("{}").unwrap(), Vec::<Option<String>>::new());
        assert!(array_text("a,b").is_err());
        assert!(array_text("{\"a}").is_err());
    }

    #[test]
    fn functions_answer_per_row() {
        let docs: ArrayRef = Arc::new(StringArray::from(vec![Some(r#"{"k": "v", "n": [1, 2]}"#), None, Some("[3]")]));
        let key: ArrayRef = Arc::new(StringArray::from(vec!["k", "k", "k"]));
        let f = |op| JsonbFunction { name: "f", op, signature: Signature::variadic_any(Volatility::Immutable) };
        let got = f(Op::Field { text: true }).evaluate(&[docs.clone(), key.clone()], 3).unwrap();
        assert_eq!(got.as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("v"), None, None]);
        let path: ArrayRef = Arc::new(StringArray::from(vec!["{n,-1}", "{n}", "{0}"]));
        let got = f(Op::Path { text: false, variadic: false }).evaluate(&[docs.clone(), path], 3).unwrap();
        assert_eq!(got.as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("2"), None, Some("3")]);
        let got = f(Op::Exists).evaluate(&[docs.clone(), key], 3).unwrap();
        assert_eq!(got.as_boolean().iter().collect::<Vec<_>>(), vec![Some(true), None, Some(false)]);
        let err = f(Op::ArrayLength).evaluate(&[docs], 3).unwrap_err();
        assert!(err.to_string().contains("non-array"), "{err}");
    }
}
