//! Primary-key pushdown: [`key_scan`] turns the filters DataFusion pushed into a
//! [`ShardedTable`](super::ShardedTable) scan into what to read. Equality on every key column
//! (or IN lists) becomes point reads on the owning shards only; equality on a key prefix plus
//! a range (<, <=, >, >=, BETWEEN) on the next key column becomes a key range scanned in every
//! bucket. What it reads is a superset of the matching rows: DataFusion applies the filters
//! again.

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

use crate::encoding::{encode_index_part, encode_key_part, prefix_end};
use crate::table::{IndexDef, IndexState, TableDef};
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
    columns_scan(def, &def.pk, filters, encode_key_part)
}

/// What to read of a key made of `cols` (indexes into the table's columns), each encoded by
/// `part`: the primary key's ([`key_scan`]) or an index's ([`index_scan`]).
fn columns_scan(def: &TableDef, cols: &[usize], filters: &[Expr], part: EncodePart) -> KeyScan {
    let pk: Vec<&str> = cols.iter().map(|i| def.columns[*i].name.as_str()).collect();
    let mut bounds = vec![ColumnBounds::default(); pk.len()];
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    let encode = |col: usize, v: &ScalarValue| -> Option<Vec<u8>> {
        let c = &def.columns[cols[col]];
        let coerced = coerce_scalar(&c.ty, &c.name, v).ok()?;
        // A literal that changed when coerced (trimmed text, a canonical uuid) cannot be a bound:
        // the filter compares the original.
        if changed_text(v, &coerced) {
            return None;
        }
        let array = coerced.to_array().ok()?;
        let mut out = Vec::new();
        part(&mut out, array.as_ref(), 0).ok()?;
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
                if !exact_for_key(&value, &def.columns[cols[col]].ty.arrow()) {
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
                let ty = def.columns[cols[col]].ty.arrow();
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
                let ty = def.columns[cols[col]].ty.arrow();
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

/// Appends one column's encoding to a key.
type EncodePart = fn(&mut Vec<u8>, &dyn datafusion::arrow::array::Array, usize) -> raftable_common::Result<()>;

/// The best public index for the pushed filters, with what to read of it: equality on every
/// column of a unique index, else of any index, else an equality prefix and a range on the
/// next column. None when no index bounds the read.
pub fn index_scan<'a>(def: &'a TableDef, filters: &[Expr]) -> Option<(&'a IndexDef, KeyScan)> {
    let mut best: Option<(u8, &IndexDef, KeyScan)> = None;
    for index in def.indexes.iter().filter(|i| i.state == IndexState::Public) {
        let scan = columns_scan(def, &index.columns, filters, encode_index_part);
        let rank = match &scan {
            KeyScan::Points(_) if index.unique => 0,
            KeyScan::Points(_) => 1,
            KeyScan::Range { start, end } if !start.is_empty() || !end.is_empty() => 2,
            KeyScan::Range { .. } => continue,
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, index, scan));
        }
    }
    best.map(|(_, index, scan)| (index, scan))
}

