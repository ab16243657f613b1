//! What a table is: its columns, its primary key and how its rows spread over hash buckets and
//! shards ([`TableDef`]). The catalog (`crate::catalog`) stores and caches these definitions;
//! every stage below planning (`encoding`, `scan`, the writes of `exec`) reads them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::scalar::ScalarValue;
use raftable_common::{Error, Result, ShardId};
use serde::{Deserialize, Serialize};

use crate::types::SqlType;

/// A user table's OID (`pg_class`, RowDescription) is this plus its raftable id: the same in
/// every session and on every node. datafusion-pg-catalog numbers the other objects upwards
/// from 16384 and PostgreSQL's own are below that, so these never meet
/// (`catalog::pg_catalog` numbers the primary key's index and constraint above these).
const TABLE_OID: i64 = 0x1000_0000;

/// Name of the hidden row id column of a table declared without a primary key.
pub const ROWID: &str = "rowid";

/// One column of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// A constant default, already coerced to the column's type, as JSON-encoded text of the
    /// value (`None`: NULL).
    pub default: Option<String>,
    /// The generated row id of a table without a primary key: not shown by `SELECT *`.
    pub hidden: bool,
}

/// A table definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes of the primary key columns, in key order.
    pub pk: Vec<usize>,
    /// Number of hash buckets = shards.
    pub buckets: u16,
    /// Shard of each bucket.
    pub shards: Vec<ShardId>,
}

impl TableDef {
    /// The schema of every column, hidden ones included.
    pub fn full_schema(&self) -> Schema {
        Schema::new(self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable)).collect::<Vec<_>>())
    }

    /// The schema SQL sees: visible columns only.
    pub fn visible_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| !c.hidden)
                .map(|c| Field::new(&c.name, c.ty.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Indexes (into `columns`) of the visible columns.
    pub fn visible(&self) -> Vec<usize> {
        self.columns.iter().enumerate().filter(|(_, c)| !c.hidden).map(|(i, _)| i).collect()
    }

    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c.name == name).ok_or_else(|| {
            Error::UndefinedColumn(format!("column \"{name}\" of relation \"{}\" does not exist", self.name))
        })
    }

    /// The default value of column `i` as a scalar of its type.
    pub fn default_value(&self, i: usize) -> Result<ScalarValue> {
        let col = &self.columns[i];
        match &col.default {
            None => ScalarValue::try_from(&col.ty.arrow()).map_err(crate::error::from_datafusion),
            Some(text) => crate::types::coerce_scalar(&col.ty, &col.name, &ScalarValue::Utf8(Some(text.clone()))),
        }
    }

    /// The table's OID in `pg_class`.
    pub fn oid(&self) -> i32 {
        (TABLE_OID + i64::from(self.id & 0x0fff_ffff)) as i32
    }

    /// The column's number in `pg_attribute` (1-based among the visible columns; none for the
    /// hidden row id).
    pub fn attnum(&self, column: usize) -> Option<i16> {
        self.visible().iter().position(|c| *c == column).map(|p| p as i16 + 1)
    }

    pub fn has_rowid(&self) -> bool {
        self.pk.len() == 1 && self.columns[self.pk[0]].hidden
    }
}
