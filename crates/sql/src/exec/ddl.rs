//! `CREATE TABLE`, `ALTER TABLE` and `DROP TABLE`. A table is a catalog row in the meta group
//! plus its shards: CREATE allocates a table id, creates one shard per hash bucket (waiting
//! until each serves), then publishes the definition; ALTER replaces the definition (the
//! changes that leave stored rows as they are) and waits until no node can still use the old
//! one; DROP removes the definition, waits likewise, then deletes the rows shard by shard.

use std::sync::Arc;

use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnOption, CreateTable, CreateTableOptions,
    Expr as AstExpr, SqlOption, TableConstraint, UnaryOperator, Value,
};
use raftable_common::{Error, Result, ShardRead, ShardWrite, WriteOp};

use crate::ast::{ident, table_name};
use crate::catalog::{Catalog, LEASE, REFRESH};
use crate::cluster::Cluster;
use crate::encoding::bucket_range;
use crate::table::{ColumnDef, TableDef, ROWID};
use crate::types::{coerce_scalar, SqlType};

/// The most shards one table may have.
const MAX_SHARDS: u16 = 256;

/// Creates the table `create` defines (`default_shards` shards unless it says otherwise).
pub(crate) async fn create_table(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    default_shards: u16,
    create: &CreateTable,
) -> Result<String> {
    let name = table_name(&create.name)?;
    if create.query.is_some() || create.like.is_some() {
        return Err(Error::Unsupported("CREATE TABLE ... AS / LIKE is not supported".into()));
    }
    if catalog.get(&name).await?.is_some() {
        if create.if_not_exists {
            return Ok("CREATE TABLE".into());
        }
        return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
    }
    let mut columns = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    for (i, c) in create.columns.iter().enumerate() {
        let col_name = ident(&c.name);
        if columns.iter().any(|d: &ColumnDef| d.name == col_name) {
            return Err(Error::DuplicateColumn(format!("column \"{col_name}\" specified more than once")));
        }
        let ty = SqlType::from_ast(&c.data_type)?;
        let mut def = ColumnDef { name: col_name.clone(), ty, nullable: true, default: None, hidden: false };
        for opt in &c.options {
            match &opt.option {
                ColumnOption::NotNull => def.nullable = false,
                ColumnOption::Null => {}
                ColumnOption::PrimaryKey(_) => {
                    if !pk.is_empty() {
                        return Err(Error::InvalidInput(format!(
                            "multiple primary keys for table \"{name}\" are not allowed"
                        )));
                    }
                    pk.push(i);
                }
                ColumnOption::Default(expr) => def.default = constant_default(&def, expr)?,
                other => return Err(Error::unsupported(format!("column option {other} is not supported"))),
            }
        }
        columns.push(def);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(key) => {
                if !pk.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                for c in &key.columns {
                    let col = match &c.column.expr {
                        AstExpr::Identifier(id) => ident(id),
                        other => return Err(Error::unsupported(format!("primary key expression {other}"))),
                    };
                    let i = columns.iter().position(|d| d.name == col).ok_or_else(|| {
                        Error::UndefinedColumn(format!("column \"{col}\" named in key does not exist"))
                    })?;
                    pk.push(i);
                }
            }
            other => return Err(Error::unsupported(format!("table constraint {other} is not supported"))),
        }
    }
    for &i in &pk {
        columns[i].nullable = false;
        if matches!(columns[i].ty, SqlType::Jsonb) {
            return Err(Error::Unsupported("a jsonb column cannot be part of a primary key".into()));
        }
    }
    if pk.is_empty() {
        if columns.iter().any(|c| c.name == ROWID) {
            return Err(Error::unsupported(format!(
                "a table without a primary key cannot have a column named {ROWID}"
            )));
        }
        columns.push(ColumnDef {
            name: ROWID.into(),
            ty: SqlType::BigInt,
            nullable: false,
            default: None,
            hidden: true,
        });
        pk.push(columns.len() - 1);
    }
    if columns.iter().all(|c| c.hidden) {
        return Err(Error::Unsupported("a table needs at least one column".into()));
    }
    let buckets = shard_count(&create.table_options, default_shards)?;
    let id =
        u32::try_from(cluster.next_id("table").await?).map_err(|_| Error::Internal("table ids exhausted".into()))?;
    let ranges = (0..buckets).map(|b| bucket_range(id, b, buckets)).collect();
    let shards = cluster.create_shards(ranges).await?;
    let def = TableDef { id, name: name.clone(), columns, pk, buckets, shards };
    match catalog.insert(def).await {
        Err(Error::DuplicateTable(_)) if create.if_not_exists => Ok("CREATE TABLE".into()),
        Err(e) => Err(e),
        Ok(()) => Ok("CREATE TABLE".into()),
    }
}

