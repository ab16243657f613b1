//! Running one query on an engine and comparing the two engines' outcomes: the result's column
//! types, then its rows (as a multiset unless the query fixes the order; float8 values compared
//! to 12 significant digits, since summation order legitimately changes the last ones), or the
//! error's SQLSTATE class. The comparison's verdict names the kind of mismatch, which with the
//! minimised query's features makes its category.

use std::fmt;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::{render_value, RawValue, SqlError};

/// How long one query may run before it counts as hung.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// What one engine answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows {
        types: Vec<Type>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// A server error with its SQLSTATE.
    Error {
        code: String,
        message: String,
    },
    /// No answer: the connection broke or the query hung.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rows { types, rows } => {
                let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
                write!(f, "({}) {} rows", names.join(", "), rows.len())?;
                for row in rows.iter().take(8) {
                    let values: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                    write!(f, "\n    {}", values.join(" | "))?;
                }
                if rows.len() > 8 {
                    write!(f, "\n    …")?;
                }
                Ok(())
            }
            Outcome::Error { code, message } => write!(f, "ERROR {code}: {message}"),
            Outcome::Failed(why) => write!(f, "no answer: {why}"),
        }
    }
}

/// One engine's connection.
pub struct Engine {
    url: String,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Engine {
    /// Connects and sets the session as raftable always runs (UTC, ISO dates).
    pub async fn connect(url: &str) -> Result<Self, SqlError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        client.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'").await?;
        Ok(Engine { url: url.to_owned(), client, task })
    }

    /// Runs one statement that returns no rows (schema set-up).
    pub async fn execute(&self, sql: &str) -> Result<(), SqlError> {
        self.client.batch_execute(sql).await.map_err(SqlError::from)
    }

    /// Runs `sql` as the sqllogictest runner does (extended protocol, binary results, each value
    /// rendered as PostgreSQL's text output). A broken connection is re-opened for the next query.
    pub async fn run(&mut self, sql: &str) -> Outcome {
        let outcome = match tokio::time::timeout(QUERY_TIMEOUT, query(&self.client, sql)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(format!("no answer in {QUERY_TIMEOUT:?}")),
        };
        if matches!(outcome, Outcome::Failed(_)) || self.client.is_closed() {
            if let Ok(fresh) = Engine::connect(&self.url).await {
                self.task.abort();
                *self = fresh;
            }
        }
        outcome
    }
}

async fn query(client: &Client, sql: &str) -> Outcome {
    let statement = match client.prepare(sql).await {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    let no_params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = match client.query(&statement, &no_params).await {
        Ok(rows) => rows,
        Err(e) => return error(e),
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(row.len());
        for (i, ty) in types.iter().enumerate() {
            let value = match row.try_get::<_, Option<RawValue<'_>>>(i) {
                Ok(None) => None,
                Ok(Some(RawValue(raw))) => match render_value(ty, raw) {
                    Ok(text) => Some(text),
                    Err(e) => return Outcome::Failed(format!("column {i} ({ty}): {e}")),
                },
                Err(e) => return Outcome::Failed(e.to_string()),
            };
            values.push(value);
        }
        out.push(values);
    }
    Outcome::Rows { types, rows: out }
}

fn error(e: tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => Outcome::Error { code: db.code().code().to_owned(), message: db.message().to_owned() },
        None => Outcome::Failed(SqlError::from(e).to_string()),
    }
}

/// How two outcomes differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Result column types differ (`postgres` / `raftable` type names).
    Types(String),
    /// Same types, different rows.
    Values,
    /// PostgreSQL answered rows, raftable an error of this SQLSTATE.
    UnexpectedError(String),
    /// PostgreSQL raised an error of this SQLSTATE, raftable answered rows.
    MissingError(String),
    /// Both raised errors, of different SQLSTATE classes (`postgres` / `raftable`).
    ErrorClass(String),
    /// raftable gave no answer (a broken connection or a hang).
    NoAnswer,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Types(t) => write!(f, "types {t}"),
            Verdict::Values => write!(f, "values"),
            Verdict::UnexpectedError(code) => write!(f, "error {code} where PostgreSQL answers"),
            Verdict::MissingError(code) => write!(f, "answer where PostgreSQL raises {code}"),
            Verdict::ErrorClass(codes) => write!(f, "error class {codes}"),
            Verdict::NoAnswer => write!(f, "no answer"),
        }
    }
}

