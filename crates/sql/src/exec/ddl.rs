//! `CREATE TABLE`, `ALTER TABLE` and `DROP TABLE`. A table is a catalog row in the meta group
//! plus its shards: CREATE allocates a table id, makes the sequences of its SERIAL and identity
//! columns (`super::sequences`), creates one shard per hash bucket (waiting until each
//! serves), then publishes the definition; ALTER replaces the definition (the
//! changes that leave stored rows as they are) and waits until no node can still use the old
//! one; DROP removes the definition, waits likewise, then deletes the rows shard by shard.

use std::sync::Arc;

use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, AlterColumnOperation, AlterTable, AlterTableOperation, ColumnDef as AstColumnDef,
    ColumnOption, CreateTable, CreateTableOptions, Expr as AstExpr, ForeignKeyConstraint, GeneratedAs, Ident,
    IndexColumn, RenameTableNameKind, SequenceOptions, SqlOption, TableConstraint, UnaryOperator, Value,
};
use raftable_common::{Error, KeyRange, Result, ShardId, ShardRead};
use raftable_txn::Coordinator;

use super::checks::Checks;
use super::foreign_key_ddl::{add_foreign_key, constraint_names, dependents, drop_foreign_key, link, resolve, unlink};
use super::index_ddl::{add_unique, default_name, drop_shards, index_columns, new_index, pass, remove_index, Pass};
use super::sequences::{column_sequence, computed_default, drop_sequences, owned, serial_type, PerRow};
use super::views::{dependent_views, still_needed};
use crate::ast::{ident, table_name};
use crate::catalog::{Catalog, LEASE, REFRESH};
use crate::cluster::Cluster;
use crate::encoding::{bucket_range, RowDecoder};
use crate::plan::views::renamed_relation;
use crate::plan::CommentOn;
use crate::sequence::Sequences;
use crate::table::{qualify, split_name};
use crate::table::{
    CheckDef, ColumnDef, ColumnState, Computed, ForeignKeyDef, Identity, IndexDef, IndexState, SequenceDef, TableDef,
    ViewDef, ROWID,
};
use crate::types::{coerce_scalar, scalar_text, SqlType};

/// The most shards one table may have.
const MAX_SHARDS: u16 = 256;

