//! Statement results on the wire: RowDescription fields from an Arrow schema, DataRows encoded
//! lazily from the RecordBatch stream (text or binary per column, by arrow-pg except Decimal128,
//! see `types::numeric`), command tags, notices, and the transaction status a command leaves behind.
//!
//! In the flow (pgwire session → `sql::Session` → shards) this is the way back: the
//! `sql::Output` of a statement becomes the messages both query protocols send.

use std::fmt::{Debug, Write as _};
use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use bytes::BytesMut;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float32Type, Float64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::execution::SendableRecordBatchStream;
use futures::{future, stream, Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, SendableRowStream, Tag};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{DataRow, NoData, RowDescription};
use pgwire::messages::response::{CommandComplete, NoticeResponse};
use pgwire::messages::PgWireBackendMessage;
use raftable_common::pgtext::{format_float4, format_float8};
use raftable_sql::from_datafusion;

use super::cancel::CancelToken;
use super::connection::Connection;
use super::sqlstate::user_error;
use super::types::Numeric;

/// The pg fields of `schema`'s columns, each in the format the client asked for.
pub(super) fn fields(schema: &Schema, format: &Format) -> PgWireResult<Arc<Vec<FieldInfo>>> {
    if let Format::Individual(codes) = format {
        if codes.len() != schema.fields().len() {
            let n = schema.fields().len();
            return Err(user_error(
                "08P01",
                format!("bind message has {} result formats but query has {n} columns", codes.len()),
            ));
        }
    }
    let mut fields = arrow_schema_to_pg_fields(schema, format, None)?;
    // A column of a table names it (its OID and column number), as PostgreSQL's do: pgJDBC
    // looks nullability and serial-ness up in pg_attribute by them.
    // A vector column (`pg_index.indkey`) is described as its PostgreSQL type, not an array.
    for (info, field) in fields.iter_mut().zip(schema.fields()) {
        let origin = raftable_sql::column_origin(field);
        let vector = match raftable_sql::vector_type(field) {
            Some("int2vector") => Some(Type::INT2_VECTOR),
            Some("oidvector") => Some(Type::OID_VECTOR),
            _ => None,
        };
        if origin.is_some() || vector.is_some() {
            let datatype = vector.unwrap_or_else(|| info.datatype().clone());
            let (table, column) = origin.unzip();
            *info = FieldInfo::new(info.name().into(), table, column, datatype, info.format());
        }
    }
    Ok(Arc::new(fields))
}

/// RowDescription for `fields`, or NoData for a statement that returns no rows.
pub(super) fn describe(fields: Option<&[FieldInfo]>) -> PgWireBackendMessage {
    match fields {
        Some(fields) => {
            PgWireBackendMessage::RowDescription(RowDescription::new(fields.iter().map(Into::into).collect()))
        }
        None => PgWireBackendMessage::NoData(NoData::new()),
    }
}

/// DataRows encoded from `batches` one batch at a time, as the client reads them. A failing
/// batch ends the stream with its error (an unknown outcome breaks the connection).
pub(super) fn row_stream(
    batches: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    conn: Arc<Connection>,
) -> SendableRowStream {
    let rows = batches
        .map(move |batch| -> SendableRowStream {
            match batch {
                Ok(batch) => Box::pin(stream::iter(BatchRows::new(batch, fields.clone()))),
                Err(e) => Box::pin(stream::once(future::ready(Err(conn.fail(&from_datafusion(e)))))),
            }
        })
        .flatten()
        .fuse();
    Box::pin(rows)
}

/// The DataRows of one batch, encoded as they are read: each column by arrow-pg, except
/// Decimal128 columns, which `types::Numeric` encodes (all 38 digits, and the scale of a zero).
struct BatchRows {
    batch: RecordBatch,
    fields: Arc<Vec<FieldInfo>>,
    /// The next row; past the end after an error.
    row: usize,
    encoder: DataRowEncoder,
    /// The encoding of the current NUMERIC cell.
    numeric: BytesMut,
}

