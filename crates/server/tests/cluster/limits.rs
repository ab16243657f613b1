//! No statement crashes a node: statements of every shape that once overflowed a worker
//! thread's stack (and with it aborted the node process) or took time exponential in their
//! nesting (nested calls, nested subqueries), sent through the simple and the extended
//! protocol, either get their answer or fail with 54001 (statement too complex) or 54000
//! (statement too large), and the node process keeps running and answering.

use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::harness::{wait_for, Cluster};

/// What a statement must produce.
enum Expect {
    /// This one value (shown as text).
    Value(String),
    /// An error with this SQLSTATE.
    Code(&'static str),
}

fn value(v: impl ToString) -> Expect {
    Expect::Value(v.to_string())
}

const TOO_DEEP: Expect = Expect::Code("54001");
const TOO_LARGE: Expect = Expect::Code("54000");

/// `f(0)`, `f(1)`, ... joined by `separator`.
fn list(n: usize, separator: &str, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(separator)
}

/// Each shape within the limits (a realistic size, answered) and far beyond them (refused).
/// `t` holds the rows 1 and 2.
fn statements() -> Vec<(String, Expect)> {
    let sum = |n| format!("SELECT {}", vec!["1"; n].join("+"));
    let and = |n| format!("SELECT count(*) FROM t WHERE {}", vec!["a = a"; n].join(" AND "));
    let or = |n| format!("SELECT count(*) FROM t WHERE {}", list(n, " OR ", |i| format!("a = {i}")));
    let concat = |n| format!("SELECT length({})", vec!["'x'"; n].join(" || "));
    let casts = |n| format!("SELECT 1{}", "::int8".repeat(n));
    let parens = |n| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
    let not = |n| format!("SELECT {}true", "NOT ".repeat(n));
    let minus = |n| format!("SELECT {}1", "- ".repeat(n));
    let union = |n| format!("SELECT count(*) FROM ({}) u", vec!["SELECT 1"; n].join(" UNION ALL "));
    let subqueries = |n| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
    let joins = |n| {
        format!("SELECT count(*) FROM t t0 {}", list(n, " ", |i| format!("JOIN t t{} ON t{i}.a = t{}.a", i + 1, i + 1)))
    };
    let cross = |n| format!("SELECT count(*) FROM {}", list(n, ", ", |i| format!("t t{i}")));
    let ctes = |n| {
        let chain = list(n, ", ", |i| format!("c{} AS (SELECT a + 1 AS a FROM c{i})", i + 1));
        format!("WITH c0 AS (SELECT a FROM t), {chain} SELECT max(a) FROM c{n}")
    };
    let columns = |n: usize| format!("SELECT a{} FROM t WHERE a = 1", "+a".repeat(n - 1));
    let calls = |n| format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n));
    let in_subqueries =
        |n| format!("SELECT count(*) FROM t WHERE {}true{}", "a IN (SELECT a FROM t WHERE ".repeat(n), ")".repeat(n));
    vec![
        (sum(2_000), value(2_000)),
        (sum(20_000), TOO_DEEP),
        (and(1_000), value(2)),
        (and(20_000), TOO_DEEP),
        (or(1_000), value(2)),
        (or(20_000), TOO_DEEP),
        (concat(2_000), value(2_000)),
        (concat(20_000), TOO_DEEP),
        (casts(2_000), value(1)),
        (casts(20_000), TOO_DEEP),
        (parens(2_000), value(1)),
        (parens(20_000), TOO_DEEP),
        (not(2_001), value("f")),
        (not(20_000), TOO_DEEP),
        (minus(201), value(-1)),
        (minus(20_000), TOO_DEEP),
        (union(1_000), value(1_000)),
        (union(20_000), TOO_DEEP),
        (subqueries(12), value(1)),
        (subqueries(13), TOO_DEEP),
        (subqueries(20_000), TOO_DEEP),
        (joins(50), value(2)),
        (joins(20_000), TOO_DEEP),
        (cross(10), value(1 << 10)),
        (cross(20_000), TOO_DEEP),
        (ctes(100), value(102)),
        (ctes(5_000), TOO_DEEP),
        (columns(200), value(200)),
        (columns(20_000), TOO_DEEP),
        (calls(200), value(1)),
        (calls(20_000), TOO_DEEP),
        (in_subqueries(12), value(2)),
        (in_subqueries(25), TOO_DEEP),
        // Long but flat: answered.
        (format!("SELECT count(*) FROM t WHERE a IN ({})", list(100_000, ",", |i| i.to_string())), value(2)),
        (format!("SELECT length('{}')", "x".repeat(5 << 20)), value(5 << 20)),
        (format!("SELECT length('{}')", "x".repeat(17 << 20)), TOO_LARGE),
    ]
}