/// Creates the table `create` defines (`default_shards` shards unless it says otherwise).
pub(crate) async fn create_table(
    ctx: &SessionContext,
    cluster: &dyn Cluster,
    catalog: &Catalog,
    default_shards: u16,
    create: &CreateTable,
) -> Result<String> {
    let name = table_name(&create.name)?;
    if create.query.is_some() || create.like.is_some() {
        return Err(Error::Unsupported("CREATE TABLE ... AS / LIKE is not supported".into()));
    }
    catalog.check_schema(&name).await?;
    if catalog.get(&name).await?.is_some() {
        if create.if_not_exists {
            return Ok("CREATE TABLE".into());
        }
        return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
    }
    let mut columns = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    // Columns whose sequence is made with the table: (column, identity options).
    let mut sequenced: Vec<(usize, Vec<SequenceOptions>)> = Vec::new();
    // CHECK constraints: (name given, name by default, expression).
    let mut checks: Vec<(Option<String>, String, String)> = Vec::new();
    // UNIQUE constraints: (name given, columns named).
    let mut uniques: Vec<(Option<String>, Vec<IndexColumn>)> = Vec::new();
    // FOREIGN KEY constraints: (constraint, the column it is an option of).
    let mut foreign: Vec<(ForeignKeyConstraint, Option<&Ident>)> = Vec::new();
    for (i, c) in create.columns.iter().enumerate() {
        let col_name = ident(&c.name);
        if columns.iter().any(|d: &ColumnDef| d.name == col_name) {
            return Err(Error::DuplicateColumn(format!("column \"{col_name}\" specified more than once")));
        }
        let serial = serial_type(&c.data_type);
        let ty = match serial {
            Some(ty) => ty,
            None => SqlType::from_ast(&c.data_type)?,
        };
        let mut def = ColumnDef::new(col_name.clone(), ty, true);
        if serial.is_some() {
            def.nullable = false;
            sequenced.push((i, Vec::new()));
        }
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
                ColumnOption::Default(_) if serial.is_some() || def.identity.is_some() || def.has_default() => {
                    return Err(multiple_defaults(&col_name, &name));
                }
                ColumnOption::Default(expr) => set_default(catalog, &mut def, expr).await?,
                ColumnOption::Unique(u) => {
                    let given = u.name.as_ref().or(opt.name.as_ref()).map(ident);
                    uniques.push((given, vec![c.name.clone().into()]))
                }
                // `CONSTRAINT name REFERENCES …` names the key in the column option.
                ColumnOption::ForeignKey(fk) => {
                    let name = fk.name.clone().or_else(|| opt.name.clone());
                    foreign.push((ForeignKeyConstraint { name, ..fk.clone() }, Some(&c.name)))
                }
                ColumnOption::Check(check) => {
                    let default_name = format!("{}_{col_name}_check", split_name(&name).1);
                    let given = check.name.as_ref().or(opt.name.as_ref()).map(ident);
                    checks.push((given, default_name, check.expr.to_string()));
                }
                ColumnOption::Generated { generated_as, sequence_options, generation_expr: None, .. } => {
                    if serial.is_some() || def.has_default() {
                        return Err(multiple_defaults(&col_name, &name));
                    }
                    def.identity = Some(match generated_as {
                        GeneratedAs::Always => Identity::Always,
                        GeneratedAs::ByDefault => Identity::ByDefault,
                        GeneratedAs::ExpStored => {
                            return Err(Error::unsupported("generated columns are not supported"));
                        }
                    });
                    def.nullable = false;
                    sequenced.push((i, sequence_options.clone().unwrap_or_default()));
                }
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
            TableConstraint::Check(check) => {
                let default = check_name(&name, &columns, &check.expr.to_string());
                checks.push((check.name.as_ref().map(ident), default, check.expr.to_string()));
            }
            TableConstraint::Unique(u) => uniques.push((u.name.as_ref().map(ident), u.columns.clone())),
            TableConstraint::ForeignKey(fk) => foreign.push((fk.clone(), None)),
            other => return Err(Error::unsupported(format!("table constraint {other} is not supported"))),
        }
    }
    let checks = check_defs(checks)?;
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
        columns.push(ColumnDef { hidden: true, ..ColumnDef::new(ROWID, SqlType::BigInt, false) });
        pk.push(columns.len() - 1);
    }
    if columns.iter().all(|c| c.hidden) {
        return Err(Error::Unsupported("a table needs at least one column".into()));
    }
    // The CHECK constraints must plan over the columns (42703 for an unknown one).
    let probe = TableDef {
        id: 0,
        name: name.clone(),
        columns,
        pk,
        buckets: 1,
        shards: Vec::new(),
        checks,
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        referenced_by: Vec::new(),
        version: 0,
        comment: None,
    };
    Checks::compile(ctx, &probe)?;
    let TableDef { mut columns, pk, checks, .. } = probe;
    let buckets = shard_count(&create.table_options, default_shards)?;
    let id =
        u32::try_from(cluster.next_id("table").await?).map_err(|_| Error::Internal("table ids exhausted".into()))?;
    // The sequences of SERIAL and identity columns, made first so the definition can name them.
    let mut made = Vec::new();
    for (i, options) in sequenced {
        let sequence = column_sequence(cluster, catalog, &name, &columns[i], &options).await?;
        columns[i].computed = Some(Computed::Nextval(sequence.name.clone()));
        catalog.insert_sequence(sequence.clone()).await?;
        made.push(sequence.name);
    }
    let ranges = (0..buckets).map(|b| bucket_range(id, b, buckets)).collect();
    let def = TableDef {
        id,
        name: name.clone(),
        columns,
        pk,
        buckets,
        shards: Vec::new(),
        checks,
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        referenced_by: Vec::new(),
        version: 0,
        comment: None,
    };
    let mut linked = Vec::new();
    let inserted = publish(cluster, catalog, def, uniques, &foreign, ranges, &mut linked).await;
    if inserted.is_err() {
        for parent in linked {
            let _ = unlink(catalog, parent, id).await;
        }
    }
    if inserted.is_err() {
        for sequence in made {
            let _ = catalog.remove_sequence(&sequence).await;
        }
    }
    match inserted {
        Err(Error::DuplicateTable(_)) if create.if_not_exists => Ok("CREATE TABLE".into()),
        Err(e) => Err(e),
        Ok(()) => Ok("CREATE TABLE".into()),
    }
}

/// Publishes a new table: the indexes of its UNIQUE constraints, its foreign keys (each table
/// it references lists it first, `link`, and no row may reference one before every node knows
/// that: the lease wait), its shards, then its definition. `linked`: the tables listed so far.
async fn publish(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    def: TableDef,
    uniques: Vec<(Option<String>, Vec<IndexColumn>)>,
    foreign: &[(ForeignKeyConstraint, Option<&Ident>)],
    ranges: Vec<KeyRange>,
    linked: &mut Vec<u32>,
) -> Result<()> {
    let indexes = unique_indexes(cluster, catalog, &def, uniques).await?;
    let def = Arc::new(TableDef { indexes, ..def });
    let mut keys: Vec<ForeignKeyDef> = Vec::new();
    let mut parents: Vec<Arc<TableDef>> = Vec::new();
    for (fk, column) in foreign {
        let taken: Vec<String> =
            constraint_names(&def).into_iter().chain(keys.iter().map(|k| k.name.clone())).collect();
        let (key, parent) = resolve(catalog, &def, fk, *column, &taken).await?;
        if !parents.iter().any(|p| p.id == parent.id) {
            parents.push(parent);
        }
        keys.push(key);
    }
    let mut new = (*def).clone();
    for parent in &parents {
        if parent.id == new.id {
            new.referenced_by.push(new.id);
        } else {
            link(catalog, parent, new.id).await?;
            linked.push(parent.id);
        }
    }
    if !linked.is_empty() {
        tokio::time::sleep(LEASE + REFRESH).await;
    }
    new.foreign_keys = keys;
    new.shards = cluster.create_shards(ranges).await?;
    catalog.insert(new).await
}

