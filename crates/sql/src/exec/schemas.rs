//! CREATE SCHEMA and DROP SCHEMA. A schema is a name in the catalog (`table::SchemaDef`);
//! its relations are those whose catalog names it qualifies (`table::qualify`: `s.t`), so a
//! schema holds nothing of its own to move or delete but them. `public` always exists.

use raftable_common::{Error, Result};

use super::{ddl, sequences, views};
use crate::ast::SYSTEM_SCHEMAS;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::sequence::Sequences;
use crate::table::{split_name, SchemaDef, PUBLIC};

/// `CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION role]`: 42P06 if it exists.
pub(crate) async fn create_schema(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    name: &str,
    owner: Option<String>,
    if_not_exists: bool,
) -> Result<()> {
    let exists = name == PUBLIC || SYSTEM_SCHEMAS.contains(&name) || catalog.schema(name).await?.is_some();
    if exists {
        return match if_not_exists {
            true => Ok(()),
            false => Err(Error::DuplicateSchema(format!("schema \"{name}\" already exists"))),
        };
    }
    if name.starts_with("pg_") {
        return Err(Error::unsupported(format!(
            "unacceptable schema name \"{name}\": the prefix \"pg_\" is reserved for system schemas"
        )));
    }
    let id = cluster.next_id("table").await?;
    let id = u32::try_from(id).map_err(|_| Error::Internal("table ids exhausted".into()))?;
    match catalog.insert_schema(SchemaDef { id, name: name.to_string(), owner }).await {
        Err(Error::DuplicateSchema(_)) if if_not_exists => Ok(()),
        other => other,
    }
}

/// `DROP SCHEMA [IF EXISTS] names [CASCADE]`: 2BP01 if one holds a relation, unless with
/// `cascade`: then its views, tables (with what depends on them elsewhere: foreign keys,
/// views) and sequences go first.
pub(crate) async fn drop_schemas(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    sequences: &Sequences,
    names: &[String],
    if_exists: bool,
    cascade: bool,
) -> Result<()> {
    let mut found = Vec::new();
    for name in names {
        if name == PUBLIC || SYSTEM_SCHEMAS.contains(&name.as_str()) {
            return Err(Error::unsupported(format!("schema \"{name}\" cannot be dropped")));
        }
        match catalog.schema(name).await? {
            Some(def) => found.push(def),
            None if if_exists => {}
            None => return Err(Error::UndefinedSchema(format!("schema \"{name}\" does not exist"))),
        }
    }
    for schema in found {
        catalog.refresh().await?;
        let member = |n: &str| split_name(n).0 == schema.name;
        let views: Vec<String> = catalog.cached_views().iter().map(|v| v.name.clone()).filter(|n| member(n)).collect();
        let tables: Vec<String> = catalog.names().into_iter().filter(|n| member(n)).collect();
        let held: Vec<String> = catalog.sequences().iter().map(|s| s.name.clone()).filter(|n| member(n)).collect();
        if !cascade {
            if let Some(first) = views.iter().chain(&tables).chain(&held).next() {
                return Err(Error::DependentObjectsStillExist(format!(
                    "cannot drop schema {} because other objects depend on it: relation {first} is in it",
                    schema.name
                )));
            }
        }
        views::drop_views(catalog, &views, true, true).await?;
        ddl::drop_table(cluster, catalog, sequences, &tables, true, true).await?;
        sequences::drop_sequences(cluster, catalog, sequences, &held, true, true).await?;
        catalog.remove_schema(&schema.name).await?;
    }
    Ok(())
}