/// Whether a key scan reads every row.
pub fn is_everything(scan: &KeyScan) -> bool {
    matches!(scan, KeyScan::Range { start, end } if start.is_empty() && end.is_empty())
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::{cast, col, lit, not};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::table::ColumnDef;
    use crate::types::SqlType;

    fn table(columns: &[(&str, SqlType)], pk: &[usize]) -> TableDef {
        let columns = columns.iter().map(|(name, ty)| ColumnDef::new(*name, *ty, true)).collect();
        TableDef {
            id: 3,
            name: "t".into(),
            columns,
            pk: pk.to_vec(),
            buckets: 4,
            shards: vec![1, 2, 3, 4],
            checks: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            referenced_by: Vec::new(),
            version: 0,
            comment: None,
        }
    }

    /// `k bigint primary key, v bigint`.
    fn single() -> TableDef {
        table(&[("k", SqlType::BigInt), ("v", SqlType::BigInt)], &[0])
    }

    /// `a bigint, b bigint, c text, v bigint, primary key (a, b, c)`.
    fn composite() -> TableDef {
        table(
            &[("a", SqlType::BigInt), ("b", SqlType::BigInt), ("c", SqlType::Text), ("v", SqlType::BigInt)],
            &[0, 1, 2],
        )
    }

    /// The key encoding of one value (of the key column's type).
    fn enc(v: impl Into<ScalarValue>) -> Vec<u8> {
        let array = v.into().to_array().unwrap();
        let mut out = Vec::new();
        encode_key_part(&mut out, array.as_ref(), 0).unwrap();
        out
    }

    fn range(start: Vec<u8>, end: Vec<u8>) -> KeyScan {
        KeyScan::Range { start, end }
    }

    /// The whole table: filters that must not narrow the scan.
    fn everything() -> KeyScan {
        range(Vec::new(), Vec::new())
    }

    #[test]
    fn equality_on_the_whole_key_reads_one_point() {
        let t = single();
        let five = KeyScan::Points(vec![enc(5i64)]);
        assert_eq!(key_scan(&t, &[col("k").eq(lit(5i64))]), five);
        // A narrower literal, the literal on the left, a parameter bound into a prepared plan
        // (the optimizer's cast stays around it), a text literal.
        assert_eq!(key_scan(&t, &[col("k").eq(lit(5i32))]), five);
        assert_eq!(key_scan(&t, &[lit(5i64).eq(col("k"))]), five);
        assert_eq!(key_scan(&t, &[col("k").eq(cast(lit("5"), DataType::Int64))]), five);
        assert_eq!(key_scan(&t, &[col("k").eq(lit("5"))]), five);
        assert_eq!(key_scan(&t, &[col("k").eq(lit(i64::MIN))]), KeyScan::Points(vec![enc(i64::MIN)]));
        // With other filters beside it.
        assert_eq!(key_scan(&t, &[col("v").eq(lit(1i64)), col("k").eq(lit(5i64))]), five);
        assert_eq!(key_scan(&t, &[col("v").eq(lit(1i64)).and(col("k").eq(lit(5i64)))]), five);

        let text = table(&[("k", SqlType::Text)], &[0]);
        assert_eq!(key_scan(&text, &[col("k").eq(lit("a\0b"))]), KeyScan::Points(vec![enc("a\0b")]));
        let day = table(&[("k", SqlType::Date)], &[0]);
        assert_eq!(
            key_scan(&day, &[col("k").eq(lit("2024-01-02"))]),
            KeyScan::Points(vec![enc(ScalarValue::Date32(Some(19724)))])
        );
    }

    /// With indexes on `v` (plain) and on `(a, c)` (unique) of the composite table.
    fn indexed() -> TableDef {
        let mut t = composite();
        let index = |id, name: &str, columns: Vec<usize>, unique, state| IndexDef {
            id,
            name: name.into(),
            columns,
            unique,
            buckets: 2,
            shards: vec![5, 6],
            state,
            constraint: false,
            options: Vec::new(),
        };
        t.indexes = vec![
            index(8, "t_v", vec![3], false, IndexState::Public),
            index(9, "t_ac", vec![0, 2], true, IndexState::Public),
            index(10, "t_b", vec![1], false, IndexState::WriteOnly),
        ];
        t
    }

    /// An index key part: the value's marker, then its key encoding.
    fn ienc(v: impl Into<ScalarValue>) -> Vec<u8> {
        [vec![0x01], enc(v)].concat()
    }

    #[test]
    fn the_best_public_index_bounds_a_read() {
        let t = indexed();
        let pick = |filters: &[Expr]| index_scan(&t, filters).map(|(i, scan)| (i.name.clone(), scan));
        // Equality on every column of the unique index wins over the plain one.
        let both = [col("v").eq(lit(4i64)), col("a").eq(lit(1i64)), col("c").eq(lit("x"))];
        assert_eq!(pick(&both), Some(("t_ac".into(), KeyScan::Points(vec![[ienc(1i64), ienc("x")].concat()]))));
        assert_eq!(pick(&[col("v").eq(lit(4i64))]), Some(("t_v".into(), KeyScan::Points(vec![ienc(4i64)]))));
        // A prefix of the unique index is a range, beaten by equality on the plain one.
        let prefix = pick(&[col("a").eq(lit(1i64))]);
        assert_eq!(prefix, Some(("t_ac".into(), range(ienc(1i64), prefix_end(&ienc(1i64))))));
        assert_eq!(pick(&[col("a").eq(lit(1i64)), col("v").eq(lit(4i64))]).unwrap().0, "t_v");
        let above = pick(&[col("v").gt(lit(4i64))]);
        assert_eq!(above, Some(("t_v".into(), range(prefix_end(&ienc(4i64)), Vec::new()))));
        // Nothing bounds the read: no index; an index still being built is never read.
        assert_eq!(pick(&[col("c").eq(lit("x"))]), None);
        assert_eq!(pick(&[col("b").eq(lit(2i64))]), None);
        assert_eq!(pick(&[]), None);
        assert!(is_everything(&key_scan(&t, &[col("v").eq(lit(4i64))])));
    }

    #[test]
    fn in_lists_read_sorted_distinct_points() {
        let t = single();
        let list = vec![lit(5i64), lit(-2i64), lit(5i64), lit(0i64)];
        assert_eq!(
            key_scan(&t, &[col("k").in_list(list, false)]),
            KeyScan::Points(vec![enc(-2i64), enc(0i64), enc(5i64)])
        );
        let text = table(&[("k", SqlType::Text)], &[0]);
        let list = vec![lit("b"), lit("a\0"), lit("a"), lit(""), lit("a")];
        assert_eq!(
            key_scan(&text, &[col("k").in_list(list, false)]),
            KeyScan::Points(vec![enc(""), enc("a"), enc("a\0"), enc("b")])
        );
    }

    #[test]
    fn composite_keys_read_the_product_of_their_values() {
        let t = composite();
        let filters = [
            col("a").in_list(vec![lit(2i64), lit(1i64)], false),
            col("b").eq(lit(7i64)),
            col("c").in_list(vec![lit("y"), lit("x")], false),
        ];
        let key = |a: i64, c: &str| [enc(a), enc(7i64), enc(c)].concat();
        assert_eq!(key_scan(&t, &filters), KeyScan::Points(vec![key(1, "x"), key(1, "y"), key(2, "x"), key(2, "y")]));
    }

    #[test]
    fn a_key_prefix_and_a_range_on_the_next_column_read_a_range() {
        let t = composite();
        let a = enc(1i64);
        let a_b = |b: i64| [enc(1i64), enc(b)].concat();
        let one = col("a").eq(lit(1i64));
        let scan = |more: Expr| key_scan(&t, &[one.clone(), more]);
        // The prefix alone.
        assert_eq!(key_scan(&t, std::slice::from_ref(&one)), range(a.clone(), prefix_end(&a)));
        // Exclusive and inclusive bounds each way: past every key with b = 5 for b > 5.
        assert_eq!(scan(col("b").gt(lit(5i64))), range(prefix_end(&a_b(5)), prefix_end(&a)));
        assert_eq!(scan(col("b").gt_eq(lit(5i64))), range(a_b(5), prefix_end(&a)));
        assert_eq!(scan(col("b").lt(lit(5i64))), range(a.clone(), a_b(5)));
        assert_eq!(scan(col("b").lt_eq(lit(5i64))), range(a.clone(), prefix_end(&a_b(5))));
        assert_eq!(scan(col("b").between(lit(3i64), lit(7i64))), range(a_b(3), prefix_end(&a_b(7))));
        // The literal on the left: 3 <= b is b >= 3, 3 > b is b < 3.
        assert_eq!(scan(lit(3i64).lt_eq(col("b"))), range(a_b(3), prefix_end(&a)));
        assert_eq!(scan(lit(3i64).gt(col("b"))), range(a.clone(), a_b(3)));
        // Both bounds, as separate filters and as one conjunction.
        let want = range(a_b(3), a_b(7));
        let (lo, hi) = (col("b").gt_eq(lit(3i64)), col("b").lt(lit(7i64)));
        assert_eq!(key_scan(&t, &[one.clone(), lo.clone(), hi.clone(), col("v").eq(lit(0i64))]), want);
        assert_eq!(key_scan(&t, &[hi.clone().and(col("v").eq(lit(0i64))).and(lo.clone()).and(one.clone())]), want);
        // Two columns of prefix, a text range on the third.
        let a_b_c = |c: &str| [enc(1i64), enc(2i64), enc(c)].concat();
        let filters = [one.clone(), col("b").eq(lit(2i64)), col("c").gt(lit("x"))];
        assert_eq!(key_scan(&t, &filters), range(prefix_end(&a_b_c("x")), prefix_end(&a_b(2))));
        // A range on the first column: unbounded on the other side.
        assert_eq!(key_scan(&t, &[col("a").gt(lit(5i64))]), range(prefix_end(&enc(5i64)), Vec::new()));
        assert_eq!(key_scan(&t, &[col("a").lt(lit(5i64))]), range(Vec::new(), enc(5i64)));
        // A bound on a column after an unbound one cannot be used.
        assert_eq!(key_scan(&t, &[one, col("c").eq(lit("x"))]), range(a.clone(), prefix_end(&a)));
    }

    #[test]
    fn filters_that_cannot_bound_the_key_read_everything() {
        let t = single();
        let k = || col("k");
        let null = || lit(ScalarValue::Int64(None));
        for filter in [
            col("v").eq(lit(1i64)),
            k().eq(lit(1i64)).or(k().eq(lit(2i64))),
            k().in_list(vec![lit(1i64), lit(2i64)], true),
            k().not_between(lit(1i64), lit(2i64)),
            not(k().eq(lit(1i64))),
            k().not_eq(lit(1i64)),
            // An integer key compared with a fraction: 2.5 is no key, the comparison is numeric.
            k().eq(lit(2.5f64)),
            k().gt(lit(2.5f64)),
            k().in_list(vec![lit(1i64), lit(2.5f64)], false),
            // NULL compares to nothing; leaving it to DataFusion is correct.
            k().eq(null()),
            k().in_list(vec![lit(1i64), null()], false),
            k().between(lit(1i64), null()),
            // Not a bare key column, or not a literal.
            (k() + lit(1i64)).eq(lit(2i64)),
            cast(k(), DataType::Utf8).eq(lit("1")),
            k().eq(col("v")),
            // Text that is no bigint.
            k().eq(lit("one")),
        ] {
            assert_eq!(key_scan(&t, std::slice::from_ref(&filter)), everything(), "{filter}");
        }
        // Literals the key column's type would change: the filter compares the original.
        let small = table(&[("k", SqlType::SmallInt)], &[0]);
        assert_eq!(key_scan(&small, &[col("k").eq(lit(40_000i64))]), everything());
        let char3 = table(&[("k", SqlType::Char(3))], &[0]);
        assert_eq!(key_scan(&char3, &[col("k").eq(lit("a  "))]), everything());
        assert_eq!(key_scan(&char3, &[col("k").eq(lit("abcd"))]), everything());
        assert_eq!(key_scan(&char3, &[col("k").eq(lit("a"))]), KeyScan::Points(vec![enc("a")]));
        let varchar2 = table(&[("k", SqlType::Varchar(Some(2)))], &[0]);
        assert_eq!(key_scan(&varchar2, &[col("k").eq(lit("ab "))]), everything());
        assert_eq!(key_scan(&varchar2, &[col("k").gt(lit("abc"))]), everything());
        let uuid = table(&[("k", SqlType::Uuid)], &[0]);
        let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(key_scan(&uuid, &[col("k").eq(lit(canonical.to_uppercase()))]), everything());
        assert_eq!(key_scan(&uuid, &[col("k").eq(lit(canonical))]), KeyScan::Points(vec![enc(canonical)]));
        // A float key compared with a literal of another float width.
        let real = table(&[("k", SqlType::Real)], &[0]);
        assert_eq!(key_scan(&real, &[col("k").eq(lit(0.1f64))]), everything());
    }

    #[test]
    fn too_many_points_fall_back_to_a_range() {
        let t = table(&[("a", SqlType::BigInt), ("b", SqlType::BigInt), ("c", SqlType::BigInt)], &[0, 1, 2]);
        let list = |n: i64| (0..n).map(lit).collect::<Vec<_>>();
        // 100 x 100 is the most points read one by one.
        let filters = [col("a").eq(lit(1i64)), col("b").in_list(list(100), false), col("c").in_list(list(100), false)];
        let KeyScan::Points(points) = key_scan(&t, &filters) else { panic!("10,000 points") };
        assert_eq!(points.len(), 10_000);
        assert_eq!(points[101], [enc(1i64), enc(1i64), enc(1i64)].concat());
        // 200 x 100: the range of the equality prefix.
        let filters = [col("a").eq(lit(1i64)), col("b").in_list(list(200), false), col("c").in_list(list(100), false)];
        assert_eq!(key_scan(&t, &filters), range(enc(1i64), prefix_end(&enc(1i64))));
        // With no single-valued prefix: everything.
        let filters = [col("a").in_list(list(200), false), col("b").in_list(list(200), false), col("c").eq(lit(1i64))];
        assert_eq!(key_scan(&t, &filters), everything());
    }

    /// A random comparison of one key column of `(a bigint, b text)` with literals.
    #[derive(Debug, Clone)]
    enum Atom {
        A(Operator, i64),
        B(Operator, &'static str),
        AIn(Vec<i64>, bool),
        BBetween(&'static str, &'static str, bool),
    }

    const TEXTS: [&str; 7] = ["", "\0", "a", "a\0", "a\0b", "ab", "b"];

    fn cmp_holds<T: Ord>(row: T, op: Operator, v: T) -> bool {
        match op {
            Operator::Eq => row == v,
            Operator::NotEq => row != v,
            Operator::Lt => row < v,
            Operator::LtEq => row <= v,
            Operator::Gt => row > v,
            Operator::GtEq => row >= v,
            other => panic!("{other}"),
        }
    }

    impl Atom {
        fn random(rng: &mut StdRng) -> Atom {
            const OPS: [Operator; 6] =
                [Operator::Eq, Operator::NotEq, Operator::Lt, Operator::LtEq, Operator::Gt, Operator::GtEq];
            let op = OPS[rng.gen_range(0..OPS.len())];
            let text = |rng: &mut StdRng| TEXTS[rng.gen_range(0..TEXTS.len())];
            match rng.gen_range(0..4) {
                0 => Atom::A(op, rng.gen_range(-4..=4)),
                1 => Atom::B(op, text(&mut *rng)),
                2 => Atom::AIn((0..rng.gen_range(1..4)).map(|_| rng.gen_range(-4..=4)).collect(), rng.gen_bool(0.2)),
                _ => Atom::BBetween(text(&mut *rng), text(&mut *rng), rng.gen_bool(0.2)),
            }
        }

        fn holds(&self, a: i64, b: &str) -> bool {
            match self {
                Atom::A(op, v) => cmp_holds(a, *op, *v),
                Atom::B(op, v) => cmp_holds(b, *op, *v),
                Atom::AIn(list, negated) => list.contains(&a) != *negated,
                Atom::BBetween(lo, hi, negated) => (*lo <= b && b <= *hi) != *negated,
            }
        }

        /// As DataFusion hands it over, the literal on either side.
        fn expr(&self, rng: &mut StdRng) -> Expr {
            let compare = |column: &str, op: Operator, v: Expr, rng: &mut StdRng| {
                if rng.gen() {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(col(column)), op, Box::new(v)))
                } else {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(v), op.swap().unwrap(), Box::new(col(column))))
                }
            };
            match self {
                Atom::A(op, v) => compare("a", *op, lit(*v), rng),
                Atom::B(op, v) => compare("b", *op, lit(*v), rng),
                Atom::AIn(list, negated) => col("a").in_list(list.iter().map(|v| lit(*v)).collect(), *negated),
                Atom::BBetween(lo, hi, false) => col("b").between(lit(*lo), lit(*hi)),
                Atom::BBetween(lo, hi, true) => col("b").not_between(lit(*lo), lit(*hi)),
            }
        }
    }

    #[test]
    fn scans_read_every_matching_row() {
        // Pushdown is `Inexact`: the scan may read more rows than match, never fewer. Random
        // conjunctions over every row of a small domain (both key columns, values inside and
        // outside it, text that is a prefix of other text and holds NUL).
        let t = table(&[("a", SqlType::BigInt), ("b", SqlType::Text)], &[0, 1]);
        let seed = std::env::var("RAFTABLE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut points, mut ranges) = (0, 0);
        for _ in 0..3000 {
            let atoms: Vec<Atom> = (0..rng.gen_range(1..=4)).map(|_| Atom::random(&mut rng)).collect();
            let exprs: Vec<Expr> = atoms.iter().map(|a| a.expr(&mut rng)).collect();
            let filters = if rng.gen() { exprs } else { vec![exprs.into_iter().reduce(Expr::and).unwrap()] };
            let scan = key_scan(&t, &filters);
            match &scan {
                KeyScan::Points(_) => points += 1,
                KeyScan::Range { start, end } if !start.is_empty() || !end.is_empty() => ranges += 1,
                KeyScan::Range { .. } => {}
            }
            for a in -3..=3 {
                for b in TEXTS {
                    if !atoms.iter().all(|atom| atom.holds(a, b)) {
                        continue;
                    }
                    let pk = [enc(a), enc(b)].concat();
                    let read = match &scan {
                        KeyScan::Points(keys) => keys.contains(&pk),
                        KeyScan::Range { start, end } => *start <= pk && (end.is_empty() || pk < *end),
                    };
                    assert!(read, "seed {seed}: ({a}, {b:?}) matches {atoms:?} but {scan:?} does not read it");
                }
            }
        }
        // Not vacuous: most cases narrow the scan.
        assert!(points > 30 && ranges > 300, "{points} point and {ranges} range scans");
    }
}
