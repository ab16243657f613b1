//! FOREIGN KEY in `CREATE TABLE` and `ALTER TABLE ADD / DROP CONSTRAINT`, and what dropping a
//! table or column does to the keys on it. A key lives in its referencing table's definition
//! (`TableDef::foreign_keys`); the referenced table lists the referencing one
//! (`TableDef::referenced_by`) so that whoever deletes there knows where to look
//! (`super::foreign_keys`).
//!
//! The catalog steps keep every node's checks sound while definitions spread (each step waits
//! out the catalog lease): the referenced table learns of the referencing one first, in a step
//! that also fails at commit every transaction written with its older definitions (two versions
//! at once, `Catalog::replace_past`), since those deleted rows without looking; only then can
//! rows referencing it exist. Adding a key to a table with rows does the same to that table,
//! then checks its rows a chunk at a time (writes go on); a row referencing nothing fails the
//! ALTER (23503) and takes the key away again.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{DeferrableInitial, ForeignKeyConstraint, Ident, ReferentialAction};
use raftable_common::{Error, Result};
use raftable_txn::Coordinator;

use super::foreign_keys::ForeignKeys;
use super::index_ddl::{pass, Pass};
use crate::ast::{ident, table_name};
use crate::catalog::{Catalog, LEASE, REFRESH};
use crate::table::{ForeignKeyDef, KeyAction, TableDef};
use crate::types::SqlType;

/// A FOREIGN KEY of the table `def` (being created or altered) resolved against the catalog:
/// the key and the referenced table (`def` itself for a key referencing its own table).
/// `taken`: constraint names the table already has.
pub(crate) async fn resolve(
    catalog: &Catalog,
    def: &Arc<TableDef>,
    fk: &ForeignKeyConstraint,
    column: Option<&Ident>,
    taken: &[String],
) -> Result<(ForeignKeyDef, Arc<TableDef>)> {
    let parent_name = table_name(&fk.foreign_table)?;
    let parent = match parent_name == def.name {
        true => def.clone(),
        false => catalog
            .get(&parent_name)
            .await?
            .ok_or_else(|| Error::UndefinedTable(format!("relation \"{parent_name}\" does not exist")))?,
    };
    let named: Vec<&Ident> = match column {
        Some(c) => vec![c],
        None => fk.columns.iter().collect(),
    };
    let missing = |name: &str| {
        Error::UndefinedColumn(format!("column \"{name}\" referenced in foreign key constraint does not exist"))
    };
    let find = |t: &TableDef, id: &Ident| {
        let name = ident(id);
        t.columns.iter().position(|c| c.name == name && c.is_visible()).ok_or_else(|| missing(&name))
    };
    let columns = named.iter().map(|c| find(def, c)).collect::<Result<Vec<_>>>()?;
    let parent_columns = match fk.referred_columns.is_empty() {
        false => fk.referred_columns.iter().map(|c| find(&parent, c)).collect::<Result<Vec<_>>>()?,
        true if parent.has_rowid() => {
            return Err(Error::InvalidForeignKey(format!(
                "there is no primary key for referenced table \"{}\"",
                parent.name
            )))
        }
        true => parent.pk.clone(),
    };
    if columns.len() != parent_columns.len() {
        return Err(Error::InvalidForeignKey(
            "number of referencing and referenced columns for foreign key disagree".into(),
        ));
    }
    if parent.referenced_key(&parent_columns).is_none() {
        return Err(Error::InvalidForeignKey(format!(
            "there is no unique constraint matching given keys for referenced table \"{}\"",
            parent.name
        )));
    }
    let name = match &fk.name {
        Some(name) if taken.contains(&ident(name)) => {
            return Err(Error::DuplicateTable(format!(
                "constraint \"{}\" for relation \"{}\" already exists",
                ident(name),
                def.name
            )))
        }
        Some(name) => ident(name),
        None => {
            let cols: Vec<&str> = columns.iter().map(|c| def.columns[*c].name.as_str()).collect();
            let base = format!("{}_{}_fkey", def.bare_name(), cols.join("_"));
            let mut name = base.clone();
            let mut n = 0;
            while taken.contains(&name) {
                n += 1;
                name = format!("{base}{n}");
            }
            name
        }
    };
    for (&c, &p) in columns.iter().zip(&parent_columns) {
        let (a, b) = (&def.columns[c].ty, &parent.columns[p].ty);
        if family(a) != family(b) {
            return Err(Error::DatatypeMismatch(format!(
                "foreign key constraint \"{name}\" cannot be implemented: key columns \"{}\" and \"{}\" are of \
                 incompatible types: {} and {}",
                def.columns[c].name,
                parent.columns[p].name,
                a.pg_name(),
                b.pg_name()
            )));
        }
    }
    let action = |a: Option<ReferentialAction>| match a {
        None | Some(ReferentialAction::NoAction) => KeyAction::NoAction,
        Some(ReferentialAction::Restrict) => KeyAction::Restrict,
        Some(ReferentialAction::Cascade) => KeyAction::Cascade,
        Some(ReferentialAction::SetNull) => KeyAction::SetNull,
        Some(ReferentialAction::SetDefault) => KeyAction::SetDefault,
    };
    let on_update = action(fk.on_update);
    if !matches!(on_update, KeyAction::NoAction | KeyAction::Restrict) {
        return Err(Error::unsupported(format!("ON UPDATE {} is not supported", on_update.sql())));
    }
    if fk.match_kind.is_some() {
        return Err(Error::unsupported("MATCH in a foreign key is not supported (keys are MATCH SIMPLE)"));
    }
    let characteristics = fk.characteristics.unwrap_or_default();
    if characteristics.enforced == Some(false) {
        return Err(Error::unsupported("NOT ENFORCED foreign keys are not supported"));
    }
    let deferred = characteristics.initially == Some(DeferrableInitial::Deferred);
    let key = ForeignKeyDef {
        name,
        columns,
        parent: parent.id,
        parent_columns,
        on_delete: action(fk.on_delete),
        on_update,
        deferrable: characteristics.deferrable.unwrap_or(false) || deferred,
        deferred,
    };
    Ok((key, parent))
}