impl BatchRows {
    fn new(batch: RecordBatch, fields: Arc<Vec<FieldInfo>>) -> Self {
        BatchRows {
            batch,
            fields: fields.clone(),
            row: 0,
            encoder: DataRowEncoder::new(fields),
            numeric: BytesMut::new(),
        }
    }

    fn encode_row(&mut self) -> PgWireResult<DataRow> {
        let BatchRows { batch, fields, row, encoder, numeric } = self;
        if batch.num_columns() != fields.len() {
            let (columns, fields) = (batch.num_columns(), fields.len());
            return Err(user_error("XX000", format!("result batch has {columns} columns but the result has {fields}")));
        }
        let schema = batch.schema_ref();
        for (col, (column, pg_field)) in batch.columns().iter().zip(fields.iter()).enumerate() {
            let vector = [Type::INT2_VECTOR, Type::OID_VECTOR].contains(pg_field.datatype());
            match column.data_type() {
                DataType::List(_) if vector && pg_field.format() == FieldFormat::Text => {
                    vector_text(encoder, numeric, column, *row, pg_field)?
                }
                DataType::Decimal128(_, scale) => {
                    let format = pg_field.format();
                    encode_cell::<Decimal128Type>(encoder, numeric, column, *row, pg_field, |v, buf| {
                        self::numeric(v, *scale, format, buf)
                    })?
                }
                // PostgreSQL's float text (`1`, `1e+20`, `-0`), not Rust's or arrow-pg's (`1.0`).
                DataType::Float64 if pg_field.format() == FieldFormat::Text => {
                    encode_cell::<Float64Type>(encoder, numeric, column, *row, pg_field, |v, buf| {
                        buf.extend_from_slice(format_float8(v).as_bytes());
                        Ok(())
                    })?
                }
                DataType::Float32 if pg_field.format() == FieldFormat::Text => {
                    encode_cell::<Float32Type>(encoder, numeric, column, *row, pg_field, |v, buf| {
                        buf.extend_from_slice(format_float4(v).as_bytes());
                        Ok(())
                    })?
                }
                DataType::Timestamp(unit, tz) if pg_field.format() == FieldFormat::Text => {
                    // Stored timestamps are microseconds; DataFusion's casts and functions
                    // make nanoseconds (or seconds: `to_timestamp(double)`).
                    let with_tz = tz.is_some();
                    let (encoder, row) = (&mut *encoder, *row);
                    match unit {
                        TimeUnit::Second => {
                            encode_cell::<TimestampSecondType>(encoder, numeric, column, row, pg_field, |v, buf| {
                                timestamp_text(v.saturating_mul(1_000_000), with_tz, buf)
                            })?
                        }
                        TimeUnit::Millisecond => encode_cell::<TimestampMillisecondType>(
                            encoder,
                            numeric,
                            column,
                            row,
                            pg_field,
                            |v, buf| timestamp_text(v.saturating_mul(1_000), with_tz, buf),
                        )?,
                        TimeUnit::Microsecond => encode_cell::<TimestampMicrosecondType>(
                            encoder,
                            numeric,
                            column,
                            row,
                            pg_field,
                            |v, buf| timestamp_text(v, with_tz, buf),
                        )?,
                        TimeUnit::Nanosecond => encode_cell::<TimestampNanosecondType>(
                            encoder,
                            numeric,
                            column,
                            row,
                            pg_field,
                            |v, buf| timestamp_text(v.div_euclid(1_000), with_tz, buf),
                        )?,
                    }
                }
                _ => encode_value(encoder, column, *row, schema.field(col), pg_field)?,
            }
        }
        Ok(encoder.take_row())
    }
}