/// The indexes of a new table's UNIQUE constraints (public at once: nobody writes the table
/// before its definition is). A constraint naming the same columns as an earlier one, or as
/// the primary key, makes no second index, as in PostgreSQL.
async fn unique_indexes(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    def: &TableDef,
    uniques: Vec<(Option<String>, Vec<IndexColumn>)>,
) -> Result<Vec<IndexDef>> {
    let mut out: Vec<IndexDef> = Vec::new();
    for (given, columns) in uniques {
        let columns = index_columns(def, &columns)?;
        if columns == def.pk && !def.has_rowid() || out.iter().any(|i| i.columns == columns) {
            continue;
        }
        let made: Vec<String> = out.iter().map(|i| i.name.clone()).chain([def.name.clone()]).collect();
        let name = match given {
            Some(name) if made.contains(&name) || catalog.taken(&name).await? => {
                return Err(Error::DuplicateTable(format!("relation \"{name}\" already exists")));
            }
            Some(name) => name,
            None => default_name(catalog, def, &columns, "key", &made).await?,
        };
        let mut index = new_index(cluster, def, name, columns, true, IndexState::Public).await?;
        index.constraint = true;
        out.push(index);
    }
    Ok(out)
}

/// CHECK constraints named: as given, else by PostgreSQL's default (`<table>_<column>_check`
/// for a column's, `<table>_check` for the table's), numbered when taken (`..._check1`).
fn check_defs(checks: Vec<(Option<String>, String, String)>) -> Result<Vec<CheckDef>> {
    let mut out: Vec<CheckDef> = Vec::with_capacity(checks.len());
    for (given, default, expr) in checks {
        let taken = |n: &str| out.iter().any(|c: &CheckDef| c.name == n);
        let name = match given {
            Some(name) if taken(&name) => {
                return Err(Error::DuplicateTable(format!("constraint \"{name}\" already exists")));
            }
            Some(name) => name,
            None => {
                let mut name = default.clone();
                let mut n = 0;
                while taken(&name) {
                    n += 1;
                    name = format!("{default}{n}");
                }
                name
            }
        };
        out.push(CheckDef { name, expr });
    }
    Ok(out)
}

/// PostgreSQL's name for a table's CHECK constraint nobody named: `<table>_<column>_check` when
/// the expression names one column, else `<table>_check` (numbered when taken).
fn check_name(table: &str, columns: &[ColumnDef], expr: &str) -> String {
    let table = split_name(table).1;
    let probe = CheckDef { name: String::new(), expr: expr.to_string() };
    let named: Vec<&ColumnDef> = columns.iter().filter(|c| c.is_visible() && probe.mentions(&c.name)).collect();
    match named.as_slice() {
        [one] => format!("{table}_{}_check", one.name),
        _ => format!("{table}_check"),
    }
}

/// `ALTER TABLE t ADD [CONSTRAINT name] CHECK (expr)`: every node verifies it on the rows it
/// writes (a step that fails at commit the transactions written without it), then the stored
/// rows are checked a chunk at a time while writes go on; a row for which it is false takes it
/// back off and fails the statement (23514), as PostgreSQL's validation does.
async fn add_check(
    ctx: &SessionContext,
    catalog: &Catalog,
    coordinator: &Arc<Coordinator>,
    current: &Arc<TableDef>,
    name: Option<&Ident>,
    expr: &AstExpr,
) -> Result<()> {
    let taken = constraint_names(current);
    let default = check_name(&current.name, &current.columns, &expr.to_string());
    let name = match name.map(ident) {
        Some(name) if taken.contains(&name) => {
            return Err(Error::DuplicateTable(format!(
                "constraint \"{name}\" for relation \"{}\" already exists",
                current.name
            )));
        }
        Some(name) => name,
        None => (0..)
            .map(|n| if n == 0 { default.clone() } else { format!("{default}{n}") })
            .find(|n| !taken.contains(n))
            .unwrap_or(default),
    };
    let mut new = (**current).clone();
    new.checks.push(CheckDef { name: name.clone(), expr: expr.to_string() });
    // It must plan over the columns (42703 for an unknown one) before anything changes.
    let checks = Checks::compile(ctx, &new)?;
    let stored = catalog.replace_past(current, new).await?;
    tokio::time::sleep(LEASE + REFRESH).await;
    if let Err(e) = pass(coordinator, &stored, Pass::Verify(&checks)).await {
        let mut back = (*stored).clone();
        back.checks.retain(|c| c.name != name);
        catalog.replace(&stored, back).await?;
        tokio::time::sleep(LEASE + REFRESH).await;
        return Err(match e {
            Error::CheckViolation(_) => Error::CheckViolation(format!(
                "check constraint \"{name}\" of relation \"{}\" is violated by some row",
                stored.name
            )),
            other => other,
        });
    }
    Ok(())
}

fn multiple_defaults(column: &str, table: &str) -> Error {
    Error::SyntaxError(format!("multiple default values specified for column \"{column}\" of table \"{table}\""))
}

/// `DEFAULT expr` on a column: computed per row (`nextval`, `now()`, ...) or a constant.
async fn set_default(catalog: &Catalog, col: &mut ColumnDef, expr: &AstExpr) -> Result<()> {
    match computed_default(catalog, col, expr).await? {
        Some(computed) => {
            col.computed = Some(computed);
            col.default = None;
        }
        None => {
            col.default = constant_default(col, expr)?;
            col.computed = None;
        }
    }
    Ok(())
}