/// Which types a key column and the column it references may have: the same family.
fn family(ty: &SqlType) -> u8 {
    match ty {
        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => 1,
        SqlType::Real | SqlType::Double => 2,
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => 3,
        SqlType::Numeric(..) => 4,
        SqlType::Boolean => 5,
        SqlType::Bytea => 6,
        SqlType::Date => 7,
        SqlType::Timestamp => 8,
        SqlType::TimestampTz => 9,
        SqlType::Uuid => 10,
        SqlType::Jsonb => 11,
    }
}

/// Lists table `child` in `parent`'s `referenced_by`, in a step that fails at commit the
/// transactions written with the older definitions; then waits out the lease. Returns the
/// parent as stored.
pub(crate) async fn link(catalog: &Catalog, parent: &TableDef, child: u32) -> Result<Arc<TableDef>> {
    let mut new = parent.clone();
    new.referenced_by.push(child);
    let stored = catalog.replace_past(parent, new).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(stored)
}

/// Takes table `child` off `parent`'s `referenced_by` (by id) once no key of `child`
/// references it; then waits out the lease.
pub(crate) async fn unlink(catalog: &Catalog, parent: u32, child: u32) -> Result<()> {
    let Some(parent) = catalog.by_id(parent).await? else { return Ok(()) };
    if !parent.referenced_by.contains(&child) {
        return Ok(());
    }
    let mut new = (*parent).clone();
    new.referenced_by.retain(|id| *id != child);
    catalog.replace(&parent, new).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(())
}

/// `ALTER TABLE t ADD [CONSTRAINT name] FOREIGN KEY (...) REFERENCES ...`: the referenced
/// table learns of `t`, then `t` takes the key (each step failing older writers at commit),
/// then its rows are checked; a row referencing nothing takes the key back off (23503).
pub(crate) async fn add_foreign_key(
    catalog: &Catalog,
    coordinator: &Arc<Coordinator>,
    current: &Arc<TableDef>,
    fk: &ForeignKeyConstraint,
) -> Result<()> {
    let taken = constraint_names(current);
    let (key, parent) = resolve(catalog, current, fk, None, &taken).await?;
    let linked = parent.id != current.id && !parent.referenced_by.contains(&current.id);
    if linked {
        link(catalog, &parent, current.id).await?;
    }
    let mut new = (**current).clone();
    if parent.id == current.id && !new.referenced_by.contains(&current.id) {
        new.referenced_by.push(current.id);
    }
    new.foreign_keys.push(key.clone());
    let stored = catalog.replace_past(current, new).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    let parent = if parent.id == current.id { stored.clone() } else { parent };
    let keys = ForeignKeys::referencing(key.clone(), parent);
    if let Err(e) = pass(coordinator, &stored, Pass::Validate(&keys)).await {
        drop_foreign_key(catalog, &stored, &key.name).await?;
        return Err(e);
    }
    Ok(())
}

/// Drops the key `name` of table `def`; then, if no other key of it references that table,
/// takes `def` off the referenced table's list.
pub(crate) async fn drop_foreign_key(catalog: &Catalog, def: &TableDef, name: &str) -> Result<()> {
    let Some(key) = def.foreign_keys.iter().find(|k| k.name == name).cloned() else {
        return Err(Error::UndefinedObject(format!(
            "constraint \"{name}\" of relation \"{}\" does not exist",
            def.name
        )));
    };
    let mut new = def.clone();
    new.foreign_keys.retain(|k| k.name != name);
    let still = new.foreign_keys.iter().any(|k| k.parent == key.parent);
    if key.parent == def.id && !still {
        new.referenced_by.retain(|id| *id != def.id);
    }
    catalog.replace(def, new).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    if key.parent != def.id && !still {
        unlink(catalog, key.parent, def.id).await?;
    }
    Ok(())
}

/// Every constraint name of a table: its CHECKs, UNIQUE constraints and foreign keys (and its
/// primary key's).
pub(crate) fn constraint_names(def: &TableDef) -> Vec<String> {
    let checks = def.checks.iter().map(|c| c.name.clone());
    let uniques = def.indexes.iter().filter(|i| i.constraint).map(|i| i.name.clone());
    let keys = def.foreign_keys.iter().map(|k| k.name.clone());
    checks.chain(uniques).chain(keys).chain([def.pkey_name()]).collect()
}

/// The tables other than `def` (and `also`, dropped with it) whose keys reference it: a DROP
/// without CASCADE fails on them (2BP01).
pub(crate) async fn dependents(catalog: &Catalog, def: &TableDef, also: &[u32]) -> Result<Vec<Arc<TableDef>>> {
    let mut out = Vec::new();
    for &id in def.referenced_by.iter().filter(|id| **id != def.id && !also.contains(id)) {
        if let Some(child) = catalog.by_id(id).await? {
            if child.foreign_keys.iter().any(|k| k.parent == def.id) {
                out.push(child);
            }
        }
    }
    Ok(out)
}
