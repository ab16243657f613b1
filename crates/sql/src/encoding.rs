//! How table rows are laid out in the shards' key/value space.
//!
//! Key: `0x01 ‖ table id (u32 BE) ‖ bucket (u16 BE) ‖ primary key`, the primary key columns in an
//! order-preserving (memcomparable) encoding, so a primary-key range is a key range within each
//! bucket. The bucket is a hash of the encoded primary key modulo the table's shard count, and
//! shard `i` of a table owns exactly bucket `i` (`[prefix ‖ i, prefix ‖ i+1)`): a point lookup
//! goes to one shard, a range scan reads the range in every shard.
//!
//! Value: every column in declaration order, each a presence byte (0 = NULL) and the value
//! (fixed-width big-endian numbers, length-prefixed bytes). A value that ends before a column
//! was stored before ALTER TABLE added it: it reads as the column's `missing` value. For simplicity the key columns are
//! stored in the value too, so decoding a row never parses its key. A later MVCC version
//! suffix goes after the key.
//!
//! Secondary index entries ([`index_entry`]) are laid out the same way in the index's own key
//! space: `0x01 ‖ index id ‖ bucket ‖ indexed values [‖ primary key]` → primary key.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array, Float64Builder,
    Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, KeyRange, Result, ShardId};

use crate::table::{ColumnDef, IndexDef, TableDef};
use crate::types::coerce_scalar;

/// First byte of every table key (meta keys start with 0x00).
const TABLE_KEYSPACE: u8 = 0x01;

/// `0x01 ‖ table id`: the prefix of all of a table's keys.
pub fn table_prefix(table: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(7);
    k.push(TABLE_KEYSPACE);
    k.extend_from_slice(&table.to_be_bytes());
    k
}

/// `0x01 ‖ table id ‖ bucket`: the prefix of one shard's keys.
pub fn bucket_prefix(table: u32, bucket: u16) -> Vec<u8> {
    let mut k = table_prefix(table);
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

/// The key range of shard `bucket` of a table with `buckets` shards.
pub fn bucket_range(table: u32, bucket: u16, buckets: u16) -> KeyRange {
    let end = if bucket + 1 == buckets { table_prefix(table + 1) } else { bucket_prefix(table, bucket + 1) };
    KeyRange::new(bucket_prefix(table, bucket), end)
}

/// The bucket of an encoded primary key: FNV-1a, stable across processes and versions.
pub fn bucket_of(pk: &[u8], buckets: u16) -> u16 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in pk {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % u64::from(buckets)) as u16
}

/// The full row key for an encoded primary key.
pub fn row_key(table: &TableDef, pk: &[u8]) -> Vec<u8> {
    let mut k = bucket_prefix(table.id, bucket_of(pk, table.buckets));
    k.extend_from_slice(pk);
    k
}

/// Marks a NULL in an index key: after every value's marker, as PostgreSQL sorts NULLs last.
const INDEX_NULL: u8 = 0x02;
const INDEX_VALUE: u8 = 0x01;

/// Appends the index-key encoding of `array[row]`: a marker byte, then (not NULL) the value's
/// memcomparable encoding.
pub fn encode_index_part(out: &mut Vec<u8>, array: &dyn Array, row: usize) -> Result<()> {
    if array.is_null(row) {
        out.push(INDEX_NULL);
        return Ok(());
    }
    out.push(INDEX_VALUE);
    encode_key_part(out, array, row)
}

/// One row's entry in an index: `0x01 ‖ index id ‖ bucket ‖ indexed values [‖ pk]`, the bucket
/// a hash of the encoded indexed values (so equality on every indexed column reads one shard).
/// The key of a unique index's entry is the values alone (a second row with them collides),
/// unless one of them is NULL: then, as a non-unique index's, the primary key follows (NULLs
/// never collide, PostgreSQL's NULLS DISTINCT). The value is the encoded primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub shard: ShardId,
    pub key: Vec<u8>,
    pub pk: Vec<u8>,
    /// The key must not hold another row's entry.
    pub unique: bool,
}

pub fn index_entry(index: &IndexDef, columns: &[ArrayRef], row: usize, pk: &[u8]) -> Result<IndexEntry> {
    let mut values = Vec::with_capacity(16);
    let mut null = false;
    for &c in &index.columns {
        null |= columns[c].is_null(row);
        encode_index_part(&mut values, columns[c].as_ref(), row)?;
    }
    let bucket = bucket_of(&values, index.buckets);
    let mut key = bucket_prefix(index.id, bucket);
    key.extend_from_slice(&values);
    let unique = index.unique && !null;
    if !unique {
        key.extend_from_slice(pk);
    }
    Ok(IndexEntry { shard: index.shards[bucket as usize], key, pk: pk.to_vec(), unique })
}

/// The smallest key greater than every key starting with `prefix` (empty: no such key).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    end
}