/// `ALTER TABLE [IF EXISTS] t op [, ...]` for the operations that change only the definition:
/// `RENAME [COLUMN] a TO b`, `ALTER [COLUMN] c SET DEFAULT <constant>` / `DROP DEFAULT` /
/// `DROP NOT NULL`. The statement's operations apply together, as one conditional write of the
/// definition (a concurrent ALTER of the same table makes it fail with 40001); then it waits
/// out the catalog lease, so once it returns no node uses the old definition.
pub(crate) async fn alter_table(catalog: &Catalog, alter: &AlterTable) -> Result<()> {
    let name = table_name(&alter.name)?;
    let Some(current) = catalog.get(&name).await? else {
        if alter.if_exists {
            return Ok(());
        }
        return Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist")));
    };
    let mut def = (*current).clone();
    for op in &alter.operations {
        alter_definition(&mut def, op)?;
    }
    catalog.replace(&current, def).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(())
}

/// One ALTER TABLE operation applied to `def`.
fn alter_definition(def: &mut TableDef, op: &AlterTableOperation) -> Result<()> {
    // Visible columns only: the hidden row id cannot be named.
    let column = |def: &TableDef, name: &str| {
        def.columns.iter().position(|c| c.name == name && !c.hidden).ok_or_else(|| {
            Error::UndefinedColumn(format!("column \"{name}\" of relation \"{}\" does not exist", def.name))
        })
    };
    match op {
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            let i = column(def, &ident(old_column_name))?;
            let new = ident(new_column_name);
            if def.columns.iter().any(|c| c.name == new) {
                return Err(Error::DuplicateColumn(format!(
                    "column \"{new}\" of relation \"{}\" already exists",
                    def.name
                )));
            }
            def.columns[i].name = new;
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let i = column(def, &ident(column_name))?;
            match op {
                AlterColumnOperation::SetDefault { value } => {
                    def.columns[i].default = constant_default(&def.columns[i], value)?;
                }
                AlterColumnOperation::DropDefault => def.columns[i].default = None,
                AlterColumnOperation::DropNotNull if def.pk.contains(&i) => {
                    return Err(Error::InvalidTableDefinition(format!(
                        "column \"{}\" is in a primary key",
                        def.columns[i].name
                    )));
                }
                AlterColumnOperation::DropNotNull => def.columns[i].nullable = true,
                other => return Err(Error::unsupported(format!("ALTER TABLE ... ALTER COLUMN ... {other}"))),
            }
        }
        other => return Err(Error::unsupported(format!("ALTER TABLE ... {other}"))),
    }
    Ok(())
}