/// `ALTER TABLE [IF EXISTS] t op [, ...]`: `ADD [COLUMN]`, `DROP [COLUMN]`,
/// `RENAME [COLUMN] a TO b`, `ALTER [COLUMN] c SET DEFAULT <expr>` / `DROP DEFAULT` /
/// `DROP NOT NULL`. No stored row is rewritten: an added column reads as its default in rows
/// stored before it (`ColumnDef::missing`), a dropped one keeps its slot, written NULL.
///
/// The statement's operations apply together, each step one conditional write of the
/// definition (a concurrent ALTER of the same table makes it fail with 40001), after which it
/// waits out the catalog lease, so no two nodes use definitions more than one step apart and
/// once it returns none uses the old one. Adding or dropping a column takes two steps: first
/// the added columns are write-only (every node writes their default, none shows them) and
/// dropped ones stay, nullable; then both are done. So a node still on the old definition
/// never overwrites a value written through the new one.
pub(crate) async fn alter_table(
    ctx: &SessionContext,
    cluster: &dyn Cluster,
    catalog: &Catalog,
    sequences: &Sequences,
    coordinator: &Arc<Coordinator>,
    alter: &AlterTable,
) -> Result<()> {
    let name = table_name(&alter.name)?;
    let Some(current) = catalog.get(&name).await? else {
        if alter.if_exists {
            return Ok(());
        }
        if catalog.view(&name).await?.is_some() {
            return Err(Error::WrongObjectType(format!("\"{name}\" is a view: change it with CREATE OR REPLACE VIEW")));
        }
        return Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist")));
    };
    // What a view reads of the table stays (PostgreSQL keeps views by column number; a
    // raftable view keeps its query's text).
    for view in dependent_views(catalog, &[current.id]).await?.iter().filter(|v| v.depends.contains(&current.id)) {
        for op in &alter.operations {
            let (verb, names) = match op {
                AlterTableOperation::DropColumn { column_names, .. } => ("drop", column_names.clone()),
                AlterTableOperation::RenameColumn { old_column_name, .. } => ("rename", vec![old_column_name.clone()]),
                _ => continue,
            };
            if let Some(c) = names.iter().map(ident).find(|c| view.mentions(c)) {
                return Err(Error::DependentObjectsStillExist(format!(
                    "cannot {verb} column {c} of table {name} because other objects depend on it: view {} depends on \
                     column {c} of table {name}",
                    view.name
                )));
            }
        }
    }
    // A UNIQUE constraint is its index, added and dropped in steps of its own; so is a
    // foreign key.
    match alter.operations.as_slice() {
        [AlterTableOperation::RenameTable { table_name: RenameTableNameKind::To(new) }] => {
            // The new name is bare: the table stays in its schema.
            let new = table_name(new)?;
            if new.contains('.') {
                return Err(Error::SyntaxError("RENAME TO takes a name without a schema".into()));
            }
            return rename_table(catalog, &current, &qualify(split_name(&current.name).0, &new)).await;
        }
        [AlterTableOperation::DropConstraint { name, .. }] => {
            if let Some(index) = current.index(&ident(name)).filter(|i| i.constraint).cloned() {
                return remove_index(cluster, catalog, &current, &index).await.map(|_| ());
            }
            if current.foreign_keys.iter().any(|k| k.name == ident(name)) {
                return drop_foreign_key(catalog, &current, &ident(name)).await;
            }
        }
        [AlterTableOperation::AddConstraint { constraint: TableConstraint::ForeignKey(fk), .. }] => {
            return add_foreign_key(catalog, coordinator, &current, fk).await;
        }
        [AlterTableOperation::AddConstraint { constraint: TableConstraint::Check(check), .. }] => {
            return add_check(ctx, catalog, coordinator, &current, check.name.as_ref(), &check.expr).await;
        }
        [AlterTableOperation::AddConstraint { constraint: TableConstraint::Unique(u), .. }] => {
            let given = u.name.as_ref().map(ident);
            return add_unique(cluster, catalog, coordinator, &current, given, &u.columns).await;
        }
        _ => {}
    }
    // The indexes and foreign keys on columns being dropped go first, as PostgreSQL drops
    // them with the column; a column other tables' keys reference stays (2BP01).
    let mut current = current;
    for op in &alter.operations {
        let AlterTableOperation::DropColumn { column_names, .. } = op else { continue };
        let names: Vec<String> = column_names.iter().map(ident).collect();
        let named = |c: &usize| names.contains(&current.columns[*c].name);
        for other in dependents(catalog, &current, &[]).await?.iter().chain([&current]) {
            let keys = other.foreign_keys.iter().filter(|k| k.parent == current.id);
            if let Some(key) = keys.clone().find(|k| k.parent_columns.iter().any(named)) {
                if other.id != current.id || !key.columns.iter().any(named) {
                    return Err(Error::DependentObjectsStillExist(format!(
                        "cannot drop column {} of table {} because other objects depend on it: constraint {} on \
                         table {} depends on it",
                        names.join(", "),
                        current.name,
                        key.name,
                        other.name
                    )));
                }
            }
        }
        let doomed: Vec<String> =
            current.foreign_keys.iter().filter(|k| k.columns.iter().any(named)).map(|k| k.name.clone()).collect();
        for key in doomed {
            drop_foreign_key(catalog, &current, &key).await?;
            current = catalog.get(&current.name).await?.ok_or_else(|| Error::Internal("a table went".into()))?;
        }
        let doomed: Vec<_> = current
            .indexes
            .iter()
            .filter(|i| i.columns.iter().any(|c| names.contains(&current.columns[*c].name)))
            .cloned()
            .collect();
        for index in doomed {
            current = remove_index(cluster, catalog, &current, &index).await?;
        }
    }
    let mut def = (*current).clone();
    for op in &alter.operations {
        alter_definition(cluster, catalog, &mut def, op).await?;
    }
    if def.visible().is_empty() {
        return Err(Error::Unsupported("a table needs at least one column".into()));
    }
    let mut steps = Vec::new();
    let adds_or_drops = def.columns.iter().enumerate().any(|(i, c)| {
        c.state == ColumnState::WriteOnly || (c.state == ColumnState::Dropped && current.columns[i].state.is_public())
    });
    if adds_or_drops {
        let mut first = def.clone();
        for (i, c) in first.columns.iter_mut().enumerate() {
            if c.state == ColumnState::Dropped && current.columns[i].state.is_public() {
                *c = ColumnDef { nullable: true, ..current.columns[i].clone() };
            }
            // Its stored rows hold no value until the fill: NOT NULL once it is public.
            if c.state == ColumnState::WriteOnly && c.filled_per_row() {
                c.nullable = true;
            }
        }
        steps.push(first);
        for c in &mut def.columns {
            if c.state == ColumnState::WriteOnly {
                c.state = ColumnState::Public;
            }
        }
    }
    steps.push(def);
    let mut old = current.clone();
    for step in steps {
        let stored = catalog.replace(&old, step).await?;
        tokio::time::sleep(LEASE + REFRESH).await;
        old = stored;
        // Every node now writes the added columns: the rows stored before get their
        // per-row defaults, before the columns turn public.
        fill_added(catalog, sequences, coordinator, cluster, &old).await?;
    }
    // SET NOT NULL: now that every node refuses new NULLs there, no stored row may hold one;
    // if one does, the column goes back to nullable and the statement fails.
    for (i, c) in old.columns.iter().enumerate() {
        let tightened = !c.nullable && current.columns.get(i).is_some_and(|was| was.nullable && was.is_visible());
        if tightened && any_value(cluster, &old, i, |values| values.null_count() > 0).await? {
            let mut back = (*old).clone();
            back.columns[i].nullable = true;
            catalog.replace(&old, back).await?;
            tokio::time::sleep(LEASE + REFRESH).await;
            return Err(Error::NotNullViolation(format!(
                "column \"{}\" of relation \"{}\" contains null values",
                c.name, old.name
            )));
        }
    }
    // TYPE with a shorter length (VARCHAR(n), CHAR(n)): likewise, no stored value may be
    // longer; if one is, the column gets its type back and the statement fails.
    for (i, c) in old.columns.iter().enumerate() {
        let Some(was) = current.columns.get(i).filter(|w| w.is_visible()) else { continue };
        let Some(max) = c.ty.max_chars() else { continue };
        if was.ty.max_chars().is_some_and(|m| m <= max) {
            continue;
        }
        if any_value(cluster, &old, i, |values| too_long(values, max)).await? {
            let mut back = (*old).clone();
            back.columns[i].ty = was.ty;
            catalog.replace(&old, back).await?;
            tokio::time::sleep(LEASE + REFRESH).await;
            return Err(Error::StringTooLong(format!("value too long for type {}", c.ty.pg_name())));
        }
    }
    // The sequences of dropped SERIAL / identity columns go with them.
    let dropped: Vec<String> = catalog
        .sequences()
        .into_iter()
        .filter(|s| {
            s.owned_by
                .as_ref()
                .is_some_and(|(t, c)| *t == old.name && old.column(c).is_err() && current.column(c).is_ok())
        })
        .map(|s| s.name.clone())
        .collect();
    drop_sequences(cluster, catalog, sequences, &dropped, true, true).await
}

