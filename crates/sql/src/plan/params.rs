//! `$n` parameters: their types at prepare (what DataFusion infers, what the statement's shape
//! implies, what the client declared) and their values bound into a plan at execute.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result};

use crate::error::from_datafusion;
use crate::table::TableDef;

/// Parameter types `$1..$n`, from what each source knows, later sources winning:
/// `inferred` (DataFusion's, `Null` where unknown), `hints` (from the statement's shape, used
/// only where still unknown), `declared` (the client's Parse message). A type still unknown
/// is text, as in PostgreSQL.
pub(crate) fn resolve(
    mut types: Vec<DataType>,
    hints: &[(usize, DataType)],
    declared: &[Option<DataType>],
) -> Vec<DataType> {
    for (n, ty) in hints {
        if *n >= 1 && types.get(n - 1) == Some(&DataType::Null) {
            types[n - 1] = ty.clone();
        }
    }
    for (i, given) in declared.iter().enumerate() {
        if let Some(t) = given {
            if i >= types.len() {
                types.resize(i + 1, DataType::Null);
            }
            types[i] = t.clone();
        }
    }
    types.into_iter().map(|t| if t == DataType::Null { DataType::Utf8 } else { t }).collect()
}

/// Parameter types from (0-based index, type) pairs, `$1..$n` (Null where none is known).
pub(crate) fn typed(pairs: Vec<(usize, DataType)>) -> Vec<DataType> {
    let mut out = Vec::new();
    for (i, t) in pairs {
        if out.len() <= i {
            out.resize(i + 1, DataType::Null);
        }
        out[i] = t;
    }
    out
}

/// The parameter types DataFusion inferred in `plan`, `$1..$n` (Null where it could not tell).
pub(crate) fn inferred(plan: &LogicalPlan) -> Result<Vec<DataType>> {
    let types: HashMap<String, Option<DataType>> = plan.get_parameter_types().map_err(from_datafusion)?;
    let mut pairs = Vec::with_capacity(types.len());
    for (name, ty) in types {
        pairs.push((number(&name)? - 1, ty.unwrap_or(DataType::Null)));
    }
    Ok(typed(pairs))
}

/// The parameter types the placeholders in `exprs` carry (`Null` where none).
pub(crate) fn in_exprs<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Result<Vec<(usize, DataType)>> {
    let mut out = Vec::new();
    for e in exprs {
        e.apply(|e| {
            if let Expr::Placeholder(p) = e {
                let ty = p.field.as_ref().map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
                out.push((p.id.clone(), ty));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(from_datafusion)?;
    }
    out.into_iter().map(|(id, ty)| Ok((number(&id)? - 1, ty))).collect()
}

/// `n` of a placeholder named `$n`.
fn number(name: &str) -> Result<usize> {
    let n: usize = name.trim_start_matches('$').parse().map_err(|_| Error::unsupported(format!("parameter {name}")))?;
    if n == 0 {
        return Err(Error::SyntaxError("there is no parameter $0".into()));
    }
    Ok(n)
}

/// Whether every function `plan` calls (subqueries included) is immutable: the same result for
/// the same arguments, whenever it runs.
pub(crate) fn immutable(plan: &LogicalPlan) -> bool {
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let volatility = match e {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    _ => None,
                };
                immutable &= volatility.is_none_or(|v| v == Volatility::Immutable);
                Ok(if immutable { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            })
        })
    });
    immutable
}

/// Replaces `$n` placeholders with values, cast to the type DataFusion expects where it knows.
pub(crate) fn bind(plan: &LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan.clone());
    }
    bind_as(plan, params, &inferred(plan)?)
}

/// [`bind`] with the parameter types known (`DataType::Null`: unknown, the value as given).
pub(crate) fn bind_as(plan: &LogicalPlan, params: &[ScalarValue], types: &[DataType]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan.clone());
    }
    let values = cast_values(params, types)?;
    plan.clone().with_param_values(ParamValues::from(values)).map_err(from_datafusion)
}

