//! Primary-key pushdown: [`key_scan`] turns the filters DataFusion pushed into a
//! [`ShardedTable`](super::ShardedTable) scan into what to read. Equality on every key column
//! (or IN lists) becomes point reads on the owning shards only; equality on a key prefix plus
//! a range (<, <=, >, >=, BETWEEN) on the next key column becomes a key range scanned in every
//! bucket. What it reads is a superset of the matching rows: DataFusion applies the filters
//! again.

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

use crate::encoding::{encode_key_part, prefix_end};
use crate::table::TableDef;
use crate::types::{changed_text, coerce_scalar};

/// What a scan reads, in primary-key terms.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyScan {
    /// Exactly these encoded primary keys.
    Points(Vec<Vec<u8>>),
    /// Encoded primary keys in `[start, end)` (empty end: unbounded), in every bucket.
    Range { start: Vec<u8>, end: Vec<u8> },
}

/// The value of a literal, or of a cast of one (a parameter bound into a plan optimized before
/// its value was known keeps the cast the optimizer put around it).
fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
        Expr::Cast(cast) => literal(&cast.expr)?.cast_to(cast.field.data_type()).ok().filter(|v| !v.is_null()),
        _ => None,
    }
}

/// Bounds gathered for one key column.
#[derive(Default, Clone)]
struct ColumnBounds {
    eq: Option<Vec<Vec<u8>>>,
    lower: Option<(Vec<u8>, bool)>,
    upper: Option<(Vec<u8>, bool)>,
}

/// Derives what to read from the pushed filters (a superset of the matching rows).
pub fn key_scan(def: &TableDef, filters: &[Expr]) -> KeyScan {
    let pk: Vec<&str> = def.pk.iter().map(|i| def.columns[*i].name.as_str()).collect();
    let mut bounds = vec![ColumnBounds::default(); pk.len()];
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    let encode = |col: usize, v: &ScalarValue| -> Option<Vec<u8>> {
        let c = &def.columns[def.pk[col]];
        let coerced = coerce_scalar(&c.ty, &c.name, v).ok()?;
        // A literal that changed when coerced (trimmed text, a canonical uuid) cannot be a bound:
        // the filter compares the original.
        if changed_text(v, &coerced) {
            return None;
        }
        let array = coerced.to_array().ok()?;
        let mut out = Vec::new();
        encode_key_part(&mut out, array.as_ref(), 0).ok()?;
        Some(out)
    };
    for c in conjuncts {
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, value, op) =
                    match (key_column(left, &pk), literal(right), key_column(right, &pk), literal(left)) {
                        (Some(col), Some(v), _, _) => (col, v, *op),
                        (_, _, Some(col), Some(v)) => (col, v, op.swap().unwrap_or(*op)),
                        _ => continue,
                    };
                if !exact_for_key(&value, &def.columns[def.pk[col]].ty.arrow()) {
                    continue;
                }
                let Some(enc) = encode(col, &value) else { continue };
                let b = &mut bounds[col];
                match op {
                    Operator::Eq => b.eq = Some(vec![enc]),
                    Operator::Gt => b.lower = Some((enc, false)),
                    Operator::GtEq => b.lower = Some((enc, true)),
                    Operator::Lt => b.upper = Some((enc, false)),
                    Operator::LtEq => b.upper = Some((enc, true)),
                    _ => {}
                }
            }
            Expr::InList(list) if !list.negated => {
                let Some(col) = key_column(&list.expr, &pk) else { continue };
                let ty = def.columns[def.pk[col]].ty.arrow();
                let values: Option<Vec<Vec<u8>>> = list
                    .list
                    .iter()
                    .map(|e| literal(e).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v)))
                    .collect();
                if let Some(mut values) = values {
                    values.sort();
                    values.dedup();
                    bounds[col].eq = Some(values);
                }
            }
            Expr::Between(b) if !b.negated => {
                let Some(col) = key_column(&b.expr, &pk) else { continue };
                let ty = def.columns[def.pk[col]].ty.arrow();
                let lo = literal(&b.low).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v));
                let hi = literal(&b.high).filter(|v| exact_for_key(v, &ty)).and_then(|v| encode(col, &v));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    bounds[col].lower = Some((lo, true));
                    bounds[col].upper = Some((hi, true));
                }
            }
            _ => {}
        }
    }
    // Points: every key column has equality values (bounded product).
    if bounds.iter().all(|b| b.eq.is_some()) {
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for b in &bounds {
            let values = b.eq.as_ref().expect("checked");
            if keys.len() * values.len() > 10_000 {
                keys.clear();
                break;
            }
            keys = keys.iter().flat_map(|k| values.iter().map(move |v| [k.as_slice(), v].concat())).collect();
        }
        if !keys.is_empty() {
            return KeyScan::Points(keys);
        }
    }
    // A range: the single-valued equality prefix, then the next column's bounds.
    let mut prefix = Vec::new();
    let mut next = None;
    for b in &bounds {
        match &b.eq {
            Some(values) if values.len() == 1 => prefix.extend_from_slice(&values[0]),
            _ => {
                next = Some(b);
                break;
            }
        }
    }
    let (mut start, mut end) = (prefix.clone(), prefix_end(&prefix));
    if let Some(b) = next {
        if let Some((lo, inclusive)) = &b.lower {
            let lo = [prefix.as_slice(), lo].concat();
            start = if *inclusive { lo } else { prefix_end(&lo) };
        }
        if let Some((hi, inclusive)) = &b.upper {
            let hi = [prefix.as_slice(), hi].concat();
            end = if *inclusive { prefix_end(&hi) } else { hi };
        }
    }
    KeyScan::Range { start, end }
}

/// Only literals whose type compares exactly with the key column's values may bound a scan
/// (an integer key compared with 2.5 is left to DataFusion).
fn exact_for_key(v: &ScalarValue, key: &datafusion::arrow::datatypes::DataType) -> bool {
    let lit = v.data_type();
    if lit == *key {
        return true;
    }
    lit.is_integer() && key.is_integer()
        || lit.is_string()
        || matches!(key, datafusion::arrow::datatypes::DataType::Utf8)
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// The position in the primary key of the column `e` is, if it is a key column.
pub(super) fn key_column(e: &Expr, pk: &[&str]) -> Option<usize> {
    match e {
        Expr::Column(c) => pk.iter().position(|k| *k == c.name),
        _ => None,
    }
}