/// A CHECK expression with column `old` named `new`.
fn renamed(expr: &str, old: &str, new: &str) -> Result<String> {
    let mut e = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::SyntaxError(e.to_string()))?;
    let _ = visit_expressions_mut(&mut e, |x| {
        if let AstExpr::Identifier(id) = x {
            if ident(id) == old {
                let plain = new.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                *x = AstExpr::Identifier(if plain { Ident::new(new) } else { Ident::with_quote('"', new) });
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(e.to_string())
}

/// COMMENT ON TABLE / VIEW / COLUMN: the text kept in the definition (`None` removes it).
/// Nothing about writes changes, so no lease is waited out.
pub(crate) async fn comment_on(catalog: &Catalog, on: &CommentOn, comment: Option<String>) -> Result<()> {
    let table = |name: &String| {
        let name = name.clone();
        async move {
            catalog
                .get(&name)
                .await?
                .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))
        }
    };
    match on {
        CommentOn::Table(name) => {
            let def = table(name).await?;
            catalog.replace(&def, TableDef { comment, ..(*def).clone() }).await?;
        }
        CommentOn::Column(name, column) => {
            let def = table(name).await?;
            let i = def.column(column)?;
            let mut new = (*def).clone();
            new.columns[i].comment = comment;
            catalog.replace(&def, new).await?;
        }
        CommentOn::View(name) => {
            let view = catalog
                .view(name)
                .await?
                .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))?;
            catalog.put_view(ViewDef { comment, ..(*view).clone() }, Some(&view)).await?;
        }
    }
    Ok(())
}

