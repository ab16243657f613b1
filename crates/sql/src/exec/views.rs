//! CREATE / DROP VIEW in the exec stage: a view planned by `plan::views` stored in the catalog
//! (one meta-group write: views hold no rows), and [`dependent_views`], the views that must go
//! with the tables or views a DROP removes.

use std::sync::Arc;

use raftable_common::{Error, Result};

use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::table::ViewDef;

/// Stores a planned view. `OR REPLACE` keeps the view's id and may add columns at the end,
/// not rename, retype or drop one (42P16, as in PostgreSQL).
pub(crate) async fn create_view(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    mut def: ViewDef,
    or_replace: bool,
) -> Result<()> {
    catalog.check_schema(&def.name).await?;
    if catalog.get(&def.name).await?.is_some() && or_replace {
        return Err(Error::WrongObjectType(format!("\"{}\" is not a view", def.name)));
    }
    let old = if or_replace { catalog.view(&def.name).await? } else { None };
    let Some(old) = old else {
        def.id = u32::try_from(cluster.next_id("table").await?)
            .map_err(|_| Error::Internal("table ids exhausted".into()))?;
        return catalog.put_view(def, None).await;
    };
    if def.columns.len() < old.columns.len() {
        return Err(Error::InvalidTableDefinition("cannot drop columns from view".into()));
    }
    for ((name, ty), (old_name, old_ty)) in def.columns.iter().zip(&old.columns) {
        if name != old_name {
            return Err(Error::InvalidTableDefinition(format!(
                "cannot change name of view column \"{old_name}\" to \"{name}\""
            )));
        }
        if ty != old_ty {
            return Err(Error::InvalidTableDefinition(format!("cannot change data type of view column \"{name}\"")));
        }
    }
    def.id = old.id;
    catalog.put_view(def, Some(&old)).await
}

/// DROP VIEW: 42809 for a table, 2BP01 if other views read these (unless `cascade`: then they
/// go too).
pub(crate) async fn drop_views(catalog: &Catalog, names: &[String], if_exists: bool, cascade: bool) -> Result<()> {
    let mut views = Vec::new();
    for name in names {
        match catalog.view(name).await? {
            Some(view) => views.push(view),
            None if catalog.get(name).await?.is_some() => {
                return Err(Error::WrongObjectType(format!("\"{name}\" is not a view")))
            }
            None if if_exists => {}
            None => return Err(Error::UndefinedTable(format!("view \"{name}\" does not exist"))),
        }
    }
    let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
    let dependents = dependent_views(catalog, &ids).await?;
    if let (Some(other), false) = (dependents.first(), cascade) {
        let named = views.iter().find(|v| other.depends.contains(&v.id)).map_or("", |v| v.name.as_str());
        return Err(still_needed("view", named, other));
    }
    for view in dependents.iter().chain(&views) {
        catalog.remove_view(&view.name).await?;
    }
    Ok(())
}

/// The error for dropping `name` (a `kind`: table, view) while view `other` reads it (2BP01).
pub(crate) fn still_needed(kind: &str, name: &str, other: &ViewDef) -> Error {
    Error::DependentObjectsStillExist(format!(
        "cannot drop {kind} {name} because other objects depend on it: view {} depends on {kind} {name}",
        other.name
    ))
}

/// The views that read any of `ids` (tables or views), directly or through other views, and
/// are not among them.
pub(crate) async fn dependent_views(catalog: &Catalog, ids: &[u32]) -> Result<Vec<Arc<ViewDef>>> {
    let views = catalog.views().await?;
    let mut gone: Vec<u32> = ids.to_vec();
    let mut out: Vec<Arc<ViewDef>> = Vec::new();
    loop {
        let more: Vec<Arc<ViewDef>> = views
            .values()
            .filter(|v| !gone.contains(&v.id) && v.depends.iter().any(|d| gone.contains(d)))
            .cloned()
            .collect();
        if more.is_empty() {
            return Ok(out);
        }
        gone.extend(more.iter().map(|v| v.id));
        out.extend(more);
    }
}