/// Encodes row `row` of a primitive `column` with `write`, which puts the cell's bytes (in the
/// field's format) into `buf`, handed to `encoder` by [`put_cell`].
fn encode_cell<T: ArrowPrimitiveType>(
    encoder: &mut DataRowEncoder,
    buf: &mut BytesMut,
    column: &ArrayRef,
    row: usize,
    pg_field: &FieldInfo,
    write: impl FnOnce(T::Native, &mut BytesMut) -> PgWireResult<()>,
) -> PgWireResult<()> {
    let Some(array) = column.as_primitive_opt::<T>() else {
        return Err(user_error("XX000", format!("column {} is not a {:?} array", pg_field.name(), T::DATA_TYPE)));
    };
    let cell = if array.is_null(row) {
        None
    } else {
        buf.clear();
        write(array.value(row), buf)?;
        Some(&buf[..])
    };
    put_cell(encoder, cell, pg_field)
}

/// Hands a cell's bytes (already in the field's format) to `encoder`: in binary format, whose
/// `to_sql` copies them as they are whatever the format (a DataRow does not record it).
fn put_cell(encoder: &mut DataRowEncoder, cell: Option<&[u8]>, pg_field: &FieldInfo) -> PgWireResult<()> {
    encoder.encode_field_with_type_and_format(
        &cell,
        pg_field.datatype(),
        FieldFormat::Binary,
        pg_field.format_options(),
    )
}

/// Row `row` of a list `column` as the text of a PostgreSQL vector (`1 3`), through `buf`.
fn vector_text(
    encoder: &mut DataRowEncoder,
    buf: &mut BytesMut,
    column: &ArrayRef,
    row: usize,
    pg_field: &FieldInfo,
) -> PgWireResult<()> {
    let Some(lists) = column.as_list_opt::<i32>() else {
        return Err(user_error("XX000", format!("column {} is not a list array", pg_field.name())));
    };
    let cell = if lists.is_null(row) {
        None
    } else {
        let items = datafusion::arrow::compute::cast(&lists.value(row), &DataType::Utf8)
            .map_err(|e| user_error("XX000", format!("encoding {}: {e}", pg_field.name())))?;
        buf.clear();
        for (i, item) in items.as_string::<i32>().iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b" ");
            }
            buf.extend_from_slice(item.unwrap_or("0").as_bytes());
        }
        Some(&buf[..])
    };
    put_cell(encoder, cell, pg_field)
}

/// A microsecond timestamp as PostgreSQL's text output shows it: the fraction without trailing
/// zeros (none at all when zero), `+00` for timestamptz (UTC).
fn timestamp_text(micros: i64, with_tz: bool, buf: &mut BytesMut) -> PgWireResult<()> {
    let Some(t) = datafusion::arrow::temporal_conversions::timestamp_us_to_datetime(micros) else {
        return Err(user_error("22008", format!("timestamp {micros} µs out of range")));
    };
    let fraction = micros.rem_euclid(1_000_000);
    let whole = t.format("%Y-%m-%d %H:%M:%S");
    let text = if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{fraction:06}").trim_end_matches('0'))
    };
    buf.extend_from_slice(text.as_bytes());
    if with_tz {
        buf.extend_from_slice(b"+00");
    }
    Ok(())
}

/// A Decimal128 value as PostgreSQL would send it in `format` (all 38 digits, and the scale of
/// a zero, which arrow-pg's rust_decimal path loses).
fn numeric(value: i128, scale: i8, format: FieldFormat, buf: &mut BytesMut) -> PgWireResult<()> {
    let numeric = Numeric::new(value, scale);
    match format {
        FieldFormat::Text => {
            write!(buf, "{numeric}").map_err(|e| user_error("XX000", format!("encoding numeric {numeric:?}: {e}")))
        }
        FieldFormat::Binary => {
            numeric.write_binary(buf);
            Ok(())
        }
    }
}

impl Iterator for BatchRows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row >= self.batch.num_rows() {
            return None;
        }
        let row = self.encode_row();
        // A failed row ends the batch (the encoder holds part of it).
        self.row = if row.is_ok() { self.row + 1 } else { usize::MAX };
        Some(row)
    }
}