/// Points the sequences owned by table `from.0` (by its column `from.1` only, if given) at
/// table `to.0` (and column `to.1`, if given): they follow a renamed table or column.
async fn reown(catalog: &Catalog, from: (&str, Option<&str>), to: (&str, Option<&str>)) -> Result<()> {
    for sequence in catalog.sequences() {
        let Some((table, column)) = &sequence.owned_by else { continue };
        if table != from.0 || from.1.is_some_and(|c| c != column) {
            continue;
        }
        let owned_by = Some((to.0.to_string(), to.1.unwrap_or(column).to_string()));
        catalog.replace_sequence(&sequence, SequenceDef { owned_by, ..(*sequence).clone() }).await?;
    }
    Ok(())
}

/// ALTER TABLE RENAME TO: the definition under its new name, the sequences it owns and the
/// views reading it told, then the lease waited out (no node resolves the old name after).
async fn rename_table(catalog: &Catalog, current: &TableDef, name: &str) -> Result<()> {
    catalog.rename(current, name).await?;
    reown(catalog, (&current.name, None), (name, None)).await?;
    for view in dependent_views(catalog, &[current.id]).await?.iter().filter(|v| v.depends.contains(&current.id)) {
        let query = renamed_relation(&view.query, &current.name, name)?;
        catalog.put_view(ViewDef { query, ..(**view).clone() }, Some(view)).await?;
    }
    tokio::time::sleep(LEASE + REFRESH).await;
    Ok(())
}

