//! `CREATE TABLE` and `DROP TABLE`. A table is a catalog row in the meta group plus its shards:
//! CREATE allocates a table id, creates one shard per hash bucket (waiting until each serves),
//! then publishes the definition; DROP deletes the rows shard by shard, then the definition.

use std::sync::Arc;

use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, Expr as AstExpr, ObjectName, SqlOption, TableConstraint,
    UnaryOperator, Value,
};
use raftable_common::{Error, Result, ShardRead, ShardWrite, WriteOp};

use crate::catalog::{ColumnDef, TableDef, ROWID};
use crate::encoding::bucket_range;
use crate::engine::Engine;
use crate::types::{coerce_scalar, SqlType};

/// The most shards one table may have.
const MAX_SHARDS: u16 = 256;

/// The unqualified, lower-cased (unless quoted) name of a table; `public.t` is `t`.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(ident).collect();
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [schema, t] if schema == "public" => Ok(t.clone()),
        _ => Err(Error::Unsupported(format!("table name {name}: only tables in schema public are supported"))),
    }
}

/// An identifier as PostgreSQL folds it: lower-case unless quoted.
pub fn ident(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub async fn create_table(engine: &Engine, create: &CreateTable) -> Result<String> {
    let name = table_name(&create.name)?;
    if create.query.is_some() || create.like.is_some() {
        return Err(Error::Unsupported("CREATE TABLE ... AS / LIKE is not supported".into()));
    }
    if engine.catalog.get(&name).await?.is_some() {
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
                other => return Err(Error::Unsupported(format!("column option {other} is not supported"))),
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
                        other => return Err(Error::Unsupported(format!("primary key expression {other}"))),
                    };
                    let i = columns.iter().position(|d| d.name == col).ok_or_else(|| {
                        Error::UndefinedColumn(format!("column \"{col}\" named in key does not exist"))
                    })?;
                    pk.push(i);
                }
            }
            other => return Err(Error::Unsupported(format!("table constraint {other} is not supported"))),
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
            return Err(Error::Unsupported(format!(
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
    let buckets = shard_count(&create.table_options, engine.config.default_shards)?;
    let id = u32::try_from(engine.cluster.next_id("table").await?)
        .map_err(|_| Error::Internal("table ids exhausted".into()))?;
    let ranges = (0..buckets).map(|b| bucket_range(id, b, buckets)).collect();
    let shards = engine.cluster.create_shards(ranges).await?;
    let def = TableDef { id, name: name.clone(), columns, pk, buckets, shards };
    match engine.catalog.insert(def).await {
        Err(Error::DuplicateTable(_)) if create.if_not_exists => Ok("CREATE TABLE".into()),
        Err(e) => Err(e),
        Ok(()) => Ok("CREATE TABLE".into()),
    }
}

/// `WITH (shards = N)`, else the node's default.
fn shard_count(options: &CreateTableOptions, default: u16) -> Result<u16> {
    let list = match options {
        CreateTableOptions::None => return Ok(default),
        CreateTableOptions::With(list) => list,
        other => return Err(Error::Unsupported(format!("table options {other}"))),
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
            other => return Err(Error::Unsupported(format!("table option {other} is not supported"))),
        }
    }
    Ok(count)
}

/// A DEFAULT must be a constant: a literal, optionally negated or cast.
fn constant_default(col: &ColumnDef, expr: &AstExpr) -> Result<Option<String>> {
    let value = literal(expr)
        .ok_or_else(|| Error::Unsupported(format!("DEFAULT {expr}: only constant defaults are supported")))?;
    if value.is_null() {
        return Ok(None);
    }
    // Validate now, store as text, coerce again on use.
    let coerced = coerce_scalar(&col.ty, &col.name, &value)?;
    Ok(Some(crate::dml::scalar_text(&coerced)))
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
pub async fn drop_table(engine: &Engine, names: &[ObjectName], if_exists: bool) -> Result<()> {
    let mut defs = Vec::new();
    for name in names {
        let name = table_name(name)?;
        match engine.catalog.get(&name).await? {
            Some(def) => defs.push(def),
            None if if_exists => {}
            None => return Err(Error::UndefinedTable(format!("table \"{name}\" does not exist"))),
        }
    }
    for def in &defs {
        engine.catalog.remove(&def.name).await?;
    }
    if !defs.is_empty() {
        // Wait until no node can still use the definition (their cached catalogs expire),
        // then delete the rows: a write a node made just before is deleted too.
        tokio::time::sleep(crate::catalog::LEASE + crate::catalog::REFRESH).await;
    }
    for def in defs {
        let tasks = (0..def.buckets).map(|b| clear_shard(engine, def.clone(), b));
        futures::future::try_join_all(tasks).await?;
    }
    Ok(())
}

/// Deletes a bucket's rows, a page at a time. Each page starts after the last key deleted, not
/// at the bucket's start: a scan from the start would step over every tombstone left by the
/// pages before it, making a large table's drop quadratic. No node writes the table any more
/// (the caller waited out the catalog lease), so nothing appears behind the cursor.
async fn clear_shard(engine: &Engine, def: Arc<TableDef>, bucket: u16) -> Result<()> {
    let range = bucket_range(def.id, bucket, def.buckets);
    let shard = def.shards[bucket as usize];
    let mut start = range.start.clone();
    loop {
        let read = ShardRead::Scan { start: start.clone(), end: range.end.clone(), limit: Some(1000), reverse: false };
        let rows = engine.cluster.read(shard, read).await?;
        let Some(last) = rows.last() else { return Ok(()) };
        start = last.key.iter().copied().chain([0]).collect();
        let ops = rows.into_iter().map(|r| WriteOp::Delete { key: r.key }).collect();
        engine.cluster.write(shard, ShardWrite::new(ops)).await?;
    }
}