/// Sends up to `max_rows` rows (0: all). Returns how many were sent and whether the stream may
/// have more (it stopped at `max_rows`). With a token, a cancel request fails it with 57014.
pub(super) async fn send_rows<C>(
    client: &mut C,
    rows: &mut SendableRowStream,
    max_rows: usize,
    mut cancel: Option<&mut CancelToken>,
) -> PgWireResult<(usize, bool)>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<C::Error>,
{
    let mut sent = 0;
    while max_rows == 0 || sent < max_rows {
        let row = match cancel.as_deref_mut() {
            Some(token) => tokio::select! {
                biased;
                () = token.cancelled() => Some(Err(PgWireError::QueryCanceled)),
                row = rows.next() => row,
            },
            None => rows.next().await,
        };
        let Some(row) = row else {
            return Ok((sent, false));
        };
        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
        sent += 1;
    }
    Ok((sent, true))
}

/// Sends `notices` (warnings of the statement) ahead of its completion.
pub(super) async fn send_notices<C>(client: &mut C, notices: Vec<NoticeResponse>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<C::Error>,
{
    for notice in notices {
        client.feed(PgWireBackendMessage::NoticeResponse(notice)).await?;
    }
    Ok(())
}

/// CommandComplete of a statement that returned `rows` rows: `SELECT 3`, `INSERT 0 3`, `SHOW`.
pub(super) fn rows_complete(command: &str, rows: usize) -> PgWireBackendMessage {
    let tag = match command {
        "SHOW" => Tag::new(command),
        "INSERT" => Tag::new("INSERT 0").with_rows(rows),
        _ => Tag::new(command).with_rows(rows),
    };
    PgWireBackendMessage::CommandComplete(tag.into())
}

/// CommandComplete of a command with its full tag (`CREATE TABLE`, `UPDATE 2`, `BEGIN`).
pub(super) fn command_complete(tag: &str) -> PgWireBackendMessage {
    PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.to_string()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    fn tag(message: PgWireBackendMessage) -> String {
        match message {
            PgWireBackendMessage::CommandComplete(c) => c.tag,
            other => panic!("not a CommandComplete: {other:?}"),
        }
    }

    #[test]
    fn command_tags() {
        assert_eq!(tag(rows_complete("SELECT", 3)), "SELECT 3");
        assert_eq!(tag(rows_complete("INSERT", 2)), "INSERT 0 2");
        assert_eq!(tag(rows_complete("UPDATE", 0)), "UPDATE 0");
        assert_eq!(tag(rows_complete("SHOW", 1)), "SHOW");
        assert_eq!(tag(command_complete("CREATE TABLE")), "CREATE TABLE");
        assert_eq!(tag(command_complete("INSERT 0 3")), "INSERT 0 3");
    }

    /// The cells of a DataRow: each value's bytes, or None for NULL.
    fn cells(row: &DataRow) -> Vec<Option<Vec<u8>>> {
        let mut data = &row.data[..];
        let mut cells = Vec::new();
        while !data.is_empty() {
            let (len, rest) = data.split_at(4);
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            let Ok(len) = usize::try_from(len) else {
                cells.push(None);
                data = rest;
                continue;
            };
            let (value, rest) = rest.split_at(len);
            cells.push(Some(value.to_vec()));
            data = rest;
        }
        assert_eq!(cells.len(), usize::try_from(row.field_count).unwrap());
        cells
    }

    #[test]
    fn rows_encode_numeric_like_postgres() {
        use datafusion::arrow::array::{Decimal128Array, Int32Array, StringArray};

        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(38, 2), true),
            Field::new("name", DataType::Utf8, true),
        ]));
        // 1.50, 0.00, NULL and a 38-digit value (beyond rust_decimal's 28 digits).
        let big = 10_i128.pow(38) - 1;
        let amounts =
            Decimal128Array::from(vec![Some(150), Some(0), None, Some(-big)]).with_precision_and_scale(38, 2).unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
                Arc::new(amounts),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c"), Some("d")])),
            ],
        )
        .unwrap();

        let text = fields(&schema, &Format::UnifiedText).unwrap();
        let rows: Vec<DataRow> = BatchRows::new(batch.clone(), text).collect::<PgWireResult<_>>().unwrap();
        let rows: Vec<_> = rows.iter().map(cells).collect();
        let t = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(rows[0], [t("1"), t("1.50"), t("a")]);
        assert_eq!(rows[1], [t("2"), t("0.00"), None]);
        assert_eq!(rows[2], [t("3"), None, t("c")]);
        assert_eq!(rows[3][1], t(&format!("-{}.99", "9".repeat(36))));

        let binary = fields(&schema, &Format::UnifiedBinary).unwrap();
        let rows: Vec<DataRow> = BatchRows::new(batch, binary).collect::<PgWireResult<_>>().unwrap();
        let rows: Vec<_> = rows.iter().map(cells).collect();
        let numeric = |words: &[u16]| Some(words.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>());
        assert_eq!(rows[0], [Some(1_i32.to_be_bytes().to_vec()), numeric(&[2, 0, 0, 2, 1, 5000]), t("a")]);
        assert_eq!(rows[1], [Some(2_i32.to_be_bytes().to_vec()), numeric(&[0, 0, 0, 2]), None]);
        assert_eq!(rows[2][1], None);
        let mut nines = vec![10, 8, 0x4000, 2];
        nines.extend([9999; 9]);
        nines.push(9900);
        assert_eq!(rows[3][1], numeric(&nines));
    }

    #[test]
    fn timestamps_of_every_unit_print_like_postgres() {
        use datafusion::arrow::array::{TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("us", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())), true),
        ]));
        // 2026-01-01 10:00:00 and 1969-12-31 23:59:59.9995 (before the epoch: rounds down).
        let secs = 1_767_261_600_i64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampSecondArray::from(vec![Some(secs), None])),
                Arc::new(TimestampMicrosecondArray::from(vec![secs * 1_000_000 + 250_000, -500])),
                Arc::new(TimestampNanosecondArray::from(vec![secs * 1_000_000_000, -500_000]).with_timezone("+00:00")),
            ],
        )
        .unwrap();
        let text = fields(&schema, &Format::UnifiedText).unwrap();
        let rows: Vec<DataRow> = BatchRows::new(batch, text).collect::<PgWireResult<_>>().unwrap();
        let rows: Vec<_> = rows.iter().map(cells).collect();
        let t = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(rows[0], [t("2026-01-01 10:00:00"), t("2026-01-01 10:00:00.25"), t("2026-01-01 10:00:00+00")]);
        assert_eq!(rows[1], [None, t("1969-12-31 23:59:59.9995"), t("1969-12-31 23:59:59.9995+00")]);
    }

    #[test]
    fn field_types_and_formats() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int16, true),
            Field::new("b", DataType::Int32, true),
            Field::new("c", DataType::Int64, true),
            Field::new("d", DataType::Float32, true),
            Field::new("e", DataType::Float64, true),
            Field::new("f", DataType::Decimal128(10, 2), true),
            Field::new("g", DataType::Boolean, true),
            Field::new("h", DataType::Utf8, true),
            Field::new("i", DataType::Binary, true),
            Field::new("j", DataType::Date32, true),
            Field::new("k", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("l", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true),
        ]);
        let fields = fields(&schema, &Format::UnifiedBinary).unwrap();
        let oids: Vec<u32> = fields.iter().map(|f| f.datatype().oid()).collect();
        assert_eq!(oids, [21, 23, 20, 700, 701, 1700, 16, 25, 17, 1082, 1114, 1184]);
        assert!(fields.iter().all(|f| f.format() == pgwire::api::results::FieldFormat::Binary));
        assert!(super::fields(&schema, &Format::Individual(vec![0, 1])).is_err());
    }
}