/// `WITH (shards = N)`, else the node's default.
fn shard_count(options: &CreateTableOptions, default: u16) -> Result<u16> {
    let list = match options {
        CreateTableOptions::None => return Ok(default),
        CreateTableOptions::With(list) => list,
        other => return Err(Error::unsupported(format!("table options {other}"))),
    };
    let mut count = default;
    for opt in list {
        match opt {
            SqlOption::KeyValue { key, value } if ident(key) == "shards" => {
                let n = match value {
                    AstExpr::Value(v) => match &v.value {
                        Value::Number(n, _) => n.parse::<u16>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                count = match n {
                    Some(n) if (1..=MAX_SHARDS).contains(&n) => n,
                    _ => return Err(Error::InvalidInput(format!("shards must be an integer from 1 to {MAX_SHARDS}"))),
                };
            }
            other => return Err(Error::unsupported(format!("table option {other} is not supported"))),
        }
    }
    Ok(count)
}

/// A DEFAULT must be a constant: a literal, optionally negated or cast.
fn constant_default(col: &ColumnDef, expr: &AstExpr) -> Result<Option<String>> {
    let value = literal(expr)
        .ok_or_else(|| Error::unsupported(format!("DEFAULT {expr}: only constant defaults are supported")))?;
    if value.is_null() {
        return Ok(None);
    }
    // Validate now, store as text, coerce again on use.
    let coerced = coerce_scalar(&col.ty, &col.name, &value)?;
    Ok(Some(scalar_text(&coerced)))
}

fn literal(expr: &AstExpr) -> Option<ScalarValue> {
    match expr {
        AstExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(|i| ScalarValue::Int64(Some(i)))
                .ok()
                .or_else(|| Some(ScalarValue::Utf8(Some(n.clone())))),
            Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            Value::Null => Some(ScalarValue::Null),
            _ => None,
        },
        AstExpr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr)? {
            ScalarValue::Int64(Some(i)) => Some(ScalarValue::Int64(Some(-i))),
            ScalarValue::Utf8(Some(s)) => Some(ScalarValue::Utf8(Some(format!("-{s}")))),
            _ => None,
        },
        AstExpr::Cast { expr, .. } | AstExpr::Nested(expr) => literal(expr),
        _ => None,
    }
}

/// Drops a table: deletes its rows shard by shard, then removes the definition. The shards'
/// Raft groups stay (empty) until shard removal exists.
pub(crate) async fn drop_table(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    names: &[String],
    if_exists: bool,
) -> Result<()> {
    let mut defs = Vec::new();
    for name in names {
        match catalog.get(name).await? {
            Some(def) => defs.push(def),
            None if if_exists => {}
            None => return Err(Error::UndefinedTable(format!("table \"{name}\" does not exist"))),
        }
    }
    for def in &defs {
        catalog.remove(&def.name).await?;
    }
    if !defs.is_empty() {
        // Wait until no node can still use the definition (their cached catalogs expire),
        // then delete the rows: a write a node made just before is deleted too.
        tokio::time::sleep(LEASE + REFRESH).await;
    }
    for def in defs {
        let tasks = (0..def.buckets).map(|b| clear_shard(cluster, def.clone(), b));
        futures::future::try_join_all(tasks).await?;
    }
    Ok(())
}

/// Deletes a bucket's rows, a page at a time. Each page starts after the last key deleted, not
/// at the bucket's start: a scan from the start would step over every tombstone left by the
/// pages before it, making a large table's drop quadratic. No node writes the table any more
/// (the caller waited out the catalog lease), so nothing appears behind the cursor.
async fn clear_shard(cluster: &dyn Cluster, def: Arc<TableDef>, bucket: u16) -> Result<()> {
    let range = bucket_range(def.id, bucket, def.buckets);
    let shard = def.shards[bucket as usize];
    let mut start = range.start.clone();
    loop {
        let read = ShardRead::Scan { start: start.clone(), end: range.end.clone(), limit: Some(1000), reverse: false };
        let rows = cluster.read(shard, read).await?;
        let Some(last) = rows.last() else { return Ok(()) };
        start = last.key.iter().copied().chain([0]).collect();
        let ops = rows.into_iter().map(|r| WriteOp::Delete { key: r.key }).collect();
        cluster.write(shard, ShardWrite::new(ops)).await?;
    }
}

/// A scalar as the text a DEFAULT is stored as (parsed back with the column's type).
fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Binary(Some(b)) => {
            format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            let secs = us.div_euclid(1_000_000);
            let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
            match chrono_like(secs, nanos) {
                Some(s) => s,
                None => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn chrono_like(secs: i64, nanos: u32) -> Option<String> {
    let t = datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(secs)?;
    Some(format!("{}.{:06}", t.format("%Y-%m-%d %H:%M:%S"), nanos / 1000))
}
