//! The workloads, each a loop of real Postgres-protocol statements (prepared, with parameters)
//! run by N concurrent clients for a fixed time, and the data loading they need. Only
//! tokio-postgres is used, so every target (raftable or PostgreSQL) runs identical statements.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls};

use crate::stats::Run;

/// Bytes per value.
pub const VALUE_LEN: usize = 100;

/// Rows per INSERT when loading and in bulk-insert.
pub const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    PointSelect,
    PointUpsert,
    Kv95,
    Upsert1c,
    BulkInsert,
    ScanAgg,
    RangeScan,
    /// A two-row transfer in an explicit block: BEGIN, read two rows, update both, COMMIT.
    Transfer,
    /// A 10-row INSERT of new keys (spread over the table's shards).
    Insert10,
    /// A lookup by a unique secondary column: `SELECT k FROM kv_idx WHERE v = $1`.
    IndexLookup,
    /// insert-10 into a table with two secondary indexes (one unique).
    Insert10TwoIndexes,
}

impl Workload {
    pub const ALL: [Workload; 11] = [
        Workload::PointSelect,
        Workload::PointUpsert,
        Workload::Kv95,
        Workload::Upsert1c,
        Workload::BulkInsert,
        Workload::ScanAgg,
        Workload::RangeScan,
        Workload::Transfer,
        Workload::Insert10,
        Workload::IndexLookup,
        Workload::Insert10TwoIndexes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::PointSelect => "point-select",
            Workload::PointUpsert => "point-upsert",
            Workload::Kv95 => "kv95",
            Workload::Upsert1c => "upsert-1c",
            Workload::BulkInsert => "bulk-insert",
            Workload::ScanAgg => "scan-agg",
            Workload::RangeScan => "range-scan",
            Workload::Transfer => "transfer",
            Workload::Insert10 => "insert-10",
            Workload::IndexLookup => "index-lookup",
            Workload::Insert10TwoIndexes => "insert-10-2idx",
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What the rate counts.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::BulkInsert => "rows/s",
            Workload::ScanAgg | Workload::RangeScan => "queries/s",
            _ => "ops/s",
        }
    }

    /// The table the workload reads or writes.
    fn table(self) -> &'static str {
        match self {
            Workload::ScanAgg | Workload::RangeScan => "kv_scan",
            Workload::BulkInsert | Workload::Insert10 => "kv_bulk",
            Workload::IndexLookup => "kv_idx",
            Workload::Insert10TwoIndexes => "kv_ins",
            _ => "kv",
        }
    }
}