/// Appends the memcomparable encoding of `array[row]` (not NULL: key columns never are).
pub fn encode_key_part(out: &mut Vec<u8>, array: &dyn Array, row: usize) -> Result<()> {
    if array.is_null(row) {
        return Err(Error::NotNullViolation("primary key column must not be null".into()));
    }
    let any = array.as_any();
    macro_rules! int {
        ($t:ty) => {
            out.extend_from_slice(
                &((any.downcast_ref::<$t>().unwrap().value(row) as i64 as u64) ^ (1 << 63)).to_be_bytes(),
            )
        };
    }
    match array.data_type() {
        DataType::Int16 => int!(Int16Array),
        DataType::Int32 => int!(Int32Array),
        DataType::Int64 => int!(Int64Array),
        DataType::Date32 => int!(Date32Array),
        DataType::Timestamp(_, _) => int!(TimestampMicrosecondArray),
        DataType::Float32 => float(out, f64::from(any.downcast_ref::<Float32Array>().unwrap().value(row))),
        DataType::Float64 => float(out, any.downcast_ref::<Float64Array>().unwrap().value(row)),
        DataType::Decimal128(_, _) => {
            let v = any.downcast_ref::<Decimal128Array>().unwrap().value(row);
            out.extend_from_slice(&((v as u128) ^ (1 << 127)).to_be_bytes());
        }
        DataType::Boolean => out.push(u8::from(any.downcast_ref::<BooleanArray>().unwrap().value(row))),
        DataType::Utf8 => bytes(out, any.downcast_ref::<StringArray>().unwrap().value(row).as_bytes()),
        DataType::Binary => bytes(out, any.downcast_ref::<BinaryArray>().unwrap().value(row)),
        other => return Err(Error::Internal(format!("no key encoding for {other}"))),
    }
    Ok(())
}

/// Floats sort by their bits once negative ones are inverted and positive ones get the sign bit.
fn float(out: &mut Vec<u8>, v: f64) {
    // -0 and 0 are one key, and so is every NaN (one value in PostgreSQL, above +Infinity):
    // `'Infinity' - 'Infinity'` gives a NaN with the sign bit set on x86-64.
    let v = if v.is_nan() {
        f64::NAN
    } else if v == 0.0 {
        0.0
    } else {
        v
    };
    let bits = v.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    out.extend_from_slice(&ordered.to_be_bytes());
}

