//! `raftable.index_check`: a consistency check of every secondary index against its table's
//! rows, as a system table (one row per public index): every row has its entry, every entry
//! its row, and a unique index no two rows with the same values. Everything is read at one
//! snapshot (waiting out prepared transactions' locks), so writes going on meanwhile do not
//! show as differences. It reads every row and entry of every indexed table: a tool for tests
//! (the fault-injection suite runs it after its faults) and operators, not for large tables.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use raftable_common::{Error, KeyRange, Result, Row, ShardId, ShardRead, Ts};
use raftable_txn::settle::until_unlocked;

use super::cache::Catalog;
use crate::cluster::Cluster;
use crate::encoding::{bucket_range, decode_all, encode_pk, index_entry};
use crate::table::{IndexDef, IndexState, TableDef};

/// Rows read per request.
const PAGE: u64 = 1000;

/// What the check found for one index.
struct Found {
    table: String,
    index: String,
    rows: i64,
    entries: i64,
    /// Rows without their entry (or whose entry names another row).
    missing: i64,
    /// Entries without their row (or whose row now holds other values).
    orphaned: i64,
    /// Values of a unique index that more than one row holds.
    duplicates: i64,
}

/// The table's rows: one per public secondary index of every table.
pub(super) async fn index_check(cluster: &dyn Cluster, catalog: &Catalog) -> Result<RecordBatch> {
    catalog.refresh().await?;
    let ts = cluster.snapshot().await?;
    let mut found = Vec::new();
    for def in catalog.all() {
        let indexes: Vec<&IndexDef> = def.indexes.iter().filter(|i| i.state == IndexState::Public).collect();
        if indexes.is_empty() {
            continue;
        }
        let mut rows = Vec::new();
        for b in 0..def.buckets {
            rows.extend(scan(cluster, def.shards[b as usize], bucket_range(def.id, b, def.buckets), ts).await?);
        }
        let batch = decode_all(&def, &rows.iter().map(|r| r.value.as_slice()).collect::<Vec<_>>())?;
        for index in indexes {
            found.push(check(cluster, &def, index, batch.columns(), ts).await?);
        }
    }
    let ints = |f: fn(&Found) -> i64| Arc::new(Int64Array::from_iter_values(found.iter().map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(found.iter().map(|f| f.table.as_str()))),
        Arc::new(StringArray::from_iter_values(found.iter().map(|f| f.index.as_str()))),
        ints(|f| f.rows),
        ints(|f| f.entries),
        ints(|f| f.missing),
        ints(|f| f.orphaned),
        ints(|f| f.duplicates),
    ];
    let fields = ["table_name", "index_name"]
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .chain(
            ["rows", "entries", "missing", "orphaned", "duplicates"]
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, false)),
        )
        .collect::<Vec<_>>();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(Error::internal)
}

/// One index against the table's rows (`columns`: every column of each row).
async fn check(cluster: &dyn Cluster, def: &TableDef, index: &IndexDef, columns: &[ArrayRef], ts: Ts) -> Result<Found> {
    let n = columns.first().map(|a| a.len()).unwrap_or(0);
    // The entries the rows should have: key -> the primary keys of the rows that give it.
    let mut expected: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::with_capacity(n);
    for row in 0..n {
        let pk = encode_pk(def, columns, row)?;
        let e = index_entry(index, columns, row, &pk)?;
        expected.entry(e.key).or_default().push(e.pk);
    }
    let mut entries: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for b in 0..index.buckets {
        let range = bucket_range(index.id, b, index.buckets);
        entries.extend(scan(cluster, index.shards[b as usize], range, ts).await?.into_iter().map(|r| (r.key, r.value)));
    }
    // A key whose entry names none of its rows: all of them miss it (rows sharing a unique key
    // are duplicates: the one the entry names has it).
    let missing: usize = expected
        .iter()
        .filter(|(k, pks)| !entries.get(*k).is_some_and(|pk| pks.contains(pk)))
        .map(|(_, pks)| pks.len())
        .sum();
    let orphaned = entries.iter().filter(|(k, pk)| !expected.get(*k).is_some_and(|pks| pks.contains(pk))).count();
    let duplicates = expected.values().filter(|pks| pks.len() > 1).count();
    Ok(Found {
        table: def.name.clone(),
        index: index.name.clone(),
        rows: n as i64,
        entries: entries.len() as i64,
        missing: missing as i64,
        orphaned: orphaned as i64,
        duplicates: duplicates as i64,
    })
}

/// Every row of `range` on `shard` at `ts`, a page at a time.
async fn scan(cluster: &dyn Cluster, shard: ShardId, range: KeyRange, ts: Ts) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let mut start = range.start.clone();
    loop {
        let read = ShardRead::Scan { start: start.clone(), end: range.end.clone(), limit: Some(PAGE), reverse: false };
        let rows = until_unlocked(cluster, shard, || cluster.read_at(shard, read.clone(), ts)).await?;
        let full = rows.len() as u64 == PAGE;
        if let Some(last) = rows.last() {
            start = last.key.iter().copied().chain([0]).collect();
        }
        out.extend(rows);
        if !full {
            return Ok(out);
        }
    }
}
