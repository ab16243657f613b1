//! sqllogictest runner for raftable, over the PostgreSQL wire protocol.
//!
//! This crate sits outside the server: it connects to a running raftable node (or to a real
//! PostgreSQL, to validate the `.slt` corpus in `sql-tests/slt/`) with `tokio-postgres` and drives
//! the [`sqllogictest`] runner through [`run_file`]. Every record is sent through the extended
//! protocol (Parse/Bind/Execute, binary results) and each value is rendered to text the way
//! PostgreSQL's text output shows it (see [`render_value`]), so one expected-output file serves
//! both engines. Errors carry their SQLSTATE code (`db error: ERROR 23505: duplicate key ...`),
//! so `.slt` files assert codes with `statement error 23505`.

pub mod differential;

use std::fmt;
use std::path::{Path, PathBuf};

use sqllogictest::{DBOutput, DefaultColumnType, Runner};
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Client, NoTls};

pub use raftable_common::pgtext::{format_float4, format_float8};

/// Which engine a test file runs against; selects the `onlyif`/`skipif` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A raftable node: records marked `onlyif raftable` run, `skipif raftable` are skipped.
    Raftable,
    /// Real PostgreSQL: records marked `onlyif postgres` run, `skipif postgres` are skipped.
    Postgres,
}

impl Target {
    /// The sqllogictest label (and engine name) of this target.
    pub fn label(self) -> &'static str {
        match self {
            Target::Raftable => "raftable",
            Target::Postgres => "postgres",
        }
    }
}

/// The error of one SQL record, as matched by `statement error <regex>` / `query error <regex>`.
///
/// Server errors display as `db error: <SEVERITY> <SQLSTATE>: <message>` (plus `DETAIL:`/`HINT:`
/// lines when present); sqllogictest matches the regex anywhere in this text.
#[derive(Debug, Clone)]
pub struct SqlError(String);

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let mut s = format!("db error: {} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str("\nDETAIL: ");
                s.push_str(detail);
            }
            if let Some(hint) = db.hint() {
                s.push_str("\nHINT: ");
                s.push_str(hint);
            }
            return SqlError(s);
        }
        let mut s = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            s.push_str(": ");
            s.push_str(&cause.to_string());
            source = cause.source();
        }
        SqlError(s)
    }
}

/// One connection, as the sqllogictest runner sees a database.
pub struct PgConnection {
    client: Client,
    target: Target,
    connection_task: tokio::task::JoinHandle<()>,
}