/// `exprs` with their placeholders replaced by `params` (cast to the placeholder's type).
pub(crate) fn bind_exprs(exprs: &[Expr], params: &[ScalarValue]) -> Result<Vec<Expr>> {
    exprs
        .iter()
        .map(|e| {
            e.clone()
                .transform(|e| {
                    let Expr::Placeholder(p) = &e else { return Ok(Transformed::no(e)) };
                    let i = number(&p.id).map_err(crate::error::to_datafusion)? - 1;
                    let value = params.get(i).cloned().ok_or_else(|| {
                        crate::error::to_datafusion(Error::InvalidInput(format!("no value for parameter {}", p.id)))
                    })?;
                    let value = match &p.field {
                        Some(f) => cast_value(i, value, f.data_type()).map_err(crate::error::to_datafusion)?,
                        None => value,
                    };
                    Ok(Transformed::yes(Expr::Literal(value, None)))
                })
                .map(|t| t.data)
                .map_err(from_datafusion)
        })
        .collect()
}

fn cast_values(params: &[ScalarValue], types: &[DataType]) -> Result<Vec<ScalarValue>> {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| match types.get(i) {
            Some(t) => cast_value(i, v.clone(), t),
            None => Ok(v.clone()),
        })
        .collect()
}

/// Parameter `i`'s value as type `t` (`Null`: as given).
fn cast_value(i: usize, v: ScalarValue, t: &DataType) -> Result<ScalarValue> {
    if *t == DataType::Null || v.data_type() == *t {
        return Ok(v);
    }
    v.cast_to(t).map_err(|e| Error::InvalidText(format!("parameter ${} cannot be converted to {t}: {e}", i + 1)))
}

/// Adds parameter types found elsewhere in a statement to those of its main plan, where the
/// plan's are unknown.
pub(crate) fn merge_types(params: &mut Vec<DataType>, more: Vec<(usize, DataType)>) {
    for (i, ty) in more {
        if params.len() <= i {
            params.resize(i + 1, DataType::Null);
        }
        if params[i] == DataType::Null {
            params[i] = ty;
        }
    }
}

/// `$n` assigned to column `i` takes the column's type, as DataFusion's own UPDATE planning does.
pub(crate) fn with_type(mut e: Expr, def: &TableDef, i: usize) -> Expr {
    if let Expr::Placeholder(p) = &mut e {
        if p.field.is_none() {
            let c = &def.columns[i];
            p.field = Some(Arc::new(Field::new(&c.name, c.ty.arrow(), true)));
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_unknown_is_text() {
        let inferred = vec![DataType::Int64, DataType::Null, DataType::Null];
        let hints = [(2, DataType::Int32), (1, DataType::Float64)];
        assert_eq!(
            resolve(inferred.clone(), &hints, &[]),
            [DataType::Int64, DataType::Int32, DataType::Utf8],
            "a hint fills an unknown type only"
        );
        let declared = [None, None, Some(DataType::Boolean), Some(DataType::Int16)];
        assert_eq!(
            resolve(inferred, &hints, &declared),
            [DataType::Int64, DataType::Int32, DataType::Boolean, DataType::Int16],
            "the client's declared types win and may add parameters"
        );
    }

    #[test]
    fn values_are_cast_to_the_parameter_type() {
        let v = cast_value(0, ScalarValue::Utf8(Some("42".into())), &DataType::Int64).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(42)));
        let e = cast_value(1, ScalarValue::Utf8(Some("x".into())), &DataType::Int64).unwrap_err();
        assert!(matches!(e, Error::InvalidText(m) if m.starts_with("parameter $2")));
        assert_eq!(cast_value(0, ScalarValue::Int32(Some(1)), &DataType::Null).unwrap(), ScalarValue::Int32(Some(1)));
    }
}