/// The first value of `row` as text, as the simple protocol sends it.
fn text(row: &Row) -> String {
    let ty = row.columns()[0].type_().clone();
    match ty {
        Type::INT8 => row.get::<_, i64>(0).to_string(),
        Type::INT4 => row.get::<_, i32>(0).to_string(),
        // As PostgreSQL's text form shows it.
        Type::BOOL => if row.get::<_, bool>(0) { "t" } else { "f" }.to_string(),
        Type::TEXT => row.get(0),
        other => panic!("unexpected result type {other}"),
    }
}

/// Runs `sql` through the simple (`extended` false) or the extended protocol: its one value as
/// text, or its SQLSTATE.
async fn run(client: &Client, sql: &str, extended: bool) -> Result<String, String> {
    let code = |e: tokio_postgres::Error| match e.code() {
        Some(code) => code.code().to_string(),
        None => format!("no SQLSTATE: {e}"),
    };
    if extended {
        let stmt = client.prepare(sql).await.map_err(code)?;
        let rows = client.query(&stmt, &[]).await.map_err(code)?;
        Ok(text(&rows[0]))
    } else {
        let messages = client.simple_query(sql).await.map_err(code)?;
        let row = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        Ok(row.expect("a row").get(0).expect("a value").to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_crashes_a_node() {
    let mut cluster = Cluster::start(1, &[]).await;
    let client = cluster.sql(1).await;
    client.batch_execute("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT) WITH (shards = 2)").await.unwrap();
    client.batch_execute("INSERT INTO t VALUES (1, 'x'), (2, 'y')").await.unwrap();
    for (sql, expect) in statements() {
        let shown = format!("{}...{} ({} bytes)", &sql[..40], &sql[sql.len() - 20..], sql.len());
        for extended in [false, true] {
            let got = run(&client, &sql, extended).await;
            assert!(cluster.is_running(1), "the node died on {shown}, extended protocol: {extended}");
            match &expect {
                Expect::Value(v) => assert_eq!(got.as_ref(), Ok(v), "{shown}, extended protocol: {extended}"),
                Expect::Code(c) => {
                    assert_eq!(got.as_ref().map_err(String::as_str), Err(*c), "{shown}, extended protocol: {extended}")
                }
            }
        }
    }
    // Still answering, on the same connection and a new one.
    assert_eq!(client.query_one("SELECT 1::int8", &[]).await.unwrap().get::<_, i64>(0), 1);
    let fresh = cluster.sql(1).await;
    assert_eq!(fresh.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get::<_, i64>(0), 2);
    assert!(cluster.is_running(1));
}

/// A node keeps answering other clients, and stops on SIGTERM within seconds, while a statement
/// it cannot interrupt is being planned (a 1,500-term `a+a+...` chain under `WHERE a = 1`: DataFusion takes minutes over
/// it, normalizing every sub-expression against the filter's equivalence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_and_stops_while_planning_a_slow_statement() {
    let mut cluster = Cluster::start(1, &[]).await;
    let client = cluster.sql(1).await;
    client.batch_execute("CREATE TABLE t (a BIGINT PRIMARY KEY)").await.unwrap();
    let slow = format!("SELECT a{} FROM t WHERE a = 1", "+a".repeat(1_499));
    let before = cluster.cpu_time(1);
    let statement = tokio::spawn(async move { client.simple_query(&slow).await.map(|_| ()) });
    // Planning has begun once the node has spent a second of CPU on it.
    wait_for("the node to plan the statement", Duration::from_secs(30), || {
        let busy = cluster.cpu_time(1) >= before + Duration::from_secs(1);
        async move { busy.then_some(()) }
    })
    .await;
    // Another session is served meanwhile (the planning thread holds no runtime worker).
    let other = cluster.sql(1).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), other.query_one("SELECT 1::int8", &[])).await;
    assert_eq!(answer.expect("answered within 10 s").unwrap().get::<_, i64>(0), 1);
    let stopped = Instant::now();
    let status = cluster.terminate(1, Duration::from_secs(20)).await;
    assert!(status.is_some(), "the node did not stop within 20 s of SIGTERM");
    eprintln!("stopped {:?} after SIGTERM, exit status {:?}", stopped.elapsed(), status);
    assert!(statement.await.unwrap().is_err(), "the statement cannot have completed");
}
