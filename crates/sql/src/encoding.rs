//! How table rows are laid out in the shards' key/value space.
//!
//! Key: `0x01 ‖ table id (u32 BE) ‖ bucket (u16 BE) ‖ primary key`, the primary key columns in an
//! order-preserving (memcomparable) encoding, so a primary-key range is a key range within each
//! bucket. The bucket is a hash of the encoded primary key modulo the table's shard count, and
//! shard `i` of a table owns exactly bucket `i` (`[prefix ‖ i, prefix ‖ i+1)`): a point lookup
//! goes to one shard, a range scan reads the range in every shard.
//!
//! Value: every column in declaration order, each a presence byte (0 = NULL) and the value
//! (fixed-width big-endian numbers, length-prefixed bytes). For simplicity the key columns are
//! stored in the value too, so decoding a row never parses its key. A later MVCC version
//! suffix goes after the key.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array, Float64Builder,
    Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use raftable_common::{Error, KeyRange, Result};

use crate::table::TableDef;

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
    let v = if v == 0.0 { 0.0 } else { v }; // -0 and 0 are one key
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
        Self { types, slots, builders, schema, rows: 0 }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one stored value, appending its projected columns.
    pub fn push(&mut self, value: &[u8]) -> Result<()> {
        let mut pos = 0usize;
        for (col, ty) in self.types.iter().enumerate() {
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