/// A connection whose driver task runs in the background.
pub async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|e| format!("connect {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The deterministic 100-byte value of key `k` (`salt` varies it for upserts).
pub fn value(k: i64, salt: u64) -> String {
    let mut s = format!("{k:020}-{salt:016x}-");
    while s.len() < VALUE_LEN {
        s.push((b'a' + ((k as u64 + s.len() as u64 + salt) % 26) as u8) as char);
    }
    s
}

/// The statements that (re)create a workload table: `(k BIGINT PRIMARY KEY, v TEXT)`, for
/// `kv_idx` with `v` unique, for `kv_ins` with a unique index on `v` and one on `(k, v)`.
fn create_table(table: &str) -> String {
    let unique = if table == "kv_idx" { " UNIQUE" } else { "" };
    let mut sql = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (k BIGINT PRIMARY KEY, v TEXT{unique});");
    if table == "kv_ins" {
        sql.push_str(" CREATE UNIQUE INDEX kv_ins_v ON kv_ins (v); CREATE INDEX kv_ins_kv ON kv_ins (k, v);");
    }
    sql
}

/// (Re)creates `table` and loads keys 0..rows with `clients` concurrent loaders.
pub async fn load(url: &str, name: &str, table: &str, rows: i64, clients: usize) -> Result<(), String> {
    let admin = connect(url).await?;
    admin.batch_execute(&create_table(table)).await.map_err(|e| format!("create {table}: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (url, table, next, done) = (url.to_string(), table.to_string(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await?;
            let mut stmt = insert_statement(&client, &table, BATCH, false).await?;
            loop {
                let start = next.fetch_add(BATCH as u64, Ordering::Relaxed) as i64;
                if start >= rows {
                    return Ok::<(), String>(());
                }
                let end = (start + BATCH as i64).min(rows);
                let full = end - start == BATCH as i64;
                let outcome = if full {
                    insert_batch(&client, &stmt, start, end, 0).await
                } else {
                    let tail = insert_statement(&client, &table, (end - start) as usize, false).await?;
                    insert_batch(&client, &tail, start, end, 0).await
                };
                if let Err(e) = outcome {
                    // Outcome unknown (08007: a leader changed under load; the server closed
                    // the connection): the batch may be partly in. Reconnect and write it again
                    // as an upsert of the same values, which is idempotent.
                    if e.code() != Some(&tokio_postgres::error::SqlState::TRANSACTION_RESOLUTION_UNKNOWN)
                        && !client.is_closed()
                    {
                        return Err(format!("insert: {}", text(e)));
                    }
                    client = connect(&url).await?;
                    let again = insert_statement(&client, &table, (end - start) as usize, true).await?;
                    insert_batch(&client, &again, start, end, 0).await.map_err(|e| format!("insert: {}", text(e)))?;
                    stmt = insert_statement(&client, &table, BATCH, false).await?;
                }
                done.fetch_add((end - start) as u64, Ordering::Relaxed);
            }
        }));
    }
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    while !tasks.iter().all(|t| t.is_finished()) {
        if progress {
            eprint!("\r  loading {table} on {name}: {}/{rows}", done.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    eprintln!(
        "{}  loaded {rows} rows into {table} on {name} in {:.1} s",
        if progress { "\r" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A prepared `rows`-row INSERT into `table`; `upsert` makes it idempotent (ON CONFLICT DO UPDATE).
async fn insert_statement(
    client: &Client,
    table: &str,
    rows: usize,
    upsert: bool,
) -> Result<tokio_postgres::Statement, String> {
    let values: Vec<String> = (0..rows).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
    let conflict = if upsert { " ON CONFLICT (k) DO UPDATE SET v = excluded.v" } else { "" };
    let sql = format!("INSERT INTO {table} (k, v) VALUES {}{conflict}", values.join(", "));
    client.prepare(&sql).await.map_err(|e| format!("prepare insert: {e}"))
}

async fn insert_batch(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    start: i64,
    end: i64,
    salt: u64,
) -> Result<(), tokio_postgres::Error> {
    let keys: Vec<i64> = (start..end).collect();
    let values: Vec<String> = keys.iter().map(|k| value(*k, salt)).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(keys.len() * 2);
    for (k, v) in keys.iter().zip(&values) {
        params.push(k);
        params.push(v);
    }
    // A retryable failure (40001: an election, a lost race; nothing was applied) is retried.
    for attempt in 0.. {
        match client.execute(stmt, &params).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) && attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Prepares the tables `workloads` need on one target.
pub async fn prepare(
    url: &str,
    name: &str,
    workloads: &[Workload],
    rows: i64,
    scan_rows: i64,
    clients: usize,
) -> Result<(), String> {
    for (table, rows) in [("kv", rows), ("kv_scan", scan_rows), ("kv_idx", rows)] {
        if workloads.iter().any(|w| w.table() == table) {
            load(url, name, table, rows, clients).await?;
        }
    }
    Ok(())
}

/// Runs `workload` against `url` for `duration` (after `warmup`) and measures it.
pub async fn run(
    url: &str,
    workload: Workload,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    rows: i64,
    scan_rows: i64,
) -> Result<Run, String> {
    let clients = match workload {
        Workload::Upsert1c => 1,
        Workload::ScanAgg => clients.clamp(1, 4),
        _ => clients.max(1),
    };
    if matches!(workload, Workload::BulkInsert | Workload::Insert10 | Workload::Insert10TwoIndexes) {
        let admin = connect(url).await?;
        admin.batch_execute(&create_table(workload.table())).await.map_err(|e| e.to_string())?;
    }
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(
            async move { client_loop(&url, workload, c as u64, start, end, rows, scan_rows).await },
        ));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())??;
        latencies.extend(l);
        errors += e;
    }
    let units = if workload == Workload::BulkInsert { BATCH as u64 } else { 1 };
    Ok(Run::from_latencies(latencies, duration, units, errors))
}

/// One client: statements back to back until `end`; latencies of those started after `start`.
async fn client_loop(
    url: &str,
    workload: Workload,
    id: u64,
    start: Instant,
    end: Instant,
    rows: i64,
    scan_rows: i64,
) -> Result<(Vec<u64>, u64), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id * 7919 + 1);
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0u64;
    let mut batch_no = 0i64;
    let mut salt = 1u64;
    // A statement whose outcome is unknown (08007) ends its connection: reconnect, as an
    // application would, and count the error.
    'connection: while Instant::now() < end {
        let client = connect(url).await?;
        // Only the statements of this workload's table (the others may not be loaded).
        let prepare = |table: &'static str, sql: &'static str| {
            let client = &client;
            async move {
                if workload.table() == table {
                    client.prepare(sql).await.map(Some).map_err(text)
                } else {
                    Ok(None)
                }
            }
        };
        let select = prepare("kv", "SELECT v FROM kv WHERE k = $1").await?;
        let upsert =
            prepare("kv", "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v").await?;
        let scan_agg = prepare("kv_scan", "SELECT count(*), sum(length(v)) FROM kv_scan").await?;
        let range = prepare("kv_scan", "SELECT count(*), max(v) FROM kv_scan WHERE k >= $1 AND k < $2").await?;
        let (select, upsert) = (select.as_ref(), upsert.as_ref());
        let (scan_agg, range) = (scan_agg.as_ref(), range.as_ref());
        let bulk = match workload {
            Workload::BulkInsert => Some(insert_statement(&client, "kv_bulk", BATCH, false).await?),
            Workload::Insert10 => Some(insert_statement(&client, "kv_bulk", 10, false).await?),
            Workload::Insert10TwoIndexes => Some(insert_statement(&client, "kv_ins", 10, false).await?),
            _ => None,
        };
        let update = prepare("kv", "UPDATE kv SET v = $2 WHERE k = $1").await?;
        let by_value = prepare("kv_idx", "SELECT k FROM kv_idx WHERE v = $1").await?;
        while Instant::now() < end {
            let began = Instant::now();
            let result = match workload {
                Workload::PointSelect => {
                    client.query_opt(select.expect("kv"), &[&rng.gen_range(0..rows)]).await.map(|_| ()).map_err(text)
                }
                Workload::PointUpsert | Workload::Upsert1c => {
                    let k = rng.gen_range(0..rows);
                    salt += 1;
                    client.execute(upsert.expect("kv"), &[&k, &value(k, salt)]).await.map(|_| ()).map_err(text)
                }
                Workload::Kv95 => {
                    let k = rng.gen_range(0..rows);
                    if rng.gen_range(0..100) < 95 {
                        client.query_opt(select.expect("kv"), &[&k]).await.map(|_| ()).map_err(text)
                    } else {
                        salt += 1;
                        client.execute(upsert.expect("kv"), &[&k, &value(k, salt)]).await.map(|_| ()).map_err(text)
                    }
                }
                Workload::BulkInsert => {
                    let first = (id as i64) * 1_000_000_000 + batch_no * BATCH as i64;
                    batch_no += 1;
                    let stmt = bulk.as_ref().expect("prepared for bulk-insert");
                    insert_batch(&client, stmt, first, first + BATCH as i64, 0).await.map_err(text)
                }
                Workload::Insert10 | Workload::Insert10TwoIndexes => {
                    let first = (id as i64) * 1_000_000_000 + batch_no * 10;
                    batch_no += 1;
                    let stmt = bulk.as_ref().expect("prepared for insert-10");
                    insert_batch(&client, stmt, first, first + 10, 0).await.map_err(text)
                }
                Workload::IndexLookup => {
                    let v = value(rng.gen_range(0..rows), 0);
                    let found = client.query_opt(by_value.as_ref().expect("kv_idx"), &[&v]).await;
                    found.map_err(text).and_then(|row| row.map(|_| ()).ok_or_else(|| format!("no row has v = {v}")))
                }
                Workload::Transfer => {
                    let (a, b) = (rng.gen_range(0..rows), rng.gen_range(0..rows));
                    salt += 1;
                    let (select, update) = (select.expect("kv"), update.as_ref().expect("kv"));
                    let block = async {
                        client.batch_execute("BEGIN").await?;
                        client.query_opt(select, &[&a]).await?;
                        client.query_opt(select, &[&b]).await?;
                        client.execute(update, &[&a, &value(a, salt)]).await?;
                        client.execute(update, &[&b, &value(b, salt)]).await?;
                        client.batch_execute("COMMIT").await
                    };
                    let result = block.await;
                    if result.is_err() && !client.is_closed() {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    result.map_err(text)
                }
                Workload::ScanAgg => client.query_one(scan_agg.expect("kv_scan"), &[]).await.map(|_| ()).map_err(text),
                Workload::RangeScan => {
                    let width = (scan_rows / 100).max(1);
                    let lo = rng.gen_range(0..(scan_rows - width).max(1));
                    client.query_one(range.expect("kv_scan"), &[&lo, &(lo + width)]).await.map(|_| ()).map_err(text)
                }
            };
            let took = began.elapsed();
            match result {
                Ok(()) if began >= start => latencies.push(took.as_micros() as u64),
                Ok(()) => {}
                Err(e) => {
                    errors += 1;
                    if errors == 1 {
                        eprintln!("client {id}: first error: {e}");
                    }
                    if client.is_closed() {
                        continue 'connection;
                    }
                }
            }
        }
    }
    Ok((latencies, errors))
}

/// An error with the server's SQLSTATE and message, not just "db error".
fn text(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sized_and_deterministic() {
        assert_eq!(value(42, 0).len(), VALUE_LEN);
        assert_eq!(value(42, 0), value(42, 0));
        assert_ne!(value(42, 0), value(42, 1));
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
    }
}
