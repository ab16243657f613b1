//! Executing the point fast paths planned by `plan::point`: a primary-key lookup as one `Get`
//! on the owning shard, rows of parameters as one `write::InsertRun` batch, neither through DataFusion.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result, ShardId, ShardRead};
use raftable_txn::settle::until_unlocked;
use raftable_txn::Txn;

use super::checks::Checks;
use super::foreign_keys::ForeignKeys;
use super::indexes::Indexes;
use super::write::{InsertRun, OnConflict, Shards};
use crate::cluster::Cluster;
use crate::encoding::{
    bucket_of, bucket_prefix, decode_all, encode_index_part, encode_key_part, index_entry, row_key, RowDecoder,
};
use crate::error::from_datafusion;
use crate::plan::point::{ParamInsert, PointSelect};
use crate::plan::Conflict;
use crate::table::TableDef;
use crate::types::{changed_text, coerce_scalar};

impl PointSelect {
    /// Reads the row: the newest version (a linearizable point read), or through `txn` as a
    /// transaction block sees it. By a unique index: its entry, then the row it points to.
    pub(crate) async fn execute(
        &self,
        cluster: &dyn Cluster,
        txn: Option<&Txn>,
        params: &[ScalarValue],
    ) -> Result<RecordBatch> {
        let key = self.via.as_ref().map_or(&self.def.pk, |i| &i.columns);
        let mut encoded = Vec::with_capacity(16);
        for (p, c) in self.key_params.iter().zip(key) {
            let col = &self.def.columns[*c];
            let value = match coerce_scalar(&col.ty, &col.name, &params[*p]) {
                Ok(v) => v,
                // A value the key column cannot hold (too long, out of range) matches no row.
                Err(Error::StringTooLong(_) | Error::OutOfRange(_)) => {
                    return Ok(RecordBatch::new_empty(self.schema.clone()))
                }
                Err(e) => return Err(e),
            };
            if changed_text(&params[*p], &value) {
                // Coercion rewrote the text (blank-trimmed, canonical uuid): equality on the
                // stored text would not hold.
                return Ok(RecordBatch::new_empty(self.schema.clone()));
            }
            if value.is_null() {
                // `key = NULL` matches nothing.
                return Ok(RecordBatch::new_empty(self.schema.clone()));
            }
            let array = value.to_array().map_err(from_datafusion)?;
            match self.via {
                None => encode_key_part(&mut encoded, array.as_ref(), 0)?,
                Some(_) => encode_index_part(&mut encoded, array.as_ref(), 0)?,
            }
        }
        let read = |shard: ShardId, key: Vec<u8>| async move {
            let read = ShardRead::Get { key };
            match txn {
                Some(txn) => txn.read(shard, read).await,
                None => until_unlocked(cluster, shard, || cluster.read(shard, read.clone())).await,
            }
        };
        let row = |pk: &[u8]| (self.def.shards[bucket_of(pk, self.def.buckets) as usize], row_key(&self.def, pk));
        let rows = match &self.via {
            None => {
                let (shard, key) = row(&encoded);
                read(shard, key).await?
            }
            Some(index) => {
                let bucket = bucket_of(&encoded, index.buckets);
                let entry_key = [bucket_prefix(index.id, bucket).as_slice(), &encoded].concat();
                let mut attempts = 0;
                loop {
                    let Some(entry) = read(index.shards[bucket as usize], entry_key.clone()).await?.pop() else {
                        break Vec::new();
                    };
                    let (shard, key) = row(&entry.value);
                    let rows = read(shard, key).await?;
                    // Outside a transaction the entry and the row are read one after the
                    // other: the row must still hold the values (else it changed between, and
                    // the lookup runs again).
                    let holds = match rows.first() {
                        Some(r) => {
                            let full = decode_all(&self.def, &[r.value.as_slice()])?;
                            index_entry(index, full.columns(), 0, &entry.value)?.key == entry_key
                        }
                        None => false,
                    };
                    attempts += 1;
                    if holds || txn.is_some() {
                        break if holds { rows } else { Vec::new() };
                    }
                    if attempts == 10 {
                        return Err(Error::TxnConflict(format!(
                            "the row under index \"{}\" kept changing during the lookup",
                            index.name
                        )));
                    }
                }
            }
        };
        let mut decoder = RowDecoder::new(&self.def, &self.columns, self.schema.clone());
        for row in &rows {
            decoder.push(&row.value)?;
        }
        decoder.finish()
    }
}

impl ParamInsert {
    /// Inserts the rows; returns how many rows were written (skipped conflicts not counted).
    pub(crate) async fn execute(
        &self,
        shards: &Shards<'_>,
        checks: Checks,
        indexes: &Indexes,
        keys: &ForeignKeys,
        params: &[ScalarValue],
    ) -> Result<usize> {
        let visible = self.def.visible();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(visible.len());
        for (slot, &col) in visible.iter().enumerate() {
            // A column the statement leaves out takes its default in every row: coerced once.
            let default =
                self.rows.iter().any(|row| row[slot].is_none()).then(|| self.def.default_value(col)).transpose()?;
            let values = self.rows.iter().map(|row| match row[slot] {
                Some(p) => params[p].clone(),
                None => default.clone().expect("computed when a row lacks the column"),
            });
            arrays.push(column_array(&self.def, col, values.collect())?);
        }
        let mut run = InsertRun::new(*shards, checks, indexes, keys);
        let (n, _) = run.insert(&self.def, &arrays, &on_conflict(&self.conflict)?, true).await?;
        run.finish(&self.def).await?;
        Ok(n)
    }
}

/// One column's values as an array. Parameters arrive decoded to the column's type, so the
/// values share one type; where they do not (a typed NULL of another type, a default), each is
/// first coerced to the column's type by PostgreSQL's rules. `write::InsertRun` checks the result.
fn column_array(def: &TableDef, col: usize, values: Vec<ScalarValue>) -> Result<ArrayRef> {
    let first = values.first().map(ScalarValue::data_type);
    let values = if values.iter().all(|v| Some(v.data_type()) == first) {
        values
    } else {
        let column = &def.columns[col];
        values.iter().map(|v| coerce_scalar(&column.ty, &column.name, v)).collect::<Result<Vec<_>>>()?
    };
    ScalarValue::iter_to_array(values).map_err(from_datafusion)
}

/// A conflict action without expressions (the only ones the fast path takes).
fn on_conflict(conflict: &Conflict) -> Result<OnConflict> {
    match conflict {
        Conflict::Fail => Ok(OnConflict::Fail),
        Conflict::Ignore => Ok(OnConflict::Ignore),
        Conflict::Overwrite => Ok(OnConflict::Overwrite),
        Conflict::Update { .. } => Err(Error::Internal("ON CONFLICT DO UPDATE on the point path".into())),
    }
}