/// Bytes with 0x00 escaped as 0x00 0xff and a 0x00 0x01 terminator: order-preserving and
/// prefix-free, so a composite key's next column starts at a known place.
fn bytes(out: &mut Vec<u8>, v: &[u8]) {
    for b in v {
        out.push(*b);
        if *b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The encoded primary key of row `row` of `columns` (the table's columns, in order).
pub fn encode_pk(table: &TableDef, columns: &[ArrayRef], row: usize) -> Result<Vec<u8>> {
    let mut pk = Vec::with_capacity(16);
    for &i in &table.pk {
        encode_key_part(&mut pk, columns[i].as_ref(), row).map_err(|e| match e {
            Error::NotNullViolation(_) => Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                table.columns[i].name, table.name
            )),
            e => e,
        })?;
    }
    Ok(pk)
}

/// Encodes row `row` of `columns` (the table's columns, in order) as a stored value.
pub fn encode_value(out: &mut Vec<u8>, columns: &[ArrayRef], row: usize) -> Result<()> {
    for array in columns {
        if array.is_null(row) {
            out.push(0);
            continue;
        }
        out.push(1);
        let any = array.as_any();
        match array.data_type() {
            DataType::Int16 => {
                out.extend_from_slice(&any.downcast_ref::<Int16Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Int32 => {
                out.extend_from_slice(&any.downcast_ref::<Int32Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Int64 => {
                out.extend_from_slice(&any.downcast_ref::<Int64Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Date32 => {
                out.extend_from_slice(&any.downcast_ref::<Date32Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Timestamp(_, _) => out
                .extend_from_slice(&any.downcast_ref::<TimestampMicrosecondArray>().unwrap().value(row).to_be_bytes()),
            DataType::Float32 => {
                out.extend_from_slice(&any.downcast_ref::<Float32Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Float64 => {
                out.extend_from_slice(&any.downcast_ref::<Float64Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Decimal128(_, _) => {
                out.extend_from_slice(&any.downcast_ref::<Decimal128Array>().unwrap().value(row).to_be_bytes())
            }
            DataType::Boolean => out.push(u8::from(any.downcast_ref::<BooleanArray>().unwrap().value(row))),
            DataType::Utf8 => length_prefixed(out, any.downcast_ref::<StringArray>().unwrap().value(row).as_bytes()),
            DataType::Binary => length_prefixed(out, any.downcast_ref::<BinaryArray>().unwrap().value(row)),
            other => return Err(Error::Internal(format!("no value encoding for {other}"))),
        }
    }
    Ok(())
}

fn length_prefixed(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// Decodes stored values into Arrow arrays of the projected columns.
pub struct RowDecoder {
    /// Per table column, its arrow type.
    types: Vec<DataType>,
    /// Per table column, the index of its builder when projected.
    slots: Vec<Option<usize>>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    /// Per table column added by ALTER TABLE, what a row stored before holds in it: the
    /// encoded value, or None for NULL (outer None: not an added column).
    missing: Vec<Option<Option<Vec<u8>>>>,
    schema: SchemaRef,
    rows: usize,
}

impl RowDecoder {
    /// A decoder producing batches of `schema`, whose fields are the table's columns at
    /// `projection` (indexes into the table's columns).
    pub fn new(table: &TableDef, projection: &[usize], schema: SchemaRef) -> Self {
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty.arrow()).collect();
        let mut slots = vec![None; types.len()];
        let mut builders = Vec::with_capacity(projection.len());
        for (slot, &col) in projection.iter().enumerate() {
            slots[col] = Some(slot);
            builders.push(datafusion::arrow::array::make_builder(&types[col], 256));
        }
        let missing = table
            .columns
            .iter()
            .map(|c| c.added.then(|| c.missing.as_ref().and_then(|text| missing_value(c, text))))
            .collect();
        Self { types, slots, builders, missing, schema, rows: 0 }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one stored value, appending its projected columns.
    pub fn push(&mut self, value: &[u8]) -> Result<()> {
        let mut pos = 0usize;
        for (col, ty) in self.types.iter().enumerate() {
            if let (true, Some(missing)) = (pos == value.len(), &self.missing[col]) {
                // The row was stored before this column (and those after it) was added.
                if let Some(slot) = self.slots[col] {
                    append(self.builders[slot].as_mut(), ty, missing.as_deref())?;
                }
                continue;
            }
            let present = *value.get(pos).ok_or_else(truncated)? == 1;
            pos += 1;
            let width = if present { width(ty, value, pos)? } else { 0 };
            let field = value.get(pos..pos + width).ok_or_else(truncated)?;
            pos += width;
            if let Some(slot) = self.slots[col] {
                append(self.builders[slot].as_mut(), ty, present.then_some(field))?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows decoded so far as one batch; the decoder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| Error::Internal(format!("decoded batch: {e}")))
    }
}

/// A column's value for rows stored before it was added, encoded (without the presence byte).
fn missing_value(column: &ColumnDef, text: &str) -> Option<Vec<u8>> {
    let value = coerce_scalar(&column.ty, &column.name, &ScalarValue::Utf8(Some(text.to_string()))).ok()?;
    let array = value.to_array().ok()?;
    let mut out = Vec::new();
    encode_value(&mut out, &[array], 0).ok()?;
    (out.first() == Some(&1)).then(|| out[1..].to_vec())
}

fn truncated() -> Error {
    Error::InvalidData("stored row is truncated".into())
}

/// The encoded width of a present value starting at `pos`.
fn width(ty: &DataType, value: &[u8], pos: usize) -> Result<usize> {
    Ok(match ty {
        DataType::Boolean => 1,
        DataType::Int16 => 2,
        DataType::Int32 | DataType::Date32 | DataType::Float32 => 4,
        DataType::Int64 | DataType::Timestamp(_, _) | DataType::Float64 => 8,
        DataType::Decimal128(_, _) => 16,
        DataType::Utf8 | DataType::Binary => {
            let len: [u8; 4] = value.get(pos..pos + 4).ok_or_else(truncated)?.try_into().expect("4 bytes");
            4 + u32::from_be_bytes(len) as usize
        }
        other => return Err(Error::Internal(format!("no value decoding for {other}"))),
    })
}

fn append(builder: &mut dyn ArrayBuilder, ty: &DataType, field: Option<&[u8]>) -> Result<()> {
    let any = builder.as_any_mut();
    macro_rules! fixed {
        ($b:ty, $t:ty, $n:literal) => {{
            let b = any.downcast_mut::<$b>().unwrap();
            match field {
                Some(f) => b.append_value(<$t>::from_be_bytes(f[..$n].try_into().expect("width"))),
                None => b.append_null(),
            }
        }};
    }
    match ty {
        DataType::Int16 => fixed!(Int16Builder, i16, 2),
        DataType::Int32 => fixed!(Int32Builder, i32, 4),
        DataType::Int64 => fixed!(Int64Builder, i64, 8),
        DataType::Date32 => fixed!(Date32Builder, i32, 4),
        DataType::Timestamp(_, _) => fixed!(TimestampMicrosecondBuilder, i64, 8),
        DataType::Float32 => fixed!(Float32Builder, f32, 4),
        DataType::Float64 => fixed!(Float64Builder, f64, 8),
        DataType::Decimal128(_, _) => fixed!(Decimal128Builder, i128, 16),
        DataType::Boolean => {
            let b = any.downcast_mut::<BooleanBuilder>().unwrap();
            match field {
                Some(f) => b.append_value(f[0] == 1),
                None => b.append_null(),
            }
        }
        DataType::Utf8 => {
            let b = any.downcast_mut::<StringBuilder>().unwrap();
            match field {
                Some(f) => b.append_value(
                    std::str::from_utf8(&f[4..]).map_err(|_| Error::InvalidData("stored text is not UTF-8".into()))?,
                ),
                None => b.append_null(),
            }
        }
        DataType::Binary => {
            let b = any.downcast_mut::<BinaryBuilder>().unwrap();
            match field {
                Some(f) => b.append_value(&f[4..]),
                None => b.append_null(),
            }
        }
        other => return Err(Error::Internal(format!("no value decoding for {other}"))),
    }
    Ok(())
}

/// Decodes stored values into a batch of all the table's columns.
pub fn decode_all(table: &TableDef, values: &[&[u8]]) -> Result<RecordBatch> {
    let all: Vec<usize> = (0..table.columns.len()).collect();
    let mut decoder = RowDecoder::new(table, &all, Arc::new(table.full_schema()));
    for v in values {
        decoder.push(v)?;
    }
    decoder.finish()
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::fmt::Debug;

    use datafusion::arrow::array::UInt8Array;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::types::{SqlType, UTC};

    /// Random values per key type; every pair of them is compared.
    const CASES: usize = 400;

    /// The random cases' seed, named by every failure: `RAFTABLE_TEST_SEED` replays another.
    fn seed() -> u64 {
        std::env::var("RAFTABLE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026)
    }

    fn key(array: &dyn Array, row: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_part(&mut out, array, row).unwrap();
        out
    }

    fn keys(array: &dyn Array) -> Vec<Vec<u8>> {
        (0..array.len()).map(|row| key(array, row)).collect()
    }

    /// Every pair of encodings compares (bytewise) as PostgreSQL compares the values (`cmp`):
    /// order preserved, and equal values (only those) encoded equal.
    fn check_order<T: Debug>(what: &str, values: &[T], keys: &[Vec<u8>], cmp: impl Fn(&T, &T) -> Ordering) {
        for (a, ka) in values.iter().zip(keys) {
            for (b, kb) in values.iter().zip(keys) {
                assert_eq!(
                    ka.cmp(kb),
                    cmp(a, b),
                    "{what} (seed {}): {a:?} vs {b:?} encoded {ka:02x?} vs {kb:02x?}",
                    seed()
                );
            }
        }
    }

    /// Extremes and their neighbours, random values over the whole range, and small values
    /// (repeats, and both signs around zero).
    fn ints(rng: &mut StdRng, min: i64, max: i64) -> Vec<i64> {
        let mut v = vec![min, min + 1, -1, 0, 1, max - 1, max];
        v.extend((0..CASES).map(|_| if rng.gen() { rng.gen_range(min..=max) } else { rng.gen_range(-40..=40) }));
        v
    }

    #[test]
    fn integer_keys_sort_as_integers() {
        let mut rng = StdRng::seed_from_u64(seed());
        let v = ints(&mut rng, i16::MIN.into(), i16::MAX.into());
        let array = Int16Array::from(v.iter().map(|x| *x as i16).collect::<Vec<_>>());
        check_order("smallint", &v, &keys(&array), Ord::cmp);

        let v = ints(&mut rng, i32::MIN.into(), i32::MAX.into());
        let array = Int32Array::from(v.iter().map(|x| *x as i32).collect::<Vec<_>>());
        check_order("integer", &v, &keys(&array), Ord::cmp);
        // Dates are days since the epoch, negative before 1970.
        let array = Date32Array::from(v.iter().map(|x| *x as i32).collect::<Vec<_>>());
        check_order("date", &v, &keys(&array), Ord::cmp);

        let v = ints(&mut rng, i64::MIN, i64::MAX);
        check_order("bigint", &v, &keys(&Int64Array::from(v.clone())), Ord::cmp);
        // Timestamps are microseconds since the epoch, with or without a time zone.
        check_order("timestamp", &v, &keys(&TimestampMicrosecondArray::from(v.clone())), Ord::cmp);
        let tz = TimestampMicrosecondArray::from(v.clone()).with_timezone(UTC);
        check_order("timestamptz", &v, &keys(&tz), Ord::cmp);
    }

    #[test]
    fn integer_keys_of_every_width_encode_alike() {
        // A smallint key compared with a bigint literal is looked up with the literal's
        // encoding (scan.rs coerces first, but the bytes must not depend on the width anyway).
        for v in [i16::MIN, -1, 0, 1, i16::MAX] {
            let wide = key(&Int64Array::from(vec![i64::from(v)]), 0);
            assert_eq!(key(&Int16Array::from(vec![v]), 0), wide, "{v}");
            assert_eq!(key(&Int32Array::from(vec![i32::from(v)]), 0), wide, "{v}");
        }
    }

    /// PostgreSQL's float order: -0 equals 0, NaN equals NaN and is above +Infinity.
    fn pg_float_cmp(a: &f64, b: &f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => a.partial_cmp(b).expect("not NaN"),
        }
    }

    /// Infinities, extremes, subnormals, both zeros, NaN, random bit patterns (any NaN among
    /// them replaced by the canonical one: see `every_nan_is_one_key_above_infinity`), and
    /// small integral values (repeats).
    fn floats(rng: &mut StdRng) -> Vec<f64> {
        let tiny = f64::from_bits(1); // the smallest subnormal
        let mut v = vec![
            f64::NEG_INFINITY,
            f64::MIN,
            -1.0,
            -f64::MIN_POSITIVE,
            -tiny,
            -0.0,
            0.0,
            tiny,
            f64::MIN_POSITIVE,
            1.0,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        v.extend((0..CASES).map(|_| match rng.gen_range(0..4) {
            0 => f64::from_bits(rng.gen()),
            1 => f64::from_bits(rng.gen_range(0..1u64 << 52)) * if rng.gen() { 1.0 } else { -1.0 },
            2 => f64::from(rng.gen_range(-3i32..=3)) * if rng.gen() { 1.0 } else { -1.0 },
            _ => f64::NAN,
        }));
        v.into_iter().map(|x| if x.is_nan() { f64::NAN } else { x }).collect()
    }

    #[test]
    fn float_keys_sort_as_postgres_sorts_floats() {
        let mut rng = StdRng::seed_from_u64(seed());
        let v = floats(&mut rng);
        check_order("double precision", &v, &keys(&Float64Array::from(v.clone())), pg_float_cmp);

        let single: Vec<f32> = floats(&mut rng)
            .into_iter()
            .map(|x| x as f32)
            .chain([f32::MIN, -f32::from_bits(1), f32::from_bits(1), f32::MAX])
            .collect();
        let widened: Vec<f64> = single.iter().map(|x| f64::from(*x)).collect();
        check_order("real", &widened, &keys(&Float32Array::from(single)), pg_float_cmp);
    }

    #[test]
    fn every_nan_is_one_key_above_infinity() {
        let nan = key(&Float64Array::from(vec![f64::NAN]), 0);
        let infinity = key(&Float64Array::from(vec![f64::INFINITY]), 0);
        let inf = std::hint::black_box(f64::INFINITY);
        for other in [
            inf - inf,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_0000_0000_0001),
            f64::from(-f32::NAN),
        ] {
            let k = key(&Float64Array::from(vec![other]), 0);
            assert_eq!(k, nan, "NaN bits {:016x}", other.to_bits());
            assert!(k > infinity, "NaN bits {:016x}", other.to_bits());
        }
        assert_eq!(key(&Float32Array::from(vec![-f32::NAN]), 0), nan);
    }

    #[test]
    fn numeric_keys_sort_as_numbers() {
        // A column's values share its scale, so the unscaled integers order the numbers.
        let mut rng = StdRng::seed_from_u64(seed());
        let max = 10i128.pow(38) - 1;
        let mut v = vec![-max, -max + 1, -1, 0, 1, max - 1, max];
        v.extend((0..CASES).map(|_| if rng.gen() { rng.gen_range(-max..=max) } else { rng.gen_range(-40..=40) }));
        let array = Decimal128Array::from(v.clone()).with_precision_and_scale(38, 10).unwrap();
        check_order("numeric", &v, &keys(&array), Ord::cmp);
    }

    #[test]
    fn boolean_keys_sort_false_first() {
        let v = vec![true, false, true, false];
        check_order("boolean", &v, &keys(&BooleanArray::from(v.clone())), Ord::cmp);
    }

    /// Strings from a small alphabet (so that equal strings and prefixes of each other are
    /// common) with NUL, control, multi-byte and the highest code point.
    fn random_text(rng: &mut StdRng) -> String {
        const PIECES: [&str; 8] = ["\0", "\u{1}", " ", "a", "b", "\u{7f}", "é", "\u{10ffff}"];
        (0..rng.gen_range(0..5)).map(|_| PIECES[rng.gen_range(0..PIECES.len())]).collect()
    }

    /// Bytes from a small alphabet around the escape (0x00 0xff) and terminator (0x00 0x01).
    fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
        const BYTES: [u8; 6] = [0x00, 0x01, 0x02, 0x7f, 0xfe, 0xff];
        (0..rng.gen_range(0..6)).map(|_| BYTES[rng.gen_range(0..BYTES.len())]).collect()
    }

    /// A unique index's entry is keyed by the values alone unless one is NULL; a plain index's
    /// by the values and the primary key. Equal values land in one bucket.
    #[test]
    fn index_entries_key_by_values_then_the_primary_key() {
        let index = |unique| IndexDef {
            id: 9,
            name: "i".into(),
            columns: vec![1],
            unique,
            buckets: 4,
            shards: vec![11, 12, 13, 14],
            state: crate::table::IndexState::Public,
            constraint: false,
            options: Vec::new(),
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), Some("a"), None])),
        ];
        let pk = |row: usize| {
            let mut out = Vec::new();
            encode_key_part(&mut out, columns[0].as_ref(), row).unwrap();
            out
        };
        let entry = |unique, row| index_entry(&index(unique), &columns, row, &pk(row)).unwrap();
        let (a1, a2, null) = (entry(true, 0), entry(true, 1), entry(true, 2));
        assert!(a1.unique && a1.key == a2.key && a1.shard == a2.shard && a1.pk != a2.pk);
        assert!(!null.unique && null.key.ends_with(&pk(2)));
        let (p1, p2) = (entry(false, 0), entry(false, 1));
        assert!(!p1.unique && p1.key != p2.key && p1.shard == p2.shard);
        assert_eq!(p1.key, [a1.key.as_slice(), &pk(0)].concat());
        // Index keys start like a table's: 0x01 and the index id.
        assert_eq!(&a1.key[..5], &[0x01, 0, 0, 0, 9]);
        // NULL sorts after every value.
        let mut values = Vec::new();
        encode_index_part(&mut values, columns[1].as_ref(), 0).unwrap();
        let mut none = Vec::new();
        encode_index_part(&mut none, columns[1].as_ref(), 2).unwrap();
        assert!(values < none);
    }

    #[test]
    fn text_keys_sort_bytewise() {
        // Byte order of UTF-8 is code point order: PostgreSQL's order under the C collation.
        let mut rng = StdRng::seed_from_u64(seed());
        let mut v: Vec<String> = ["", "\0", "\0\0", "\0\u{1}", "a", "a\0", "a\0\0", "a\0b", "a\u{1}", "ab", "b"]
            .into_iter()
            .map(String::from)
            .collect();
        v.extend((0..CASES).map(|_| random_text(&mut rng)));
        let array = StringArray::from(v.clone());
        check_order("text", &v, &keys(&array), |a, b| a.as_bytes().cmp(b.as_bytes()));
    }

    #[test]
    fn bytea_keys_sort_bytewise() {
        let mut rng = StdRng::seed_from_u64(seed());
        let mut v: Vec<Vec<u8>> =
            vec![vec![], vec![0], vec![0, 0], vec![0, 1], vec![0, 0xff], vec![0, 0xff, 0, 1], vec![0xff], vec![1]];
        v.extend((0..CASES).map(|_| random_bytes(&mut rng)));
        let array = BinaryArray::from_iter_values(v.iter());
        check_order("bytea", &v, &keys(&array), Ord::cmp);
    }

    #[test]
    fn uuid_keys_sort_as_their_bytes() {
        // UUIDs are stored as canonical (lower-case, hyphenated) text; PostgreSQL orders them
        // by their 16 bytes. Bytes drawn from few values, so that long shared prefixes occur.
        let mut rng = StdRng::seed_from_u64(seed());
        let v: Vec<[u8; 16]> = (0..CASES)
            .map(|_| std::array::from_fn(|_| if rng.gen() { rng.gen() } else { rng.gen_range(0x09..=0x0a) }))
            .collect();
        let text: Vec<String> = v
            .iter()
            .map(|b| {
                let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
            })
            .collect();
        check_order("uuid", &v, &keys(&StringArray::from(text)), Ord::cmp);
    }

    fn column(name: &str, ty: SqlType) -> ColumnDef {
        ColumnDef::new(name, ty, true)
    }

    fn table(columns: Vec<ColumnDef>, pk: Vec<usize>) -> TableDef {
        TableDef {
            id: 7,
            name: "t".into(),
            columns,
            pk,
            buckets: 3,
            shards: vec![1, 2, 3],
            checks: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            referenced_by: Vec::new(),
            version: 0,
            comment: None,
        }
    }

    #[test]
    fn composite_keys_sort_column_by_column() {
        // A column's encoding is prefix-free, so a shorter first column never runs into the
        // next one: ("a", 2) < ("a\0", 1), ("", 9) < ("\0", 0).
        #[derive(Debug)]
        struct Row(String, i64, Vec<u8>);
        let mut rng = StdRng::seed_from_u64(seed());
        let mut rows: Vec<Row> = vec![
            Row("a".into(), 2, vec![]),
            Row("a\0".into(), 1, vec![]),
            Row("".into(), 9, vec![0]),
            Row("\0".into(), 0, vec![]),
            Row("a".into(), -1, vec![0, 1]),
            Row("ab".into(), i64::MIN, vec![0xff]),
        ];
        rows.extend((0..CASES).map(|_| Row(random_text(&mut rng), rng.gen_range(-2..=2), random_bytes(&mut rng))));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(BinaryArray::from_iter_values(rows.iter().map(|r| &r.2))),
        ];
        let cmp_column = |a: &Row, b: &Row, c: usize| match c {
            0 => a.0.as_bytes().cmp(b.0.as_bytes()),
            1 => a.1.cmp(&b.1),
            _ => a.2.cmp(&b.2),
        };
        for pk in [vec![0, 1], vec![1, 0], vec![2, 0, 1], vec![0, 2]] {
            let def =
                table(vec![column("s", SqlType::Text), column("i", SqlType::BigInt), column("b", SqlType::Bytea)], pk);
            let keys: Vec<Vec<u8>> = (0..rows.len()).map(|row| encode_pk(&def, &columns, row).unwrap()).collect();
            let cmp = |a: &Row, b: &Row| def.pk.iter().fold(Ordering::Equal, |o, c| o.then(cmp_column(a, b, *c)));
            check_order(&format!("key columns {:?}", def.pk), &rows, &keys, cmp);
        }
    }

    #[test]
    fn key_bytes_are_stable() {
        // The stored format: a change here orphans every row already written.
        assert_eq!(key(&Int32Array::from(vec![5]), 0), [0x80, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(key(&Int16Array::from(vec![-1]), 0), [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(key(&Float64Array::from(vec![-0.0]), 0), [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(&Float64Array::from(vec![0.0]), 0), [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(&Float64Array::from(vec![-1.0]), 0), [0x40, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(key(&StringArray::from(vec!["a\0b"]), 0), [b'a', 0x00, 0xff, b'b', 0x00, 0x01]);
        assert_eq!(key(&StringArray::from(vec![""]), 0), [0x00, 0x01]);
        assert_eq!(key(&BooleanArray::from(vec![true]), 0), [1]);
        let one = Decimal128Array::from(vec![1]).with_precision_and_scale(10, 2).unwrap();
        assert_eq!(key(&one, 0), [[0x80u8].as_slice(), &[0; 14], &[1]].concat());
        assert_eq!(table_prefix(0x0102_0304), [0x01, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(bucket_prefix(1, 0x0203), [0x01, 0, 0, 0, 1, 0x02, 0x03]);
        // FNV-1a: the empty input hashes to the offset basis.
        assert_eq!(bucket_of(&[], 1000), (0xcbf29ce484222325u64 % 1000) as u16);
        assert_eq!(bucket_of(b"a", u16::MAX), (0xaf63dc4c8601ec8cu64 % u64::from(u16::MAX)) as u16);
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(&[1, 2, 3]), [1, 2, 4]);
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), [2]);
        assert_eq!(prefix_end(&[0xff, 0xff]), Vec::<u8>::new());
        assert_eq!(prefix_end(&[]), Vec::<u8>::new());
        // The last bucket's range ends where the next table starts.
        assert_eq!(bucket_range(4, 2, 3), KeyRange::new(bucket_prefix(4, 2), table_prefix(5)));
        assert_eq!(bucket_range(4, 1, 3), KeyRange::new(bucket_prefix(4, 1), bucket_prefix(4, 2)));
    }

    #[test]
    fn null_and_unsupported_keys_are_errors() {
        let nulls = Int64Array::from(vec![Some(1), None]);
        assert!(matches!(encode_key_part(&mut Vec::new(), &nulls, 1), Err(Error::NotNullViolation(_))));
        let def = table(vec![column("k", SqlType::BigInt)], vec![0]);
        assert_eq!(
            encode_pk(&def, &[Arc::new(nulls) as ArrayRef], 1),
            Err(Error::NotNullViolation(
                "null value in column \"k\" of relation \"t\" violates not-null constraint".into()
            ))
        );
        assert!(matches!(encode_key_part(&mut Vec::new(), &UInt8Array::from(vec![1]), 0), Err(Error::Internal(_))));
    }

    /// A table with a nullable column of every SQL type.
    fn every_type() -> TableDef {
        use SqlType::*;
        let types = [
            SmallInt,
            Integer,
            BigInt,
            Real,
            Double,
            Numeric(38, 10),
            Numeric(5, 2),
            Boolean,
            Text,
            Varchar(Some(5)),
            Char(3),
            Bytea,
            Date,
            Timestamp,
            TimestampTz,
            Uuid,
            Jsonb,
        ];
        let columns = types.iter().enumerate().map(|(i, ty)| column(&format!("c{i}"), *ty)).collect();
        table(columns, vec![0])
    }

    /// A random value of an Arrow type (any bits: the value encoding must keep them all).
    fn random_value(rng: &mut StdRng, ty: &DataType) -> ScalarValue {
        match ty {
            DataType::Int16 => ScalarValue::Int16(Some(rng.gen())),
            DataType::Int32 => ScalarValue::Int32(Some(rng.gen())),
            DataType::Int64 => ScalarValue::Int64(Some(rng.gen())),
            DataType::Float32 => ScalarValue::Float32(Some(f32::from_bits(rng.gen()))),
            DataType::Float64 => ScalarValue::Float64(Some(f64::from_bits(rng.gen()))),
            DataType::Decimal128(p, s) => {
                let max = 10i128.pow(u32::from(*p)) - 1;
                ScalarValue::Decimal128(Some(rng.gen_range(-max..=max)), *p, *s)
            }
            DataType::Boolean => ScalarValue::Boolean(Some(rng.gen())),
            DataType::Utf8 => ScalarValue::Utf8(Some(random_text(rng))),
            DataType::Binary => ScalarValue::Binary(Some(random_bytes(rng))),
            DataType::Date32 => ScalarValue::Date32(Some(rng.gen())),
            DataType::Timestamp(_, tz) => ScalarValue::TimestampMicrosecond(Some(rng.gen()), tz.clone()),
            other => panic!("no random {other}"),
        }
    }

    /// Rows of `def`: one all NULL, one without NULLs, then random ones with NULLs anywhere.
    fn random_rows(def: &TableDef, rng: &mut StdRng, count: usize) -> RecordBatch {
        let columns = def
            .columns
            .iter()
            .map(|c| {
                let ty = c.ty.arrow();
                let values = (0..count).map(|row| match row {
                    0 => ScalarValue::try_from(&ty).unwrap(),
                    1 => random_value(rng, &ty),
                    _ if rng.gen_bool(0.3) => ScalarValue::try_from(&ty).unwrap(),
                    _ => random_value(rng, &ty),
                });
                ScalarValue::iter_to_array(values.collect::<Vec<_>>()).unwrap()
            })
            .collect();
        RecordBatch::try_new(Arc::new(def.full_schema()), columns).unwrap()
    }

    fn encode_rows(batch: &RecordBatch) -> Vec<Vec<u8>> {
        (0..batch.num_rows())
            .map(|row| {
                let mut out = Vec::new();
                encode_value(&mut out, batch.columns(), row).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn values_round_trip_with_nulls_in_every_type() {
        let def = every_type();
        let mut rng = StdRng::seed_from_u64(seed());
        let batch = random_rows(&def, &mut rng, 300);
        let values = encode_rows(&batch);
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let decoded = decode_all(&def, &refs).unwrap();
        for (i, (got, want)) in decoded.columns().iter().zip(batch.columns()).enumerate() {
            // Compared bitwise, so NaN payloads and -0 must survive too.
            assert_eq!(got.to_data(), want.to_data(), "column c{i} ({}), seed {}", want.data_type(), seed());
        }
        assert_eq!(decoded.num_rows(), 300);
    }

    #[test]
    fn projections_decode_only_their_columns() {
        let def = every_type();
        let mut rng = StdRng::seed_from_u64(seed());
        let batch = random_rows(&def, &mut rng, 50);
        let values = encode_rows(&batch);
        let projection = [11, 0, 8];
        let schema = Arc::new(def.full_schema().project(&projection).unwrap());
        let mut decoder = RowDecoder::new(&def, &projection, schema);
        // Batch by batch: each starts empty.
        for start in (0..values.len()).step_by(20) {
            let chunk = &values[start..values.len().min(start + 20)];
            for v in chunk {
                decoder.push(v).unwrap();
            }
            assert_eq!(decoder.rows(), chunk.len());
            let want = batch.project(&projection).unwrap().slice(start, chunk.len());
            assert_eq!(decoder.finish().unwrap(), want, "rows from {start}, seed {}", seed());
            assert_eq!(decoder.rows(), 0);
        }
        // No columns at all (count(*)): the rows are still counted.
        let mut counter = RowDecoder::new(&def, &[], Arc::new(def.full_schema().project(&[]).unwrap()));
        for v in &values {
            counter.push(v).unwrap();
        }
        assert_eq!(counter.finish().unwrap().num_rows(), 50);
    }

    #[test]
    fn rows_stored_before_a_column_was_added_read_its_missing_value() {
        let mut def = table(vec![column("id", SqlType::Integer), column("n", SqlType::Text)], vec![0]);
        let old = {
            let id: ArrayRef = Arc::new(Int32Array::from(vec![1]));
            let n: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
            let mut out = Vec::new();
            encode_value(&mut out, &[id, n], 0).unwrap();
            out
        };
        let added = |name: &str, ty, missing: Option<&str>| ColumnDef {
            added: true,
            missing: missing.map(str::to_string),
            ..column(name, ty)
        };
        def.columns.push(added("a", SqlType::BigInt, Some("-5")));
        def.columns.push(added("b", SqlType::Text, None));
        let batch = decode_all(&def, &[&old]).unwrap();
        assert_eq!(batch.column(0).as_any().downcast_ref::<Int32Array>().unwrap().value(0), 1);
        assert_eq!(batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap().value(0), -5);
        assert!(batch.column(3).is_null(0));
        // A row cut short before a column that was there from the start is damaged.
        assert_eq!(decode_all(&def, &[&old[..5]]).unwrap_err(), truncated());
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let def = every_type();
        let mut rng = StdRng::seed_from_u64(seed());
        let rows = encode_rows(&random_rows(&def, &mut rng, 2));
        let full = &rows[1]; // the row without NULLs
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let mut decoder = RowDecoder::new(&def, &all, Arc::new(def.full_schema()));
        for len in 0..full.len() {
            assert_eq!(decoder.push(&full[..len]), Err(Error::InvalidData("stored row is truncated".into())), "{len}");
        }
        // Text that is not UTF-8.
        let def = table(vec![column("s", SqlType::Text)], vec![0]);
        let mut decoder = RowDecoder::new(&def, &[0], Arc::new(def.full_schema()));
        assert!(matches!(decoder.push(&[1, 0, 0, 0, 1, 0xff]), Err(Error::InvalidData(_))));
    }
}