impl PgConnection {
    /// Connects to `url` without TLS and spawns the connection task. Against PostgreSQL the
    /// session is set to `TimeZone = 'UTC'` and `DateStyle = 'ISO, MDY'`, which raftable always uses.
    pub async fn connect(url: &str, target: Target) -> Result<Self, SqlError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let connection_task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("sql-tests: connection error: {e}");
            }
        });
        if target == Target::Postgres {
            client.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'").await?;
        }
        Ok(PgConnection { client, target, connection_task })
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for PgConnection {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    /// Prepares `sql` (extended protocol), then executes it with binary results. A statement that
    /// describes result columns yields rows; any other yields its affected-row count.
    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let statement = self.client.prepare(sql).await?;
        let no_params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
        if statement.columns().is_empty() {
            let count = self.client.execute(&statement, &no_params).await?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let types: Vec<DefaultColumnType> = statement.columns().iter().map(|c| column_type(c.type_())).collect();
        let rows = self.client.query(&statement, &no_params).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let raw: Option<RawValue<'_>> = row.try_get(i)?;
                let text = match raw {
                    None => "NULL".to_owned(),
                    Some(RawValue(bytes)) => render_value(column.type_(), bytes)
                        .map_err(|e| SqlError(format!("column {} ({}): {e}", column.name(), column.type_())))?,
                };
                values.push(if text.is_empty() { "(empty)".to_owned() } else { text });
            }
            out.push(values);
        }
        Ok(DBOutput::Rows { types, rows: out })
    }

    async fn shutdown(&mut self) {
        self.connection_task.abort();
    }

    fn engine_name(&self) -> &str {
        self.target.label()
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// The sqllogictest column type letter of a PostgreSQL type: `I` for integers, `R` for floats
/// and numeric, `T` for everything else.
pub fn column_type(ty: &Type) -> DefaultColumnType {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

/// The undecoded binary bytes of one non-NULL value.
pub(crate) struct RawValue<'a>(pub(crate) &'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Runs one `.slt` file against the server at `url` on a fresh connection, with the labels of
/// `target`. The error is the runner's report of the first failing record.
pub async fn run_file(url: &str, path: &Path, target: Target) -> Result<(), String> {
    let url = url.to_owned();
    let mut runner = Runner::new(move || {
        let url = url.clone();
        async move { PgConnection::connect(&url, target).await }
    });
    runner.add_label(target.label());
    let result = runner.run_file_async(path).await.map_err(|e| e.display(false).to_string());
    runner.shutdown_async().await;
    result
}

/// All `*.slt` files under `dir` (recursively), sorted by path. Unreadable directories are skipped.
pub fn slt_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "slt") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

type RenderResult = Result<String, String>;

/// Renders one non-NULL binary value of type `ty` as PostgreSQL's text output shows it (with
/// `TimeZone = 'UTC'`, `DateStyle = 'ISO'`, `bytea_output = 'hex'`), except that booleans are
/// `t`/`f` as psql shows them. The runner replaces an empty result by `(empty)`.
pub fn render_value(ty: &Type, raw: &[u8]) -> RenderResult {
    match *ty {
        Type::BOOL => Ok(if be_u8(raw)? != 0 { "t" } else { "f" }.to_owned()),
        Type::INT2 => Ok(i16::from_be_bytes(fixed(raw)?).to_string()),
        Type::INT4 => Ok(i32::from_be_bytes(fixed(raw)?).to_string()),
        Type::INT8 => Ok(i64::from_be_bytes(fixed(raw)?).to_string()),
        Type::OID => Ok(u32::from_be_bytes(fixed(raw)?).to_string()),
        Type::FLOAT4 => Ok(format_float4(f32::from_be_bytes(fixed(raw)?))),
        Type::FLOAT8 => Ok(format_float8(f64::from_be_bytes(fixed(raw)?))),
        Type::NUMERIC => decode_numeric(raw),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON | Type::CHAR => utf8(raw),
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => utf8(text),
            _ => Err("unsupported jsonb binary version".to_owned()),
        },
        Type::BYTEA => Ok(format_bytea(raw)),
        Type::UUID => format_uuid(raw),
        Type::DATE => Ok(format_date(i32::from_be_bytes(fixed(raw)?))),
        Type::TIME => Ok(format_time_of_day(i64::from_be_bytes(fixed(raw)?))),
        Type::TIMESTAMP => Ok(format_timestamp(i64::from_be_bytes(fixed(raw)?), false)),
        Type::TIMESTAMPTZ => Ok(format_timestamp(i64::from_be_bytes(fixed(raw)?), true)),
        Type::INT2_VECTOR => decode_vector(&Type::INT2, raw),
        Type::OID_VECTOR => decode_vector(&Type::OID, raw),
        _ => match ty.kind() {
            Kind::Array(elem) => decode_array(elem, raw),
            _ => Err(format!("no text rendering for type {ty}")),
        },
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn be_u8(raw: &[u8]) -> Result<u8, String> {
    Ok(u8::from_be_bytes(fixed(raw)?))
}

fn utf8(raw: &[u8]) -> RenderResult {
    String::from_utf8(raw.to_vec()).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// `\x` followed by lowercase hex, as `bytea_output = 'hex'` shows it.
pub fn format_bytea(raw: &[u8]) -> String {
    let mut s = String::with_capacity(2 + raw.len() * 2);
    s.push_str("\\x");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn format_uuid(raw: &[u8]) -> RenderResult {
    let bytes: [u8; 16] = fixed(raw)?;
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// Decodes PostgreSQL's binary NUMERIC (`ndigits`, `weight`, `sign`, `dscale`, then base-10000
/// digits) to its text form, with exactly `dscale` fraction digits.
pub fn decode_numeric(raw: &[u8]) -> RenderResult {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("numeric value truncated ({} bytes)", raw.len()))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        other => return Err(format!("invalid numeric sign {other:#06x}")),
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d >= 10000 {
            return Err(format!("invalid numeric digit {d}"));
        }
        digits.push(d);
    }
    let digit_at = |i: i64| -> u16 { usize::try_from(i).ok().and_then(|i| digits.get(i).copied()).unwrap_or(0) };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                out.push_str(&digit_at(i).to_string());
            } else {
                out.push_str(&format!("{:04}", digit_at(i)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit_at(i)));
            i += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` (ISO), with ` BC` for years before 1; the returned suffix must go at the very end.
fn format_ymd(days_since_pg_epoch: i64) -> (String, &'static str) {
    let (year, month, day) = civil_from_days(days_since_pg_epoch + PG_EPOCH_DAYS);
    if year <= 0 {
        (format!("{:04}-{month:02}-{day:02}", 1 - year), " BC")
    } else {
        (format!("{year:04}-{month:02}-{day:02}"), "")
    }
}

/// A DATE (days since 2000-01-01) as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_owned(),
        i32::MIN => "-infinity".to_owned(),
        _ => {
            let (ymd, bc) = format_ymd(i64::from(days));
            format!("{ymd}{bc}")
        }
    }
}

/// Microseconds within a day as `HH:MM:SS[.ffffff]`, trailing fraction zeros dropped.
fn format_time_of_day(usecs: i64) -> String {
    let secs = usecs / 1_000_000;
    let frac = usecs % 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// A TIMESTAMP / TIMESTAMPTZ (microseconds since 2000-01-01 00:00 UTC) as
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, with `+00` for TIMESTAMPTZ (shown in UTC).
pub fn format_timestamp(usecs: i64, with_tz: bool) -> String {
    match usecs {
        i64::MAX => return "infinity".to_owned(),
        i64::MIN => return "-infinity".to_owned(),
        _ => {}
    }
    let (ymd, bc) = format_ymd(usecs.div_euclid(USECS_PER_DAY));
    let time = format_time_of_day(usecs.rem_euclid(USECS_PER_DAY));
    format!("{ymd} {time}{}{bc}", if with_tz { "+00" } else { "" })
}

/// Decodes an `int2vector` / `oidvector` (a binary array, lower bound 0 from PostgreSQL) to
/// its text output: the elements separated by spaces.
fn decode_vector(elem: &Type, raw: &[u8]) -> RenderResult {
    let array = decode_array(elem, raw)?;
    let elements = array.split_once('=').map_or(array.as_str(), |(_, a)| a);
    Ok(elements.trim_matches(|c| c == '{' || c == '}').replace(',', " "))
}

/// Decodes a binary array (`ndim`, `has_null`, element oid, dimensions, then length-prefixed
/// elements) to PostgreSQL's `{a,b,...}` text form with its quoting rules.
fn decode_array(elem: &Type, raw: &[u8]) -> RenderResult {
    fn take<'a>(raw: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
        let bytes = raw.get(*pos..*pos + n).ok_or("array value truncated")?;
        *pos += n;
        Ok(bytes)
    }
    let mut pos = 0usize;
    let next_i32 = |pos: &mut usize| -> Result<i32, String> { Ok(i32::from_be_bytes(fixed(take(raw, pos, 4)?)?)) };
    let ndim = usize::try_from(next_i32(&mut pos)?).map_err(|_| "negative array dimension count")?;
    let _has_null = next_i32(&mut pos)?;
    let _elem_oid = next_i32(&mut pos)?;
    let mut dims = Vec::with_capacity(ndim);
    let mut bounds = String::new();
    for _ in 0..ndim {
        let len = usize::try_from(next_i32(&mut pos)?).map_err(|_| "negative array length")?;
        let lower = next_i32(&mut pos)?;
        if lower != 1 {
            bounds.push_str(&format!("[{lower}:{}]", i64::from(lower) + len as i64 - 1));
        }
        dims.push(len);
    }
    let mut elements = Vec::new();
    let total: usize = if ndim == 0 { 0 } else { dims.iter().product() };
    for _ in 0..total {
        let len = next_i32(&mut pos)?;
        if len < 0 {
            elements.push("NULL".to_owned());
            continue;
        }
        let bytes = take(raw, &mut pos, len as usize)?;
        let text = render_value(elem, bytes)?;
        let needs_quotes = text.is_empty()
            || text.eq_ignore_ascii_case("NULL")
            || text.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
        if needs_quotes {
            elements.push(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")));
        } else {
            elements.push(text);
        }
    }
    fn nest(dims: &[usize], elements: &mut std::slice::Iter<'_, String>, out: &mut String) {
        out.push('{');
        for i in 0..dims[0] {
            if i > 0 {
                out.push(',');
            }
            if dims.len() == 1 {
                if let Some(e) = elements.next() {
                    out.push_str(e);
                }
            } else {
                nest(&dims[1..], elements, out);
            }
        }
        out.push('}');
    }
    let mut out = String::new();
    if !bounds.is_empty() {
        out.push_str(&bounds);
        out.push('=');
    }
    if dims.is_empty() {
        out.push_str("{}");
    } else {
        nest(&dims, &mut elements.iter(), &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a NUMERIC binary value from its header fields and base-10000 digits.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_decoding() {
        // 0, 0.00
        assert_eq!(decode_numeric(&numeric(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(decode_numeric(&numeric(0, 0, 2, &[])).unwrap(), "0.00");
        // 12345.678 = [1, 2345, 6780] weight 1
        assert_eq!(decode_numeric(&numeric(1, 0, 3, &[1, 2345, 6780])).unwrap(), "12345.678");
        // -1.50
        assert_eq!(decode_numeric(&numeric(0, 0x4000, 2, &[1, 5000])).unwrap(), "-1.50");
        // 0.0001 = [1] weight -1; 0.00000123 = [123] weight -2 (0.0000 0123)
        assert_eq!(decode_numeric(&numeric(-1, 0, 4, &[1])).unwrap(), "0.0001");
        assert_eq!(decode_numeric(&numeric(-2, 0, 8, &[123])).unwrap(), "0.00000123");
        // 100000000 = [1, 0, 0] weight 2, trailing zero groups stripped: [1] weight 2
        assert_eq!(decode_numeric(&numeric(2, 0, 0, &[1])).unwrap(), "100000000");
        // 99999999.99
        assert_eq!(decode_numeric(&numeric(1, 0, 2, &[9999, 9999, 9900])).unwrap(), "99999999.99");
        assert_eq!(decode_numeric(&numeric(0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert_eq!(decode_numeric(&numeric(0, 0xD000, 0, &[])).unwrap(), "Infinity");
        assert_eq!(decode_numeric(&numeric(0, 0xF000, 0, &[])).unwrap(), "-Infinity");
        assert!(decode_numeric(&[0, 1, 0]).is_err());
        assert!(decode_numeric(&numeric(0, 0, 0, &[10000])).is_err());
    }

    #[test]
    fn bytea_and_uuid() {
        assert_eq!(format_bytea(&[]), "\\x");
        assert_eq!(format_bytea(&[0, 0xab, 0x10, 0xff]), "\\x00ab10ff");
        let uuid: Vec<u8> = (0u8..16).collect();
        assert_eq!(format_uuid(&uuid).unwrap(), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert!(format_uuid(&uuid[..15]).is_err());
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(format_date(0), "2000-01-01");
        assert_eq!(format_date(-1), "1999-12-31");
        assert_eq!(format_date(60), "2000-03-01");
        assert_eq!(format_date(-730_119), "0001-01-01");
        assert_eq!(format_date(-730_120), "0001-12-31 BC");
        assert_eq!(format_date(2_921_939), "9999-12-31");
        assert_eq!(format_date(i32::MAX), "infinity");
        assert_eq!(format_timestamp(0, false), "2000-01-01 00:00:00");
        assert_eq!(format_timestamp(-1, true), "1999-12-31 23:59:59.999999+00");
        assert_eq!(format_timestamp(3_723_500_000, false), "2000-01-01 01:02:03.5");
        // 2024-02-29 12:34:56.123 = 8825 days after 2000-01-01
        let usecs = 8825 * USECS_PER_DAY + (12 * 3600 + 34 * 60 + 56) * 1_000_000 + 123_000;
        assert_eq!(format_timestamp(usecs, true), "2024-02-29 12:34:56.123+00");
        assert_eq!(format_time_of_day(0), "00:00:00");
    }

    #[test]
    fn scalars_and_arrays() {
        assert_eq!(render_value(&Type::BOOL, &[1]).unwrap(), "t");
        assert_eq!(render_value(&Type::BOOL, &[0]).unwrap(), "f");
        assert_eq!(render_value(&Type::INT2, &(-32768i16).to_be_bytes()).unwrap(), "-32768");
        assert_eq!(render_value(&Type::INT8, &i64::MAX.to_be_bytes()).unwrap(), "9223372036854775807");
        assert!(render_value(&Type::INT4, &[0, 1]).is_err());
        assert_eq!(render_value(&Type::JSONB, b"\x01{\"a\": 1}").unwrap(), "{\"a\": 1}");
        // int4[] {1,NULL,3}
        let mut a = Vec::new();
        for w in [1i32, 1, 23, 3, 1] {
            a.extend_from_slice(&w.to_be_bytes());
        }
        for e in [Some(1i32), None, Some(3)] {
            match e {
                Some(v) => {
                    a.extend_from_slice(&4i32.to_be_bytes());
                    a.extend_from_slice(&v.to_be_bytes());
                }
                None => a.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(render_value(&Type::INT4_ARRAY, &a).unwrap(), "{1,NULL,3}");
        // text[] {"a b",""}
        let mut t = Vec::new();
        for w in [1i32, 0, 25, 2, 1] {
            t.extend_from_slice(&w.to_be_bytes());
        }
        for e in [&b"a b"[..], b""] {
            t.extend_from_slice(&(e.len() as i32).to_be_bytes());
            t.extend_from_slice(e);
        }
        assert_eq!(render_value(&Type::TEXT_ARRAY, &t).unwrap(), "{\"a b\",\"\"}");
    }
}