/// Whether the values of column `i` in some page of stored rows satisfy `found` (read a page at
/// a time: NULLs, values too long).
async fn any_value(
    cluster: &dyn Cluster,
    def: &TableDef,
    i: usize,
    found: impl Fn(&datafusion::arrow::array::ArrayRef) -> bool,
) -> Result<bool> {
    // Nullable here whatever the definition says: finding NULLs may be the point.
    let column = &def.columns[i];
    let field = datafusion::arrow::datatypes::Field::new(&column.name, column.ty.arrow(), true);
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![field]));
    for b in 0..def.buckets {
        let range = bucket_range(def.id, b, def.buckets);
        let shard = def.shards[b as usize];
        let mut start = range.start.clone();
        loop {
            let read =
                ShardRead::Scan { start: start.clone(), end: range.end.clone(), limit: Some(1000), reverse: false };
            let rows = cluster.read(shard, read).await?;
            let Some(last) = rows.last() else { break };
            start = last.key.iter().copied().chain([0]).collect();
            let mut decoder = RowDecoder::new(def, &[i], schema.clone());
            for row in &rows {
                decoder.push(&row.value)?;
            }
            if found(decoder.finish()?.column(0)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether a string column's values hold one of more than `max` characters.
fn too_long(values: &datafusion::arrow::array::ArrayRef, max: u32) -> bool {
    let strings = values.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
    strings.is_some_and(|s| s.iter().flatten().any(|v| v.chars().count() > max as usize))
}

/// Whether a table holds no row (one short read per shard).
async fn is_empty(cluster: &dyn Cluster, def: &TableDef) -> Result<bool> {
    for b in 0..def.buckets {
        let range = bucket_range(def.id, b, def.buckets);
        let read = ShardRead::Scan { start: range.start, end: range.end, limit: Some(1), reverse: false };
        if !cluster.read(def.shards[b as usize], read).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `ADD [COLUMN] [IF NOT EXISTS] c type [NOT NULL | NULL] [DEFAULT expr]`, as a write-only
/// column at the end. Rows stored before read its `missing` value: the constant default, or
/// for `now()`, `CURRENT_TIMESTAMP`, `LOCALTIMESTAMP` and `CURRENT_DATE` their value at the
/// ALTER, as PostgreSQL stores it for these stable functions. A default that differs per row
/// (`nextval`, `gen_random_uuid()`) is computed by writers while the column is write-only and
/// given to the stored rows by a backfill ([`fill_added`]). A NOT NULL column without a default
/// can only be added to an empty table.
async fn add_column(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    def: &mut TableDef,
    column: &AstColumnDef,
    if_not_exists: bool,
) -> Result<()> {
    let name = ident(&column.name);
    if def.columns.iter().any(|c| c.name == name && c.state != ColumnState::Dropped) {
        if if_not_exists {
            return Ok(());
        }
        return Err(Error::DuplicateColumn(format!("column \"{name}\" of relation \"{}\" already exists", def.name)));
    }
    if serial_type(&column.data_type).is_some() {
        return Err(Error::unsupported("ADD COLUMN of a SERIAL column is not supported"));
    }
    let mut col = ColumnDef::new(name, SqlType::from_ast(&column.data_type)?, true);
    for opt in &column.options {
        match &opt.option {
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Null => {}
            ColumnOption::Default(_) if col.has_default() => return Err(multiple_defaults(&col.name, &def.name)),
            ColumnOption::Default(expr) => set_default(catalog, &mut col, expr).await?,
            other => return Err(Error::unsupported(format!("ADD COLUMN with {other} is not supported"))),
        }
    }
    col.missing = match &col.computed {
        Some(computed) => at_alter(&col, computed)?,
        None => col.default.clone(),
    };
    col.added = true;
    if !col.nullable && col.missing.is_none() && !col.filled_per_row() && !is_empty(cluster, def).await? {
        return Err(Error::NotNullViolation(format!(
            "column \"{}\" of relation \"{}\" contains null values",
            col.name, def.name
        )));
    }
    col.state = ColumnState::WriteOnly;
    def.columns.push(col);
    Ok(())
}

/// Gives the rows stored before a column was added its per-row default (`nextval`,
/// `gen_random_uuid()`), a chunk per transaction while writes go on; on failure the column is
/// dropped again (its slot kept, as DROP COLUMN does) and the statement fails.
async fn fill_added(
    catalog: &Catalog,
    sequences: &Sequences,
    coordinator: &Arc<Coordinator>,
    cluster: &dyn Cluster,
    def: &Arc<TableDef>,
) -> Result<()> {
    let values = PerRow { cluster, catalog, sequences };
    let filling = |c: &ColumnDef| c.state == ColumnState::WriteOnly && c.filled_per_row();
    for (column, _) in def.columns.iter().enumerate().filter(|(_, c)| filling(c)) {
        if let Err(e) = pass(coordinator, def, Pass::Fill { column, values: &values }).await {
            let mut back = (**def).clone();
            let added: Vec<usize> = (0..back.columns.len()).filter(|&i| filling(&back.columns[i])).collect();
            for i in added {
                drop_column(&mut back, i)?;
            }
            catalog.replace(def, back).await?;
            tokio::time::sleep(LEASE + REFRESH).await;
            return Err(e);
        }
    }
    Ok(())
}

/// A computed default's value now, as the text a missing value is stored as, for the stable
/// functions of the time (None: one that differs per row).
fn at_alter(col: &ColumnDef, computed: &Computed) -> Result<Option<String>> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let micros = since_epoch.as_micros() as i64;
    let value = match computed {
        Computed::Now | Computed::CurrentTimestamp => {
            ScalarValue::TimestampMicrosecond(Some(micros), Some("+00:00".into()))
        }
        Computed::LocalTimestamp => ScalarValue::TimestampMicrosecond(Some(micros), None),
        Computed::CurrentDate => ScalarValue::Date32(Some(micros.div_euclid(86_400_000_000) as i32)),
        Computed::Nextval(_) | Computed::RandomUuid => return Ok(None),
    };
    Ok(Some(scalar_text(&coerce_scalar(&col.ty, &col.name, &value)?)))
}

/// `DROP [COLUMN] [IF EXISTS] c [, ...]`: the column keeps its slot under a name nobody can
/// write (as PostgreSQL's `........pg.dropped.N........`).
fn drop_column(def: &mut TableDef, i: usize) -> Result<()> {
    if def.pk.contains(&i) {
        return Err(Error::unsupported(format!(
            "dropping primary key column \"{}\" is not supported",
            def.columns[i].name
        )));
    }
    // Its CHECK constraints go with it, as PostgreSQL drops them.
    let name = def.columns[i].name.clone();
    def.checks.retain(|c| !c.mentions(&name));
    let col = &mut def.columns[i];
    col.name = format!("........pg.dropped.{}........", i + 1);
    col.state = ColumnState::Dropped;
    col.nullable = true;
    col.default = None;
    col.computed = None;
    col.identity = None;
    Ok(())
}

/// One ALTER TABLE operation applied to `def`.
async fn alter_definition(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    def: &mut TableDef,
    op: &AlterTableOperation,
) -> Result<()> {
    // Visible columns only: the hidden row id cannot be named.
    let column = |def: &TableDef, name: &str| {
        def.columns.iter().position(|c| c.name == name && c.is_visible()).ok_or_else(|| {
            Error::UndefinedColumn(format!("column \"{name}\" of relation \"{}\" does not exist", def.name))
        })
    };
    match op {
        AlterTableOperation::AddColumn { if_not_exists, column_def, column_position: None, .. } => {
            add_column(cluster, catalog, def, column_def, *if_not_exists).await?;
        }
        AlterTableOperation::DropColumn { column_names, if_exists, .. } => {
            for name in column_names {
                match column(def, &ident(name)) {
                    Ok(i) => drop_column(def, i)?,
                    Err(_) if *if_exists => {}
                    Err(e) => return Err(e),
                }
            }
        }
        AlterTableOperation::DropConstraint { if_exists, name, .. } => {
            let name = ident(name);
            let before = def.checks.len();
            def.checks.retain(|c| c.name != name);
            if def.checks.len() == before && !*if_exists {
                return Err(Error::UndefinedObject(format!(
                    "constraint \"{name}\" of relation \"{}\" does not exist",
                    def.name
                )));
            }
        }
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            let i = column(def, &ident(old_column_name))?;
            let new = ident(new_column_name);
            if def.columns.iter().any(|c| c.name == new) {
                return Err(Error::DuplicateColumn(format!(
                    "column \"{new}\" of relation \"{}\" already exists",
                    def.name
                )));
            }
            let old = std::mem::replace(&mut def.columns[i].name, new.clone());
            for check in &mut def.checks {
                check.expr = renamed(&check.expr, &old, &new)?;
            }
            // Its SERIAL / identity sequence stays its own.
            reown(catalog, (&def.name, Some(&old)), (&def.name, Some(&new))).await?;
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let i = column(def, &ident(column_name))?;
            match op {
                AlterColumnOperation::SetDefault { .. } if def.columns[i].identity.is_some() => {
                    return Err(Error::SyntaxError(format!(
                        "column \"{}\" of relation \"{}\" is an identity column",
                        def.columns[i].name, def.name
                    )));
                }
                AlterColumnOperation::SetDefault { value } => set_default(catalog, &mut def.columns[i], value).await?,
                AlterColumnOperation::DropDefault if def.columns[i].identity.is_none() => {
                    def.columns[i].default = None;
                    def.columns[i].computed = None;
                }
                AlterColumnOperation::DropDefault => {}
                AlterColumnOperation::DropNotNull if def.pk.contains(&i) => {
                    return Err(Error::InvalidTableDefinition(format!(
                        "column \"{}\" is in a primary key",
                        def.columns[i].name
                    )));
                }
                AlterColumnOperation::DropNotNull => def.columns[i].nullable = true,
                AlterColumnOperation::SetNotNull => def.columns[i].nullable = false,
                // The stored values are checked against a shorter length once every node
                // writes with it (`alter_table`).
                AlterColumnOperation::SetDataType { data_type, using: None, .. } => {
                    let to = SqlType::from_ast(data_type)?;
                    let column = &mut def.columns[i];
                    if !column.ty.retypes_to(&to) {
                        return Err(Error::unsupported(format!(
                            "ALTER COLUMN \"{}\" TYPE {}: a {} column's values would need rewriting (only text, \
                             varchar and char columns change type)",
                            column.name,
                            to.pg_name(),
                            column.ty.pg_name()
                        )));
                    }
                    column.ty = to;
                }
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

/// Drops a table: removes the definition, waits until no node can use it, then drops its and
/// its indexes' shards (`index_ddl::drop_shards`). A table other tables' foreign keys
/// reference is refused (2BP01) unless with `cascade`: then those keys go first. The tables
/// it references stop listing it before it goes.
pub(crate) async fn drop_table(
    cluster: &dyn Cluster,
    catalog: &Catalog,
    sequences: &Sequences,
    names: &[String],
    if_exists: bool,
    cascade: bool,
) -> Result<()> {
    let mut defs = Vec::new();
    for name in names {
        match catalog.get(name).await? {
            Some(def) => defs.push(def),
            None if catalog.view(name).await?.is_some() => {
                return Err(Error::WrongObjectType(format!("\"{name}\" is not a table")))
            }
            None if if_exists => {}
            None => return Err(Error::UndefinedTable(format!("table \"{name}\" does not exist"))),
        }
    }
    let ids: Vec<u32> = defs.iter().map(|d| d.id).collect();
    // The views reading them (directly or through views) go too with CASCADE.
    let views = dependent_views(catalog, &ids).await?;
    if let (Some(other), false) = (views.first(), cascade) {
        let named = defs.iter().find(|d| other.depends.contains(&d.id)).map_or("", |d| d.name.as_str());
        return Err(still_needed("table", named, other));
    }
    for view in &views {
        catalog.remove_view(&view.name).await?;
    }
    for def in &defs {
        let others = dependents(catalog, def, &ids).await?;
        if let (Some(other), false) = (others.first(), cascade) {
            let key = other.foreign_keys.iter().find(|k| k.parent == def.id).map(|k| k.name.as_str());
            return Err(Error::DependentObjectsStillExist(format!(
                "cannot drop table {} because other objects depend on it: constraint {} on table {} depends on it",
                def.name,
                key.unwrap_or_default(),
                other.name
            )));
        }
        for other in others {
            let mut other = other;
            while let Some(key) = other.foreign_keys.iter().find(|k| k.parent == def.id).cloned() {
                drop_foreign_key(catalog, &other, &key.name).await?;
                other = catalog.get(&other.name).await?.ok_or_else(|| Error::Internal("a table went".into()))?;
            }
        }
    }
    for def in &defs {
        let parents: std::collections::BTreeSet<u32> =
            def.foreign_keys.iter().map(|k| k.parent).filter(|p| !ids.contains(p)).collect();
        for parent in parents {
            unlink(catalog, parent, def.id).await?;
        }
    }
    for def in &defs {
        catalog.remove(&def.name).await?;
        // Its SERIAL and identity columns' sequences go with it.
        let owned = owned(catalog, def);
        drop_sequences(cluster, catalog, sequences, &owned, true, true).await?;
    }
    if !defs.is_empty() {
        // Wait until no node can still use the definition (their cached catalogs expire),
        // then drop the shards: a write a node made just before goes with them.
        tokio::time::sleep(LEASE + REFRESH).await;
    }
    for def in defs {
        let indexes = def.indexes.iter().flat_map(|i| i.shards.iter().copied());
        let shards: Vec<ShardId> = def.shards.iter().copied().chain(indexes).collect();
        drop_shards(cluster, &shards).await?;
    }
    Ok(())
}