/// Compares PostgreSQL's outcome with raftable's; `None` when they agree. `ordered` says whether
/// row order is part of the answer. When PostgreSQL itself gives no answer the query says nothing.
pub fn compare(postgres: &Outcome, raftable: &Outcome, ordered: bool) -> Option<Verdict> {
    match (postgres, raftable) {
        (Outcome::Failed(_), _) => None,
        (_, Outcome::Failed(_)) => Some(Verdict::NoAnswer),
        (Outcome::Error { code: a, .. }, Outcome::Error { code: b, .. }) => {
            (a[..2] != b[..2]).then(|| Verdict::ErrorClass(format!("{a} / {b}")))
        }
        (Outcome::Error { code, .. }, Outcome::Rows { .. }) => Some(Verdict::MissingError(code.clone())),
        (Outcome::Rows { .. }, Outcome::Error { code, .. }) => Some(Verdict::UnexpectedError(code.clone())),
        (Outcome::Rows { types: ta, rows: ra }, Outcome::Rows { types: tb, rows: rb }) => {
            if ta != tb {
                let names = |ts: &[Type]| ts.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>().join(",");
                return Some(Verdict::Types(format!("{} / {}", names(ta), names(tb))));
            }
            let normal = |rows: &[Vec<Option<String>>]| {
                let mut rows: Vec<Vec<Option<String>>> = rows
                    .iter()
                    .map(|row| row.iter().zip(ta).map(|(v, ty)| v.as_deref().map(|v| normalise(ty, v))).collect())
                    .collect();
                if !ordered {
                    rows.sort();
                }
                rows
            };
            (normal(ra) != normal(rb)).then_some(Verdict::Values)
        }
    }
}

/// A float value to 12 significant digits, and text that is a float's long output (an
/// exponent, or 15 significant digits and more: a float cast to text); anything else as it is.
fn normalise(ty: &Type, value: &str) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).collect::<String>();
    let long_float = value.contains('e') || digits.trim_start_matches('0').len() >= 15;
    let float_text = *ty == Type::TEXT && long_float && value.parse::<f64>().is_ok();
    if !matches!(*ty, Type::FLOAT4 | Type::FLOAT8) && !float_text {
        return value.to_owned();
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v != 0.0 => format!("{v:.11e}"),
        Ok(0.0) => "0".to_owned(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(types: &[Type], rows: &[&[Option<&str>]]) -> Outcome {
        Outcome::Rows {
            types: types.to_vec(),
            rows: rows.iter().map(|r| r.iter().map(|v| v.map(str::to_owned)).collect()).collect(),
        }
    }

    fn err(code: &str) -> Outcome {
        Outcome::Error { code: code.to_owned(), message: String::new() }
    }

    #[test]
    fn rows_compare_as_multisets_unless_ordered() {
        let a = rows(&[Type::INT4], &[&[Some("1")], &[Some("2")], &[None]]);
        let b = rows(&[Type::INT4], &[&[None], &[Some("2")], &[Some("1")]]);
        assert_eq!(compare(&a, &b, false), None);
        assert_eq!(compare(&a, &b, true), Some(Verdict::Values));
        let fewer = rows(&[Type::INT4], &[&[Some("1")], &[Some("2")]]);
        assert_eq!(compare(&a, &fewer, false), Some(Verdict::Values));
    }

    #[test]
    fn types_are_part_of_the_answer() {
        let a = rows(&[Type::INT4], &[&[Some("1")]]);
        let b = rows(&[Type::INT8], &[&[Some("1")]]);
        assert_eq!(compare(&a, &b, false), Some(Verdict::Types("int4 / int8".to_owned())));
    }

    #[test]
    fn floats_agree_to_twelve_digits_and_nothing_else_does() {
        let a = rows(&[Type::FLOAT8], &[&[Some("0.30000000000000004")], &[Some("-0")], &[Some("NaN")]]);
        let b = rows(&[Type::FLOAT8], &[&[Some("0.3")], &[Some("0")], &[Some("NaN")]]);
        assert_eq!(compare(&a, &b, true), None);
        let off = rows(&[Type::FLOAT8], &[&[Some("0.3001")], &[Some("0")], &[Some("NaN")]]);
        assert_eq!(compare(&a, &off, true), Some(Verdict::Values));
        // A float cast to text: its long output is as inexact; short text is compared exactly.
        let text = |v: &str| rows(&[Type::TEXT], &[&[Some(v)]]);
        assert_eq!(compare(&text("9.999999999999996e+149"), &text("1e+150"), true), None);
        assert_eq!(compare(&text("1.5"), &text("1.50"), true), Some(Verdict::Values));
        let numeric = |v: &str| rows(&[Type::NUMERIC], &[&[Some(v)]]);
        assert_eq!(compare(&numeric("0.30000000000000004"), &numeric("0.3"), true), Some(Verdict::Values));
    }

    #[test]
    fn errors_compare_by_class() {
        assert_eq!(compare(&err("22012"), &err("22003"), false), None);
        assert_eq!(compare(&err("22012"), &err("42883"), false), Some(Verdict::ErrorClass("22012 / 42883".to_owned())));
        let answer = rows(&[Type::INT4], &[]);
        assert_eq!(compare(&err("22012"), &answer, false), Some(Verdict::MissingError("22012".to_owned())));
        assert_eq!(compare(&answer, &err("0A000"), false), Some(Verdict::UnexpectedError("0A000".to_owned())));
        assert_eq!(compare(&answer, &Outcome::Failed("reset".to_owned()), false), Some(Verdict::NoAnswer));
        assert_eq!(compare(&Outcome::Failed("hung".to_owned()), &answer, false), None);
    }
}
